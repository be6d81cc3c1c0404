"""Model-zoo checkpoints: a source-pretrained backbone as a small, reproducible file.

A zoo file holds the backbone trunk and the global BN neck in float16 (no classifier, no part
branch: pretraining never trains the part branch), the model spec, and the *recipe*: only the
config fields that pretraining reads. It is serialised in memory (so the archive name inside the zip
does not depend on the file name) and written atomically, so that re-creating it with the same recipe
on the same kind of CPU gives the same bytes, hence the same SHA-256.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from scwm.utils import atomic_write_bytes

ZOO_FORMAT = "scwm-zoo/1"
ZOO_PREFIXES = ("backbone.", "global_bn.")
"""State-dict prefixes a zoo file keeps."""


def zoo_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trunk + global neck of a full state dict, floating tensors in float16, keys sorted."""
    out = {}
    for k in sorted(state):
        if k.startswith(ZOO_PREFIXES):
            v = state[k].detach().cpu()
            out[k] = v.half() if v.is_floating_point() else v.clone()
    if not out:
        raise ValueError(f"no {'/'.join(ZOO_PREFIXES)} keys in the state dict; first keys: {list(state)[:5]}")
    return out


def zoo_bytes(state: dict[str, torch.Tensor], spec: dict[str, Any], recipe: dict[str, Any],
              metrics: dict[str, float] | None = None) -> bytes:
    """The serialised zoo file (deterministic for equal inputs)."""
    buf = io.BytesIO()
    torch.save({"format": ZOO_FORMAT, "kind": "source-pretrain", "model": zoo_state(state), "spec": spec,
                "recipe": recipe, "metrics": metrics or {}}, buf)
    return buf.getvalue()


def save_zoo(path: str | Path, state: dict[str, torch.Tensor], spec: dict[str, Any], recipe: dict[str, Any],
             metrics: dict[str, float] | None = None) -> Path:
    """Write a zoo file atomically; returns its path."""
    atomic_write_bytes(path, zoo_bytes(state, spec, recipe, metrics))
    return Path(path)


def read_zoo(path: str | Path) -> dict[str, Any]:
    """Load a zoo file (``weights_only``) and check its format; ValueError naming the file otherwise."""
    from scwm.utils import load_torch_file

    obj = load_torch_file(path, ValueError, "model-zoo file")
    if not isinstance(obj, dict) or obj.get("format") != ZOO_FORMAT:
        raise ValueError(f"{path} is not a {ZOO_FORMAT} model-zoo file")
    return obj
