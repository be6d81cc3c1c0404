"""Config: presets validate, YAML < flags precedence, every flag reaches the config and is read by code."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel

from scwm.losses import LossTerms
from training.cli import _field_flags, config_from_args
from training.config import (
    LEGACY_NAMES,
    PRESETS,
    DeprecatedNameWarning,
    LossConfig,
    TrainConfig,
    preset_config,
)

ROOT = Path(__file__).resolve().parents[1]

SPECIAL = {  # flags whose "+1" would violate a cross-field rule
    "optim.batch_size": 64, "optim.num_instances": 8, "model.bn_chunks": 2, "run.eval_every": 3,
    "cluster.eps": 0.25, "cluster.mask_gamma": 0.5, "loss.memory_momentum": 0.5, "loss.beta": 0.5,
    "optim.backbone_lr_mult": 0.5, "pretrain.colorization_fraction": 0.125,
}


def _other_value(flag: str, ann, current):
    if flag in SPECIAL:
        return SPECIAL[flag], str(SPECIAL[flag])
    if ann is bool:
        return (not current), str(not current).lower()
    if typing.get_origin(ann) is typing.Literal:
        choice = next(c for c in typing.get_args(ann) if c != current)
        return choice, choice
    if ann is int:
        return current + 1, str(current + 1)
    if ann is float:
        other = current * 2 if current else 0.5  # a field that is off at 0 (model.ema_decay)
        return other, repr(other)
    if typing.get_origin(ann) is list:  # data.mean / data.std: three values
        other = [v / 2 for v in current]
        return other, [repr(v) for v in other]
    return "some/value", "some/value"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate(name: str) -> None:
    cfg = preset_config(name)
    assert cfg.preset == name


def test_paper_hyperparameters() -> None:
    m = preset_config("market1501")
    assert (m.cluster.eps, m.model.num_parts, m.model.backbone) == (0.5, 4, "resnet50")
    assert (m.data.height, m.data.width, m.optim.lr, m.optim.weight_decay) == (384, 128, 3.5e-4, 5e-4)
    assert (m.optim.epochs, m.optim.iters, m.optim.batch_size, m.optim.step_size) == (60, 400, 64, 20)
    assert (m.cluster.mask_gamma, m.cluster.mask_gamma_until, m.loss.memory_momentum) == (0.2, 20, 0.2)
    assert (m.loss.temperature, m.loss.beta) == (0.05, 0.35)
    s = preset_config("msmt17")
    assert (s.cluster.eps, s.model.num_parts) == (0.7, 7)
    assert (m.optim.backbone_lr_mult, s.optim.backbone_lr_mult, m.optim.warmup_iters) == (1.0, 1.0, 0)
    assert preset_config("synthetic").optim.backbone_lr_mult == 0.1  # a converged zoo trunk: a tenth of the rate
    # the product presets train with PPLR's soft triplet; the paper presets reproduce the paper's Eq. 16 without it
    assert preset_config("synthetic").loss.soft_triplet and preset_config("folder").loss.soft_triplet
    assert not (m.loss.soft_triplet or s.loss.soft_triplet or preset_config("smoke").loss.soft_triplet)
    # from the converged zoo start the synthetic preset leaves out Eq. 13-15's classifiers; the others keep them
    assert not preset_config("synthetic").loss.part_classification
    assert all(preset_config(p).loss.part_classification for p in ("market1501", "msmt17", "folder", "smoke"))


@pytest.mark.parametrize("flag,ann", _field_flags(TrainConfig), ids=[f for f, _ in _field_flags(TrainConfig)])
def test_every_flag_sets_its_field(flag: str, ann) -> None:
    base = preset_config("synthetic")
    section, name = flag.split(".")
    current = getattr(getattr(base, section), name)
    expected, text = _other_value(flag, ann, current)
    argv = [f"--{flag}", *([text] if isinstance(text, str) else text)]
    cfg, _ = config_from_args(argv)
    assert getattr(getattr(cfg, section), name) == expected
    assert getattr(getattr(cfg, section), name) != current


@pytest.mark.parametrize("flag", [f for f, _ in _field_flags(TrainConfig)])
def test_every_field_is_read_by_code(flag: str) -> None:
    """No ignored flags: each field is read somewhere outside the config module (a loss switch of the same
    name as a :class:`LossTerms` field reaches it through ``LossConfig.terms`` and is read by ``total_loss``)."""
    section, name = flag.split(".")
    if section == "loss" and name in {f.name for f in dataclasses.fields(LossTerms)}:
        assert re.search(rf"\bconfig\.{name}\b", (ROOT / "scwm" / "losses" / "total.py").read_text()), flag
        return
    sources = "\n".join(p.read_text() for d in ("training", "scwm") for p in (ROOT / d).rglob("*.py"))
    assert re.search(rf"\.{section}\.{name}\b|\bpc\.{name}\b|\bd\.{name}\b", sources), flag


def test_loss_switches_have_one_name_and_default() -> None:
    """Every LossTerms switch the trainer exposes has the same name and default in the pydantic LossConfig,
    and reaches LossTerms unchanged; the only other LossTerms fields are the weights and tau (temperature)."""
    core = {f.name: f.default for f in dataclasses.fields(LossTerms)}
    trainer = {name: f.default for name, f in LossConfig.model_fields.items()}
    shared = set(core) & set(trainer)
    assert {"nce", "nce_weighted", "nce_parts", "nce_literal", "separation", "parsing", "diversity",
            "diversity_sum", "part_classification", "id_terms", "beta"} <= shared
    assert {n: core[n] for n in shared} == {n: trainer[n] for n in shared}
    assert {n for n in set(core) - shared if not n.startswith("lambda_")} == {"tau", "diversity_include_background"}
    assert LossConfig().terms() == LossTerms(tau=LossConfig().temperature)
    for name in shared:
        if isinstance(core[name], bool):
            flipped = LossConfig(**{name: not trainer[name]}).terms()
            assert getattr(flipped, name) is (not core[name]), name


def test_old_loss_names_still_work_with_a_warning(tmp_path) -> None:
    assert LEGACY_NAMES["loss"] == {"wnce": "nce", "weighted_nce": "nce_weighted", "part_nce": "nce_parts",
                                    "wnce_literal": "nce_literal"}
    with pytest.warns(DeprecatedNameWarning, match="--loss.wnce is deprecated; use --loss.nce"):
        cfg, _ = config_from_args(["--loss.wnce", "false"])
    assert cfg.loss.nce is False
    path = tmp_path / "old.yaml"
    path.write_text("loss:\n  weighted_nce: false\n  part_nce: false\n")
    with pytest.warns(DeprecatedNameWarning) as caught:
        cfg, _ = config_from_args(["--config", str(path), "--loss.nce_parts", "true"])  # the flag wins
    assert sorted(str(w.message) for w in caught) == [
        "config field loss.part_nce is deprecated; use loss.nce_parts",
        "config field loss.weighted_nce is deprecated; use loss.nce_weighted"]
    assert (cfg.loss.nce_weighted, cfg.loss.nce_parts) == (False, True)
    with pytest.warns(DeprecatedNameWarning, match="loss.wnce_literal is deprecated; use loss.nce_literal"):
        old = preset_config("smoke", {"loss": {"wnce_literal": True}})
    assert old.loss.nce_literal and old == preset_config("smoke", {"loss": {"nce_literal": True}})
    with pytest.warns(DeprecatedNameWarning):  # a recorded config (model_dump of an older version)
        recorded = TrainConfig.model_validate({"preset": "smoke", "loss": {"wnce": False, "part_nce": False}})
    assert (recorded.loss.nce, recorded.loss.nce_parts) == (False, False)
    with pytest.warns(DeprecatedNameWarning), pytest.raises(ValueError, match="both given"):
        preset_config("smoke", {"loss": {"wnce": False, "nce": True}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preset_config("smoke", {"loss": {"nce": False}})  # new names: no warning


def _hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def test_fingerprint_is_one_definition_of_the_same_run() -> None:
    base = preset_config("synthetic")
    fp = base.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and fp == _hash(base.fingerprint_dict())
    assert preset_config("synthetic", {"run": {"output": "elsewhere", "progress": False}}).fingerprint() == fp
    resumable = {"run": {"resume": False, "eval_every": 2, "save_every": 3, "device": "cpu", "eval_batch_size": 7},
                 "data": {"num_workers": 0}, "optim": {"epochs": 99}}
    # resume-free fields: a checkpoint may be continued under them, but they make another run for the harness
    assert preset_config("synthetic", resumable).fingerprint(for_resume=True) == base.fingerprint(for_resume=True)
    for section, fields in resumable.items():
        for name, value in fields.items():
            assert preset_config("synthetic", {section: {name: value}}).fingerprint() != fp, name
    for real in ({"cluster": {"eta": 2.0}}, {"run": {"seed": 1}}, {"run": {"precision": "bf16"}},
                 {"loss": {"nce": False}}, {"data": {"root": "x"}}):
        assert preset_config("synthetic", real).fingerprint() != fp, real


def _legacy_fields_at_legacy(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(section, field) of every field added after records were made (``legacy_value`` in its metadata) that
    ``cfg`` holds at that value: what a record made before the field existed lacks."""
    out = []
    for sec, section_field in TrainConfig.model_fields.items():
        ann = section_field.annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            continue
        for key, f in ann.model_fields.items():
            meta = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if "legacy_value" in meta and getattr(getattr(cfg, sec), key) == meta["legacy_value"]:
                out.append((sec, key))
    return out


def test_added_fields_at_their_legacy_value_are_left_out() -> None:
    """A config recorded before ``loss.diversity_sum`` / ``cluster.far_pairs`` existed keeps its fingerprint;
    the same fields at another value make another run (for the trainer's resume check too)."""
    paper = {"loss": {"soft_triplet": False}}  # the synthetic preset sets it; the paper's objective leaves it out
    base = preset_config("synthetic", paper)
    fields = {("loss", "diversity_sum"): (False, True), ("cluster", "far_pairs"): ("constant", "feature"),
              ("model", "bn_chunk_scope"): ("all", "trunk"), ("model", "calibrate_necks"): ("none", "parts"),
              ("data", "mean"): ([0.485, 0.456, 0.406], [0.357, 0.323, 0.328]),
              ("data", "std"): ([0.229, 0.224, 0.225], [0.252, 0.242, 0.239]),
              ("optim", "warmup_iters"): (0, 80),
              ("loss", "soft_triplet"): (False, True), ("model", "ema_decay"): (0.0, 0.999),
              ("loss", "id_terms"): ("both", "parts"), ("model", "part_pooling_grad"): (True, False)}
    assert {(sec, key) for sec, key in _legacy_fields_at_legacy(base)} >= set(fields)
    for (section, name), (legacy, other) in fields.items():
        assert getattr(getattr(base, section), name) == legacy
        recorded = base.fingerprint_dict()
        assert name not in recorded[section]
        dump = base.model_dump()  # the hash of a dict that lacks the field, as written before it was added
        for sec, key in (("run", "output"), ("run", "progress"), ("run", "resume"), ("run", "eval_every"),
                         ("run", "save_every"), ("run", "device"), ("run", "eval_batch_size"),
                         ("data", "num_workers"), ("optim", "epochs"), ("pretrain", "eval_every"),
                         *_legacy_fields_at_legacy(base)):
            del dump[sec][key]
        assert _hash(dump) == base.fingerprint(for_resume=True)
        for sec, key in (("run", "resume"), ("run", "eval_every"), ("run", "save_every"), ("run", "device"),
                         ("run", "eval_batch_size"), ("data", "num_workers"), ("optim", "epochs"),
                         ("pretrain", "eval_every")):
            dump[sec][key] = getattr(getattr(base, sec), key)
        assert _hash(dump) == base.fingerprint()
        changed = preset_config("synthetic", {**paper, section: {**paper.get(section, {}), name: other}})
        assert changed.fingerprint_dict()[section][name] == other and changed.fingerprint() != base.fingerprint()


def test_pixel_statistics_flags_and_validation() -> None:
    """``--data.mean`` / ``--data.std`` take three values each; wrong lengths, non-positive std and 0-255
    statistics are refused with a message naming the field; defaults are ImageNet's (scwm.data's constants)."""
    from scwm.data import IMAGENET_MEAN, IMAGENET_STD

    base = preset_config("smoke")
    assert tuple(base.data.mean) == IMAGENET_MEAN and tuple(base.data.std) == IMAGENET_STD
    cfg, _ = config_from_args(["--data.mean", "0.4815", "0.4578", "0.4082", "--data.std", "0.2686", "0.2613",
                               "0.2758", "--model.backbone", "plip_resnet50"])
    assert (cfg.data.mean, cfg.data.std) == ([0.4815, 0.4578, 0.4082], [0.2686, 0.2613, 0.2758])
    assert cfg.model.backbone == "plip_resnet50"
    with pytest.raises(SystemExit):
        config_from_args(["--data.mean", "0.5", "0.5"])
    assert preset_config("smoke").model.weights == "pretrain"
    assert config_from_args(["--preset", "smoke", "--model.weights", "none"])[0].model.weights is None
    for bad, match in (({"mean": [0.5, 0.5]}, "data.mean needs 3 values"), ({"std": [0.2, 0.0, 0.2]}, "data.std"),
                       ({"std": [0.2, -0.1, 0.2]}, "> 0"), ({"mean": [123.7, 116.3, 103.5]}, "divide 0-255")):
        with pytest.raises(ValueError, match=match):
            preset_config("smoke", {"data": bad})


def test_old_names_give_the_same_fingerprint() -> None:
    old = {"loss": {"wnce": False, "weighted_nce": False, "part_nce": False, "wnce_literal": True}}
    new = {"loss": {"nce": False, "nce_weighted": False, "nce_parts": False, "nce_literal": True}}
    with pytest.warns(DeprecatedNameWarning):
        assert preset_config("smoke", old).fingerprint() == preset_config("smoke", new).fingerprint()


def test_yaml_then_flags(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cluster:\n  eps: 0.4\n  k1: 12\noptim:\n  epochs: 3\n")
    cfg, _ = config_from_args(["--preset", "smoke", "--config", str(path), "--cluster.k1", "9"])
    assert (cfg.cluster.eps, cfg.cluster.k1, cfg.optim.epochs, cfg.preset) == (0.4, 9, 3, "smoke")


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--cluster.eps", "1.5"])
    with pytest.raises(SystemExit):
        config_from_args(["--loss.memory_update", "median"])
    with pytest.raises(SystemExit):
        config_from_args(["--optim.batch_size", "30", "--optim.num_instances", "4"])
    with pytest.raises(ValueError, match="not found"):
        config_from_args(["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        config_from_args(["--config", str(bad)])
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("cuhk03")
