"""Identities of the synthetic world: attribute sampling and near-twin (confuser) construction.

An identity is a frozen combination of attributes (body proportions, skin, hair, headwear, upper and
lower garment, shoes, accessory). Colours are RGB tuples in 0..255. Near-twins share every attribute
except the one named by their twin kind (``swap``: upper and lower colours exchanged; ``shoes``,
``accessory``, ``headwear``: only that small part differs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]

#: Garment palette (name, RGB, weight). Dark and neutral colours dominate, as in real street scenes,
#: so that many identities share colours and global colour statistics are ambiguous.
GARMENT_PALETTE: tuple[tuple[str, Color, float], ...] = (
    ("black", (28, 28, 32), 3.0),
    ("charcoal", (62, 62, 68), 2.0),
    ("grey", (128, 128, 130), 2.0),
    ("white", (232, 232, 226), 2.5),
    ("navy", (32, 40, 92), 2.0),
    ("blue", (42, 92, 182), 1.5),
    ("lightblue", (132, 172, 220), 1.0),
    ("red", (192, 32, 38), 1.0),
    ("darkred", (118, 22, 32), 0.6),
    ("green", (42, 122, 62), 0.8),
    ("olive", (102, 110, 52), 0.6),
    ("khaki", (190, 170, 120), 1.0),
    ("brown", (112, 72, 42), 0.8),
    ("yellow", (230, 200, 42), 0.5),
    ("orange", (230, 122, 32), 0.4),
    ("pink", (230, 142, 172), 0.6),
    ("purple", (112, 62, 142), 0.5),
    ("teal", (22, 130, 130), 0.4),
    ("beige", (215, 200, 170), 0.6),
)
#: The source domain (our SYNTH-PEDES analogue) draws from a more saturated, evenly weighted palette.
SOURCE_WEIGHTS: tuple[float, ...] = tuple(1.0 for _ in GARMENT_PALETTE)

SKIN_TONES: tuple[Color, ...] = (
    (250, 220, 195), (238, 196, 160), (222, 172, 130), (190, 140, 100), (150, 102, 68), (102, 68, 45),
)
HAIR_COLORS: tuple[Color, ...] = (
    (20, 16, 14), (52, 34, 22), (96, 62, 36), (200, 168, 100), (150, 150, 150), (140, 60, 30),
)
HAIR_WEIGHTS = (4.0, 3.0, 1.5, 1.0, 0.6, 0.4)
SHOE_COLORS: tuple[Color, ...] = (
    (24, 24, 26), (236, 236, 232), (96, 60, 36), (120, 120, 124), (180, 40, 40), (40, 70, 150), (200, 180, 140),
)
SHOE_WEIGHTS = (4.0, 3.0, 1.2, 1.2, 0.5, 0.5, 0.6)

HAIR_STYLES = ("short", "long", "buzz", "ponytail")
HEADWEAR_KINDS = ("none", "cap", "hat", "hood")
PATTERNS = ("solid", "stripes", "checks", "logo")
SLEEVES = ("long", "short")
LOWER_KINDS = ("trousers", "shorts", "skirt")
ACCESSORY_KINDS = ("none", "backpack", "shoulder_bag", "handbag")
LOGO_SHAPES = ("circle", "square", "diamond")
TWIN_KINDS = ("swap", "shoes", "accessory", "headwear")


@dataclass(frozen=True)
class Body:
    """Body proportions, relative to a nominal person of height 1."""

    height: float  # overall scale (0.92..1.08)
    head: float  # head size factor
    shoulder: float  # shoulder half width
    hip: float  # hip half width
    leg: float  # leg length as a fraction of the height
    gait: float  # walking swing amplitude (radians)


@dataclass(frozen=True)
class Hair:
    color: Color
    style: str


@dataclass(frozen=True)
class Headwear:
    kind: str
    color: Color


@dataclass(frozen=True)
class Upper:
    color: Color
    pattern: str
    color2: Color  # stripes / checks / logo colour
    sleeve: str
    logo_shape: str


@dataclass(frozen=True)
class Lower:
    kind: str
    color: Color


@dataclass(frozen=True)
class Shoes:
    color: Color


@dataclass(frozen=True)
class Accessory:
    kind: str
    color: Color
    side: str  # the person's "left" or "right"


@dataclass(frozen=True)
class Identity:
    """One synthetic person. ``twin_of``/``twin_kind`` link a near-twin to its base identity."""

    body: Body
    skin: Color
    hair: Hair
    headwear: Headwear
    upper: Upper
    lower: Lower
    shoes: Shoes
    accessory: Accessory
    twin_of: int | None = None  # index (within its split) of the base identity
    twin_kind: str | None = None

    def attributes(self) -> dict:
        """Attribute dictionary without the twin bookkeeping (JSON friendly)."""
        d = dataclasses.asdict(self)
        d.pop("twin_of")
        d.pop("twin_kind")
        return d

    def fingerprint(self) -> str:
        """Stable hash of the attributes; two identities are the same person iff fingerprints match."""
        return hashlib.sha1(json.dumps(self.attributes(), sort_keys=True).encode()).hexdigest()[:16]


def _jitter(rng: np.random.Generator, c: Color, amount: int = 10) -> Color:
    d = rng.integers(-amount, amount + 1, size=3)
    return (min(255, max(0, c[0] + int(d[0]))), min(255, max(0, c[1] + int(d[1]))), min(255, max(0, c[2] + int(d[2]))))


def _choice(rng: np.random.Generator, items: tuple, weights: tuple[float, ...] | None = None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    r = rng.random() * sum(weights)
    acc = 0.0
    for item, w in zip(items, weights, strict=True):
        acc += w
        if r < acc:
            return item
    return items[-1]


_PALETTE_RGB = tuple(c for _, c, _ in GARMENT_PALETTE)
_TARGET_WEIGHTS = tuple(w for *_, w in GARMENT_PALETTE)


def _garment(rng: np.random.Generator, space: str, exclude: Color | None = None) -> Color:
    """A palette colour (jittered); with ``exclude`` the colour is at least 90 away (RGB L2) from it."""
    w = SOURCE_WEIGHTS if space == "source" else _TARGET_WEIGHTS
    if exclude is not None:
        w = tuple(wi if sum((a - b) ** 2 for a, b in zip(c, exclude, strict=True)) > 90**2 else 0.0
                  for c, wi in zip(_PALETTE_RGB, w, strict=True))
    return _jitter(rng, _choice(rng, _PALETTE_RGB, w), 12)


def sample_identity(rng: np.random.Generator, space: str = "target") -> Identity:
    """Draw one identity. ``space`` is ``"target"`` (Market/MSMT-like) or ``"source"``."""
    if space not in ("target", "source"):
        raise ValueError(f"identity space must be 'target' or 'source', got {space!r}")
    u = rng.uniform
    body = Body(
        height=float(u(0.92, 1.08)), head=float(u(0.9, 1.12)), shoulder=float(u(0.118, 0.155)),
        hip=float(u(0.095, 0.128)), leg=float(u(0.44, 0.51)), gait=float(u(0.22, 0.42)),
    )
    skin = _jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 8)
    hair = Hair(_jitter(rng, _choice(rng, HAIR_COLORS, HAIR_WEIGHTS), 8),
                _choice(rng, HAIR_STYLES, (4.0, 2.5, 1.5, 1.0)))
    upper_color = _garment(rng, space)
    pattern = _choice(rng, PATTERNS, (0.5, 0.16, 0.14, 0.2) if space == "target" else (0.3, 0.25, 0.2, 0.25))
    upper = Upper(upper_color, pattern, _garment(rng, space, exclude=upper_color),
                  _choice(rng, SLEEVES, (0.55, 0.45)), _choice(rng, LOGO_SHAPES))
    hw_kind = _choice(rng, HEADWEAR_KINDS, (0.62, 0.15, 0.08, 0.15))
    hw_color = upper_color if hw_kind == "hood" and rng.random() < 0.7 else _garment(rng, space)
    headwear = Headwear(hw_kind, hw_color)
    lower = Lower(_choice(rng, LOWER_KINDS, (0.66, 0.2, 0.14)), _garment(rng, space))
    shoes = Shoes(_jitter(rng, _choice(rng, SHOE_COLORS, SHOE_WEIGHTS), 8))
    accessory = Accessory(_choice(rng, ACCESSORY_KINDS, (0.42, 0.26, 0.16, 0.16)), _garment(rng, space),
                          _choice(rng, ("left", "right")))
    return Identity(body, skin, hair, headwear, upper, lower, shoes, accessory)


def make_twin(base: Identity, kind: str, rng: np.random.Generator, base_index: int | None = None
              ) -> tuple[Identity, Identity]:
    """Return ``(base', twin)``: ``twin`` differs from ``base'`` only in the attribute named by ``kind``.

    ``base'`` equals ``base`` except for ``swap`` twins, where the lower colour is redrawn first if it is
    too close to the upper colour (so that the swap is a visible change).
    """
    r = dataclasses.replace
    if kind == "swap":
        up, lo = base.upper.color, base.lower.color
        if np.linalg.norm(np.subtract(up, lo, dtype=float)) < 90:
            base = r(base, lower=r(base.lower, color=_garment(rng, "target", exclude=up)))
        twin = r(base, upper=r(base.upper, color=base.lower.color), lower=r(base.lower, color=base.upper.color))
    elif kind == "shoes":
        others = [c for c in SHOE_COLORS if np.linalg.norm(np.subtract(c, base.shoes.color, dtype=float)) > 80]
        twin = r(base, shoes=Shoes(_jitter(rng, others[int(rng.integers(len(others)))], 8)))
    elif kind == "accessory":
        acc = base.accessory
        if acc.kind == "none":
            new = r(acc, kind=_choice(rng, ACCESSORY_KINDS[1:]))
        elif rng.random() < 0.5:
            new = r(acc, kind=_choice(rng, tuple(k for k in ACCESSORY_KINDS if k != acc.kind)))
        else:
            new = r(acc, color=_garment(rng, "target", exclude=acc.color))
        twin = r(base, accessory=new)
    elif kind == "headwear":
        hw = base.headwear
        new_kind = _choice(rng, tuple(k for k in HEADWEAR_KINDS if k != hw.kind))
        twin = r(base, headwear=r(hw, kind=new_kind))
    else:
        raise ValueError(f"unknown twin kind {kind!r}; expected one of {TWIN_KINDS}")
    return base, r(twin, twin_of=base_index, twin_kind=kind)


def differing_fields(a: Identity, b: Identity) -> set[str]:
    """Names of top-level attributes (``upper``, ``lower``, ``shoes``, ...) in which ``a`` and ``b`` differ."""
    da, db = a.attributes(), b.attributes()
    return {k for k in da if da[k] != db[k]}


TWIN_FIELDS: dict[str, set[str]] = {
    "swap": {"upper", "lower"}, "shoes": {"shoes"}, "accessory": {"accessory"}, "headwear": {"headwear"},
}
