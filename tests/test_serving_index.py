"""Gallery index: build / reload / add round trips, model mismatch refusal, corruption detection, CLIs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from scwm.models import ModelSpec, save_checkpoint
from scwm.utils import sha256_file
from serving import export as ex
from serving import index as ix
from serving.engine import OnnxEngine
from serving.retriever import Retriever

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("index")
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(1)
    save_checkpoint(d / "ckpt.pt", spec.build().eval(), spec)
    model = ex.export_checkpoint(d / "ckpt.pt", d / "model.onnx")[0].path
    # a different model: same graph, one weight changed, fingerprint recomputed
    proto = onnx.load(str(model))
    init = next(i for i in proto.graph.initializer if i.name.endswith("global_bn.weight"))
    w = onnx.numpy_helper.to_array(init) * 1.5
    init.CopyFrom(onnx.numpy_helper.from_array(w.astype(np.float32), init.name))
    for p in proto.metadata_props:
        if p.key == "scwm.fingerprint":
            p.value = ex.model_fingerprint(proto)
    other = d / "other.onnx"
    onnx.save(proto, str(other))
    # a tiny tree: Market-named images in two folders, a non-Market name and an unreadable file
    tree = d / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    pics = ex.generated_pictures(11, seed=3)
    for i, pic in enumerate(pics[:8]):
        pic.save(tree / "a" / f"{i // 2 + 1:04d}_c{i % 2 + 1}s1_{i:06d}_00.jpg")
    pics[8].save(tree / "b" / "-1_c3s1_000008_00.png")
    pics[9].save(tree / "b" / "holiday photo.png")
    (tree / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    extra = d / "extra"
    extra.mkdir()
    pics[10].save(extra / "0007_c2s1_000010_00.jpg")
    return {"dir": d, "model": model, "other": other, "tree": tree, "extra": extra,
            "engine": OnnxEngine(model)}


@pytest.fixture()
def built(setup: dict, tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    ix.build_index(setup["engine"], [setup["tree"]], out, progress=False)
    return out


def test_parse_market_name() -> None:
    assert ix.parse_market_name("/x/0002_c3s1_000123_00.jpg") == (2, 3)
    assert ix.parse_market_name("-1_c1s2_000001_00.jpg") == (-1, 1)
    assert ix.parse_market_name("0000_c6s4_1_01.png") == (0, 6)
    assert ix.parse_market_name("holiday photo.png") == (None, None)
    assert ix.parse_market_name("1-2_c3.jpg") == (None, None)
    # the trainer's Market reader decides: names it rejects (camera 0, pid below -1) carry no ground truth
    assert ix.parse_market_name("0001_c0s1_000001_00.jpg") == (None, None)
    assert ix.parse_market_name("-2_c1s1_000001_00.jpg") == (None, None)


def test_build_reload_and_search(setup: dict, built: Path) -> None:
    g = ix.GalleryIndex.load(built)
    assert g.count == 10 and g.dim == 512 and g.manifest["factory"] == "Flat"
    assert g.manifest["index_type"] == "IndexFlat" and g.fingerprint == setup["engine"].fingerprint
    by_name = {Path(it["path"]).name: it for it in g.items}
    assert by_name["0003_c1s1_000004_00.jpg"]["pid"] == 3 and by_name["0003_c1s1_000004_00.jpg"]["camera"] == 1
    assert by_name["-1_c3s1_000008_00.png"]["pid"] == -1
    assert by_name["holiday photo.png"]["pid"] is None and by_name["holiday photo.png"]["camera"] is None
    assert all(it["added"] for it in g.items) and [it["item_id"] for it in g.items] == list(range(10))
    skipped = g.manifest["skipped"]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0]["path"] and "broken.jpg" in skipped[0]["reason"]
    # exact search: each gallery image finds itself first with score 1, same as numpy brute force
    embs = setup["engine"].embed([it["path"] for it in g.items])["global_feat"]
    scores, ids = g.search(embs, k=10)
    assert list(ids[:, 0]) == list(range(10))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    brute = embs @ embs.T
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1], atol=1e-5)
    assert g.search(embs[:1], k=50)[1].shape == (1, 10)  # k is clipped to the gallery size
    info = ix.index_info(built)
    assert info["verified"] and info["count"] == 10 and info["known_pids"] == 5


def test_add_is_incremental_and_swaps_files(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    ix.build_index(setup["model"], [setup["tree"] / "a"], out, progress=False)
    first = json.loads((out / ix.MANIFEST).read_text())
    g, n, skipped = ix.add_to_index(out, [setup["tree"] / "b", setup["extra"]], progress=False)
    assert (n, len(skipped), g.count) == (3, 1, 11)
    second = json.loads((out / ix.MANIFEST).read_text())
    assert second["generation"] == first["generation"] + 1 and second["created"] == first["created"]
    names = sorted(p.name for p in out.iterdir())
    # the generation just replaced is kept for readers that read its manifest a moment ago; older ones go
    assert names == sorted([ix.MANIFEST, second["index_file"], second["items_file"], first["index_file"],
                            first["items_file"]])
    g = ix.GalleryIndex.load(out)
    assert [it["item_id"] for it in g.items] == list(range(11))
    new = setup["engine"].embed(setup["extra"] / "0007_c2s1_000010_00.jpg")["global_feat"]
    _, ids = g.search(new, k=1)
    assert g.items[int(ids[0, 0])]["pid"] == 7
    # adding the same images again adds nothing
    assert ix.add_to_index(out, [setup["extra"]], progress=False)[1] == 0
    third = json.loads((out / ix.MANIFEST).read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([ix.MANIFEST, third["index_file"], third["items_file"],
                                                            second["index_file"], second["items_file"]])


def test_different_model_is_refused(setup: dict, built: Path) -> None:
    with pytest.raises(ix.ModelMismatchError, match="fingerprint"):
        Retriever.load(built, model_path=setup["other"])
    with pytest.raises(ix.ModelMismatchError, match="rebuild the index"):
        ix.add_to_index(built, [setup["extra"]], model=setup["other"], progress=False)
    assert ix.GalleryIndex.load(built).count == 10  # untouched


def _manifest(d: Path) -> dict:
    return json.loads((d / ix.MANIFEST).read_text())


def test_truncated_index_file(built: Path) -> None:
    f = built / _manifest(built)["index_file"]
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ix.GalleryIndexError, match="corrupt: sha256"):
        ix.GalleryIndex.load(built)
    with pytest.raises(ix.GalleryIndexError, match="cannot read FAISS index"):
        ix.GalleryIndex.load(built, verify_checksums=False)


def test_missing_metadata_file(built: Path) -> None:
    (built / _manifest(built)["items_file"]).unlink()
    with pytest.raises(ix.GalleryIndexError, match=r"incomplete: items-.*missing"):
        ix.GalleryIndex.load(built)


def test_checksum_mismatch(built: Path) -> None:
    f = built / _manifest(built)["items_file"]
    f.write_text(f.read_text().replace('"camera": 1', '"camera": 2', 1))
    with pytest.raises(ix.GalleryIndexError, match=r"items-.*corrupt"):
        ix.GalleryIndex.load(built)


def test_count_mismatch(built: Path) -> None:
    m = _manifest(built)
    f = built / m["items_file"]
    f.write_text("".join(f.read_text().splitlines(keepends=True)[:-1]))
    m["items_sha256"] = sha256_file(f)  # consistent checksum, inconsistent count
    (built / ix.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ix.GalleryIndexError, match="inconsistent: manifest count 10, 10 vectors .* 9 items"):
        ix.GalleryIndex.load(built)


def test_missing_or_garbled_manifest(built: Path, tmp_path: Path) -> None:
    (built / ix.MANIFEST).write_text("{not json")
    with pytest.raises(ix.GalleryIndexError, match="not valid JSON"):
        ix.GalleryIndex.load(built)
    (built / ix.MANIFEST).unlink()
    with pytest.raises(ix.GalleryIndexError, match="manifest.json is missing"):
        ix.GalleryIndex.load(built)
    with pytest.raises(ix.GalleryIndexError, match="not found"):
        ix.GalleryIndex.load(tmp_path / "nowhere")


def test_approximate_factories_and_parameters(setup: dict, tmp_path: Path) -> None:
    eng = setup["engine"]
    exact = ix.GalleryIndex.load(ix.build_index(eng, [setup["tree"]], tmp_path / "flat", progress=False).directory)
    q = eng.embed(str(setup["extra"] / "0007_c2s1_000010_00.jpg"))["global_feat"]
    for factory, kw in (("HNSW8", {"ef_search": 32}), ("IVF2,Flat", {"nprobe": 2})):
        out = tmp_path / factory.replace(",", "_")
        ix.build_index(eng, [setup["tree"]], out, factory=factory, progress=False, **kw)
        g = ix.GalleryIndex.load(out)
        assert g.manifest["factory"] == factory and g.manifest["search_params"]
        np.testing.assert_array_equal(g.search(q, 5)[1], exact.search(q, 5)[1])  # all lists probed
    with pytest.raises(ix.GalleryIndexError, match="nprobe=3 applies to IVF indexes only"):
        ix.build_index(eng, [setup["tree"]], tmp_path / "bad1", nprobe=3, progress=False)
    with pytest.raises(ix.GalleryIndexError, match="invalid FAISS factory"):
        ix.build_index(eng, [setup["tree"]], tmp_path / "bad2", factory="Nonsense99", progress=False)
    with pytest.raises(ix.GalleryIndexError, match="cannot train 'IVF64,PQ16' on 10 embeddings"):
        ix.build_index(eng, [setup["tree"]], tmp_path / "bad3", factory="IVF64,PQ16", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HNSW8", "IVF2_Flat", "flat"]  # no debris


def test_build_refuses_existing_dir_and_overwrites_atomically(setup: dict, built: Path) -> None:
    with pytest.raises(ix.GalleryIndexError, match="already exists"):
        ix.build_index(setup["engine"], [setup["extra"]], built, progress=False)
    old = _manifest(built)
    ix.build_index(setup["engine"], [setup["extra"]], built, overwrite=True, progress=False)
    new = _manifest(built)
    assert new["count"] == 1 and new["generation"] > old["generation"]
    assert sorted(p.name for p in built.iterdir()) == sorted([ix.MANIFEST, new["index_file"], new["items_file"],
                                                              old["index_file"], old["items_file"]])
    not_index = built.parent / "plain"
    not_index.mkdir()
    with pytest.raises(ix.GalleryIndexError, match="not a gallery index"):
        ix.build_index(setup["engine"], [setup["extra"]], not_index, overwrite=True, progress=False)
    empty = built.parent / "empty_src"
    empty.mkdir()
    (empty / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ix.GalleryIndexError, match="none of the 1 images could be read"):
        ix.build_index(setup["engine"], [empty], built.parent / "never", progress=False)
    assert not (built.parent / "never").exists()
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]


def test_index_cli(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_idx"
    assert ix.main(["build", "--model", str(setup["model"]), "--images", str(setup["tree"]), "--out", str(out),
                    "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "10 images" in text and "skipped 1 unreadable" in text and "broken.jpg" in text
    assert ix.main(["add", "--index", str(out), "--images", str(setup["extra"]), "--no-progress"]) == 0
    assert "11 in total" in capsys.readouterr().out
    assert ix.main(["info", "--index", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 11 and info["verified"]
    assert ix.main(["info", "--index", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    (out / info["index_file"]).write_bytes(b"")
    assert ix.main(["info", "--index", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_search_cli_subprocess(setup: dict, built: Path) -> None:
    query = setup["extra"] / "0007_c2s1_000010_00.jpg"
    cmd = [sys.executable, "-m", "serving.search", "--index", str(built), "--query", str(query), "--k", "3"]
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["query"] == str(query) and [h["rank"] for h in out["hits"]] == [1, 2, 3]
    assert set(out["hits"][0]) == {"rank", "score", "path", "pid", "camera", "item_id"}


def test_search_cli_in_process_table(setup: dict, built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from serving import search

    shutil.copy(setup["extra"] / "0007_c2s1_000010_00.jpg", built.parent / "q.jpg")
    assert search.main(["--index", str(built), "--query", str(built.parent / "q.jpg"), "--k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["rank", "score", "pid", "cam"] and len(lines) == 4
    assert search.main(["--index", str(built), "--query", str(built.parent / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
