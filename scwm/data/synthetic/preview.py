"""Preview sheet: near-twin pairs side by side across cameras, each image with its part-mask overlay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .render import PART_NAMES

#: Overlay colour of each part label (background is shown darkened, not coloured).
PART_COLORS = np.asarray([(0, 0, 0), (255, 86, 86), (70, 170, 255), (80, 220, 110), (255, 210, 50),
                          (210, 100, 255)], np.uint8)
_BG = (24, 26, 30)
_FG = (230, 232, 235)
_DIM = (150, 155, 165)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend part colours over ``image`` (uint8 HxWx3) where ``mask`` > 0 and darken the background."""
    img = image.astype(np.float32)
    col = PART_COLORS[mask].astype(np.float32)
    fg = (mask > 0)[..., None]
    out = np.where(fg, (1 - alpha) * img + alpha * col, 0.35 * img)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # very old Pillow / no FreeType
        return ImageFont.load_default()


def _pick_rows(identities: dict, by_pid: dict[int, list[dict]], n_pairs: int, n_single: int) -> list[tuple]:
    """Twin pairs (one per kind first) from the test split, then single identities with many cameras."""
    rows: list[tuple] = []
    for split in ("test", "train"):
        table = {r["pid"]: r for r in identities.get(split, [])}
        twins = [r for r in table.values() if r.get("twin_of") is not None]
        seen_kinds: set[str] = set()
        for pass_ in range(2):
            for r in twins:
                if len(rows) >= n_pairs:
                    break
                if (pass_ == 0 and r["twin_kind"] in seen_kinds) or any(r["pid"] in row[:2] for row in rows):
                    continue
                if r["pid"] in by_pid and r["twin_of"] in by_pid:
                    rows.append((r["twin_of"], r["pid"], r["twin_kind"]))
                    seen_kinds.add(r["twin_kind"])
        if rows:
            break
    singles = sorted((p for p in by_pid if p > 0 and not any(p in row[:2] for row in rows)),
                     key=lambda p: (-len({r["cam"] for r in by_pid[p]}), p))
    rows += [(p, None, None) for p in singles[:n_single]]
    return rows


def _samples(records: list[dict], k: int) -> list[dict]:
    """Up to ``k`` images, spread over cameras (one per camera first)."""
    by_cam: dict[int, list[dict]] = {}
    for r in sorted(records, key=lambda r: (r["cam"], r["frame"])):
        by_cam.setdefault(r["cam"], []).append(r)
    out: list[dict] = []
    depth = 0
    while len(out) < k and any(len(v) > depth for v in by_cam.values()):
        for cam in sorted(by_cam):
            if depth < len(by_cam[cam]) and len(out) < k:
                out.append(by_cam[cam][depth])
        depth += 1
    return out


def write_preview(root: str | os.PathLike[str], path: str | os.PathLike[str], n_pairs: int = 4, n_single: int = 2,
                  per_id: int = 3, zoom: int = 2) -> Path:
    """Write a PNG sheet of ``root`` (a generated dataset) to ``path`` and return ``path``."""
    root, path = Path(root), Path(path)
    meta_path = root / "identities.json"
    ann_path = root / "annotations.jsonl"
    if not meta_path.is_file() or not ann_path.is_file():
        raise ValueError(f"{str(root)!r} is not a generated synthetic dataset (missing identities.json or "
                         "annotations.jsonl)")
    identities = json.loads(meta_path.read_text())
    by_pid: dict[int, list[dict]] = {}
    for line in ann_path.read_text().splitlines():
        r = json.loads(line)
        by_pid.setdefault(r["pid"], []).append(r)
    rows = _pick_rows(identities, by_pid, n_pairs, n_single)
    if not rows:
        raise ValueError(f"no identities to preview in {str(root)!r}")
    first = by_pid[rows[0][0]][0]
    h, w = np.asarray(Image.open(root / first["file"])).shape[:2]
    th, tw = h * zoom, w * zoom
    gap, pad, head = 6, 18, 30
    tile_w = 2 * tw + 2  # image | overlay
    half_w = per_id * tile_w + (per_id - 1) * gap
    sheet_w = 2 * pad + 2 * half_w + 3 * pad
    row_h = head + th + 20
    legend_h = 44
    title_h = 46
    sheet_h = title_h + len(rows) * row_h + legend_h + pad
    sheet = Image.new("RGB", (sheet_w, sheet_h), _BG)
    draw = ImageDraw.Draw(sheet)
    f_title, f_row, f_small = _font(20), _font(14), _font(11)
    meta = json.loads((root / "meta.json").read_text()) if (root / "meta.json").is_file() else {}
    draw.text((pad, 12), f"scwm synthetic world  ·  preset {meta.get('preset', '?')}  ·  seed {meta.get('seed', '?')}"
              "  ·  left: image, right: part labels", fill=_FG, font=f_title)

    def draw_identity(pid: int, x0: int, y0: int, caption: str) -> None:
        draw.text((x0, y0 + 6), caption, fill=_FG, font=f_row)
        for k, rec in enumerate(_samples(by_pid[pid], per_id)):
            img = np.asarray(Image.open(root / rec["file"]).convert("RGB"))
            mask = np.asarray(Image.open(root / rec["mask"]))
            x = x0 + k * (tile_w + gap)
            y = y0 + head
            big = Image.fromarray(img).resize((tw, th), Image.Resampling.NEAREST)
            ov = Image.fromarray(overlay(img, mask)).resize((tw, th), Image.Resampling.NEAREST)
            sheet.paste(big, (x, y))
            sheet.paste(ov, (x + tw + 2, y))
            tags = [f"c{rec['cam']}", rec["view"].replace("side_", "")]
            if rec["cut_top"] > 0:
                tags.append("cut top")
            if rec["cut_bottom"] > 0:
                tags.append("cut bottom")
            if rec["occluder"]:
                tags.append(rec["occluder"])
            draw.text((x, y + th + 3), " · ".join(tags), fill=_DIM, font=f_small)

    for i, (a, b, kind) in enumerate(rows):
        y0 = title_h + i * row_h
        if i:
            draw.line([(pad, y0 + 2), (sheet_w - pad, y0 + 2)], fill=(55, 58, 66), width=1)
        if b is None:
            draw_identity(a, pad, y0, f"pid {a:04d}")
            continue
        draw_identity(a, pad, y0, f"pid {a:04d}")
        draw_identity(b, pad + half_w + 3 * pad, y0, f"pid {b:04d}  -  near-twin of {a:04d}, differs in: {kind}")
        xm = pad + half_w + int(1.5 * pad)
        draw.line([(xm, y0 + head), (xm, y0 + head + th)], fill=(200, 120, 60), width=2)
    y = sheet_h - legend_h - pad // 2
    x = pad
    for label, name in enumerate(PART_NAMES):
        col = tuple(int(c) for c in PART_COLORS[label]) if label else (70, 72, 78)
        draw.rectangle([x, y + 10, x + 18, y + 28], fill=col)
        draw.text((x + 24, y + 12), f"{label} {name}", fill=_FG, font=f_row)
        x += 24 + int(draw.textlength(f"{label} {name}", font=f_row)) + 22
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
