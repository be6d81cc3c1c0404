"""Helpers for the Gradio demo (``app.py``): part overlays and legend, input checks, captions, info panels,
finding artifacts and building a demo gallery. Nothing here imports Gradio, so it is testable on its own."""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from serving.index import parse_market_name
from serving.retriever import Hit, Retriever, upsample_labels

__all__ = ["MAX_PIXELS", "VIEW_MODES", "MATCH_RGB", "MISMATCH_RGB", "DEMO_SOURCE", "part_colors", "legend_html",
           "colorize", "render_view", "check_image", "is_match", "caption", "exclude_junk", "example_queries",
           "dataset_roots", "model_info_markdown", "missing_artifacts_markdown", "find_checkpoints",
           "is_untrained_demo", "ParseCache", "build_demo", "DemoPlan", "plan_demo", "hits_json"]

MAX_PIXELS = 50_000_000
VIEW_MODES = ("Overlay", "Parts", "Image")
DEMO_SOURCE = "untrained-demo"
# Colour-blind-friendly, high-contrast part colours (background is always the last label).
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


# ------------------------------------------------------------------------------------------- colours
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


# ------------------------------------------------------------------------------------------ inputs
def check_image(path: str | os.PathLike[str] | None, max_pixels: int = MAX_PIXELS,
                ) -> tuple[Image.Image | None, str | None]:
    """Decode an uploaded file to RGB, or return ``(None, readable reason)``; the size is checked from the
    header before any pixels are decoded."""
    if path is None or str(path) == "":
        return None, "Upload a query image or pick one of the examples."
    p = Path(path)
    name = p.name
    if not p.is_file():
        return None, f"The uploaded file {name} could not be found; please upload it again."
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > max_pixels:
                return None, (f"{name} is {w}×{h} = {w * h / 1e6:.1f} megapixels; images over "
                              f"{max_pixels / 1e6:.0f} megapixels are refused. Crop the person first.")
            if w == 0 or h == 0:
                return None, f"{name} is empty ({w}×{h})."
            im.load()
            rgb = im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "RGBA") else im.convert("RGB")
    except UnidentifiedImageError:
        return None, f"{name} is not an image (expected JPEG, PNG, WebP, BMP, ...)."
    except Image.DecompressionBombError:
        return None, f"{name} is far too large to decode; images over {max_pixels / 1e6:.0f} megapixels are refused."
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return None, f"{name} could not be decoded ({exc})."
    return rgb, None


# -------------------------------------------------------------------------------------- results
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


def exclude_junk(hits: Sequence[Hit], q_pid: int | None, q_cam: int | None, k: int) -> list[Hit]:
    """Market protocol: drop gallery images of the query's identity from the query's camera (and pid -1
    junk), then keep ``k`` and renumber the ranks."""
    if q_pid is None or q_pid < 0:
        return list(hits[:k])
    keep = [h for h in hits if not (h.pid is not None and (h.pid < 0 or (h.pid == q_pid and h.camera == q_cam)))]
    return [replace(h, rank=i + 1) for i, h in enumerate(keep[:k])]


def dataset_roots(items: Sequence[dict[str, Any]]) -> list[Path]:
    """Folders the gallery images live in (their Market root when they sit in ``bounding_box_test``)."""
    roots: dict[Path, None] = {}
    for it in items:
        parent = Path(it["path"]).parent
        roots[parent.parent if parent.name == "bounding_box_test" else parent] = None
    return list(roots)


def example_queries(items: Sequence[dict[str, Any]], n: int = 8) -> list[Path]:
    """Up to ``n`` example queries: images of distinct gallery identities from a sibling ``query/`` folder
    (Market layout), else gallery images of distinct identities."""
    gallery_pids = {it.get("pid") for it in items if it.get("pid") is not None and it.get("pid") > 0}
    candidates: list[Path] = []
    for root in dataset_roots(items)[:4]:
        qdir = root / "query"
        if qdir.is_dir():
            candidates.extend(sorted(p for p in qdir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
    if not candidates:
        candidates = [Path(it["path"]) for it in items]
    distinct: list[Path] = []
    seen: set[int | None] = set()
    for p in candidates:
        pid, _ = parse_market_name(p)
        if pid is not None and (pid in seen or (gallery_pids and pid not in gallery_pids)):
            continue
        seen.add(pid)
        distinct.append(p)
    if not distinct:
        return []
    # spread over the whole set rather than the first few identities
    idx = np.unique(np.linspace(0, len(distinct) - 1, num=min(n, len(distinct))).round().astype(int))
    return [distinct[i] for i in idx if distinct[i].is_file()]


class ParseCache:
    """Bounded cache of gallery part label maps (by item id), parsed in batches."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._data: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, retriever: Retriever, hits: Sequence[Hit]) -> list[tuple[Image.Image, np.ndarray]]:
        """(image, label map at the image's size) for each hit."""
        images = [Image.open(h.path).convert("RGB") for h in hits]
        with self._lock:
            cached = {h.item_id: self._data[h.item_id] for h in hits if h.item_id in self._data}
        todo = [i for i, h in enumerate(hits) if h.item_id not in cached]
        if todo:
            probs = retriever.engine.embed([images[i] for i in todo])["part_probs"]
            for j, i in enumerate(todo):
                im = images[i]
                cached[hits[i].item_id] = upsample_labels(probs[j].argmax(axis=0).astype(np.int64), im.height,
                                                          im.width)
            with self._lock:
                for i in todo:
                    self._data[hits[i].item_id] = cached[hits[i].item_id]
                while len(self._data) > self.capacity:
                    self._data.popitem(last=False)
        return [(images[i], cached[h.item_id]) for i, h in enumerate(hits)]


# ------------------------------------------------------------------------------------------ panels
def is_untrained_demo(retriever: Retriever) -> bool:
    """Whether the model is the randomly initialised demo model made by :func:`build_demo`."""
    return retriever.engine.metadata.get("scwm.source_checkpoint") == DEMO_SOURCE


def model_info_markdown(retriever: Retriever) -> str:
    """Model and gallery facts as a Markdown table."""
    eng, idx = retriever.engine, retriever.index
    meta, spec, m = eng.metadata, eng.spec, idx.manifest
    pids = {it.get("pid") for it in idx.items if it.get("pid") is not None and it.get("pid") > 0}
    cams = {it.get("camera") for it in idx.items if it.get("camera") is not None}
    source = meta.get("scwm.source_checkpoint", "?")
    if source == DEMO_SOURCE:
        source = "**untrained demo model (random weights)**"
    rows = [
        ("Model file", f"`{eng.model_path}`"),
        ("Model version", f"scwm {meta.get('scwm.version', spec.version)} · "
                          f"exported {meta.get('scwm.exported_at', '?')}"),
        ("Trained from", source),
        ("Fingerprint", f"`{eng.fingerprint[:16]}`"),
        ("Backbone · input", f"{spec.backbone} · {spec.height}×{spec.width} (H×W)"),
        ("Embedding size", str(eng.embedding_size)),
        ("Parts", f"{spec.num_parts - 1} + background: {', '.join(_pretty(n) for n in spec.part_names)}"),
        ("Precision", meta.get("scwm.precision", "fp32")),
        ("Gallery", f"{idx.count:,} images" + (f" · {len(pids):,} identities · {len(cams)} cameras" if pids else "")),
        ("Index", f"{m.get('index_type', '?')} (factory `{m.get('factory', '?')}`, {m.get('metric', '?')})"
                  + (" on GPU" if idx.on_gpu else " on CPU")),
        ("Index directory", f"`{idx.directory}`"),
        ("Providers", ", ".join(eng.providers)),
    ]
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"| Property | Value |\n|---|---|\n{body}"


def find_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Trained models ``runs/*/model.pt`` under ``root``, newest first."""
    runs = Path(root) / "runs"
    found = [p for p in runs.glob("*/model.pt") if p.is_file()] if runs.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def missing_artifacts_markdown(index_dir: str | os.PathLike[str], error: str | None, plan: DemoPlan) -> str:
    """What is missing and the exact commands that create it."""
    ckpt = plan.checkpoint or Path("runs/synthetic/model.pt")
    lines = ["## No gallery index to search yet", ""]
    if error:
        lines += [f"Could not open `{index_dir}`: {error}", ""]
    lines += [
        "Create the artifacts with these commands (from the project root), then reload this page:",
        "",
        "```bash",
        "python -m training.run                                   # train SCWM (synthetic world, ~15 min on CPU)",
        f"python -m serving.export --checkpoint {ckpt}   # -> exports/model.onnx",
        "python -m serving.index build --model exports/model.onnx \\",
        "    --images data/synthetic/market-seed0/bounding_box_test --out exports/index",
        "```",
        "",
        f"Or build a demo gallery now with one click: **{plan.description}**",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- demo
@dataclass(frozen=True)
class DemoPlan:
    """What the one-click demo build will do."""

    checkpoint: Path | None  # a trained checkpoint to export, or None for the untrained demo model
    model_out: Path
    index_out: Path
    images: Path | None  # a Market-layout root to index, or None to generate the tiny synthetic world
    description: str


def _checkpoint_data_root(checkpoint: Path, root: Path) -> Path | None:
    from scwm.models.checkpoint import CheckpointError, read_checkpoint

    try:
        config = read_checkpoint(checkpoint).get("config") or {}
    except CheckpointError:
        return None
    data = config.get("data", {}) if isinstance(config, dict) else {}
    raw = data.get("root") if isinstance(data, dict) else None
    if not raw:
        return None
    path = Path(raw) if Path(raw).is_absolute() else root / raw
    return path if (path / "bounding_box_test").is_dir() else None


def plan_demo(root: str | os.PathLike[str]) -> DemoPlan:
    """Export + index the newest trained checkpoint if there is one, else an untrained demo model on the
    tiny synthetic world (in ``exports/demo``)."""
    root = Path(root)
    ckpts = find_checkpoints(root)
    if ckpts:
        ckpt = ckpts[0]
        data = _checkpoint_data_root(ckpt, root)
        where = f"{data.relative_to(root) if data.is_relative_to(root) else data}/bounding_box_test" if data \
            else "a tiny generated synthetic world"
        return DemoPlan(ckpt, root / "exports/model.onnx", root / "exports/index", data,
                        f"export {ckpt.relative_to(root)} and index {where}")
    return DemoPlan(None, root / "exports/demo/model.onnx", root / "exports/demo/index", None,
                    "generate the tiny synthetic world and index it with an UNTRAINED demo model "
                    "(random weights: the results and parts are not meaningful)")


def untrained_model(spec: Any, images: Sequence[Path]) -> Any:
    """Random network whose BatchNorm statistics come from real images (so embeddings spread out)."""
    import torch

    from scwm.data.images import load_image
    from scwm.data.transforms import preprocess

    torch.manual_seed(0)
    net = spec.build()
    for mod in net.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.momentum = 1.0
    x = torch.from_numpy(np.stack([preprocess(load_image(p), spec.height, spec.width) for p in images]))
    net.train()
    with torch.no_grad():
        net(x)
    return net.eval()


def build_demo(plan: DemoPlan, root: str | os.PathLike[str],
               progress: Callable[[float, str], None] | None = None, height: int = 128, width: int = 64) -> Path:
    """Carry out ``plan``: generate data if needed, export the model (unless a valid one exists), build the
    index. Returns the index directory. ``height``/``width`` size the untrained model only."""
    from scwm.data.synthetic.writer import generate
    from serving import export as ex
    from serving import index as ix
    from serving.engine import OnnxEngine

    def say(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    root = Path(root)
    data = plan.images
    if data is None:
        say(0.05, "generating the tiny synthetic world")
        data = generate("tiny", root / "data/synthetic/tiny-seed0", seed=0, progress=False)
    engine = None
    if plan.model_out.is_file():
        try:
            engine = OnnxEngine(plan.model_out)
        except ValueError:
            engine = None
    if engine is None:
        say(0.3, "exporting the model to ONNX (verified against PyTorch)")
        if plan.checkpoint is not None:
            ex.export_checkpoint(plan.checkpoint, plan.model_out)
        else:
            from scwm.models import ModelSpec

            spec = ModelSpec(backbone="resnet18", num_parts=4, height=height, width=width)
            train = sorted((Path(data) / "bounding_box_train").glob("*.jpg"))[:32]
            ex.export_model(untrained_model(spec, train), spec, plan.model_out, source=DEMO_SOURCE,
                            config={"demo": "untrained random weights"})
        engine = OnnxEngine(plan.model_out)
    say(0.6, "embedding and indexing the gallery")
    ix.build_index(engine, [data], plan.index_out, overwrite=(plan.index_out / ix.MANIFEST).is_file(),
                   progress=False)
    say(1.0, "done")
    return plan.index_out


def hits_json(hits: Sequence[Hit], q_pid: int | None) -> list[dict[str, Any]]:
    """Results as plain dicts (for the JSON panel and API clients)."""
    out = []
    for h in hits:
        d = h.to_dict()
        # a "path" key would make Gradio treat the dict as a file to transfer
        d["image"] = d.pop("path")
        d["match"] = is_match(h, q_pid)
        out.append(d)
    return out
