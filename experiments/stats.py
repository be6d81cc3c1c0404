"""Recorded runs as the report reads them: loading, aliases, mean ± sd over seeds, and the verdicts."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.config import PRESETS

from .registry import BY_NAME, EXPERIMENTS, PAIRED_SWEEPS, PAPER_BEST, TARGETS, Claim, Experiment
from .runner import Record, extra_overrides, read_records, run_config

Results = dict[tuple[str, str], list[Record]]
"""Recorded runs by (target, experiment), one per seed in seed order."""


@dataclass
class Stat:
    """Mean and sample standard deviation (None for n < 2) of one metric over seeds."""

    mean: float
    sd: float | None
    n: int

    def fmt(self, scale: float = 100.0) -> str:
        if self.sd is None:
            return f"{scale * self.mean:.1f} (n=1)"
        return f"{scale * self.mean:.1f} ± {scale * self.sd:.1f}"


def mean_sd(values: Sequence[float]) -> Stat | None:
    """Mean and sample (n-1) standard deviation; None for no values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    n = len(vals)
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return Stat(mean, sd, n)


def load_results(path: Path) -> Results:
    """All runs of a grid file, keyed by (target, experiment), one per seed (a later line wins)."""
    out: dict[tuple[str, str], dict[int, Record]] = {}
    for r in read_records(path):
        if not all(k in r for k in ("target", "experiment", "seed")):
            print(f"warning: {path}: a line without target/experiment/seed, ignored", file=sys.stderr)
            continue
        out.setdefault((r["target"], r["experiment"]), {})[int(r["seed"])] = r
    return {k: [v[s] for s in sorted(v)] for k, v in out.items()}


def fill_aliases(results: Results) -> None:
    """Add missing (target, experiment, seed) entries whose resolved config equals a finished run's.

    Both configs are resolved with today's presets, so a later change of a default does not break the aliases
    of recorded runs (their own fingerprints record what they ran)."""
    cache: dict[tuple[str, str, str, tuple[str, ...], int], str] = {}

    def current(target: str, exp_name: str, r: Record) -> str:
        key = (target, exp_name, r["preset"], tuple(r["extra"]), int(r["seed"]))
        if key not in cache:
            try:
                cfg = run_config(r["preset"], target, BY_NAME[exp_name], int(r["seed"]), Path("unused"),
                                 extra_overrides(r["extra"]))
                cache[key] = cfg.fingerprint()
            except (ValueError, KeyError):
                cache[key] = ""
        return cache[key]

    for target in sorted({t for t, _ in results}):
        done = [r for (t, _), runs in results.items() if t == target for r in runs
                if r.get("fingerprint") and isinstance(r.get("extra"), list) and r.get("preset") in PRESETS]
        for exp in EXPERIMENTS:
            have = {int(r.get("seed", -1)) for r in results.get((target, exp.name), [])}
            for r in done:
                seed = int(r["seed"])
                if seed in have or target not in TARGETS:
                    continue
                mine = current(target, exp.name, r)
                if mine and mine == current(target, r["experiment"], r):
                    alias = {**r, "experiment": exp.name, "alias_of": f"{target}/{r['experiment']}/seed{seed}"}
                    results.setdefault((target, exp.name), []).append(alias)
                    have.add(seed)
    for key, runs in results.items():
        results[key] = sorted(runs, key=lambda r: int(r.get("seed", -1)))


def metric_stat(runs: list[Record], key: str) -> Stat | None:
    """Stat of ``final[key]`` or, failing that, ``last_epoch[key]`` over runs."""
    vals = []
    for r in runs:
        v = (r.get("final") or {}).get(key, (r.get("last_epoch") or {}).get(key))
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return mean_sd(vals)


def epoch_curves(runs: list[Record], key: str) -> list[float] | None:
    """Per-epoch mean over seeds of ``key`` from each run's per-epoch records (None if none has it)."""
    per_seed = []
    for r in runs:
        vals = [float(x[key]) for x in r.get("per_epoch") or [] if key in x]
        if vals:
            per_seed.append(vals)
    if not per_seed:
        return None
    n = min(len(v) for v in per_seed)
    return [sum(v[i] for v in per_seed) / len(per_seed) for i in range(n)]


def spread_of(sa: Stat, sb: Stat) -> float | None:
    """The spread of two stats (sum of their standard deviations); None when either has one seed."""
    return None if sa.sd is None or sb.sd is None else sa.sd + sb.sd


@dataclass
class Verdict:
    """A claim judged on one target: ``a`` > ``b`` (or ``a`` ≈ ``b`` for a tie in the paper)."""

    a: Experiment
    b: Experiment
    claim: str
    """``"A > B"`` (``≈`` for a tie in the paper)."""
    paper: str
    """``"paper x vs y"``, or where the claim comes from when the paper has no numbers for it."""
    sa: Stat | None
    sb: Stat | None
    answer: str = "not run"
    """``yes``, ``no`` or ``not run``."""
    note: str = ""

    @property
    def text(self) -> str:
        return f"{self.claim} ({self.paper})"

    def fmt(self) -> str:
        if self.sa is None or self.sb is None:
            return f"{self.text}: not run"
        return f"{self.text}: {self.answer}{self.note} — ours {100 * self.sa.mean:.1f} vs {100 * self.sb.mean:.1f}"


def judge(claim: Claim, target: str, stats: dict[str, Stat | None]) -> Verdict:
    """Whether ``claim`` holds on ``target`` given mAP stats by experiment name."""
    a, b = BY_NAME[claim.a], BY_NAME[claim.b]
    pa, pb = a.paper.get(target), b.paper.get(target)
    if claim.source == "paper" and pa and pb and pa[0] < pb[0]:
        a, b, pa, pb = b, a, pb, pa  # orient the claim as the paper's numbers on this target
    tie = claim.source == "paper" and pa is not None and pb is not None and pa[0] == pb[0]
    text = f"{a.label} {'≈' if tie else '>'} {b.label}"
    if pa and pb:
        paper = f"paper {pa[0]:.1f} vs {pb[0]:.1f}"
    else:
        paper = "paper's claim" if claim.source == "paper" else "expected; not in the paper"
    sa, sb = stats.get(a.name), stats.get(b.name)
    if sa is None or sb is None:
        return Verdict(a, b, text, paper, sa, sb)
    diff = sa.mean - sb.mean
    spread = spread_of(sa, sb)
    inside = spread is not None and abs(diff) < spread
    if tie:
        ans = "yes" if inside else "no"
    else:
        ans = "yes" if diff > 0 else "no"
    if spread is None:
        note = " (single seed, spread unknown)"
    elif inside and not tie:
        note = " (difference inside the spread)"
    else:
        note = ""
    return Verdict(a, b, text, paper, sa, sb, ans, note)


def verdict(claim: Claim, target: str, stats: dict[str, Stat | None]) -> str:
    """``"A > B (paper x vs y): yes|no [(difference inside the spread)]"``, or why it cannot be judged."""
    return judge(claim, target, stats).fmt()


@dataclass
class SweepVerdict:
    """The paper's statement about a sweep, whether our best value agrees (``yes``/``no``), and our figures."""

    claim: str
    answer: str
    ours: str

    def fmt(self) -> str:
        return f"{self.claim}: {self.answer} — {self.ours}" if self.answer else self.ours


def judge_sweep(group: str, target: str, stats: dict[str, Stat | None]) -> SweepVerdict:
    """Whether our best value of a sweep agrees with the paper's statement about it."""
    params = [e.param for e in EXPERIMENTS if e.group == group]
    pbest = PAPER_BEST.get(group, {}).get(target)
    claim = (f"paper best l = {pbest:g}" if pbest is not None
             else "paper: both extremes are worse (interior optimum)")
    exps = [e for e in EXPERIMENTS if e.group == group and stats.get(e.name) is not None]
    if len(exps) < 2:
        return SweepVerdict(claim, "", "not run (fewer than 2 values)")
    ranked = sorted(exps, key=lambda e: stats[e.name].mean, reverse=True)  # type: ignore[union-attr]
    best, second = ranked[0], ranked[1]
    sb, s2 = stats[best.name], stats[second.name]
    assert sb is not None and s2 is not None
    close = _margin_note(best, [second], stats).startswith(" (inside")
    spread = f"; runner-up {second.label} within the spread" if close else ""
    ours = f"ours best {best.label} ({100 * sb.mean:.1f}) of {len(exps)} values run{spread}"
    if pbest is not None:
        return SweepVerdict(claim, "yes" + _margin_note(best, [second], stats) if best.param == pbest else "no",
                            ours)
    ends = (min(params), max(params))  # type: ignore[type-var]
    if best.param in ends:
        return SweepVerdict(claim, "no", ours)
    run_ends = [e for e in exps if e.param in ends]
    note = " (an extreme not run)" if len(run_ends) < 2 else _margin_note(best, run_ends, stats)
    return SweepVerdict(claim, "yes" + note, ours)


def _margin_note(best: Experiment, others: list[Experiment], stats: dict[str, Stat | None]) -> str:
    """Why a sweep's "yes" is not a result: ``best`` is not above each of ``others`` by more than the spread."""
    sb = stats[best.name]
    assert sb is not None
    for e in others:
        so = stats[e.name]
        assert so is not None
        spread = spread_of(sb, so)
        if spread is None:
            return " (single seed, spread unknown)"
        if sb.mean - so.mean < spread:
            return f" (inside the spread of {e.label})"
    return ""


def paired_lines(group: str, target: str, stats: dict[str, Stat | None], results: Results) -> list[str]:
    """For a sweep of :data:`PAIRED_SWEEPS`: each run point against the other sweep's point at the same value."""
    other = PAIRED_SWEEPS.get(group)
    if other is None:
        return []
    by_param = {e.param: e for e in EXPERIMENTS if e.group == other}
    out = []
    for e in EXPERIMENTS:
        sa = stats.get(e.name) if e.group == group else None
        twin = by_param.get(e.param)
        if sa is None or twin is None:
            continue
        sb = metric_stat(results.get((target, twin.name), []), "mAP")
        if sb is None:
            out.append(f"{e.label} vs {twin.label}: {twin.label} not run")
            continue
        diff = sa.mean - sb.mean
        spread = spread_of(sa, sb)
        note = (" (single seed, spread unknown)" if spread is None
                else " (difference inside the spread)" if abs(diff) < spread else " (outside the spread)")
        out.append(f"{e.label} vs {twin.label}: {sa.fmt()} vs {sb.fmt()}, difference {100 * diff:+.1f}{note}")
    return out


def group_stats(group: str, target: str, results: Results, claims: Sequence[Claim] = ()) -> dict[str, Stat | None]:
    """mAP stats of a group's experiments and of every experiment its claims name."""
    names = [e.name for e in EXPERIMENTS if e.group == group] + [n for c in claims for n in (c.a, c.b)]
    return {n: metric_stat(results.get((target, n), []), "mAP") for n in dict.fromkeys(names)}


def seeds_of(results: Results, target: str, names: Sequence[str]) -> list[int]:
    """The seeds recorded for experiments ``names`` on ``target``."""
    return sorted({int(r["seed"]) for n in names for r in results.get((target, n), [])})


def common_extra(results: Results) -> list[str] | None:
    """The ``--extra`` flags shared by every trained run (None if they differ)."""
    extras = {tuple(r.get("extra") or ()) for runs in results.values() for r in runs if not r.get("alias_of")}
    return list(next(iter(extras))) if len(extras) == 1 else None

