"""The target person: pose geometry, then body parts, garments and bags painted in depth order.

Body coordinates as in :mod:`.render`: head top at ``y = 0``, soles at ``y = 1``, ``x = 0`` on the body axis;
widths are divided by the identity's height factor. :func:`pose` computes the geometry once per image
(head, shoulders, hips, the joints of both legs and arms); each ``paint_*`` function paints one part from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .identity import Identity
from .shapes import Canvas, Capsule, Clip, Ellipse, Fill, Polygon, RRect, mix, rgb

PART_NAMES = ["background", "head", "upper_body", "lower_body", "shoes", "accessory"]
BG, HEAD, UPPER, LOWER, SHOES, ACC = range(6)
VIEWS = ("front", "back", "side_left", "side_right")

Point = tuple[float, float]
Limb = tuple[Point, Point, Point]  # (hip, knee, ankle) or (shoulder, elbow, wrist)


@dataclass(frozen=True)
class Pose:
    """Geometry and colours of one person in one view and walking phase (see :func:`pose`)."""

    idn: Identity
    view: str
    labels: bool  # False: every part is labelled background (other pedestrians)
    sd: int  # walking direction in side views (-1 left, +1 right), 0 in front/back views
    side: bool
    near: int  # index of the leg/arm nearer to the camera in a side view
    far: int
    ws: float  # width scale (1 / height factor)
    skin: tuple[float, float, float]
    hair_c: tuple[float, float, float]
    up_c: tuple[float, float, float]
    lo_c: tuple[float, float, float]
    shoe_c: tuple[float, float, float]
    acc_c: tuple[float, float, float]
    hrx: float  # head radii and centre
    hry: float
    cx: float
    cy: float
    y_sh: float  # shoulder height
    foot_h: float
    y_hip: float
    w_sh: float  # shoulder and hip half widths
    w_hip: float
    r_th: float  # thigh, shin, upper-arm and forearm radii
    r_sh: float
    r_ua: float
    r_fa: float
    legs: tuple[Limb, Limb]  # index 0 = the person's right leg
    arms: tuple[Limb, Limb]

    def lab(self, v: int) -> int:
        """The label ``v``, or background for an unlabelled person."""
        return v if self.labels else BG


def _side_dir(view: str) -> int:
    return {"side_left": -1, "side_right": 1}.get(view, 0)


def _legs(view: str, sd: int, g: float, s: float, c: float, L: float, y_hip: float, foot_h: float, w_hip: float
          ) -> tuple[Limb, Limb]:
    """(hip, knee, ankle) of both legs; index 0 = the person's right leg."""
    legs = []
    lt, ls = 0.5 * L, 0.5 * L
    for k, sign in enumerate((1.0, -1.0)):
        th = g * s * sign
        if sd != 0:
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
    return legs[0], legs[1]


def _arms(view: str, sd: int, g: float, s: float, y_sh: float, w_sh: float, r_ua: float) -> tuple[Limb, Limb]:
    """(shoulder, elbow, wrist) of both arms, swinging opposite to the legs."""
    arms = []
    la, lf = 0.165, 0.15
    for k, sign in enumerate((1.0, -1.0)):
        a = -0.9 * g * s * sign
        if sd != 0:
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
    return arms[0], arms[1]


def pose(idn: Identity, view: str, phase: float, labels: bool = True) -> Pose:
    """Body geometry of ``idn`` seen from ``view`` at walking ``phase``."""
    b = idn.body
    ws = 1.0 / b.height
    sd = _side_dir(view)
    hry, hrx = 0.066 * b.head, 0.052 * b.head * ws
    y_sh = 2 * hry + 0.03
    foot_h = 0.022
    y_hip = 1.0 - foot_h - b.leg
    w_sh, w_hip = b.shoulder * ws, b.hip * ws
    r_ua = 0.03 * ws
    s, c = math.sin(phase), math.cos(phase)
    near = 0 if sd == -1 else 1  # the right side faces the camera when walking left
    legs = _legs(view, sd, b.gait, s, c, b.leg, y_hip, foot_h, w_hip)
    arms = _arms(view, sd, b.gait, s, y_sh, w_sh, r_ua)
    return Pose(idn, view, labels, sd, sd != 0, near, 1 - near, ws, rgb(idn.skin), rgb(idn.hair.color),
                rgb(idn.upper.color), rgb(idn.lower.color), rgb(idn.shoes.color), rgb(idn.accessory.color),
                hrx, hry, 0.0, hry, y_sh, foot_h, y_hip, w_sh, w_hip, 0.46 * w_hip, 0.3 * w_hip, r_ua, 0.024 * ws,
                legs, arms)


# ----------------------------------------------------------------------------------------------------------
# limbs


def paint_leg(cv: Canvas, p: Pose, k: int, dim: float) -> None:
    """Leg ``k`` (trousers or bare, shorts over the thigh) and its shoe."""
    hip, knee, ank = p.legs[k]
    lo = p.idn.lower
    leg_col = p.lo_c if lo.kind == "trousers" else p.skin
    cv.paint(Capsule(*hip, *knee, p.r_th, p.r_sh * 1.12), leg_col, p.lab(LOWER), dim)
    cv.paint(Capsule(*knee, *ank, p.r_sh * 1.12, p.r_sh * 0.9), leg_col, p.lab(LOWER), dim)
    if lo.kind == "shorts":
        t = 0.62
        mid = (hip[0] + t * (knee[0] - hip[0]), hip[1] + t * (knee[1] - hip[1]))
        cv.paint(Capsule(*hip, *mid, p.r_th * 1.08, p.r_th * 1.0), p.lo_c, p.lab(LOWER), dim)
    paint_shoe(cv, p, ank, dim)


def paint_shoe(cv: Canvas, p: Pose, ank: Point, dim: float) -> None:
    """The shoe below ankle ``ank``: pointing forward in side views, seen end-on otherwise."""
    if p.side:
        fx = ank[0] + p.sd * 0.022
        cv.paint(Ellipse(fx, ank[1] + 0.45 * p.foot_h, 0.042, 0.021), p.shoe_c, p.lab(SHOES), dim)
    else:
        cv.paint(Ellipse(ank[0], ank[1] + 0.45 * p.foot_h, 0.03 * p.ws, 0.022), p.shoe_c, p.lab(SHOES), dim)


def paint_arm(cv: Canvas, p: Pose, k: int, dim: float) -> None:
    """Arm ``k``: sleeve, forearm (sleeve or skin) and hand."""
    sh, el, wr = p.arms[k]
    up, up_c, r_ua, r_fa = p.idn.upper, p.up_c, p.r_ua, p.r_fa
    sleeve = up_c
    fore = up_c if up.sleeve == "long" else p.skin
    cv.paint(Capsule(*sh, *el, r_ua, r_ua * 0.9), sleeve, p.lab(UPPER), dim)
    cv.paint(Capsule(*el, *wr, r_ua * 0.85, r_fa), fore, p.lab(UPPER), dim)
    if up.sleeve == "short":
        mid = (sh[0] + 0.55 * (el[0] - sh[0]), sh[1] + 0.55 * (el[1] - sh[1]))
        cv.paint(Capsule(*sh, *mid, r_ua * 1.12, r_ua * 1.05), up_c, p.lab(UPPER), dim)
    cv.paint(Ellipse(wr[0], wr[1] + 0.018, r_fa * 1.05, 0.022), p.skin, p.lab(UPPER), dim)


# ----------------------------------------------------------------------------------------------------------
# garments on the trunk


def _upper_fill(p: Pose) -> Fill:
    """The upper garment's fill: its colour, or a stripes/checks pattern of its two colours."""
    up, up_c, y_sh = p.idn.upper, p.up_c, p.y_sh
    if up.pattern == "stripes":
        c1, c2 = np.asarray(up_c, np.float32), np.asarray(rgb(up.color2), np.float32)

        def f(X, Y):
            m = (np.sin((Y - y_sh) * (2 * np.pi / 0.042)) > 0)[..., None]
            return np.where(np.broadcast_to(m, np.broadcast_shapes(m.shape, X[..., None].shape)), c1, c2)

        return f
    if up.pattern == "checks":
        c1, c2 = np.asarray(up_c, np.float32), np.asarray(rgb(up.color2), np.float32)

        def f(X, Y):
            m = ((np.floor(X / 0.048) + np.floor((Y - y_sh) / 0.048)) % 2 == 0)[..., None]
            return np.where(m, c1, c2)

        return f
    return up_c


def paint_torso(cv: Canvas, p: Pose, dim: float = 1.0) -> None:
    """The upper garment's trunk, with its logo in the front view."""
    y_sh, y_hip, w_sh, w_hip = p.y_sh, p.y_hip, p.w_sh, p.w_hip
    y_w = y_sh + 0.62 * (y_hip - y_sh)
    yb = y_hip + 0.035
    if p.side:
        d_sh, d_w, d_h = 0.62 * w_sh, 0.56 * w_sh, 0.7 * w_hip
        o = 0.012 * p.sd
        pts = [(o - d_sh, y_sh), (o + d_sh, y_sh), (d_w, y_w), (d_h, yb), (-d_h, yb), (-d_w, y_w)]
    else:
        pts = [(-w_sh, y_sh + 0.01), (-w_sh * 0.8, y_sh - 0.008), (w_sh * 0.8, y_sh - 0.008),
               (w_sh, y_sh + 0.01), (0.86 * w_sh, y_w), (1.02 * w_hip, yb), (-1.02 * w_hip, yb),
               (-0.86 * w_sh, y_w)]
    cv.paint(Polygon(pts, round=0.006), _upper_fill(p), p.lab(UPPER), dim)
    up = p.idn.upper
    if up.pattern == "logo" and p.view == "front":
        ly, r = y_sh + 0.3 * (y_hip - y_sh), 0.034 * p.ws
        c2 = rgb(up.color2)
        if up.logo_shape == "circle":
            cv.paint(Ellipse(0.0, ly, r, r, shade=0.0), c2, p.lab(UPPER))
        elif up.logo_shape == "square":
            cv.paint(RRect(-r, ly - r, r, ly + r, 0.004, shade=0.0), c2, p.lab(UPPER))
        else:
            cv.paint(Polygon([(0, ly - 1.3 * r), (1.3 * r, ly), (0, ly + 1.3 * r), (-1.3 * r, ly)], shade=0.0),
                     c2, p.lab(UPPER))


def paint_pelvis(cv: Canvas, p: Pose, dim: float = 1.0) -> None:
    """The lower garment's top: a skirt down to the knees, or the waist of trousers and shorts."""
    y_hip, w_hip, lo_c = p.y_hip, p.w_hip, p.lo_c
    if p.idn.lower.kind == "skirt":
        knee_y = p.legs[0][1][1]
        bot = knee_y + 0.015
        if p.side:
            pts = [(-0.75 * w_hip, y_hip - 0.03), (0.75 * w_hip, y_hip - 0.03), (1.15 * w_hip, bot),
                   (-1.15 * w_hip, bot)]
        else:
            pts = [(-1.02 * w_hip, y_hip - 0.03), (1.02 * w_hip, y_hip - 0.03), (1.5 * w_hip, bot),
                   (-1.5 * w_hip, bot)]
        cv.paint(Polygon(pts), lo_c, p.lab(LOWER), dim)
        return
    hw = 0.72 * w_hip if p.side else 1.0 * w_hip
    cv.paint(Polygon([(-hw, y_hip - 0.03), (hw, y_hip - 0.03), (hw * 0.98, y_hip + 0.07),
                      (-hw * 0.98, y_hip + 0.07)], shade=0.2), lo_c, p.lab(LOWER), dim)


# ----------------------------------------------------------------------------------------------------------
# head, hair and headwear


def paint_long_hair(cv: Canvas, p: Pose) -> None:
    """Long hair falling behind the shoulders (hidden by a hood)."""
    idn, hrx, cx, cy, sd = p.idn, p.hrx, p.cx, p.cy, p.sd
    if idn.hair.style != "long" or idn.headwear.kind == "hood":
        return
    if p.side:
        cv.paint(Capsule(cx - sd * 0.4 * hrx, cy, cx - sd * 0.75 * hrx, p.y_sh + 0.06, 0.9 * hrx, 0.6 * hrx),
                 p.hair_c, p.lab(HEAD))
    else:
        cv.paint(RRect(cx - 1.08 * hrx, cy - 0.2 * p.hry, cx + 1.08 * hrx, p.y_sh + 0.075, 0.5 * hrx), p.hair_c,
                 p.lab(HEAD))


def paint_ponytail(cv: Canvas, p: Pose) -> None:
    """A ponytail, seen from the back and the sides (hidden by a hood)."""
    idn, hrx, hry, cx, cy, sd = p.idn, p.hrx, p.hry, p.cx, p.cy, p.sd
    if idn.hair.style != "ponytail" or idn.headwear.kind == "hood" or p.view == "front":
        return
    if p.side:
        cv.paint(Capsule(cx - sd * 0.9 * hrx, cy - 0.2 * hry, cx - sd * 1.35 * hrx, cy + 1.3 * hry,
                         0.32 * hrx, 0.18 * hrx), p.hair_c, p.lab(HEAD))
    else:
        cv.paint(Capsule(cx, cy, cx, cy + 1.7 * hry, 0.32 * hrx, 0.2 * hrx), p.hair_c, p.lab(HEAD))


def _paint_eyes(cv: Canvas, p: Pose, fx: float) -> None:
    """Eyes of a face centred at ``fx`` (one in side views, none from the back)."""
    if p.view == "back":
        return
    hrx, cy = p.hrx, p.cy
    dark = mix(p.skin, (20, 15, 15), 0.75)
    r = 0.1 * hrx
    if p.side:
        cv.paint(Ellipse(fx, cy + 0.08 * p.hry, r, r * 1.2, shade=0.0), dark, p.lab(HEAD))
    else:
        for ex in (-0.38, 0.38):
            cv.paint(Ellipse(fx + ex * hrx, cy + 0.08 * p.hry, r, r * 1.2, shade=0.0), dark, p.lab(HEAD))


def _paint_hood(cv: Canvas, p: Pose) -> None:
    """A hood over the head, with the face (and eyes) inside it unless seen from the back."""
    hrx, hry, cx, cy, sd, y_sh = p.hrx, p.hry, p.cx, p.cy, p.sd, p.y_sh
    hc = rgb(p.idn.headwear.color)
    if p.view == "back":
        cv.paint(Polygon([(cx - 1.2 * hrx, cy), (cx + 1.2 * hrx, cy), (cx + 1.0 * hrx, y_sh + 0.07),
                          (cx - 1.0 * hrx, y_sh + 0.07)]), hc, p.lab(HEAD))
        cv.paint(Ellipse(cx, cy - 0.02, 1.28 * hrx, 1.18 * hry), hc, p.lab(HEAD))
    else:
        cv.paint(Ellipse(cx - 0.1 * sd * hrx, cy - 0.02, 1.28 * hrx, 1.18 * hry), hc, p.lab(HEAD))
        cv.paint(RRect(cx - 1.1 * hrx, cy, cx + 1.1 * hrx, y_sh + 0.02, 0.3 * hrx), hc, p.lab(HEAD))
        fx = cx + 0.35 * sd * hrx
        cv.paint(Ellipse(fx, cy + 0.1 * hry, (0.55 if p.side else 0.78) * hrx, 0.8 * hry), p.skin, p.lab(HEAD))
        _paint_eyes(cv, p, fx)


def _paint_face_and_hair(cv: Canvas, p: Pose) -> None:
    """The bare head: skin, hair (buzz cuts thin and skin-tinted) and eyes."""
    idn, hrx, hry, cx, cy, sd = p.idn, p.hrx, p.hry, p.cx, p.cy, p.sd
    hair = p.hair_c if idn.hair.style != "buzz" else mix(p.hair_c, p.skin, 0.45)
    grow = 1.02 if idn.hair.style == "buzz" else 1.1
    if p.view == "back":
        cv.paint(Ellipse(cx, cy, hrx * 1.04, hry * 1.02), p.skin, p.lab(HEAD))
        cv.paint(Ellipse(cx, cy - 0.05 * hry, hrx * (grow - 0.02), hry * (grow - 0.06)), hair, p.lab(HEAD))
    elif p.side:
        cv.paint(Ellipse(cx, cy, hrx * 1.08, hry), p.skin, p.lab(HEAD))
        cv.paint(Clip(Ellipse(cx - sd * 0.12 * hrx, cy - 0.1 * hry, hrx * grow, hry * (grow - 0.05)),
                      sd * 1.0, 0.6, sd * cx + 0.05 * hrx + 0.6 * cy), hair, p.lab(HEAD))
        _paint_eyes(cv, p, cx + sd * 0.55 * hrx)
    else:
        cv.paint(Ellipse(cx, cy - 0.08 * hry, hrx * grow, hry * (grow - 0.04)), hair, p.lab(HEAD))
        cv.paint(Ellipse(cx, cy + 0.12 * hry, hrx * 0.92, hry * 0.9), p.skin, p.lab(HEAD))
        _paint_eyes(cv, p, cx)


def _paint_cap_or_hat(cv: Canvas, p: Pose) -> None:
    """A cap (visor to the front or side) or a hat with band and brim on the head."""
    hw, hrx, hry, cx, cy, sd = p.idn.headwear, p.hrx, p.hry, p.cx, p.cy, p.sd
    if hw.kind == "cap":
        hc = rgb(hw.color)
        cv.paint(Clip(Ellipse(cx, cy - 0.04 * hry, hrx * 1.1, hry * 1.06), 0.0, 1.0, cy - 0.22 * hry), hc,
                 p.lab(HEAD))
        if p.view == "front":
            cv.paint(Ellipse(cx, cy - 0.24 * hry, hrx * 1.02, hry * 0.2), mix(hc, (0, 0, 0), 0.3), p.lab(HEAD))
        elif p.side:
            x0, x1 = sorted((cx + sd * 0.6 * hrx, cx + sd * 1.75 * hrx))
            cv.paint(RRect(x0, cy - 0.34 * hry, x1, cy - 0.16 * hry, 0.01), mix(hc, (0, 0, 0), 0.2),
                     p.lab(HEAD))
    elif hw.kind == "hat":
        hc = rgb(hw.color)
        cv.paint(RRect(cx - 0.98 * hrx, cy - 1.32 * hry, cx + 0.98 * hrx, cy - 0.3 * hry, 0.35 * hrx), hc,
                 p.lab(HEAD))
        cv.paint(RRect(cx - 0.98 * hrx, cy - 0.55 * hry, cx + 0.98 * hrx, cy - 0.38 * hry, 0.0),
                 mix(hc, (0, 0, 0), 0.45), p.lab(HEAD))
        cv.paint(Ellipse(cx, cy - 0.34 * hry, 1.7 * hrx, 0.2 * hry), hc, p.lab(HEAD))


def paint_head(cv: Canvas, p: Pose) -> None:
    """Neck, then either a hood or the bare head with its cap or hat."""
    hrx, cx = p.hrx, p.cx
    cv.paint(RRect(cx - 0.45 * hrx, p.cy + 0.6 * p.hry, cx + 0.45 * hrx, p.y_sh + 0.01, 0.005), p.skin, p.lab(HEAD))
    if p.idn.headwear.kind == "hood":
        _paint_hood(cv, p)
        return
    _paint_face_and_hair(cv, p)
    _paint_cap_or_hat(cv, p)


# ----------------------------------------------------------------------------------------------------------
# bags


def _bag_side_x(p: Pose) -> float:
    """Image-x sign of the accessory's side in front/back views (the person's left is image-right in front)."""
    sgn = 1.0 if p.idn.accessory.side == "left" else -1.0
    return sgn if p.view == "front" else -sgn


def _bag_is_near(p: Pose) -> bool:
    """Whether a side view shows the accessory's side (walking right shows the person's left)."""
    return (p.idn.accessory.side == "left") == (p.sd == 1)


def paint_backpack_body(cv: Canvas, p: Pose, dim: float = 1.0) -> None:
    """The backpack's pack: behind the shoulders, with a front pocket seen from the back."""
    y_sh, w_sh, sd, acc_c = p.y_sh, p.w_sh, p.sd, p.acc_c
    top, bot = y_sh - 0.012, y_sh + 0.23
    if p.side:
        x_in = -sd * 0.5 * w_sh
        x_out = -sd * (0.62 * w_sh + 0.085)
        x0, x1 = sorted((x_in, x_out))
        cv.paint(RRect(x0, top + 0.01, x1, bot, 0.025), acc_c, p.lab(ACC), dim)
    else:
        hw = 0.8 * w_sh
        cv.paint(RRect(-hw, top, hw, bot, 0.03), acc_c, p.lab(ACC), dim)
        if p.view == "back":
            cv.paint(RRect(-0.6 * hw, top + 0.12, 0.6 * hw, bot - 0.015, 0.02), mix(acc_c, (0, 0, 0), 0.25),
                     p.lab(ACC), dim)


def paint_backpack_straps(cv: Canvas, p: Pose) -> None:
    """The backpack's shoulder straps over the torso."""
    y_sh, w_sh, sd = p.y_sh, p.w_sh, p.sd
    dark = mix(p.acc_c, (0, 0, 0), 0.2)
    if p.side:
        cv.paint(Capsule(-sd * 0.3 * w_sh, y_sh, sd * 0.2 * w_sh, y_sh + 0.15, 0.012), dark, p.lab(ACC))
        return
    for xs in (-0.55, 0.55):
        cv.paint(Capsule(xs * w_sh, y_sh - 0.005, xs * 0.85 * w_sh, y_sh + 0.16, 0.014), dark, p.lab(ACC))


def paint_shoulder_bag(cv: Canvas, p: Pose, front_layer: bool) -> None:
    """A shoulder bag at the hip with its strap; in side views only on its layer (near side in front)."""
    y_sh, y_hip, w_sh, acc_c = p.y_sh, p.y_hip, p.w_sh, p.acc_c
    bag_w, bag_h = 0.07, 0.085
    dark = mix(acc_c, (0, 0, 0), 0.25)
    if p.side:
        if front_layer != _bag_is_near(p):
            return
        bx = 0.015 * p.sd
        by = y_hip - 0.02
        cv.paint(RRect(bx - bag_w * 0.55, by, bx + bag_w * 0.55, by + bag_h, 0.012), acc_c, p.lab(ACC),
                 1.0 if front_layer else 0.8)
        if front_layer:
            cv.paint(Capsule(0.0, y_sh, bx, by + 0.01, 0.009), dark, p.lab(ACC))
        return
    if not front_layer:
        return
    sx = _bag_side_x(p)
    bx = sx * (p.w_hip + 0.5 * bag_w)
    by = y_hip - 0.03
    cv.paint(Capsule(-sx * 0.6 * w_sh, y_sh, bx - sx * 0.3 * bag_w, by + 0.005, 0.009), dark, p.lab(ACC))
    cv.paint(RRect(bx - 0.5 * bag_w, by, bx + 0.5 * bag_w, by + bag_h, 0.012), acc_c, p.lab(ACC))


def paint_handbag(cv: Canvas, p: Pose, front_layer: bool) -> None:
    """A handbag hanging from the wrist on the accessory's side; in side views only on its layer."""
    arms = p.arms
    if p.side:
        if front_layer != _bag_is_near(p):
            return
        wr = arms[p.near if front_layer else p.far][2]
    else:
        if not front_layer:
            return
        sx = _bag_side_x(p)
        wr = arms[0][2] if arms[0][2][0] * sx > 0 else arms[1][2]
    x, y = wr[0], wr[1] + 0.03
    dim = 1.0 if front_layer else 0.8
    cv.paint(Capsule(x, y - 0.03, x, y, 0.006), mix(p.acc_c, (0, 0, 0), 0.3), p.lab(ACC), dim)
    cv.paint(Polygon([(x - 0.035, y), (x + 0.035, y), (x + 0.045, y + 0.07), (x - 0.045, y + 0.07)]),
             p.acc_c, p.lab(ACC), dim)


# ----------------------------------------------------------------------------------------------------------
# depth order per view


def _paint_legs_and_trunk(cv: Canvas, p: Pose) -> None:
    """Front and back views: both legs, then the lower garment's top and the torso over them."""
    for k in (0, 1):
        paint_leg(cv, p, k, 1.0)
    paint_pelvis(cv, p)
    paint_torso(cv, p)


def _paint_front(cv: Canvas, p: Pose) -> None:
    """Front view, back to front: long hair, backpack, legs, trunk, straps and bags, arms, head."""
    bag = p.idn.accessory.kind
    paint_long_hair(cv, p)
    if bag == "backpack":
        paint_backpack_body(cv, p)
    _paint_legs_and_trunk(cv, p)
    if bag == "backpack":
        paint_backpack_straps(cv, p)
    if bag == "shoulder_bag":
        paint_shoulder_bag(cv, p, True)
    for k in (0, 1):
        paint_arm(cv, p, k, 1.0)
    if bag == "handbag":
        paint_handbag(cv, p, True)
    paint_head(cv, p)


def _paint_back(cv: Canvas, p: Pose) -> None:
    """Back view, back to front: legs, trunk, arms, head, hair, then the bags over everything."""
    bag = p.idn.accessory.kind
    _paint_legs_and_trunk(cv, p)
    for k in (0, 1):
        paint_arm(cv, p, k, 1.0)
    paint_head(cv, p)
    paint_long_hair(cv, p)
    paint_ponytail(cv, p)
    if bag == "backpack":
        paint_backpack_body(cv, p)
    if bag == "shoulder_bag":
        paint_shoulder_bag(cv, p, True)
    if bag == "handbag":
        paint_handbag(cv, p, True)


def _paint_side(cv: Canvas, p: Pose) -> None:
    """Side view, back to front: far-side bag, arm and leg (dimmed), near leg, trunk, backpack, near side, head."""
    bag = p.idn.accessory.kind
    if bag == "shoulder_bag":
        paint_shoulder_bag(cv, p, False)
    if bag == "handbag":
        paint_handbag(cv, p, False)
    paint_arm(cv, p, p.far, 0.78)
    paint_leg(cv, p, p.far, 0.8)
    paint_leg(cv, p, p.near, 1.0)
    paint_pelvis(cv, p)
    paint_long_hair(cv, p)
    paint_torso(cv, p)
    if bag == "backpack":
        paint_backpack_body(cv, p)
        paint_backpack_straps(cv, p)
    if bag == "shoulder_bag":
        paint_shoulder_bag(cv, p, True)
    paint_arm(cv, p, p.near, 1.0)
    if bag == "handbag":
        paint_handbag(cv, p, True)
    paint_head(cv, p)
    paint_ponytail(cv, p)


def draw_person(cv: Canvas, idn: Identity, view: str, phase: float, labels: bool = True) -> None:
    """Paint ``idn`` seen from ``view`` at walking ``phase``; with ``labels=False`` every label is background."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    paint = {"front": _paint_front, "back": _paint_back}.get(view, _paint_side)
    paint(cv, pose(idn, view, phase, labels))
