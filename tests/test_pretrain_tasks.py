"""PLIP-analogue pretraining tasks: Lab colours, the colourisation target, the losses against independent
computations, the heads, what each flag changes, and that the default recipe (hence the zoo file) is unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import training.pretrain as pretrain
from scwm.data.synthetic.attributes import GROUP_SIZES
from scwm.losses.pretrain import (
    AB_SCALE,
    attribute_accuracy,
    attribute_loss,
    colorization_loss,
    colorization_target,
    denormalize,
    greyscale_like_lab,
    normalize,
    srgb_to_lab,
)
from scwm.models import SCWMNet
from scwm.models.pretrain_heads import AttributeHead, ColorizationDecoder, frozen_bn_statistics, one_hot_attributes
from training.config import PretrainConfig, TrainConfig, preset_config
from training.pretrain_tasks import PretrainTasks, evaluates_at
from training.zoo import save_zoo

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# CIE L*a*b* (D65) of sRGB primaries, white and mid grey, as published (B. Lindbloom's calculator, colormine)
REFERENCE_LAB = {(1.0, 0.0, 0.0): (53.2408, 80.0925, 67.2032), (0.0, 1.0, 0.0): (87.7347, -86.1827, 83.1793),
                 (0.0, 0.0, 1.0): (32.2970, 79.1875, -107.8602), (1.0, 1.0, 1.0): (100.0, 0.0, 0.0),
                 (128 / 255, 128 / 255, 128 / 255): (53.5850, 0.0, 0.0)}


def _image(colours: list[tuple[float, float, float]], h: int, w: int) -> torch.Tensor:
    """(1, 3, h * len(colours), w): horizontal bands of the given colours, top to bottom."""
    return torch.cat([torch.tensor(c).view(1, 3, 1, 1).expand(1, 3, h, w) for c in colours], dim=2)


def test_lab_matches_published_values() -> None:
    for rgb, lab in REFERENCE_LAB.items():
        got = srgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1)).flatten().tolist()
        assert got == pytest.approx(lab, abs=0.02), rgb


def test_greyscale_keeps_lightness_and_drops_colour() -> None:
    rgb = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    grey = greyscale_like_lab(rgb)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    lab, glab = srgb_to_lab(rgb), srgb_to_lab(grey)
    assert torch.allclose(glab[:, 0], lab[:, 0], atol=1e-3) and glab[:, 1:].abs().max() < 1e-3
    assert torch.allclose(denormalize(normalize(rgb, MEAN, STD), MEAN, STD), rgb, atol=1e-6)


def test_colorization_target_of_a_known_image() -> None:
    red, blue = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    img = _image([red, blue], 4, 4)  # (1, 3, 8, 4): red top half, blue bottom half
    target = colorization_target(img, (2, 1))
    want = torch.tensor([[REFERENCE_LAB[red][1], REFERENCE_LAB[blue][1]],
                         [REFERENCE_LAB[red][2], REFERENCE_LAB[blue][2]]]) / AB_SCALE
    assert target.shape == (1, 2, 2, 1) and torch.allclose(target[0, :, :, 0], want, atol=1e-3)
    whole = colorization_target(img, (1, 1))  # one cell: the mean a*b* of its pixels
    assert torch.allclose(whole.flatten(), want.mean(1), atol=1e-3)
    assert colorization_loss(target, torch.zeros_like(target)) == pytest.approx(float(want.abs().mean()), abs=1e-4)
    with pytest.raises(ValueError, match="differ in shape"):
        colorization_loss(target, whole)


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_attribute_loss_and_accuracy_against_numpy() -> None:
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(5, k, generator=g) for k in (3, 4, 2)]
    targets = torch.tensor([[0, 1, -1], [2, -1, -1], [1, 3, -1], [-1, 0, -1], [0, 2, -1]])
    want = []
    for i, lg in enumerate(logits[:2]):  # the third group has no known target: not counted
        known = targets[:, i].numpy() >= 0
        want.append(_ce(lg.numpy()[known], targets[:, i].numpy()[known]))
    assert float(attribute_loss(logits, targets)) == pytest.approx(np.mean(want), rel=1e-5)
    acc = attribute_accuracy(logits, targets)
    for i in range(2):
        known = targets[:, i] >= 0
        hits = (logits[i].argmax(1) == targets[:, i])[known].float().mean()
        assert float(acc[i]) == pytest.approx(float(hits))
    assert math.isnan(float(acc[2]))
    assert float(attribute_loss(logits, torch.full((5, 3), -1))) == 0.0
    with pytest.raises(ValueError, match=r"targets must be \(B, 3\)"):
        attribute_loss(logits, targets[:, :2])


def test_heads_shapes_and_one_hot() -> None:
    onehot = one_hot_attributes(torch.tensor([[1, 0], [-1, 2]]), (2, 3))
    assert onehot.tolist() == [[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]]  # an unknown group is all zeros
    head = AttributeHead(16, (2, 3))
    assert [t.shape for t in head(torch.randn(4, 16))] == [(4, 2), (4, 3)]
    dec = ColorizationDecoder(16, 5, hidden=8)
    out = dec(torch.randn(4, 16, 8, 4), onehot.repeat(2, 1))
    assert out.shape == (4, 2, 32, 16) and out.abs().max() < 1
    with pytest.raises(ValueError, match=">= 2 classes"):
        AttributeHead(16, (2, 1))


def test_frozen_bn_statistics_leave_running_statistics_alone() -> None:
    bn = torch.nn.BatchNorm2d(3).train()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_bn_statistics(bn):
        y = bn(torch.randn(4, 3, 2, 2) * 5 + 2)
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in before.items()) and bn.momentum == 0.1
    assert y.mean().abs() < 1e-5  # still normalised with the batch statistics
    bn(torch.randn(4, 3, 2, 2) * 5 + 2)
    assert not torch.equal(bn.running_mean, before["running_mean"])


def _batch(seed: int = 0) -> tuple[SCWMNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = SCWMNet("resnet18", num_parts=4, num_classes=3).train()
    rgb = torch.rand(4, 3, 64, 32)
    attrs = torch.stack([torch.randint(0, k, (4,)) for k in GROUP_SIZES], dim=1)
    return model, normalize(rgb, MEAN, STD), attrs


def test_each_task_flag_adds_its_weighted_loss() -> None:
    model, x, attrs = _batch()
    out = model(x)
    off = PretrainTasks(PretrainConfig(), model.feat_dim)
    assert not off.enabled and not list(off.parameters())  # defaults: nothing added, nothing to train
    torch.manual_seed(0)
    on = PretrainTasks(PretrainConfig(attributes=True, attribute_weight=2.5), model.feat_dim)
    total, logs = on(model, x, out, attrs, MEAN, STD)
    logits = on.attr_head(out.feature_map.mean(dim=(2, 3)))
    ref = np.mean([_ce(lg.detach().numpy(), attrs[:, g].numpy()) for g, lg in enumerate(logits)])
    assert logs["attr"] == pytest.approx(ref, rel=1e-5) and float(total.detach()) == pytest.approx(2.5 * ref, rel=1e-5)
    assert on.decoder is None and "color" not in logs


def test_colorization_sees_grey_and_keeps_bn_statistics() -> None:
    model, x, attrs = _batch()
    out = model(x)
    seen: list[torch.Tensor] = []
    model.backbone.register_forward_hook(lambda mod, inp, res: seen.append(inp[0].detach()) or None)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    tasks = PretrainTasks(PretrainConfig(colorization=True, colorization_weight=0.5), model.feat_dim)
    total, logs = tasks(model, x, out, attrs, MEAN, STD)
    assert tasks.attr_head is None and "attr" not in logs
    grey = denormalize(seen[-1], MEAN, STD)  # what the colourisation pass fed the backbone
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-5) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-5)
    rgb = denormalize(x, MEAN, STD)
    assert torch.allclose(srgb_to_lab(grey)[:, 0], srgb_to_lab(rgb)[:, 0], atol=1e-2)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    with torch.no_grad(), frozen_bn_statistics(model):
        pred = tasks.decoder(model.backbone(seen[-1]), one_hot_attributes(attrs, GROUP_SIZES))
    assert pred.shape == (4, 2, 16, 8)  # 4x the feature map of a 64x32 crop (stride 16)
    ref = float((pred - colorization_target(rgb, (16, 8))).abs().mean())
    assert logs["color"] == pytest.approx(ref, rel=1e-4) and float(total.detach()) == pytest.approx(0.5 * ref, rel=1e-4)
    total.backward()
    assert model.backbone.conv1.weight.grad is not None and model.backbone.conv1.weight.grad.abs().sum() > 0
    half = PretrainTasks(PretrainConfig(colorization=True, colorization_fraction=0.3), model.feat_dim)
    half.load_state_dict(tasks.state_dict())
    _, logs = half(model, x, out, attrs, MEAN, STD)
    assert seen[-1].shape[0] == 2  # ceil(0.3 * 4) of the batch
    with torch.no_grad(), frozen_bn_statistics(model):
        pred = half.decoder(model.backbone(seen[-1]), one_hot_attributes(attrs[:2], GROUP_SIZES))
    assert logs["color"] == pytest.approx(float((pred - colorization_target(rgb[:2], (16, 8))).abs().mean()), rel=1e-4)


def test_eval_every_decides_the_epochs_with_heldout_figures() -> None:
    assert not any(evaluates_at(e, PretrainConfig(epochs=5)) for e in range(5))  # default: only the zoo file
    assert [e for e in range(5) if evaluates_at(e, PretrainConfig(epochs=5, eval_every=2))] == [1, 3, 4]
    assert [e for e in range(3) if evaluates_at(e, PretrainConfig(epochs=3, eval_every=1))] == [0, 1, 2]


DEFAULT_RECIPE_PRETRAIN = {"root": "data/synthetic/source-seed0", "preset": "source", "seed": 0, "epochs": 24,
                           "iters": 80, "batch_size": 32, "num_instances": 4, "lr": 3.5e-4, "weight_decay": 5e-4,
                           "label_smoothing": 0.1, "triplet_margin": 0.3}
"""The pretraining part of the recipe as it was before the tasks existed (the first zoo file's)."""


def test_default_recipe_and_fingerprint_are_unchanged(tmp_path) -> None:
    cfg = TrainConfig()  # the class defaults: identity-only (the synthetic preset's PLIP recipe is in test_zoo)
    recipe = pretrain.pretrain_recipe(cfg, torch.device("cpu"))
    assert list(recipe["pretrain"].items()) == list(DEFAULT_RECIPE_PRETRAIN.items())  # order too: the same bytes
    new = ("attributes", "attribute_weight", "colorization", "colorization_weight", "colorization_fraction",
           "eval_every")
    assert not set(new) & set(cfg.fingerprint_dict()["pretrain"])
    assert not set(new) & set(cfg.fingerprint_dict(for_resume=True)["pretrain"])
    evals = TrainConfig(pretrain=PretrainConfig(eval_every=1))
    assert pretrain.pretrain_recipe(evals, torch.device("cpu")) == recipe  # figures only: the same weights
    assert evals.fingerprint(for_resume=True) == cfg.fingerprint(for_resume=True)
    for over in ({"attributes": True}, {"colorization": True}):
        other = TrainConfig(pretrain=PretrainConfig(**over))
        assert other.fingerprint() != cfg.fingerprint()
        assert pretrain.pretrain_recipe(other, torch.device("cpu"))["pretrain"] != recipe["pretrain"]
    both = preset_config("smoke", {"pretrain": {"attributes": True, "attribute_weight": 0.5, "colorization": True,
                                                "checkpoint": str(tmp_path / "pre.pt")}})
    got = pretrain.pretrain_recipe(both, torch.device("cpu"))["pretrain"]
    assert [got[k] for k in ("attributes", "attribute_weight", "colorization", "colorization_weight",
                             "colorization_fraction")] == [True, 0.5, True, 1.0, 1.0]
    plain = both.model_copy(update={"pretrain": PretrainConfig(**{**both.pretrain.model_dump(), "attributes": False,
                                                                  "colorization": False})})
    save_zoo(tmp_path / "pre.pt", SCWMNet("resnet18", num_parts=4).state_dict(), {},
             pretrain.pretrain_recipe(plain, torch.device("cpu")))
    with pytest.raises(ValueError, match=r"other settings \(pretrain\.attribute_weight, pretrain\.attributes, "):
        pretrain.run_pretraining(both)  # an identity-only file is not a PLIP-analogue one
