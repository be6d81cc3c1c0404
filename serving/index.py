"""FAISS gallery index of served embeddings, persisted as a verified directory.

``python -m serving.index build --model exports/model.onnx --images DIR_OR_MARKET_ROOT --out exports/index
[--factory Flat|IVF256,Flat|HNSW32|IVF256,PQ32] [--nprobe N] [--ef-search N]``,
``python -m serving.index add --index DIR --images PATH...`` and ``python -m serving.index info --index DIR``.

Search is exact inner product (``IndexFlatIP``, i.e. cosine on the L2-normalized embeddings) by default;
IVF / HNSW / PQ come from a FAISS factory string. The directory layout and its commit point (the manifest)
are in :mod:`serving.manifest`; ``build`` writes a new directory into a temporary sibling and renames it.
Loading checks every file and checksum and the counts, and raises :class:`GalleryIndexError` naming the
problem instead of using a damaged index.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from scwm.data.images import IMAGE_EXTENSIONS
from scwm.data.readers import DatasetError
from scwm.data.readers import parse_market_name as _read_market_name
from serving.engine import OnnxEngine
from serving.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    GalleryIndexError,
    commit,
    read_items,
    read_manifest,
    utc_now,
    verified_files,
)

__all__ = ["GalleryIndexError", "ModelMismatchError", "GalleryIndex", "parse_market_name", "collect_images",
           "embed_paths", "check_factory", "make_faiss_index", "build_index", "add_to_index", "index_info", "main",
           "MANIFEST", "DEFAULT_INDEX_DIR", "DEFAULT_MODEL"]

log = logging.getLogger(__name__)
DEFAULT_INDEX_DIR = Path("exports/index")
DEFAULT_MODEL = Path("exports/model.onnx")


class ModelMismatchError(GalleryIndexError):
    """The model does not match the one that built the index."""


def parse_market_name(path: str | os.PathLike[str]) -> tuple[int | None, int | None]:
    """``(pid, camera)`` from a Market-style file name ``{pid}_c{cam}...`` as the trainer's Market reader parses
    it (pid -1 junk, 0 distractor), with the camera 1-based as in the name; ``(None, None)`` for names that
    reader rejects."""
    try:
        pid, camid = _read_market_name(Path(path))
    except DatasetError:
        return None, None
    return pid, camid + 1


def collect_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files from files and folders; a Market-1501 root (with ``bounding_box_test/``) gives its
    gallery. Folders are searched recursively, results sorted. Missing paths raise ``ValueError``."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            root = p / "bounding_box_test" if (p / "bounding_box_test").is_dir() else p
            found.extend(sorted(q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            raise ValueError(f"image path not found: {p}")
    return found


def _batches(seq: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def embed_paths(engine: OnnxEngine, paths: Sequence[Path], batch_size: int = 32, progress: bool = True,
                ) -> tuple[np.ndarray, list[Path], list[dict[str, str]]]:
    """Embed image files in batches (decoding of the next batch overlaps the model run).

    Returns ``(global embeddings (N, D) float32, the N embedded paths, skipped [{path, reason}])``;
    unreadable files are skipped and reported, never fatal."""
    from tqdm import tqdm

    def load(chunk: Sequence[Path]) -> tuple[list[np.ndarray], list[Path], list[dict[str, str]]]:
        arrays, ok, bad = [], [], []
        for p in chunk:
            try:
                arrays.append(engine.preprocess(p))
                ok.append(p)
            except ValueError as exc:  # ImageLoadError names the file and the reason
                bad.append({"path": str(p), "reason": str(exc)})
        return arrays, ok, bad

    embs: list[np.ndarray] = []
    done: list[Path] = []
    skipped: list[dict[str, str]] = []
    chunks = list(_batches(paths, batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=len(paths), desc="embedding", unit="img", disable=not progress) as bar:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            assert pending is not None
            arrays, ok, bad = pending.result()
            pending = pool.submit(load, chunks[i + 1]) if i + 1 < len(chunks) else None
            if arrays:
                embs.append(engine.run(np.stack(arrays))["global_feat"])
            done.extend(ok)
            skipped.extend(bad)
            bar.update(len(ok) + len(bad))
    for s in skipped:
        log.warning("skipped %s", s["reason"])
    out = np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, engine.embedding_size), np.float32)
    return np.ascontiguousarray(out), done, skipped


def _faiss_msg(exc: BaseException) -> str:
    """The useful last part of a FAISS C++ exception message."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    for marker in ("failed: ", "Error: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except (RuntimeError, AttributeError):
        return False


def _is_hnsw(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexHNSW)


def _apply_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    ps = faiss.ParameterSpace()
    for name, value in params.items():
        if value is None:
            continue
        if name == "nprobe" and not _is_ivf(index):
            raise GalleryIndexError(f"nprobe={value} applies to IVF indexes only (this index is "
                                    f"{type(faiss.downcast_index(index)).__name__})")
        if name == "efSearch" and not _is_hnsw(index):
            raise GalleryIndexError(f"efSearch={value} applies to HNSW indexes only (this index is "
                                    f"{type(faiss.downcast_index(index)).__name__})")
        if int(value) < 1:
            raise GalleryIndexError(f"{name} must be >= 1, got {value}")
        ps.set_index_parameter(index, name, int(value))


def check_factory(dim: int, factory: str, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Fail early (before embedding a gallery) on a bad factory string or search parameter."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryIndexError(f"invalid FAISS factory string {factory!r} for dimension {dim}: "
                                f"{_faiss_msg(exc)}") from None
    _apply_search_params(index, {"nprobe": nprobe, "efSearch": ef_search})


def make_faiss_index(embeddings: np.ndarray, factory: str = "Flat", nprobe: int | None = None,
                     ef_search: int | None = None) -> faiss.Index:
    """A CPU inner-product index from a FAISS factory string, trained (if needed) on and filled with
    ``embeddings`` (N, D), which are L2-normalized first."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise GalleryIndexError(f"embeddings must be (N, D), got shape {x.shape}")
    x = x.copy()
    faiss.normalize_L2(x)
    try:
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryIndexError(f"invalid FAISS factory string {factory!r} for dimension {x.shape[1]}: "
                                f"{_faiss_msg(exc)}") from None
    if not index.is_trained:
        try:
            index.train(x)
        except RuntimeError as exc:
            raise GalleryIndexError(f"cannot train {factory!r} on {len(x)} embeddings (IVF needs at least "
                                    f"as many as its lists, PQ at least 256; use 'Flat' for small galleries): "
                                    f"{_faiss_msg(exc)}") from None
    index.add(x)
    _apply_search_params(index, {"nprobe": nprobe, "efSearch": ef_search})
    return index


def _to_gpu(index: faiss.Index) -> tuple[faiss.Index, bool]:
    """Move ``index`` to GPU 0 when FAISS sees a GPU and supports the index type; else keep it."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return index, False
    try:
        res = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, 0, index)
        gpu.scwm_gpu_resources = res  # keep the resources alive as long as the index
        return gpu, True
    except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU implementation
        log.info("keeping the index on the CPU (%s)", exc)
        return index, False


def _item(item_id: int, path: Path, added: str) -> dict[str, Any]:
    pid, cam = parse_market_name(path)
    return {"item_id": item_id, "path": str(path.resolve()), "pid": pid, "camera": cam, "added": added}


class GalleryIndex:
    """A loaded, verified gallery index: the FAISS index, per-item metadata and the manifest.

    ``search`` may be called from several threads (CPU FAISS search is thread-safe; GPU searches are
    serialised by a lock). ``add`` must not run concurrently with searches on the same object (the
    ``add`` command works on its own instance and publishes through the manifest)."""

    def __init__(self, index: faiss.Index, items: list[dict[str, Any]], manifest: dict[str, Any],
                 directory: Path | None = None, use_gpu: bool | None = False) -> None:
        if index.ntotal != len(items):
            raise GalleryIndexError(f"index holds {index.ntotal} vectors but there are {len(items)} items")
        self.cpu_index = index
        self.items = items
        self.manifest = manifest
        self.directory = directory
        self._lock = threading.Lock()
        self.index, self.on_gpu = _to_gpu(index) if use_gpu in (None, True) else (index, False)
        if use_gpu is True and not self.on_gpu:
            log.warning("GPU requested but FAISS has no usable GPU; searching on the CPU")

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.cpu_index.d)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model_fingerprint"])

    def check_model(self, engine: OnnxEngine) -> None:
        """Raise :class:`ModelMismatchError` unless ``engine`` runs the model that built this index."""
        if engine.fingerprint != self.fingerprint or (engine.embedding_size and engine.embedding_size != self.dim):
            where = f" {self.directory}" if self.directory else ""
            raise ModelMismatchError(
                f"index{where} was built with model {self.manifest.get('model_path', '?')} (fingerprint "
                f"{self.fingerprint[:16]}, {self.dim}-d) but {engine.model_path} has fingerprint "
                f"{engine.fingerprint[:16] or '(none)'} ({engine.embedding_size}-d); embeddings of different "
                "models are not comparable: use the model that built the index or rebuild the index")

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, item ids) for (N, D) query embeddings; ids of missing results are -1."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query embeddings have dimension {q.shape[1]}, the index {self.dim}")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = q.copy()
        faiss.normalize_L2(q)
        kk = min(int(k), max(self.count, 1))
        if self.on_gpu:
            with self._lock:
                return self.index.search(q, kk)
        return self.index.search(q, kk)

    def add(self, embeddings: np.ndarray, paths: Sequence[Path]) -> None:
        """Append embeddings (in memory; :meth:`save` persists)."""
        x = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
        if len(x) != len(paths):
            raise ValueError(f"{len(x)} embeddings for {len(paths)} paths")
        if len(x) == 0:
            return
        faiss.normalize_L2(x)
        added = utc_now()
        start = self.count
        with self._lock:
            self.cpu_index.add(x)
            self.items.extend(_item(start + i, p, added) for i, p in enumerate(paths))
            self.index, self.on_gpu = _to_gpu(self.cpu_index) if self.on_gpu else (self.cpu_index, False)

    # ----------------------------------------------------------------------------------------- I/O
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write new data files into ``directory``, then atomically swap in the new manifest and remove the
        files the old one named (:func:`serving.manifest.commit`)."""
        self.manifest = commit(directory, self.manifest, lambda path: faiss.write_index(self.cpu_index, str(path)),
                               self.items, count=self.count, embedding_size=self.dim,
                               index_type=type(faiss.downcast_index(self.cpu_index)).__name__)
        self.directory = Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], use_gpu: bool | None = None,
             verify_checksums: bool = True) -> GalleryIndex:
        """Load and verify an index directory (files, sha256 checksums, counts, dimensions)."""
        d = Path(directory)
        m = read_manifest(d)
        files = verified_files(d, m, verify_checksums)
        try:
            index = faiss.read_index(str(files["index_file"]))
        except RuntimeError as exc:
            raise GalleryIndexError(f"cannot read FAISS index {files['index_file']}: "
                                    f"{_faiss_msg(exc)}") from None
        items = read_items(files["items_file"])
        count = m["count"]
        if not (index.ntotal == len(items) == count):
            raise GalleryIndexError(f"index directory {d} is inconsistent: manifest count {count}, "
                                    f"{index.ntotal} vectors in {files['index_file'].name}, {len(items)} items in "
                                    f"{files['items_file'].name}")
        if index.d != m["embedding_size"]:
            raise GalleryIndexError(f"{files['index_file']} has dimension {index.d}, manifest says "
                                    f"{m['embedding_size']}")
        params = m.get("search_params") or {}
        _apply_search_params(index, {k: v for k, v in params.items() if k in ("nprobe", "efSearch")})
        return cls(index, items, m, d, use_gpu)


# --------------------------------------------------------------------------------------- operations
def build_index(model: str | os.PathLike[str] | OnnxEngine, images: Sequence[str | os.PathLike[str]],
                out: str | os.PathLike[str] = DEFAULT_INDEX_DIR, factory: str = "Flat",
                nprobe: int | None = None, ef_search: int | None = None, batch_size: int = 32,
                overwrite: bool = False, progress: bool = True) -> GalleryIndex:
    """Embed ``images`` with ``model`` and write a new index directory ``out`` atomically."""
    engine = model if isinstance(model, OnnxEngine) else OnnxEngine(model)
    out = Path(out)
    if out.exists() and not overwrite:
        raise GalleryIndexError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it, "
                                "or use `add` to extend it")
    if out.exists() and not (out / MANIFEST).is_file():
        raise GalleryIndexError(f"refusing to overwrite {out}: it is not a gallery index directory")
    check_factory(engine.embedding_size, factory, nprobe, ef_search)
    paths = collect_images(images)
    if not paths:
        raise GalleryIndexError(f"no image files found in {', '.join(map(str, images))}")
    embs, ok, skipped = embed_paths(engine, paths, batch_size, progress)
    if not ok:
        raise GalleryIndexError(f"none of the {len(paths)} images could be read (first: {skipped[0]['reason']})")
    index = make_faiss_index(embs, factory, nprobe, ef_search)
    added = utc_now()
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_path": str(engine.model_path.resolve()), "model_fingerprint": engine.fingerprint,
        "model_precision": engine.metadata.get("scwm.precision", "fp32"),
        "metric": "inner_product", "factory": factory,
        "search_params": {k: v for k, v in (("nprobe", nprobe), ("efSearch", ef_search)) if v is not None},
        "created": added, "skipped": skipped,
    }
    gallery = GalleryIndex(index, [_item(i, p, added) for i, p in enumerate(ok)], manifest, use_gpu=False)
    if out.exists():  # overwrite: new uniquely named files, then the manifest swap (the commit point)
        gallery.save(out)
        return gallery
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        gallery.save(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gallery.directory = out
    return gallery


def add_to_index(index_dir: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]],
                 model: str | os.PathLike[str] | OnnxEngine | None = None, batch_size: int = 32,
                 progress: bool = True) -> tuple[GalleryIndex, int, list[dict[str, str]]]:
    """Embed ``images`` and append them to the index in ``index_dir`` (paths already indexed are skipped).
    Returns ``(index, number added, skipped)``."""
    gallery = GalleryIndex.load(index_dir, use_gpu=False)
    if model is None:
        model = gallery.manifest.get("model_path") or DEFAULT_MODEL
    engine = model if isinstance(model, OnnxEngine) else OnnxEngine(model)
    gallery.check_model(engine)
    known = {it["path"] for it in gallery.items}
    paths = [p for p in collect_images(images) if str(p.resolve()) not in known]
    embs, ok, skipped = embed_paths(engine, paths, batch_size, progress)
    gallery.add(embs, ok)
    gallery.manifest["skipped"] = list(gallery.manifest.get("skipped", [])) + skipped
    gallery.save(index_dir)
    return gallery, len(ok), skipped


def index_info(index_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified manifest of ``index_dir`` plus a few derived figures."""
    g = GalleryIndex.load(index_dir, use_gpu=False)
    m = dict(g.manifest)
    m["known_pids"] = len({it["pid"] for it in g.items if it.get("pid") is not None})
    m["index_bytes"] = (Path(index_dir) / m["index_file"]).stat().st_size
    m["verified"] = True
    return m


# ---------------------------------------------------------------------------------------------- CLI
def _print_skipped(skipped: list[dict[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):")
        for s in skipped:
            print(f"  {s['reason']}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.index", description="Gallery index (FAISS).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="embed a folder / Market root and write a new index")
    b.add_argument("--model", default=str(DEFAULT_MODEL), help="exported ONNX model (default: %(default)s)")
    b.add_argument("--images", nargs="+", required=True, help="image files, folders or a Market-1501 root")
    b.add_argument("--out", default=str(DEFAULT_INDEX_DIR), help="index directory (default: %(default)s)")
    b.add_argument("--factory", default="Flat", help="FAISS factory string, e.g. Flat, IVF256,Flat, HNSW32, "
                   "IVF256,PQ32 (default: exact Flat)")
    b.add_argument("--nprobe", type=int, help="IVF lists probed per query")
    b.add_argument("--ef-search", type=int, help="HNSW efSearch")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    a = sub.add_parser("add", help="embed more images and append them to an index")
    a.add_argument("--index", required=True)
    a.add_argument("--images", nargs="+", required=True)
    a.add_argument("--model", help="ONNX model (default: the one recorded in the manifest)")
    for p in (b, a):
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--no-progress", action="store_true")
    i = sub.add_parser("info", help="verify an index and print its manifest")
    i.add_argument("--index", required=True)
    i.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "build":
            g = build_index(args.model, args.images, args.out, args.factory, args.nprobe, args.ef_search,
                            args.batch_size, args.overwrite, not args.no_progress)
            print(f"built {g.directory}: {g.count} images, {g.dim}-d, factory {g.manifest['factory']}, "
                  f"model {g.fingerprint[:16]}")
            _print_skipped(g.manifest["skipped"])
        elif args.cmd == "add":
            g, n, skipped = add_to_index(args.index, args.images, args.model, args.batch_size,
                                         not args.no_progress)
            print(f"added {n} images to {args.index}: {g.count} in total")
            _print_skipped(skipped)
        else:
            info = index_info(args.index)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                for key in ("count", "embedding_size", "factory", "index_type", "search_params", "metric",
                            "model_path", "model_fingerprint", "model_precision", "created", "updated",
                            "index_file", "index_sha256", "known_pids", "index_bytes"):
                    print(f"{key}: {info.get(key)}")
                print(f"skipped: {len(info.get('skipped', []))} file(s)")
                print("verified: files, checksums and counts OK")
    except (GalleryIndexError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
