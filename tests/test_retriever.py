"""The Retriever API on a small Market-named gallery: search hits, query = search + parse from one forward pass,
parsing maps, gallery metadata, thread safety and load errors. The served-vs-trainer mAP parity on the synthetic
world is in tests/e2e/test_retriever_parity.py."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scwm.data.images import load_image
from scwm.data.transforms import preprocess
from scwm.models import ModelSpec, load_model, save_checkpoint
from serving import export as ex
from serving import index as ix
from serving.retriever import Hit, Retriever, upsample_labels


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A seeded tiny model and a gallery of 12 Market-named generated pictures (4 identities x 3 cameras)."""
    d = tmp_path_factory.mktemp("retriever")
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    save_checkpoint(d / "ckpt.pt", spec.build().eval(), spec)
    model = ex.export_checkpoint(d / "ckpt.pt", d / "model.onnx")[0].path
    gallery_dir, query_dir = d / "bounding_box_test", d / "query"
    gallery_dir.mkdir()
    query_dir.mkdir()
    for i, pic in enumerate(ex.generated_pictures(12, seed=5)):
        pic.save(gallery_dir / f"{i // 3 + 1:04d}_c{i % 3 + 1}s1_{i:06d}_00.jpg")
    for i, pic in enumerate(ex.generated_pictures(4, seed=9)):
        pic.save(query_dir / f"{i + 1:04d}_c{i % 3 + 1}s2_{i:06d}_00.jpg")
    ix.build_index(model, [d], d / "index", progress=False)  # Market root -> bounding_box_test
    return {"dir": d, "ckpt": d / "ckpt.pt", "model": model, "index": d / "index",
            "queries": sorted(query_dir.glob("*.jpg")), "gallery": sorted(gallery_dir.glob("*.jpg")),
            "retriever": Retriever.load(d / "index")}


def test_public_import() -> None:
    import serving

    if getattr(serving, "__file__", None) is None:
        pytest.skip("`serving` resolves as a namespace package: the editable install predates "
                    "serving/__init__.py; re-run `pip install -e .`")
    from serving import Retriever as R

    assert R is Retriever


def test_search_hits_and_embed(small: dict) -> None:
    r: Retriever = small["retriever"]
    q = small["queries"][0]
    hits = r.search(q, k=5)
    assert len(hits) == 5 and all(isinstance(h, Hit) for h in hits)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert hits[0].pid is not None and Path(hits[0].path).is_file()
    emb = r.embed(q)
    assert emb.shape == (512,) and r.embed([q, q]).shape == (2, 512)
    np.testing.assert_allclose(hits[0].score, float(emb @ r.embed(hits[0].path)), atol=1e-5)
    assert len(r.search(q, k=10_000)) == len(r)
    assert r.search_batch([]) == []
    with pytest.raises(TypeError, match="search_batch"):
        r.search([q])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        r.search(q, k=0)


def test_query_is_search_plus_parse_in_one_pass(small: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    r: Retriever = small["retriever"]
    for q in small["queries"]:
        hits, labels = r.query(q, k=5)
        expected = r.search(q, k=5)
        assert [(h.rank, h.item_id, h.path, h.pid, h.camera) for h in hits] == \
            [(h.rank, h.item_id, h.path, h.pid, h.camera) for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-6)
        np.testing.assert_array_equal(labels, r.parse(q))
    # other input types give the same answer; one image per call
    q = small["queries"][0]
    hits, labels = r.query(q.read_bytes(), k=3)
    assert [h.item_id for h in hits] == [h.item_id for h in r.search(q, k=3)]
    np.testing.assert_array_equal(labels, r.parse(q))
    with pytest.raises(TypeError, match="one image"):
        r.query([q])  # type: ignore[arg-type]
    calls: list[int] = []
    run = r.engine.run
    monkeypatch.setattr(r.engine, "run", lambda batch: calls.append(len(batch)) or run(batch))
    r.query(q, k=3)
    assert calls == [1]  # embedding and part labels from one forward pass


def test_parse_batch_gallery_items_and_info(small: dict) -> None:
    r: Retriever = small["retriever"]
    images = [load_image(p) for p in small["gallery"][:3]] + [small["queries"][0].read_bytes()]
    batch = r.parse_batch(images)
    assert len(batch) == 4 and r.parse_batch([]) == []
    for im, labels in zip(images, batch, strict=True):
        np.testing.assert_array_equal(labels, r.parse(im))
    items = r.gallery_items
    assert len(items) == len(r) == 12 and [it["item_id"] for it in items] == list(range(12))
    assert {(it["pid"], it["camera"]) for it in items} == {(p, c) for p in range(1, 5) for c in range(1, 4)}
    info = r.info()
    assert info["model"]["path"] == str(small["model"]) and info["model"]["spec"]["backbone"] == "resnet18"
    assert info["model"]["embedding_size"] == 512 and info["model"]["providers"]
    assert info["index"]["count"] == 12 and info["index"]["directory"] == str(small["index"])
    assert info["index"]["factory"] == "Flat" and info["index"]["on_gpu"] is False


def test_parse_label_map(small: dict) -> None:
    r: Retriever = small["retriever"]
    img = load_image(small["queries"][0])
    labels = r.parse(img)
    assert labels.shape == (img.height, img.width) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(r.part_names) == 4 and r.part_names[-1] == "background"
    # independent computation: torch model -> argmax -> nearest-exact upsampling
    model, spec = load_model(small["ckpt"])
    x = torch.from_numpy(preprocess(img, spec.height, spec.width, spec.mean, spec.std))[None]
    with torch.no_grad():
        arg = model(x).part_probs.argmax(1, keepdim=True).double()
    ref = F.interpolate(arg, size=(img.height, img.width), mode="nearest-exact")[0, 0].long().numpy()
    np.testing.assert_array_equal(labels, ref)
    np.testing.assert_array_equal(upsample_labels(np.arange(6).reshape(2, 3), 4, 6),
                                  np.repeat(np.repeat(np.arange(6).reshape(2, 3), 2, 0), 2, 1))


def test_concurrent_searches_match_serial(small: dict) -> None:
    r: Retriever = small["retriever"]
    queries = [str(q) for q in small["queries"]]
    serial = [[(h.item_id, h.score) for h in r.search(q, k=10)] for q in queries]
    results: dict[tuple[int, int, int], list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        try:
            start.wait()
            for rep in range(3):
                order = queries[t % len(queries):] + queries[:t % len(queries)]
                for q in order:
                    results[(t, rep, queries.index(q))] = [(h.item_id, h.score) for h in r.search(q, k=10)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 8 * 3 * len(queries)
    for (_, _, qi), got in results.items():
        assert [i for i, _ in got] == [i for i, _ in serial[qi]]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in serial[qi]], atol=1e-6)


def test_load_errors(small: dict, tmp_path: Path) -> None:
    with pytest.raises(ix.GalleryIndexError, match="not found"):
        Retriever.load(tmp_path / "none")
    moved = tmp_path / "index"
    shutil.copytree(small["index"], moved)
    manifest = moved / ix.MANIFEST
    manifest.write_text(manifest.read_text().replace(str(small["model"].resolve()), "/nowhere/model.onnx"))
    with pytest.raises(ValueError, match="does not exist; pass model_path"):
        Retriever.load(moved)
    assert len(Retriever.load(moved, model_path=small["model"])) == len(small["gallery"])
