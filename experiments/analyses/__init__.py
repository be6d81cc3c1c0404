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
    """``(model in eval mode, ModelSpec)`` of a trained scwm checkpoint, or of any initial-weights file (the
    model-zoo backbone, a source-pretraining output) in the ``synthetic`` preset's model with a fresh part branch
    (feature-map analyses read only the trunk)."""
    import torch

    from scwm.models import CheckpointError, load_model
    from scwm.models.checkpoint import read_checkpoint

    try:
        model, spec = load_model(path)
        return model.eval(), spec
    except CheckpointError:
        from training.config import preset_config
        from training.model_init import build_model, model_spec

        overrides: dict[str, dict[str, Any]] = {"model": {"weights": str(path)}, "data": {"num_workers": 0}}
        try:  # a zoo file names its backbone and input size; a bare backbone state dict takes the preset's
            stored = read_checkpoint(path)["spec"]
        except CheckpointError:
            stored = {}
        for section, key in (("model", "backbone"), ("model", "num_parts"), ("data", "height"), ("data", "width")):
            if key in stored:
                overrides[section][key] = stored[key]
        cfg = preset_config("synthetic", overrides)
        return build_model(cfg, torch.device("cpu")).eval(), model_spec(cfg)


def write_outputs(results: dict[str, Any], out: str | Path, markdown: str | Path, text: str) -> None:
    """Write an analysis: its figures as JSON (atomically) and its markdown table; echo the table."""
    atomic_write_json(Path(out), results)
    Path(markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown).write_text(text + "\n")
    print(text)
