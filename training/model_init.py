"""The network a run starts from: its :class:`ModelSpec`, construction, and initial weights."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from scwm.data import ImageRecord
from scwm.models import ModelSpec, SCWMNet, convert_to_chunked_bn
from scwm.models.backbone import (
    WeightLoadError,
    checkpoint_state_dict,
    extract_backbone_state,
    load_state_dict_report,
)
from scwm.utils import load_torch_file

from .config import TrainConfig

log = logging.getLogger("scwm")

PART_BRANCH_PREFIXES = ("part_head.", "part_bn.")
"""Parameters whose shape depends on ``model.num_parts`` (the part head G and the part BN neck)."""
NECK_PREFIXES = ("global_bn.", *PART_BRANCH_PREFIXES)
"""Keys beside ``backbone.*`` that mark a whole scwm network (checkpoint or zoo file), not a backbone only."""


def model_spec(cfg: TrainConfig, part_names: list[str] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` for this config (``part_mode`` follows ``cluster.part_source``)."""
    mode = "stripes" if cfg.cluster.part_source in ("stripes", "none") else "learned"
    names = None
    if part_names is None or len(part_names) != cfg.model.num_parts:
        names = [f"part{i + 1}" for i in range(cfg.model.num_parts - 1)] + ["background"]
    return ModelSpec(backbone=cfg.model.backbone, num_parts=cfg.model.num_parts, height=cfg.data.height,
                     width=cfg.data.width, mean=tuple(cfg.data.mean), std=tuple(cfg.data.std),
                     part_names=names or list(part_names or []), part_mode=mode)


def pretrained_path(cfg: TrainConfig) -> Path:
    """Where the source-pretrained checkpoint for this backbone and input size lives."""
    return Path(cfg.pretrain.checkpoint.format(backbone=cfg.model.backbone, height=cfg.data.height,
                                               width=cfg.data.width))


def initial_weights_file(cfg: TrainConfig) -> Path | None:
    """The file ``model.weights`` loads (the source-pretraining cache for "pretrain", which may not exist
    yet); None for random or ImageNet initialisation."""
    weights = cfg.model.weights
    if weights in (None, "", "none", "imagenet"):
        return None
    return pretrained_path(cfg) if weights == "pretrain" else Path(weights)


def bn_chunks_per_process(cfg: TrainConfig, world_size: int = 1) -> int:
    """BatchNorm chunks each process computes: ``model.bn_chunks`` counts chunks of the *global* batch, and each of
    ``world_size`` processes holds ``1 / world_size`` of it (so 4 chunks on 4 GPUs = one chunk per GPU)."""
    chunks = cfg.model.bn_chunks
    if chunks % world_size:
        raise ValueError(
            f"model.bn_chunks={chunks} chunks of the global batch cannot be split over {world_size} processes; use a "
            f"multiple of {world_size} (--model.bn_chunks {world_size} is one chunk per process; BatchNorm over the "
            "whole global batch would need SyncBatchNorm, which scwm does not use)")
    return chunks // world_size


def build_model(cfg: TrainConfig, device: torch.device, world_size: int = 1) -> SCWMNet:
    """The network with its initial weights (random, ImageNet, a checkpoint, or source pretraining, which is
    run and cached first if missing), its BatchNorm layers chunked for ``world_size`` processes."""
    from .pretrain import run_pretraining  # pretrain needs this module's model_spec / pretrained_path

    spec = model_spec(cfg)
    net = SCWMNet(cfg.model.backbone, num_parts=cfg.model.num_parts,
                  weights="imagenet" if cfg.model.weights == "imagenet" else None, part_mode=spec.part_mode,
                  part_pooling_grad=cfg.model.part_pooling_grad)
    path = run_pretraining(cfg, device) if cfg.model.weights == "pretrain" else initial_weights_file(cfg)
    if path is not None:
        load_initial_weights(net, path)
    if spec.part_mode == "stripes":
        net.part_head.requires_grad_(False)
    chunks = bn_chunks_per_process(cfg, world_size)
    if chunks > 1:
        scope = cfg.model.bn_chunk_scope
        if scope in ("all", "trunk"):
            convert_to_chunked_bn(net.backbone, chunks)
        if scope in ("all", "necks"):
            convert_to_chunked_bn(net, chunks, skip=("backbone",))
    log.info("BatchNorm (%s): %d chunk(s) of the global batch of %d, %d per process, %d images each",
             cfg.model.bn_chunk_scope, cfg.model.bn_chunks, cfg.optim.batch_size, chunks,
             cfg.optim.batch_size // cfg.model.bn_chunks)
    return net.to(device)


CALIBRATION_IMAGES = 2048
"""At most this many target training images (a fixed sample) set the necks' statistics."""


def calibrate_necks(net: SCWMNet, records: Sequence[ImageRecord], cfg: TrainConfig, device: torch.device) -> None:
    """``model.calibrate_necks``: set the running statistics of the part (and global) BN necks to the statistics
    of ``records``' pooled features (AdaBN); the same on every process (a fixed sample, no global RNG)."""
    which = cfg.model.calibrate_necks
    if which == "none":
        return
    from .features import eval_loader, neck_inputs_statistics

    pick = np.random.RandomState(0).permutation(len(records))[:CALIBRATION_IMAGES]
    stats = neck_inputs_statistics(net, eval_loader([records[i] for i in sorted(pick)], cfg), device,
                                   cfg.run.precision, cfg.run.progress)
    necks = {"parts": net.part_bn} if which == "parts" else {"parts": net.part_bn, "global": net.global_bn}
    for name, bn in necks.items():
        mean, var = stats[name]
        bn.running_mean.copy_(mean.to(bn.running_mean))
        bn.running_var.copy_(var.to(bn.running_var))
    log.info("BN necks (%s) calibrated on %d target images", which, len(pick))


def load_initial_weights(net: SCWMNet, path: Path) -> None:
    """Load a whole-network scwm checkpoint (``backbone.*`` and neck keys) or backbone weights (any format
    :func:`scwm.models.backbone.extract_backbone_state` reads) into ``net``; the whole trunk must be there.

    A checkpoint made for another number of parts (e.g. the source-pretrained one, which is built with
    the default ``l`` and never trains its part branch) still initialises the backbone and global neck;
    its part head and part BN are skipped when their shapes do not fit and keep their fresh init. Any
    other shape mismatch is an error.
    """
    if not path.is_file():
        raise WeightLoadError(f"initial weights not found: {path}")
    obj = load_torch_file(path, WeightLoadError, "initial weights")
    full = {k: v for k, v in checkpoint_state_dict(obj, str(path)).items() if "classifier" not in k}
    if any(k.startswith("backbone.") for k in full) and any(k.startswith(NECK_PREFIXES) for k in full):
        own = net.state_dict()
        misfit = [k for k, v in full.items() if k.startswith(PART_BRANCH_PREFIXES) and k in own
                  and own[k].shape != v.shape]
        if misfit:
            log.info("%s was built for another number of parts: part head / part BN not loaded (%s)", path,
                     ", ".join(misfit))
            full = {k: v for k, v in full.items() if k not in misfit}
        load_state_dict_report(net, full, str(path), required="backbone.")
    else:
        load_state_dict_report(net.backbone, extract_backbone_state(full, str(path)), str(path))
    log.info("initial weights from %s", path)
