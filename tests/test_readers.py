"""Readers, image loading and the torch dataset on tiny trees built in tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from scwm.data import (
    DatasetError,
    EvalTransform,
    ImageLoadError,
    ImageRecord,
    ReIDImageDataset,
    collate_skip_none,
    load_dataset,
    load_image,
    load_mask,
    read_folder,
    read_market1501,
    read_msmt17,
    read_synthetic,
    relabel_pids,
)


def _jpg(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)
    return path


MARKET_FILES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000001_01.jpg",
                           "-1_c1s1_000001_00.jpg", "0000_c1s1_000002_00.jpg"],
    "query": ["0003_c1s1_000100_00.jpg", "0004_c6s2_000200_00.jpg", "-1_c2s1_000003_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000101_00.jpg", "0004_c1s2_000201_00.jpg", "0000_c3s1_000004_00.jpg",
                          "-1_c4s1_000005_00.jpg"],
}


def _market(root: Path, files: dict[str, list[str]] = MARKET_FILES) -> Path:
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            _jpg(root / folder / n)
    return root


# ---------------------------------------------------------------- Market-1501

def test_market_splits_junk_distractors_and_cameras(tmp_path: Path) -> None:
    root = _market(tmp_path / "market")
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"junk")  # non-image files are ignored
    ds = read_market1501(root)
    assert ds.name == "market1501"
    train = {(Path(r.path).name, r.pid, r.camid) for r in ds.train}
    assert train == {("0002_c1s1_000451_03.jpg", 2, 0), ("0002_c2s1_000551_01.jpg", 2, 1),
                     ("0007_c3s1_000001_01.jpg", 7, 2)}
    assert sorted((r.pid, r.camid) for r in ds.query) == [(3, 0), (4, 5)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 2), (3, 1), (4, 0)]
    assert all(r.pid != -1 for r in ds.train + ds.query + ds.gallery)
    assert all(r.mask_path is None for r in ds.train)
    text = str(ds)
    assert "train" in text and "gallery" in text and "# ids" in text
    assert ds.num_train_pids == 2 and ds.num_train_cams == 3


def test_market_subfolder_and_load_dataset(tmp_path: Path) -> None:
    _market(tmp_path / "Market-1501-v15.09.15")
    ds = read_market1501(tmp_path)
    assert ds.root.endswith("Market-1501-v15.09.15") and len(ds.train) == 3
    ds2 = load_dataset("market1501", tmp_path)
    assert [r.path for r in ds2.gallery] == [r.path for r in ds.gallery]
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        load_dataset("cuhk03", tmp_path)


def test_relabel_contiguous(tmp_path: Path) -> None:
    ds = read_market1501(_market(tmp_path))
    relabeled, mapping = relabel_pids(ds.train)
    assert mapping == {2: 0, 7: 1}
    assert [r.pid for r in relabeled] == [mapping[r.pid] for r in ds.train]
    assert [r.camid for r in relabeled] == [r.camid for r in ds.train]
    recs, m = relabel_pids([ImageRecord("a", -1, 0), ImageRecord("b", 10, 0)])
    assert [r.pid for r in recs] == [-1, 0] and m == {10: 0}


def test_market_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as exc:
        read_market1501(tmp_path / "nowhere")
    assert "nowhere" in str(exc.value)


def test_market_wrong_layout_names_missing_folder(tmp_path: Path) -> None:
    files = {k: v for k, v in MARKET_FILES.items() if k != "query"}
    _market(tmp_path, files)
    with pytest.raises(DatasetError, match="'query'") as exc:
        read_market1501(tmp_path)
    assert str(tmp_path) in str(exc.value) and "bounding_box_train" in str(exc.value)


def test_market_unparsable_image_name(tmp_path: Path) -> None:
    _market(tmp_path)
    _jpg(tmp_path / "query" / "holiday_photo.jpg")
    with pytest.raises(DatasetError, match="holiday_photo.jpg"):
        read_market1501(tmp_path)


def test_market_zero_images(tmp_path: Path) -> None:
    files = dict(MARKET_FILES)
    files["bounding_box_train"] = []
    _market(tmp_path, files)
    with pytest.raises(DatasetError, match="no usable images.*bounding_box_train"):
        read_market1501(tmp_path)


# ---------------------------------------------------------------- MSMT17

def _msmt(root: Path, train_dir: str = "train", test_dir: str = "test") -> Path:
    lists = {
        "list_train.txt": [("0000/0000_000_01_0303morning_0015_0.jpg", 0),
                           ("0000/0000_001_05_0303morning_0016_0.jpg", 0),
                           ("0001/0001_000_12_0303noon_0001_1.jpg", 1)],
        "list_val.txt": [("0002/0002_000_03_0303afternoon_0002_0.jpg", 2)],
        "list_query.txt": [("0000/0000_000_02_0303morning_0100_0.jpg", 0)],
        "list_gallery.txt": [("0000/0000_003_15_0303morning_0200_0.jpg", 0),
                             ("0001/0001_000_04_0303noon_0300_0.jpg", 1)],
    }
    for list_name, entries in lists.items():
        img_dir = root / (train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir)
        for rel, _ in entries:
            _jpg(img_dir / rel)
        (root / list_name).write_text("".join(f"{rel} {pid}\n" for rel, pid in entries))
    return root


def test_msmt17_v1(tmp_path: Path) -> None:
    ds = read_msmt17(_msmt(tmp_path / "MSMT17_V1"))
    assert ds.name == "msmt17"
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0), (0, 4), (1, 11), (2, 2)]  # train + val
    assert [(r.pid, r.camid) for r in ds.query] == [(0, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 14), (1, 3)]
    assert all(Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery)
    assert "/train/" in ds.train[0].path and "/test/" in ds.query[0].path
    # parent folder holding MSMT17_V1 also works
    assert len(load_dataset("msmt17", tmp_path).train) == 4


def test_msmt17_v2(tmp_path: Path) -> None:
    ds = read_msmt17(_msmt(tmp_path, "mask_train_v2", "mask_test_v2"))
    assert len(ds.train) == 4 and "mask_test_v2" in ds.gallery[0].path


def test_msmt17_errors(tmp_path: Path) -> None:
    root = _msmt(tmp_path / "m")
    (root / "list_val.txt").unlink()
    with pytest.raises(DatasetError, match="list_val.txt"):
        read_msmt17(root)
    root = _msmt(tmp_path / "m2")
    (root / "list_query.txt").write_text("0000/0000_000_02_0303morning_0100_0.jpg\n")
    with pytest.raises(DatasetError, match=r"list_query.txt:1"):
        read_msmt17(root)
    root = _msmt(tmp_path / "m3")
    (root / "list_gallery.txt").write_text("0000/missing_file.jpg 0\n")
    with pytest.raises(DatasetError, match="missing_file.jpg"):
        read_msmt17(root)
    root = _msmt(tmp_path / "m4")
    (root / "list_gallery.txt").write_text("0000/nocamera.jpg 0\n")
    with pytest.raises(DatasetError, match="nocamera.jpg"):
        read_msmt17(root)


# ---------------------------------------------------------------- plain folder

def _folder(root: Path) -> Path:
    for rel in ["cam2/b.JPG", "cam1/sub/a.png", "cam1/c.jpeg", "cam3/d.bmp", "z.webp"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        fmt = {"JPG": "JPEG", "png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP"}[p.suffix[1:]]
        Image.new("RGB", (4, 8), (1, 2, 3)).save(p, format=fmt)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_recursive_sorted_no_regex(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    ds = read_folder(root)
    rels = [Path(r.path).relative_to(root).as_posix() for r in ds.train]
    assert rels == ["cam1/c.jpeg", "cam1/sub/a.png", "cam2/b.JPG", "cam3/d.bmp", "z.webp"]
    assert all(r.pid == -1 and r.camid == -1 for r in ds.train)
    assert ds.query == [] and ds.gallery == []
    assert read_folder(root).train == ds.train  # deterministic


def test_folder_camera_regex(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    (root / "z.webp").unlink()
    ds = load_dataset("folder", root, camera_regex=r"cam(\d+)/")
    assert [r.camid for r in ds.train] == [1, 1, 2, 3]
    _jpg(root / "nocam.jpg")
    with pytest.raises(DatasetError, match="nocam.jpg"):
        read_folder(root, camera_regex=r"cam(\d+)/")
    with pytest.raises(DatasetError, match="exactly one capture group"):
        read_folder(root, camera_regex=r"cam\d+")


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images") as exc:
        read_folder(tmp_path / "empty")
    assert "empty" in str(exc.value)
    with pytest.raises(DatasetError, match="does not exist"):
        read_folder(tmp_path / "missing")


# ---------------------------------------------------------------- synthetic

PARTS = ["background", "head", "upper_body", "lower_body", "shoes", "accessory"]


def _synthetic(root: Path) -> Path:
    _market(root)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / "masks" / folder).mkdir(parents=True)
        for img in (root / folder).glob("*.jpg"):
            Image.fromarray(np.full((16, 8), 2, np.uint8)).save(root / "masks" / folder / f"{img.stem}.png")
    (root / "meta.json").write_text(json.dumps({"part_names": PARTS, "seed": 0}))
    return root


def test_synthetic_masks_and_meta(tmp_path: Path) -> None:
    ds = read_synthetic(_synthetic(tmp_path / "syn"))
    assert ds.part_names == PARTS and ds.name == "synthetic"
    assert len(ds.train) == 3 and len(ds.gallery) == 3
    for r in ds.train + ds.query + ds.gallery:
        assert r.mask_path is not None and Path(r.mask_path).stem == Path(r.path).stem
        assert Path(r.mask_path).parent.name == Path(r.path).parent.name
        m = load_mask(r.mask_path)
        assert m.dtype == np.uint8 and m.shape == (16, 8) and (m == 2).all()
    assert "parts: background" in ds.summary()


def test_synthetic_errors(tmp_path: Path) -> None:
    root = _synthetic(tmp_path / "a")
    (root / "masks" / "query" / "0003_c1s1_000100_00.png").unlink()
    with pytest.raises(DatasetError, match="0003_c1s1_000100_00.png"):
        read_synthetic(root)
    root = _synthetic(tmp_path / "b")
    (root / "meta.json").write_text(json.dumps({"parts": PARTS}))
    with pytest.raises(DatasetError, match="part_names"):
        read_synthetic(root)
    root = _synthetic(tmp_path / "c")
    (root / "meta.json").unlink()
    with pytest.raises(DatasetError, match="meta.json"):
        read_synthetic(root)


# ---------------------------------------------------------------- images

def test_load_image_modes(tmp_path: Path) -> None:
    Image.new("L", (5, 7), 100).save(tmp_path / "g.png")
    Image.new("RGBA", (5, 7), (10, 20, 30, 0)).save(tmp_path / "a.png")
    Image.new("P", (5, 7), 3).save(tmp_path / "p.png", transparency=3)
    Image.new("RGB", (5, 7), (10, 20, 30)).save(tmp_path / "c.bmp")
    for name in ("g.png", "a.png", "p.png", "c.bmp"):
        img = load_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == (5, 7)
    assert np.asarray(load_image(tmp_path / "g.png"))[0, 0].tolist() == [100, 100, 100]
    assert np.asarray(load_image(tmp_path / "a.png"))[0, 0].tolist() == [10, 20, 30]


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="missing.jpg.*does not exist"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    with pytest.raises(ImageLoadError, match="text.jpg.*not an image"):
        load_image(tmp_path / "text.jpg")
    full = _jpg(tmp_path / "full.jpg", size=(64, 128)).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageLoadError, match="trunc.jpg.*truncated") as exc:
        load_image(tmp_path / "trunc.jpg")
    assert isinstance(exc.value, ValueError) and exc.value.path.endswith("trunc.jpg")
    png = tmp_path / "m.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    (tmp_path / "trunc.png").write_bytes(png.read_bytes()[:40])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load_mask(tmp_path / "trunc.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "colour.png")
    with pytest.raises(ImageLoadError, match="colour.png.*single-channel"):
        load_mask(tmp_path / "colour.png")


# ---------------------------------------------------------------- dataset

def test_dataset_items_labels_and_masks(tmp_path: Path) -> None:
    ds = read_synthetic(_synthetic(tmp_path / "syn"))
    t = EvalTransform(16, 8)
    plain = ReIDImageDataset(ds.train, t)
    item = plain[0]
    assert item["image"].shape == (3, 16, 8) and "mask" not in item
    assert (item["label"], item["pid"], item["camid"], item["index"]) == (2, 2, 0, 0)
    gt = ReIDImageDataset(ds.train, t, labels=np.array([5, -1, 6]), use_gt_masks=True)
    assert gt[1]["label"] == -1 and gt[1]["pid"] == 2
    assert gt[0]["mask"].dtype == torch.long and (gt[0]["mask"] == 2).all()
    soft = torch.rand(3, 4, 4, 2)
    sd = ReIDImageDataset(ds.train, t, soft_masks=soft)
    assert sd[2]["mask"].shape == (4, 16, 8)
    with pytest.raises(ValueError, match="labels must have shape"):
        ReIDImageDataset(ds.train, t, labels=[1, 2])
    with pytest.raises(ValueError, match="mutually exclusive"):
        ReIDImageDataset(ds.train, t, soft_masks=soft, use_gt_masks=True)
    with pytest.raises(ValueError, match="no mask_path"):
        ReIDImageDataset([ImageRecord("x.jpg", 1, 0)], t, use_gt_masks=True)


def test_dataset_corrupt_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = [_jpg(tmp_path / f"{i:04d}_c1s1_000001_00.jpg", (i * 40, 0, 0)) for i in range(3)]
    full = good[0].read_bytes()
    bad = tmp_path / "0009_c1s1_000001_00.jpg"
    bad.write_bytes(full[: len(full) // 3])
    records = [ImageRecord(str(p), i, 0) for i, p in enumerate([good[0], bad, good[1], good[2]])]
    ds = ReIDImageDataset(records, EvalTransform(16, 8))
    with caplog.at_level(logging.WARNING, logger="scwm.data.dataset"):
        assert ds[1] is None
    assert ds.num_corrupt == 1 and ds.corrupt_files == [str(bad)]
    assert str(bad) in caplog.text
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_skip_none)))
    assert batch["image"].shape == (3, 3, 16, 8) and batch["index"].tolist() == [0, 2, 3]
    assert collate_skip_none([None, None]) is None
    strict = ReIDImageDataset(records, EvalTransform(16, 8), skip_corrupt=False)
    with pytest.raises(ImageLoadError, match="0009_c1s1_000001_00.jpg"):
        strict[1]
