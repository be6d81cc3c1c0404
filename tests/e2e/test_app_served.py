"""The Gradio demo (app.py) served and driven through the Gradio Python client: a fresh start without artifacts
shows the commands and builds a demo gallery with one click; searches return k sorted results with part overlays;
bad input gives messages, never exceptions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo app needs gradio (pip install gradio)")
gradio_client = pytest.importorskip("gradio_client", reason="needs gradio_client")

import app  # noqa: E402
from serving import index as ix  # noqa: E402
from serving.app import session  # noqa: E402
from serving.app.demo import build_demo, plan_demo  # noqa: E402
from serving.app.session import QUERY_HEIGHT, TILE_HEIGHT  # noqa: E402

Client, handle_file = gradio_client.Client, gradio_client.handle_file
# gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def component_values(url: str) -> list[Any]:
    """Initial values of the page's components, as the browser receives them."""
    import httpx

    config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
    return [c.get("props", {}).get("value") for c in config["components"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, free_port: int) -> Iterator[dict[str, Any]]:
    """An app started on an empty project root; the one-click demo build is run through the client."""
    root = tmp_path_factory.mktemp("approot")
    demo = app.build_app(root=root, threads=1)
    url = app.launch(demo, port=free_port, block=False, quiet=True)
    try:
        before = component_values(url)
        client = Client(url, verbose=False, analytics_enabled=False,
                        download_files=str(tmp_path_factory.mktemp("downloads")))
        built = client.predict(api_name="/build_demo")
        yield {"root": root, "demo": demo, "url": url, "client": client, "before": before, "built": built,
               "state": demo.scwm_state}
    finally:
        demo.close()


def test_no_artifacts_shows_the_commands(served: dict[str, Any]) -> None:
    text = "\n".join(v for v in served["before"] if isinstance(v, str))
    assert "No gallery index to search yet" in text
    for command in ("python -m training.run", "python -m serving.export --checkpoint runs/synthetic/model.pt",
                    "python -m serving.index build"):
        assert command in text
    assert "UNTRAINED demo model" in text  # what the one-click button will do
    assert "Traceback" not in text


def test_one_click_demo_build(served: dict[str, Any]) -> None:
    state = served["state"]
    assert state.retriever is not None and len(state.retriever) > 0
    assert "Built" in served["built"][-1]
    assert (served["root"] / "exports/demo/index" / ix.MANIFEST).is_file()
    assert "Untrained demo model" in session.header(state)  # clearly labelled
    assert state.examples and all(p.parent.name == "query" for p in state.examples)


def test_search_returns_k_sorted_results_with_overlays(served: dict[str, Any]) -> None:
    client, state = served["client"], served["state"]
    query = state.examples[0]
    q_pid, _ = ix.parse_market_name(query)
    for mode in ("Overlay", "Parts", "Image"):
        view, gallery, status, hits = client.predict(handle_file(str(query)), 5, mode, 0.55, True,
                                                     api_name="/search")
        assert len(gallery) == 5 and len(hits) == 5, status
        scores = [h["score"] for h in hits]
        assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:], strict=False)), scores
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
        for item, hit in zip(gallery, hits, strict=True):
            with Image.open(item["image"]) as im:
                assert im.mode == "RGB" and im.height == TILE_HEIGHT
            assert item["caption"].startswith(f"#{hit['rank']} · {hit['score']:.2f}")
            assert hit["match"] == (hit["pid"] == q_pid)
        with Image.open(view) as im:
            assert im.height == QUERY_HEIGHT
        assert status.startswith("**Top-5**") and f"pid {q_pid}" in status
    # the overlay really shows parts: its colours differ from the plain image
    over = client.predict(handle_file(str(query)), 3, "Overlay", 0.9, False, api_name="/search")[1]
    plain = client.predict(handle_file(str(query)), 3, "Image", 0.9, False, api_name="/search")[1]
    a = np.asarray(Image.open(over[0]["image"]), dtype=np.float32)
    b = np.asarray(Image.open(plain[0]["image"]), dtype=np.float32)
    assert np.abs(a - b).mean() > 5


def test_bad_inputs_give_messages(served: dict[str, Any], tmp_path: Path) -> None:
    client = served["client"]
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    fake = tmp_path / "0001_c1s1_000001_00.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)  # 56 megapixels, a few kB on disk
    for path, expected in ((text, "not an image"), (fake, "could not be decoded"), (huge, "megapixels")):
        view, gallery, status, hits = client.predict(handle_file(str(path)), 5, "Overlay", 0.55, True,
                                                     api_name="/search")
        assert view is None and gallery == [] and hits == []
        assert expected in status and "Traceback" not in status, status
    status = client.predict(None, 5, "Overlay", 0.55, True, api_name="/search")[2]
    assert "Upload a query image" in status


def test_empty_gallery_message(served: dict[str, Any], tmp_path: Path) -> None:
    state = served["state"]
    info = state.retriever.info()
    manifest = {k: v for k, v in info["index"].items()
                if k not in ("index_file", "items_file", "index_sha256", "items_sha256", "directory", "on_gpu")}
    empty = ix.GalleryIndex(ix.make_faiss_index(np.zeros((0, info["model"]["embedding_size"]), np.float32)), [],
                            manifest, use_gpu=False)
    empty.save(tmp_path / "empty")
    shutil.copy(info["model"]["path"], tmp_path / "model.onnx")
    demo = app.build_app(index=tmp_path / "empty", model=tmp_path / "model.onnx", root=tmp_path)
    st = demo.scwm_state
    assert st.retriever is not None and len(st.retriever) == 0
    result = session.run_search(st, str(state.examples[0]), 5, "Overlay", 0.5, True)
    assert result.tiles == [] and "empty" in result.status and "serving.index add" in result.status
    assert result.warning == "The gallery is empty."


def test_trained_checkpoint_is_exported_and_indexed(served: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from scwm.models import ModelSpec, save_checkpoint

    (tmp_path / "data").symlink_to(served["root"] / "data", target_is_directory=True)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    (tmp_path / "runs/smoke").mkdir(parents=True)
    save_checkpoint(tmp_path / "runs/smoke/model.pt", spec.build().eval(), spec,
                    config={"data": {"root": "data/synthetic/tiny-seed0"}})
    plan = plan_demo(tmp_path)
    assert plan.checkpoint == tmp_path / "runs/smoke/model.pt"
    assert plan.images == tmp_path / "data/synthetic/tiny-seed0"
    assert plan.index_out == tmp_path / "exports/index"
    assert "export runs/smoke/model.pt and index data/synthetic/tiny-seed0/bounding_box_test" in plan.description
    build_demo(plan, tmp_path)
    state = session.AppState(tmp_path, None, None, None, 1)
    assert state.retriever is not None and state.index_dir == tmp_path / "exports/index"
    assert len(state.retriever) == len(served["state"].retriever)
    assert "Untrained" not in session.header(state)
    assert "runs/smoke" not in session.panels(state)["setup"]  # nothing to set up any more
