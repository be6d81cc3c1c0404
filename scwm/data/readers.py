"""Dataset readers: Market-1501, MSMT17 (V1/V2), a plain image folder, and the synthetic world.

Every reader returns a :class:`~scwm.data.records.ReIDDataset` and raises :class:`DatasetError` (a
``ValueError``) naming the offending path when the layout is wrong: file names that do not follow the layout,
list entries naming missing or duplicate files, folders without images. Entries that look like images but are
not files (broken links, folders named ``x.jpg``) are skipped with a warning that counts them. Images are not
opened here: empty, truncated or corrupt files are detected lazily by :func:`scwm.data.images.load_image`
(the torch dataset skips and counts them).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .images import IMAGE_EXTENSIONS
from .records import ImageRecord, ReIDDataset, relabel_pids

__all__ = [
    "DatasetError",
    "MARKET_SPLITS",
    "read_market1501",
    "read_msmt17",
    "read_folder",
    "read_synthetic",
    "load_dataset",
    "relabel_pids",
    "DATASET_KINDS",
]


log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset directory is missing, has the wrong layout, or contains unparsable names."""


# split name -> folder name in the Market-1501 layout
MARKET_SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_MARKET_PATTERN = re.compile(r"^([-\d]+)_c(\d+)")  # at the start: "copy_0002_c1..." is not pid 2
_MARKET_SUBDIRS = ("Market-1501-v15.09.15", "Market-1501", "market1501")
_MSMT_SUBDIRS = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _check_root(root: str | os.PathLike[str], what: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{what} root {str(path)!r} does not exist")
    if not path.is_dir():
        raise DatasetError(f"{what} root {str(path)!r} is not a directory")
    return path


def _find_layout(root: Path, required: tuple[str, ...], subdirs: tuple[str, ...]) -> Path | None:
    """Return ``root`` or the subfolder of it that contains all ``required`` entries, else None."""
    if all((root / r).exists() for r in required):
        return root
    candidates = [root / s for s in subdirs]
    candidates += sorted(p for p in root.iterdir() if p.is_dir() and p not in candidates)
    for cand in candidates:
        if cand.is_dir() and all((cand / r).exists() for r in required):
            return cand
    return None


def _layout_error(root: Path, required: tuple[str, ...], what: str) -> DatasetError:
    missing = [r for r in required if not (root / r).exists()]
    return DatasetError(
        f"{str(root)!r} does not have the {what} layout: missing {', '.join(repr(m) for m in missing)} "
        f"(expected {', '.join(required)} directly under the root or under one subfolder of it)"
    )


def parse_market_name(path: Path) -> tuple[int, int]:
    """``0002_c1s1_000451_03.jpg`` -> ``(pid 2, camid 0)``; raises DatasetError naming the file."""
    m = _MARKET_PATTERN.search(path.name)
    if m is None:
        raise DatasetError(
            f"cannot parse Market-1501 file name {str(path)!r}: expected '{{pid}}_c{{cam}}s{{seq}}_...' "
            f"(e.g. 0002_c1s1_000451_03.jpg)"
        )
    try:
        pid, cam = int(m.group(1)), int(m.group(2))
    except ValueError:
        raise DatasetError(
            f"cannot parse Market-1501 file name {str(path)!r}: bad pid {m.group(1)!r}"
        ) from None
    if pid < -1:
        raise DatasetError(f"bad pid {pid} in file name {str(path)!r}")
    if cam < 1:
        raise DatasetError(f"bad camera c{cam} in file name {str(path)!r}: Market cameras are 1-based")
    return pid, cam - 1


def _examples(items: list[str], n: int = 3) -> str:
    """The first ``n`` of ``items``, quoted, and how many more there are."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(repr(i) for i in items[:n]) + more


def _list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted. Non-image files (Thumbs.db, notes) are ignored; entries
    with an image name that are not files (broken links, folders) are skipped with a warning counting them."""
    named = [p for p in folder.iterdir() if _is_image(p.name)]
    odd = sorted(str(p) for p in named if not p.is_file())
    if odd:
        log.warning("skipping %d entr%s in %s with an image name that %s not a readable file (broken link or "
                    "folder): %s", len(odd), "y" if len(odd) == 1 else "ies", folder, "is" if len(odd) == 1 else
                    "are", _examples(odd))
    return sorted(p for p in named if p.is_file())


def _no_images_error(folder: Path, split: str, found: int) -> DatasetError:
    """Why a split folder gave no records: empty, only junk / distractors, or images one level down."""
    if found:
        return DatasetError(f"no usable images in {split} folder {str(folder)!r}: its {found} image(s) are all "
                            "junk (pid -1) or distractors (pid 0)")
    nested = sorted(str(p) for p in folder.glob("*/*") if p.is_file() and _is_image(p.name))
    hint = f"; images were found one folder down ({_examples(nested, 1)}), move them up" if nested else ""
    return DatasetError(f"no usable images in {split} folder {str(folder)!r}: it holds no "
                        f"{'/'.join(IMAGE_EXTENSIONS)} files{hint}")


def _read_market_split(
    folder: Path, split: str, mask_dir: Path | None = None, drop_pid0: bool = True
) -> list[ImageRecord]:
    records = []
    paths = _list_images(folder)
    parsed, bad = [], []
    for path in paths:
        try:
            parsed.append((path, *parse_market_name(path)))
        except DatasetError as exc:
            bad.append((str(path), exc))
    if len(bad) == 1:
        raise bad[0][1]
    if bad:
        raise DatasetError(f"{len(bad)} file names in {str(folder)!r} do not follow the Market-1501 layout "
                           f"'{{pid}}_c{{cam}}s{{seq}}_...' (e.g. 0002_c1s1_000451_03.jpg): "
                           f"{_examples([b[0] for b in bad])}; first error: {bad[0][1]}")
    stems: dict[str, Path] = {}
    for path, _, _ in parsed:
        if path.stem in stems:
            raise DatasetError(f"{str(stems[path.stem])!r} and {str(path)!r} are the same image name with two "
                               "extensions; keep one")
        stems[path.stem] = path
    for path, pid, camid in parsed:
        if pid == -1 or (drop_pid0 and pid == 0):
            continue
        mask_path = None
        if mask_dir is not None:
            mp = mask_dir / f"{path.stem}.png"
            if not mp.is_file():
                raise DatasetError(f"mask {str(mp)!r} for image {str(path)!r} does not exist")
            mask_path = str(mp)
        records.append(ImageRecord(str(path), pid, camid, mask_path))
    if not records:
        raise _no_images_error(folder, split, len(paths))
    return records


def _read_market_layout(root: Path, what: str, with_masks: bool = False) -> tuple[Path, dict[str, list]]:
    required = tuple(MARKET_SPLITS.values())
    base = _find_layout(root, required, _MARKET_SUBDIRS)
    if base is None:
        raise _layout_error(root, required, what)
    for folder in required:
        if not (base / folder).is_dir():
            raise DatasetError(f"{str(base / folder)!r} is not a directory ({what} layout)")
    splits = {}
    for split, folder in MARKET_SPLITS.items():
        mask_dir = None
        if with_masks:
            mask_dir = base / "masks" / folder
            if not mask_dir.is_dir():
                raise DatasetError(f"mask folder {str(mask_dir)!r} does not exist ({what} layout expects "
                                   f"masks/{{{','.join(MARKET_SPLITS.values())}}}/{{stem}}.png)")
        # pid 0 are distractors: kept in the gallery only
        splits[split] = _read_market_split(base / folder, folder, mask_dir, drop_pid0=split != "gallery")
    return base, splits


def read_market1501(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read Market-1501 (``bounding_box_train``, ``query``, ``bounding_box_test``).

    Junk images (pid -1) are dropped; distractors (pid 0) are kept in the gallery only. Train pids are
    the original pids (see :func:`relabel_pids`). ``root`` may also contain a ``Market-1501-v15.09.15``
    subfolder.
    """
    base, s = _read_market_layout(_check_root(root, "Market-1501"), "Market-1501")
    return ReIDDataset("market1501", str(base), s["train"], s["query"], s["gallery"])


def _msmt_camid(rel: str, list_file: Path, lineno: int) -> int:
    fields = Path(rel).name.split("_")
    try:
        cam = int(fields[2])
    except (IndexError, ValueError):
        raise DatasetError(
            f"{list_file}:{lineno}: cannot parse the camera from file name {rel!r} "
            f"(expected '{{pid}}_{{seq}}_{{cam}}_...', e.g. 0000_000_01_0303morning_0015_0.jpg)"
        ) from None
    if cam < 1:
        raise DatasetError(f"{list_file}:{lineno}: bad camera {cam} in {rel!r} (MSMT17 cameras are 1-based)")
    return cam - 1


def _read_lines(list_file: Path) -> list[str]:
    """The lines of a list file (UTF-8, with or without a byte-order mark); DatasetError if unreadable."""
    try:
        return list_file.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"list file {str(list_file)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None
    except OSError as exc:
        raise DatasetError(f"cannot read list file {str(list_file)!r}: {exc.strerror or exc}") from None


def _read_msmt_list(list_file: Path, img_dir: Path, seen: dict[str, str] | None = None) -> list[ImageRecord]:
    """Records of one MSMT17 list; ``seen`` (path -> "list:line", shared by the lists of one split group)
    catches an image listed twice."""
    records = []
    missing = []
    seen = {} if seen is None else seen
    for lineno, line in enumerate(_read_lines(list_file), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{list_file}:{lineno}: expected 'relative/path.jpg pid', got {line!r}")
        rel, pid_s = parts
        try:
            pid = int(pid_s)
        except ValueError:
            raise DatasetError(f"{list_file}:{lineno}: pid {pid_s!r} is not an integer") from None
        camid = _msmt_camid(rel, list_file, lineno)
        path = img_dir / rel
        where = f"{list_file.name}:{lineno}"
        key = os.path.normpath(path)
        if key in seen:
            raise DatasetError(f"{str(path)!r} is listed twice ({seen[key]} and {where} under {list_file.parent})")
        seen[key] = where
        if not path.is_file():
            missing.append(str(path))
        records.append(ImageRecord(str(path), pid, camid))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) listed in {str(list_file)!r} do not exist (or are not "
                           f"files): {_examples(missing)}")
    if not records:
        raise DatasetError(f"list file {str(list_file)!r} lists no images")
    return records


def read_msmt17(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read MSMT17 (V1: ``train/``, ``test/``; V2: ``mask_train_v2/``, ``mask_test_v2/``) and its lists.

    List lines are ``relative/path.jpg pid``; the 1-based camera is the third ``_`` field of the file
    name. The unsupervised training set is ``list_train`` + ``list_val`` (32,621 images on MSMT17_V1).
    """
    path = _check_root(root, "MSMT17")
    lists = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
    layouts = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
    for train_dir, test_dir in layouts.values():
        base = _find_layout(path, (train_dir, test_dir, *lists), _MSMT_SUBDIRS)
        if base is not None:
            break
    else:
        v1 = ("train", "test", *lists)
        missing = [r for r in v1 if not (path / r).exists()]
        raise DatasetError(
            f"{str(path)!r} does not have the MSMT17 layout: missing {', '.join(repr(m) for m in missing)} "
            f"(expected train/, test/ (V1) or mask_train_v2/, mask_test_v2/ (V2) and {', '.join(lists)})"
        )
    seen_train: dict[str, str] = {}
    seen_test: dict[str, str] = {}  # a query image listed in the gallery too would find itself
    train = _read_msmt_list(base / "list_train.txt", base / train_dir, seen_train)
    train += _read_msmt_list(base / "list_val.txt", base / train_dir, seen_train)
    query = _read_msmt_list(base / "list_query.txt", base / test_dir, seen_test)
    gallery = _read_msmt_list(base / "list_gallery.txt", base / test_dir, seen_test)
    return ReIDDataset("msmt17", str(base), train, query, gallery)


def read_folder(
    root: str | os.PathLike[str], camera_regex: str | re.Pattern[str] | None = None
) -> ReIDDataset:
    """Read a plain folder of unlabeled images (recursive; jpg/jpeg/png/bmp/webp, any case).

    All images go to ``train`` with pid -1, sorted by relative path. With ``camera_regex`` (one capture
    group matching an integer, searched in the path relative to ``root``), camid is that integer as-is;
    otherwise -1. A file the regex does not match raises :class:`DatasetError`.
    """
    path = _check_root(root, "image folder")
    pattern = None
    if camera_regex is not None:
        try:
            pattern = re.compile(camera_regex)
        except re.error as exc:
            raise DatasetError(f"invalid camera_regex {camera_regex!r}: {exc}") from None
        if pattern.groups != 1:
            raise DatasetError(f"camera_regex {pattern.pattern!r} must have exactly one capture group, "
                               f"has {pattern.groups}")
    rels = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        rels += [os.path.relpath(os.path.join(dirpath, f), path) for f in filenames if _is_image(f)]
    rels.sort(key=lambda r: Path(r).as_posix())
    if not rels:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(path)!r}")
    records = []
    for rel in rels:
        camid = -1
        if pattern is not None:
            m = pattern.search(Path(rel).as_posix())
            if m is None:
                raise DatasetError(f"camera_regex {pattern.pattern!r} does not match {str(path / rel)!r}")
            try:
                camid = int(m.group(1))
            except (TypeError, ValueError):
                raise DatasetError(f"camera_regex {pattern.pattern!r} captured {m.group(1)!r} from "
                                   f"{str(path / rel)!r}, which is not an integer") from None
        records.append(ImageRecord(str(path / rel), -1, camid))
    return ReIDDataset("folder", str(path), records, [], [])


def read_synthetic(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read a synthetic set: Market layout + ``masks/{split}/{stem}.png`` + ``meta.json`` (``part_names``)."""
    path = _check_root(root, "synthetic dataset")
    base = _find_layout(path, ("meta.json", *MARKET_SPLITS.values()), ())
    if base is None:
        what = "synthetic (Market + masks)"
        raise _layout_error(path, ("meta.json", "masks", *MARKET_SPLITS.values()), what)
    meta_path = base / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {str(meta_path)!r}: {exc}") from None
    names = meta.get("part_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{str(meta_path)!r} must contain a non-empty list of strings under 'part_names'")
    _, s = _read_market_layout(base, "synthetic (Market + masks)", with_masks=True)
    return ReIDDataset("synthetic", str(base), s["train"], s["query"], s["gallery"], part_names=list(names))


_READERS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": read_market1501,
    "msmt17": read_msmt17,
    "folder": read_folder,
    "synthetic": read_synthetic,
}
_ALIASES = {"market": "market1501", "market-1501": "market1501", "msmt": "msmt17", "msmt17_v1": "msmt17",
            "msmt17_v2": "msmt17", "images": "folder"}
DATASET_KINDS = tuple(_READERS)


def load_dataset(kind: str, root: str | os.PathLike[str], **kwargs: Any) -> ReIDDataset:
    """Read a dataset of ``kind`` in ``{"market1501", "msmt17", "folder", "synthetic"}`` from ``root``."""
    key = _ALIASES.get(kind.lower(), kind.lower())
    if key not in _READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")
    return _READERS[key](root, **kwargs)
