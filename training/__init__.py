"""SCWM training: source pretraining (`training.pretrain`) and the unsupervised loop (`training.run`)."""
