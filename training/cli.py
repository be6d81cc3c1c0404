"""Command line of the trainer: one flag per :class:`training.config.TrainConfig` field (``--section.field VALUE``,
booleans ``true``/``false``), ``--preset``, ``--config FILE`` (YAML) and ``--print-config``; renamed fields are
accepted under their old names with a :class:`training.config.DeprecatedNameWarning`."""

from __future__ import annotations

import argparse
import typing
import warnings
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from .config import (
    LEGACY_NAMES,
    PRESETS,
    DeprecatedNameWarning,
    TrainConfig,
    load_yaml,
    preset_config,
    upgrade_legacy_names,
)


def _field_flags(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    flags = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            flags += _field_flags(ann, f"{prefix}{name}.")
        elif name != "preset" or prefix:  # the top-level preset is --preset; pretrain.preset is a flag
            flags.append((f"{prefix}{name}", ann))
    return flags


def _field_help(flag: str) -> str | None:
    section, name = flag.split(".")
    sub = TrainConfig.model_fields[section].annotation
    desc = sub.model_fields[name].description if sub is not None else None
    # argparse %-formats help strings: a literal "%" in a docstring (e.g. "from 1%") must be escaped.
    return " ".join(desc.split()).replace("%", "%%") if desc else None


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(ann: Any) -> Any:
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if ann is bool:
        return _parse_bool
    if ann is int:
        return int
    if ann is float:
        return float
    if typing.get_origin(ann) is Literal:
        return str
    if args and len(args) == 1:
        return _converter(args[0])
    return lambda s: None if s.lower() in ("none", "null") else s


class _LegacyFlag(argparse.Action):
    """A renamed field's old flag: sets the new field, with a :class:`DeprecatedNameWarning`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warnings.warn(f"{option_string} is deprecated; use --{self.dest}", DeprecatedNameWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def build_parser(prog: str = "python -m training.run") -> argparse.ArgumentParser:
    """Argument parser with ``--preset``, ``--config``, one ``--section.field`` flag per field, and the old
    flags of renamed fields (hidden from ``--help``). A field flag not given is absent from the namespace (so that
    ``--model.weights none`` can set None)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="synthetic", choices=sorted(PRESETS),
                        help="named preset the other options override")
    parser.add_argument("--config", default=None, help="YAML file with overrides (applied before flags)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    for flag, ann in _field_flags(TrainConfig):
        choices = typing.get_args(ann) if typing.get_origin(ann) is Literal else None
        if typing.get_origin(ann) is list:  # data.mean / data.std: three values after the flag
            parser.add_argument(f"--{flag}", dest=flag, default=argparse.SUPPRESS, nargs=3, metavar=("R", "G", "B"),
                                type=_converter(typing.get_args(ann)[0]), help=_field_help(flag))
            continue
        parser.add_argument(f"--{flag}", dest=flag, default=argparse.SUPPRESS, type=_converter(ann), choices=choices,
                            metavar=flag.split(".")[-1].upper(), help=_field_help(flag))
    for section, names in LEGACY_NAMES.items():
        fields = TrainConfig.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        for old, new in names.items():
            parser.add_argument(f"--{section}.{old}", dest=f"{section}.{new}", default=argparse.SUPPRESS,
                                action=_LegacyFlag, type=_converter(fields[new].annotation), help=argparse.SUPPRESS)
    return parser


def config_from_args(argv: list[str] | None = None,
                     prog: str = "python -m training.run") -> tuple[TrainConfig, argparse.Namespace]:
    """Resolve preset < YAML file < command-line flags into a validated :class:`TrainConfig`."""
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    overrides = upgrade_legacy_names(load_yaml(ns.config)) if ns.config else {}
    overrides.pop("preset", None)
    given = vars(ns)
    for flag, _ in _field_flags(TrainConfig):
        if flag not in given:
            continue
        value = given[flag]
        node = overrides
        *parents, leaf = flag.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        cfg = preset_config(ns.preset, overrides)
    except ValidationError as exc:
        parser.error(str(exc))
    return cfg, ns
