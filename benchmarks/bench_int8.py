"""int8 inference on the CPU: why int8-static was ~1.1x fp32, and which int8 recipe is fast.

    python -m benchmarks.bench_int8 --checkpoint CKPT --data MARKET_ROOT [--out docs/bench/int8.md]

Exports ``CKPT`` to fp32 ONNX, quantizes it with several ``onnxruntime.quantization`` recipes (activation /
weight types, per-channel, reduce_range, QDQ vs QOperator), and reports for each: the graph after ONNX
Runtime's optimisations (how many Conv nodes became QLinearConv, which stay float, per-channel weights,
activation type), throughput at one batch size timed side by side (engines alternate in rounds, median),
GFLOP/s against the measured fp32 and int8 matmul peaks, cosine to the fp32 embeddings and mAP / rank-1 on the
full query/gallery split, and the top nodes of ONNX Runtime's profiler for a few engines.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from scwm.utils import atomic_write_bytes

NOSPIN = {"session.intra_op.allow_spinning": "0"}
_DTYPES = {onnx.TensorProto.UINT8: "U8", onnx.TensorProto.INT8: "S8"}


@dataclass
class GraphAnalysis:
    """What an (optionally quantized) ONNX model becomes inside ONNX Runtime's CPU provider."""

    ops: dict[str, int]  # op types of the file
    optimized_ops: dict[str, int]  # op types after ORT graph optimisation (ORT_ENABLE_ALL)
    convs: int  # Conv + QLinearConv in the file
    fused_convs: int  # QLinearConv after optimisation
    float_convs: list[str] = field(default_factory=list)  # Conv nodes still float after optimisation
    shared_input: list[str] = field(default_factory=list)  # of those, the ones whose input DQ feeds >1 node
    activation_type: str = "-"  # U8 / S8 (zero points of activation QuantizeLinear), '-' if none
    weight_type: str = "-"  # U8 / S8 of the Conv weights
    per_channel: bool | None = None  # every Conv weight has one scale per output channel

    @property
    def float_share(self) -> str:
        return f"{len(self.float_convs)}/{self.convs}"


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in graph.initializer}


def analyze_graph(model_path: str | Path, optimized_path: str | Path | None = None) -> GraphAnalysis:
    """Count the op types of ``model_path`` and of ORT's optimised graph (written to ``optimized_path``, or a
    temporary file), and find which convolutions ORT fused into QLinearConv and which stay float."""
    model = onnx.load(str(model_path))
    g = model.graph
    inits = _initializers(g)
    prod = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = collections.Counter(i for n in g.node for i in n.input)
    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(optimized_path) if optimized_path else Path(tmp) / "opt.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(opt)
        so.log_severity_level = 3
        ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        og = onnx.load(str(opt)).graph
    ops = collections.Counter(n.op_type for n in g.node)
    optimized = collections.Counter(n.op_type for n in og.node)
    act, wtype, per_channel = set(), set(), []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            act.add(_DTYPES.get(inits[n.input[2]].data_type, "?"))
        if n.op_type == "QLinearConv":
            act.add(_DTYPES.get(inits[n.input[2]].data_type, "?") if n.input[2] in inits else "?")
            wtype.add(_DTYPES.get(inits[n.input[3]].data_type, "?") if n.input[3] in inits else "?")
            scale = inits.get(n.input[4])
            per_channel.append(scale is not None and int(np.prod(scale.dims)) > 1)
        if n.op_type == "Conv" and n.input[1] in prod and prod[n.input[1]].op_type == "DequantizeLinear":
            dq = prod[n.input[1]]
            if dq.input[0] in inits:
                wtype.add(_DTYPES.get(inits[dq.input[0]].data_type, "?"))
            scale = inits.get(dq.input[1])
            per_channel.append(scale is not None and int(np.prod(scale.dims)) > 1)
    float_convs = [n.name for n in og.node if n.op_type == "Conv"]
    shared = []
    for n in g.node:
        if n.op_type == "Conv" and n.name in float_convs and n.input[0] in prod:
            if prod[n.input[0]].op_type == "DequantizeLinear" and consumers[n.input[0]] > 1:
                shared.append(n.name)
    return GraphAnalysis(
        ops=dict(ops),
        optimized_ops=dict(optimized),
        convs=ops["Conv"] + ops["QLinearConv"],
        fused_convs=optimized["QLinearConv"],
        float_convs=float_convs,
        shared_input=shared,
        activation_type="/".join(sorted(act)) or "-",
        weight_type="/".join(sorted(wtype)) or "-",
        per_channel=all(per_channel) if per_channel else None,
    )


def session(path: str | Path, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    """CPU session, ORT_ENABLE_ALL, ``threads`` intra-op threads, no spinning (fair interleaved timing)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    for k, v in NOSPIN.items():
        so.add_session_config_entry(k, v)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def profile_top(
    path: str | Path, x: np.ndarray, threads: int, runs: int, prefix: str, top: int = 8
) -> tuple[list[tuple[str, str, float, float]], dict[str, float]]:
    """ORT profiler: (node, op, ms per run, share of node time) of the ``top`` slowest nodes, and ms per run
    summed by op type."""
    sess = session(path, threads, profile_prefix=prefix)
    sess.run(None, {"images": x})
    for _ in range(runs):
        sess.run(None, {"images": x})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    per_node: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))] += e["dur"]
    total = sum(per_node.values()) or 1.0
    n = runs + 1
    by_op: dict[str, float] = collections.defaultdict(float)
    for (_, op), us in per_node.items():
        by_op[op] += us / n / 1e3
    rows = sorted(per_node.items(), key=lambda kv: -kv[1])[:top]
    return [(name, op, us / n / 1e3, us / total) for (name, op), us in rows], dict(by_op)


def model_gflops(model: torch.nn.Module, height: int, width: int) -> float:
    """GFLOP per image (2 x multiply-adds) of the Conv2d and Linear layers, counted with forward hooks."""
    macs = [0]

    def hook(mod: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs[0] += out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            macs[0] += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, height, width), with_logits=False)
    finally:
        for h in hs:
            h.remove()
    return 2 * macs[0] / 1e9


def _matmul_integer_model(n: int, path: Path) -> None:
    a = onnx.helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, [n, n])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [n, n])
    w = numpy_helper.from_array(np.random.default_rng(0).integers(-64, 64, (n, n), dtype=np.int8), "w")
    node = onnx.helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    graph = onnx.helper.make_graph([node], "mmi", [a], [y], initializer=[w])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))


def matmul_peaks(n: int, threads: int, work: Path, rounds: int = 3) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of an n x n x n matmul: torch fp32, and ORT MatMulInteger u8 x s8 -> s32;
    timed alternately, median."""
    from benchmarks.bench_serving import _interleaved

    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    _matmul_integer_model(n, work / "mmi.onnx")
    sess = session(work / "mmi.onnx", threads)
    au8 = np.random.default_rng(1).integers(0, 256, (n, n), dtype=np.uint8)
    fns = {
        "fp32 (torch.matmul)": lambda: torch.matmul(a, b),
        "int8 u8s8 (ORT MatMulInteger)": lambda: sess.run(None, {"a": au8}),
    }
    med = _interleaved(fns, min_time=2.0 * rounds, rounds=rounds)
    return {k: 2 * n**3 / t / 1e9 for k, t in med.items()}


VARIANTS: dict[str, dict[str, Any]] = {
    # the recipe of serving.export before this benchmark: S8 activations, S8 weights, per-channel, QDQ
    "int8 QDQ S8S8 per-channel (old export)": dict(act="S8", weight="S8", per_channel=True),
    "int8 QDQ U8S8 per-channel": dict(act="U8", weight="S8", per_channel=True),
    "int8 QDQ U8S8 per-channel reduce_range": dict(act="U8", weight="S8", per_channel=True, reduce_range=True),
    "int8 QDQ U8S8 per-tensor": dict(act="U8", weight="S8", per_channel=False),
    "int8 QDQ U8U8 per-channel": dict(act="U8", weight="U8", per_channel=True),
    "int8 QOperator U8S8 per-channel": dict(act="U8", weight="S8", per_channel=True, fmt="QOperator"),
    "int8 QOperator S8S8 per-channel": dict(act="S8", weight="S8", per_channel=True, fmt="QOperator"),
}


def quantize(
    source: Path,
    out: Path,
    calib: np.ndarray,
    act: str,
    weight: str,
    per_channel: bool,
    reduce_range: bool = False,
    fmt: str = "QDQ",
) -> Path:
    """``onnxruntime.quantization.quantize_static`` (MinMax calibration on ``calib``, 8 images per batch)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"images": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    types = {"U8": QuantType.QUInt8, "S8": QuantType.QInt8}
    quantize_static(
        str(source),
        str(out),
        Reader(),
        quant_format=getattr(QuantFormat, fmt),
        activation_type=types[act],
        weight_type=types[weight],
        per_channel=per_channel,
        reduce_range=reduce_range,
    )
    return out


def _embed(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([sess.run(["global_feat"], {"images": x[s : s + batch]})[0] for s in range(0, len(x), batch)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="trained scwm checkpoint")
    ap.add_argument(
        "--data", required=True, help="Market-layout root (query/, bounding_box_test/, bounding_box_train/)"
    )
    ap.add_argument("--out", default="docs/bench/int8.md")
    ap.add_argument("--work", help="working folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--min-time", type=float, default=10.0, help="seconds of timing per engine, over all rounds")
    ap.add_argument("--calib", type=int, default=64, help="calibration images (every k-th training image)")
    ap.add_argument("--peak-n", type=int, default=4096)
    ap.add_argument("--profile-runs", type=int, default=5)
    args = ap.parse_args(argv)
    import shutil

    from onnxruntime.quantization.shape_inference import quant_pre_process

    from benchmarks.bench_serving import _interleaved, _load, _machine, _rank_metrics
    from scwm.data.images import load_image
    from scwm.data.transforms import preprocess
    from scwm.models import load_model
    from serving import export as ex

    torch.set_num_threads(args.threads)
    cmd = "python -m benchmarks.bench_int8 " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = _load()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_int8_"))
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    data = Path(args.data)
    model, spec = load_model(args.checkpoint)
    gflop = model_gflops(model, spec.height, spec.width)

    def prep(files: list[Path]) -> np.ndarray:
        return np.stack([preprocess(load_image(p), spec.height, spec.width, spec.mean, spec.std) for p in files])

    queries = sorted((data / "query").glob("*.jpg"))
    gallery = sorted((data / "bounding_box_test").glob("*.jpg"))
    train = sorted((data / "bounding_box_train").glob("*.jpg"))
    calib = prep(train[:: max(1, len(train) // args.calib)][: args.calib])
    xq, xg = prep(queries), prep(gallery)
    x = xg[: args.batch]

    fp32 = ex.export_checkpoint(args.checkpoint, work / "model.onnx", verify_images=data / "query")[0].path
    pre = work / "pre.onnx"
    try:  # symbolic shape inference fails on this graph's Expand; the ORT-optimisation part still runs
        quant_pre_process(str(fp32), str(pre))
        pre_note = "`quant_pre_process` (full)"
    except Exception as exc:  # the optional step as serving.export does it; note which one ran
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        pre_note = (
            f"`quant_pre_process(skip_symbolic_shape=True)` (the full call fails: "
            f"`{type(exc).__name__}` in symbolic shape inference)"
        )
    paths: dict[str, Path] = {"fp32": fp32}
    for i, (name, kw) in enumerate(VARIANTS.items()):
        paths[name] = quantize(pre, work / f"v{i}.onnx", calib, **kw)
    analyses = {name: analyze_graph(p) for name, p in paths.items()}

    sessions = {name: session(p, args.threads) for name, p in paths.items()}
    fns = {name: (lambda s=s: s.run(None, {"images": x})) for name, s in sessions.items()}
    med = _interleaved(fns, args.min_time, rounds=args.rounds)
    peaks = matmul_peaks(args.peak_n, args.threads, work)
    fp32_peak, int8_peak = peaks["fp32 (torch.matmul)"], peaks["int8 u8s8 (ORT MatMulInteger)"]

    # accuracy on the full split: fp32 reference, every variant not slower than fp32
    ref_q, ref_g = _embed(sessions["fp32"], xq, args.batch), _embed(sessions["fp32"], xg, args.batch)
    acc: dict[str, tuple[float, float, float, float]] = {}
    ref_map, ref_r1 = _rank_metrics(ref_q, ref_g, queries, gallery)
    for name, sess in sessions.items():
        if name != "fp32" and med[name] > med["fp32"]:
            continue
        q, g = (ref_q, ref_g) if name == "fp32" else (_embed(sess, xq, args.batch), _embed(sess, xg, args.batch))
        cos = np.concatenate([(q * ref_q).sum(1), (g * ref_g).sum(1)])
        m, r1 = _rank_metrics(q, g, queries, gallery)
        acc[name] = (float(cos.mean()), float(cos.min()), m, r1)

    profiles = {}
    to_profile = [
        "fp32",
        "int8 QDQ S8S8 per-channel (old export)",
        "int8 QDQ U8S8 per-channel",
        "int8 QOperator S8S8 per-channel",
    ]
    for i, name in enumerate(to_profile):
        profiles[name] = profile_top(paths[name], x, args.threads, args.profile_runs, str(work / f"prof{i}"))

    # ------------------------------------------------------------------ report
    flags = [
        f
        for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
        if f in Path("/proc/cpuinfo").read_text().split()
    ]
    say("# int8 inference on the CPU (`serving/`, issue 21 section 5)")
    say()
    say(f"Command:\n\n```\n/work/main/.venv/bin/{cmd.strip()}\n```\n")
    say(
        f"Machine: {_machine()}; CPU flags present: {', '.join(flags)} (**no AVX-512, no VNNI, no native "
        "BF16/AMX**: the issue assumed AVX-512 VNNI/BF16, which this machine does not have). **The machine was "
        f"shared** with two training runs (load average {load_start} at the start on {os.cpu_count()} cores; this "
        "process at nice 8), so absolute speeds are low and noisy; only the ratios measured side by side in one "
        "process (engines alternating in rounds, median) mean something."
    )
    say()
    say(
        f"Model: `{args.checkpoint}` ({spec.backbone}, {spec.height}x{spec.width}); {gflop:.3f} GFLOP per image "
        "(2 x multiply-adds of Conv2d + Linear, counted with forward hooks; pooling/softmax/normalisation "
        f"negligible). Evaluation: all {len(queries)} queries vs {len(gallery)} gallery images of `{data}`. "
        f"Calibration: {len(calib)} training images, MinMax; all int8 variants are quantized from the same "
        f"pre-processed model, {pre_note}."
    )
    say()
    say(f"## 1. Engines at batch {args.batch}, {args.threads} threads")
    say()
    say(
        f"Peaks measured here ({args.peak_n}^3 matmul, {args.threads} threads, alternating, median): fp32 "
        f"torch.matmul {fp32_peak:.0f} GFLOP/s; int8 ORT `MatMulInteger` (u8 x s8 -> s32) {int8_peak:.0f} GOP/s "
        f"({int8_peak / fp32_peak:.2f}x fp32)."
    )
    say()
    say(
        "| engine | img/s | vs fp32 | GFLOP/s (GOP/s) | % of its peak | Conv float/all after ORT | act/weight | "
        "per-channel | cosine mean / min | mAP | rank-1 | mAP change (pt) |"
    )
    say("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|")
    for name in paths:
        a, t = analyses[name], med[name]
        ips = args.batch / t
        gfs = gflop * ips
        peak = fp32_peak if name == "fp32" else int8_peak
        pc = "-" if a.per_channel is None else ("yes" if a.per_channel else "no")
        if name in acc:
            cm, cmin, m, r1 = acc[name]
            accs = f"{cm:.4f} / {cmin:.4f} | {m:.4f} | {r1:.4f} | {100 * (m - ref_map):+.2f}"
        else:
            accs = "(slower than fp32: not evaluated) | - | - | -"
        say(
            f"| {name} | {ips:.1f} | {med['fp32'] / t:.2f}x | {gfs:.1f} | {100 * gfs / peak:.0f}% | "
            f"{a.float_share} | {a.activation_type}/{a.weight_type} | {pc} | {accs} |"
        )
    say()
    say(
        f"Timing: {args.rounds} rounds; per round each engine runs a block of about "
        f"{args.min_time / args.rounds:.1f} s (first call discarded); median over all calls. "
        "ORT: `ORT_ENABLE_ALL`, intra_op_num_threads as above, thread spinning off."
    )
    say()
    say("## 2. Graph after ONNX Runtime's optimisations")
    say()
    say("| engine | op types in the file | op types after ORT_ENABLE_ALL |")
    say("|---|---|---|")
    for name, a in analyses.items():
        say(f"| {name} | {_fmt_ops(a.ops)} | {_fmt_ops(a.optimized_ops)} |")
    say()
    old = analyses["int8 QDQ S8S8 per-channel (old export)"]
    say(
        f"Old export (S8 activations, QDQ): {old.fused_convs} of {old.convs} convolutions fused into QLinearConv; "
        f"{len(old.float_convs)} stay float ({', '.join(f'`{n}`' for n in old.float_convs)}), of which "
        f"{len(old.shared_input)} read a DequantizeLinear that feeds more than one node."
    )
    say()
    say(f"## 3. ORT profiler, top nodes (batch {args.batch}, {args.profile_runs + 1} runs)")
    say()
    for name, (rows, by_op) in profiles.items():
        tot = sum(by_op.values())
        ops = ", ".join(
            f"{k} {v:.0f} ms ({100 * v / tot:.0f}%)" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
        )
        say(f"**{name}**: {tot:.0f} ms of kernel time per run; by op type: {ops}.")
        say()
        say("| node | op | ms per run | share |")
        say("|---|---|---:|---:|")
        for node, op, ms, share in rows:
            say(f"| `{node}` | {op} | {ms:.1f} | {100 * share:.1f}% |")
        say()
    say(f"Load average at the end of the run: {_load()}.")
    atomic_write_bytes(args.out, ("\n".join(lines) + "\n").encode())
    results = {"med_s": med, "acc": acc, "peaks": peaks, "gflop": gflop, "ref_map": ref_map}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


def _fmt_ops(ops: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))


if __name__ == "__main__":
    raise SystemExit(main())
