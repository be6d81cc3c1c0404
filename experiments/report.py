"""The reports: one detailed markdown file per grid (tables, verdicts, plots) and the one-table docs/RESULTS.md.

Both are generated from the grids' JSONL files alone (``experiments/results/<grid>.jsonl``); the hand-written
findings live in dated notes under ``docs/notes/`` and are linked, not pasted.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from scwm.utils import atomic_write_bytes

from .plots import plot_curves, plot_sweep, plot_table
from .registry import BY_NAME, CLAIMS, EXPERIMENTS, GRIDS, GROUPS, PAPER_TARGETS, SWEEP_NOTES, SWEEPS, TARGETS
from .runner import ROOT, display_path, flags, grid_file
from .stats import (
    Results,
    Stat,
    common_extra,
    fill_aliases,
    group_stats,
    judge,
    judge_sweep,
    load_results,
    metric_stat,
    paired_lines,
    seeds_of,
)

DOCS = ROOT / "docs"
NOTES_DIR = DOCS / "notes"
SUMMARY_PATH = DOCS / "RESULTS.md"

INTRO = ("Ours: mean ± sample standard deviation over seeds (n = number of seeds), final-epoch mAP / Rank-1 in %. "
         "The paper's numbers are for Market-1501 / MSMT17 with a SYNTH-PEDES-pretrained ResNet-50; ours come from "
         "the synthetic `market` / `msmt` worlds with a small backbone and a short schedule, so only the orderings "
         "are comparable, not the absolute values. An ordering \"holds\" when our mean difference has the paper's "
         "sign; a difference smaller than the sum of the two standard deviations is flagged as inside the spread.")


def report_path(grid: str) -> Path:
    """Where the detailed report of ``grid`` goes (its plots go to the folder of the same name)."""
    return DOCS / "results" / f"{grid}.md"


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def setup_lines(results: Results) -> list[str]:
    """One line per (target, preset, extra flags) with its number of runs and seeds."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for (target, _), runs in results.items():
        for r in runs:
            if r.get("alias_of"):
                continue
            extra = shlex.join(r["extra"]) if isinstance(r.get("extra"), list) else "?"
            groups.setdefault((target, str(r.get("preset", "?")), extra), []).append(int(r.get("seed", -1)))
    lines = []
    for (target, preset, extra), seeds in sorted(groups.items()):
        tflags = shlex.join(flags(TARGETS.get(target, {})))
        lines.append(f"- `{target}`: {len(seeds)} trained run(s), seeds {sorted(set(seeds))}: `python -m training.run "
                     f"--preset {preset} {tflags} <experiment flags> {extra} --run.seed K`".replace("  ", " "))
    return lines or ["- no runs yet"]


def start_state_lines(results: Results) -> list[str]:
    """Setup lines checking that the seeds of every experiment began from the same state.

    Seeds of one experiment have identical epoch-0 clustering when they start from the same source
    checkpoint and precision; different figures mean the runs were made from different initial weights
    (e.g. a source checkpoint re-created on another CPU) and should not be pooled."""
    checked, mixed = 0, []
    for (target, exp), runs in sorted(results.items()):
        states = {}
        for r in runs:
            st = r.get("start")
            if not r.get("alias_of") and isinstance(st, dict):
                states[int(r.get("seed", -1))] = (st["num_clusters"], round(float(st["cluster_nmi"]), 6))
        if len(states) < 2:
            continue
        checked += 1
        if len(set(states.values())) > 1:
            detail = ", ".join(f"seed {k}: {n} clusters, NMI {nmi:.4f}" for k, (n, nmi) in sorted(states.items()))
            mixed.append(f"  - `{target}/{exp}`: {detail}")
    if not checked:
        return []
    if not mixed:
        return [f"- Start state: in all {checked} experiments with two or more seeds, every seed's epoch-0 "
                "clustering is identical (the runs began from the same weights and precision)."]
    return [f"- **Start state differs** in {len(mixed)} of {checked} experiments: their seeds began from "
            "different weights or precision (epoch-0 clustering below), so their spread mixes that in:", *mixed]


def init_weights_lines(results: Results) -> list[str]:
    """Setup lines naming the initial-weights file(s) the runs began from, flagging a mixture."""
    by_file: dict[tuple[str, str], int] = {}
    unrecorded = 0
    for runs in results.values():
        for r in runs:
            if r.get("alias_of"):
                continue
            rec = r.get("init_weights")
            if isinstance(rec, dict) and rec.get("sha256"):
                key = (str(rec.get("path", "?")), str(rec["sha256"]))
                by_file[key] = by_file.get(key, 0) + 1
            else:
                unrecorded += 1
    if not by_file:
        return []
    rest = f"; {_runs(unrecorded)} made before the record did not keep it" if unrecorded else ""
    if len(by_file) == 1:
        (path, sha), n = next(iter(by_file.items()))
        return [f"- Initial weights: all {n} recorded runs began from `{path}`, SHA-256 `{sha[:16]}`{rest}."]
    return [f"- **Initial weights differ**: the runs began from {len(by_file)} different files, which must not "
            f"be pooled{rest}:", *(f"  - `{path}`, SHA-256 `{sha[:16]}`: {_runs(n)}"
                                   for (path, sha), n in sorted(by_file.items(), key=lambda kv: -kv[1]))]


def _paper_cell(exp_name: str, target: str) -> tuple[str, str]:
    p = BY_NAME[exp_name].paper.get(target)
    return (f"{p[0]:.1f}", f"{p[1]:.1f}") if p else ("—", "—")


def _targets_to_show(results: Results) -> list[str]:
    found = {t for t, _ in results}
    return [*PAPER_TARGETS, *sorted(found - set(PAPER_TARGETS))]


def _table_lines(group: str, target: str, results: Results) -> list[str]:
    """The markdown table of one group on one target, then its orderings or sweep verdict."""
    extra_cols = group == "table2" or group in SWEEPS
    head = "| experiment | n | mAP | R1 | paper mAP | paper R1 |"
    rule = "| --- | --- | --- | --- | --- | --- |"
    if extra_cols:
        head += " pseudo-mask mIoU | pseudo-mask fg IoU |"
        rule += " --- | --- |"
    lines = [head, rule]
    stats = group_stats(group, target, results, CLAIMS.get(group, ()))
    for e in (e for e in EXPERIMENTS if e.group == group):
        runs = results.get((target, e.name), [])
        m, r1 = stats[e.name], metric_stat(runs, "rank1")
        pm, pr = _paper_cell(e.name, target)
        alias = " ‡" if any(r.get("alias_of") for r in runs) else ""
        if m is None:
            row = f"| {e.label} | 0 | not run | not run | {pm} | {pr} |"
        else:
            row = f"| {e.label}{alias} | {m.n} | {m.fmt()} | {r1.fmt() if r1 else '—'} | {pm} | {pr} |"
        if extra_cols:
            cells = []
            for key in ("pseudo_mask_miou", "pseudo_mask_fg_iou"):
                s = metric_stat(runs, key)
                cells.append(s.fmt() if s else ("not run" if m is None else "—"))
            row += f" {cells[0]} | {cells[1]} |"
        lines.append(row)
    if group in CLAIMS:
        lines += ["", "Orderings:", ""]
        lines += [f"- {judge(c, target, stats).fmt()}" for c in CLAIMS[group]]
    else:
        lines += ["", f"- {judge_sweep(group, target, stats).fmt()}"]
        lines += [f"- {t}" for t in paired_lines(group, target, stats, results)]
    return lines


def _check_scope(groups: Sequence[str] | None) -> None:
    unknown = sorted(set(groups or ()) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")


def build_report(grid_path: Path, out: Path, plots_dir: Path, note: Path | None = None,
                 groups: Sequence[str] | None = None, targets: Sequence[str] | None = None) -> str:
    """Render the detailed report of one grid file (and write its plots); returns the markdown.

    ``note``: the hand-written findings about the grid, linked after the setup. ``groups`` / ``targets``:
    report only these tables and targets (default: all, missing runs as "not run")."""
    _check_scope(groups)
    results = load_results(grid_path)
    fill_aliases(results)
    targets = list(targets) if targets else _targets_to_show(results)
    grid = grid_path.stem
    lines = [
        "# Results: the paper's experiments on the synthetic world",
        "",
        f"Generated by `python -m experiments report` from `{display_path(grid_path)}` (one line per run; runs: "
        f"`python -m experiments run --grid {grid} ...`). {INTRO}",
        "",
        "## Setup",
        "",
        *setup_lines(results),
        *start_state_lines(results),
        *init_weights_lines(results),
    ]
    if note is not None:
        lines += ["", f"Findings (hand-written): [{display_path(note)}]({_rel(note, out.parent)})."]
    for group, title in GROUPS.items():
        if groups and group not in groups:
            continue
        lines += ["", f"## {title}", ""]
        png = plots_dir / (f"fig5_{group}.png" if group in SWEEPS else f"{group}.png")
        drawn = (plot_sweep if group in SWEEPS else plot_table)(group, results, targets, png)
        if drawn:
            lines += [f"![{title}]({_rel(png, out.parent)})", ""]
        if group in SWEEPS:
            lines += [SWEEP_NOTES[group], ""]
        for target in targets:
            lines += [f"### {PAPER_TARGETS.get(target, target)} (`{target}`)", ""]
            lines += _table_lines(group, target, results)
            lines.append("")
            if group in ("table1", "table2"):
                png = plots_dir / f"{group}_{target}_epochs.png"
                if plot_curves(group, results, target, png):
                    lines += [f"![{title}: per-epoch parsing quality and NMI, {target}]({_rel(png, out.parent)})", ""]
    lines += ["---", "",
              "‡ identical configuration to another experiment (e.g. Table 3 \"weighted\" = Table 1 \"+L_WM + "
              "L_SCC\"): trained once, result shared. "
              "† the paper's Cluster-Contrast numbers (Table 4) use an ImageNet-pretrained ResNet-50, not the "
              "SYNTH-PEDES backbone. Parsing metrics are those of the last epoch's clustering stage (pseudo masks "
              "against the synthetic ground-truth part masks); \"—\" = not applicable (stripes / no parts).", ""]
    text = "\n".join(lines)
    atomic_write_bytes(out, text.encode())
    return text


def _anchor(title: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def _run_command(grid: str, target: str, seeds: list[int], names: Sequence[str]) -> str:
    return (f"`python -m experiments run --grid {grid} --targets {target} --seeds {' '.join(map(str, seeds))} "
            f"--only {' '.join(names)}`")


def _ours(stats: dict[str, Stat | None], a: str, b: str) -> str:
    sa, sb = stats.get(a), stats.get(b)
    if sa is None or sb is None:
        return "not run"
    return f"{sa.fmt()} vs {sb.fmt()}" + (f" (n = {min(sa.n, sb.n)})" if sa.sd is not None and sb.sd is not None
                                          else "")


def start_rows(grid: str, target: str, results: Results, where: str) -> list[str]:
    """One row per experiment whose runs recorded their initial model's figures: does training beat its own
    start (direct transfer)? The start is deterministic, so the spread is the runs' alone."""
    spec = GRIDS[grid]
    rows = []
    for exp in EXPERIMENTS:
        runs = [r for r in results.get((target, exp.name), []) if not r.get("alias_of")]
        initial = {(r.get("start") or {}).get("initial_mAP") for r in runs}
        if not runs or None in initial or len(initial) != 1 or (spec.groups and exp.group not in spec.groups):
            continue
        start = float(next(iter(initial)))
        final = metric_stat(runs, "mAP")
        if final is None:
            continue
        diff = final.mean - start
        spread = final.sd
        note = (" (single seed, spread unknown)" if spread is None else
                " (difference inside the spread)" if abs(diff) < spread else "")
        rows.append(f"| {exp.label} > direct transfer (its own start, no target training) | `{target}` | "
                    f"{_run_command(grid, target, seeds_of(results, target, [exp.name]), [exp.name])} | "
                    f"{final.fmt()} vs {100 * start:.1f} ({100 * diff:+.1f}; n = {final.n}) | expected | "
                    f"{'yes' if diff > 0 else 'no'}{note} | {where} | — |")
    return rows


def summary_rows(grid: str, results: Results, report: Path, out: Path) -> list[str]:
    """The rows of docs/RESULTS.md for one grid: one per claim (or sweep) and target."""
    spec = GRIDS[grid]
    targets = list(spec.targets) if spec.targets else _targets_to_show(results)
    rows = []
    for target in targets:
        rows += start_rows(grid, target, results, f"[{grid}]({_rel(report, out.parent)})")
    for group, title in GROUPS.items():
        if spec.groups and group not in spec.groups:
            continue
        png = report.parent / grid / (f"fig5_{group}.png" if group in SWEEPS else f"{group}.png")
        plot = f"[plot]({_rel(png, out.parent)})" if png.is_file() else "—"
        where = f"[{grid}]({_rel(report, out.parent)}#{_anchor(title)})"
        for target in targets:
            stats = group_stats(group, target, results, CLAIMS.get(group, ()))
            if group in CLAIMS:
                for claim in CLAIMS[group]:
                    v = judge(claim, target, stats)
                    names = (v.a.name, v.b.name)
                    if _ours(stats, *names) == "not run":
                        continue  # the grid's report lists what was not run
                    rows.append(f"| {v.claim} | `{target}` | "
                                f"{_run_command(grid, target, seeds_of(results, target, names), names)} | "
                                f"{_ours(stats, *names)} | {v.paper} | {v.answer}{v.note} | {where} | {plot} |")
            else:
                sv = judge_sweep(group, target, stats)
                if not sv.answer:
                    continue
                seeds = seeds_of(results, target, [e.name for e in EXPERIMENTS if e.group == group])
                rows.append(f"| {title}: {sv.claim} | `{target}` | {_run_command(grid, target, seeds, (group,))} | "
                            f"{sv.ours} | Fig. 5 | {sv.answer or 'not run'} | {where} | {plot} |")
    return rows


def build_summary(grids: Sequence[str], results_dir: Path, out: Path = SUMMARY_PATH) -> str:
    """Render docs/RESULTS.md: one table, claim -> experiments -> command -> figures, over all ``grids``."""
    rows, extras = [], []
    for grid in grids:
        results = load_results(grid_file(results_dir, grid))
        fill_aliases(results)
        rows += summary_rows(grid, results, report_path(grid), out)
        extra = common_extra(results)
        note = NOTES_DIR / GRIDS[grid].note
        flags = f"`--extra \"{shlex.join(extra or [])}\"`" if results else "no runs yet"
        extras.append(f"- `{grid}`: {GRIDS[grid].summary}; {flags}; "
                      f"[details]({_rel(report_path(grid), out.parent)}), "
                      f"[notes]({_rel(note, out.parent)}).")
    lines = [
        "# Results",
        "",
        "Generated by `python -m experiments report` from `experiments/results/<grid>.jsonl` (one line per run). "
        "Each row is a claim of the paper (or an expectation of ours), the experiments and command that test it, "
        "and the figure: our mAP in % (mean ± sample sd over n seeds) against the paper's. The paper's numbers "
        "are for Market-1501 / MSMT17 with a SYNTH-PEDES-pretrained ResNet-50, ours for the synthetic `market` / "
        "`msmt` worlds with a small backbone and a short schedule: only the orderings compare. Grids made from "
        "different start checkpoints are never pooled.",
        "",
        "| claim | target | command | ours (mAP %) | paper (mAP %) | holds | details | plot |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Claims that a grid has not run are left out here; its report lists them. "
        "Grids (each command also takes the grid's `--extra` flags, and `--jobs 2` on 2 cores):",
        "",
        *extras,
        "",
    ]
    text = "\n".join(lines)
    atomic_write_bytes(out, text.encode())
    return text
