"""Analyses of trained models and start checkpoints (``python -m experiments.analyses.<name>``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scwm.utils import atomic_write_json


def trained_models(runs: str | Path, experiments: Sequence[str],
                   seeds: Sequence[int]) -> Iterator[tuple[str, int, Path]]:
    """``(experiment, seed, model.pt)`` of every finished harness run under ``runs`` (missing ones are reported)."""
    for exp in experiments:
        for seed in seeds:
            path = Path(runs) / exp / f"seed{seed}" / "model.pt"
            if not path.is_file():
                print(f"skipped {path}: no model (run the harness first)")
                continue
            yield exp, seed, path


def feature_model(path: str | Path) -> tuple[Any, Any]:
    """``(model in eval mode, ModelSpec)`` of a trained scwm checkpoint, or of an initial-weights file in a
    fresh network: a model-zoo file in the shape its spec names, bare backbone weights in the ``synthetic``
    preset's shape. The part branch is then untrained (feature-map analyses read only the trunk)."""
    from scwm.models import CheckpointError, ModelSpec, load_model
    from scwm.models.checkpoint import read_checkpoint
    from training.config import preset_config
    from training.model_init import load_initial_weights, model_spec
    from training.zoo import ZOO_FORMAT

    try:
        stored = read_checkpoint(path)
    except CheckpointError:  # not an scwm file: backbone weights of another format
        stored = None
    if stored is not None and stored.get("format") != ZOO_FORMAT:
        model, spec = load_model(path)
        return model.eval(), spec
    spec = ModelSpec.from_dict(stored["spec"]) if stored is not None else model_spec(preset_config("synthetic"))
    model = spec.build()
    load_initial_weights(model, Path(path))
    return model.eval(), spec


def neck_cells(model: Any, feature_maps: Any) -> Any:
    """Each cell of ``feature_maps (N, C, h, w)`` through the model's global BN neck in inference mode (an affine
    map per channel, so the cells average to the image's embedding before L2 normalisation)."""
    import torch.nn.functional as F

    bn = model.global_bn
    return F.batch_norm(feature_maps.float(), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def write_outputs(results: dict[str, Any], out: str | Path, markdown: str | Path, text: str) -> None:
    """Write an analysis: its figures as JSON (atomically) and its markdown table; echo the table."""
    atomic_write_json(Path(out), results)
    Path(markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown).write_text(text + "\n")
    print(text)
