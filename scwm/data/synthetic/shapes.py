"""Vectorized signed-distance shapes and an anti-aliased painter that writes image and label map together.

Every shape returns a signed distance ``d`` (negative inside, in world units) on a pixel-centre grid.
The painter blends colours with coverage ``clip(0.5 - d / pixel, 0, 1)`` and writes the label where
``d < 0`` -- exactly where coverage exceeds one half -- so the label map is aligned with the image by
construction (same geometry, same pixel centres).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Fill = tuple[float, float, float] | Callable[[np.ndarray, np.ndarray], np.ndarray]
_EPS = 1e-9


def rgb(c) -> tuple[float, float, float]:
    """A colour as a float RGB tuple."""
    return (float(c[0]), float(c[1]), float(c[2]))


def mix(a, b, t: float) -> tuple[float, float, float]:
    """Linear blend of colours ``a`` and ``b`` (``t = 0`` gives ``a``)."""
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


class Shape:
    """Base class: ``bbox`` (x0, y0, x1, y1) in world units and ``eval(X, Y) -> (d, shade | None)``."""

    bbox: tuple[float, float, float, float]

    def eval(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError


@dataclass
class Ellipse(Shape):
    cx: float
    cy: float
    rx: float
    ry: float
    shade: float = 0.25

    def __post_init__(self) -> None:
        self.bbox = (self.cx - self.rx, self.cy - self.ry, self.cx + self.rx, self.cy + self.ry)

    def eval(self, X, Y):
        u = (X - self.cx) / self.rx
        v = (Y - self.cy) / self.ry
        k2 = u * u + v * v
        k = np.sqrt(k2)
        grad = np.sqrt((u / self.rx) ** 2 + (v / self.ry) ** 2) + _EPS
        d = (k2 - k) / grad  # first-order distance: (k - 1) * k / |grad k^2 / 2|
        return d, (1.0 - self.shade * np.minimum(k2, 1.0)) if self.shade else None


@dataclass
class Capsule(Shape):
    """Segment p0-p1 with radius r0 at p0 tapering linearly to r1 at p1 (limbs, straps, poles)."""

    x0: float
    y0: float
    x1: float
    y1: float
    r0: float
    r1: float | None = None
    shade: float = 0.3

    def __post_init__(self) -> None:
        r1 = self.r0 if self.r1 is None else self.r1
        self.r1 = r1
        r = max(self.r0, r1)
        self.bbox = (min(self.x0, self.x1) - r, min(self.y0, self.y1) - r,
                     max(self.x0, self.x1) + r, max(self.y0, self.y1) + r)

    def eval(self, X, Y):
        vx, vy = self.x1 - self.x0, self.y1 - self.y0
        L2 = vx * vx + vy * vy + _EPS
        t = np.clip(((X - self.x0) * vx + (Y - self.y0) * vy) / L2, 0.0, 1.0)
        dx = X - (self.x0 + t * vx)
        dy = Y - (self.y0 + t * vy)
        dist = np.sqrt(dx * dx + dy * dy)
        r = self.r0 + t * (self.r1 - self.r0)
        shade = (1.0 - self.shade * np.minimum(dist / r, 1.0) ** 2) if self.shade else None
        return dist - r, shade


@dataclass
class Polygon(Shape):
    """Convex polygon (any orientation); distance is exact inside and along edges."""

    points: Sequence[tuple[float, float]]
    shade: float = 0.25
    round: float = 0.0

    def __post_init__(self) -> None:
        p = [(float(x), float(y)) for x, y in self.points]
        k = len(p)
        area = sum(p[i][0] * p[(i + 1) % k][1] - p[(i + 1) % k][0] * p[i][1] for i in range(k))
        if area < 0:
            p = p[::-1]
        self._edges = []
        for i in range(k):
            (x0, y0), (x1, y1) = p[i], p[(i + 1) % k]
            nx, ny = y1 - y0, -(x1 - x0)  # outward normal for counter-clockwise order
            n = (nx * nx + ny * ny) ** 0.5 + _EPS
            nx, ny = nx / n, ny / n
            self._edges.append((nx, ny, nx * x0 + ny * y0))
        r = self.round
        xs, ys = [q[0] for q in p], [q[1] for q in p]
        self.bbox = (min(xs) - r, min(ys) - r, max(xs) + r, max(ys) + r)
        self._cx = 0.5 * (min(xs) + max(xs))
        self._hw = 0.5 * (max(xs) - min(xs)) + r + _EPS

    def eval(self, X, Y):
        d = None
        for nx, ny, c in self._edges:
            di = X * nx + (Y * ny - c)
            d = di if d is None else np.maximum(d, di)
        d = np.broadcast_to(d, np.broadcast_shapes(X.shape, Y.shape)) - self.round
        shade = (1.0 - self.shade * np.minimum(((X - self._cx) / self._hw) ** 2, 1.0)) if self.shade else None
        return d, shade


@dataclass
class RRect(Shape):
    """Axis-aligned rectangle with rounded corners (exact distance)."""

    x0: float
    y0: float
    x1: float
    y1: float
    r: float = 0.0
    shade: float = 0.2

    def __post_init__(self) -> None:
        self.bbox = (self.x0, self.y0, self.x1, self.y1)

    def eval(self, X, Y):
        cx, cy = 0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1)
        hx, hy = 0.5 * (self.x1 - self.x0), 0.5 * (self.y1 - self.y0)
        r = min(self.r, hx, hy)
        qx = np.abs(X - cx) - hx + r
        qy = np.abs(Y - cy) - hy + r
        qx, qy = np.broadcast_arrays(qx, qy)
        out = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        d = out + np.minimum(np.maximum(qx, qy), 0) - r
        shade = (1.0 - self.shade * np.minimum(((X - cx) / (hx + _EPS)) ** 2, 1.0)) if self.shade else None
        return d, shade


@dataclass
class Clip(Shape):
    """``shape`` restricted to the half plane ``a*x + b*y <= c`` (e.g. a cap dome above the brim)."""

    shape: Shape
    a: float
    b: float
    c: float

    def __post_init__(self) -> None:
        self.bbox = self.shape.bbox

    def eval(self, X, Y):
        d, shade = self.shape.eval(X, Y)
        n = np.hypot(self.a, self.b) + _EPS
        return np.maximum(d, (self.a * X + self.b * Y - self.c) / n), shade


class Canvas:
    """Image (float, 0..255) and label map rendered through one world-to-pixel mapping.

    Pixel ``(i, j)`` has its centre at world ``x = x0 + (j + 0.5) * sx``, ``y = y0 + (i + 0.5) * sy`` where
    ``box = (x0, y0, x1, y1)`` is mapped onto the ``height x width`` grid.
    """

    def __init__(self, image: np.ndarray, box: tuple[float, float, float, float], antialias: bool = True):
        self.img = image
        h, w = image.shape[:2]
        self.label = np.zeros((h, w), np.uint8)
        self.aa = antialias
        self.set_box(box)

    def set_box(self, box: tuple[float, float, float, float]) -> None:
        h, w = self.img.shape[:2]
        x0, y0, x1, y1 = box
        self.box = box
        sx, sy = (x1 - x0) / w, (y1 - y0) / h
        self.xs = (x0 + (np.arange(w) + 0.5) * sx).astype(np.float32)
        self.ys = (y0 + (np.arange(h) + 0.5) * sy).astype(np.float32)
        self.px = float(np.sqrt(sx * sy))

    def paint(self, shape: Shape, fill: Fill, label: int | None, dim: float = 1.0) -> None:
        """Blend ``fill`` (RGB tuple or ``fill(X, Y) -> (h, w, 3)``) over ``shape``; set ``label`` inside."""
        bx0, by0, bx1, by1 = shape.bbox
        m = self.px
        c0, c1 = np.searchsorted(self.xs, [bx0 - m, bx1 + m])
        r0, r1 = np.searchsorted(self.ys, [by0 - m, by1 + m])
        if c1 <= c0 or r1 <= r0:
            return
        X = self.xs[None, c0:c1]
        Y = self.ys[r0:r1, None]
        d, shade = shape.eval(X, Y)
        inside = d < 0
        if self.aa:
            a = np.minimum(np.maximum(0.5 - d * (1.0 / self.px), 0.0), 1.0)
        else:
            a = inside.astype(np.float32)
        if not a.any():
            return
        col = fill(X, Y) if callable(fill) else np.asarray(fill, np.float32)
        if shade is not None:
            col = col * shade[..., None]
        if dim != 1.0:
            col = col * dim
        region = self.img[r0:r1, c0:c1]
        region += (col - region) * a[..., None]
        if label is not None:
            self.label[r0:r1, c0:c1][inside] = label
