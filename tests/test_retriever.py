"""The Retriever API on a tiny synthetic set: served retrieval quality equals the trainer-side evaluation,
parsing maps, and thread safety."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
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
from serving.app_support import untrained_model
from serving.retriever import Hit, Retriever, upsample_labels

ROOT = Path(__file__).resolve().parents[1]
HAVE_SYNTHETIC = importlib.util.find_spec("scwm.data.synthetic") is not None
HAVE_EVALUATION = importlib.util.find_spec("scwm.evaluation") is not None
pytestmark = pytest.mark.skipif(not (HAVE_SYNTHETIC and HAVE_EVALUATION),
                                reason="needs the synthetic generator (scwm.data.synthetic) and scwm.evaluation")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("retriever")
    data = d / "syn"
    res = subprocess.run([sys.executable, "-m", "scwm.data.synthetic", "--preset", "tiny", "--out", str(data),
                          "--seed", "0"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if res.returncode != 0:
        pytest.skip(f"synthetic generator failed: {res.stderr[-500:]}")
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    train = sorted((data / "bounding_box_train").glob("*.jpg"))[:32]
    save_checkpoint(d / "ckpt.pt", untrained_model(spec, train), spec)
    model = ex.export_checkpoint(d / "ckpt.pt", d / "model.onnx")[0].path
    ix.build_index(model, [data], d / "index", progress=False)  # Market root -> bounding_box_test
    return {"dir": d, "data": data, "ckpt": d / "ckpt.pt", "index": d / "index",
            "queries": sorted((data / "query").glob("*.jpg")),
            "gallery": sorted((data / "bounding_box_test").glob("*.jpg")),
            "retriever": Retriever.load(d / "index")}


def test_public_import() -> None:
    import serving

    if getattr(serving, "__file__", None) is None:
        pytest.skip("`serving` resolves as a namespace package: the editable install predates "
                    "serving/__init__.py; re-run `pip install -e .`")
    from serving import Retriever as R

    assert R is Retriever


def test_served_map_equals_trainer_evaluation(world: dict) -> None:
    from scwm.evaluation import evaluate_rank

    r: Retriever = world["retriever"]
    queries, gallery = world["queries"], world["gallery"]
    assert len(r) == len(gallery) and len(queries) > 0
    # served side: rank the whole gallery through the index, distances = -score at the item ids
    results = r.search_batch([str(q) for q in queries], k=len(r))
    dist_served = np.full((len(queries), len(r)), np.inf)
    for i, hits in enumerate(results):
        assert [h.rank for h in hits] == list(range(1, len(r) + 1))
        for h in hits:
            dist_served[i, h.item_id] = -h.score
    items = r.index.items
    qp = [ix.parse_market_name(q) for q in queries]
    served = evaluate_rank(dist_served, np.array([p for p, _ in qp]), np.array([it["pid"] for it in items]),
                           np.array([c for _, c in qp]), np.array([it["camera"] for it in items]), max_rank=10)
    # trainer side: torch embeddings of the same checkpoint, the trainer's reader and evaluate_rank
    from scwm.data import read_synthetic

    ds = read_synthetic(world["data"])
    model, spec = load_model(world["ckpt"])

    def feats(records: list) -> torch.Tensor:
        x = torch.from_numpy(np.stack([preprocess(load_image(rec.path), spec.height, spec.width, spec.mean,
                                                  spec.std) for rec in records]))
        with torch.no_grad():
            return model(x).global_feat

    qf, gf = feats(ds.query), feats(ds.gallery)
    trainer = evaluate_rank((-(qf @ gf.T)).numpy(), np.array([x.pid for x in ds.query]),
                            np.array([x.pid for x in ds.gallery]), np.array([x.camid for x in ds.query]),
                            np.array([x.camid for x in ds.gallery]), max_rank=10)
    assert trainer.num_valid_queries == served.num_valid_queries > 0
    assert 0.05 < trainer.mAP < 1.0  # a non-trivial ranking
    assert abs(served.mAP - trainer.mAP) <= 1e-6, (served.mAP, trainer.mAP)
    np.testing.assert_allclose(served.cmc, trainer.cmc, atol=1e-6)


def test_search_hits_and_embed(world: dict) -> None:
    r: Retriever = world["retriever"]
    q = world["queries"][0]
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


def test_parse_label_map(world: dict) -> None:
    r: Retriever = world["retriever"]
    img = load_image(world["queries"][0])
    labels = r.parse(img)
    assert labels.shape == (img.height, img.width) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(r.part_names) == 4 and r.part_names[-1] == "background"
    # independent computation: torch model -> argmax -> nearest-exact upsampling
    model, spec = load_model(world["ckpt"])
    x = torch.from_numpy(preprocess(img, spec.height, spec.width, spec.mean, spec.std))[None]
    with torch.no_grad():
        arg = model(x).part_probs.argmax(1, keepdim=True).double()
    ref = F.interpolate(arg, size=(img.height, img.width), mode="nearest-exact")[0, 0].long().numpy()
    np.testing.assert_array_equal(labels, ref)
    np.testing.assert_array_equal(upsample_labels(np.arange(6).reshape(2, 3), 4, 6),
                                  np.repeat(np.repeat(np.arange(6).reshape(2, 3), 2, 0), 2, 1))


def test_concurrent_searches_match_serial(world: dict) -> None:
    r: Retriever = world["retriever"]
    queries = [str(q) for q in world["queries"]]
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


def test_load_errors(world: dict, tmp_path: Path) -> None:
    with pytest.raises(ix.GalleryIndexError, match="not found"):
        Retriever.load(tmp_path / "none")
    moved = tmp_path / "index"
    shutil.copytree(world["index"], moved)
    manifest = moved / ix.MANIFEST
    manifest.write_text(manifest.read_text().replace(str(world["dir"] / "model.onnx"), "/nowhere/model.onnx"))
    with pytest.raises(ValueError, match="does not exist; pass model_path"):
        Retriever.load(moved)
    assert len(Retriever.load(moved, model_path=world["dir"] / "model.onnx")) == len(world["gallery"])
