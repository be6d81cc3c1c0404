"""Attribute labels of synthetic identities (PLIP-style fine-grained attributes, from the identity spec).

Every identity of a synthetic tree is described in ``identities.json`` (its full spec, RGB colours included).
This module turns a spec into one class per attribute group (:data:`ATTRIBUTE_GROUPS`): hair colour and style,
headwear type and colour, upper garment colour, pattern and sleeve, lower garment colour and type, shoe colour,
bag type (``none`` = no bag) and colour. Colours are named by their palette anchor (the generator jitters an
anchor by at most 12 per channel, less than half the distance between any two anchors, so the nearest anchor
is the drawn one) and anchors are grouped into a few basic colour names (:data:`GARMENT_COLOR_CLASS`).

The writer stores the table as ``attributes.json`` (:func:`attributes_payload`); trees written before that
file existed are labelled from ``identities.json`` by the same function (:func:`read_attribute_table`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .identity import (
    ACCESSORY_KINDS,
    GARMENT_PALETTE,
    HAIR_COLORS,
    HAIR_STYLES,
    HEADWEAR_KINDS,
    LOWER_KINDS,
    PATTERNS,
    SHOE_COLORS,
    SLEEVES,
)

ATTRIBUTES_FORMAT = "scwm-attributes/1"
ATTRIBUTES_FILE = "attributes.json"

COLOR_CLASSES = ("black", "grey", "white", "beige", "brown", "red", "orange", "yellow", "green", "blue",
                 "purple", "pink")
"""Basic colour names of garments, headwear and bags."""
GARMENT_COLOR_CLASS: dict[str, str] = {
    "black": "black", "charcoal": "grey", "grey": "grey", "white": "white", "navy": "blue", "blue": "blue",
    "lightblue": "blue", "red": "red", "darkred": "red", "green": "green", "olive": "green", "khaki": "beige",
    "brown": "brown", "yellow": "yellow", "orange": "orange", "pink": "pink", "purple": "purple", "teal": "green",
    "beige": "beige",
}
"""Garment palette name (:data:`~.identity.GARMENT_PALETTE`) -> basic colour name."""
HAIR_COLOR_NAMES = ("black", "brown", "brown", "blond", "grey", "red")
"""Name of each :data:`~.identity.HAIR_COLORS` anchor (the two browns are one class)."""
SHOE_COLOR_NAMES = ("black", "white", "brown", "grey", "red", "blue", "beige")
"""Name of each :data:`~.identity.SHOE_COLORS` anchor."""

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "hair_color": ("black", "brown", "blond", "grey", "red"),
    "hair_style": HAIR_STYLES,
    "headwear": HEADWEAR_KINDS,
    "headwear_color": ("none", *COLOR_CLASSES),
    "upper_color": COLOR_CLASSES,
    "upper_pattern": PATTERNS,
    "upper_sleeve": SLEEVES,
    "lower_color": COLOR_CLASSES,
    "lower_type": LOWER_KINDS,
    "shoe_color": SHOE_COLOR_NAMES,
    "bag": ACCESSORY_KINDS,
    "bag_color": ("none", *COLOR_CLASSES),
}
"""Attribute group -> its classes, in label order (``bag`` ``none`` = no bag; ``*_color`` ``none`` = no item)."""
GROUP_SIZES: tuple[int, ...] = tuple(len(v) for v in ATTRIBUTE_GROUPS.values())


def _nearest(rgb: Sequence[int], anchors: Sequence[Sequence[int]]) -> int:
    d = np.sum((np.asarray(anchors, float) - np.asarray(rgb, float)[None]) ** 2, axis=1)
    return int(np.argmin(d))


def garment_color_name(rgb: Sequence[int]) -> str:
    """Basic colour name of a garment / headwear / bag colour (nearest garment palette anchor)."""
    name = GARMENT_PALETTE[_nearest(rgb, [c for _, c, _ in GARMENT_PALETTE])][0]
    return GARMENT_COLOR_CLASS[name]


def identity_attributes(spec: Mapping[str, Any]) -> dict[str, str]:
    """One class name per attribute group of an identity spec (``Identity.attributes()`` or its JSON form)."""
    try:
        hw, acc = spec["headwear"], spec["accessory"]
        out = {
            "hair_color": HAIR_COLOR_NAMES[_nearest(spec["hair"]["color"], HAIR_COLORS)],
            "hair_style": spec["hair"]["style"],
            "headwear": hw["kind"],
            "headwear_color": "none" if hw["kind"] == "none" else garment_color_name(hw["color"]),
            "upper_color": garment_color_name(spec["upper"]["color"]),
            "upper_pattern": spec["upper"]["pattern"],
            "upper_sleeve": spec["upper"]["sleeve"],
            "lower_color": garment_color_name(spec["lower"]["color"]),
            "lower_type": spec["lower"]["kind"],
            "shoe_color": SHOE_COLOR_NAMES[_nearest(spec["shoes"]["color"], SHOE_COLORS)],
            "bag": acc["kind"],
            "bag_color": "none" if acc["kind"] == "none" else garment_color_name(acc["color"]),
        }
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an identity spec (missing {exc}): keys {sorted(spec)}") from exc
    for group, value in out.items():
        if value not in ATTRIBUTE_GROUPS[group]:
            raise ValueError(f"identity spec has {group}={value!r}, not one of {ATTRIBUTE_GROUPS[group]}")
    return out


def encode_attributes(attrs: Mapping[str, str]) -> np.ndarray:
    """Class indices (G,) int64 of one identity's attribute names, in :data:`ATTRIBUTE_GROUPS` order."""
    return np.array([ATTRIBUTE_GROUPS[g].index(attrs[g]) for g in ATTRIBUTE_GROUPS], dtype=np.int64)


def attributes_payload(identity_table: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The ``attributes.json`` document of an ``identities.json`` table (split -> rows with pid and attributes)."""
    rows = {str(r["pid"]): identity_attributes(r["attributes"])
            for split in sorted(identity_table) for r in identity_table[split]}
    return {"format": ATTRIBUTES_FORMAT, "groups": {g: list(v) for g, v in ATTRIBUTE_GROUPS.items()},
            "identities": dict(sorted(rows.items(), key=lambda kv: int(kv[0])))}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def read_attribute_table(root: str | Path) -> dict[int, dict[str, str]]:
    """pid -> attribute names of a synthetic tree: from ``attributes.json``, else derived from ``identities.json``.

    ValueError naming the file when neither exists, or when ``attributes.json`` has other groups than this version.
    """
    root = Path(root)
    path = root / ATTRIBUTES_FILE
    if path.is_file():
        doc = _read_json(path)
        groups = {g: list(v) for g, v in ATTRIBUTE_GROUPS.items()}
        if not isinstance(doc, dict) or doc.get("format") != ATTRIBUTES_FORMAT or doc.get("groups") != groups:
            raise ValueError(f"{path} is not a {ATTRIBUTES_FORMAT} file with this version's attribute groups; "
                             "delete it to derive the labels from identities.json")
        return {int(pid): dict(attrs) for pid, attrs in doc["identities"].items()}
    ids = root / "identities.json"
    if not ids.is_file():
        raise ValueError(f"{root} has neither {ATTRIBUTES_FILE} nor identities.json: no attribute labels "
                         "(attributes exist only for synthetic trees written by scwm.data.synthetic)")
    doc = _read_json(ids)
    return {int(pid): attrs for pid, attrs in attributes_payload(doc)["identities"].items()}


def attribute_labels(pids: Sequence[int], table: Mapping[int, Mapping[str, str]]) -> np.ndarray:
    """(N, G) int64 class indices of images with these pids; rows of pids without labels (distractors) are -1."""
    out = np.full((len(pids), len(ATTRIBUTE_GROUPS)), -1, dtype=np.int64)
    cache: dict[int, np.ndarray] = {}
    for i, pid in enumerate(pids):
        if pid in table:
            if pid not in cache:
                cache[pid] = encode_attributes(table[pid])
            out[i] = cache[pid]
    return out
