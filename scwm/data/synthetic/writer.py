"""Dataset planning and writing in the Market-1501 layout (images, part masks, annotations, meta.json)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from scwm.utils import atomic_write_bytes, atomic_write_json

from .attributes import ATTRIBUTES_FILE, attributes_payload
from .config import CameraStyle, SyntheticConfig, camera_styles, preset, stable_code
from .identity import Identity, make_twin, sample_identity
from .render import PART_NAMES, Track, render_with_info, sample_shot, sample_track

GENERATOR_VERSION = "1.0.0"
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_OWN_OUTPUTS = ("bounding_box_train", "bounding_box_test", "query", "masks", "annotations.jsonl",
                "identities.json", ATTRIBUTES_FILE)
_MARKER = ".scwm_synthetic_in_progress.json"


class OutputDirError(ValueError):
    """The output directory holds something the generator must not overwrite."""


@dataclass(frozen=True)
class ImageJob:
    """One image to render: where it goes, whom it shows, and its tracklet context."""

    split: str  # "train", "query" or "gallery"
    pid: int
    cam: int  # 0-based
    frame: int
    identity: Identity
    track: Track
    step: int

    @property
    def stem(self) -> str:
        return f"{self.pid:04d}_c{self.cam + 1}s1_{self.frame:06d}_00"

    @property
    def image_rel(self) -> str:
        return f"{SPLIT_DIRS[self.split]}/{self.stem}.jpg"

    @property
    def mask_rel(self) -> str:
        return f"masks/{SPLIT_DIRS[self.split]}/{self.stem}.png"


@dataclass
class Plan:
    config: SyntheticConfig
    seed: int
    cameras: list[CameraStyle]
    jobs: list[ImageJob]
    identities: dict[str, list[tuple[int, Identity]]]  # split -> [(pid, identity)], twin_of = list index


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


def _as_config(preset_or_config: str | SyntheticConfig) -> SyntheticConfig:
    if isinstance(preset_or_config, SyntheticConfig):
        return preset_or_config
    return preset(preset_or_config)


def build_identities(config: SyntheticConfig, seed: int, split: str, n: int) -> list[Identity]:
    """``n`` identities of ``split``; the first ``round(n * twin_fraction / 2)`` pairs are near-twins.

    The stream is keyed by (seed, identity space, preset name, split), so different presets and splits
    never share identities (and the ``source`` space never shares them with the targets).
    """
    rng = _rng(seed, stable_code("identities"), stable_code(config.identity_space), stable_code(config.name),
               stable_code(split))
    kinds = tuple(config.twin_kind_weights)
    weights = np.asarray([config.twin_kind_weights[k] for k in kinds], float)
    n_pairs = min(n // 2, int(round(n * config.twin_fraction / 2)))
    ids: list[Identity] = []
    for _ in range(n_pairs):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        base, twin = make_twin(sample_identity(rng, config.identity_space), kind, rng, base_index=len(ids))
        ids += [base, twin]
    while len(ids) < n:
        ids.append(sample_identity(rng, config.identity_space))
    return ids


def plan_dataset(preset_or_config: str | SyntheticConfig, seed: int = 0) -> Plan:
    """Decide every image (identity, camera, frame, tracklet) without rendering anything."""
    config = _as_config(preset_or_config)
    cams = camera_styles(config, seed)
    jobs: list[ImageJob] = []
    identities: dict[str, list[tuple[int, Identity]]] = {}
    name_code = stable_code(config.name)
    next_pid = config.pid_offset + 1
    for split, n_ids, cams_range in (("train", config.num_train_ids, config.train_cams_per_id),
                                     ("test", config.num_test_ids, config.test_cams_per_id)):
        ids = build_identities(config, seed, split, n_ids)
        order = _rng(seed, stable_code("pids"), name_code, stable_code(split)).permutation(n_ids)
        pids = np.empty(n_ids, int)
        pids[order] = np.arange(next_pid, next_pid + n_ids)
        next_pid += n_ids
        if next_pid > 10000:
            raise ValueError(f"pids exceed 9999 (pid_offset={config.pid_offset}, {n_ids} ids): file names use 4 digits")
        identities[split] = [(int(pids[i]), idn) for i, idn in enumerate(ids)]
        for i in np.argsort(pids):
            rng = _rng(seed, stable_code("appearances"), name_code, stable_code(split), int(i))
            n_cams = int(rng.integers(cams_range[0], cams_range[1] + 1))
            cam_list = np.sort(rng.choice(config.num_cameras, size=n_cams, replace=False))
            query_cams: set[int] = set()
            if split == "test":
                lo, hi = config.query_cams_per_id
                nq = min(int(rng.integers(lo, hi + 1)), n_cams)
                query_cams = {int(c) for c in rng.choice(cam_list, size=nq, replace=False)}
            for cam in cam_list:
                cam = int(cam)
                track = sample_track(cams[cam], rng, config.track_background)
                n_img = int(rng.integers(config.images_per_track[0], config.images_per_track[1] + 1))
                frame = int(rng.integers(1, 20000)) * 10
                q_idx = int(rng.integers(n_img)) if cam in query_cams else -1
                for k in range(n_img):
                    sp = "train" if split == "train" else ("query" if k == q_idx else "gallery")
                    jobs.append(ImageJob(sp, int(pids[i]), cam, frame, ids[i], track, k))
                    frame += int(rng.integers(3, 40))
    rng = _rng(seed, stable_code("distractors"), name_code)
    used: set[tuple[int, int]] = set()
    for _ in range(config.num_distractors):
        cam = int(rng.integers(config.num_cameras))
        frame = int(rng.integers(1, 999999))
        while (cam, frame) in used:
            frame = frame % 999999 + 1
        used.add((cam, frame))
        jobs.append(ImageJob("gallery", 0, cam, frame, sample_identity(rng, config.identity_space),
                             sample_track(cams[cam], rng, config.track_background), 0))
    return Plan(config, seed, cams, jobs, identities)


# ----------------------------------------------------------------------------------------------------------
# rendering jobs (also in worker processes)

_WORKER: dict = {}


def _init_worker(config: SyntheticConfig, seed: int, cams: list[CameraStyle], out: str) -> None:
    _WORKER.update(config=config, seed=seed, cams=cams, out=Path(out))


def _encode(img: np.ndarray, mask: np.ndarray, quality: int) -> tuple[bytes, bytes]:
    import io

    b1, b2 = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(b1, format="JPEG", quality=quality)
    Image.fromarray(mask).save(b2, format="PNG")
    return b1.getvalue(), b2.getvalue()


def render_job(job: ImageJob, config: SyntheticConfig, seed: int, cams: list[CameraStyle]
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one planned image deterministically from ``(seed, preset, split, pid, cam, frame)``."""
    rng = _rng(seed, stable_code("image"), stable_code(config.name), stable_code(job.split), job.pid, job.cam,
               job.frame)
    cam = cams[job.cam]
    shot = sample_shot(cam, config, rng, job.track, job.step)
    img, mask, info = render_with_info(job.identity, cam, shot, (config.image_height, config.image_width), rng)
    info.update(view=shot.view, cut_top=round(shot.cut_top, 4), cut_bottom=round(shot.cut_bottom, 4),
                occluder=None if shot.occluder is None else shot.occluder.kind,
                background_person=shot.bg_person is not None, occluded=round(info["occluded"], 4))
    return img, mask, info


def _write_job(job: ImageJob) -> dict:
    w = _WORKER
    img, mask, info = render_job(job, w["config"], w["seed"], w["cams"])
    jpg, png = _encode(img, mask, w["cams"][job.cam].jpeg_quality)
    (w["out"] / job.image_rel).write_bytes(jpg)
    (w["out"] / job.mask_rel).write_bytes(png)
    return {"file": job.image_rel, "mask": job.mask_rel, "split": job.split, "pid": job.pid, "cam": job.cam + 1,
            "frame": job.frame, **info}


# ----------------------------------------------------------------------------------------------------------
# output directory handling


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, meta: dict) -> bool:
    counts = meta.get("counts", {})
    for split, folder in SPLIT_DIRS.items():
        d = out / folder
        if not d.is_dir() or sum(1 for _ in d.glob("*.jpg")) != counts.get(split, -1):
            return False
    return bool(meta.get("complete"))


def _prepare_out(out: Path, config: SyntheticConfig, seed: int, overwrite: bool) -> bool:
    """Check/clean ``out``; returns True when it already holds this exact dataset (nothing to do)."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output path {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        meta = _read_json(out / "meta.json")
        marker = _read_json(out / _MARKER)
        prev = meta or marker
        same = prev is not None and prev.get("preset") == config.name and prev.get("seed") == seed
        if meta is not None and same and not overwrite and meta.get("generator_version") == GENERATOR_VERSION \
                and meta.get("config") == config.echo() and _is_complete(out, meta):
            return True
        if not same and not overwrite:
            what = (f"a synthetic dataset with preset={prev.get('preset')!r}, seed={prev.get('seed')!r}"
                    if prev else "files that are not a synthetic dataset")
            raise OutputDirError(f"output directory {str(out)!r} is not empty: it holds {what}; refusing to write "
                                 f"preset={config.name!r}, seed={seed} into it (choose an empty directory or pass "
                                 "--overwrite / overwrite=True)")
    # a stale meta.json must never vouch for a half-rewritten directory: remove it first
    (out / "meta.json").unlink(missing_ok=True)
    atomic_write_json(out / _MARKER, {"preset": config.name, "seed": seed, "generator_version": GENERATOR_VERSION})
    for name in _OWN_OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return False


def _iter_results(jobs: list[ImageJob], config: SyntheticConfig, seed: int, cams: list[CameraStyle], out: Path,
                  num_workers: int) -> Iterator[dict]:
    if num_workers <= 0:
        _init_worker(config, seed, cams, str(out))
        yield from map(_write_job, jobs)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(num_workers, initializer=_init_worker,
                                     initargs=(config, seed, cams, str(out))) as pool:
        yield from pool.imap(_write_job, jobs, chunksize=16)


def summarize(records: Iterable[dict]) -> dict:
    """Per-split statistics of annotation records: part-area fractions, incomplete and occluded rates."""
    by_split: dict[str, list[dict]] = {}
    for r in records:
        by_split.setdefault(r["split"], []).append(r)
    stats = {}
    for split, rs in by_split.items():
        px = np.asarray([r["part_pixels"] for r in rs], float)
        frac = px / px.sum(axis=1, keepdims=True)
        stats[split] = {
            "images": len(rs),
            "part_area_fraction": {n: round(float(v), 4) for n, v in zip(PART_NAMES, frac.mean(0), strict=True)},
            "part_present_rate": {n: round(float(v), 4) for n, v in zip(PART_NAMES, (px > 0).mean(0), strict=True)},
            "cut_top_rate": round(float(np.mean([r["cut_top"] > 0 for r in rs])), 4),
            "cut_bottom_rate": round(float(np.mean([r["cut_bottom"] > 0 for r in rs])), 4),
            "occluder_rate": round(float(np.mean([r["occluder"] is not None for r in rs])), 4),
            "mean_occluded_body_fraction": round(float(np.mean([r["occluded"] for r in rs])), 4),
            "background_person_rate": round(float(np.mean([r["background_person"] for r in rs])), 4),
        }
    return stats


def _identity_table(plan: Plan) -> dict:
    table = {}
    for split, items in plan.identities.items():
        rows = []
        for pid, idn in items:
            twin_pid = None if idn.twin_of is None else items[idn.twin_of][0]
            rows.append({"pid": pid, "fingerprint": idn.fingerprint(), "twin_of": twin_pid, "twin_kind": idn.twin_kind,
                         "attributes": idn.attributes()})
        # the base of a twin pair also names its twin
        twin_of_base = {r["twin_of"]: r for r in rows if r["twin_of"] is not None}
        for r in rows:
            if r["pid"] in twin_of_base:
                r["twin"] = twin_of_base[r["pid"]]["pid"]
        table[split] = sorted(rows, key=lambda r: r["pid"])
    return table


def generate(preset_or_config: str | SyntheticConfig, out_dir: str | os.PathLike[str], seed: int = 0, *,
             progress: bool = True, num_workers: int = 0, overwrite: bool = False,
             preview: str | os.PathLike[str] | bool | None = None) -> Path:
    """Render a whole dataset into ``out_dir`` (Market-1501 layout + ``masks/`` + ``meta.json``).

    Output is byte-identical for a given ``(preset/config, seed)`` whatever ``num_workers`` is. A
    non-empty ``out_dir`` that is not an earlier output of the same preset and seed is refused unless
    ``overwrite``; an identical complete earlier output is kept as is. ``meta.json`` is written last,
    so it only exists for complete datasets. ``preview`` (True or a path) also writes a preview sheet.
    """
    config = _as_config(preset_or_config)
    out = Path(out_dir)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    done = _prepare_out(out, config, seed, overwrite)
    if not done:
        plan = plan_dataset(config, seed)
        for folder in SPLIT_DIRS.values():
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / "masks" / folder).mkdir(parents=True, exist_ok=True)
        it = _iter_results(plan.jobs, config, seed, plan.cameras, out, num_workers)
        records = list(tqdm(it, total=len(plan.jobs), desc=f"synthetic {config.name}", unit="img",
                            disable=not progress))
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic_write_bytes(out / "annotations.jsonl", lines.encode())
        id_table = _identity_table(plan)
        atomic_write_json(out / "identities.json", id_table)
        # attribute labels per identity (source pretraining); not listed in meta.json, which stays as before
        atomic_write_json(out / ATTRIBUTES_FILE, attributes_payload(id_table))
        counts = {s: sum(r["split"] == s for r in records) for s in SPLIT_DIRS}
        n_twins = {s: sum(r["twin_of"] is not None or "twin" in r for r in rows) for s, rows in id_table.items()}
        meta = {
            "format": "scwm-synthetic",
            "generator_version": GENERATOR_VERSION,
            "preset": config.name,
            "seed": seed,
            "complete": True,
            "part_names": PART_NAMES,
            "image_size": [config.image_height, config.image_width],
            "layout": {"images": SPLIT_DIRS, "masks": {s: f"masks/{d}" for s, d in SPLIT_DIRS.items()},
                       "name_pattern": "{pid:04d}_c{cam}s1_{frame:06d}_00.jpg (cam 1-based, pid 0 = distractor)"},
            "counts": counts,
            "num_distractors": sum(r["pid"] == 0 for r in records),
            "num_ids": {"train": config.num_train_ids, "test": config.num_test_ids},
            "num_cameras": config.num_cameras,
            "twin_fraction": {s: round(n_twins[s] / max(1, len(id_table[s])), 4) for s in id_table},
            "stats": summarize(records),
            "files": {"annotations": "annotations.jsonl", "identities": "identities.json"},
            "cameras": [{k: v for k, v in asdict(c).items() if k != "scenes"}
                        | {"scenes": [s.kind for s in c.scenes]} for c in plan.cameras],
            "config": config.echo(),
        }
        atomic_write_json(out / "meta.json", meta)
        (out / _MARKER).unlink(missing_ok=True)
    elif progress:
        print(f"{out}: already holds a complete {config.name!r} dataset with seed {seed}; nothing to do "
              "(pass --overwrite to regenerate)")
    if preview:
        from .preview import write_preview

        write_preview(out, out / "preview.png" if preview is True else Path(preview))
    return out
