"""Gallery index of served embeddings (FAISS by default, or Milvus), persisted as a verified directory.

``python -m serving.index build --model exports/model.onnx --images DIR_OR_MARKET_ROOT --out exports/index
[--backend faiss|milvus] [--uri URI] [--factory Flat|IVF256,Flat|HNSW32|IVF256,PQ32] [--nprobe N] [--ef-search N]
[--precision auto|fp32|int8]``, ``python -m serving.index add --index DIR --images PATH... [--uri URI] [--precision P]``
and ``python -m serving.index info --index DIR``. ``build`` embeds at ``auto`` (the int8-static sibling on a CPU box
when it exists; :class:`serving.engine.OnnxEngine`), ``add`` at the precision in the manifest, which records both.

Search is exact inner product (``IndexFlatIP``, i.e. cosine on the L2-normalized embeddings) by default;
IVF / HNSW / PQ come from a FAISS factory string. The directory layout and its commit point (the manifest)
are in :mod:`serving.manifest`; ``build`` writes a new directory into a temporary sibling and renames it.
Loading checks every file and checksum and the counts, and raises :class:`GalleryIndexError` naming the
problem instead of using a damaged index.

``--backend milvus`` keeps the vectors in a Milvus collection instead (Milvus Lite in ``<index>/milvus.db``
by default, or a Milvus server / cluster with ``--uri http://host:19530``); the manifest, the items file,
the model check and this API stay the same, and :meth:`GalleryIndex.load` reads the backend from the
manifest. What is atomic there is in :mod:`serving.backends.milvus_backend`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import faiss
import numpy as np

from scwm.data.images import IMAGE_EXTENSIONS
from scwm.data.readers import DatasetError
from scwm.data.readers import parse_market_name as _read_market_name
from serving.backends import BACKENDS, VectorStore
from serving.backends.faiss_backend import FaissStore, check_factory, make_faiss_index
from serving.engine import PRECISION_CHOICES, PRECISION_HELP, OnnxEngine
from serving.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    GalleryIndexError,
    ModelMismatchError,
    backend_of,
    commit,
    index_precision,
    load_consistent,
    read_items,
    read_manifest,
    utc_now,
    verified_files,
)

__all__ = ["GalleryIndexError", "ModelMismatchError", "GalleryIndex", "parse_market_name", "collect_images",
           "embed_paths", "check_factory", "make_faiss_index", "build_index", "add_to_index", "index_info", "main",
           "MANIFEST", "DEFAULT_INDEX_DIR", "DEFAULT_MODEL", "BACKENDS"]

log = logging.getLogger(__name__)
DEFAULT_INDEX_DIR = Path("exports/index")
DEFAULT_MODEL = Path("exports/model.onnx")


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


def _milvus() -> ModuleType:
    from serving.backends import milvus_backend

    return milvus_backend


def _item(item_id: int, path: Path, added: str) -> dict[str, Any]:
    pid, cam = parse_market_name(path)
    return {"item_id": item_id, "path": str(path.resolve()), "pid": pid, "camera": cam, "added": added}


class GalleryIndex:
    """A loaded, verified gallery index: the vector store (FAISS in process, or a Milvus collection), per-item
    metadata and the manifest.

    ``search`` may be called from several threads (CPU FAISS search and the Milvus client are thread-safe; GPU
    searches are serialised by a lock). ``add`` must not run concurrently with searches on the same object (the
    ``add`` command works on its own instance and publishes through the manifest)."""

    def __init__(self, index: faiss.Index | VectorStore, items: list[dict[str, Any]], manifest: dict[str, Any],
                 directory: Path | None = None, use_gpu: bool | None = False) -> None:
        store = FaissStore(index, use_gpu) if isinstance(index, faiss.Index) else index
        if store.count != len(items):
            raise GalleryIndexError(f"index holds {store.count} vectors but there are {len(items)} items")
        self.store = store
        self.items = items
        self.manifest = manifest
        self.directory = directory

    @property
    def backend(self) -> str:
        return self.store.backend

    @property
    def on_gpu(self) -> bool:
        return self.store.on_gpu

    @property
    def cpu_index(self) -> faiss.Index:
        """The FAISS index (FAISS backend only)."""
        if not isinstance(self.store, FaissStore):
            raise AttributeError(f"a {self.backend} index has no FAISS index")
        return self.store.cpu_index

    @property
    def index(self) -> faiss.Index:
        """The searched FAISS index, on the GPU if there (FAISS backend only)."""
        if not isinstance(self.store, FaissStore):
            raise AttributeError(f"a {self.backend} index has no FAISS index")
        return self.store.index

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.store.dim)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model_fingerprint"])

    def check_model(self, engine: OnnxEngine) -> None:
        """Raise :class:`ModelMismatchError` unless ``engine`` runs the model that built this index."""
        if engine.fingerprint != self.fingerprint or (engine.embedding_size and engine.embedding_size != self.dim):
            where = f" {self.directory}" if self.directory else ""
            built = str(self.manifest.get("model_precision", "fp32"))
            flag = "int8" if built == "int8-static" else "fp32"
            raise ModelMismatchError(
                f"index{where} was built with model {self.manifest.get('model_path', '?')} ({built}, fingerprint "
                f"{self.fingerprint[:16]}, {self.dim}-d) but {engine.model_path} ({engine.served_precision}) has "
                f"fingerprint {engine.fingerprint[:16] or '(none)'} ({engine.embedding_size}-d); embeddings of "
                "different models are not comparable: use the model that built the index at its precision (--precision "
                f"{flag} or SCWM_PRECISION={flag}, or neither: the index's own), or rebuild the index")

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, item ids) for (N, D) query embeddings; ids of missing results are -1."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query embeddings have dimension {q.shape[1]}, the index {self.dim}")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return self.store.search(q, min(int(k), max(self.count, 1)))

    def add(self, embeddings: np.ndarray, paths: Sequence[Path]) -> None:
        """Append embeddings (FAISS: in memory; Milvus: uncommitted rows; :meth:`save` commits)."""
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if len(x) != len(paths):
            raise ValueError(f"{len(x)} embeddings for {len(paths)} paths")
        if len(x) == 0:
            return
        added = utc_now()
        new = [_item(self.count + i, p, added) for i, p in enumerate(paths)]
        self.store.add(x, new)
        self.items.extend(new)

    def close(self) -> None:
        """Release the backend's connection (nothing for FAISS)."""
        self.store.close()

    # ----------------------------------------------------------------------------------------- I/O
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Make the vectors durable, write new data files into ``directory``, then atomically swap in the new
        manifest and remove the files the old one named (:func:`serving.manifest.commit`)."""
        self.store.flush()
        self.manifest = commit(directory, self.manifest, self.store.write_file, self.items, count=self.count,
                               embedding_size=self.dim, backend=self.backend, **self.store.facts())
        self.directory = Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], use_gpu: bool | None = None, verify_checksums: bool = True,
             uri: str | None = None) -> GalleryIndex:
        """Load and verify an index directory (files, sha256 checksums, counts, dimensions) of either backend;
        ``uri`` overrides the Milvus location recorded in the manifest. A load that spans commits of a concurrent
        ``add`` is retried (:func:`serving.manifest.load_consistent`)."""
        return load_consistent(directory, lambda: cls._load_once(Path(directory), use_gpu, verify_checksums, uri))

    @classmethod
    def _load_once(cls, d: Path, use_gpu: bool | None, verify_checksums: bool, uri: str | None) -> GalleryIndex:
        m = read_manifest(d)
        files = verified_files(d, m, verify_checksums)
        items = read_items(files["items_file"])
        if backend_of(m) == "faiss":
            if uri:
                raise GalleryIndexError(f"{d} is a FAISS index; --uri applies to Milvus indexes only")
            store: VectorStore = FaissStore.load(files["index_file"], m, use_gpu)
            where = files["index_file"].name
        else:
            store = _milvus().MilvusStore.load(d, m, uri)
            where = f"Milvus collection {m['collection']}"
        count = m["count"]
        try:
            if not (store.count == len(items) == count):
                raise GalleryIndexError(f"index directory {d} is inconsistent: manifest count {count}, "
                                        f"{store.count} vectors in {where}, {len(items)} items in "
                                        f"{files['items_file'].name}")
            if store.dim != m["embedding_size"]:
                raise GalleryIndexError(f"{files.get('index_file', where)} has dimension {store.dim}, manifest "
                                        f"says {m['embedding_size']}")
        except GalleryIndexError:
            store.close()
            raise
        return cls(store, items, m, d)


# --------------------------------------------------------------------------------------- operations
def build_index(model: str | os.PathLike[str] | OnnxEngine, images: Sequence[str | os.PathLike[str]],
                out: str | os.PathLike[str] = DEFAULT_INDEX_DIR, factory: str = "Flat",
                nprobe: int | None = None, ef_search: int | None = None, batch_size: int = 32,
                overwrite: bool = False, progress: bool = True, backend: str = "faiss",
                uri: str | None = None, precision: str | None = None) -> GalleryIndex:
    """Embed ``images`` with ``model`` (a path at ``precision``, default auto) and write a new index ``out`` atomically.

    ``backend="milvus"`` stores the vectors in a new Milvus collection at ``uri`` (default: Milvus Lite in
    ``out/milvus.db``); overwriting keeps the replaced collection (for readers racing the swap) and drops
    older ones (:func:`serving.backends.milvus_backend.drop_replaced`)."""
    engine = model if isinstance(model, OnnxEngine) else OnnxEngine(model, precision=precision)
    out = Path(out)
    if backend not in BACKENDS:
        raise GalleryIndexError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if out.exists() and not overwrite:
        raise GalleryIndexError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it, "
                                "or use `add` to extend it")
    if out.exists() and not (out / MANIFEST).is_file():
        raise GalleryIndexError(f"refusing to overwrite {out}: it is not a gallery index directory")
    if backend == "faiss":
        if uri:
            raise GalleryIndexError("--uri applies to the milvus backend only")
        check_factory(engine.embedding_size, factory, nprobe, ef_search)
    else:  # fail before embedding: a bad factory, a missing pymilvus or an unreachable server
        mb = _milvus()
        mb.require()
        mb.index_spec(factory, nprobe, ef_search)
        spec = mb.uri_spec_for(uri, out)
        if not mb.is_local(spec) or Path(spec).is_absolute():
            mb.check_uri(spec)
    paths = collect_images(images)
    if not paths:
        raise GalleryIndexError(f"no image files found in {', '.join(map(str, images))}")
    embs, ok, skipped = embed_paths(engine, paths, batch_size, progress)
    if not ok:
        raise GalleryIndexError(f"none of the {len(paths)} images could be read (first: {skipped[0]['reason']})")
    added = utc_now()
    items = [_item(i, p, added) for i, p in enumerate(ok)]
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_path": str(engine.model_path.resolve()), "model_fingerprint": engine.fingerprint,
        "model_precision": engine.served_precision,  # of the file served (int8-static: the int8 sibling)
        "metric": "inner_product", "factory": factory,
        "search_params": {k: v for k, v in (("nprobe", nprobe), ("efSearch", ef_search)) if v is not None},
        "created": added, "skipped": skipped,
    }
    old = read_manifest(out) if out.exists() else None

    def fill(directory: Path) -> GalleryIndex:
        def save(store: Any) -> GalleryIndex:  # new files / flushed collection, then the manifest swap
            gallery = GalleryIndex(store, items, manifest, use_gpu=False)
            gallery.save(directory)
            return gallery

        if backend == "faiss":
            return save(make_faiss_index(embs, factory, nprobe, ef_search))
        return mb.fill_collection(directory, spec, factory, nprobe, ef_search, old, embs, items, save)

    if out.exists():  # overwrite: new uniquely named files / collection, then the manifest swap
        with _milvus().writer_lock(out) if "milvus" in (backend, backend_of(old or {})) else nullcontext():
            gallery = fill(out)
            if old is not None and backend_of(old) == "milvus":
                keep = (gallery.store.uri, gallery.store.collection) if backend == "milvus" else None
                _milvus().drop_replaced(old, out, keep)
        return gallery
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    gallery = None
    try:
        gallery = fill(tmp)
        gallery.close()  # a Milvus Lite database inside tmp is released before the rename
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        os.replace(tmp, out)
    finally:
        if gallery is not None:
            gallery.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if backend == "milvus":
        return GalleryIndex.load(out)  # reconnect at the final location
    gallery.directory = out
    return gallery


def add_to_index(index_dir: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]],
                 model: str | os.PathLike[str] | OnnxEngine | None = None, batch_size: int = 32,
                 progress: bool = True, uri: str | None = None, backend: str | None = None,
                 precision: str | None = None) -> tuple[GalleryIndex, int, list[dict[str, str]]]:
    """Embed ``images`` and append them to the index in ``index_dir`` (paths already indexed are skipped).
    ``uri`` overrides (and then replaces) the recorded Milvus location; ``backend``, if given, must be the
    index's; a model path is opened at ``precision``, else the index's. Returns ``(index, number added, skipped)``."""
    built_with = backend_of(read_manifest(Path(index_dir)))
    if backend is not None and backend != built_with:
        raise GalleryIndexError(f"{index_dir} is a {built_with} index; `add` appends with the backend it was "
                                f"built with (rebuild with --backend {backend} --overwrite to change it)")
    with _milvus().writer_lock(index_dir) if built_with == "milvus" else nullcontext():
        return _add(index_dir, images, model, batch_size, progress, uri, precision)


def _add(index_dir: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]],
         model: str | os.PathLike[str] | OnnxEngine | None, batch_size: int, progress: bool, uri: str | None,
         precision: str | None) -> tuple[GalleryIndex, int, list[dict[str, str]]]:
    gallery = GalleryIndex.load(index_dir, use_gpu=False, uri=uri)
    try:
        model = (gallery.manifest.get("model_path") or DEFAULT_MODEL) if model is None else model
        engine = model if isinstance(model, OnnxEngine) else OnnxEngine(
            model, precision=index_precision(gallery.manifest, precision, index_dir))  # the index's, if not given
        gallery.check_model(engine)
        known = {it["path"] for it in gallery.items}
        paths = [p for p in collect_images(images) if str(p.resolve()) not in known]
        embs, ok, skipped = embed_paths(engine, paths, batch_size, progress)
        gallery.add(embs, ok)
        gallery.manifest["skipped"] = list(gallery.manifest.get("skipped", [])) + skipped
        gallery.save(index_dir)
    except BaseException:
        gallery.close()
        raise
    return gallery, len(ok), skipped


def index_info(index_dir: str | os.PathLike[str], uri: str | None = None) -> dict[str, Any]:
    """The verified manifest of ``index_dir`` plus a few derived figures (``index_bytes``: the FAISS file, or
    a local Milvus Lite database inside the directory; ``None`` for a Milvus server)."""
    g = GalleryIndex.load(index_dir, use_gpu=False, uri=uri)
    g.close()
    m = dict(g.manifest)
    m["known_pids"] = len({it["pid"] for it in g.items if it.get("pid") is not None})
    if g.backend == "faiss":
        m["index_bytes"] = (Path(index_dir) / m["index_file"]).stat().st_size
    else:
        db = Path(index_dir) / str(m["uri"])
        local = "://" not in str(m["uri"]) and not Path(str(m["uri"])).is_absolute() and db.is_dir()
        m["index_bytes"] = sum(f.stat().st_size for f in db.rglob("*") if f.is_file()) if local else None
    m["verified"] = True
    return m


# ---------------------------------------------------------------------------------------------- CLI
def _print_skipped(skipped: list[dict[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):")
        for s in skipped:
            print(f"  {s['reason']}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.index", description="Gallery index (FAISS or Milvus).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="embed a folder / Market root and write a new index")
    b.add_argument("--model", default=str(DEFAULT_MODEL), help="exported ONNX model (default: %(default)s)")
    b.add_argument("--images", nargs="+", required=True, help="image files, folders or a Market-1501 root")
    b.add_argument("--out", default=str(DEFAULT_INDEX_DIR), help="index directory (default: %(default)s)")
    b.add_argument("--factory", default="Flat", help="FAISS factory string, e.g. Flat, IVF256,Flat, HNSW32, "
                   "IVF256,PQ32 (default: exact Flat); milvus maps these to its index types or takes a Milvus "
                   "type such as DISKANN")
    b.add_argument("--nprobe", type=int, help="IVF lists probed per query")
    b.add_argument("--ef-search", type=int, help="HNSW efSearch")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    a = sub.add_parser("add", help="embed more images and append them to an index")
    a.add_argument("--index", required=True)
    a.add_argument("--images", nargs="+", required=True)
    a.add_argument("--model", help="ONNX model (default: the one recorded in the manifest)")
    i = sub.add_parser("info", help="verify an index and print its manifest")
    i.add_argument("--index", required=True)
    i.add_argument("--json", action="store_true")
    for p in (b, a):
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--precision", choices=PRECISION_CHOICES, help=f"{PRECISION_HELP} (default: $SCWM_PRECISION, "
                       + ("else auto)" if p is b else "else the precision the index was built with)"))
        p.add_argument("--backend", choices=BACKENDS, default="faiss" if p is b else None,
                       help="vector store: faiss in process (default) or milvus" if p is b else
                       "must be the index's backend (read from the manifest)")
    for p in (b, a, i):
        p.add_argument("--uri", help="milvus: a Milvus Lite path ending in .db (default for build: "
                       "<index>/milvus.db) or a server http://host:19530 (token from $SCWM_MILVUS_TOKEN); for "
                       "add/info it overrides the manifest's")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "build":
            g = build_index(args.model, args.images, args.out, args.factory, args.nprobe, args.ef_search,
                            args.batch_size, args.overwrite, not args.no_progress, args.backend, args.uri,
                            args.precision)
            print(f"built {g.directory}: {g.count} images, {g.dim}-d, {g.backend} factory {g.manifest['factory']}, "
                  f"model {g.fingerprint[:16]}")
            _print_skipped(g.manifest["skipped"])
        elif args.cmd == "add":
            g, n, skipped = add_to_index(args.index, args.images, args.model, args.batch_size,
                                         not args.no_progress, args.uri, args.backend, args.precision)
            print(f"added {n} images to {args.index}: {g.count} in total")
            _print_skipped(skipped)
        else:
            info = index_info(args.index, args.uri)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                keys = ("index_file", "index_sha256") if backend_of(info) == "faiss" else ("uri", "collection")
                for key in ("backend", "count", "embedding_size", "factory", "index_type", "search_params", "metric",
                            "model_path", "model_fingerprint", "model_precision", "created", "updated", *keys,
                            "known_pids", "index_bytes"):
                    print(f"{key}: {info.get(key, 'faiss' if key == 'backend' else None)}")
                print(f"skipped: {len(info.get('skipped', []))} file(s)")
                print("verified: files, checksums and counts OK")
    except (GalleryIndexError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
