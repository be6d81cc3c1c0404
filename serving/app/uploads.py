"""Checking and decoding an uploaded query image (:func:`check_image`): every limit is checked from the file size
and the image header before any pixel is decoded, so a hostile upload costs a message, not the server. No Gradio
here."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

__all__ = ["MAX_UPLOAD_BYTES", "MAX_PIXELS", "MAX_DECODED_BYTES", "MAX_ASPECT", "UploadCheck", "check_image"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # also given to Gradio as launch(max_file_size=...)
MAX_PIXELS = 50_000_000
MAX_DECODED_BYTES = 200_000_000  # the decoded first frame in its own mode (e.g. 50 MP RGBA)
MAX_ASPECT = 10.0  # longer side / shorter side; a person crop is about 2

_EXIF_ORIENTATION = 0x0112
# What PIL raises from inside its decoders for truncated, corrupt or unsupported data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


class UploadCheck(NamedTuple):
    """The decoded RGB image, or ``None`` and ``error`` (a readable reason); ``notes`` say what was changed."""

    image: Image.Image | None
    error: str | None
    notes: tuple[str, ...] = ()


def _looks_like_svg(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return path.suffix.lower() in (".svg", ".svgz") or head.startswith(b"<?xml") or b"<svg" in head


def _decoded_bytes(mode: str, pixels: int) -> int:
    try:
        desc = ImageMode.getmode(mode)
        per_band = int(desc.typestr[-1])
        return pixels * len(desc.bands) * per_band
    except (KeyError, ValueError):
        return pixels * 4


def _to_rgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """RGB copy of a decoded image and a note when the conversion loses something worth saying."""
    mode = im.mode
    if mode == "RGB":
        return im.copy(), None
    if mode.startswith("I;16"):
        gray = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB"), "converted from 16-bit to 8-bit RGB"
    if mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        if mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255.0:
            arr = arr * (255.0 / (65535.0 if top <= 65535.0 else top))
        gray = np.clip(arr, 0, 255).astype(np.uint8)
        bits = "32-bit float" if mode == "F" else "32-bit integer"
        return Image.fromarray(gray).convert("RGB"), f"converted from {bits} to 8-bit RGB"
    if mode in ("P", "PA", "LA", "RGBA", "RGBa", "La"):
        return im.convert("RGBA").convert("RGB"), None  # transparency dropped, as in training
    note = f"converted from {mode} to RGB" if mode in ("CMYK", "YCbCr", "LAB", "HSV") else None
    return im.convert("RGB"), note


def check_image(path: str | os.PathLike[str] | None, max_pixels: int = MAX_PIXELS,
                max_bytes: int = MAX_UPLOAD_BYTES, max_aspect: float = MAX_ASPECT) -> UploadCheck:
    """Validate and decode an uploaded query image to RGB; never raises for bad input.

    Refused with a readable reason: no file, a file over ``max_bytes``, SVG (vector images are not rasterised),
    anything PIL does not recognise, an image over ``max_pixels`` or :data:`MAX_DECODED_BYTES` when decoded (both
    read from the header before decoding, so a decompression bomb is never expanded), an empty image, one whose
    sides differ by more than ``max_aspect`` times (e.g. a 1×5000 strip), and truncated or corrupt data.
    Handled, with a note: an animated image (GIF, APNG, WebP) uses its first frame, an EXIF orientation is
    applied (:func:`PIL.ImageOps.exif_transpose`), CMYK/YCbCr/LAB are converted to RGB and 16/32-bit images are
    scaled to 8 bits; palette and alpha images lose their transparency."""
    if path is None or str(path) == "":
        return UploadCheck(None, "Upload a query image or pick one of the examples.")
    p = Path(path)
    name = p.name
    try:
        if not p.is_file():
            return UploadCheck(None, f"The uploaded file {name} could not be found; please upload it again.")
        size = p.stat().st_size
        if size > max_bytes:
            return UploadCheck(None, f"{name} is {size / 2**20:.1f} MB; uploads over {max_bytes / 2**20:.0f} MB "
                                     "are refused.")
        if size == 0:
            return UploadCheck(None, f"{name} is an empty file, not an image.")
        if _looks_like_svg(p):
            return UploadCheck(None, f"{name} is an SVG (vector) image, which is not supported: upload a JPEG, "
                                     "PNG or WebP photo.")
        notes: list[str] = []
        with Image.open(p) as im:
            w, h = im.size
            if w == 0 or h == 0:
                return UploadCheck(None, f"{name} is empty ({w}×{h}).")
            if w * h > max_pixels:
                return UploadCheck(None, f"{name} is {w}×{h} = {w * h / 1e6:.1f} megapixels; images over "
                                         f"{max_pixels / 1e6:.0f} megapixels are refused. Crop the person first.")
            if _decoded_bytes(im.mode, w * h) > MAX_DECODED_BYTES:
                return UploadCheck(None, f"{name} ({w}×{h}, mode {im.mode}) would take more than "
                                         f"{MAX_DECODED_BYTES / 1e6:.0f} MB to decode; use a smaller image.")
            if max(w, h) > max_aspect * min(w, h):
                return UploadCheck(None, f"{name} is {w}×{h}: one side is more than {max_aspect:g} times the "
                                         "other, which is not a photo of a person. Crop the person first.")
            if getattr(im, "is_animated", False):
                im.seek(0)
                notes.append(f"animated {im.format or 'image'}: using its first frame")
            im.load()
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            upright = ImageOps.exif_transpose(im) if orientation not in (None, 1) else im
            if upright is not im:
                notes.append("rotated upright from its EXIF orientation")
            rgb, note = _to_rgb(upright)
            if note:
                notes.append(note)
    except UnidentifiedImageError:
        return UploadCheck(None, f"{name} is not an image (expected JPEG, PNG, WebP, BMP, ...).")
    except Image.DecompressionBombError:
        return UploadCheck(None, f"{name} is far too large to decode; images over {max_pixels / 1e6:.0f} "
                                 "megapixels are refused.")
    except MemoryError:
        return UploadCheck(None, f"{name} is too large to decode on this server.")
    except _DECODE_ERRORS as exc:
        reason = str(exc).replace(str(p), name)  # no server paths in the message
        return UploadCheck(None, f"{name} could not be decoded ({type(exc).__name__}: {reason}).")
    return UploadCheck(rgb, None, tuple(notes))
