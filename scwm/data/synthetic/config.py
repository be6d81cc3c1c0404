"""Typed configuration of the synthetic world: presets and camera styles.

A :class:`SyntheticConfig` fixes the dataset layout (identities, cameras, images per identity) and the
crop statistics (detector jitter, incomplete crops, occluders). Camera styles (colour cast, brightness,
blur, noise, JPEG quality, background scenes) are drawn per camera from the config's ``camera_domain``
and the seed, so the ``source`` domain never shares camera styles with the targets.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

IntRange = tuple[int, int]
SceneKind = Literal["street", "park", "indoor", "studio"]


class SyntheticConfig(BaseModel):
    """Layout and crop statistics of one synthetic dataset (see the module docstring for presets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image_height: int = Field(128, ge=32, le=1024)
    image_width: int = Field(64, ge=16, le=512)
    num_cameras: int = Field(ge=2, le=99)
    camera_domain: Literal["market", "msmt", "source", "source-large"]
    """Camera family; ``source-large`` draws studio cameras like ``source`` from its own random stream."""
    identity_space: Literal["target", "source"] = "target"
    pid_offset: int = Field(0, ge=0)
    num_train_ids: int = Field(ge=1)
    num_test_ids: int = Field(ge=1)
    train_cams_per_id: IntRange = (2, 4)
    test_cams_per_id: IntRange = (2, 5)
    images_per_track: IntRange = (2, 5)  # images of one identity in one camera
    query_cams_per_id: IntRange = (2, 3)  # cameras contributing one query image each (capped by the id's cameras)
    num_distractors: int = Field(0, ge=0)  # gallery images with pid 0
    twin_fraction: float = Field(0.4, ge=0.0, le=1.0)  # share of identities that have a near-twin
    twin_kind_weights: dict[str, float] = {"swap": 0.4, "shoes": 0.2, "accessory": 0.2, "headwear": 0.2}
    # crops
    jitter_scale: float = Field(0.06, ge=0.0, le=0.5)  # std of the log box scale
    jitter_x: float = Field(0.05, ge=0.0, le=0.5)  # std of horizontal offset (box widths)
    jitter_y: float = Field(0.03, ge=0.0, le=0.5)  # std of vertical offset (box heights)
    p_cut_top: float = Field(0.04, ge=0.0, le=1.0)
    p_cut_bottom: float = Field(0.08, ge=0.0, le=1.0)
    p_occluder: float = Field(0.12, ge=0.0, le=1.0)
    p_background_person: float = Field(0.15, ge=0.0, le=1.0)
    p_clutter: float = Field(0.5, ge=0.0, le=1.0)
    view_change: float = Field(0.12, ge=0.0, le=1.0)  # chance a frame's view differs from its track's
    track_background: float = Field(1.0, ge=0.0, le=2.0)
    """Scale of each tracklet's own backdrop change (tint, brightness, structure scale; 0 = the camera's
    scenes are the same for every tracklet, as for a fixed real camera)."""
    scene_kinds: tuple[SceneKind, ...] | None = None
    """Draw every camera scene uniformly from these kinds instead of the camera domain's own (``source``:
    plain studio backdrops; ``market``: street and park; ``msmt``: those and indoor). None = the domain's."""

    def echo(self) -> dict:
        """The config as recorded in ``meta.json``. ``scene_kinds`` is left out while it is None, so that the
        outputs written before it existed still count as current (they are byte-identical)."""
        d = self.model_dump(mode="json")
        if d.get("scene_kinds") is None:
            d.pop("scene_kinds", None)
        return d

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        for name in ("train_cams_per_id", "test_cams_per_id", "images_per_track", "query_cams_per_id"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name}={getattr(self, name)!r} must satisfy 1 <= min <= max")
        for name in ("train_cams_per_id", "test_cams_per_id"):
            if getattr(self, name)[0] < 2 or getattr(self, name)[1] > self.num_cameras:
                raise ValueError(f"{name}={getattr(self, name)!r} must lie in [2, num_cameras={self.num_cameras}]")
        if self.images_per_track[0] < 2:
            raise ValueError(f"images_per_track={self.images_per_track!r}: min must be >= 2 so every query "
                             "camera keeps a gallery image")
        from .identity import TWIN_KINDS

        bad = set(self.twin_kind_weights) - set(TWIN_KINDS)
        if bad or not self.twin_kind_weights or min(self.twin_kind_weights.values()) < 0:
            raise ValueError(f"twin_kind_weights={self.twin_kind_weights!r}: keys must be in {TWIN_KINDS}, "
                             "weights >= 0")
        return self


PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        name="tiny", num_cameras=3, camera_domain="market", num_train_ids=8, num_test_ids=8,
        train_cams_per_id=(2, 3), test_cams_per_id=(2, 3), images_per_track=(2, 3), query_cams_per_id=(1, 2),
        num_distractors=4, twin_fraction=0.5, p_cut_top=0.12, p_cut_bottom=0.15, p_occluder=0.25,
    ),
    "market": SyntheticConfig(
        name="market", num_cameras=6, camera_domain="market", num_train_ids=230, num_test_ids=230,
        train_cams_per_id=(2, 4), test_cams_per_id=(2, 5), images_per_track=(2, 5), query_cams_per_id=(2, 2),
        num_distractors=120,
    ),
    "msmt": SyntheticConfig(
        name="msmt", num_cameras=15, camera_domain="msmt", num_train_ids=280, num_test_ids=280,
        train_cams_per_id=(2, 4), test_cams_per_id=(2, 5), images_per_track=(2, 5), query_cams_per_id=(2, 3),
        num_distractors=150, jitter_scale=0.08, jitter_x=0.065, jitter_y=0.04, p_cut_top=0.07, p_cut_bottom=0.14,
        p_occluder=0.21, p_background_person=0.2, p_clutter=0.6, view_change=0.15,
    ),
    "source": SyntheticConfig(
        name="source", num_cameras=8, camera_domain="source", identity_space="source", pid_offset=5000,
        num_train_ids=300, num_test_ids=30, train_cams_per_id=(2, 4), test_cams_per_id=(2, 3),
        images_per_track=(2, 5), query_cams_per_id=(1, 2), num_distractors=0, p_cut_top=0.05,
        p_cut_bottom=0.08, p_occluder=0.1, p_background_person=0.1, p_clutter=0.4,
    ),
    # the larger source domain of PLIP-style pretraining (issue 19): 1,500 training identities, its own cameras
    # (12, studio styles drawn from their own stream) and identities (pids 6001-7600), disjoint from the targets
    "source-large": SyntheticConfig(
        name="source-large", num_cameras=12, camera_domain="source-large", identity_space="source",
        pid_offset=6000, num_train_ids=1500, num_test_ids=100, train_cams_per_id=(2, 4), test_cams_per_id=(2, 3),
        images_per_track=(2, 5), query_cams_per_id=(1, 2), num_distractors=0, p_cut_top=0.05,
        p_cut_bottom=0.08, p_occluder=0.1, p_background_person=0.1, p_clutter=0.4,
    ),
}


def preset(name: str) -> SyntheticConfig:
    """The named preset (``tiny``, ``market``, ``msmt``, ``source``, ``source-large``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}") from None


def stable_code(text: str) -> int:
    """A stable 32-bit code for a string (used to derive independent random streams)."""
    return zlib.crc32(text.encode())


# ----------------------------------------------------------------------------------------------------------
# camera styles


@dataclass(frozen=True)
class SceneStyle:
    """A background scene seen by one camera (rendered with a per-image horizontal offset)."""

    kind: str  # "street", "park", "indoor", "studio"
    horizon: float  # fraction of the image height where the floor starts
    wall: tuple[float, float, float]
    wall2: tuple[float, float, float]  # windows / pillars / trees
    floor: tuple[float, float, float]
    floor2: tuple[float, float, float]  # tile / paving lines
    period: float  # pixels between vertical structures
    duty: float
    feature_top: float  # vertical span of the structures (fractions of the horizon)
    feature_bottom: float


@dataclass(frozen=True)
class CameraStyle:
    """Photometric style and scenes of one camera (index is 0-based; file names use index + 1)."""

    index: int
    domain: str
    indoor: bool
    gain: tuple[float, float, float]  # per-channel colour cast
    brightness: float
    brightness_jitter: float  # per-image illumination change (std)
    contrast: float
    saturation: float
    blur: float  # Gaussian sigma in pixels
    noise: float  # std in 0..255 units
    jpeg_quality: int
    view_probs: tuple[float, float, float, float]  # front, back, side_left, side_right
    scenes: tuple[SceneStyle, ...] = field(default_factory=tuple)


def _col(rng: np.random.Generator, base: tuple[float, float, float], spread: float) -> tuple[float, float, float]:
    v = np.clip(np.asarray(base) + rng.normal(0, spread, 3), 0, 255)
    return (float(v[0]), float(v[1]), float(v[2]))


def _scene(rng: np.random.Generator, kind: str) -> SceneStyle:
    u = rng.uniform
    if kind == "street":
        wall = _col(rng, (150, 140, 128), 25)
        return SceneStyle(kind, u(0.5, 0.7), wall, _col(rng, np.multiply(wall, 0.55), 15),
                          _col(rng, (120, 118, 112), 18), _col(rng, (90, 88, 84), 12), u(14, 34), u(0.3, 0.6),
                          u(0.1, 0.3), u(0.6, 0.9))
    if kind == "park":
        return SceneStyle(kind, u(0.55, 0.72), _col(rng, (90, 130, 80), 20), _col(rng, (55, 90, 50), 12),
                          _col(rng, (175, 160, 130), 18), _col(rng, (140, 128, 100), 12), u(18, 40), u(0.3, 0.7),
                          u(0.0, 0.2), u(0.5, 0.95))
    if kind == "indoor":
        wall = _col(rng, (200, 196, 185), 20)
        return SceneStyle(kind, u(0.55, 0.75), wall, _col(rng, np.multiply(wall, 0.75), 15),
                          _col(rng, (160, 150, 135), 25), _col(rng, (120, 112, 100), 15), u(20, 48), u(0.2, 0.4),
                          u(0.15, 0.35), u(0.8, 1.0))
    if kind == "studio":
        wall = _col(rng, rng.choice([(170, 190, 220), (220, 200, 170), (190, 220, 190), (210, 190, 215)]), 15)
        return SceneStyle(kind, u(0.6, 0.8), wall, _col(rng, np.multiply(wall, 0.85), 8),
                          _col(rng, (200, 200, 205), 15), _col(rng, (170, 170, 178), 10), u(24, 60), u(0.1, 0.3),
                          u(0.0, 0.2), u(0.4, 0.7))
    raise ValueError(f"unknown scene kind {kind!r}")


def _scene_kind(rng: np.random.Generator, config: SyntheticConfig, default: str | list[str]) -> str:
    """The kind of one camera scene: the config's override if set, else the domain's fixed kind or a draw
    from its list (drawn exactly as before the override existed, so default outputs are unchanged)."""
    if config.scene_kinds is not None:
        return str(rng.choice(list(config.scene_kinds)))
    return default if isinstance(default, str) else str(rng.choice(default))


def camera_styles(config: SyntheticConfig, seed: int) -> list[CameraStyle]:
    """Draw the config's cameras; deterministic in ``(camera_domain, seed)``."""
    cams = []
    for i in range(config.num_cameras):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stable_code("camera"),
                                                                             stable_code(config.camera_domain), i)))
        u = rng.uniform
        sides = u(0.1, 0.35)
        fb = u(0.3, 0.7)
        views = (fb * (1 - sides), (1 - fb) * (1 - sides), sides / 2, sides / 2)
        if config.camera_domain == "market":
            indoor = False
            cast = rng.normal(0, 0.06, 3)
            cams.append(CameraStyle(
                i, "market", indoor, tuple(float(x) for x in 1 + cast), u(0.88, 1.1), 0.05, u(0.9, 1.1),
                u(0.85, 1.1), u(0.3, 0.9), u(2, 5), int(rng.integers(75, 93)), views,
                tuple(_scene(rng, _scene_kind(rng, config, ["street", "park", "street"])) for _ in range(4))))
        elif config.camera_domain == "msmt":
            indoor = bool(rng.random() < 0.35)
            cast = rng.normal(0, 0.09, 3) + (np.array([0.08, 0.02, -0.1]) if indoor and rng.random() < 0.5 else 0)
            cams.append(CameraStyle(
                i, "msmt", indoor, tuple(float(x) for x in 1 + cast), u(0.7, 1.15), u(0.06, 0.14), u(0.8, 1.1),
                u(0.7, 1.1), u(0.3, 1.1), u(2, 6), int(rng.integers(70, 92)), views,
                tuple(_scene(rng, _scene_kind(rng, config, "indoor" if indoor else ["street", "park"]))
                      for _ in range(4))))
        else:
            cast = rng.normal(0, 0.04, 3) + np.array([-0.04, 0.0, 0.06])
            cams.append(CameraStyle(
                i, "source", False, tuple(float(x) for x in 1 + cast), u(1.0, 1.15), 0.04, u(1.05, 1.25),
                u(1.15, 1.35), u(0.0, 0.35), u(0, 1.5), int(rng.integers(92, 97)), views,
                tuple(_scene(rng, _scene_kind(rng, config, "studio")) for _ in range(2))))
    return cams
