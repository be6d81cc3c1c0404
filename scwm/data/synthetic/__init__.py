"""Synthetic pedestrian world: procedural person crops with exact part labels, in the Market-1501 layout.

Why: the SCWM claims are about *parts* (Sec. 3.2, 4.3 of the paper): body parts move between images
(pose, detector jitter, incomplete crops, occlusion), so horizontal stripes misalign while a learned
parsing should not. Every image here comes with a per-pixel label map
(``PART_NAMES = ["background", "head", "upper_body", "lower_body", "shoes", "accessory"]``; occluders
and other people are background) rendered through the same geometry as the image.

World
-----
- Identity = body proportions, skin tone, hair (colour, style), headwear (none/cap/hat/hood), upper
  garment (colour, solid/stripes/checks/logo, sleeve length), lower garment (trousers/shorts/skirt,
  colour), shoes (colour), accessory (none/backpack/shoulder bag/handbag, colour, side).
- Confusers: ``twin_fraction`` (40 % by default) of the identities come in near-twin pairs that swap
  the upper and lower colours or differ only in shoes, accessory or headwear.
- Cameras: own colour cast, brightness (and per-tracklet illumination change), contrast, saturation,
  blur, noise, JPEG quality, 2-3 background scenes and view preferences; each identity is a tracklet of
  2-5 frames per camera (walking phase and background advance), view front/back/side (backpacks show
  from the back/side, logos only from the front, faces not from the back).
- Per image: walking pose, detector jitter (scale, x, y), incomplete crops (top or bottom cut, then
  stretched back to the crop size), occluders (pole, bin, car, railing, bush, sign, another person in
  front), background clutter and background pedestrians.

Presets (counts chosen so that an end-to-end CPU run fits ~15 minutes on 2 cores: ~2.5-3k training crops
per target, as many gallery crops, and Market-like 2 query cameras per test identity; every identity is
seen by >= 2 cameras with 2-5 frames per camera; see docs/bench/synthetic.md)
--------------------------------------------------------------------------------------------------------
============  =====  =========================  =====================================================
preset        cams   identities                 images (approx.)
============  =====  =========================  =====================================================
tiny          3      8 train / 8 test           ~110 in total (tests; seed 0: 49 / 12 / 48)
market        6      230 train / 230 test       seed 0: 2,436 train, 460 query, 2,427 gallery (incl. 120
                                                pid-0 distractors); mostly complete crops, mild occlusion
msmt          15     280 train / 280 test       seed 0: 2,942 train, 674 query, 3,206 gallery (incl. 150
                                                pid 0); 15 cameras with stronger illumination, blur
                                                and colour casts, indoor/outdoor, more occlusion and
                                                incomplete crops (relaxed in 2026-12: the first version
                                                left the source backbone 3.6% direct-transfer mAP)
source        8      300 train / 30 test        seed 0: 3,149 train, 46 query, 205 gallery; distinct
                                                identity space, pids from 5001, studio camera styles
                                                (our SYNTH-PEDES analogue)
source-large  12     1,500 train / 100 test     seed 0: 15,693 train, 160 query, 713 gallery; the larger
                                                source of PLIP-style pretraining: its own cameras and
                                                identities (pids from 6001), studio styles as ``source``
============  =====  =========================  =====================================================

Attribute labels (PLIP-style, per identity: hair, headwear, garments, shoes, bag) are derived from the
identity spec by :mod:`.attributes` and written as ``attributes.json``.

Usage: ``python -m scwm.data.synthetic --preset market --out DIR --seed 0 [--preview [PATH]]
[--num-workers N] [--overwrite]`` or :func:`generate`; in memory: :func:`render_sample`.
"""

from .config import PRESETS, CameraStyle, SceneStyle, SyntheticConfig, camera_styles, preset
from .identity import TWIN_FIELDS, TWIN_KINDS, Identity, differing_fields, make_twin, sample_identity
from .preview import PART_COLORS, overlay, write_preview
from .render import (
    OCCLUDER_KINDS,
    PART_NAMES,
    VIEWS,
    Occluder,
    Shot,
    Track,
    nominal_box,
    render_sample,
    render_with_info,
    sample_shot,
    sample_track,
)
from .writer import (
    GENERATOR_VERSION,
    SPLIT_DIRS,
    ImageJob,
    OutputDirError,
    Plan,
    build_identities,
    generate,
    plan_dataset,
    render_job,
    summarize,
)

__all__ = [
    "GENERATOR_VERSION", "OCCLUDER_KINDS", "PART_COLORS", "PART_NAMES", "PRESETS", "SPLIT_DIRS", "TWIN_FIELDS",
    "TWIN_KINDS", "VIEWS", "CameraStyle", "Identity", "ImageJob", "Occluder", "OutputDirError", "Plan",
    "SceneStyle", "Shot", "SyntheticConfig", "Track", "build_identities", "camera_styles", "differing_fields",
    "generate", "make_twin", "nominal_box", "overlay", "plan_dataset", "preset", "render_job", "render_sample",
    "render_with_info", "sample_identity", "sample_shot", "sample_track", "summarize", "write_preview",
]
