"""Export a trained SCWM checkpoint to ONNX, with metadata, and verify it against PyTorch.

``python -m serving.export --checkpoint CKPT [--out exports/model.onnx] [--opset 18] [--fp16]
[--int8 dynamic|static] [--no-int8] [--verify-images DIR]``. The CLI writes ``model.int8-static.onnx`` next to the
fp32 model unless ``--no-int8`` (:data:`EXPORT_COST` says what it adds to the export time; if its check against
PyTorch fails it is left out with a warning, an error with ``--int8 static``); the CPU serves it by default
(``auto`` in :mod:`serving.engine`), ``--precision fp32`` serves the fp32 file. :func:`export_model` writes the
``precisions`` it is given (fp32 alone by default).

The exported graph maps ``images`` (N, 3, H, W; float32, normalized as by
:func:`scwm.data.transforms.preprocess`; N dynamic) to ``global_feat`` (N, D, L2-normalized),
``part_feats`` (N, P, D, L2-normalized) and ``part_probs`` (N, K, h, w; background last).
Every file is verified against the PyTorch model on images from ``--verify-images`` (else pedestrians rendered by
:mod:`scwm.data.synthetic`, else generated pictures) at batch 1 and batch 8
(and batch 8 row 0 against batch 1) before it is atomically renamed into place; a failed check raises
:class:`ExportVerificationError` and leaves any previous file untouched. ``--fp16`` and ``--int8`` write
additional variants next to the fp32 model (``model.fp16.onnx``, ``model.int8-dynamic.onnx``, ...). All files
of one export are renamed into place together after every one is verified, so a failure, a full disk
(:class:`ExportError` naming the file) or a killed process leaves the previous set; each file carries its own
metadata, so there is no sidecar to get out of step with it (``docs/bench/faults.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from PIL import Image, ImageDraw
from torch import nn

from scwm import __version__
from scwm.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from scwm.data.transforms import preprocess
from scwm.models.checkpoint import ModelSpec, read_checkpoint
from scwm.models.scwm_net import SCWMNet
from scwm.utils import atomic_path, sha256_file
from serving.engine import INPUT_NAME, META_PREFIX, OUTPUT_NAMES, OnnxEngine
from serving.quantize import INT8_STATIC_RECIPE, make_variant

__all__ = ["ExportError", "ExportVerificationError", "ExportReport", "Tolerance", "TOLERANCES",
           "export_model", "export_checkpoint", "verification_images", "rendered_pictures", "generated_pictures",
           "model_fingerprint", "variant_path", "INT8_STATIC_RECIPE", "main"]

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("exports/model.onnx")
DEFAULT_OPSET = 18
FORMAT_VERSION = "1"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
CALIBRATION_IMAGES = 64
# what the default int8-static sibling adds to a CLI export, measured once (docs/bench/int8.md, section 4)
EXPORT_COST = "5-8 s to a 15-30 s fp32 export: resnet18 at 64x32 / 128x64, 2 busy CPU cores"


class ExportError(RuntimeError):
    """The model could not be exported."""


class ExportVerificationError(ExportError):
    """The exported model's outputs differ from PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class Tolerance:
    """Parity limits: max abs diff of the embeddings / part maps (None = not checked) and the minimum
    cosine similarity between exported and PyTorch embeddings."""

    feat_atol: float | None
    probs_atol: float
    min_cosine: float


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(feat_atol=1e-4, probs_atol=1e-4, min_cosine=0.99999),
    "fp16": Tolerance(feat_atol=1e-2, probs_atol=1e-2, min_cosine=0.999),
    # int8: embeddings are checked by cosine; part maps only for gross errors (they are for display)
    "int8-dynamic": Tolerance(feat_atol=None, probs_atol=0.5, min_cosine=0.95),
    "int8-static": Tolerance(feat_atol=None, probs_atol=0.5, min_cosine=0.95),
}


@dataclass
class ExportReport:
    """Where a model was written and how closely it matches PyTorch (``parity[check][output]``)."""

    path: Path
    precision: str
    fingerprint: str
    metadata: dict[str, str]
    parity: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


class _ExportWrapper(nn.Module):
    """Plain-tuple forward for tracing: (global_feat, part_feats, part_probs)."""

    def __init__(self, net: SCWMNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(images, with_logits=False)
        return out.global_feat, out.part_feats, out.part_probs


def variant_path(out: str | Path, precision: str) -> Path:
    """``exports/model.onnx`` -> ``exports/model.fp16.onnx`` etc. (fp32 keeps ``out``)."""
    out = Path(out)
    return out if precision == "fp32" else out.with_name(f"{out.stem}.{precision}{out.suffix}")


def model_fingerprint(model: onnx.ModelProto) -> str:
    """sha256 of the serialized graph and weights, ignoring ``metadata_props`` (so the fingerprint
    can be stored in the metadata)."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.metadata_props[:]
    return hashlib.sha256(stripped.SerializeToString(deterministic=True)).hexdigest()


def _strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (FX node text, stack traces): it is large and varies
    between processes, which would make the fingerprint of an identical model change."""
    graphs: list[onnx.GraphProto] = [proto.graph]
    nodes = [*proto.graph.node, *(n for f in proto.functions for n in f.node)]
    for node in nodes:
        node.ClearField("metadata_props")
        node.ClearField("doc_string")
        graphs.extend(a.g for a in node.attribute if a.HasField("g"))
    for g in graphs:
        for v in (*g.value_info, *g.initializer, *g.input, *g.output):
            v.ClearField("metadata_props")


def generated_pictures(n: int, seed: int = 0) -> list[Image.Image]:
    """Deterministic pedestrian-like pictures (background gradient, head, torso, legs, noise) of varied
    sizes, used when no real images are given."""
    rng = np.random.default_rng(seed)
    pics = []
    for _ in range(n):
        h, w = int(rng.integers(96, 200)), int(rng.integers(40, 100))
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0.0, 1.0, h)[:, None, None]
        bg = (top * (1 - ramp) + bottom * ramp) * np.ones((1, w, 1))
        img = Image.fromarray(bg.astype(np.uint8), "RGB")
        d = ImageDraw.Draw(img)
        cx = w // 2 + int(rng.integers(-w // 8, w // 8 + 1))

        def col() -> tuple[int, int, int]:
            return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]

        d.ellipse([cx - w // 8, int(0.05 * h), cx + w // 8, int(0.18 * h)], fill=col())
        d.rectangle([cx - w // 4, int(0.18 * h), cx + w // 4, int(0.55 * h)], fill=col())
        legs = col()
        d.rectangle([cx - w // 4, int(0.55 * h), cx - 2, int(0.92 * h)], fill=legs)
        d.rectangle([cx + 2, int(0.55 * h), cx + w // 4, int(0.92 * h)], fill=legs)
        d.rectangle([cx - w // 4, int(0.92 * h), cx + w // 4, int(0.97 * h)], fill=col())
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
        pics.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"))
    return pics


def rendered_pictures(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` pedestrians rendered by the synthetic world (:mod:`scwm.data.synthetic`); falls back to
    :func:`generated_pictures` if the renderer is unavailable or fails."""
    try:
        from scwm.data.synthetic import camera_styles, preset, render_sample, sample_identity

        rng = np.random.default_rng(seed)
        config = preset("tiny")
        cams = camera_styles(config, seed)
        return [Image.fromarray(render_sample(sample_identity(rng), cams[i % len(cams)], rng, config=config)[0])
                for i in range(n)]
    except Exception as exc:  # optional dependency inside the project; never block an export on it
        log.info("synthetic renderer unavailable (%s); using generated pictures", exc)
        return generated_pictures(n, seed=seed)


def verification_images(folder: str | Path | None = None, n: int = 8, seed: int = 0) -> list[Image.Image]:
    """``n`` RGB images: the first readable images (sorted) under ``folder``, topped up with rendered
    synthetic pedestrians (:func:`rendered_pictures`) when the folder has fewer (or none is given)."""
    images: list[Image.Image] = []
    if folder is not None:
        root = Path(folder)
        if not root.is_dir():
            raise ExportError(f"--verify-images folder not found: {root}")
        for p in sorted(q for q in root.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS):
            try:
                images.append(load_image(p))
            except ImageLoadError as exc:
                log.warning("skipping verification image: %s", exc)
            if len(images) == n:
                break
        if not images:
            log.warning("no readable image in %s; verifying on generated pictures", root)
    return images + rendered_pictures(n - len(images), seed=seed)


def _torch_reference(model: SCWMNet, batch: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch outputs for a preprocessed batch (CPU, fp32, eval mode)."""
    with torch.no_grad():
        out = model(torch.from_numpy(batch), with_logits=False)
    return {"global_feat": out.global_feat.numpy(), "part_feats": out.part_feats.numpy(),
            "part_probs": out.part_probs.numpy()}


def _compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    res: dict[str, float] = {}
    for name in OUTPUT_NAMES:
        a, b = ref[name].astype(np.float64), got[name].astype(np.float64)
        if a.shape != b.shape:
            raise ExportVerificationError(f"output {name}: shape {b.shape} in ONNX vs {a.shape} in PyTorch")
        res[f"{name}.max_abs"] = float(np.abs(a - b).max()) if a.size else 0.0
        if name != "part_probs":
            a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
            norms = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
            cos = (a2 * b2).sum(1) / np.maximum(norms, 1e-12)
            res[f"{name}.min_cos"] = float(cos.min())
    return res


def _violations(check: str, diffs: dict[str, float], tol: Tolerance) -> list[str]:
    bad = []
    for key, val in diffs.items():
        name, kind = key.split(".")
        if not math.isfinite(val):
            bad.append(f"{check} {key} = {val}")
        elif kind == "max_abs":
            limit = tol.probs_atol if name == "part_probs" else tol.feat_atol
            if limit is not None and val > limit:
                bad.append(f"{check} {key} = {val:.3g} > {limit:.3g}")
        elif kind == "min_cos" and val < tol.min_cosine:
            bad.append(f"{check} {key} = {val:.6f} < {tol.min_cosine}")
    return bad


def verify_onnx(path: Path, model: SCWMNet, spec: ModelSpec, images: Sequence[Image.Image],
                tol: Tolerance, name: str | None = None) -> dict[str, dict[str, float]]:
    """Compare ONNX Runtime (CPU) with PyTorch at batch 1 and batch 8, and ONNX batch 8 row 0 with
    ONNX batch 1; raise :class:`ExportVerificationError` listing every value beyond ``tol``."""
    if len(images) < 8:
        raise ExportError(f"verification needs 8 images, got {len(images)}")
    x = np.stack([preprocess(im, spec.height, spec.width, spec.mean, spec.std) for im in images[:8]])
    engine = OnnxEngine(path, providers=["CPUExecutionProvider"], precision="fp32")  # the file itself
    ort1, ort8 = engine.run(x[:1]), engine.run(x)
    parity = {
        "batch1": _compare(_torch_reference(model, x[:1]), ort1),
        "batch8": _compare(_torch_reference(model, x), ort8),
        "batch8_row0_vs_batch1": _compare(ort1, {k: v[:1] for k, v in ort8.items()}),
    }
    bad = [msg for check, diffs in parity.items() for msg in _violations(check, diffs, tol)]
    if bad:
        raise ExportVerificationError(f"exported model {name or path} does not match PyTorch (nothing was "
                                      "written): " + "; ".join(bad))
    return parity


def _export_proto(model: SCWMNet, spec: ModelSpec, opset: int) -> onnx.ModelProto:
    wrapper = _ExportWrapper(model).eval()
    example = torch.zeros(2, 3, spec.height, spec.width)  # batch 2: a size-1 dim would be specialised
    names = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES), "opset_version": opset}
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example,), None, dynamo=True, external_data=False, verbose=False,
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}}, **names)
        assert program is not None
        return program.model_proto
    except Exception as exc:  # the dynamo exporter can fail in many ways; fall back to TorchScript
        log.warning("dynamo ONNX export failed (%s); falling back to the TorchScript exporter", exc)
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), buf, dynamo=False, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)}, **names)
    return onnx.load_model_from_string(buf.getvalue())


def _base_metadata(spec: ModelSpec, config: Any, source: str | None, source_sha: str | None,
                   opset: int) -> dict[str, str]:
    fg = spec.num_parts - 1
    meta = {
        "format_version": FORMAT_VERSION,
        "version": __version__,
        "input_name": INPUT_NAME,
        "input_height": str(spec.height),
        "input_width": str(spec.width),
        "input_layout": "NCHW, RGB, (x/255 - mean)/std after PIL bilinear resize to (width, height)",
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "num_parts": str(spec.num_parts),
        "part_names": json.dumps(list(spec.part_names)),
        "outputs": json.dumps({"global_feat": "(N, D) L2-normalized",
                               "part_feats": f"(N, {fg}, D) L2-normalized",
                               "part_probs": f"(N, {spec.num_parts}, h, w) softmax, background last"}),
        "spec": json.dumps(spec.to_dict()),
        "opset": str(opset),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if config is not None:
        meta["config"] = json.dumps(config, default=str, sort_keys=True)
    if source is not None:
        meta["source_checkpoint"] = source
    if source_sha is not None:
        meta["source_sha256"] = source_sha
    return meta


def _set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {f"{META_PREFIX}{k}": v for k, v in meta.items()})


def export_model(model: SCWMNet, spec: ModelSpec, out: str | Path = DEFAULT_OUT, *,
                 precisions: Sequence[str] = ("fp32",), opset: int = DEFAULT_OPSET, config: Any = None,
                 source: str | None = None, source_sha: str | None = None,
                 verify_images: str | Path | None = None, calibration_images: str | Path | None = None,
                 tolerances: dict[str, Tolerance] | None = None, optional: Sequence[str] = ()) -> list[ExportReport]:
    """Export ``model`` (put in eval mode on CPU) to ``out`` and optional variants; verify each one and
    write it atomically. Returns one :class:`ExportReport` per precision written (fp32 first). A variant in
    ``optional`` whose verification fails is left out with a warning (no report) instead of failing the export.
    Variants record the fingerprint of the fp32 file they were derived from (``scwm.fp32_fingerprint``)."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision(s) {unknown}; choose from {PRECISIONS}")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"output path must end with .onnx, got {out}")
    tols = {**TOLERANCES, **(tolerances or {})}
    model = model.to("cpu").eval()
    images = verification_images(verify_images, 8)
    calib_imgs = verification_images(calibration_images, CALIBRATION_IMAGES, seed=1) if calibration_images else images
    calib = np.stack([preprocess(im, spec.height, spec.width, spec.mean, spec.std) for im in calib_imgs])
    base = _base_metadata(spec, config, source, source_sha, opset)
    order = ["fp32"] + [p for p in precisions if p != "fp32"]
    reports: list[ExportReport] = []
    t0 = time.perf_counter()
    proto = _export_proto(model, spec, opset)
    _strip_debug_info(proto)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph is invalid: {exc}") from exc
    # Every file is written and verified under a temporary name first; only when all are verified are they
    # renamed into place, one after the other within microseconds (the commit point of the set; each file is
    # self-contained: its metadata, fingerprint included, is inside it). A failure or a kill before that leaves
    # every previous file untouched; the temporary files of a killed export are removed by the next one.
    try:
        with contextlib.ExitStack() as commit:
            fp32_tmp, fp32_fingerprint = out, ""
            for precision in order:
                t1 = time.perf_counter()
                target = variant_path(out, precision)
                try:
                    with contextlib.ExitStack() as one:  # a failed file's temporary is removed here
                        tmp = one.enter_context(atomic_path(target))
                        # variants are derived from the verified fp32 file, which is written first
                        vproto = proto if precision == "fp32" else make_variant(fp32_tmp, proto, precision, tmp, calib)
                        vproto.producer_name, vproto.producer_version = "scwm", __version__
                        emb = vproto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value or model.feat_dim
                        meta = {**base, "precision": precision, "embedding_size": str(emb),
                                "fingerprint": model_fingerprint(vproto)}
                        if precision != "fp32":
                            meta["fp32_fingerprint"] = fp32_fingerprint
                        if precision == "int8-static":
                            meta["quantization"] = json.dumps(INT8_STATIC_RECIPE, sort_keys=True)
                        _set_metadata(vproto, meta)
                        onnx.save_model(vproto, str(tmp))
                        os.chmod(tmp, 0o644)  # mkstemp creates 0600; models are meant to be shared
                        parity = verify_onnx(tmp, model, spec, images, tols[precision], name=str(target))
                        commit.enter_context(one.pop_all())  # renamed into place with the whole set
                except ExportVerificationError as exc:
                    if precision == "fp32" or precision not in optional:
                        raise
                    log.warning("%s not written: %s", target.name, exc)
                    continue
                if precision == "fp32":
                    fp32_tmp, fp32_fingerprint = tmp, meta["fingerprint"]
                reports.append(ExportReport(target, precision, meta["fingerprint"], meta, parity,
                                            time.perf_counter() - (t0 if precision == "fp32" else t1)))
    except OSError as exc:  # e.g. a full disk; atomic_path names the file being written
        what = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
        raise ExportError(f"export not written: {what}; the previous files are unchanged") from exc
    return reports


def export_checkpoint(checkpoint: str | Path, out: str | Path = DEFAULT_OUT,
                      **kwargs: Any) -> list[ExportReport]:
    """Rebuild the network of ``checkpoint`` (:func:`scwm.models.load_model`) and :func:`export_model` it,
    embedding the checkpoint's ``config`` (if any), spec and sha256 in the metadata."""
    from scwm.models.checkpoint import load_model

    checkpoint = Path(checkpoint)
    model, spec = load_model(checkpoint, "cpu")
    config = read_checkpoint(checkpoint).get("config")
    return export_model(model, spec, out, config=config, source=checkpoint.name,
                        source_sha=sha256_file(checkpoint), **kwargs)


def _format_report(r: ExportReport) -> str:
    worst = {k: max((d[k] for d in r.parity.values() if k in d), default=float("nan"))
             for k in ("global_feat.max_abs", "part_feats.max_abs", "part_probs.max_abs")}
    cos = min(d.get("global_feat.min_cos", 1.0) for d in r.parity.values())
    size = r.path.stat().st_size / 1e6
    return (f"{r.precision:>12}: {r.path} ({size:.1f} MB, {r.seconds:.1f} s) "
            f"fingerprint {r.fingerprint[:16]} "
            f"| max|diff| global {worst['global_feat.max_abs']:.2e} parts {worst['part_feats.max_abs']:.2e} "
            f"probs {worst['part_probs.max_abs']:.2e} | min cos {cos:.6f} (batch 1 and 8)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="scwm checkpoint (.pt) to export")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output .onnx path (default: %(default)s)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    ap.add_argument("--fp16", action="store_true", help="also write an fp16 variant (model.fp16.onnx)")
    ap.add_argument("--int8", choices=["dynamic", "static"], action="append", default=[],
                    help="also write an int8 variant (onnxruntime.quantization); may be repeated. static: "
                         "model.int8-static.onnx, which the CPU serves by default (docs/bench/int8.md); written by "
                         "default, left out with a warning if its check fails unless --int8 static is given")
    ap.add_argument("--no-int8", action="store_true",
                    help=f"do not write model.int8-static.onnx (it adds {EXPORT_COST}); the CPU then serves fp32")
    ap.add_argument("--verify-images", help="folder of images for the parity check (default: generated)")
    ap.add_argument("--calibration-images", help="folder of images for int8-static calibration, up to "
                    f"{CALIBRATION_IMAGES} used (default: the 8 verification images; docs/bench/int8.md calibrated "
                    "on 64 training images)")
    ap.add_argument("--atol", type=float, help="override the fp32 max abs tolerance (default 1e-4)")
    args = ap.parse_args(argv)
    if args.no_int8 and args.int8:
        ap.error(f"--no-int8 contradicts --int8 {' '.join(args.int8)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # our messages; the exporter's optimiser is chatty at INFO
    int8 = [] if args.no_int8 else [*args.int8, "static"]
    precisions = ["fp32"] + (["fp16"] if args.fp16 else []) + [f"int8-{m}" for m in dict.fromkeys(int8)]
    optional = () if args.no_int8 or "static" in args.int8 else ("int8-static",)  # by default: skipped if it fails
    tolerances = None
    if args.atol is not None:
        t = TOLERANCES["fp32"]
        tolerances = {"fp32": Tolerance(args.atol, args.atol, t.min_cosine)}
    try:
        reports = export_checkpoint(args.checkpoint, args.out, precisions=precisions, opset=args.opset,
                                    verify_images=args.verify_images,
                                    calibration_images=args.calibration_images, tolerances=tolerances,
                                    optional=optional)
    except (ExportError, ValueError, RuntimeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    for r in reports:
        print(_format_report(r))
    if optional and "int8-static" not in {r.precision for r in reports}:
        print("model.int8-static.onnx was not written (its check against PyTorch failed, see above); the CPU serves "
              "the fp32 model. Pass --int8 static to make this an error", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
