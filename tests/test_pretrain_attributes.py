"""Attribute labels of synthetic identities (scwm.data.synthetic.attributes) and the larger source preset."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from scwm.data.records import ImageRecord
from scwm.data.synthetic import build_identities, camera_styles, plan_dataset, preset
from scwm.data.synthetic.attributes import (
    ATTRIBUTE_GROUPS,
    ATTRIBUTES_FILE,
    GARMENT_COLOR_CLASS,
    attribute_labels,
    attributes_payload,
    encode_attributes,
    garment_color_name,
    identity_attributes,
    read_attribute_table,
)
from scwm.data.synthetic.identity import (
    GARMENT_PALETTE,
    HAIR_COLORS,
    SHOE_COLORS,
    Accessory,
    Body,
    Hair,
    Headwear,
    Identity,
    Lower,
    Shoes,
    Upper,
)
from training.pretrain_tasks import source_attribute_labels

RGB = dict((name, rgb) for name, rgb, _ in GARMENT_PALETTE)


def _spec(**over) -> Identity:
    """A hand-built person: dark-brown buzz cut, navy hood, khaki striped short-sleeved top, grey shorts, red
    shoes, olive backpack (colours jittered off their palette anchors by up to the generator's amount)."""
    base = dict(
        body=Body(1.0, 1.0, 0.13, 0.11, 0.47, 0.3), skin=(222, 172, 130),
        hair=Hair((52 + 8, 34 - 8, 22 + 8), "buzz"), headwear=Headwear("hood", (32 - 12, 40 + 12, 92 - 12)),
        upper=Upper((190 + 12, 170 - 12, 120 + 12), "stripes", (28, 28, 32), "short", "circle"),
        lower=Lower("shorts", (128 - 12, 128 + 12, 130)), shoes=Shoes((180 + 8, 40 - 8, 40)),
        accessory=Accessory("backpack", (102, 110 + 12, 52 - 12), "left"))
    base.update(over)
    return Identity(**base)


def test_attributes_of_a_hand_built_person() -> None:
    want = {"hair_color": "brown", "hair_style": "buzz", "headwear": "hood", "headwear_color": "blue",
            "upper_color": "beige", "upper_pattern": "stripes", "upper_sleeve": "short", "lower_color": "grey",
            "lower_type": "shorts", "shoe_color": "red", "bag": "backpack", "bag_color": "green"}
    idn = _spec()
    assert identity_attributes(idn.attributes()) == want
    # the JSON form of identities.json (colours as lists) gives the same
    assert identity_attributes(json.loads(json.dumps(idn.attributes()))) == want
    bare = _spec(headwear=Headwear("none", (232, 232, 226)), accessory=Accessory("none", (192, 32, 38), "right"),
                 hair=Hair((200, 168, 100), "ponytail"), upper=Upper((22, 130, 130), "logo", (0, 0, 0), "long", "x"))
    got = identity_attributes(bare.attributes())
    assert (got["headwear_color"], got["bag_color"], got["bag"]) == ("none", "none", "none")  # no item, no colour
    assert (got["hair_color"], got["hair_style"], got["upper_color"]) == ("blond", "ponytail", "green")
    codes = encode_attributes(want)
    assert codes.dtype == np.int64 and codes.shape == (len(ATTRIBUTE_GROUPS),)
    assert [ATTRIBUTE_GROUPS[g][c] for g, c in zip(ATTRIBUTE_GROUPS, codes, strict=True)] == list(want.values())


def test_bad_specs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="missing 'shoes'"):
        identity_attributes({k: v for k, v in _spec().attributes().items() if k != "shoes"})
    odd = _spec().attributes()
    odd["lower"]["kind"] = "kilt"
    with pytest.raises(ValueError, match="lower_type='kilt'"):
        identity_attributes(odd)


@pytest.mark.parametrize(("anchors", "jitter"), [([c for _, c, _ in GARMENT_PALETTE], 12), (HAIR_COLORS, 8),
                                                 (SHOE_COLORS, 8)])
def test_every_jittered_colour_is_named_by_its_own_anchor(anchors, jitter) -> None:
    """The generator jitters an anchor by at most ``jitter`` per channel: every corner of that cube (the farthest
    points) is still nearest to its own anchor, so the name is the drawn anchor's."""
    a = np.asarray(anchors, float)
    for i, anchor in enumerate(a):
        for signs in itertools.product((-1, 1), repeat=3):
            p = np.clip(anchor + jitter * np.asarray(signs), 0, 255)
            assert int(np.argmin(((a - p) ** 2).sum(1))) == i, (anchors[i], signs)
    if jitter == 12:
        for name, rgb, _ in GARMENT_PALETTE:
            assert garment_color_name(np.clip(np.add(rgb, 12), 0, 255)) == GARMENT_COLOR_CLASS[name]


def test_labels_per_image_and_the_attribute_file(tmp_path: Path) -> None:
    cfg = preset("tiny")
    table = {"train": [{"pid": 10 + i, "attributes": idn.attributes()}
                       for i, idn in enumerate(build_identities(cfg, 0, "train", 4))],
             "test": [{"pid": 3, "attributes": _spec().attributes()}]}
    (tmp_path / "identities.json").write_text(json.dumps(table))
    derived = read_attribute_table(tmp_path)
    assert sorted(derived) == [3, 10, 11, 12, 13] and derived[3] == identity_attributes(_spec().attributes())
    (tmp_path / ATTRIBUTES_FILE).write_text(json.dumps(attributes_payload(table)))
    assert read_attribute_table(tmp_path) == derived  # the written file and the derivation agree
    labels = attribute_labels([3, 0, 11, 3], derived)
    assert labels.shape == (4, len(ATTRIBUTE_GROUPS)) and (labels[1] == -1).all()  # pid 0: a distractor
    assert (labels[0] == labels[3]).all() and (labels[0] == encode_attributes(derived[3])).all()
    recs = [ImageRecord("a.jpg", 3, 0), ImageRecord("b.jpg", 0, 1)]
    assert (source_attribute_labels(tmp_path, recs, "held-out") == labels[:2]).all()
    with pytest.raises(ValueError, match=r"no attribute labels for 1 training identities \(e.g. pid 99\)"):
        source_attribute_labels(tmp_path, [ImageRecord("c.jpg", 99, 0)], "training")
    doc = attributes_payload(table)
    doc["groups"]["bag"] = ["none", "bag"]
    (tmp_path / ATTRIBUTES_FILE).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{ATTRIBUTES_FILE}.*delete it"):
        read_attribute_table(tmp_path)
    with pytest.raises(ValueError, match="neither attributes.json nor identities.json"):
        read_attribute_table(tmp_path / "empty")


def test_source_large_preset_is_large_and_its_own_world() -> None:
    big = preset("source-large")
    assert big.num_train_ids >= 1000 and big.identity_space == "source"
    plan = plan_dataset(big, 0)
    pids = [pid for rows in plan.identities.values() for pid, _ in rows]
    assert min(pids) == 6001 and max(pids) == 7600 and len(set(pids)) == len(pids)
    assert sum(j.split == "train" for j in plan.jobs) > 10_000
    gains = {c.gain for c in plan.cameras}
    assert len(gains) == big.num_cameras
    for other in ("source", "market", "msmt", "tiny"):
        assert not gains & {c.gain for c in camera_styles(preset(other), 0)}, other
    assert {s.kind for c in plan.cameras for s in c.scenes} == {"studio"}  # no target scene kinds
    mine = {i.fingerprint() for rows in plan.identities.values() for _, i in rows}
    for other in ("source", "market", "msmt"):
        cfg = preset(other)
        theirs = {i.fingerprint() for split, n in (("train", cfg.num_train_ids), ("test", cfg.num_test_ids))
                  for i in build_identities(cfg, 0, split, n)}
        assert not mine & theirs, other
        assert cfg.pid_offset + cfg.num_train_ids + cfg.num_test_ids < 6001, other  # pid ranges disjoint
