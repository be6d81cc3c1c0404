"""The one-click demo gallery: find a trained checkpoint (or make an untrained demo model), export it, index a
gallery, and the instructions shown when there is nothing to open yet. No Gradio here."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.retriever import Retriever

__all__ = ["DEMO_SOURCE", "DemoPlan", "plan_demo", "build_demo", "untrained_model", "find_checkpoints",
           "is_untrained_demo", "missing_artifacts_markdown"]

DEMO_SOURCE = "untrained-demo"


def is_untrained_demo(retriever: Retriever) -> bool:
    """Whether the model is the randomly initialised demo model made by :func:`build_demo`."""
    return retriever.info()["model"]["metadata"].get("scwm.source_checkpoint") == DEMO_SOURCE


def find_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Trained models ``runs/*/model.pt`` under ``root``, newest first."""
    runs = Path(root) / "runs"
    found = [p for p in runs.glob("*/model.pt") if p.is_file()] if runs.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def missing_artifacts_markdown(index_dir: str | os.PathLike[str], error: str | None, plan: DemoPlan) -> str:
    """What is missing and the exact commands that create it (``index_dir`` and ``error`` are shown as given)."""
    ckpt = Path("runs", plan.checkpoint.parent.name, plan.checkpoint.name) if plan.checkpoint \
        else Path("runs/synthetic/model.pt")  # relative: checkpoints are root/runs/*/model.pt
    lines = ["## No gallery index to search yet", ""]
    if error:
        lines += [f"Could not open `{index_dir}`: {error}", ""]
    lines += [
        "Create the artifacts with these commands (from the project root), then reload this page:",
        "",
        "```bash",
        "python -m training.run                                   # train SCWM (synthetic world, ~15 min on CPU)",
        f"python -m serving.export --checkpoint {ckpt}   # -> exports/model.onnx + model.int8-static.onnx",
        "python -m serving.index build --model exports/model.onnx \\",
        "    --images data/synthetic/market-seed0/bounding_box_test --out exports/index",
        "```",
        "",
        f"Or build a demo gallery now with one click: **{plan.description}**",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class DemoPlan:
    """What the one-click demo build will do."""

    checkpoint: Path | None  # a trained checkpoint to export, or None for the untrained demo model
    model_out: Path
    index_out: Path
    images: Path | None  # a Market-layout root to index, or None to generate the tiny synthetic world
    description: str


def _checkpoint_data_root(checkpoint: Path, root: Path) -> Path | None:
    from scwm.models.checkpoint import CheckpointError, read_checkpoint

    try:
        config = read_checkpoint(checkpoint).get("config") or {}
    except CheckpointError:
        return None
    data = config.get("data", {}) if isinstance(config, dict) else {}
    raw = data.get("root") if isinstance(data, dict) else None
    if not raw:
        return None
    path = Path(raw) if Path(raw).is_absolute() else root / raw
    return path if (path / "bounding_box_test").is_dir() else None


def plan_demo(root: str | os.PathLike[str]) -> DemoPlan:
    """Export + index the newest trained checkpoint if there is one, else an untrained demo model on the
    tiny synthetic world (in ``exports/demo``)."""
    root = Path(root)
    ckpts = find_checkpoints(root)
    if ckpts:
        ckpt = ckpts[0]
        data = _checkpoint_data_root(ckpt, root)
        where = f"{data.relative_to(root) if data.is_relative_to(root) else data}/bounding_box_test" if data \
            else "a tiny generated synthetic world"
        return DemoPlan(ckpt, root / "exports/model.onnx", root / "exports/index", data,
                        f"export {ckpt.relative_to(root)} and index {where}")
    return DemoPlan(None, root / "exports/demo/model.onnx", root / "exports/demo/index", None,
                    "generate the tiny synthetic world and index it with an UNTRAINED demo model "
                    "(random weights: the results and parts are not meaningful)")


def untrained_model(spec: Any, images: Sequence[Path]) -> Any:
    """Random network whose BatchNorm statistics come from real images (so embeddings spread out)."""
    import torch

    from scwm.data.images import load_image
    from scwm.data.transforms import preprocess

    torch.manual_seed(0)
    net = spec.build()
    for mod in net.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.momentum = 1.0
    x = torch.from_numpy(np.stack([preprocess(load_image(p), spec.height, spec.width, spec.mean, spec.std)
                                   for p in images]))
    net.train()
    with torch.no_grad():
        net(x)
    return net.eval()


def build_demo(plan: DemoPlan, root: str | os.PathLike[str],
               progress: Callable[[float, str], None] | None = None, height: int = 128, width: int = 64,
               precision: str | None = None) -> Path:
    """Carry out ``plan``: generate data if needed, export the model (unless a valid one exists), build the
    index. Returns the index directory. ``height``/``width`` size the untrained model only; ``precision`` is the
    app's (None: ``$SCWM_PRECISION``, else ``auto``). ``int8`` exports the int8-static sibling too and indexes with
    it; ``auto`` on the CPU does so for a trained checkpoint, leaving the sibling out if its check against PyTorch
    fails (the untrained model is exported at fp32 only: its int8 variant misses the tolerance); see
    :mod:`serving.engine`."""
    from scwm.data.synthetic.writer import generate
    from serving import export as ex
    from serving import index as ix
    from serving.engine import OnnxEngine, resolve_precision, select_providers

    precision = resolve_precision(precision)
    auto = precision == "auto" and select_providers() == ["CPUExecutionProvider"] and plan.checkpoint is not None
    variants = ["fp32", "int8-static"] if precision == "int8" or auto else ["fp32"]

    def say(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    root = Path(root)
    data = plan.images
    if data is None:
        say(0.05, "generating the tiny synthetic world")
        data = generate("tiny", root / "data/synthetic/tiny-seed0", seed=0, progress=False)
    engine = None
    if plan.model_out.is_file():
        try:
            engine = OnnxEngine(plan.model_out, precision=precision)
        except ValueError:
            engine = None
    if engine is None:
        say(0.3, "exporting the model to ONNX (verified against PyTorch)")
        if plan.checkpoint is not None:
            ex.export_checkpoint(plan.checkpoint, plan.model_out, precisions=variants,
                                 optional=("int8-static",) if auto else ())
        else:
            from scwm.models import ModelSpec

            spec = ModelSpec(backbone="resnet18", num_parts=4, height=height, width=width)
            train = sorted((Path(data) / "bounding_box_train").glob("*.jpg"))[:32]
            ex.export_model(untrained_model(spec, train), spec, plan.model_out, precisions=variants,
                            source=DEMO_SOURCE, config={"demo": "untrained random weights"})
        engine = OnnxEngine(plan.model_out, precision=precision)
    say(0.6, "embedding and indexing the gallery")
    ix.build_index(engine, [data], plan.index_out, overwrite=(plan.index_out / ix.MANIFEST).is_file(),
                   progress=False)
    say(1.0, "done")
    return plan.index_out

