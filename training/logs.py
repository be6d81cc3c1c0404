"""Run logs: logging setup, the per-epoch metrics log (JSONL) and its plot."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any


def setup_logging(out_dir: Path | None = None, rank: int = 0) -> None:
    """Log INFO to stderr (rank 0 only) and to ``out_dir/train.log``."""
    level = logging.INFO if rank == 0 else logging.WARNING
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out_dir / "train.log"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers,
                        force=True)


class MetricsLog:
    """Append-only JSONL file with one record per epoch (plot with :func:`plot_metrics`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs > ``epoch`` (after resuming from an earlier checkpoint)."""
        keep = [r for r in self.records() if r.get("epoch", -1) <= epoch]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def plot_metrics(jsonl: Path, png: Path) -> Path | None:
    """Plot every numeric per-epoch series of a metrics log into a grid of small charts."""
    records = MetricsLog(jsonl).records()
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k, v in r.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)})
    cols = 4
    rows = max(1, (len(keys) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)
    return png
