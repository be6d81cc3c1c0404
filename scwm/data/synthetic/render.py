"""Rendering of one pedestrian crop: body, garments, accessories, background, occluders, camera effects.

Coordinates: the target person stands with the top of the head at ``y = 0`` and the soles at ``y = 1``
(x = 0 is the body axis, y grows downwards); widths are divided by the identity's height factor, so tall
people look slimmer after the detector normalises the crop height. A :class:`Shot` fixes everything
about one image: view, walking phase, the detector box in these coordinates (jitter and incomplete
crops included), background scene and offset, clutter, background person and occluder.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .config import CameraStyle, SceneStyle, SyntheticConfig
from .identity import Identity, sample_identity
from .shapes import Canvas, Capsule, Clip, Ellipse, Polygon, RRect

PART_NAMES = ["background", "head", "upper_body", "lower_body", "shoes", "accessory"]
BG, HEAD, UPPER, LOWER, SHOES, ACC = range(6)
VIEWS = ("front", "back", "side_left", "side_right")
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


def _rgb(c) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# the person


def _side_dir(view: str) -> int:
    return {"side_left": -1, "side_right": 1}.get(view, 0)


def draw_person(cv: Canvas, idn: Identity, view: str, phase: float, labels: bool = True) -> None:
    """Paint ``idn`` seen from ``view`` at walking ``phase``; with ``labels=False`` every label is background."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")

    def lab(v: int) -> int:
        return v if labels else BG

    b = idn.body
    ws = 1.0 / b.height
    skin, hair_c = _rgb(idn.skin), _rgb(idn.hair.color)
    up, lo = idn.upper, idn.lower
    up_c, lo_c, shoe_c = _rgb(up.color), _rgb(lo.color), _rgb(idn.shoes.color)
    acc = idn.accessory
    acc_c = _rgb(acc.color)
    sd = _side_dir(view)
    side = sd != 0
    hry, hrx = 0.066 * b.head, 0.052 * b.head * ws
    cx, cy = 0.0, hry
    y_sh = 2 * hry + 0.03
    foot_h = 0.022
    L = b.leg
    y_hip = 1.0 - foot_h - L
    w_sh, w_hip = b.shoulder * ws, b.hip * ws
    g = b.gait
    s = math.sin(phase)
    c = math.cos(phase)

    # ---- legs: (hip, knee, ankle) per leg; index 0 = the person's right leg
    legs = []
    lt, ls = 0.5 * L, 0.5 * L
    r_th, r_sh = 0.46 * w_hip, 0.3 * w_hip
    for k, sign in enumerate((1.0, -1.0)):
        th = g * s * sign
        if side:
            bend = 1.3 * g * max(0.0, c * sign)
            hx = 0.0 + 0.012 * sign * sd
            knee = (hx + lt * sd * math.sin(th), y_hip + lt * math.cos(th))
            ank = (knee[0] + ls * sd * math.sin(th - bend), knee[1] + ls * math.cos(th - bend))
            legs.append(((hx, y_hip), knee, ank))
        else:
            xs = (1 if k == 0 else -1) * (-1 if view == "front" else 1) * 0.5 * w_hip
            fwd = max(0.0, th)
            back = max(0.0, -th)
            knee = (xs * 0.98, y_hip + lt - 0.02 * back)
            ank = (xs * 0.95, 1.0 - foot_h + 0.03 * fwd - 0.05 * back)
            legs.append(((xs, y_hip), knee, ank))
    # ---- arms: (shoulder, elbow, wrist)
    arms = []
    la, lf = 0.165, 0.15
    r_ua, r_fa = 0.03 * ws, 0.024 * ws
    for k, sign in enumerate((1.0, -1.0)):
        a = -0.9 * g * s * sign  # arms swing opposite to legs
        if side:
            sh = (0.0 - 0.01 * sd, y_sh + 0.025)
            bend = 0.25 + 0.5 * max(0.0, a)
            el = (sh[0] + la * sd * math.sin(a), sh[1] + la * math.cos(a))
            wr = (el[0] + lf * sd * math.sin(a + bend), el[1] + lf * math.cos(a + bend))
        else:
            xs = (1 if k == 0 else -1) * (-1 if view == "front" else 1)
            sh = (xs * (w_sh - 0.6 * r_ua), y_sh + 0.025)
            el = (sh[0] + xs * 0.018, sh[1] + la * (1 - 0.12 * abs(a)))
            wr = (el[0] + xs * 0.006, el[1] + lf * (1 - 0.25 * max(0.0, a)))
        arms.append((sh, el, wr))

    # which physical side is nearer in a side view (right side faces the camera when walking left)
    near = 0 if sd == -1 else 1  # index of the near leg/arm
    far = 1 - near

    def leg_parts(k: int, dim: float) -> None:
        hip, knee, ank = legs[k]
        leg_col = lo_c if lo.kind == "trousers" else skin
        cv.paint(Capsule(*hip, *knee, r_th, r_sh * 1.12), leg_col, lab(LOWER), dim)
        cv.paint(Capsule(*knee, *ank, r_sh * 1.12, r_sh * 0.9), leg_col, lab(LOWER), dim)
        if lo.kind == "shorts":
            t = 0.62
            mid = (hip[0] + t * (knee[0] - hip[0]), hip[1] + t * (knee[1] - hip[1]))
            cv.paint(Capsule(*hip, *mid, r_th * 1.08, r_th * 1.0), lo_c, lab(LOWER), dim)
        # shoe
        if side:
            fx = ank[0] + sd * 0.022
            cv.paint(Ellipse(fx, ank[1] + 0.45 * foot_h, 0.042, 0.021), shoe_c, lab(SHOES), dim)
        else:
            cv.paint(Ellipse(ank[0], ank[1] + 0.45 * foot_h, 0.03 * ws, 0.022), shoe_c, lab(SHOES), dim)

    def arm_parts(k: int, dim: float) -> None:
        sh, el, wr = arms[k]
        sleeve = up_c
        fore = up_c if up.sleeve == "long" else skin
        cv.paint(Capsule(*sh, *el, r_ua, r_ua * 0.9), sleeve, lab(UPPER), dim)
        cv.paint(Capsule(*el, *wr, r_ua * 0.85, r_fa), fore, lab(UPPER), dim)
        if up.sleeve == "short":
            mid = (sh[0] + 0.55 * (el[0] - sh[0]), sh[1] + 0.55 * (el[1] - sh[1]))
            cv.paint(Capsule(*sh, *mid, r_ua * 1.12, r_ua * 1.05), up_c, lab(UPPER), dim)
        cv.paint(Ellipse(wr[0], wr[1] + 0.018, r_fa * 1.05, 0.022), skin, lab(UPPER), dim)

    def upper_fill():
        if up.pattern == "stripes":
            c1, c2 = np.asarray(up_c, np.float32), np.asarray(_rgb(up.color2), np.float32)

            def f(X, Y):
                m = (np.sin((Y - y_sh) * (2 * np.pi / 0.042)) > 0)[..., None]
                return np.where(np.broadcast_to(m, np.broadcast_shapes(m.shape, X[..., None].shape)), c1, c2)

            return f
        if up.pattern == "checks":
            c1, c2 = np.asarray(up_c, np.float32), np.asarray(_rgb(up.color2), np.float32)

            def f(X, Y):
                m = ((np.floor(X / 0.048) + np.floor((Y - y_sh) / 0.048)) % 2 == 0)[..., None]
                return np.where(m, c1, c2)

            return f
        return up_c

    def torso(dim: float = 1.0) -> None:
        y_w = y_sh + 0.62 * (y_hip - y_sh)
        yb = y_hip + 0.035
        if side:
            d_sh, d_w, d_h = 0.62 * w_sh, 0.56 * w_sh, 0.7 * w_hip
            o = 0.012 * sd
            pts = [(o - d_sh, y_sh), (o + d_sh, y_sh), (d_w, y_w), (d_h, yb), (-d_h, yb), (-d_w, y_w)]
        else:
            pts = [(-w_sh, y_sh + 0.01), (-w_sh * 0.8, y_sh - 0.008), (w_sh * 0.8, y_sh - 0.008),
                   (w_sh, y_sh + 0.01), (0.86 * w_sh, y_w), (1.02 * w_hip, yb), (-1.02 * w_hip, yb),
                   (-0.86 * w_sh, y_w)]
        cv.paint(Polygon(pts, round=0.006), upper_fill(), lab(UPPER), dim)
        if up.pattern == "logo" and view == "front":
            ly, r = y_sh + 0.3 * (y_hip - y_sh), 0.034 * ws
            c2 = _rgb(up.color2)
            if up.logo_shape == "circle":
                cv.paint(Ellipse(0.0, ly, r, r, shade=0.0), c2, lab(UPPER))
            elif up.logo_shape == "square":
                cv.paint(RRect(-r, ly - r, r, ly + r, 0.004, shade=0.0), c2, lab(UPPER))
            else:
                cv.paint(Polygon([(0, ly - 1.3 * r), (1.3 * r, ly), (0, ly + 1.3 * r), (-1.3 * r, ly)], shade=0.0),
                         c2, lab(UPPER))

    def pelvis(dim: float = 1.0) -> None:
        if lo.kind == "skirt":
            knee_y = legs[0][1][1]
            bot = knee_y + 0.015
            if side:
                pts = [(-0.75 * w_hip, y_hip - 0.03), (0.75 * w_hip, y_hip - 0.03), (1.15 * w_hip, bot),
                       (-1.15 * w_hip, bot)]
            else:
                pts = [(-1.02 * w_hip, y_hip - 0.03), (1.02 * w_hip, y_hip - 0.03), (1.5 * w_hip, bot),
                       (-1.5 * w_hip, bot)]
            cv.paint(Polygon(pts), lo_c, lab(LOWER), dim)
            return
        hw = 0.72 * w_hip if side else 1.0 * w_hip
        cv.paint(Polygon([(-hw, y_hip - 0.03), (hw, y_hip - 0.03), (hw * 0.98, y_hip + 0.07),
                          (-hw * 0.98, y_hip + 0.07)], shade=0.2), lo_c, lab(LOWER), dim)

    # ---- head pieces
    def neck() -> None:
        cv.paint(RRect(cx - 0.45 * hrx, cy + 0.6 * hry, cx + 0.45 * hrx, y_sh + 0.01, 0.005), skin, lab(HEAD))

    def long_hair() -> None:
        if idn.hair.style != "long" or idn.headwear.kind == "hood":
            return
        if side:
            cv.paint(Capsule(cx - sd * 0.4 * hrx, cy, cx - sd * 0.75 * hrx, y_sh + 0.06, 0.9 * hrx, 0.6 * hrx),
                     hair_c, lab(HEAD))
        else:
            cv.paint(RRect(cx - 1.08 * hrx, cy - 0.2 * hry, cx + 1.08 * hrx, y_sh + 0.075, 0.5 * hrx), hair_c,
                     lab(HEAD))

    def ponytail() -> None:
        if idn.hair.style != "ponytail" or idn.headwear.kind == "hood" or view == "front":
            return
        if side:
            cv.paint(Capsule(cx - sd * 0.9 * hrx, cy - 0.2 * hry, cx - sd * 1.35 * hrx, cy + 1.3 * hry,
                             0.32 * hrx, 0.18 * hrx), hair_c, lab(HEAD))
        else:
            cv.paint(Capsule(cx, cy, cx, cy + 1.7 * hry, 0.32 * hrx, 0.2 * hrx), hair_c, lab(HEAD))

    def head() -> None:
        hw = idn.headwear
        hair = hair_c if idn.hair.style != "buzz" else _mix(hair_c, skin, 0.45)
        grow = 1.02 if idn.hair.style == "buzz" else 1.1
        neck()
        if hw.kind == "hood":
            hc = _rgb(hw.color)
            if view == "back":
                cv.paint(Polygon([(cx - 1.2 * hrx, cy), (cx + 1.2 * hrx, cy), (cx + 1.0 * hrx, y_sh + 0.07),
                                  (cx - 1.0 * hrx, y_sh + 0.07)]), hc, lab(HEAD))
                cv.paint(Ellipse(cx, cy - 0.02, 1.28 * hrx, 1.18 * hry), hc, lab(HEAD))
            else:
                cv.paint(Ellipse(cx - 0.1 * sd * hrx, cy - 0.02, 1.28 * hrx, 1.18 * hry), hc, lab(HEAD))
                cv.paint(RRect(cx - 1.1 * hrx, cy, cx + 1.1 * hrx, y_sh + 0.02, 0.3 * hrx), hc, lab(HEAD))
                fx = cx + 0.35 * sd * hrx
                cv.paint(Ellipse(fx, cy + 0.1 * hry, (0.55 if side else 0.78) * hrx, 0.8 * hry), skin, lab(HEAD))
                _eyes(fx)
            return
        if view == "back":
            cv.paint(Ellipse(cx, cy, hrx * 1.04, hry * 1.02), skin, lab(HEAD))
            cv.paint(Ellipse(cx, cy - 0.05 * hry, hrx * (grow - 0.02), hry * (grow - 0.06)), hair, lab(HEAD))
        elif side:
            cv.paint(Ellipse(cx, cy, hrx * 1.08, hry), skin, lab(HEAD))
            cv.paint(Clip(Ellipse(cx - sd * 0.12 * hrx, cy - 0.1 * hry, hrx * grow, hry * (grow - 0.05)),
                          sd * 1.0, 0.6, sd * cx + 0.05 * hrx + 0.6 * cy), hair, lab(HEAD))
            _eyes(cx + sd * 0.55 * hrx)
        else:
            cv.paint(Ellipse(cx, cy - 0.08 * hry, hrx * grow, hry * (grow - 0.04)), hair, lab(HEAD))
            cv.paint(Ellipse(cx, cy + 0.12 * hry, hrx * 0.92, hry * 0.9), skin, lab(HEAD))
            _eyes(cx)
        if hw.kind == "cap":
            hc = _rgb(hw.color)
            cv.paint(Clip(Ellipse(cx, cy - 0.04 * hry, hrx * 1.1, hry * 1.06), 0.0, 1.0, cy - 0.22 * hry), hc,
                     lab(HEAD))
            if view == "front":
                cv.paint(Ellipse(cx, cy - 0.24 * hry, hrx * 1.02, hry * 0.2), _mix(hc, (0, 0, 0), 0.3), lab(HEAD))
            elif side:
                x0, x1 = sorted((cx + sd * 0.6 * hrx, cx + sd * 1.75 * hrx))
                cv.paint(RRect(x0, cy - 0.34 * hry, x1, cy - 0.16 * hry, 0.01), _mix(hc, (0, 0, 0), 0.2),
                         lab(HEAD))
        elif hw.kind == "hat":
            hc = _rgb(hw.color)
            cv.paint(RRect(cx - 0.98 * hrx, cy - 1.32 * hry, cx + 0.98 * hrx, cy - 0.3 * hry, 0.35 * hrx), hc,
                     lab(HEAD))
            cv.paint(RRect(cx - 0.98 * hrx, cy - 0.55 * hry, cx + 0.98 * hrx, cy - 0.38 * hry, 0.0),
                     _mix(hc, (0, 0, 0), 0.45), lab(HEAD))
            cv.paint(Ellipse(cx, cy - 0.34 * hry, 1.7 * hrx, 0.2 * hry), hc, lab(HEAD))

    def _eyes(fx: float) -> None:
        if view == "back":
            return
        dark = _mix(skin, (20, 15, 15), 0.75)
        r = 0.1 * hrx
        if side:
            cv.paint(Ellipse(fx, cy + 0.08 * hry, r, r * 1.2, shade=0.0), dark, lab(HEAD))
        else:
            for ex in (-0.38, 0.38):
                cv.paint(Ellipse(fx + ex * hrx, cy + 0.08 * hry, r, r * 1.2, shade=0.0), dark, lab(HEAD))

    # ---- accessories
    def acc_side_x() -> float:
        """Image-x sign of the accessory's side in front/back views (the person's left is image-right in front)."""
        sgn = 1.0 if acc.side == "left" else -1.0
        return sgn if view == "front" else -sgn

    def acc_is_near() -> bool:
        # walking right (sd=+1) shows the person's left side
        return (acc.side == "left") == (sd == 1)

    def backpack_body(dim: float = 1.0) -> None:
        top, bot = y_sh - 0.012, y_sh + 0.23
        if side:
            x_in = -sd * 0.5 * w_sh
            x_out = -sd * (0.62 * w_sh + 0.085)
            x0, x1 = sorted((x_in, x_out))
            cv.paint(RRect(x0, top + 0.01, x1, bot, 0.025), acc_c, lab(ACC), dim)
        else:
            hw = 0.8 * w_sh
            cv.paint(RRect(-hw, top, hw, bot, 0.03), acc_c, lab(ACC), dim)
            if view == "back":
                cv.paint(RRect(-0.6 * hw, top + 0.12, 0.6 * hw, bot - 0.015, 0.02), _mix(acc_c, (0, 0, 0), 0.25),
                         lab(ACC), dim)

    def backpack_straps() -> None:
        dark = _mix(acc_c, (0, 0, 0), 0.2)
        if side:
            cv.paint(Capsule(-sd * 0.3 * w_sh, y_sh, sd * 0.2 * w_sh, y_sh + 0.15, 0.012), dark, lab(ACC))
            return
        for xs in (-0.55, 0.55):
            cv.paint(Capsule(xs * w_sh, y_sh - 0.005, xs * 0.85 * w_sh, y_sh + 0.16, 0.014), dark, lab(ACC))

    def shoulder_bag(front_layer: bool) -> None:
        bag_w, bag_h = 0.07, 0.085
        dark = _mix(acc_c, (0, 0, 0), 0.25)
        if side:
            if front_layer != acc_is_near():
                return
            bx = 0.015 * sd
            by = y_hip - 0.02
            cv.paint(RRect(bx - bag_w * 0.55, by, bx + bag_w * 0.55, by + bag_h, 0.012), acc_c, lab(ACC),
                     1.0 if front_layer else 0.8)
            if front_layer:
                cv.paint(Capsule(0.0, y_sh, bx, by + 0.01, 0.009), dark, lab(ACC))
            return
        if not front_layer:
            return
        sx = acc_side_x()
        bx = sx * (w_hip + 0.5 * bag_w)
        by = y_hip - 0.03
        cv.paint(Capsule(-sx * 0.6 * w_sh, y_sh, bx - sx * 0.3 * bag_w, by + 0.005, 0.009), dark, lab(ACC))
        cv.paint(RRect(bx - 0.5 * bag_w, by, bx + 0.5 * bag_w, by + bag_h, 0.012), acc_c, lab(ACC))

    def handbag(front_layer: bool) -> None:
        if side:
            if front_layer != acc_is_near():
                return
            wr = arms[near if front_layer else far][2]
        else:
            if not front_layer:
                return
            sx = acc_side_x()
            wr = arms[0][2] if arms[0][2][0] * sx > 0 else arms[1][2]
        x, y = wr[0], wr[1] + 0.03
        dim = 1.0 if front_layer else 0.8
        cv.paint(Capsule(x, y - 0.03, x, y, 0.006), _mix(acc_c, (0, 0, 0), 0.3), lab(ACC), dim)
        cv.paint(Polygon([(x - 0.035, y), (x + 0.035, y), (x + 0.045, y + 0.07), (x - 0.045, y + 0.07)]),
                 acc_c, lab(ACC), dim)

    # ---- paint in depth order
    bag = acc.kind
    if view == "front":
        long_hair()
        if bag == "backpack":
            backpack_body()
        for k in (0, 1):
            leg_parts(k, 1.0)
        pelvis()
        torso()
        if bag == "backpack":
            backpack_straps()
        if bag == "shoulder_bag":
            shoulder_bag(True)
        for k in (0, 1):
            arm_parts(k, 1.0)
        if bag == "handbag":
            handbag(True)
        head()
    elif view == "back":
        for k in (0, 1):
            leg_parts(k, 1.0)
        pelvis()
        torso()
        for k in (0, 1):
            arm_parts(k, 1.0)
        head()
        long_hair()
        ponytail()
        if bag == "backpack":
            backpack_body()
        if bag == "shoulder_bag":
            shoulder_bag(True)
        if bag == "handbag":
            handbag(True)
    else:
        if bag == "shoulder_bag":
            shoulder_bag(False)
        if bag == "handbag":
            handbag(False)
        arm_parts(far, 0.78)
        leg_parts(far, 0.8)
        leg_parts(near, 1.0)
        pelvis()
        long_hair()
        torso()
        if bag == "backpack":
            backpack_body()
            backpack_straps()
        if bag == "shoulder_bag":
            shoulder_bag(True)
        arm_parts(near, 1.0)
        if bag == "handbag":
            handbag(True)
        head()
        ponytail()


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
    dark = _mix(col, (0, 0, 0), 0.35)
    x, w, top = occ.x, occ.width, occ.top
    if occ.kind == "pole":
        cv.paint(RRect(x - w, -2.0, x + w, 3.0, 0.0, shade=0.45), col, BG)
    elif occ.kind == "bin":
        cv.paint(RRect(x - w, top, x + w, 3.0, 0.01, shade=0.35), col, BG)
        cv.paint(RRect(x - w * 1.08, top - 0.02, x + w * 1.08, top + 0.025, 0.008), dark, BG)
    elif occ.kind == "car":
        cv.paint(RRect(x - w, top, x + w, 3.0, 0.06, shade=0.1), col, BG)
        cv.paint(RRect(x - w, top + 0.09, x + w, top + 0.105, 0.0, shade=0.0), _mix(col, (255, 255, 255), 0.5), BG)
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
                             shade=0.35), _mix(col, (0, 0, 0), rng.uniform(0, 0.3)), BG)
        cv.paint(RRect(x - w - 0.05, top + 0.1, x + w + 0.05, 3.0, 0.05), col, BG)
    elif occ.kind == "sign":
        bh = occ.extra[0]
        cv.paint(RRect(x - 0.012, top, x + 0.012, 3.0, 0.0, shade=0.4), (110, 110, 115), BG)
        cv.paint(RRect(x - w, top - bh, x + w, top + bh, 0.01, shade=0.05), col, BG)
        cv.paint(RRect(x - 0.7 * w, top - 0.3 * bh, x + 0.7 * w, top + 0.3 * bh, 0.0, shade=0.0),
                 _mix(col, (255, 255, 255), 0.6), BG)
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
                        _mix(metal, (float(u(0, 255)), float(u(0, 255)), float(u(0, 255))), 0.25))
    if kind == "bin":
        col = ((40, 90, 60), (70, 70, 75), (40, 60, 120), (150, 120, 60))[int(rng.integers(4))]
        return Occluder(kind, float(u(-0.5, 0.5) * hw), float(u(0.1, 0.17)), float(u(0.62, 0.8)), _rgb(col))
    if kind == "car":
        col = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (40, 60, 110), (120, 120, 125))[int(rng.integers(5))]
        return Occluder(kind, float(u(-0.3, 0.3)), 0.7, float(u(0.55, 0.74)), _rgb(col))
    if kind == "railing":
        return Occluder(kind, float(u(-0.1, 0.1)), float(u(0.12, 0.2)), float(u(0.55, 0.72)),
                        _mix(metal, (60, 60, 60), 0.3))
    if kind == "bush":
        return Occluder(kind, float(u(-0.5, 0.5) * hw), float(u(0.12, 0.22)), float(u(0.62, 0.8)),
                        (float(u(40, 70)), float(u(95, 130)), float(u(40, 60))))
    if kind == "sign":
        col = ((30, 80, 160), (30, 120, 60), (190, 40, 40), (220, 180, 40))[int(rng.integers(4))]
        return Occluder(kind, float(rng.choice([-1, 1]) * u(0.5, 0.9) * hw), float(u(0.07, 0.12)),
                        float(u(0.25, 0.6)), _rgb(col), (float(u(0.05, 0.09)),))
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
