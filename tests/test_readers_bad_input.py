"""Bad input on real-looking trees (issue 20): every case gives a clear error naming the file, or a counted skip
with a warning, never an exception from inside PIL or torch. The trees are built here, in tmp_path."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from scwm.data import (
    DatasetError,
    EvalTransform,
    ImageLoadError,
    ReIDImageDataset,
    collate_skip_none,
    load_image,
    read_folder,
    read_market1501,
    read_msmt17,
)

RED = (200, 30, 30)


def _jpg(path: Path, color: tuple[int, int, int] = RED, size: tuple[int, int] = (16, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)
    return path


def _png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit PNG written chunk by chunk (PIL cannot write 16-bit colour): grey (H, W) or RGB (H, W, 3)."""
    colour_type = 0 if arr.ndim == 2 else 2
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _market(root: Path, train: dict[str, object] | None = None) -> Path:
    """A Market-1501 tree; ``train`` maps extra training file names to a writer ``f(path)``."""
    for folder, names in {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg"],
                          "query": ["0003_c1s1_000100_00.jpg"],
                          "bounding_box_test": ["0003_c2s1_000101_00.jpg", "0000_c3s1_000004_00.jpg"]}.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            _jpg(root / folder / n)
    for name, write in (train or {}).items():
        write(root / "bounding_box_train" / name)  # type: ignore[operator]
    return root


# ------------------------------------------------------------------- corrupt files and unusual image modes
def _truncated(path: Path) -> None:
    full = _jpg(path, size=(64, 128)).read_bytes()
    path.write_bytes(full[: len(full) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _cmyk(path: Path) -> None:
    Image.new("CMYK", (16, 32), (0, 255, 255, 0)).save(path)  # pure red in CMYK


def _grey16(path: Path) -> None:
    _png16(path.with_suffix(".png"), np.full((32, 16), 0x8040, np.uint16))  # mid grey, not white


def _rgb16(path: Path) -> None:
    arr = np.zeros((32, 16, 3), np.uint16)
    arr[..., 0], arr[..., 2] = 0xFFFF, 0x4000
    _png16(path.with_suffix(".png"), arr)


def _palette(path: Path) -> None:
    img = Image.new("P", (16, 32), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.save(path.with_suffix(".png"))


def _palette_transparent(path: Path) -> None:
    img = Image.new("P", (16, 32), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.save(path.with_suffix(".png"), transparency=1)


BAD = {"0005_c1s1_000001_00.jpg": _truncated, "0005_c2s1_000002_00.jpg": _empty}
ODD = {"0006_c1s1_000001_00.jpg": (_cmyk, (255, 0, 0)), "0006_c2s1_000002_00.jpg": (_grey16, (128, 128, 128)),
       "0006_c3s1_000003_00.jpg": (_rgb16, (255, 0, 64)), "0006_c4s1_000004_00.jpg": (_palette, (10, 200, 30)),
       "0006_c5s1_000005_00.jpg": (_palette_transparent, (10, 200, 30))}


def test_market_tree_with_corrupt_and_unusual_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Truncated and empty JPEGs are skipped and counted, with a warning naming each; CMYK, 16-bit (grey and
    colour) and palette images load as the right 8-bit RGB colours; a DataLoader epoch goes through."""
    root = _market(tmp_path / "market", {**BAD, **{n: w for n, (w, _) in ODD.items()}})
    ds = read_market1501(root)
    by_name = {Path(r.path).stem: i for i, r in enumerate(ds.train)}
    assert len(ds.train) == 2 + len(BAD) + len(ODD)  # the reader lists them all; loading decides
    for name, (_, rgb) in ODD.items():
        path = ds.train[by_name[Path(name).stem]].path
        img = load_image(path)
        assert img.mode == "RGB", name
        assert np.abs(np.asarray(img)[4, 4].astype(int) - rgb).max() <= 2, (name, np.asarray(img)[4, 4])
    data = ReIDImageDataset(ds.train, EvalTransform(32, 16))
    with caplog.at_level(logging.WARNING, logger="scwm.data.dataset"):
        batches = [b for b in DataLoader(data, batch_size=4, collate_fn=collate_skip_none) if b is not None]
    loaded = sorted(int(i) for b in batches for i in b["index"])
    skipped = {by_name[Path(n).stem] for n in BAD}
    assert loaded == [i for i in range(len(ds.train)) if i not in skipped]
    assert data.num_corrupt == len(BAD)
    assert sorted(Path(p).name for p in data.corrupt_files) == sorted(BAD)
    for name in BAD:
        assert name in caplog.text
    assert "empty file (0 bytes)" in caplog.text and "truncated" in caplog.text
    with pytest.raises(ImageLoadError, match="0005_c2s1_000002_00.jpg.*empty file"):
        ReIDImageDataset(ds.train, EvalTransform(32, 16), skip_corrupt=False)[by_name["0005_c2s1_000002_00"]]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncation_anywhere_is_a_clear_error_or_an_image(tmp_path: Path, fmt: str) -> None:
    """Cut a file at every few bytes: PIL's errors (SyntaxError, struct.error, zlib.error...) never escape."""
    src = tmp_path / f"full.{fmt.lower()}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(src, format=fmt)
    full = src.read_bytes()
    cut_file = tmp_path / f"cut.{fmt.lower()}"
    outcomes = set()
    for cut in sorted({*range(0, min(len(full), 120)), *range(120, len(full), max(1, len(full) // 40))}):
        cut_file.write_bytes(full[:cut])
        try:
            img = load_image(cut_file)
        except ImageLoadError as exc:
            assert exc.path == str(cut_file) and str(cut_file) in str(exc)
            outcomes.add("error")
        else:
            assert img.mode == "RGB" and img.size == (24, 48)
            outcomes.add("image")
    assert "error" in outcomes


def test_unconvertible_modes_and_odd_entries_name_the_file(tmp_path: Path) -> None:
    Image.new("F", (4, 4), 0.5).save(tmp_path / "float.tif")
    with pytest.raises(ImageLoadError, match="float.tif.*floating-point"):
        load_image(tmp_path / "float.tif")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="folder.jpg.*directory"):
        load_image(tmp_path / "folder.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "link.jpg")
    with pytest.raises(ImageLoadError, match="link.jpg.*broken symbolic link"):
        load_image(tmp_path / "link.jpg")


def test_market_broken_links_and_folders_with_image_names_are_skipped_with_a_count(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _market(tmp_path / "m")
    os.symlink(tmp_path / "gone.jpg", root / "bounding_box_train" / "0009_c1s1_000001_00.jpg")
    (root / "bounding_box_train" / "0009_c2s1_000001_00.jpg").mkdir()
    with caplog.at_level(logging.WARNING, logger="scwm.data.readers"):
        ds = read_market1501(root)
    assert len(ds.train) == 2
    assert "skipping 2 entries" in caplog.text and "0009_c1s1_000001_00.jpg" in caplog.text


# ---------------------------------------------------------------------- names that do not fit the layout
def test_market_names_off_the_layout(tmp_path: Path) -> None:
    root = _market(tmp_path / "one", {"holiday photo.jpg": _jpg})
    with pytest.raises(DatasetError, match="holiday photo.jpg"):
        read_market1501(root)
    # a prefix before the pid is not silently skipped over ("copy_0002_c1..." is not pid 2)
    root = _market(tmp_path / "prefix", {"copy_0002_c1s1_000451_03.jpg": _jpg})
    with pytest.raises(DatasetError, match="copy_0002_c1s1_000451_03.jpg"):
        read_market1501(root)
    root = _market(tmp_path / "cam0", {"0002_c0s1_000451_03.jpg": _jpg})
    with pytest.raises(DatasetError, match="bad camera c0.*0002_c0s1_000451_03.jpg"):
        read_market1501(root)
    root = _market(tmp_path / "many", {f"IMG_{i:04d}.jpg": _jpg for i in range(5)})
    with pytest.raises(DatasetError, match=r"5 file names in .*bounding_box_train.* do not follow") as exc:
        read_market1501(root)
    assert "IMG_0000.jpg" in str(exc.value) and "and 2 more" in str(exc.value)


# ------------------------------------------------------------------------------------ MSMT17 list layout
MSMT_LISTS = {
    "list_train.txt": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0001/0001_000_12_0303noon_0001_1.jpg", 1)],
    "list_val.txt": [("0002/0002_000_03_0303afternoon_0002_0.jpg", 2)],
    "list_query.txt": [("0000/0000_000_02_0303morning_0100_0.jpg", 0)],
    "list_gallery.txt": [("0000/0000_003_15_0303morning_0200_0.jpg", 0)],
}


def _msmt(root: Path, lists: dict[str, list[tuple[str, int]]] | None = None, make: bool = True) -> Path:
    lists = MSMT_LISTS if lists is None else lists
    for name, entries in lists.items():
        img_dir = root / ("train" if name in ("list_train.txt", "list_val.txt") else "test")
        img_dir.mkdir(parents=True, exist_ok=True)
        for rel, _ in entries:
            if make:
                _jpg(img_dir / rel)
        (root / name).write_text("".join(f"{rel} {pid}\n" for rel, pid in entries))
    return root


def test_msmt_list_naming_missing_files(tmp_path: Path) -> None:
    root = _msmt(tmp_path / "m")
    (root / "train" / "0001" / "0001_000_12_0303noon_0001_1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed in .*list_train.txt.*0001_000_12_0303noon_0001_1"):
        read_msmt17(root)
    lists = dict(MSMT_LISTS)
    lists["list_gallery.txt"] = [(f"0009/0009_000_04_0303noon_{i:04d}_0.jpg", 9) for i in range(5)]
    root = _msmt(tmp_path / "m2", lists)
    for p in (root / "test" / "0009").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"5 image\(s\) listed in .*list_gallery.txt.*and 2 more"):
        read_msmt17(root)


def test_msmt_list_names_off_the_layout_and_unreadable_lists(tmp_path: Path) -> None:
    lists = dict(MSMT_LISTS)
    lists["list_val.txt"] = [("0002/cam3_photo.jpg", 2)]
    root = _msmt(tmp_path / "m", lists)
    with pytest.raises(DatasetError, match=r"list_val.txt:1.*cam3_photo.jpg"):
        read_msmt17(root)
    root = _msmt(tmp_path / "latin1")
    (root / "list_query.txt").write_bytes("0000/0000_000_02_caf\xe9_0100_0.jpg 0\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="list_query.txt.*not UTF-8"):
        read_msmt17(root)
    root = _msmt(tmp_path / "bom")  # a byte-order mark (Windows editors) is not part of the first path
    text = (root / "list_train.txt").read_text()
    (root / "list_train.txt").write_text("\ufeff" + text.replace("\n", "\r\n"), encoding="utf-8")
    assert len(read_msmt17(root).train) == 3


# -------------------------------------------------------------------------------- folders with no images
def test_folders_with_no_images(tmp_path: Path) -> None:
    root = _market(tmp_path / "empty")
    for p in (root / "bounding_box_train").iterdir():
        p.unlink()
    (root / "bounding_box_train" / "readme.txt").write_text("images go here")
    with pytest.raises(DatasetError, match="no usable images.*bounding_box_train.*holds no"):
        read_market1501(root)
    root = _market(tmp_path / "nested")  # images one folder too deep
    train, sub = root / "bounding_box_train", root / "bounding_box_train" / "sub"
    images = list(train.iterdir())
    sub.mkdir()
    for p in images:
        p.rename(sub / p.name)
    with pytest.raises(DatasetError, match="one folder down.*sub"):
        read_market1501(root)
    root = _market(tmp_path / "junk", {"-1_c1s1_000001_00.jpg": _jpg})
    for p in (root / "bounding_box_train").glob("0002_*"):
        p.unlink()
    with pytest.raises(DatasetError, match="1 image.*all junk"):
        read_market1501(root)
    lists = dict(MSMT_LISTS)
    lists["list_query.txt"] = []
    with pytest.raises(DatasetError, match="list_query.txt.*lists no images"):
        read_msmt17(_msmt(tmp_path / "msmt", lists))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images .* found under .*plain"):
        read_folder(tmp_path / "plain")


# --------------------------------------------------------------------- duplicate names across cameras
def test_duplicate_file_names_across_cameras_stay_distinct(tmp_path: Path) -> None:
    """cam1/0001.jpg and cam2/0001.jpg are two images: two records, each with its camera and its pixels."""
    colours = {1: (250, 0, 0), 2: (0, 0, 250)}
    for cam, colour in colours.items():
        _jpg(tmp_path / "plain" / f"cam{cam}" / "0001.jpg", colour)
    ds = read_folder(tmp_path / "plain", camera_regex=r"cam(\d+)/")
    assert [(Path(r.path).parent.name, r.camid) for r in ds.train] == [("cam1", 1), ("cam2", 2)]
    for rec in ds.train:
        assert np.abs(np.asarray(load_image(rec.path))[0, 0].astype(int) - colours[rec.camid]).max() <= 4
    lists = dict(MSMT_LISTS)  # the same base name in two identity folders of MSMT17: two images
    lists["list_gallery.txt"] = [("0000/0000_003_15_0303morning_0200_0.jpg", 0),
                                 ("0001/0000_003_15_0303morning_0200_0.jpg", 1)]
    ms = read_msmt17(_msmt(tmp_path / "msmt", lists))
    assert [(r.pid, r.camid) for r in ms.gallery] == [(0, 14), (1, 14)] and len({r.path for r in ms.gallery}) == 2


def test_the_same_image_twice_is_an_error_naming_it(tmp_path: Path) -> None:
    lists = dict(MSMT_LISTS)  # listed in train and again in val
    lists["list_val.txt"] = [("0000/0000_000_01_0303morning_0015_0.jpg", 0)]
    with pytest.raises(DatasetError, match=r"0000_000_01_0303morning_0015_0.jpg' is listed twice "
                                           r"\(list_train.txt:1 and list_val.txt:1"):
        read_msmt17(_msmt(tmp_path / "m", lists))
    lists = dict(MSMT_LISTS)  # a query image that is also a gallery image would retrieve itself
    lists["list_gallery.txt"] = lists["list_query.txt"]
    with pytest.raises(DatasetError, match="listed twice.*list_query.txt:1 and list_gallery.txt:1"):
        read_msmt17(_msmt(tmp_path / "m2", lists))
    root = _market(tmp_path / "market", {"0002_c1s1_000451_03.png": lambda p: Image.new("RGB", (4, 8)).save(p)})
    with pytest.raises(DatasetError, match="0002_c1s1_000451_03.jpg.*0002_c1s1_000451_03.png.*two extensions"):
        read_market1501(root)
