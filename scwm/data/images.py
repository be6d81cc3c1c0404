"""Image and mask loading with clear errors (:class:`ImageLoadError` names the file and the reason).

Real trees hold more than 8-bit RGB JPEGs: CMYK JPEGs, palette and grey PNGs (with or without alpha) and
16-bit PNGs are converted to 8-bit RGB (16-bit grey keeps its high byte: PIL alone would clip it to white);
empty, truncated or corrupt files raise :class:`ImageLoadError`, never a PIL or zlib exception.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "load_mask", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Errors PIL raises from deep inside its decoders for truncated or corrupt data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError,
                  TypeError, Image.DecompressionBombError)


class ImageLoadError(ValueError):
    """An image or mask file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot load image {self.path!r}: {reason}")


def _open_decoded(path: str | os.PathLike[str]) -> Image.Image:
    """Open ``path`` and force a full decode; raise :class:`ImageLoadError` on any failure."""
    p = os.fspath(path)
    if not os.path.exists(p):
        reason = "broken symbolic link" if os.path.islink(p) else "file does not exist"
        raise ImageLoadError(p, reason)
    if os.path.isdir(p):
        raise ImageLoadError(p, "is a directory, not an image file")
    if os.path.getsize(p) == 0:
        raise ImageLoadError(p, "empty file (0 bytes)")
    try:
        img = Image.open(p)
    except UnidentifiedImageError:
        raise ImageLoadError(p, "not an image (unrecognised file format)") from None
    except PermissionError:
        raise ImageLoadError(p, "permission denied") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(p, f"too large to decode ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageLoadError(p, f"truncated or corrupt image file ({type(exc).__name__}: {exc})") from None
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        img.close()
        raise ImageLoadError(p, f"truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    return img


_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
"""Single-channel integer modes wider than 8 bits (16-bit grey PNGs open as ``I;16``)."""


def _wide_grey_to_rgb(img: Image.Image, path: str | os.PathLike[str]) -> Image.Image:
    """A 16-bit grey image as 8-bit RGB (the high byte: ``v >> 8``); PIL's own conversion clips at 255."""
    arr = np.asarray(img).astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ImageLoadError(path, f"mode {img.mode!r} values {arr.min()}..{arr.max()} are outside the 16-bit range")
    return Image.fromarray((arr >> 8).astype(np.uint8), mode="L").convert("RGB")


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Load ``path`` as a fully decoded 8-bit RGB ``PIL.Image`` (grey, 16-bit grey, RGBA, palette, CMYK... are
    converted; transparent pixels keep their colour).

    Raises :class:`ImageLoadError` naming the file if it is missing, empty, not an image, truncated, corrupt or
    in a mode with no RGB conversion.
    """
    img = _open_decoded(path)
    try:
        if img.mode == "RGB":
            return img.copy()
        if img.mode in _WIDE_GREY_MODES:
            return _wide_grey_to_rgb(img, path)
        if img.mode == "F":
            raise ImageLoadError(path, "floating-point images (mode 'F') are not supported; save as 8-bit RGB")
        if img.mode == "P" and "transparency" in img.info:
            return img.convert("RGBA").convert("RGB")
        return img.convert("RGB")
    except ImageLoadError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(path, f"cannot convert mode {img.mode!r} to RGB ({exc})") from None
    finally:
        img.close()


def load_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a label-map mask as an ``(H, W)`` uint8 array (palette images give their indices).

    RGB(A) masks are accepted only if their colour channels are equal. Raises :class:`ImageLoadError`
    naming the file on any failure.
    """
    img = _open_decoded(path)
    try:
        arr = np.array(img)
    finally:
        img.close()
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ImageLoadError(path, f"expected a single-channel label map, got a colour image "
                                       f"(mode {img.mode!r})")
        arr = rgb[..., 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ImageLoadError(path, f"label values outside 0..255 (mode {img.mode!r})")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)
