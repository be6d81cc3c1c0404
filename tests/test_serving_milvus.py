"""Milvus backend (Milvus Lite): same top-10 as FAISS Flat, manifest, model refusal, Retriever end to end,
add with reader isolation, rebuild retention, a server URI, and clear errors for bad URIs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="the milvus extra is not installed (pip install -e '.[milvus]')")

from scwm.models import ModelSpec, save_checkpoint  # noqa: E402
from serving import export as ex  # noqa: E402
from serving import index as ix  # noqa: E402
from serving.backends import milvus_backend as mb  # noqa: E402
from serving.backends.faiss_backend import FaissStore, make_faiss_index  # noqa: E402
from serving.engine import OnnxEngine  # noqa: E402
from serving.retriever import Retriever  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny exported model, a second model (one weight changed) and 10 + 1 Market-named pictures."""
    d = tmp_path_factory.mktemp("milvus")
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(1)
    save_checkpoint(d / "ckpt.pt", spec.build().eval(), spec)
    model = ex.export_checkpoint(d / "ckpt.pt", d / "model.onnx")[0].path
    proto = onnx.load(str(model))  # another model: one weight changed, fingerprint recomputed
    init = next(i for i in proto.graph.initializer if i.name.endswith("global_bn.weight"))
    init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 1.5, init.name))
    for prop in proto.metadata_props:
        if prop.key == "scwm.fingerprint":
            prop.value = ex.model_fingerprint(proto)
    other = d / "other.onnx"
    onnx.save(proto, str(other))
    tree, extra = d / "tree", d / "extra"
    tree.mkdir()
    extra.mkdir()
    pics = ex.generated_pictures(11, seed=3)
    for i, pic in enumerate(pics[:10]):
        pic.save(tree / f"{i // 2 + 1:04d}_c{i % 2 + 1}s1_{i:06d}_00.jpg")
    pics[10].save(extra / "0007_c2s1_000010_00.jpg")
    engine = OnnxEngine(model)
    ix.build_index(engine, [tree], d / "faiss", progress=False)
    return {"dir": d, "model": model, "other": other, "tree": tree, "extra": extra, "engine": engine,
            "query": extra / "0007_c2s1_000010_00.jpg"}


@pytest.fixture()
def built(setup: dict, tmp_path: Path) -> Path:
    out = tmp_path / "mil"
    ix.build_index(setup["engine"], [setup["tree"]], out, backend="milvus", progress=False).close()
    return out


def _collections(index_dir: Path) -> list[str]:
    uri = str(index_dir / "milvus.db")
    client = mb.connect(uri)
    try:
        return sorted(client.list_collections())
    finally:
        mb.disconnect(client, uri)


def test_same_top10_as_faiss_flat_on_20k(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, d = 20_000, 64  # Milvus Lite validates every float in Python: keep the insert short
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.concatenate([x[rng.choice(n, 20, replace=False)] + 0.3 * rng.standard_normal((20, d)),
                        rng.standard_normal((20, d))]).astype(np.float32)
    items = [{"item_id": i, "path": f"/g/{i:05d}_c1s1_000000_00.jpg", "pid": i, "camera": 1} for i in range(n)]
    uri = str(tmp_path / "milvus.db")
    store = mb.MilvusStore.create(uri, uri, d, "Flat")
    try:
        store.add(x, items)
        store.flush()
        assert store.count == n
        scores, ids = store.search(q, 10)
    finally:
        store.close()
    ref_scores, ref_ids = FaissStore(make_faiss_index(x)).search(q, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_build_manifest_and_retriever_end_to_end(setup: dict, built: Path) -> None:
    m = json.loads((built / ix.MANIFEST).read_text())
    assert m["backend"] == "milvus" and m["uri"] == "milvus.db" and m["collection"].startswith("scwm_")
    assert m["count"] == 10 and m["embedding_size"] == 512 and m["index_type"] == "FLAT"
    assert m["model_fingerprint"] == setup["engine"].fingerprint and "index_file" not in m
    assert sorted(p.name for p in built.iterdir() if not p.name.startswith(".")) == \
        sorted([ix.MANIFEST, m["items_file"], "milvus.db"])
    r = Retriever.load(built)  # the backend comes from the manifest
    ref = Retriever.load(setup["dir"] / "faiss")
    assert r.index.backend == "milvus" and len(r) == 10 and r.info()["index"]["backend"] == "milvus"
    by_name = {Path(it["path"]).name: it for it in r.gallery_items}
    assert by_name["0003_c1s1_000004_00.jpg"]["pid"] == 3 and by_name["0003_c1s1_000004_00.jpg"]["camera"] == 1
    hits, want = r.search(setup["query"], k=5), ref.search(setup["query"], k=5)
    assert [(h.item_id, h.path, h.pid, h.camera) for h in hits] == [(h.item_id, h.path, h.pid, h.camera) for h in want]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in want], atol=1e-5)
    assert len(r.search(setup["query"], k=50)) == 10  # k clipped to the gallery
    info = ix.index_info(built)
    assert info["verified"] and info["known_pids"] == 5 and info["index_bytes"] > 0
    r.index.close()


def test_other_model_is_refused(setup: dict, built: Path) -> None:
    with pytest.raises(ix.ModelMismatchError, match="fingerprint"):
        Retriever.load(built, model_path=setup["other"])
    with pytest.raises(ix.ModelMismatchError, match="rebuild the index"):
        ix.add_to_index(built, [setup["extra"]], model=setup["other"], progress=False)
    g = ix.GalleryIndex.load(built)
    assert g.count == 10 and g.store.count == 10
    g.close()


def test_add_reader_isolation_and_interrupted_add(setup: dict, built: Path) -> None:
    reader = ix.GalleryIndex.load(built)
    new = setup["engine"].embed(setup["query"])["global_feat"]
    # an add killed before its commit: rows inserted, manifest not swapped
    crashed = ix.GalleryIndex.load(built)
    crashed.add(new, [setup["query"]])
    crashed.store.flush()
    crashed.close()
    assert ix.GalleryIndex.load(built).count == 10
    assert 10 not in reader.search(new, k=10)[1]  # the uncommitted row is invisible
    g, n, skipped = ix.add_to_index(built, [setup["extra"]], progress=False)
    assert (n, skipped, g.count, g.manifest["generation"]) == (1, [], 11, 2)
    rows = g.store.client.query(g.store.collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert rows == 11  # the interrupted add's row was replaced, not duplicated
    g.close()
    assert reader.search(new, k=11)[1].shape == (1, 10)  # a reader keeps the gallery it loaded
    fresh = ix.GalleryIndex.load(built)
    scores, ids = fresh.search(new, k=1)
    assert ids[0, 0] == 10 and fresh.items[10]["pid"] == 7 and abs(scores[0, 0] - 1) < 1e-5
    assert ix.add_to_index(built, [setup["extra"]], progress=False)[1] == 0
    with pytest.raises(ix.GalleryIndexError, match="is a milvus index"):
        ix.add_to_index(built, [setup["extra"]], backend="faiss", progress=False)
    reader.close()
    fresh.close()


def test_rebuild_keeps_one_previous_collection(setup: dict, built: Path) -> None:
    names = []
    for _ in range(3):
        names.append(json.loads((built / ix.MANIFEST).read_text())["collection"])
        ix.build_index(setup["engine"], [setup["tree"]], built, backend="milvus", overwrite=True,
                       progress=False).close()
    names.append(json.loads((built / ix.MANIFEST).read_text())["collection"])
    assert len(set(names)) == 4 and len({n.rsplit("_", 1)[0] for n in names}) == 1
    assert _collections(built) == sorted(names[-2:])  # the new one and the one it replaced
    ix.build_index(setup["engine"], [setup["tree"]], built, overwrite=True, progress=False)  # back to FAISS
    assert _collections(built) == [] and ix.GalleryIndex.load(built).backend == "faiss"


def test_cli_and_server_uri(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    server, db, port = start_server_in_thread(str(tmp_path / "server.db"), host="127.0.0.1", port=0)
    try:
        out, uri = tmp_path / "cli", f"http://127.0.0.1:{port}"
        assert ix.main(["build", "--backend", "milvus", "--uri", uri, "--model", str(setup["model"]),
                        "--images", str(setup["tree"]), "--out", str(out), "--no-progress"]) == 0
        assert "10 images" in capsys.readouterr().out
        assert ix.main(["add", "--index", str(out), "--images", str(setup["extra"]), "--no-progress"]) == 0
        assert "11 in total" in capsys.readouterr().out
        assert ix.main(["info", "--index", str(out), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert (info["backend"], info["uri"], info["count"], info["index_bytes"]) == ("milvus", uri, 11, None)
        hits = Retriever.load(out).search(setup["query"], k=1)
        assert hits[0].pid == 7 and hits[0].camera == 2
    finally:
        server.stop(grace=0)
        db.close()


def test_lite_database_held_by_another_process(built: Path) -> None:
    code = ("import sys; from pymilvus import MilvusClient; c = MilvusClient(sys.argv[1]); "
            "print(len(c.list_collections()), flush=True); sys.stdin.read()")  # e.g. a Retriever in a server
    proc = subprocess.Popen([sys.executable, "-c", code, str(built / "milvus.db")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "1"
        with pytest.raises(ix.GalleryIndexError, match="open in another process"):
            ix.GalleryIndex.load(built)
    finally:
        proc.communicate("", timeout=60)
    ix.GalleryIndex.load(built).close()  # free again once that process has exited


def test_bad_uris_and_missing_client(setup: dict, built: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    eng, tree = setup["engine"], [setup["tree"]]
    for uri, msg in (("ftp://example", "is illegal"), ("http://127.0.0.1:1", "cannot connect to Milvus"),
                     (str(tmp_path / "gallery.txt"), "ending in .db"), ("/nonexistent/dir/g.db", "not exist")):
        with pytest.raises(ix.GalleryIndexError, match=msg):
            ix.build_index(eng, tree, tmp_path / "never", backend="milvus", uri=uri, progress=False)
    with pytest.raises(ix.GalleryIndexError, match="--uri applies to the milvus backend only"):
        ix.build_index(eng, tree, tmp_path / "never", uri="http://127.0.0.1:1", progress=False)
    with pytest.raises(ix.GalleryIndexError, match="invalid factory"):
        ix.build_index(eng, tree, tmp_path / "never", backend="milvus", factory="Nonsense", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mil"]  # no debris
    with pytest.raises(ix.GalleryIndexError, match="which does not exist"):
        ix.GalleryIndex.load(built, uri=str(tmp_path / "empty.db"))
    assert ix.main(["info", "--index", str(built), "--uri", "http://127.0.0.1:1"]) == 2
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(ix.GalleryIndexError, match=r"pip install -e '\.\[milvus\]'"):
        ix.build_index(eng, tree, tmp_path / "never", backend="milvus", progress=False)
    with pytest.raises(ix.GalleryIndexError, match="needs pymilvus"):
        ix.GalleryIndex.load(built)
