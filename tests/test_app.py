"""The Gradio demo (app.py) through the Gradio Python client: a fresh start without artifacts shows the commands
and builds a demo gallery with one click; searches return k sorted results with part overlays; bad input gives
messages, never exceptions."""

from __future__ import annotations

import json
import shutil
import socket
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
from serving.app_support import (  # noqa: E402
    caption,
    check_image,
    exclude_junk,
    legend_html,
    part_colors,
    render_view,
)
from serving.retriever import Hit  # noqa: E402

Client, handle_file = gradio_client.Client, gradio_client.handle_file
# gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:The gallery is empty")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def component_values(url: str) -> list[Any]:
    """Initial values of the page's components, as the browser receives them."""
    import httpx

    config = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
    return [c.get("props", {}).get("value") for c in config["components"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An app started on an empty project root; the one-click demo build is run through the client."""
    root = tmp_path_factory.mktemp("approot")
    demo = app.build_app(root=root, threads=1)
    url = app.launch(demo, port=free_port(), block=False, quiet=True)
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


def test_broken_index_explains(tmp_path: Path) -> None:
    bad = tmp_path / "index"
    bad.mkdir()
    (bad / ix.MANIFEST).write_text("{not json")
    demo = app.build_app(index=bad, root=tmp_path)
    state = demo.scwm_state
    assert state.retriever is None and "not valid JSON" in (state.error or "")
    assert "Could not open" in app._panels(state)["setup"]


def test_one_click_demo_build(served: dict[str, Any]) -> None:
    state = served["state"]
    assert state.retriever is not None and len(state.retriever) > 0
    assert "Built" in served["built"][-1]
    assert (served["root"] / "exports/demo/index" / ix.MANIFEST).is_file()
    assert "Untrained demo model" in app._header(state)  # clearly labelled
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
                assert im.mode == "RGB" and im.height == app.TILE_HEIGHT
            assert item["caption"].startswith(f"#{hit['rank']} · {hit['score']:.2f}")
            assert hit["match"] == (hit["pid"] == q_pid)
        with Image.open(view) as im:
            assert im.height == app.QUERY_HEIGHT
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
    src = state.retriever.index
    empty = ix.GalleryIndex(ix.make_faiss_index(np.zeros((0, src.dim), np.float32)), [],
                            {k: v for k, v in src.manifest.items()
                             if k not in ("index_file", "items_file", "index_sha256", "items_sha256")},
                            use_gpu=False)
    empty.save(tmp_path / "empty")
    shutil.copy(state.retriever.engine.model_path, tmp_path / "model.onnx")
    demo = app.build_app(index=tmp_path / "empty", model=tmp_path / "model.onnx", root=tmp_path)
    st = demo.scwm_state
    assert st.retriever is not None and len(st.retriever) == 0
    view, gallery, status, hits = app._search(st, str(state.examples[0]), 5, "Overlay", 0.5, True)
    assert gallery == [] and "empty" in status and "serving.index add" in status


def test_helpers() -> None:
    colors = part_colors(4)
    assert len(colors) == 4 and len(set(colors)) == 4
    assert legend_html(["head", "upper_body", "background"]).count("scwm-swatch") == 3
    img = Image.new("RGB", (64, 128), (200, 200, 200))
    labels = np.zeros((16, 8), np.int64)
    labels[8:] = 3  # background
    tile = render_view(img, labels, 4, "Overlay", 0.5, height=256, border=(0, 255, 0))
    assert tile.size == (128, 256) and tile.getpixel((0, 0)) == (0, 255, 0)
    mask = render_view(img, labels, 4, "Parts", height=64)
    assert mask.getpixel((16, 8)) == colors[0] and mask.getpixel((16, 60)) == colors[3]
    assert check_image(None)[1] and check_image("/nonexistent.png")[0] is None
    hit = Hit(1, 0.934, "/g/0012_c3s1_000001_00.jpg", 12, 3, 0)
    assert caption(hit, 12, 1) == "#1 · 0.93 · pid 12 · cam 3 · ✓"
    assert caption(hit, 7, 1).endswith("✗") and caption(hit, None, None) == "#1 · 0.93 · pid 12 · cam 3"
    hits = [Hit(1, 0.9, "a", 12, 1, 0), Hit(2, 0.8, "b", -1, 2, 1), Hit(3, 0.7, "c", 12, 2, 2),
            Hit(4, 0.6, "d", 5, 1, 3)]
    kept = exclude_junk(hits, 12, 1, 2)
    assert [(h.item_id, h.rank) for h in kept] == [(2, 1), (3, 2)]
    assert json.dumps([h.to_dict() for h in kept])


def test_trained_checkpoint_is_exported_and_indexed(served: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from scwm.models import ModelSpec, save_checkpoint
    from serving.app_support import build_demo, plan_demo

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
    state = app.AppState(tmp_path, None, None, None, 1)
    assert state.retriever is not None and state.index_dir == tmp_path / "exports/index"
    assert len(state.retriever) == len(served["state"].retriever)
    assert "Untrained" not in app._header(state)
    assert "runs/smoke" not in app._panels(state)["setup"]  # nothing to set up any more
