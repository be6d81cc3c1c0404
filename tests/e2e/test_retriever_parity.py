"""Served retrieval quality equals the trainer-side evaluation on the tiny synthetic world (the same
checkpoint through ONNX Runtime + FAISS and through PyTorch + evaluate_rank)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scwm.data.images import load_image
from scwm.data.transforms import preprocess
from scwm.models import ModelSpec, load_model, save_checkpoint
from serving import export as ex
from serving import index as ix
from serving.app.demo import untrained_model
from serving.retriever import Retriever

ROOT = Path(__file__).resolve().parents[2]
HAVE_SYNTHETIC = importlib.util.find_spec("scwm.data.synthetic") is not None
HAVE_EVALUATION = importlib.util.find_spec("scwm.evaluation") is not None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (HAVE_SYNTHETIC and HAVE_EVALUATION),
                                 reason="needs the synthetic generator (scwm.data.synthetic) and scwm.evaluation")]


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
    items = r.gallery_items
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
