"""The network a run starts from: its :class:`ModelSpec`, construction, and initial weights."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from scwm.models import ModelSpec, SCWMNet, convert_to_chunked_bn
from scwm.models.backbone import WeightLoadError, extract_backbone_state, load_state_dict_report
from scwm.utils import load_torch_file

from .config import TrainConfig

log = logging.getLogger("scwm")

PART_BRANCH_PREFIXES = ("part_head.", "part_bn.")
"""Parameters whose shape depends on ``model.num_parts`` (the part head G and the part BN neck)."""


def model_spec(cfg: TrainConfig, part_names: list[str] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` for this config (``part_mode`` follows ``cluster.part_source``)."""
    mode = "stripes" if cfg.cluster.part_source in ("stripes", "none") else "learned"
    names = None
    if part_names is None or len(part_names) != cfg.model.num_parts:
        names = [f"part{i + 1}" for i in range(cfg.model.num_parts - 1)] + ["background"]
    return ModelSpec(backbone=cfg.model.backbone, num_parts=cfg.model.num_parts, height=cfg.data.height,
                     width=cfg.data.width, part_names=names or list(part_names or []), part_mode=mode)


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


def build_model(cfg: TrainConfig, device: torch.device) -> SCWMNet:
    """The network with its initial weights (random, ImageNet, a checkpoint, or source pretraining, which is
    run and cached first if missing)."""
    from .pretrain import run_pretraining  # pretrain needs this module's model_spec / pretrained_path

    spec = model_spec(cfg)
    net = SCWMNet(cfg.model.backbone, num_parts=cfg.model.num_parts,
                  weights="imagenet" if cfg.model.weights == "imagenet" else None, part_mode=spec.part_mode)
    path = run_pretraining(cfg, device) if cfg.model.weights == "pretrain" else initial_weights_file(cfg)
    if path is not None:
        load_initial_weights(net, path)
    if spec.part_mode == "stripes":
        net.part_head.requires_grad_(False)
    if cfg.model.bn_chunks > 1:
        scope = cfg.model.bn_chunk_scope
        if scope in ("all", "trunk"):
            convert_to_chunked_bn(net.backbone, cfg.model.bn_chunks)
        if scope in ("all", "necks"):
            convert_to_chunked_bn(net, cfg.model.bn_chunks, skip=("backbone",))
    return net.to(device)


def load_initial_weights(net: SCWMNet, path: Path) -> None:
    """Load a whole-network scwm checkpoint (``backbone.*`` keys) or backbone-only weights into ``net``.

    A checkpoint made for another number of parts (e.g. the source-pretrained one, which is built with
    the default ``l`` and never trains its part branch) still initialises the backbone and global neck;
    its part head and part BN are skipped when their shapes do not fit and keep their fresh init. Any
    other shape mismatch is an error.
    """
    if not path.is_file():
        raise WeightLoadError(f"initial weights not found: {path}")
    obj = load_torch_file(path, WeightLoadError, "initial weights")
    state = obj["model"] if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    full = {k.removeprefix("module."): v for k, v in state.items() if "classifier" not in k}
    if any(k.startswith("backbone.") for k in full):
        own = net.state_dict()
        misfit = [k for k, v in full.items() if k.startswith(PART_BRANCH_PREFIXES) and k in own
                  and own[k].shape != v.shape]
        if misfit:
            log.info("%s was built for another number of parts: part head / part BN not loaded (%s)", path,
                     ", ".join(misfit))
            full = {k: v for k, v in full.items() if k not in misfit}
        load_state_dict_report(net, full, str(path))
    else:
        load_state_dict_report(net.backbone, extract_backbone_state(obj, str(path)), str(path))
    log.info("initial weights from %s", path)
