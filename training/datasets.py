"""The training datasets: the configured one, and the synthetic worlds generated on first use."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from scwm.data import ReIDDataset, load_dataset
from scwm.utils import exclusive_lock

from .config import TrainConfig

log = logging.getLogger("scwm")


def ensure_synthetic(root: str | Path, preset: str, seed: int, progress: bool = True) -> Path:
    """Generate the synthetic dataset at ``root`` unless a complete one (meta.json) is there. A lock file
    next to ``root`` makes concurrent callers (parallel experiments, DDP ranks) wait for one generation
    instead of all writing (and clearing) the same folder."""
    root = Path(root)
    with exclusive_lock(root.parent / f".{root.name}.lock"):
        return _ensure_synthetic_locked(root, preset, seed, progress)


def _ensure_synthetic_locked(root: Path, preset: str, seed: int, progress: bool) -> Path:
    meta = root / "meta.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("preset") != preset or info.get("seed") != seed:
            raise ValueError(f"{root} holds synthetic preset {info.get('preset')!r} seed {info.get('seed')}, "
                             f"not {preset!r} seed {seed}; choose another data root")
        _warn_if_stale(root, preset, info.get("config"))
        return root
    from scwm.data.synthetic import generate

    log.info("generating synthetic dataset %r (seed %d) into %s", preset, seed, root)
    generate(preset, root, seed=seed, progress=progress, overwrite=True)
    return root


def _warn_if_stale(root: Path, preset: str, recorded: dict | None) -> None:
    """Warn when a synthetic dataset on disk was generated with other settings than the current preset (an
    older version of the preset, or a generator knob such as ``--track-background``); it is used as is."""
    from scwm.data.synthetic import preset as synthetic_preset

    if recorded is None:
        return
    current = synthetic_preset(preset).echo()
    diff = sorted(k for k in set(current) | set(recorded) if current.get(k) != recorded.get(k))
    if diff:
        log.warning("%s was generated with settings that differ from the current %r preset (%s); it is used as "
                    "is. Delete it (or pass another data.root) to get the current world.", root, preset,
                    ", ".join(diff))


def load_train_dataset(cfg: TrainConfig) -> ReIDDataset:
    """The configured dataset, generating the synthetic one first when needed."""
    d = cfg.data
    if d.kind == "synthetic":
        ensure_synthetic(d.root, d.synthetic_preset, d.synthetic_seed, cfg.run.progress)
    kwargs = {"camera_regex": d.camera_regex} if d.kind == "folder" else {}
    return load_dataset(d.kind, d.root, **kwargs)
