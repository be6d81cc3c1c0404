"""Rendering of one pedestrian crop: the person (:mod:`.body`), background, occluders, camera effects.

Coordinates: the target person stands with the top of the head at ``y = 0`` and the soles at ``y = 1``
(x = 0 is the body axis, y grows downwards); widths are divided by the identity's height factor, so tall
people look slimmer after the detector normalises the crop height. A :class:`Shot` fixes everything
about one image: view, walking phase, the detector box in these coordinates (jitter and incomplete
crops included), background scene and offset, clutter, background person and occluder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .body import BG, PART_NAMES, VIEWS, draw_person
from .config import CameraStyle, SceneStyle, SyntheticConfig
from .identity import Identity, sample_identity
from .shapes import Canvas, Ellipse, RRect, mix, rgb

OCCLUDER_KINDS = ("pole", "bin", "car", "railing", "bush", "sign", "person")
OCCLUDER_WEIGHTS = (0.24, 0.18, 0.14, 0.1, 0.12, 0.1, 0.12)
#: Nominal detector box: 4 % margin around the person, aspect of the output crop.
BOX_MARGIN = 0.04


@dataclass(frozen=True)
class Occluder:
    kind: str
    x: float  # centre (body coordinates)
    width: float  # half width
    top: float  # top edge (body coordinates)
    color: tuple[float, float, float]
    extra: tuple[float, ...] = ()  # kind-specific (sign board height, person scale/view/phase, ...)
    person: Identity | None = None


@dataclass(frozen=True)
class BackgroundPerson:
    identity: Identity
    x: float
    y: float
    scale: float
    view: str
    phase: float


@dataclass(frozen=True)
class Clutter:
    kind: str  # "box" or "blob"
    x: float
    y: float
    w: float
    h: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Shot:
    """Everything that varies between two images of the same identity in the same camera."""

    view: str
    phase: float
    box: tuple[float, float, float, float]  # detector box (x0, y0, x1, y1) in body coordinates
    cut_top: float  # fraction of the nominal box height cut away at the top (0 = complete)
    cut_bottom: float
    scene: int
    bg_offset: float  # background shift in pixels
    brightness: float  # per-image illumination factor (times the camera's)
    light: float  # horizontal illumination gradient
    clutter: tuple[Clutter, ...] = ()
    bg_person: BackgroundPerson | None = None
    occluder: Occluder | None = None
    bg_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-tracklet variation of the camera's scene
    bg_period: float = 1.0


@dataclass(frozen=True)
class Track:
    """Shared state of the images of one identity in one camera (a tracklet)."""

    view: str
    scene: int
    bg_offset: float
    bg_speed: float
    phase: float
    brightness: float
    light: float
    bg_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bg_period: float = 1.0


# ----------------------------------------------------------------------------------------------------------
# background, clutter, occluders


def render_background(h: int, w: int, scene: SceneStyle, offset: float,
                      tint: tuple[float, float, float] = (1.0, 1.0, 1.0), period: float = 1.0) -> np.ndarray:
    """A float32 (h, w, 3) backdrop: structured wall/vegetation above the horizon, paved floor below.

    ``tint`` (per-channel factors) and ``period`` (scale of the structures) vary a camera's scene between
    tracklets, so that the background identifies the camera only loosely.
    """
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    x = (np.arange(w, dtype=np.float32) + 0.5)[None, :] + np.float32(offset)
    hz = scene.horizon * h
    pal = np.asarray([scene.wall, scene.wall2, scene.floor, scene.floor2], np.float32) * np.asarray(tint, np.float32)
    scene = dataclasses.replace(scene, period=scene.period * period,
                                horizon=min(0.85, max(0.35, scene.horizon * (0.75 + 0.25 * period))))
    # wall: vertical structures (windows, pillars, trunks); floor: perspective paving lines
    in_feat = ((x % scene.period) < scene.duty * scene.period) & (y > scene.feature_top * hz) & (
        y < scene.feature_bottom * hz)
    depth = np.maximum(y - hz, 0.5)
    u = (x - np.float32(offset + 0.5 * w)) * (6.0 / depth) + np.float32(offset * 0.6)
    lines = ((u % 10.0) < 0.9) | (((60.0 / depth) % 1.0) < 0.12)
    above = y < hz
    idx = np.where(above, in_feat.astype(np.int8), 2 + lines.astype(np.int8))
    tex = np.where(above, (0.92 + 0.08 * (y / max(hz, 1.0))) * (1.0 + 0.05 * np.sin(y * 0.9 + 0.3 * np.sin(x * 0.21))
                                                                    + 0.04 * np.sin(x * 0.37 + y * 0.11)),
                   0.9 + 0.1 * np.minimum(depth / (h - hz + 1), 1.0))
    if scene.kind == "park":
        tex = tex + above * (0.08 * np.sin(x * 0.8) * np.sin(y * 0.7))
    return pal[idx] * tex[..., None].astype(np.float32)


def draw_occluder(cv: Canvas, occ: Occluder) -> None:
    """Paint an occluder in front of the person; its pixels are labelled background."""
    col = occ.color
    dark = mix(col, (0, 0, 0), 0.35)
    x, w, top = occ.x, occ.width, occ.top
    if occ.kind == "pole":
        cv.paint(RRect(x - w, -2.0, x + w, 3.0, 0.0, shade=0.45), col, BG)
    elif occ.kind == "bin":
        cv.paint(RRect(x - w, top, x + w, 3.0, 0.01, shade=0.35), col, BG)
        cv.paint(RRect(x - w * 1.08, top - 0.02, x + w * 1.08, top + 0.025, 0.008), dark, BG)
    elif occ.kind == "car":
        cv.paint(RRect(x - w, top, x + w, 3.0, 0.06, shade=0.1), col, BG)
        cv.paint(RRect(x - w, top + 0.09, x + w, top + 0.105, 0.0, shade=0.0), mix(col, (255, 255, 255), 0.5), BG)
        cv.paint(Ellipse(x - 0.55 * w, top + 0.3, 0.11, 0.11), (25, 25, 25), BG)
        cv.paint(Ellipse(x + 0.55 * w, top + 0.3, 0.11, 0.11), (25, 25, 25), BG)
    elif occ.kind == "railing":
        for yy in (top, top + 0.13):
            cv.paint(RRect(-2.0, yy, 2.0, yy + 0.018, 0.0, shade=0.0), col, BG)
        for k in range(-3, 4):
            px = x + k * w
            cv.paint(RRect(px - 0.01, top, px + 0.01, 3.0, 0.0), col, BG)
    elif occ.kind == "bush":
        rng = np.random.default_rng(int(abs(x) * 1e6) % 2**31)
        for _ in range(5):
            ex = x + rng.uniform(-w, w)
            cv.paint(Ellipse(ex, top + rng.uniform(0.04, 0.12), rng.uniform(0.08, 0.14), rng.uniform(0.07, 0.12),
                             shade=0.35), mix(col, (0, 0, 0), rng.uniform(0, 0.3)), BG)
        cv.paint(RRect(x - w - 0.05, top + 0.1, x + w + 0.05, 3.0, 0.05), col, BG)
    elif occ.kind == "sign":
        bh = occ.extra[0]
        cv.paint(RRect(x - 0.012, top, x + 0.012, 3.0, 0.0, shade=0.4), (110, 110, 115), BG)
        cv.paint(RRect(x - w, top - bh, x + w, top + bh, 0.01, shade=0.05), col, BG)
        cv.paint(RRect(x - 0.7 * w, top - 0.3 * bh, x + 0.7 * w, top + 0.3 * bh, 0.0, shade=0.0),
                 mix(col, (255, 255, 255), 0.6), BG)
    elif occ.kind == "person":
        scale, vcode, phase = occ.extra
        _draw_other(cv, occ.person, x, top, scale, VIEWS[int(vcode)], phase)
    else:
        raise ValueError(f"unknown occluder kind {occ.kind!r}")


def _draw_other(cv: Canvas, idn: Identity | None, x: float, y: float, scale: float, view: str, phase: float
                ) -> None:
    """Another pedestrian (labelled background) at offset (x, y) and ``scale``."""
    if idn is None:
        return
    box = cv.box
    cv.set_box(((box[0] - x) / scale, (box[1] - y) / scale, (box[2] - x) / scale, (box[3] - y) / scale))
    try:
        draw_person(cv, idn, view, phase, labels=False)
    finally:
        cv.set_box(box)


def draw_clutter(cv: Canvas, items: tuple[Clutter, ...]) -> None:
    for it in items:
        if it.kind == "box":
            cv.paint(RRect(it.x - it.w, it.y - it.h, it.x + it.w, it.y + it.h, 0.01, shade=0.25), it.color, BG)
        else:
            cv.paint(Ellipse(it.x, it.y, it.w, it.h, shade=0.3), it.color, BG)


# ----------------------------------------------------------------------------------------------------------
# sampling a shot


def nominal_box(height: int, width: int) -> tuple[float, float, float, float]:
    """The detector box of a perfectly detected, complete person (body coordinates)."""
    bh = 1.0 + 2 * BOX_MARGIN
    bw = bh * width / height
    return (-bw / 2, -BOX_MARGIN, bw / 2, 1.0 + BOX_MARGIN)


def sample_track(camera: CameraStyle, rng: np.random.Generator, background_variation: float = 1.0) -> Track:
    """Start a tracklet of one identity in ``camera``.

    ``background_variation`` scales the tracklet's own change of the camera's backdrop (tint, brightness,
    structure scale) in log space: 1 = the presets' default, 0 = every tracklet in a scene sees the same
    backdrop (only its position in the scene differs). The random stream is the same for every value.
    """
    view = VIEWS[int(rng.choice(4, p=np.asarray(camera.view_probs) / np.sum(camera.view_probs)))]
    tint = np.exp(background_variation * (rng.normal(0, 0.22) + rng.normal(0, 0.1, 3)))  # brightness + hue
    scene, offset = int(rng.integers(len(camera.scenes))), float(rng.uniform(0, 400))
    speed, phase = float(rng.uniform(3, 12) * rng.choice([-1, 1])), float(rng.uniform(0, 2 * np.pi))
    brightness, light = float(np.exp(rng.normal(0, camera.brightness_jitter))), float(rng.normal(0, 0.12))
    period = float(rng.uniform(0.6, 1.7) ** background_variation)
    return Track(view, scene, offset, speed, phase, brightness, light,
                 (float(tint[0]), float(tint[1]), float(tint[2])), period)


def _occluder(rng: np.random.Generator, box: tuple[float, float, float, float]) -> Occluder:
    kind = OCCLUDER_KINDS[int(rng.choice(len(OCCLUDER_KINDS), p=np.asarray(OCCLUDER_WEIGHTS) / sum(OCCLUDER_WEIGHTS)))]
    u = rng.uniform
    hw = 0.5 * (box[2] - box[0])
    metal = (float(u(90, 180)),) * 3
    if kind == "pole":
        return Occluder(kind, float(u(-0.8, 0.8) * hw), float(u(0.012, 0.035)), -2.0,
                        mix(metal, (float(u(0, 255)), float(u(0, 255)), float(u(0, 255))), 0.25))
    if kind == "bin":
        col = ((40, 90, 60), (70, 70, 75), (40, 60, 120), (150, 120, 60))[int(rng.integers(4))]
        return Occluder(kind, float(u(-0.5, 0.5) * hw), float(u(0.1, 0.17)), float(u(0.62, 0.8)), rgb(col))
    if kind == "car":
        col = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (40, 60, 110), (120, 120, 125))[int(rng.integers(5))]
        return Occluder(kind, float(u(-0.3, 0.3)), 0.7, float(u(0.55, 0.74)), rgb(col))
    if kind == "railing":
        return Occluder(kind, float(u(-0.1, 0.1)), float(u(0.12, 0.2)), float(u(0.55, 0.72)),
                        mix(metal, (60, 60, 60), 0.3))
    if kind == "bush":
        return Occluder(kind, float(u(-0.5, 0.5) * hw), float(u(0.12, 0.22)), float(u(0.62, 0.8)),
                        (float(u(40, 70)), float(u(95, 130)), float(u(40, 60))))
    if kind == "sign":
        col = ((30, 80, 160), (30, 120, 60), (190, 40, 40), (220, 180, 40))[int(rng.integers(4))]
        return Occluder(kind, float(rng.choice([-1, 1]) * u(0.5, 0.9) * hw), float(u(0.07, 0.12)),
                        float(u(0.25, 0.6)), rgb(col), (float(u(0.05, 0.09)),))
    side = float(rng.choice([-1, 1]))
    return Occluder("person", side * float(u(0.2, 0.32)), 0.0, float(u(-0.05, 0.1)), (0, 0, 0),
                    (float(u(0.95, 1.15)), float(rng.integers(4)), float(u(0, 2 * np.pi))),
                    sample_identity(rng))


def sample_shot(camera: CameraStyle, config: SyntheticConfig, rng: np.random.Generator, track: Track | None = None,
                step: int = 0) -> Shot:
    """Draw one image's view, pose, detector box (jitter, incomplete crop), clutter and occluder.

    ``track`` (see :func:`sample_track`) keeps view, scene and illumination coherent over a tracklet;
    ``step`` is the image's position in it (walking phase and background offset advance with it).
    """
    if track is None:
        track = sample_track(camera, rng, config.track_background)
    u = rng.uniform
    view = track.view
    if rng.random() < config.view_change:
        view = VIEWS[int(rng.integers(4))]
    phase = float((track.phase + 0.9 * step + rng.normal(0, 0.3)) % (2 * np.pi))
    x0, y0, x1, y1 = nominal_box(config.image_height, config.image_width)
    bw, bh = x1 - x0, y1 - y0
    scale = float(np.exp(rng.normal(0, config.jitter_scale)))
    cx = 0.5 * (x0 + x1) + rng.normal(0, config.jitter_x) * bw
    cy = 0.5 * (y0 + y1) + rng.normal(0, config.jitter_y) * bh
    bw, bh = bw * scale, bh * scale
    x0, x1, y0, y1 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
    cut_top = cut_bottom = 0.0
    if rng.random() < config.p_cut_top:
        cut_top = float(u(0.14, 0.38))
        y0 += cut_top * bh
    if rng.random() < config.p_cut_bottom:
        cut_bottom = float(u(0.18, 0.48))
        y1 -= cut_bottom * bh
    box = (float(x0), float(y0), float(x1), float(y1))
    clutter: list[Clutter] = []
    if rng.random() < config.p_clutter:
        for _ in range(int(rng.integers(1, 4))):
            clutter.append(Clutter(str(rng.choice(["box", "blob"])), float(u(-0.6, 0.6)), float(u(0.1, 1.0)),
                                   float(u(0.02, 0.1)), float(u(0.02, 0.12)),
                                   (float(u(30, 230)), float(u(30, 230)), float(u(30, 230)))))
    bg_person = None
    if rng.random() < config.p_background_person:
        bg_person = BackgroundPerson(sample_identity(rng), float(rng.choice([-1, 1]) * u(0.28, 0.45)),
                                     float(u(-0.15, 0.1)), float(u(0.65, 0.95)), VIEWS[int(rng.integers(4))],
                                     float(u(0, 2 * np.pi)))
    occluder = _occluder(rng, box) if rng.random() < config.p_occluder else None
    return Shot(view, phase, box, cut_top, cut_bottom, track.scene, track.bg_offset + track.bg_speed * step,
                track.brightness * float(np.exp(rng.normal(0, 0.03))), track.light, tuple(clutter), bg_person,
                occluder, track.bg_tint, track.bg_period)


# ----------------------------------------------------------------------------------------------------------
# camera pipeline and the public renderer


def apply_camera(img: np.ndarray, camera: CameraStyle, shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, illumination, saturation, contrast, blur and sensor noise; returns uint8 (h, w, 3)."""
    h, w = img.shape[:2]
    gain = np.asarray(camera.gain, np.float32) * np.float32(camera.brightness * shot.brightness * camera.contrast)
    ramp = 1.0 + np.float32(shot.light) * np.linspace(-0.5, 0.5, w, dtype=np.float32)
    x = img * ramp[None, :, None]
    gray = x.mean(axis=2, keepdims=True)
    x += (x - gray) * np.float32(camera.saturation - 1.0)
    x *= gain  # colour cast, illumination and contrast (about mid grey, below)
    x += np.float32(127.5 * (1.0 - camera.contrast))
    if camera.blur > 0.05:
        x = gaussian_filter(x, sigma=(camera.blur, camera.blur, 0), mode="nearest", truncate=2.5)
    if camera.noise > 0:
        x += rng.standard_normal(size=x.shape, dtype=np.float32) * np.float32(camera.noise)
    np.clip(x, 0.0, 255.0, out=x)
    x += 0.5
    return x.astype(np.uint8)


def render_with_info(identity: Identity, camera: CameraStyle, shot: Shot, size: tuple[int, int] = (128, 64),
                     rng: np.random.Generator | None = None, *, antialias: bool = True, effects: bool = True,
                     background: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render ``identity`` in ``shot``; returns ``(image uint8 (H, W, 3), mask uint8 (H, W), info)``.

    ``background`` (an RGB colour) replaces scene, clutter and background person by a uniform colour;
    ``effects=False`` skips the camera pipeline (image is the raw render, rounded).
    ``info`` has ``occluded`` (fraction of body pixels hidden by the occluder) and ``part_pixels``.
    """
    h, w = size
    if h < 8 or w < 4:
        raise ValueError(f"image size {size!r} is too small (need at least 8x4)")
    rng = np.random.default_rng(0) if rng is None else rng
    if background is None:
        img = render_background(h, w, camera.scenes[shot.scene % len(camera.scenes)], shot.bg_offset, shot.bg_tint,
                                shot.bg_period)
    else:
        img = np.empty((h, w, 3), np.float32)
        img[:] = np.asarray(background, np.float32)
    cv = Canvas(img, shot.box, antialias)
    if background is None:
        draw_clutter(cv, shot.clutter)
        if shot.bg_person is not None:
            p = shot.bg_person
            _draw_other(cv, p.identity, p.x, p.y, p.scale, p.view, p.phase)
    draw_person(cv, identity, shot.view, shot.phase)
    body_before = int(np.count_nonzero(cv.label))
    if shot.occluder is not None:
        draw_occluder(cv, shot.occluder)
    body_after = int(np.count_nonzero(cv.label))
    occluded = 0.0 if body_before == 0 else 1.0 - body_after / body_before
    image = apply_camera(cv.img, camera, shot, rng) if effects else np.clip(cv.img + 0.5, 0, 255.5).astype(np.uint8)
    info = {"occluded": occluded, "part_pixels": np.bincount(cv.label.ravel(), minlength=len(PART_NAMES)).tolist()}
    return image, cv.label, info


def render_sample(identity: Identity, camera: CameraStyle, rng: np.random.Generator, *, shot: Shot | None = None,
                  config: SyntheticConfig | None = None, size: tuple[int, int] | None = None,
                  antialias: bool = True, effects: bool = True,
                  background: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one crop of ``identity`` seen by ``camera``: ``(image uint8 HxWx3, part label map uint8 HxW)``.

    Without ``shot`` one is drawn from ``rng`` with the crop statistics of ``config`` (default: the
    ``market`` preset). See :func:`render_with_info` for ``antialias``, ``effects`` and ``background``.
    """
    from .config import preset

    config = config or preset("market")
    size = size or (config.image_height, config.image_width)
    if shot is None:
        shot = sample_shot(camera, config, rng)
    img, mask, _ = render_with_info(identity, camera, shot, size, rng, antialias=antialias, effects=effects,
                                    background=background)
    return img, mask
