"""ONNX Runtime inference engine for exported SCWM models, with input decoding and checking.

Preprocessing goes through :func:`scwm.data.transforms.preprocess`, the trainer's evaluation transform,
so the served embeddings equal the trainer's for the same image. Accepted inputs (:data:`ImageInput`):
a file path (``str`` / ``os.PathLike``), encoded image ``bytes``, a ``PIL.Image`` of any mode, or a
``uint8`` numpy array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``. Grayscale and
RGBA are converted to RGB (alpha dropped, as :func:`scwm.data.images.load_image` does). Anything else
raises ``TypeError`` (unsupported type) or ``ValueError`` (bad dtype, shape, data or file).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError

from scwm.data.images import load_image
from scwm.data.transforms import preprocess
from scwm.models.checkpoint import ModelSpec

__all__ = ["ImageInput", "OnnxEngine", "OUTPUT_NAMES", "INPUT_NAME", "META_PREFIX", "to_pil",
           "select_providers", "read_metadata", "resolve_precision", "resolve_model_path", "PRECISION_ENV",
           "PRECISION_CHOICES", "PRECISION_HELP", "sibling_problem"]

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray
INPUT_NAME = "images"
OUTPUT_NAMES = ("global_feat", "part_feats", "part_probs")
META_PREFIX = "scwm."
log = logging.getLogger(__name__)
# Providers tried in this order when the caller does not choose; only those ORT lists are requested,
# so a CPU-only machine never sees "provider not available" warnings.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def select_providers(providers: Sequence[str] | None = None) -> list[str]:
    """Providers to request: ``providers`` if all are available (else ``ValueError``), otherwise CUDA
    when ONNX Runtime lists it, then CPU."""
    available = ort.get_available_providers()
    if providers is None:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
        return chosen or ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"execution provider(s) {missing} not available in this onnxruntime build; "
                         f"available: {available}")
    if not providers:
        raise ValueError("providers must not be empty (pass None to choose automatically)")
    return list(providers)


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ValueError(f"image array must have dtype uint8 (values 0..255), got {arr.dtype}; "
                         "convert floats with (x * 255).round().astype(np.uint8)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        mode = "L"
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        mode = "RGB" if arr.shape[2] == 3 else "RGBA"
    else:
        raise ValueError(f"image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image array is empty (shape {arr.shape})")
    return Image.fromarray(np.ascontiguousarray(arr), mode=mode).convert("RGB")


def _from_bytes(data: bytes) -> Image.Image:
    if len(data) == 0:
        raise ValueError("image bytes are empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode == "P" and "transparency" in img.info:
                return img.convert("RGBA").convert("RGB")
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"image bytes ({len(data)} bytes) are not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image bytes ({len(data)} bytes) could not be decoded: {exc}") from None


def to_pil(image: ImageInput) -> Image.Image:
    """Decode/convert any accepted input to an RGB ``PIL.Image`` (see the module docstring)."""
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"PIL image is empty (size {image.size})")
        try:
            if image.mode == "P" and "transparency" in image.info:
                return image.convert("RGBA").convert("RGB")
            return image if image.mode == "RGB" else image.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot convert PIL image of mode {image.mode!r} to RGB: {exc}") from None
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(image))
    if isinstance(image, (str, os.PathLike)):
        if isinstance(image, str) and not image:
            raise ValueError("image path is an empty string")
        return load_image(image)  # ImageLoadError (a ValueError) names the file
    raise TypeError(f"unsupported image input of type {type(image).__name__}; expected a path, bytes, "
                    "a PIL.Image or an HxWx3 uint8 numpy array")


def read_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict (custom_metadata_map)."""
    return dict(session.get_modelmeta().custom_metadata_map)


PRECISION_ENV = "SCWM_PRECISION"
PRECISION_CHOICES = ("auto", "fp32", "int8")
PRECISION_HELP = ("auto: on the CPU provider alone, the model's int8-static sibling (model.int8-static.onnx, about 2x "
                  "fp32, docs/bench/int8.md) when it exists with its recipe metadata, else the file given; fp32: the "
                  "file given; int8: the sibling, CPU only, an error if it is missing")
INT8_TAG = "int8-static"  # serving.export's variant_path: model.onnx -> model.int8-static.onnx
QUANT_KEY = "quantization"  # metadata of serving.export's int8-static recipe (scwm.quantization)
_EXPORT_HINT = "python -m serving.export --checkpoint CKPT --out {}"
_CPU_ONLY = ["CPUExecutionProvider"]


def resolve_precision(precision: str | None = None) -> str:
    """``precision``, else ``$SCWM_PRECISION``, else ``auto``; a ``ValueError`` for anything but ``auto|fp32|int8``
    (naming the variable and its value when the value came from there)."""
    if precision is None:
        raw = os.environ.get(PRECISION_ENV, "").strip()
        if raw and raw not in PRECISION_CHOICES:
            raise ValueError(f"{PRECISION_ENV}={raw!r} is not a serving precision; set it to one of "
                             f"{'|'.join(PRECISION_CHOICES)} or unset it (auto)")
        return raw or "auto"
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {'|'.join(PRECISION_CHOICES)}, got {precision!r}")
    return precision


def _metadata_props(path: Path) -> dict[str, str]:
    import onnx  # only the metadata is read here; ORT opens the file served later

    return {p.key: p.value for p in onnx.load_model(str(path), load_external_data=False).metadata_props}


def sibling_problem(sibling: Path, path: Path) -> str | None:
    """Why ``sibling`` cannot be served as the int8-static model of ``path`` (None if it can): it cannot be read,
    it lacks the ``scwm.quantization`` metadata of serving.export's recipe (an older, slower export), or it was
    exported from another model (``scwm.fp32_fingerprint`` is not ``path``'s fingerprint; siblings written before
    that key must come from the same export as ``path``: ``scwm.exported_at``), e.g. left by an earlier export."""
    props = []
    for f in (sibling, path):
        try:
            props.append(_metadata_props(f))
        except Exception as exc:  # protobuf and file errors
            return f"{f} cannot be read ({exc})"
    meta, own = props
    if f"{META_PREFIX}{QUANT_KEY}" not in meta:
        return (f"{sibling} lacks the '{META_PREFIX}{QUANT_KEY}' metadata of serving.export's int8-static recipe "
                "(an older, slower export)")
    link, p = f"{META_PREFIX}fp32_fingerprint", META_PREFIX
    key, theirs, ours = (("fp32_fingerprint", meta[link], own.get(f"{p}fingerprint")) if link in meta
                         else ("exported_at", meta.get(f"{p}exported_at"), own.get(f"{p}exported_at")))
    if theirs != ours:
        return (f"{sibling} was exported from another model than {path} ({key} {str(theirs)[:25]}, "
                f"{path.name}: {str(ours)[:25]})")
    return None


def resolve_model_path(model_path: str | os.PathLike[str], providers: Sequence[str],
                       precision: str | None = None) -> Path:
    """The file to serve for ``model_path`` (``precision``, else ``$SCWM_PRECISION``, else ``auto``).

    ``auto``: on the CPU provider alone, the int8-static sibling ``model.int8-static.onnx`` when it exists,
    carries the recipe metadata (``scwm.quantization``) and comes from the same model (:func:`sibling_problem`),
    about 2x fp32 at batch 32 on AVX2 (docs/bench/int8.md); else (no sibling, an older sibling without the metadata,
    another model's, a GPU provider) ``model_path``. ``fp32``: ``model_path`` itself, whatever its precision.
    ``int8`` (CPU provider alone): the sibling (``model_path`` itself if it is that file); a ``ValueError`` saying
    how to write it if it is missing, old or another model's. The sibling has its own
    fingerprint, so an index is opened at the precision it was built with
    (:func:`serving.manifest.index_precision`)."""
    path = Path(model_path)
    mode = resolve_precision(precision)
    cpu_only = list(providers) == _CPU_ONLY
    if mode == "fp32" or (mode == "auto" and not cpu_only):
        return path
    if not cpu_only:
        raise ValueError(f"precision int8 serves the int8-static model on the CPU provider alone, not on "
                         f"{list(providers)}; pass providers=['CPUExecutionProvider'] or use precision fp32")
    suffix = f".{INT8_TAG}{path.suffix}"
    if path.name.endswith(suffix):
        return path
    sibling = path.with_name(f"{path.stem}{suffix}")
    if mode == "auto" and not sibling.is_file():
        return path
    if not sibling.is_file():
        raise ValueError(f"precision int8 serves {sibling}, which does not exist; write it next to {path} with "
                         f"`{_EXPORT_HINT.format(path)}` (it writes the sibling unless --no-int8), or serve fp32")
    problem = sibling_problem(sibling, path)
    if problem and mode == "auto":
        log.warning("%s; serving %s", problem, path)
        return path
    if problem:
        raise ValueError(f"precision int8 cannot serve it: {problem}; rewrite it with `{_EXPORT_HINT.format(path)}`")
    return sibling


class OnnxEngine:
    """Runs an exported SCWM ONNX model; ``embed`` maps images to ``global_feat`` (N, D),
    ``part_feats`` (N, P, D) and ``part_probs`` (N, K, h, w).

    ``providers``: ONNX Runtime execution providers (default: CUDA if available, else CPU).
    ``intra_op_threads`` / ``inter_op_threads``: thread pool sizes (None = ORT default).
    ``optimization``: graph optimisation level, one of ``disable|basic|extended|all``.
    ``session_config``: extra ORT session config entries, e.g. ``{"session.intra_op.allow_spinning": "0"}``
    to stop idle worker threads from spinning (kinder to other work on a small machine).
    ``precision`` (else ``$SCWM_PRECISION``, else ``auto``): ``auto`` serves the int8-static sibling on the CPU
    provider alone when it exists with its recipe metadata, else ``model_path``; ``fp32`` serves ``model_path``
    itself; ``int8`` the sibling on the CPU provider alone (providers default to CPU then), an error if it is
    missing (see :func:`resolve_model_path`). ``requested_path`` / ``requested_precision`` are what was asked for;
    ``model_path`` is the file served, ``precision`` the mode in effect (``int8``: the sibling, ``fp32``: the
    file given) and ``served_precision`` the precision in its metadata (``fp32``, ``fp16``, ``int8-static``, ...).
    ``InferenceSession.run`` is thread-safe and the engine holds no other mutable state, so one
    engine may be shared by several threads.
    """

    def __init__(self, model_path: str | os.PathLike[str], providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                 optimization: str = "all", log_severity: int = 3,
                 session_config: dict[str, str] | None = None, precision: str | None = None) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"ONNX model not found: {path}")
        self.requested_path = path
        if optimization not in _OPT_LEVELS:
            raise ValueError(f"optimization must be one of {sorted(_OPT_LEVELS)}, got {optimization!r}")
        for name, val in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
            if val is not None and (not isinstance(val, int) or val < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {val!r}")
        self.requested_precision = resolve_precision(precision)
        self.providers = select_providers(_CPU_ONLY if providers is None and self.requested_precision == "int8"
                                          else providers)
        path = resolve_model_path(path, self.providers, self.requested_precision)
        self.model_path = path
        # the mode in effect: int8 = the int8-static sibling (asked for, or chosen by auto), fp32 = the file given
        self.precision = "int8" if self.requested_precision == "int8" or path != self.requested_path else "fp32"
        so = ort.SessionOptions()
        so.log_severity_level = log_severity
        so.graph_optimization_level = _OPT_LEVELS[optimization]
        if intra_op_threads is not None:
            so.intra_op_num_threads = intra_op_threads
        if inter_op_threads is not None:
            so.inter_op_num_threads = inter_op_threads
        for key, value in (session_config or {}).items():
            so.add_session_config_entry(str(key), str(value))
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise ValueError(f"cannot load ONNX model {path}: {exc}") from exc
        self.providers = list(self.session.get_providers())  # what ORT actually uses
        self.metadata = read_metadata(self.session)
        if f"{META_PREFIX}spec" not in self.metadata:
            raise ValueError(f"{path} has no scwm metadata (key '{META_PREFIX}spec'); "
                             "export it with `python -m serving.export`")
        if self.precision == "int8" and f"{META_PREFIX}{QUANT_KEY}" not in self.metadata:
            fp32 = path.with_name(path.name.replace(f".{INT8_TAG}", ""))
            raise ValueError(f"{path} lacks the '{META_PREFIX}{QUANT_KEY}' metadata of serving.export's int8-static "
                             f"recipe (an older, slower export); rewrite it with `{_EXPORT_HINT.format(fp32)}`")
        self.spec = ModelSpec.from_dict(json.loads(self.metadata[f"{META_PREFIX}spec"]))
        self.served_precision = self.metadata.get(f"{META_PREFIX}precision", "fp32")
        self.fingerprint = self.metadata.get(f"{META_PREFIX}fingerprint", "")
        self.embedding_size = int(self.metadata.get(f"{META_PREFIX}embedding_size", "0"))
        self.part_names: list[str] = list(self.spec.part_names)
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        outs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in OUTPUT_NAMES if n not in outs]
        if missing:
            raise ValueError(f"{path} lacks output(s) {missing}; outputs are {outs}")

    @property
    def config(self) -> dict[str, Any] | None:
        """The training config stored at export time, if any."""
        raw = self.metadata.get(f"{META_PREFIX}config")
        return json.loads(raw) if raw else None

    def preprocess(self, image: ImageInput) -> np.ndarray:
        """One image -> float32 ``(3, H, W)`` exactly as the trainer's evaluation transform."""
        s = self.spec
        return preprocess(to_pil(image), s.height, s.width, s.mean, s.std)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on a preprocessed float32 batch ``(N, 3, H, W)``."""
        s = self.spec
        if batch.ndim != 4 or batch.shape[1:] != (3, s.height, s.width):
            raise ValueError(f"batch must have shape (N, 3, {s.height}, {s.width}), got {batch.shape}")
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=self._input_dtype)}
        outs = self.session.run(list(OUTPUT_NAMES), feed)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(OUTPUT_NAMES, outs, strict=True)}

    def embed(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32) -> dict[str, np.ndarray]:
        """Embed one image or a list of images; always returns batched arrays (N first)."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("no images given")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, len(items), batch_size):
            batch = np.stack([self.preprocess(im) for im in items[start:start + batch_size]])
            chunks.append(self.run(batch))
        if len(chunks) == 1:
            return chunks[0]
        return {n: np.concatenate([c[n] for c in chunks]) for n in OUTPUT_NAMES}

    def __repr__(self) -> str:
        return (f"OnnxEngine({str(self.model_path)!r}, providers={self.providers}, "
                f"backbone={self.spec.backbone}, input={self.spec.height}x{self.spec.width})")
