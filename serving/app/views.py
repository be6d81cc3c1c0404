"""How the app shows things: part colours and legend, image tiles with part overlays, result captions and
frames, the model/gallery panel and the results as JSON. No Gradio here."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from serving.app.demo import DEMO_SOURCE
from serving.retriever import Hit, Retriever, upsample_labels

__all__ = ["VIEW_MODES", "MATCH_RGB", "MISMATCH_RGB", "part_colors", "legend_html", "colorize", "render_view",
           "is_match", "caption", "hits_json", "model_info_markdown", "public_name", "redact_paths"]

VIEW_MODES = ("Overlay", "Parts", "Image")
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 99, 71),    # tomato
    (65, 105, 225),   # royal blue
    (255, 193, 7),    # amber
    (46, 204, 113),   # emerald
    (186, 85, 211),   # orchid
    (0, 188, 212),    # cyan
    (255, 112, 166),  # pink
    (141, 110, 99),   # brown
    (156, 204, 101),  # lime
)
BACKGROUND_RGB = (38, 42, 51)
MATCH_RGB = (34, 197, 94)
MISMATCH_RGB = (239, 68, 68)


def part_colors(num_labels: int) -> list[tuple[int, int, int]]:
    """RGB colour of each label; foreground parts cycle through the palette, the background (last) is dark."""
    return [PALETTE[i % len(PALETTE)] for i in range(num_labels - 1)] + [BACKGROUND_RGB]


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def _chip(rgb: tuple[int, int, int], text: str, frame: bool = False) -> str:
    r, g, b = rgb
    style = f"border:3px solid rgb({r},{g},{b}); background:transparent" if frame else f"background:rgb({r},{g},{b})"
    return f'<span class="scwm-chip"><span class="scwm-swatch" style="{style}"></span>{html.escape(text)}</span>'


def legend_html(part_names: Sequence[str], ground_truth: bool = False) -> str:
    """A row of colour swatches with the part names (background last, as in the model metadata); with
    ``ground_truth`` also the key of the match frames."""
    chips = [_chip(c, _pretty(n)) for n, c in zip(part_names, part_colors(len(part_names)), strict=True)]
    out = f'<div class="scwm-legend"><span class="scwm-legend-title">Parts</span>{"".join(chips)}'
    if ground_truth:
        out += ('<span class="scwm-legend-title scwm-gap">Frame</span>' + _chip(MATCH_RGB, "same person", True)
                + _chip(MISMATCH_RGB, "different person", True))
    return out + "</div>"


def colorize(labels: np.ndarray, num_labels: int) -> np.ndarray:
    """(H, W) label map -> (H, W, 3) uint8 colour image."""
    lut = np.array(part_colors(num_labels), dtype=np.uint8)
    return lut[np.clip(labels, 0, num_labels - 1)]


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has a different label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def render_view(image: Image.Image, labels: np.ndarray, num_labels: int, mode: str = "Overlay",
                alpha: float = 0.55, height: int = 256, border: tuple[int, int, int] | None = None,
                max_width: int = 512) -> Image.Image:
    """Display tile: the image, its part overlay, or the part mask, resized to ``height`` (aspect kept).

    Foreground parts are blended with ``alpha`` over the image and outlined; the background is dimmed.
    ``border`` adds a coloured frame (e.g. green for a true match)."""
    if mode not in VIEW_MODES:
        raise ValueError(f"mode must be one of {VIEW_MODES}, got {mode!r}")
    w0, h0 = image.size
    width = max(1, min(max_width, round(height * w0 / max(h0, 1))))
    base = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    lab = upsample_labels(labels, height, width)
    if mode == "Image":
        out = base
    elif mode == "Parts":
        out = colorize(lab, num_labels).astype(np.float32)
    else:
        a = float(np.clip(alpha, 0.0, 1.0))
        color = colorize(lab, num_labels).astype(np.float32)
        fg = (lab < num_labels - 1)[..., None]
        out = np.where(fg, (1 - a) * base + a * color, base * (1 - 0.45 * a))
        edge = _boundaries(lab) & (lab < num_labels - 1)
        out[edge] = 0.25 * out[edge] + 0.75 * color[edge]
    tile = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if border is not None:
        pad = max(3, height // 48)
        tile = ImageOps.expand(tile.crop((pad, pad, width - pad, height - pad)), border=pad, fill=border)
    return tile


def is_match(hit: Hit, q_pid: int | None) -> bool | None:
    """True/False when both identities are known (pid >= 0), else None."""
    if q_pid is None or hit.pid is None or q_pid < 0 or hit.pid < 0:
        return None
    return hit.pid == q_pid


def caption(hit: Hit, q_pid: int | None, q_cam: int | None) -> str:
    """E.g. ``#1 · 0.93 · pid 12 · cam 3 · ✓``."""
    parts = [f"#{hit.rank}", f"{hit.score:.2f}"]
    if hit.pid is not None:
        parts.append("distractor" if hit.pid == 0 else "junk" if hit.pid < 0 else f"pid {hit.pid}")
    if hit.camera is not None:
        parts.append(f"cam {hit.camera}")
    match = is_match(hit, q_pid)
    if match is not None:
        parts.append(("✓ same cam" if q_cam is not None and hit.camera == q_cam else "✓") if match else "✗")
    if hit.pid is None and hit.camera is None:
        parts.append(Path(hit.path).name)
    return " · ".join(parts)


def public_name(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """How the page names a server file: relative to ``base`` when inside it, else just the file name (never an
    absolute path)."""
    p = Path(path)
    if base is not None:
        try:
            rel = Path(os.path.abspath(p)).relative_to(os.path.abspath(base))
        except ValueError:
            rel = None
        if rel is not None:
            return rel.as_posix() if rel.parts else "."
    if not p.is_absolute() and ".." not in p.parts:
        return p.as_posix()
    return p.name or "."


# an absolute path (two components or more) not preceded by a word, a dot, a colon (URLs) or another slash
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/`'\"()<>\[\]{},;|*]+/)+(?=[^\s/`'\"()<>\[\]{},;|*])")


def redact_paths(text: str, root: str | os.PathLike[str] | None = None) -> str:
    """``text`` (e.g. an error message) for the page: paths under ``root`` made relative, other absolute paths
    cut to their last component (``…/name``)."""
    if root is not None:
        for r in {os.path.abspath(root), os.path.realpath(root)}:
            text = text.replace(r.rstrip("/") + "/", "")
    return _ABS_PATH.sub("…/", text)


def hits_json(hits: Sequence[Hit], q_pid: int | None) -> list[dict[str, Any]]:
    """Results as plain dicts (for the JSON panel and API clients); ``image`` is the file name only."""
    out = []
    for h in hits:
        d = h.to_dict()
        # a "path" key would make Gradio treat the dict as a file to transfer; no server paths on the page
        d["image"] = Path(d.pop("path")).name
        d["match"] = is_match(h, q_pid)
        out.append(d)
    return out


def model_info_markdown(retriever: Retriever, root: str | os.PathLike[str] | None = None) -> str:
    """Model and gallery facts as a Markdown table; the index directory is named relative to ``root`` and the
    model relative to the index directory (else by file name)."""
    info = retriever.info()
    model, m = info["model"], info["index"]
    meta, spec = model["metadata"], model["spec"]
    items = retriever.gallery_items
    pids = {it.get("pid") for it in items if it.get("pid") is not None and it.get("pid") > 0}
    cams = {it.get("camera") for it in items if it.get("camera") is not None}
    source = meta.get("scwm.source_checkpoint", "?")
    if source == DEMO_SOURCE:
        source = "**untrained demo model (random weights)**"
    elif source != "?":
        source = f"`{public_name(source, root)}`"
    index_dir = m["directory"]
    rows = [
        ("Model file", f"`{public_name(model['path'], index_dir)}`"),
        ("Model version", f"scwm {meta.get('scwm.version', spec['version'])} · "
                          f"exported {meta.get('scwm.exported_at', '?')}"),
        ("Trained from", source),
        ("Fingerprint", f"`{model['fingerprint'][:16]}`"),
        ("Backbone · input", f"{spec['backbone']} · {spec['height']}×{spec['width']} (H×W)"),
        ("Embedding size", str(model["embedding_size"])),
        ("Parts", f"{spec['num_parts'] - 1} + background: {', '.join(_pretty(n) for n in spec['part_names'])}"),
        ("Precision", meta.get("scwm.precision", "fp32")),
        ("Gallery", f"{m['count']:,} images" + (f" · {len(pids):,} identities · {len(cams)} cameras" if pids else "")),
        ("Index", f"{m.get('index_type', '?')} (factory `{m.get('factory', '?')}`, {m.get('metric', '?')})"
                  + (" on GPU" if m["on_gpu"] else " on CPU")),
        ("Index directory", f"`{public_name(index_dir, root)}`" if index_dir else "in memory"),
        ("Providers", ", ".join(model["providers"])),
    ]
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"| Property | Value |\n|---|---|\n{body}"

