"""The README's app screenshot from a trained checkpoint, reproducibly: export, index, serve, search, capture.

    python scripts/app_screenshot.py --checkpoint runs/synthetic/model.pt \\
        --images data/synthetic/market-seed0/bounding_box_test --out docs/images/app.png

It exports the checkpoint to ONNX (fp32), indexes the gallery images, starts the Gradio app on a free local port,
searches one of the app's example queries in headless Chromium (Playwright) and saves the full page. Needs
``playwright`` and a Chromium binary (``$SCWM_CHROMIUM``, default ``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("SCWM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_page(playwright: Any, user_data_dir: str, width: int = 1440, height: int = 1000) -> tuple[Any, Any]:
    """A fresh headless Chromium (system binary, own profile) and a page."""
    ctx = playwright.chromium.launch_persistent_context(user_data_dir, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                       headless=True, viewport={"width": width, "height": height})
    return ctx, ctx.new_page()


def search_in_page(page: Any, url: str, query: Path, k: int = 10, timeout_ms: int = 60_000) -> None:
    """Load the app, upload ``query`` and wait until ``k`` result tiles are shown."""
    page.goto(url, wait_until="networkidle", timeout=timeout_ms)
    page.locator("#scwm-query input[type=file]").set_input_files(str(query))
    page.locator("#scwm-results img").nth(k - 1).wait_for(timeout=timeout_ms)
    page.wait_for_function("() => document.querySelector('#scwm-status')?.innerText.includes('Top-')",
                           timeout=timeout_ms)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="trained scwm checkpoint (model.pt)")
    p.add_argument("--images", required=True, help="gallery images (a folder or a Market-1501 root)")
    p.add_argument("--out", default="docs/images/app.png")
    p.add_argument("--query", type=int, default=0, help="which of the app's example queries to search")
    p.add_argument("--workdir", default=None, help="where the export and index go (default: a temporary folder)")
    args = p.parse_args(argv)
    for path in (args.checkpoint, args.images):
        if not Path(path).exists():
            p.error(f"{path}: not found")
    if not Path(CHROMIUM).is_file():
        p.error(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SCWM_CHROMIUM)")
    from playwright import sync_api

    import app
    from scwm.utils import atomic_write_bytes

    work = Path(args.workdir or tempfile.mkdtemp(prefix="scwm-appshot-"))
    work.mkdir(parents=True, exist_ok=True)
    _run(["-m", "serving.export", "--checkpoint", args.checkpoint, "--out", str(work / "model.onnx"), "--no-int8"])
    _run(["-m", "serving.index", "build", "--model", str(work / "model.onnx"), "--images", args.images,
          "--out", str(work / "index"), "--overwrite", "--no-progress", "--precision", "fp32"])
    demo = app.build_app(index=work / "index", model=work / "model.onnx", threads=2, precision="fp32")
    state = demo.scwm_state  # type: ignore[attr-defined]
    if not 0 <= args.query < len(state.examples):
        demo.close()
        p.error(f"--query {args.query}: the app has {len(state.examples)} example queries")
    url = app.launch(demo, port=_free_port(), block=False, quiet=True)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_api.sync_playwright() as pw:
            ctx, page = open_page(pw, profile)
            try:
                search_in_page(page, url, state.examples[args.query])
                shot = work / "app.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                ctx.close()
        atomic_write_bytes(args.out, shot.read_bytes())
        print(f"wrote {args.out} (query {state.examples[args.query].name})")
    finally:
        demo.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
