"""Security of the demo app without a served model: upload validation on hostile or unusual images, the files the
web server may serve, no absolute paths on the page, the public-exposure warnings and the login option."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo app needs gradio (pip install gradio)")

import app  # noqa: E402
from serving.app import uploads  # noqa: E402
from serving.app.session import served_paths  # noqa: E402
from serving.app.uploads import check_image  # noqa: E402
from serving.app.views import hits_json, public_name, redact_paths  # noqa: E402
from serving.retriever import Hit  # noqa: E402


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width``×``height`` RGB pixels but which holds (almost) no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def person(size: tuple[int, int] = (32, 64), color: tuple[int, int, int] = (200, 60, 40)) -> Image.Image:
    return Image.new("RGB", size, color)


# ------------------------------------------------------------------------------------------ refused uploads
@pytest.mark.parametrize("dims", [(100_000, 100_000), (9_000, 9_000)])
def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path, dims: tuple[int, int]) -> None:
    # 10 gigapixels trips Pillow's own guard; 81 megapixels is under it but over ours: both refused unread
    img, err, _ = check_image(png_header_only(tmp_path / "bomb.png", *dims))
    assert img is None and "bomb.png" in (err or "") and "megapixels" in (err or "")


def test_large_blank_image_over_the_pixel_limit(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)  # 56 megapixels, a few kB on disk
    img, err, _ = check_image(huge)
    assert img is None and "56.0 megapixels" in (err or "")


def test_decoded_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.tiff"
    Image.new("F", (100, 200)).save(path)
    monkeypatch.setattr(uploads, "MAX_DECODED_BYTES", 100 * 200 * 4 - 1)
    img, err, _ = check_image(path)
    assert img is None and "to decode" in (err or "")


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 128, 3), dtype=np.uint8)).save(path)
    img, err, _ = check_image(path, max_bytes=1000)
    assert img is None and "MB" in (err or "") and "refused" in (err or "")
    assert uploads.MAX_UPLOAD_BYTES == 10 * 1024 * 1024


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("notes.txt", b"just some text, not pixels", "not an image"),
    ("page.pdf", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not an image"),
    ("empty.jpg", b"", "empty file"),
    ("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20"><rect/></svg>', "SVG"),
    ("renamed.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ("0001_c1s1_000001_00.jpg", b"\xff\xd8\xff\xe0 truncated", "could not be decoded"),
])
def test_non_images_are_refused_with_a_message(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    img, err, _ = check_image(path)
    assert img is None and expected in (err or ""), err
    assert str(tmp_path) not in (err or "")  # the file name, never the server path


def test_extreme_aspect_ratio_is_refused(tmp_path: Path) -> None:
    for size in ((1, 5000), (5000, 1)):
        path = tmp_path / f"strip_{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (10, 20, 30)).save(path)
        img, err, _ = check_image(path)
        assert img is None and "more than 10 times" in (err or ""), err
    tall = tmp_path / "tall.png"
    person((40, 300)).save(tall)  # 1:7.5, a full-body shot: accepted
    assert check_image(tall).image is not None


def test_missing_and_no_file() -> None:
    assert "Upload a query image" in (check_image(None).error or "")
    assert "could not be found" in (check_image("/nonexistent/q.png").error or "")


# ------------------------------------------------------------------------------------------ handled uploads
def test_plain_image_has_no_notes(tmp_path: Path) -> None:
    path = tmp_path / "q.jpg"
    person().save(path, quality=95)
    img, err, notes = check_image(path)
    assert err is None and img is not None and img.mode == "RGB" and img.size == (32, 64) and notes == ()


def test_animated_gif_uses_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [person(color=(255, 0, 0)), person(color=(0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    img, err, notes = check_image(path)
    assert err is None and img is not None and img.mode == "RGB"
    r, g, b = img.getpixel((5, 5))
    assert r > 200 and b < 50  # the first (red) frame
    assert any("first frame" in n for n in notes)


def test_cmyk_is_converted_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 64), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    img, err, notes = check_image(path)
    assert err is None and img is not None and img.mode == "RGB"
    r, g, b = img.getpixel((16, 32))
    assert r > 200 and g < 60 and b < 60
    assert any("CMYK" in n for n in notes)


def test_16_bit_image_is_scaled_to_8_bit(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    arr = np.full((64, 32), 32896, dtype=np.uint16)  # mid grey: 128 * 257
    arr[:8] = 65535
    Image.fromarray(arr).save(path)  # uint16 -> mode I;16
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")
    img, err, notes = check_image(path)
    assert err is None and img is not None and img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((0, 40)) == (128, 128, 128)
    assert any("8-bit" in n for n in notes)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    raw = Image.new("RGB", (80, 40), (0, 0, 255))
    raw.paste((255, 0, 0), (0, 0, 40, 40))  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    raw.save(path, exif=exif.tobytes(), quality=95)
    img, err, notes = check_image(path)
    assert err is None and img is not None and img.size == (40, 80)  # upright: a tall person crop
    r, _, b = img.getpixel((20, 10))
    assert r > 200 and b < 60  # the stored left half is now on top
    assert any("EXIF" in n for n in notes)


def test_palette_and_alpha_images(tmp_path: Path) -> None:
    for mode in ("P", "RGBA", "LA", "L", "1"):
        path = tmp_path / f"m_{mode}.png"
        person().convert(mode).save(path)
        img, err, _ = check_image(path)
        assert err is None and img is not None and img.mode == "RGB", (mode, err)


# ------------------------------------------------------------------------------------------ what is served / shown
def test_served_paths_are_exact_example_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    query = root / "data/world/query"
    query.mkdir(parents=True)
    examples = []
    for i in range(3):
        examples.append(query / f"{i:04d}_c1s1_000001_00.jpg")
        person().save(examples[-1])
    (root / "data/world/secret.json").write_text("{}")
    cache = root / "exports/gradio-cache"  # a cache inside a would-be blocked folder stays servable
    state: Any = SimpleNamespace(root=root, examples=examples, index_dir=root / "exports/index", model=None,
                                 retriever=None)
    allowed, blocked = served_paths(state, keep=[cache])
    assert allowed == sorted(str(p.resolve()) for p in examples)  # files, not folders
    assert str((root / "exports/index").resolve()) in blocked and str((root / "runs").resolve()) in blocked
    assert str((root / ".venv").resolve()) in blocked and str((root / "exports").resolve()) not in blocked
    assert str(root.resolve()) not in allowed + blocked


def test_page_names_are_never_absolute(tmp_path: Path) -> None:
    assert public_name(tmp_path / "exports/index", tmp_path) == "exports/index"
    assert public_name("/elsewhere/models/model.onnx", tmp_path) == "model.onnx"
    assert public_name("runs/x/model.pt") == "runs/x/model.pt" and public_name("../x/model.pt") == "model.pt"
    msg = redact_paths(f"cannot read {tmp_path}/exports/index/manifest.json (/opt/models/m.onnx): no such file",
                       tmp_path)
    assert msg == "cannot read exports/index/manifest.json (…/m.onnx): no such file"
    assert redact_paths("see https://example.org/a/b/c") == "see https://example.org/a/b/c"
    hits = hits_json([Hit(1, 0.9, str(tmp_path / "g/0012_c3s1_000001_00.jpg"), 12, 3, 0)], 12)
    assert hits[0]["image"] == "0012_c3s1_000001_00.jpg" and str(tmp_path) not in str(hits)


# ------------------------------------------------------------------------------------------ exposure and login
def test_parse_auth() -> None:
    assert app.parse_auth("alice:s3cret") == ("alice", "s3cret")
    assert app.parse_auth("alice:pa:ss") == ("alice", "pa:ss")
    for bad in ("", "alice", "alice:", ":s3cret", " :s3cret"):
        with pytest.raises(ValueError, match="USER:PASSWORD") as info:
            app.parse_auth(bad)
        assert "s3cret" not in str(info.value)


def test_public_host_and_share_warn() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"):
        assert app.is_loopback(host) and app.exposure_warnings(host, False) == [], host
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example.org"):
        warnings = app.exposure_warnings(host, False)
        assert warnings and "public" in warnings[0] and "--auth" in warnings[-1], host
    shared = app.exposure_warnings("127.0.0.1", True)
    assert "public" in shared[0] and "gradio.live" in shared[0]
    assert "protected by a login" in app.exposure_warnings("0.0.0.0", False, ("u", "p"))[-1]


@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``app.main`` without building or serving anything: the launch calls are recorded."""
    calls: list[dict[str, Any]] = []
    state = SimpleNamespace(retriever=None, error="nothing here")
    monkeypatch.setattr(app, "build_app", lambda *a, **k: SimpleNamespace(scwm_state=state))
    monkeypatch.setattr(app, "launch", lambda demo, host, port, share, **k: calls.append(
        {"host": host, "port": port, "share": share, **k}))
    monkeypatch.delenv(app.AUTH_ENV, raising=False)
    monkeypatch.setattr(app, "freeze_startup_objects", lambda: calls.append({"frozen": True}) or 0)
    return calls


def test_main_warns_and_passes_the_login(fake_launch: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.main(["--host", "0.0.0.0", "--auth", "alice:s3cret"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "public" in err and "s3cret" not in err
    assert fake_launch[-1]["auth"] == ("alice", "s3cret")
    assert app.main(["--share", "true"]) == 0
    assert "gradio.live" in capsys.readouterr().err and fake_launch[-1]["auth"] is None
    monkeypatch.setenv(app.AUTH_ENV, "bob:hunter2")
    assert app.main([]) == 0
    assert fake_launch[-1]["auth"] == ("bob", "hunter2") and "warning" not in capsys.readouterr().err
    assert app.main(["--auth", "carol:pw"]) == 0 and fake_launch[-1]["auth"] == ("carol", "pw")  # flag wins


def test_memory_flags_reach_glibc_and_gradio(fake_launch: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    arenas: list[int] = []
    monkeypatch.setattr(app, "limit_malloc_arenas", arenas.append)
    assert app.main([]) == 0
    assert arenas == [app.DEFAULT_ARENAS] and fake_launch[-1]["max_sessions"] == app.MAX_SESSIONS
    assert fake_launch[-2] == {"frozen": True}  # startup objects frozen before serving
    assert app.main(["--malloc-arenas", "0", "--max-sessions", "7"]) == 0
    assert arenas[-1] == 0 and fake_launch[-1]["max_sessions"] == 7
    for bad in (["--max-sessions", "0"], ["--malloc-arenas", "-1"], ["--malloc-trim-seconds", "-1"]):
        with pytest.raises(SystemExit):
            app.main(bad)
        assert bad[0] in capsys.readouterr().err


def test_launch_hands_the_session_cap_to_gradio(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    demo = SimpleNamespace(launch=lambda **k: seen.update(k) or (None, "http://x", None))
    monkeypatch.setattr(app, "sync_served_paths", lambda d: ([], []))
    app.launch(demo, block=False, max_sessions=9)  # type: ignore[arg-type]
    assert seen["state_session_capacity"] == 9


def test_malformed_login_is_a_clear_error(fake_launch: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as info:
        app.main(["--auth", "alice"])
    assert info.value.code == 2 and "--auth: expected USER:PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv(app.AUTH_ENV, "nopassword:")
    with pytest.raises(SystemExit):
        app.main([])
    assert f"{app.AUTH_ENV}: expected USER:PASSWORD" in capsys.readouterr().err
    assert fake_launch == []
