"""The served demo app's file route (``/gradio_api/file=<absolute path>`` in Gradio 5/6) gives out only what the
page shows: the example query images and the files Gradio wrote (result tiles, example thumbnails), never the
index, the model, checkpoints, project files or system files; the page names no absolute server path; hostile
uploads get a message and the server keeps serving."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

gr = pytest.importorskip("gradio", reason="the demo app needs gradio (pip install gradio)")
gradio_client = pytest.importorskip("gradio_client", reason="needs gradio_client")
httpx = pytest.importorskip("httpx", reason="needs httpx")

import app  # noqa: E402
from serving import index as ix  # noqa: E402
from serving.app.demo import build_demo, plan_demo  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

TIMEOUT = 30.0


def file_url(base: str, path: str | Path, route: str = "gradio_api/file=") -> str:
    """The URL of a server file through Gradio's file route (``..`` kept, percent-encoded, as an attacker would)."""
    return base.rstrip("/") + "/" + route + quote(str(path), safe="/").replace("..", "%2E%2E")


def urls_in(value: Any) -> list[str]:
    """Every ``url`` of a file payload nested in ``value``."""
    if isinstance(value, dict):
        own = [value["url"]] if isinstance(value.get("url"), str) and "/file=" in value["url"] else []
        return own + [u for v in value.values() for u in urls_in(v)]
    if isinstance(value, (list, tuple)):
        return [u for v in value for u in urls_in(v)]
    return []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, free_port: int) -> Iterator[dict[str, Any]]:
    """The tiny demo gallery served from a project root that also holds private files."""
    root = tmp_path_factory.mktemp("fileroute-root")
    build_demo(plan_demo(root), root, height=64, width=32)  # small untrained model on the tiny world
    (root / "pyproject.toml").write_text('[project]\nname = "secret-project"\n')
    (root / "runs/smoke").mkdir(parents=True)
    (root / "runs/smoke/last.ckpt").write_bytes(b"not really a checkpoint")
    (root / ".venv").mkdir()
    (root / ".venv/pyvenv.cfg").write_text("home = /usr/bin\n")
    demo = app.build_app(root=root, threads=1)
    url = app.launch(demo, port=free_port, block=False, quiet=True)
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as http:
            yield {"root": root, "url": url, "state": demo.scwm_state, "http": http}
    finally:
        demo.close()


def test_private_files_are_refused(served: dict[str, Any]) -> None:
    root, state, http = served["root"], served["state"], served["http"]
    index_dir = root / "exports/demo/index"
    gallery = Path(state.retriever.gallery_items[0]["path"])
    example = state.examples[0]
    project = root / "pyproject.toml"
    private = [index_dir / ix.MANIFEST, root / "exports/demo/model.onnx", root / "runs/smoke/last.ckpt",
               project, root / ".venv/pyvenv.cfg", Path("/etc/passwd"),
               Path(example.parent, os.path.relpath(project, example.parent)),  # ../../ from an allowed file
               Path(gallery.parent, os.path.relpath(project, gallery.parent)),
               gallery]  # gallery originals are only ever shown rendered, so they are not served either
    assert all(p.exists() for p in private)
    for path in private:
        for route in ("gradio_api/file=", "gradio_api/file/"):
            resp = http.get(file_url(served["url"], path, route))
            assert resp.status_code in (403, 404), (route, path, resp.status_code)
            assert b"secret-project" not in resp.content and b"root:" not in resp.content


def test_shown_files_are_served(served: dict[str, Any]) -> None:
    state, http = served["state"], served["http"]
    example = state.examples[0]
    resp = http.get(file_url(served["url"], example))
    assert resp.status_code == 200 and resp.content == example.read_bytes()
    config = http.get(served["url"].rstrip("/") + "/config").json()
    thumbs = [u for c in config["components"] if c.get("type") == "dataset" for u in urls_in(c.get("props"))]
    assert thumbs, "the example thumbnails are file URLs"
    for u in thumbs[:3]:
        assert http.get(u).status_code == 200, u


def test_page_shows_no_absolute_paths(served: dict[str, Any]) -> None:
    root, http = served["root"], served["http"]
    config = http.get(served["url"].rstrip("/") + "/config").json()
    texts = [c.get("props", {}).get("value") for c in config["components"]]
    info = next(t for t in texts if isinstance(t, str) and "Index directory" in t)
    assert "`exports/demo/index`" in info and "`model.onnx`" in info
    assert str(root) not in json.dumps(texts)


def test_results_and_hostile_uploads(served: dict[str, Any], tmp_path: Path) -> None:
    client = gradio_client.Client(served["url"], verbose=False, analytics_enabled=False, download_files=False)
    handle = gradio_client.handle_file
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = tmp_path / "bomb.png"  # header claims 100000×100000 pixels, the file is 80 bytes
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    svg = tmp_path / "person.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20"><rect/></svg>')
    for path, expected in ((bomb, "megapixels"), (svg, "SVG")):
        view, gallery, status, hits = client.predict(handle(str(path)), 5, "Overlay", 0.55, True, api_name="/search")
        assert view is None and gallery == [] and hits == [] and expected in status, status
    # the server keeps serving: a real query still works, and its rendered tiles are served
    query = served["state"].examples[0]
    view, gallery, status, hits = client.predict(handle(str(query)), 5, "Overlay", 0.55, True, api_name="/search")
    assert len(gallery) == 5 and len(hits) == 5, status
    assert all("/" not in h["image"] and h["image"].endswith(".jpg") for h in hits)
    tiles = urls_in(gallery)
    assert len(tiles) == 5
    for u in tiles[:2]:  # rendered by the app into Gradio's cache
        assert served["http"].get(u).status_code == 200, u
