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


def write_outputs(results: dict[str, Any], out: str | Path, markdown: str | Path, text: str) -> None:
    """Write an analysis: its figures as JSON (atomically) and its markdown table; echo the table."""
    atomic_write_json(Path(out), results)
    Path(markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown).write_text(text + "\n")
    print(text)
