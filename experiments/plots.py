"""The report's figures: one bar chart per table, one plot per Fig. 5 sweep, per-epoch parsing curves."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from scwm.utils import atomic_write_bytes

from .registry import EXPERIMENTS, GROUPS, PAPER_TARGETS, SWEEPS
from .stats import Results, epoch_curves, mean_sd, metric_stat


def plot_sweep(group: str, results: Results, targets: list[str],
                path: Path) -> bool:
    """mAP and pseudo-mask mIoU against the swept value (mean ± sd error bars); False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = [e for e in EXPERIMENTS if e.group == group]
    series = []
    for target in targets:
        pts = []
        for e in exps:
            runs = results.get((target, e.name), [])
            m, q = metric_stat(runs, "mAP"), metric_stat(runs, "pseudo_mask_miou")
            if m is not None:
                pts.append((e.param, m, q))
        if pts:
            series.append((target, pts))
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for target, pts in series:
        xs = [p[0] for p in pts]
        for ax, idx in ((axes[0], 1), (axes[1], 2)):
            sub = [(x, p[idx]) for x, p in zip(xs, pts, strict=True) if p[idx] is not None]
            if sub:
                ax.errorbar([s[0] for s in sub], [100 * s[1].mean for s in sub],
                            yerr=[100 * (s[1].sd or 0.0) for s in sub], marker="o", capsize=3,
                            label=PAPER_TARGETS.get(target, target))
    symbol = SWEEPS[group]
    for ax, title in ((axes[0], "mAP (%)"), (axes[1], "pseudo-mask part mIoU (%)")):
        ax.set_xlabel(symbol)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{GROUPS[group]} (synthetic world, mean ± sd over seeds)", fontsize=10)
    _save_fig(fig, path)
    return True


def _save_fig(fig: Any, path: Path, tight: bool = True) -> None:
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_table(group: str, results: Results, targets: list[str],
                path: Path) -> bool:
    """Horizontal bars of mAP (mean ± sd, seeds as dots) per experiment of a table; False if nothing ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = [e for e in EXPERIMENTS if e.group == group]
    shown = [t for t in targets if any(results.get((t, e.name)) for e in exps)]
    if not shown:
        return False
    fig, axes = plt.subplots(1, len(shown), figsize=(max(7.0, 4.6 * len(shown)), 0.45 * len(exps) + 1.4),
                             squeeze=False)
    for ax, target in zip(axes[0], shown, strict=True):
        for y, e in enumerate(exps):
            vals = [100 * float(r["final"]["mAP"]) for r in results.get((target, e.name), [])
                    if "mAP" in (r.get("final") or {})]
            if not vals:
                continue
            st = mean_sd([v / 100 for v in vals])
            assert st is not None
            ax.barh(y, 100 * st.mean, xerr=100 * (st.sd or 0.0), color="#7aa6d6", capsize=3)
            ax.plot(vals, [y] * len(vals), "k.", ms=4)
        ax.set_yticks(range(len(exps)), [e.label for e in exps], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mAP (%)")
        ax.set_title(PAPER_TARGETS.get(target, target), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{GROUPS[group]} (bars: mean ± sd, dots: seeds)", fontsize=10)
    _save_fig(fig, path)
    return True


CURVE_KEYS = (("pseudo_mask_fg_iou", "pseudo-mask fg IoU"), ("pseudo_mask_miou", "pseudo-mask part mIoU"),
              ("fg_norm_auc", "feature-norm AUC, body vs background"), ("cluster_nmi", "pseudo-label NMI"))


def plot_curves(group: str, results: Results, target: str,
                 path: Path) -> bool:
    """Parsing quality and pseudo-label NMI per epoch (mean over seeds) for a table's experiments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = [e for e in EXPERIMENTS if e.group == group]
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(15, 3.8))
    drawn: dict[str, Any] = {}
    for ax, (key, title) in zip(axes, CURVE_KEYS, strict=True):
        for i, e in enumerate(exps):  # one colour per experiment in every panel
            ys = epoch_curves(results.get((target, e.name), []), key)
            if ys:
                (line,) = ax.plot(range(1, len(ys) + 1), ys, marker=".", color=colors[i % len(colors)])
                drawn.setdefault(e.label, line)
        ax.set_xlabel("epoch (clustering stage)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return False
    labels = [e.label for e in exps if e.label in drawn]  # table order
    fig.legend([drawn[lab] for lab in labels], labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.subplots_adjust(bottom=0.3)
    fig.suptitle(f"{GROUPS[group]}: {PAPER_TARGETS.get(target, target)} (mean over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _save_fig(fig, path, tight=False)
    return True

