"""Fault-injection harness (docs in ``benchmarks/bench_faults.py``): the test fixture (an old and a new gallery
and model) and the states of the artefacts, compared by checksum of their loaded content."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ["serving.index", "serving.export"]
OPS = ("build", "add", "export")



# ------------------------------------------------------------------------------------------- fixture
@dataclasses.dataclass
class Fixture:
    """Two tiny checkpoints (old, new), the export of the old one (the index's model) and two image sets."""

    root: Path
    ckpt_old: Path
    ckpt_new: Path
    model: Path
    old_images: Path
    new_images: Path
    precisions: tuple[str, ...]

    @property
    def model_files(self) -> list[Path]:
        from serving.export import variant_path

        return [variant_path(self.model, p) for p in self.precisions]


def make_fixture(root: Path, n_old: int = 16, n_new: int = 8, precisions: Sequence[str] = ("fp32",)) -> Fixture:
    """Seeded resnet18 checkpoints at 64x32, the old one exported (with ``precisions``), and Market-named
    generated pictures: ``n_old`` in ``old_images``, ``n_new`` in ``new_images``."""
    import torch

    from scwm.models import ModelSpec, save_checkpoint
    from serving import export as ex

    root.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    ckpts = []
    for name, seed in (("old.pt", 1), ("new.pt", 2)):
        torch.manual_seed(seed)
        save_checkpoint(root / name, spec.build().eval(), spec)
        ckpts.append(root / name)
    model = ex.export_checkpoint(ckpts[0], root / "model" / "model.onnx", precisions=tuple(precisions))[0].path
    old_images, new_images = root / "images_old", root / "images_new"
    for d in (old_images, new_images):
        d.mkdir(exist_ok=True)
    for i, pic in enumerate(ex.generated_pictures(n_old + n_new, seed=3)):
        folder = old_images if i < n_old else new_images
        pic.save(folder / f"{i // 2 + 1:04d}_c{i % 2 + 1}s1_{i:06d}_00.jpg")
    return Fixture(root, ckpts[0], ckpts[1], model, old_images, new_images, tuple(precisions))


# ------------------------------------------------------------------------------------ artefact states
@dataclasses.dataclass
class State:
    """What is on disk: ``absent``, ``ok`` (loads, with a content ``key``) or ``error`` (does not load)."""

    kind: str
    key: str = ""
    count: int = 0
    detail: str = ""


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def index_state(d: Path) -> State:
    """Load and verify index directory ``d`` (``GalleryIndex.load``: manifest, files, checksums, counts); the key
    hashes the items without their time stamps and the vectors read back from the verified index file."""
    import faiss

    from serving.index import GalleryIndex

    if not d.exists():
        return State("absent")
    try:
        g = GalleryIndex.load(d, use_gpu=False)
        items = [{k: v for k, v in it.items() if k != "added"} for it in g.items]
        index = faiss.read_index(str(d / g.manifest["index_file"]))  # the file the load verified
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        close = getattr(g, "close", None)
        if close is not None:
            close()
    except Exception as exc:  # any failure to load is a broken artefact
        return State("error", detail=f"{type(exc).__name__}: {exc}")
    h = hashlib.sha256(sha_of(items).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return State("ok", h.hexdigest(), len(items))


def export_state(out: Path, precisions: Sequence[str]) -> State:
    """All files of an export: each loads in ONNX Runtime and its embedded fingerprint matches its graph; the key
    hashes every file's fingerprint and metadata (less ``scwm.exported_at``)."""
    import onnx

    from serving.engine import OnnxEngine
    from serving.export import model_fingerprint, variant_path

    files = [variant_path(out, p) for p in precisions]
    present = [f for f in files if f.exists()]
    if not present:
        return State("absent")
    if len(present) != len(files):
        return State("error", detail=f"partial set: {[f.name for f in present]} of {[f.name for f in files]}")
    parts = []
    try:
        for f in files:
            proto = onnx.load(str(f))
            meta = {p.key: p.value for p in proto.metadata_props}
            fp = model_fingerprint(proto)
            if meta.get("scwm.fingerprint") != fp:
                return State("error", detail=f"{f.name}: metadata fingerprint {meta.get('scwm.fingerprint', '')[:12]} "
                                             f"!= graph {fp[:12]}")
            OnnxEngine(f, providers=["CPUExecutionProvider"], precision="fp32")  # each file as given
            meta.pop("scwm.exported_at", None)
            parts.append([f.name, fp, sorted(meta.items())])
    except Exception as exc:  # does not load: broken
        return State("error", detail=f"{type(exc).__name__}: {str(exc)[:300]}")
    return State("ok", sha_of(parts), len(parts))


def index_leftovers(d: Path) -> dict[str, list[str]]:
    """Files a finished command should not leave: temporary files in ``d``, data files the manifest does not
    name (the generation it replaced is kept on purpose and listed under ``previous``), build temporary
    directories next to ``d``."""
    from serving.manifest import MANIFEST

    out: dict[str, list[str]] = {"temp": [], "orphan_data": [], "previous": [], "build_temp_dirs": []}
    if d.parent.is_dir():
        out["build_temp_dirs"] = sorted(p.name for p in d.parent.glob(f".{d.name}.*.tmp"))
    if not d.is_dir():
        return out
    try:
        m = json.loads((d / MANIFEST).read_text())
        named, gen = {v for k, v in m.items() if k.endswith("_file")}, int(m.get("generation", 0))
    except (OSError, ValueError):
        named, gen = set(), 0
    unnamed = []
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            out["temp"].append(p.name)
        elif p.name != MANIFEST and p.name not in named:
            unnamed.append(p.name)

    def generation(name: str) -> int:
        parts = name.split("-")
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1

    older = [generation(n) for n in unnamed if 0 <= generation(n) < gen]
    for n in unnamed:  # the generation the current one replaced is kept on purpose (readers); the rest is not
        out["previous" if older and generation(n) == max(older) else "orphan_data"].append(n)
    return out


def export_leftovers(out: Path) -> dict[str, list[str]]:
    return {"temp": sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".") and ".tmp" in p.name)}
