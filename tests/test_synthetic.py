"""Tests of the synthetic pedestrian world (scwm.data.synthetic)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scwm.data.synthetic.writer as gen_mod
from scwm.data.synthetic import (
    PART_NAMES,
    TWIN_FIELDS,
    Identity,
    Occluder,
    OutputDirError,
    SyntheticConfig,
    build_identities,
    camera_styles,
    differing_fields,
    generate,
    nominal_box,
    plan_dataset,
    preset,
    render_sample,
    render_with_info,
    sample_identity,
    sample_shot,
)
from scwm.data.synthetic.__main__ import main as cli_main
from scwm.data.synthetic.identity import (
    ACCESSORY_KINDS,
    HAIR_STYLES,
    HEADWEAR_KINDS,
    LOGO_SHAPES,
    LOWER_KINDS,
    PATTERNS,
    SLEEVES,
    Accessory,
    Headwear,
    Lower,
    Upper,
)

MARKET_RE = re.compile(r"([-\d]+)_c(\d+)")
FULL_RE = re.compile(r"^(\d{4})_c(\d+)s1_(\d{6})_00\.jpg$")
BG = (1.0, 254.0, 3.0)  # a colour no garment, skin or hair can have exactly
HEAD, UPPER, LOWER, SHOES, ACC = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate("tiny", tmp_path_factory.mktemp("tiny") / "out", seed=0, progress=False)


def _person(rng_seed: int = 3, **changes) -> Identity:
    idn = sample_identity(np.random.default_rng(rng_seed))
    return dataclasses.replace(idn, **changes)


def _clean_shot(view: str = "front", **changes):
    cfg = preset("market")
    cam = camera_styles(cfg, 0)[0]
    shot = sample_shot(cam, cfg, np.random.default_rng(0))
    shot = dataclasses.replace(shot, view=view, box=nominal_box(128, 64), cut_top=0.0, cut_bottom=0.0,
                               occluder=None, bg_person=None, clutter=(), phase=0.3)
    return dataclasses.replace(shot, **changes), cam


def _render(idn, shot, cam, antialias=False):
    img, mask, _ = render_with_info(idn, cam, shot, (128, 64), np.random.default_rng(0), antialias=antialias,
                                    effects=False, background=BG)
    return img, mask


# ----------------------------------------------------------------------------------------------------------
# rendering


def test_render_sample_deterministic_and_seed_dependent():
    cfg = preset("msmt")
    cam = camera_styles(cfg, 0)[3]
    idn = sample_identity(np.random.default_rng(5))
    a = render_sample(idn, cam, np.random.default_rng(11), config=cfg)
    b = render_sample(idn, cam, np.random.default_rng(11), config=cfg)
    c = render_sample(idn, cam, np.random.default_rng(12), config=cfg)
    assert a[0].shape == (128, 64, 3) and a[0].dtype == np.uint8
    assert a[1].shape == (128, 64) and a[1].dtype == np.uint8
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    img, mask = render_sample(idn, cam, np.random.default_rng(1), config=cfg, size=(96, 48))
    assert img.shape == (96, 48, 3) and mask.shape == (96, 48)


@pytest.mark.parametrize("view", ["front", "back", "side_left", "side_right"])
def test_mask_foreground_equals_changed_pixels(view):
    """Hard-edged render on a uniform background: label > 0 exactly where the image differs from it."""
    for seed in range(6):
        idn = _person(seed)
        shot, cam = _clean_shot(view)
        img, mask = _render(idn, shot, cam)
        changed = np.any(img != np.asarray(BG, np.uint8), axis=2)
        np.testing.assert_array_equal(mask > 0, changed)
        assert changed.mean() > 0.12


def test_antialiased_mask_differs_only_on_boundaries():
    idn = _person(4)
    shot, cam = _clean_shot("front")
    img, mask = _render(idn, shot, cam, antialias=True)
    _, hard = _render(idn, shot, cam, antialias=False)
    np.testing.assert_array_equal(mask, hard)  # the label map does not depend on anti-aliasing
    changed = np.any(img != np.asarray(BG, np.uint8), axis=2)
    fg = mask > 0
    pad = np.pad(fg, 1, mode="edge")
    boundary = np.zeros_like(fg)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            boundary |= pad[1 + dy:129 + dy, 1 + dx:65 + dx] != fg
    assert np.all(~(changed ^ fg) | boundary)


def test_garment_colours_coincide_with_labels():
    idn = _person(7, upper=Upper((210, 30, 30), "solid", (0, 0, 0), "long", "circle"),
                  lower=Lower("trousers", (30, 30, 210)), accessory=Accessory("none", (0, 0, 0), "left"),
                  headwear=Headwear("none", (0, 0, 0)))
    for view in ("front", "back", "side_left"):
        shot, cam = _clean_shot(view)
        img, mask = _render(idn, shot, cam)
        r, b = img[..., 0].astype(int), img[..., 2].astype(int)
        up, lo = mask == UPPER, mask == LOWER
        assert up.sum() > 300 and lo.sum() > 300
        assert np.mean(r[up] > b[up] + 40) > 0.9  # hands are skin but still red > blue
        assert np.all(b[lo] > r[lo] + 40)
        assert not np.any((r > b + 100) & ~up & (mask != HEAD))  # no red garment pixel outside upper_body


def test_all_labels_present_in_full_front_view():
    for kind in ("backpack", "shoulder_bag", "handbag"):
        idn = _person(9, accessory=Accessory(kind, (200, 150, 20), "left"))
        shot, cam = _clean_shot("front")
        _, mask = _render(idn, shot, cam)
        assert set(np.unique(mask).tolist()) == set(range(len(PART_NAMES)))
    idn = _person(9, accessory=Accessory("backpack", (200, 150, 20), "left"))
    _, back = _render(idn, *_clean_shot("back"))
    _, front = _render(idn, *_clean_shot("front"))
    assert (back == ACC).sum() > 3 * (front == ACC).sum()  # a backpack shows mainly from the back


def test_logo_only_from_front():
    idn = _person(2, upper=Upper((30, 30, 30), "logo", (250, 250, 250), "long", "square"),
                  accessory=Accessory("none", (0, 0, 0), "left"))
    white = []
    for view in ("front", "back"):
        img, mask = _render(idn, *_clean_shot(view))
        white.append(int(np.sum((img.min(axis=2) > 200) & (mask == UPPER))))
    assert white[0] > 10 and white[1] == 0


#: sha256 of the pinned renders of test_person_rendering_is_pinned (generator 1.0.0)
PINNED_RENDER_SHA256 = "dfbd2962dbfd5f6d62ef553a381eeaca91fad1a724c3130f7f1e365501a6ef59"


def _pinned_people() -> list[Identity]:
    """Twelve people that together show every hair style, headwear, pattern, logo, sleeve, lower garment and bag."""
    people = []
    for i in range(12):
        idn = _person(20 + i)
        people.append(dataclasses.replace(
            idn, hair=dataclasses.replace(idn.hair, style=HAIR_STYLES[i % 4]),
            headwear=dataclasses.replace(idn.headwear, kind=HEADWEAR_KINDS[(i + i // 4) % 4]),
            upper=dataclasses.replace(idn.upper, pattern=PATTERNS[i % 4], sleeve=SLEEVES[i // 2 % 2],
                                      logo_shape=LOGO_SHAPES[i // 4]),
            lower=dataclasses.replace(idn.lower, kind=LOWER_KINDS[i % 3]),
            accessory=dataclasses.replace(idn.accessory, kind=ACCESSORY_KINDS[(i + 1) % 4],
                                          side=("left", "right")[i // 4 % 2])))
    return people


def test_person_rendering_is_pinned():
    """The pictures of fixed people, views and walking phases are pinned: a refactor must not change them.

    Update the digest only for an intended change of the rendered world (and bump GENERATOR_VERSION).
    """
    digest = hashlib.sha256()
    for idn in _pinned_people():
        for view in ("front", "back", "side_left", "side_right"):
            for phase in (0.3, 2.2):
                shot, cam = _clean_shot(view, phase=phase)
                img, mask, _ = render_with_info(idn, cam, shot, (128, 64), np.random.default_rng(0), effects=False,
                                                background=BG)
                digest.update(img.tobytes() + mask.tobytes())
    assert digest.hexdigest() == PINNED_RENDER_SHA256


def test_incomplete_crops_cut_parts_and_move_them():
    cfg = preset("market").model_copy(update={"p_cut_top": 0.5, "p_cut_bottom": 0.5, "jitter_scale": 0.0,
                                              "jitter_x": 0.0, "jitter_y": 0.0, "p_occluder": 0.0})
    cam = camera_styles(cfg, 0)[0]
    idn = _person(1, hair=dataclasses.replace(_person(1).hair, style="short"), headwear=Headwear("none", (0, 0, 0)))
    seen_top = seen_bottom = 0
    for s in range(40):
        shot = sample_shot(cam, cfg, np.random.default_rng(s))
        full = dataclasses.replace(shot, box=nominal_box(128, 64), cut_top=0.0, cut_bottom=0.0)
        _, m = _render(idn, shot, cam)
        _, mf = _render(idn, full, cam)
        if shot.cut_top > 0:
            seen_top += 1
            assert (m == HEAD).sum() < 0.75 * (mf == HEAD).sum()
            if shot.cut_top >= 0.25:
                assert not np.any(m == HEAD)
            if shot.cut_bottom == 0:  # the rest is stretched upwards: the torso moves up
                assert np.nonzero(m == UPPER)[0].mean() < np.nonzero(mf == UPPER)[0].mean() - 5
        if shot.cut_bottom > 0:
            seen_bottom += 1
            assert not np.any(m == SHOES)
    assert seen_top >= 5 and seen_bottom >= 5


def test_occluder_pixels_are_background():
    idn = _person(6)
    for kind, occ in (("pole", Occluder("pole", 0.0, 0.03, -2.0, (120, 120, 120))),
                      ("bin", Occluder("bin", 0.05, 0.14, 0.65, (40, 90, 60))),
                      ("person", Occluder("person", 0.22, 0.0, 0.0, (0, 0, 0), (1.0, 0.0, 0.5),
                                          _person(11)))):
        shot, cam = _clean_shot("front")
        img0, m0 = _render(idn, shot, cam)
        img1, m1 = _render(idn, dataclasses.replace(shot, occluder=occ), cam)
        covered = np.any(img0 != img1, axis=2)
        assert (covered & (m0 > 0)).sum() > 30, kind  # it really hides part of the person
        assert np.all(m1[covered] == 0), kind
        np.testing.assert_array_equal(m1[~covered], m0[~covered])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="nope"):
        preset("nope")
    with pytest.raises(ValueError, match="images_per_track"):
        SyntheticConfig(name="x", num_cameras=3, camera_domain="market", num_train_ids=2, num_test_ids=2,
                        train_cams_per_id=(2, 3), test_cams_per_id=(2, 3), images_per_track=(1, 2))
    with pytest.raises(ValueError, match="train_cams_per_id"):
        SyntheticConfig(name="x", num_cameras=3, camera_domain="market", num_train_ids=2, num_test_ids=2,
                        train_cams_per_id=(2, 5))
    with pytest.raises(ValueError, match="view"):
        shot, cam = _clean_shot("front")
        render_with_info(_person(), cam, dataclasses.replace(shot, view="top"), (128, 64))


# ----------------------------------------------------------------------------------------------------------
# identities


def test_twins_differ_only_in_intended_attribute():
    cfg = preset("market")
    ids = build_identities(cfg, 0, "train", cfg.num_train_ids)
    twins = [t for t in ids if t.twin_of is not None]
    members = {i for i, t in enumerate(ids) if t.twin_of is not None} | {t.twin_of for t in twins}
    assert 0.35 <= len(members) / len(ids) <= 0.45
    assert {t.twin_kind for t in twins} == set(TWIN_FIELDS)
    for t in twins:
        base = ids[t.twin_of]
        assert base.twin_of is None
        assert differing_fields(base, t) == TWIN_FIELDS[t.twin_kind], t.twin_kind
        if t.twin_kind == "swap":
            assert t.upper.color == base.lower.color and t.lower.color == base.upper.color
            assert t.upper.color != t.lower.color


def test_identities_disjoint_across_splits_and_presets():
    fps: dict[str, set[str]] = {}
    for name in ("tiny", "market", "source"):
        cfg = preset(name)
        for split, n in (("train", cfg.num_train_ids), ("test", cfg.num_test_ids)):
            f = {i.fingerprint() for i in build_identities(cfg, 0, split, n)}
            assert len(f) == n  # all distinct, twins included
            fps[f"{name}/{split}"] = f
    keys = sorted(fps)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not fps[a] & fps[b], (a, b)
    plan = plan_dataset("tiny", 0)
    train_pids = {pid for pid, _ in plan.identities["train"]}
    test_pids = {pid for pid, _ in plan.identities["test"]}
    assert not train_pids & test_pids and 0 not in train_pids | test_pids
    src = plan_dataset("source", 0)
    assert min(pid for pid, _ in src.identities["train"]) > 5000
    src_gains = {c.gain for c in src.cameras}
    assert not src_gains & {c.gain for c in camera_styles(preset("market"), 0)}
    assert {s.kind for c in src.cameras for s in c.scenes} == {"studio"}


# ----------------------------------------------------------------------------------------------------------
# generated datasets


def test_layout_names_and_masks(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    pids_by_split = {}
    for split, folder in (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test")):
        files = sorted((tiny / folder).iterdir())
        assert len(files) == meta["counts"][split] > 0
        recs = []
        for f in files:
            m = FULL_RE.match(f.name)
            assert m and MARKET_RE.search(f.name), f.name
            pid, cam = map(int, MARKET_RE.search(f.name).groups())
            assert 1 <= cam <= 3
            recs.append((pid, cam))
            mask = np.asarray(Image.open(tiny / "masks" / folder / f"{f.stem}.png"))
            img = Image.open(f)
            assert img.format == "JPEG" and img.size == (64, 128)
            assert mask.dtype == np.uint8 and mask.shape == (128, 64) and mask.max() <= 5
        pids_by_split[split] = recs
    assert all(p > 0 for p, _ in pids_by_split["train"] + pids_by_split["query"])
    assert any(p == 0 for p, _ in pids_by_split["gallery"])
    train = {p for p, _ in pids_by_split["train"]}
    test = {p for p, _ in pids_by_split["query"] + pids_by_split["gallery"]} - {0}
    assert not train & test
    for split_recs in (pids_by_split["train"], pids_by_split["query"] + pids_by_split["gallery"]):
        cams: dict[int, set[int]] = {}
        for p, c in split_recs:
            cams.setdefault(p, set()).add(c)
        assert all(len(v) >= 2 for p, v in cams.items() if p > 0)
    # every query has a valid match: same pid in the gallery from another camera
    for p, c in pids_by_split["query"]:
        assert any(gp == p and gc != c for gp, gc in pids_by_split["gallery"])


def test_meta_json(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["complete"] is True
    assert meta["part_names"] == PART_NAMES
    assert meta["image_size"] == [128, 64]
    assert meta["num_cameras"] == 3 and meta["num_ids"] == {"train": 8, "test": 8}
    full = preset("tiny").model_dump(mode="json")
    assert meta["config"] == preset("tiny").echo() == {k: v for k, v in full.items() if k != "scene_kinds"}
    assert sum(meta["counts"].values()) == len((tiny / "annotations.jsonl").read_text().splitlines())
    assert 80 <= sum(meta["counts"].values()) <= 130
    assert meta["generator_version"]
    assert meta["twin_fraction"]["train"] > 0
    assert not (tiny / ".scwm_synthetic_in_progress.json").exists()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_byte_identical_and_seed_dependent(tiny, tmp_path):
    again = generate("tiny", tmp_path / "a", seed=0, progress=False, num_workers=2)
    ta, tb = _tree_bytes(tiny), _tree_bytes(again)
    assert ta.keys() == tb.keys()
    assert all(ta[k] == tb[k] for k in ta)
    other = _tree_bytes(generate("tiny", tmp_path / "b", seed=1, progress=False))
    jpgs = [k for k in other if k.endswith(".jpg")]
    assert set(jpgs) != {k for k in ta if k.endswith(".jpg")} or any(other[k] != ta[k] for k in jpgs)


def test_refuses_foreign_directory_and_resumes_own(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not empty"):
        generate("tiny", foreign, seed=0, progress=False)
    generate("tiny", foreign, seed=0, progress=False, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "meta.json").is_file()

    out = tmp_path / "killed"
    calls = {"n": 0}
    real = gen_mod._write_job

    def dying(job):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt("simulated kill")
        return real(job)

    monkeypatch.setattr(gen_mod, "_write_job", dying)
    with pytest.raises(KeyboardInterrupt):
        generate("tiny", out, seed=0, progress=False)
    assert not (out / "meta.json").exists() and any((out / "bounding_box_train").iterdir())
    monkeypatch.setattr(gen_mod, "_write_job", real)
    with pytest.raises(OutputDirError, match="seed=0"):
        generate("tiny", out, seed=5, progress=False)  # a different seed may not reuse the half-written dir
    generate("tiny", out, seed=0, progress=False)  # the same preset/seed resumes from scratch
    assert json.loads((out / "meta.json").read_text())["complete"] is True


def test_cli_tiny_with_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    res = subprocess.run([sys.executable, "-m", "scwm.data.synthetic", "--preset", "tiny", "--out", str(out),
                          "--seed", "0", "--preview", "--quiet"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    prev = Image.open(out / "preview.png")
    assert prev.format == "PNG" and prev.size[0] > 600 and prev.size[1] > 400
    assert np.asarray(prev).std() > 20
    assert (out / "meta.json").is_file()
    # same preset/seed again: nothing to do; another seed: refused with a clear message
    assert cli_main(["--preset", "tiny", "--out", str(out), "--seed", "0"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli_main(["--preset", "tiny", "--out", str(out), "--seed", "3", "--quiet"]) == 2
    assert "refusing" in capsys.readouterr().err
    custom = tmp_path / "sheet.png"
    assert cli_main(["--preset", "tiny", "--out", str(out), "--seed", "0", "--preview", str(custom),
                     "--quiet"]) == 0
    assert custom.is_file()


def test_track_background_scales_only_the_tracklet_backdrop() -> None:
    from scwm.data.synthetic.config import camera_styles, preset
    from scwm.data.synthetic.render import sample_track

    cam = camera_styles(preset("market"), 0)[2]
    default = sample_track(cam, np.random.default_rng(7))
    # independent replay of the random stream (order of draws in sample_track)
    rng = np.random.default_rng(7)
    rng.choice(4, p=np.asarray(cam.view_probs) / np.sum(cam.view_probs))
    tint = np.exp(rng.normal(0, 0.22) + rng.normal(0, 0.1, 3))
    rng.integers(len(cam.scenes)), rng.uniform(0, 400), rng.uniform(3, 12), rng.choice([-1, 1])
    rng.uniform(0, 2 * np.pi), rng.normal(0, cam.brightness_jitter), rng.normal(0, 0.12)
    period = rng.uniform(0.6, 1.7)
    assert default.bg_tint == pytest.approx(tuple(tint)) and default.bg_period == pytest.approx(period)
    static = sample_track(cam, np.random.default_rng(7), background_variation=0.0)
    assert static.bg_tint == (1.0, 1.0, 1.0) and static.bg_period == 1.0
    # everything else about the tracklet is unchanged (same random stream)
    for f in ("view", "scene", "bg_offset", "bg_speed", "phase", "brightness", "light"):
        assert getattr(static, f) == getattr(default, f), f
    half = sample_track(cam, np.random.default_rng(7), background_variation=0.5)
    assert half.bg_period == pytest.approx(period ** 0.5) and half.bg_tint[0] == pytest.approx(tint[0] ** 0.5)


def test_cli_track_background_flag(tmp_path, capsys) -> None:
    out = tmp_path / "static"
    assert cli_main(["--preset", "tiny", "--out", str(out), "--seed", "0", "--quiet", "--track-background", "0"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["track_background"] == 0.0
    ref = tmp_path / "ref"
    assert cli_main(["--preset", "tiny", "--out", str(ref), "--seed", "0", "--quiet"]) == 0
    assert json.loads((ref / "meta.json").read_text())["config"]["track_background"] == 1.0
    names = sorted(p.name for p in (ref / "bounding_box_train").iterdir())
    assert names == sorted(p.name for p in (out / "bounding_box_train").iterdir())  # same identities and shots
    assert any((ref / "bounding_box_train" / n).read_bytes() != (out / "bounding_box_train" / n).read_bytes()
               for n in names)
    assert cli_main(["--preset", "tiny", "--out", str(tmp_path / "bad"), "--seed", "0", "--quiet",
                     "--track-background", "-1"]) == 2
    assert "track_background" in capsys.readouterr().err


def test_scene_kinds_override_only_the_scenes() -> None:
    from scwm.data.synthetic import camera_styles

    src = preset("source")
    plain = camera_styles(src, 0)
    assert {s.kind for c in plain for s in c.scenes} == {"studio"}
    mixed = camera_styles(src.model_copy(update={"scene_kinds": ("street", "park", "indoor")}), 0)
    assert {s.kind for c in mixed for s in c.scenes} <= {"street", "park", "indoor"}
    assert len({s.kind for c in mixed for s in c.scenes}) >= 2
    for a, b in zip(plain, mixed, strict=True):  # camera look (cast, blur, noise, ...) drawn before the scenes
        assert (a.gain, a.brightness, a.blur, a.noise, a.jpeg_quality) == (b.gain, b.brightness, b.blur, b.noise,
                                                                          b.jpeg_quality)
    # without an override the market draw is the domain's own (street / park), and the echo omits the field
    assert {s.kind for c in camera_styles(preset("market"), 0) for s in c.scenes} <= {"street", "park"}
    assert "scene_kinds" not in preset("market").echo()
    assert src.model_copy(update={"scene_kinds": ("park",)}).echo()["scene_kinds"] == ["park"]
    with pytest.raises(ValueError):
        src.model_validate({**src.model_dump(), "scene_kinds": ("beach",)})


def test_cli_scenes_flag(tmp_path) -> None:
    out = tmp_path / "parks"
    assert cli_main(["--preset", "tiny", "--out", str(out), "--seed", "0", "--quiet", "--scenes", "park"]) == 0
    assert json.loads((out / "meta.json").read_text())["config"]["scene_kinds"] == ["park"]
    with pytest.raises(SystemExit):
        cli_main(["--preset", "tiny", "--out", str(tmp_path / "x"), "--scenes", "beach"])


def test_attribute_file_is_written_and_matches_the_identity_table(tiny) -> None:
    """``attributes.json`` (source pretraining's labels) is the derivation from ``identities.json``; meta.json does
    not list it, so trees written before it existed still count as complete."""
    from scwm.data.synthetic.attributes import ATTRIBUTES_FILE, attributes_payload

    doc = json.loads((tiny / ATTRIBUTES_FILE).read_text())
    assert doc == json.loads(json.dumps(attributes_payload(json.loads((tiny / "identities.json").read_text()))))
    meta = json.loads((tiny / "meta.json").read_text())
    assert ATTRIBUTES_FILE not in json.dumps(meta["files"])
    assert len(doc["identities"]) == meta["num_ids"]["train"] + meta["num_ids"]["test"]
