"""Milvus backend: the gallery vectors in a Milvus collection, reached through ``pymilvus``.

The same client code serves two deployments, chosen by the URI:

- **Milvus Lite** (package ``milvus-lite``): a local path ending in ``.db`` (by default ``milvus.db`` inside
  the index directory, recorded relative to it). ``pymilvus`` starts an in-process server on 127.0.0.1 for
  it. Only one process can open a Lite database at a time (it holds ``<db>/LOCK``): ``serving.index add``
  fails with a clear error while a :class:`~serving.retriever.Retriever` in another process has it open.
- **A Milvus server or cluster**: ``http(s)://host:19530``; the token, if any, comes from the environment
  variable ``SCWM_MILVUS_TOKEN`` (``user:password`` or an API key) and is never written to the manifest.

Collection ``scwm_<index id>_<tag>``: ``item_id`` (INT64 primary key = the row of the items file), ``pid``
and ``camera`` (INT64, nullable), ``path`` (VARCHAR) and ``embedding`` (FLOAT_VECTOR, L2-normalized, metric
IP), with ``Strong`` consistency. The local index directory keeps the manifest and the items file as for
FAISS (model fingerprint, checksums, metadata), so loading still verifies the model and the counts.

What is atomic, and how (the manifest swap of :func:`serving.manifest.commit` is the commit point):

- ``build`` fills a **new collection** (a fresh name per build), flushes it, then swaps in the manifest
  naming it; the previous collection is dropped only after that. A crash before the swap leaves the old
  manifest and its intact old collection (plus an orphan collection, dropped by the next write to this
  index); a new index directory is written to a temporary sibling and renamed, as for FAISS.
- ``add`` appends rows with ids ``count .. count+n-1`` to the **same collection**, flushes, then swaps in
  the manifest with the new count. Every search filters ``item_id < count`` of the manifest it loaded, so a
  reader sees exactly the gallery it loaded while an ``add`` runs, and rows of an interrupted ``add`` stay
  invisible; the next ``add`` deletes them before inserting.
- Retention: as the FAISS files, the collection of the generation a ``build --overwrite`` replaced is kept
  (a reader that loaded the old manifest just before the swap can still search it) and dropped by the next
  rebuild; older and orphan collections with the index's name prefix are dropped after each rebuild.
- Not atomic: Milvus has no transaction across the collection and the local files. A reader still holding
  a manifest two rebuilds old gets a :class:`GalleryIndexError` saying its collection no longer exists
  (reload the index). Writers of one index are serialised by :func:`writer_lock` (an ``flock`` in the index
  directory: one host, or a file system with working ``flock``).

``--factory`` takes the FAISS strings mapped to Milvus index types (``Flat`` -> FLAT, ``HNSW<M>`` -> HNSW,
``IVF<n>,Flat`` / ``IVF<n>,SQ8`` / ``IVF<n>,PQ<m>`` -> IVF_FLAT / IVF_SQ8 / IVF_PQ) with FAISS's default
search parameters (nprobe 1, efSearch 16), or a Milvus type name (``DISKANN``, ``AUTOINDEX``, ...) with the
server's defaults. Milvus Lite implements FLAT, HNSW, IVF_FLAT and IVF_SQ8.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from serving.backends import normalize_rows, pad_results
from serving.manifest import GalleryIndexError

__all__ = ["MilvusStore", "require", "index_spec", "check_uri", "uri_spec_for", "resolve_uri", "drop_replaced",
           "writer_lock", "fill_collection", "PK", "VECTOR"]

log = logging.getLogger(__name__)
T = TypeVar("T")
PK, VECTOR = "item_id", "embedding"
DEFAULT_LITE_URI = "milvus.db"
TOKEN_ENV = "SCWM_MILVUS_TOKEN"
_PATH_BYTES = 4096  # VARCHAR length of the path field (the items file keeps the full path)
_INSERT_BYTES = 16 << 20  # rows per insert request: about 16 MB of vectors
_MAX_NQ = 1024  # queries per search request
_NATIVE = ("FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX")
_lite_refs: dict[str, int] = {}
_lite_lock = threading.Lock()


def require() -> None:
    """Raise a :class:`GalleryIndexError` with the install command unless ``pymilvus`` is importable."""
    _pymilvus()


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise GalleryIndexError("the milvus backend needs pymilvus (and milvus-lite for a local .db): "
                                "pip install -e '.[milvus]' or pip install pymilvus milvus-lite") from None
    # pymilvus logs every failed call with a traceback; the errors are raised as GalleryIndexError instead
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)
    return pymilvus


def _msg(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)


def index_spec(factory: str, nprobe: int | None = None, ef_search: int | None = None,
               ) -> tuple[str, dict[str, int], dict[str, int]]:
    """``(Milvus index type, build params, search params)`` for a ``--factory`` string (see the module doc)."""
    f = factory.strip()
    if m := re.fullmatch(r"flat", f, re.I):
        kind, build = "FLAT", {}
    elif m := re.fullmatch(r"HNSW(\d+)", f):
        kind, build = "HNSW", {"M": int(m[1]), "efConstruction": 40}  # FAISS's HNSW<M> default
    elif m := re.fullmatch(r"IVF(\d+),(Flat|SQ8)", f):
        kind, build = f"IVF_{m[2].upper()}", {"nlist": int(m[1])}
    elif m := re.fullmatch(r"IVF(\d+),PQ(\d+)(?:x8)?", f):
        kind, build = "IVF_PQ", {"nlist": int(m[1]), "m": int(m[2]), "nbits": 8}
    elif f.upper() in _NATIVE:
        kind, build = f.upper(), {}
    else:
        raise GalleryIndexError(f"invalid factory {factory!r} for the milvus backend: use Flat, HNSW<M>, "
                                f"IVF<n>,Flat, IVF<n>,SQ8, IVF<n>,PQ<m> or a Milvus index type ({', '.join(_NATIVE)})")
    ivf, graph = kind.startswith("IVF") or kind == "SCANN", kind.startswith("HNSW") or kind == "DISKANN"
    for name, value, applies, family in (("nprobe", nprobe, ivf, "IVF"), ("efSearch", ef_search, graph, "HNSW")):
        if value is not None and not applies:
            raise GalleryIndexError(f"{name}={value} applies to {family} indexes only (this index is {kind})")
        if value is not None and int(value) < 1:
            raise GalleryIndexError(f"{name} must be >= 1, got {value}")
    search: dict[str, int] = {}
    if ivf and (nprobe is not None or build):  # FAISS-style strings get FAISS's defaults
        search["nprobe"] = int(nprobe or 1)
    if graph and (ef_search is not None or build):
        search["search_list" if kind == "DISKANN" else "ef"] = int(ef_search or 16)
    return kind, build, search


# ------------------------------------------------------------------------------------------ connections
def is_local(uri: str) -> bool:
    """A Milvus Lite path (no ``scheme://``)."""
    return "://" not in uri and not uri.startswith("unix:")


def uri_spec_for(uri: str | None, directory: Path) -> str:
    """What the manifest records: the default ``milvus.db`` and local paths inside ``directory`` relative
    to it, other local paths absolute, server URIs as given."""
    if uri is None:
        return DEFAULT_LITE_URI
    if not is_local(uri):
        return uri
    if not uri.endswith(".db"):
        raise GalleryIndexError(f"invalid Milvus URI {uri!r}: a Milvus Lite database is a path ending in .db, "
                                "a server http(s)://host:port")
    p = Path(uri).resolve()
    try:
        return str(p.relative_to(directory.resolve()))
    except ValueError:
        return str(p)


def resolve_uri(spec: str, directory: Path) -> str:
    """The URI to connect to for a recorded ``spec`` (relative Lite paths are inside ``directory``)."""
    return str((directory / spec).resolve()) if is_local(spec) else spec


def _lite_locked(path: str) -> bool:
    """Whether another process holds the Milvus Lite database ``path`` (its flock on ``LOCK``)."""
    lock = Path(path) / "LOCK"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def connect(uri: str) -> Any:
    """A ``MilvusClient`` for ``uri`` (Lite servers are reference-counted per database in this process)."""
    pm = _pymilvus()
    timeout = float(os.environ.get("SCWM_MILVUS_TIMEOUT", "30"))
    uri = _key(uri)
    if is_local(uri) and not uri.endswith(".db"):
        raise GalleryIndexError(f"invalid Milvus URI {uri!r}: a Milvus Lite database is a path ending in .db")
    # Milvus Lite's in-process gRPC server answers pings during a long call (an index build, a big flush)
    # with GOAWAY "too_many_pings", and the client then retries the call: no keepalive on loopback
    opts = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": False} if is_local(uri) else {}
    try:
        with _lite_lock:
            client = pm.MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""), timeout=timeout, grpc_options=opts)
            if is_local(uri):
                _lite_refs[uri] = _lite_refs.get(uri, 0) + 1
    except pm.MilvusException as exc:
        if is_local(uri) and _lite_locked(uri):
            raise GalleryIndexError(
                f"the Milvus Lite database {uri} is open in another process (a server or Retriever): Milvus "
                "Lite allows one process at a time; stop that process, or serve the database with `milvus-lite "
                "server --data-dir DB --host 127.0.0.1` and pass --uri http://127.0.0.1:19530") from None
        raise GalleryIndexError(f"cannot connect to Milvus at {uri}: {_msg(exc)}") from None
    return client


def _key(uri: str) -> str:
    return str(Path(uri).resolve()) if is_local(uri) else uri


def disconnect(client: Any, uri: str) -> None:
    uri = _key(uri)
    try:
        client.close()
    finally:
        if is_local(uri):
            with _lite_lock:
                _lite_refs[uri] = _lite_refs.get(uri, 1) - 1
                last = _lite_refs[uri] <= 0
                if last:
                    _lite_refs.pop(uri)
            if last:  # stop the in-process Lite server: releases the database's LOCK
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)


def check_uri(uri: str) -> None:
    """Connect once and disconnect (fail before embedding a gallery)."""
    disconnect(connect(uri), uri)


# ---------------------------------------------------------------------------------------------- store
class MilvusStore:
    """A gallery collection in Milvus; searches see ids ``0 .. count-1`` only (the committed gallery)."""

    backend = "milvus"
    on_gpu = False
    write_file = None

    def __init__(self, client: Any, uri: str, uri_spec: str, collection: str, dim: int, count: int,
                 index_type: str, build_params: dict[str, int], search_params: dict[str, int]) -> None:
        self.client, self.uri, self.uri_spec, self.collection = client, uri, uri_spec, collection
        self._dim, self._count = int(dim), int(count)
        self.index_type, self.build_params, self.search_params = index_type, build_params, search_params
        self._appending = False

    @property
    def count(self) -> int:
        return self._count

    @property
    def dim(self) -> int:
        return self._dim

    def _fail(self, what: str, exc: BaseException) -> GalleryIndexError:
        if "not exist" in _msg(exc) or "not found" in _msg(exc).lower():
            return GalleryIndexError(f"Milvus collection {self.collection} no longer exists at {self.uri} (the "
                                     "index was rebuilt or dropped): reload the index directory")
        return GalleryIndexError(f"Milvus {what} failed on collection {self.collection} at {self.uri}: "
                                 f"{_msg(exc)}")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = normalize_rows(queries)
        params = dict(self.search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], k)  # Milvus requires ef >= k
        hits: list[list[tuple[int, float]]] = []
        pm = _pymilvus()
        for s in range(0, len(q), _MAX_NQ):
            try:
                res = self.client.search(self.collection, data=list(q[s:s + _MAX_NQ]), limit=k, anns_field=VECTOR,
                                         filter=f"{PK} < {self._count}", output_fields=[],
                                         search_params={"metric_type": "IP", "params": params})
            except pm.MilvusException as exc:
                raise self._fail("search", exc) from None
            hits.extend([(int(_hit_id(h)), float(h["distance"])) for h in row] for row in res)
        return pad_results(hits, k)

    def add(self, embeddings: np.ndarray, items: Sequence[dict[str, Any]]) -> None:
        if not len(items):
            return
        if items[0]["item_id"] != self._count:
            raise GalleryIndexError(f"items must continue at id {self._count}, got {items[0]['item_id']}")
        pm = _pymilvus()
        x = normalize_rows(embeddings)
        try:
            if not self._appending:  # rows of an interrupted add (ids >= the committed count) go first
                self.client.delete(self.collection, filter=f"{PK} >= {self._count}")
                self._appending = True
            step = max(1, _INSERT_BYTES // (4 * self._dim + _PATH_BYTES // 8))
            for s in range(0, len(x), step):
                rows = [{PK: int(it["item_id"]), "pid": it.get("pid"), "camera": it.get("camera"),
                         "path": str(it["path"]).encode()[:_PATH_BYTES].decode(errors="ignore"), VECTOR: v}
                        for it, v in zip(items[s:s + step], x[s:s + step], strict=True)]
                self.client.insert(self.collection, rows)
        except pm.MilvusException as exc:
            raise self._fail("insert", exc) from None
        self._count += len(x)

    def flush(self) -> None:
        try:
            self.client.flush(self.collection)
        except _pymilvus().MilvusException as exc:
            raise self._fail("flush", exc) from None

    def facts(self) -> dict[str, Any]:
        return {"uri": self.uri_spec, "collection": self.collection,
                "index_type": self.index_type, "index_params": dict(self.build_params)}

    def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            disconnect(client, self.uri)

    def drop(self) -> None:
        """Drop the collection (a build that did not commit)."""
        try:
            self.client.drop_collection(self.collection)
        except Exception as exc:  # noqa: BLE001 - best effort on an error path
            log.warning("could not drop Milvus collection %s: %s", self.collection, _msg(exc))

    # ------------------------------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, uri: str, uri_spec: str, dim: int, factory: str, nprobe: int | None = None,
               ef_search: int | None = None, prefix: str | None = None) -> MilvusStore:
        """A new, empty collection ``<prefix><tag>`` (prefix ``scwm_<random id>_`` for a new index)."""
        kind, build, search = index_spec(factory, nprobe, ef_search)
        pm = _pymilvus()
        client = connect(uri)
        name = f"{prefix or f'scwm_{uuid.uuid4().hex[:12]}_'}{uuid.uuid4().hex[:8]}"
        try:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(PK, pm.DataType.INT64, is_primary=True)
            schema.add_field("pid", pm.DataType.INT64, nullable=True)
            schema.add_field("camera", pm.DataType.INT64, nullable=True)
            schema.add_field("path", pm.DataType.VARCHAR, max_length=_PATH_BYTES)
            schema.add_field(VECTOR, pm.DataType.FLOAT_VECTOR, dim=int(dim))
            params = client.prepare_index_params()
            params.add_index(field_name=VECTOR, index_type=kind, metric_type="IP", params=build)
            client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        except pm.MilvusException as exc:
            disconnect(client, uri)
            raise GalleryIndexError(f"cannot create Milvus collection {name} ({kind}) at {uri}: "
                                    f"{_msg(exc)}") from None
        store = cls(client, uri, uri_spec, name, dim, 0, kind, build, search)
        store._appending = True
        return store

    @classmethod
    def load(cls, directory: Path, manifest: dict[str, Any], uri: str | None = None) -> MilvusStore:
        """Connect to the collection the manifest names and check it (exists, dimension, metric, committed
        row count); ``uri`` overrides the recorded location (e.g. the cluster's address from this host)."""
        spec = uri_spec_for(uri, directory) if uri else manifest["uri"]
        target = resolve_uri(spec, directory)
        name, count = manifest["collection"], int(manifest["count"])
        _, _, search = index_spec(manifest["factory"], *(manifest.get("search_params", {}).get(k)
                                                          for k in ("nprobe", "efSearch")))
        pm = _pymilvus()
        client = connect(target)
        store = cls(client, target, spec, name, manifest["embedding_size"], count, manifest.get("index_type", "?"),
                    manifest.get("index_params", {}), search)
        try:
            if not client.has_collection(name):
                raise GalleryIndexError(f"index directory {directory} names Milvus collection {name}, which does "
                                        f"not exist at {target}")
            fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
            dim = int((fields.get(VECTOR) or {}).get("params", {}).get("dim", -1))
            if dim != int(manifest["embedding_size"]):
                raise GalleryIndexError(f"Milvus collection {name} has dimension {dim}, manifest says "
                                        f"{manifest['embedding_size']}")
            metric = client.describe_index(name, VECTOR).get("metric_type")
            if metric != "IP":
                raise GalleryIndexError(f"Milvus collection {name} uses metric {metric}, not IP")
            client.load_collection(name)
            rows = client.query(name, filter=f"{PK} < {count}", output_fields=["count(*)"])
            have = int(rows[0]["count(*)"]) if rows else 0
            if have != count:
                raise GalleryIndexError(f"index directory {directory} is inconsistent: manifest count {count}, "
                                        f"{have} committed rows in Milvus collection {name}")
        except pm.MilvusException as exc:
            store.close()
            raise store._fail("load", exc) from None
        except BaseException:
            store.close()
            raise
        return store


def fill_collection(directory: Path, spec: str, factory: str, nprobe: int | None, ef_search: int | None,
                    old: dict[str, Any] | None, embeddings: np.ndarray, items: Sequence[dict[str, Any]],
                    commit: Callable[[MilvusStore], T]) -> T:
    """Create the collection of a new generation of the index in ``directory`` (keeping the name prefix of
    the ``old`` manifest's, if Milvus), insert ``embeddings`` under ``items`` and ``commit(store)`` (flush +
    manifest swap). On a failure before the swap landed the new collection is dropped."""
    prefix = str(old["collection"]).rsplit("_", 1)[0] + "_" if old and old.get("backend") == "milvus" else None
    store = MilvusStore.create(resolve_uri(spec, directory), spec, embeddings.shape[1], factory, nprobe, ef_search,
                               prefix)
    try:
        store.add(embeddings, items)
        return commit(store)
    except BaseException:
        try:
            landed = json.loads((directory / "manifest.json").read_text()).get("collection") == store.collection
        except (OSError, ValueError):
            landed = False
        if not landed:
            store.drop()
        store.close()
        raise


def _hit_id(hit: Any) -> int:
    try:
        return hit["id"]
    except KeyError:  # pymilvus 3 names the key after the primary field
        return hit[PK]


def drop_replaced(old: dict[str, Any], directory: Path, new: tuple[str, str] | None) -> None:
    """After a commit that replaced the Milvus index ``old`` (its manifest) by ``new`` = (uri, collection):
    drop the collections of the index's earlier generations and of interrupted builds (same name prefix), but
    keep ``new`` and ``old``'s own collection, so that a reader that loaded the replaced manifest just before
    the commit can still search (two generations are kept, as the FAISS files are). ``new=None`` (the index
    left the Milvus backend) drops ``old``'s collection too."""
    target = resolve_uri(old["uri"], directory)
    if is_local(target) and not Path(target).is_dir():
        return
    prefix = str(old["collection"]).rsplit("_", 1)[0] + "_"
    keep = {new, (target, old["collection"])} if new is not None else set()
    try:
        client = connect(target)
    except GalleryIndexError as exc:
        log.warning("could not drop the replaced Milvus collections of %s: %s", old["collection"], exc)
        return
    try:
        for name in client.list_collections():
            if name.startswith(prefix) and (target, name) not in keep:
                client.drop_collection(name)
    except Exception as exc:  # noqa: BLE001 - the new index is committed; a leftover is only garbage
        log.warning("could not drop the replaced Milvus collections of %s: %s", old["collection"], _msg(exc))
    finally:
        disconnect(client, target)


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive right to write a Milvus index (``<index>/.milvus-writer.lock``, an ``flock`` freed if the
    process dies): ``add`` inserts rows before its commit, so two writers must not interleave."""
    path = Path(directory) / ".milvus-writer.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GalleryIndexError(f"another process is writing the Milvus index {directory} (it holds {path}); "
                                    "retry when it has finished") from None
        yield
    finally:
        os.close(fd)
