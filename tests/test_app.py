"""The Gradio demo's pieces that need no served model: a broken index explains itself, the views (colours,
tiles, captions), upload checks and the Market protocol. The served app is tested in tests/e2e/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo app needs gradio (pip install gradio)")

import app  # noqa: E402
from serving import index as ix  # noqa: E402
from serving.app import session  # noqa: E402
from serving.app.session import check_image, exclude_junk  # noqa: E402
from serving.app.views import caption, legend_html, part_colors, render_view  # noqa: E402
from serving.retriever import Hit  # noqa: E402


def test_broken_index_explains(tmp_path: Path) -> None:
    bad = tmp_path / "index"
    bad.mkdir()
    (bad / ix.MANIFEST).write_text("{not json")
    demo = app.build_app(index=bad, root=tmp_path)
    state = demo.scwm_state
    assert state.retriever is None and "not valid JSON" in (state.error or "")
    assert "Could not open" in session.panels(state)["setup"]


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


def test_search_without_a_gallery_or_query_is_a_message(tmp_path: Path) -> None:
    state = app.build_app(root=tmp_path).scwm_state
    assert state.retriever is None and "No gallery index to search yet" in session.panels(state)["setup"]
    result = session.run_search(state, None, 5, "Overlay", 0.5, True)
    assert result.outputs == (None, [], "No gallery is loaded: see the instructions above.", [])
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    img, err, _ = check_image(bad)
    assert img is None and "not an image" in (err or "")



def test_untrained_demo_model_calibrates_with_the_specs_pixel_statistics(tmp_path: Path) -> None:
    """The demo's BatchNorm calibration sees images normalised as the engine will serve them (spec mean/std)."""
    import torch

    from scwm.data.transforms import preprocess
    from scwm.models import ModelSpec
    from serving.app.demo import untrained_model

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    spec = ModelSpec(backbone="resnet18", num_parts=2, height=32, width=16, mean=(0.5, 0.5, 0.5),
                     std=(0.25, 0.25, 0.25))
    net = untrained_model(spec, paths)
    stem = next(m for m in net.modules() if hasattr(m, "conv1") and hasattr(m, "bn1"))
    x = torch.from_numpy(np.stack([preprocess(Image.open(p).convert("RGB"), 32, 16, spec.mean, spec.std)
                                   for p in paths]))
    with torch.no_grad():
        want = stem.conv1(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(stem.bn1.running_mean, want, rtol=1e-4, atol=1e-5)


def test_each_search_offers_the_trimmer_a_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = app.build_app(root=tmp_path, malloc_trim_s=3600.0)
    trimmer = demo.scwm_trimmer
    assert trimmer.interval_s == 3600.0
    calls: list[int] = []
    monkeypatch.setattr(trimmer, "maybe_trim", lambda: calls.append(1) or False)
    search = next(f.fn for f in demo.fns.values() if f.api_name == "search")
    assert search(None, 5, "Overlay", 0.5, True)[2].startswith("No gallery is loaded")
    search(None, 5, "Overlay", 0.5, True)
    assert len(calls) == 2
    assert app.build_app(root=tmp_path, malloc_trim_s=0).scwm_trimmer.enabled is False
