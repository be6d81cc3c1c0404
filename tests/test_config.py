"""Config: presets validate, YAML < flags precedence, every flag reaches the config and is read by code."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from training.config import PRESETS, TrainConfig, _field_flags, config_from_args, preset_config

ROOT = Path(__file__).resolve().parents[1]

SPECIAL = {  # flags whose "+1" would violate a cross-field rule
    "optim.batch_size": 64, "optim.num_instances": 8, "model.bn_chunks": 2, "run.eval_every": 3,
    "cluster.eps": 0.25, "cluster.mask_gamma": 0.5, "loss.memory_momentum": 0.5, "loss.beta": 0.5,
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
        return current * 2, repr(current * 2)
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


@pytest.mark.parametrize("flag,ann", _field_flags(TrainConfig), ids=[f for f, _ in _field_flags(TrainConfig)])
def test_every_flag_sets_its_field(flag: str, ann) -> None:
    base = preset_config("synthetic")
    section, name = flag.split(".")
    current = getattr(getattr(base, section), name)
    expected, text = _other_value(flag, ann, current)
    argv = [f"--{flag}", text]
    if flag == "run.eval_every":
        argv = [f"--{flag}", text]
    cfg, _ = config_from_args(argv)
    assert getattr(getattr(cfg, section), name) == expected
    assert getattr(getattr(cfg, section), name) != current


@pytest.mark.parametrize("flag", [f for f, _ in _field_flags(TrainConfig)])
def test_every_field_is_read_by_code(flag: str) -> None:
    """No ignored flags: each field is read somewhere outside the config module."""
    section, name = flag.split(".")
    sources = "\n".join(p.read_text() for d in ("training", "scwm") for p in (ROOT / d).rglob("*.py"))
    assert re.search(rf"\.{section}\.{name}\b|\bpc\.{name}\b|\blc\.{name}\b|\bd\.{name}\b", sources), flag


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
