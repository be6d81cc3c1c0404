"""The Gradio demo in a real headless Chromium driven by Playwright: open the page, upload a query, wait for the
results, check them and the part legend, and save a screenshot."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.app_screenshot import CHROMIUM, open_page, search_in_page  # shared with the README shot

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytest.importorskip("gradio", reason="the demo app needs gradio (pip install gradio)")

import app  # noqa: E402
from serving.app.demo import build_demo, plan_demo  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, free_port: int) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("browser-root")
    build_demo(plan_demo(root), root, height=64, width=32)  # small untrained model on the tiny world
    demo = app.build_app(root=root, threads=1)
    url = app.launch(demo, port=free_port, block=False, quiet=True)
    try:
        yield {"url": url, "state": demo.scwm_state}
    finally:
        demo.close()


def test_upload_search_and_screenshot(served: dict[str, Any], tmp_path: Path) -> None:
    state = served["state"]
    query = state.examples[0]
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_api.sync_playwright() as p:
            ctx, page = open_page(p, profile)
            try:
                search_in_page(page, served["url"], query, k=10)
                tiles = page.locator("#scwm-results .thumbnail-item")
                assert tiles.count() == 10
                captions = page.locator("#scwm-results .caption-label").all_inner_texts()
                assert [c.split(" · ")[0] for c in captions] == [f"#{i}" for i in range(1, 11)]
                scores = [float(c.split(" · ")[1]) for c in captions]
                assert scores == sorted(scores, reverse=True)
                names = state.retriever.part_names
                assert page.locator(".scwm-legend .scwm-swatch").count() == len(names) + 2  # + match frame key
                legend = page.inner_text(".scwm-legend")
                assert all(n.replace("_", " ") in legend for n in names) and "same person" in legend
                assert page.locator("#scwm-query-view img").count() == 1
                assert "Untrained demo model" in page.inner_text("body")
                # toggle to the part masks: the tiles are re-rendered
                first = page.locator("#scwm-results img").first.get_attribute("src")
                page.get_by_label("Parts", exact=True).check()
                page.wait_for_function(
                    "(src) => { const i = document.querySelector('#scwm-results img'); return i && i.src !== src; }",
                    arg=first, timeout=60_000)
                assert page.locator("#scwm-results img").count() == 10
                shot = tmp_path / "app.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_bad_upload_shows_message(served: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "0001_c1s1_000001_00.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n definitely not a png")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_api.sync_playwright() as p:
            ctx, page = open_page(p, profile)
            try:
                page.goto(served["url"], wait_until="networkidle", timeout=60_000)
                page.locator("#scwm-query input[type=file]").set_input_files(str(bad))
                page.wait_for_function("() => document.querySelector('#scwm-status')?.innerText.includes('⚠')",
                                       timeout=60_000)
                status = page.inner_text("#scwm-status")
                assert "0001_c1s1_000001_00.png" in status and "Traceback" not in status
                assert page.locator("#scwm-results img").count() == 0
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
