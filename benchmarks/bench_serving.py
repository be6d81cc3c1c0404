"""Serving benchmark: ONNX Runtime vs PyTorch eager, fp16/int8 variants, query latency, FAISS at scale.

    python -m benchmarks.bench_serving [--checkpoint CKPT] [--data MARKET_ROOT] [--out docs/bench/serving.md]

Without ``--checkpoint`` the model is a random-weight resnet18 SCWMNet at 128x64 whose BatchNorm statistics
are set from 64 synthetic training images (so embeddings are spread out rather than all alike); without
``--data`` the synthetic ``market`` preset is generated into a temporary folder. Sections:

1. throughput (images/s) of PyTorch eager and ONNX Runtime on the same preprocessed batch, same threads;
2. fp32 / fp16 / int8 (dynamic, static) ONNX variants: throughput and served mAP / rank-1 (query vs gallery);
3. end-to-end single-image query latency (JPEG file -> decode -> preprocess -> model -> exact search);
4. exact FAISS (IndexFlatIP) vs numpy brute force at 100k gallery embeddings;
5. IVF at 1M embeddings: recall@10 against exact search, and latency, for several nprobe.

Large galleries are noise-augmented replicas of the model's embeddings of the synthetic gallery:
``normalize(e_i + n)`` with ``e_i`` a real embedding (cycled) and ``n`` Gaussian with norm about
``--replica-noise`` (default 0.5); queries are the real query embeddings.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import onnxruntime as ort
import torch

from benchmarks.host import cpu_model, load_average, ram_gib
from scwm.data.images import load_image
from scwm.data.transforms import preprocess
from scwm.evaluation import evaluate_rank
from scwm.models import ModelSpec, load_model, save_checkpoint
from scwm.utils import atomic_write_bytes
from serving import export as ex
from serving import index as ix
from serving.app.demo import untrained_model
from serving.engine import OnnxEngine
from serving.retriever import Retriever


def _machine() -> str:
    cpu, mem = cpu_model()[0], ram_gib()
    return (f"{os.cpu_count()} CPU cores ({cpu}), {mem:.0f} GiB RAM, no GPU used, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
            f"{ort.__version__} ({', '.join(ort.get_available_providers())}), faiss {faiss.__version__}, "
            f"numpy {np.__version__}")


def _timeit(fn, min_time: float, min_reps: int = 3) -> float:
    """Median seconds per call over repeated calls (after one warm-up call)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _interleaved(fns: dict, min_time: float, rounds: int = 4) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds: per round each function gets
    a block of about ``min_time / rounds`` seconds, whose first call is discarded (it absorbs thread-pool
    wake-up and the spinning threads of the engine timed before)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    block = max(min_time / rounds, 0.05)
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()
            start = time.perf_counter()
            n = 0
            while n < 2 or time.perf_counter() - start < block:
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
                n += 1
    return {k: float(np.median(v)) for k, v in times.items()}


def _rank_metrics(q: np.ndarray, g: np.ndarray, qn: list[Path], gn: list[Path]) -> tuple[float, float]:
    qp = [ix.parse_market_name(p) for p in qn]
    gp = [ix.parse_market_name(p) for p in gn]
    r = evaluate_rank(-(q @ g.T), np.array([a for a, _ in qp]), np.array([a for a, _ in gp]),
                      np.array([c for _, c in qp]), np.array([c for _, c in gp]), max_rank=10)
    return r.mAP, r.rank1


def replicas(base: np.ndarray, n: int, noise: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` noise-augmented replicas of the rows of ``base`` (cycled), L2-normalized float32."""
    rng = np.random.default_rng(seed)
    d = base.shape[1]
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk)) % len(base)
        x = base[idx] + rng.standard_normal((len(idx), d), dtype=np.float32) * np.float32(noise / np.sqrt(d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + len(idx)] = x
    return out


def numpy_topk(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    s = q @ g.T
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="trained scwm checkpoint (default: random-weight resnet18 128x64)")
    ap.add_argument("--data", help="Market-layout root (default: generate the synthetic market preset)")
    ap.add_argument("--out", default="docs/bench/serving.md")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=4.0, help="seconds per throughput measurement")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--exact-size", type=int, default=100_000)
    ap.add_argument("--ann-size", type=int, default=1_000_000)
    ap.add_argument("--ann-factory", default="IVF1024,Flat")
    ap.add_argument("--nprobes", default="8,16,32,64")
    ap.add_argument("--replica-noise", type=float, default=0.5)
    ap.add_argument("--eval-pids", type=int, default=60,
                    help="section 2 evaluates the queries of the first N query identities against the gallery "
                         "images of those identities (keeps the int8-dynamic run short); 0 = all")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    cmd = "python -m benchmarks.bench_serving " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    # ------------------------------------------------------------------ data and model
    if args.data:
        data = Path(args.data)
    else:
        data = work / "market"
        subprocess.run([sys.executable, "-m", "scwm.data.synthetic", "--preset", "market", "--out", str(data),
                        "--seed", "0"], check=True, capture_output=True)
    queries = sorted((data / "query").glob("*.jpg"))
    gallery = sorted((data / "bounding_box_test").glob("*.jpg"))
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        model_desc = f"trained checkpoint `{ckpt}`"
    else:
        spec = ModelSpec(backbone="resnet18", num_parts=4, height=128, width=64)
        train = sorted((data / "bounding_box_train").glob("*.jpg"))[::37][:64]
        ckpt = work / "random_resnet18.pt"
        save_checkpoint(ckpt, untrained_model(spec, train), spec)
        model_desc = ("**random-weight resnet18 SCWMNet at 128x64** (no trained checkpoint existed yet; BatchNorm "
                      "statistics set from 64 synthetic training images). Re-run with `--checkpoint` for the "
                      "trained model")
    model, spec = load_model(ckpt)
    t0 = time.perf_counter()
    reports = ex.export_checkpoint(ckpt, work / "model.onnx", precisions=list(ex.PRECISIONS),
                                   verify_images=data / "query", calibration_images=data / "bounding_box_train")
    export_s = time.perf_counter() - t0
    paths = {r.precision: r.path for r in reports}

    say("# Serving benchmark (`serving/`)")
    say()
    say("Command:")
    say()
    say(f"```\n/work/venv/bin/{cmd.strip()}\n```")
    say()
    say(f"Machine: {_machine()}. **Other jobs were running at the same time** (load average "
        f"{load_start} at the start of the run on {os.cpu_count()} cores), so absolute times are pessimistic "
        "and vary from run to run; the side-by-side ratios within one run are the meaningful figures.")
    say()
    origin = "given" if args.data else "generated: market preset, seed 0"
    say(f"Model: {model_desc}; input {spec.height}x{spec.width}, {len(queries)} queries and {len(gallery)} "
        f"gallery images of the synthetic target `{data.name}` ({origin}). "
        f"Export of all four variants incl. parity checks: {export_s:.0f} s.")
    say()

    # ------------------------------------------------------------------ 1. ORT vs torch
    rng_imgs = [load_image(p) for p in gallery[: args.batch]]
    x = np.stack([preprocess(im, spec.height, spec.width, spec.mean, spec.std) for im in rng_imgs])
    xt = torch.from_numpy(x)

    def torch_run(batch: torch.Tensor) -> None:
        with torch.inference_mode():
            model(batch, with_logits=False)

    say(f"## 1. ONNX Runtime vs PyTorch eager (fp32, CPU, {args.threads} threads)")
    say()
    say("Same model, same preprocessed input, median over repeated runs after a warm-up; "
        f"torch.set_num_threads({args.threads}), ORT intra_op_num_threads={args.threads}.")
    say()
    say("| engine | batch | images/s | vs PyTorch |")
    say("|---|---:|---:|---:|")
    # idle ORT worker threads spin by default; in interleaved timing that spinning would steal the cores
    # from the engine timed next (PyTorch), so spinning is off here (see the note below the table)
    nospin = {"session.intra_op.allow_spinning": "0"}
    engines = {
        "all": OnnxEngine(paths["fp32"], providers=["CPUExecutionProvider"], intra_op_threads=args.threads,
                          precision="fp32", session_config=nospin),
        "basic": OnnxEngine(paths["fp32"], providers=["CPUExecutionProvider"], intra_op_threads=args.threads,
                            precision="fp32", optimization="basic", session_config=nospin),
        "all, 1 thread": OnnxEngine(paths["fp32"], providers=["CPUExecutionProvider"], intra_op_threads=1,
                                    precision="fp32", session_config=nospin),
    }
    speedups: dict[int, float] = {}
    for b in (args.batch, 1):
        fns = {"PyTorch eager": lambda b=b: torch_run(xt[:b])}
        fns.update({f"ONNX Runtime (`{k}`)": (lambda b=b, e=e: e.run(x[:b])) for k, e in engines.items()})
        med = _interleaved(fns, args.min_time)
        t_torch = med["PyTorch eager"]
        speedups[b] = max(t_torch / t for name, t in med.items() if name != "PyTorch eager")
        for name, t in med.items():
            say(f"| {name} | {b} | {b / t:.1f} | {t_torch / t:.2f}x |")
    say()
    say("Engines are timed in 4 interleaved rounds (a block of calls of each per round, median per engine), so that "
        "load changes from the other jobs hit all of them alike. `all` / `basic` = ORT graph optimisation "
        "level (`OnnxEngine(optimization=...)`; default `all`). ORT thread spinning is disabled "
        "(`session.intra_op.allow_spinning=0`) for this table: with the default spinning, idle ORT threads kept "
        "the cores busy while PyTorch ran next and PyTorch appeared 2-15x slower than when timed alone.")
    say()

    # ------------------------------------------------------------------ 2. variants
    qpids = sorted({ix.parse_market_name(p)[0] for p in queries})
    keep = set(qpids[:args.eval_pids]) if args.eval_pids else set(qpids)
    sub_q = [p for p in queries if ix.parse_market_name(p)[0] in keep]
    sub_g = [p for p in gallery if ix.parse_market_name(p)[0] in keep]
    say("## 2. Precision variants: speed and retrieval accuracy on the synthetic target")
    say()
    say(f"Throughput at batch {args.batch} ({args.threads} threads, interleaved rounds); "
        f"mAP / rank-1 of {len(sub_q)} queries vs "
        f"{len(sub_g)} gallery images (the {len(keep)} first query identities) "
        "(Market protocol, `scwm.evaluation.evaluate_rank`, cosine) with each variant's own embeddings; "
        "parity = worst max |diff| of the global embedding against PyTorch at batch 1 and 8 during export.")
    say()
    say("| variant | file MB | images/s | mAP | rank-1 | mAP change vs PyTorch | global max abs diff |")
    say("|---|---:|---:|---:|---:|---:|---:|")

    def torch_feats(files: list[Path]) -> np.ndarray:
        out = []
        for s in range(0, len(files), 64):
            b = torch.from_numpy(np.stack([preprocess(load_image(p), spec.height, spec.width, spec.mean, spec.std)
                                           for p in files[s:s + 64]]))
            with torch.inference_mode():
                out.append(model(b, with_logits=False).global_feat.numpy())
        return np.concatenate(out)

    tq, tg = torch_feats(sub_q), torch_feats(sub_g)
    ref_map, ref_r1 = _rank_metrics(tq, tg, sub_q, sub_g)
    say(f"| PyTorch eager fp32 | - | - | {ref_map:.4f} | {ref_r1:.4f} | - | - |")
    variant_engines = {r.precision: OnnxEngine(r.path, providers=["CPUExecutionProvider"], precision="fp32",
                                               intra_op_threads=args.threads, session_config=nospin)
                       for r in reports}
    speed = _interleaved({k: (lambda e=e: e.run(x)) for k, e in variant_engines.items()}, args.min_time)
    for r in reports:
        eng, t = variant_engines[r.precision], speed[r.precision]
        q = ix.embed_paths(eng, sub_q, 64, progress=False)[0]
        g = ix.embed_paths(eng, sub_g, 64, progress=False)[0]
        m, r1 = _rank_metrics(q, g, sub_q, sub_g)
        diff = max(d["global_feat.max_abs"] for d in r.parity.values())
        say(f"| ONNX {r.precision} | {r.path.stat().st_size / 1e6:.1f} | {args.batch / t:.1f} | {m:.4f} | {r1:.4f} "
            f"| {m - ref_map:+.4f} | {diff:.1e} |")
    say()

    # ------------------------------------------------------------------ 3. end-to-end latency
    idx_dir = work / "index"
    eng = OnnxEngine(paths["fp32"], intra_op_threads=args.threads, precision="fp32")
    ix.build_index(eng, [data], idx_dir, progress=False)
    retr = Retriever(eng, ix.GalleryIndex.load(idx_dir))
    qfiles = [queries[i % len(queries)] for i in range(args.latency_queries)]
    retr.search(qfiles[0], k=10)
    lat = []
    for qf in qfiles:
        t0 = time.perf_counter()
        retr.search(qf, k=10)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    say("## 3. End-to-end query latency (one image)")
    say()
    say(f"`Retriever.search(path, k=10)`: read + decode JPEG, preprocess, ONNX Runtime fp32 (batch 1, "
        f"{args.threads} threads), exact FAISS search over the {retr.index.count}-image synthetic gallery; "
        f"{len(lat)} queries one after another.")
    say()
    say("| p50 ms | p95 ms | p99 ms | mean ms |")
    say("|---:|---:|---:|---:|")
    say(f"| {np.percentile(lat_ms, 50):.1f} | {np.percentile(lat_ms, 95):.1f} | {np.percentile(lat_ms, 99):.1f} "
        f"| {lat_ms.mean():.1f} |")
    say()

    # ------------------------------------------------------------------ 4. exact FAISS vs numpy at 100k
    # embeddings served by the fp32 model: the whole gallery (from the index) and all queries
    g32 = retr.index.cpu_index.reconstruct_n(0, retr.index.count)
    q32 = np.ascontiguousarray(ix.embed_paths(eng, queries, 64, progress=False)[0])
    big = replicas(g32, args.exact_size, args.replica_noise, seed=1)
    flat = faiss.IndexFlatIP(big.shape[1])
    flat.add(big)
    k = 10
    say(f"## 4. Exact search at {args.exact_size:,} gallery embeddings: FAISS vs numpy")
    say()
    say(f"Gallery: {args.exact_size:,} noise-augmented replicas of the {len(g32)} served gallery embeddings "
        f"(`normalize(e + n)`, |n| ~ {args.replica_noise}); queries: the {len(q32)} real query embeddings; top-{k}.")
    say()
    say("| method | queries per call | ms per call | ms per query | same top-10 as numpy |")
    say("|---|---:|---:|---:|---:|")
    ref_ids = numpy_topk(q32, big, k)
    _, f_ids = flat.search(q32, k)
    same = float(np.mean([set(a) == set(b) for a, b in zip(ref_ids, f_ids, strict=True)]))
    for nq in (1, len(q32)):
        qq = q32[:nq]
        tn = _timeit(lambda qq=qq: numpy_topk(qq, big, k), 2.0)
        tf = _timeit(lambda qq=qq: flat.search(qq, k), 2.0)
        say(f"| numpy `q @ G.T` + argpartition | {nq} | {tn * 1e3:.1f} | {tn * 1e3 / nq:.2f} | - |")
        say(f"| FAISS IndexFlatIP | {nq} | {tf * 1e3:.1f} | {tf * 1e3 / nq:.2f} | {same:.3f} |")
    say()
    big = flat = None  # free ~200 MB before the 1M section

    # ------------------------------------------------------------------ 5. IVF at 1M
    n = args.ann_size
    say(f"## 5. Approximate search at {n:,} embeddings: `{args.ann_factory}` vs exact")
    say()
    huge = replicas(g32, n, args.replica_noise, seed=2)
    exact = faiss.IndexFlatIP(huge.shape[1])
    exact.add(huge)
    t0 = time.perf_counter()
    _, gt = exact.search(q32, k)
    exact_s = time.perf_counter() - t0
    t_exact1 = _timeit(lambda: exact.search(q32[:1], k), 2.0)
    exact = None  # free the exact index before building the IVF one
    t0 = time.perf_counter()
    ivf = faiss.index_factory(huge.shape[1], args.ann_factory, faiss.METRIC_INNER_PRODUCT)
    train = huge[np.random.default_rng(3).choice(n, size=min(n, 100_000), replace=False)]
    ivf.train(train)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf.add(huge)
    add_s = time.perf_counter() - t0
    say(f"Same replica recipe (seed 2), {n:,} x {huge.shape[1]} float32 ({huge.nbytes / 2**30:.1f} GiB); queries: "
        f"the {len(q32)} real query embeddings. Ground truth: exact IndexFlatIP top-{k} ({exact_s:.1f} s for all "
        f"queries, {t_exact1 * 1e3:.0f} ms for one). {args.ann_factory}: trained on {len(train):,} vectors in "
        f"{train_s:.0f} s, {n:,} added in {add_s:.0f} s. Recall@10 = |approx top-10 & exact top-10| / 10, "
        "averaged over queries.")
    say()
    say("| nprobe | recall@10 | ms per single query | ms per query (batch of all queries) |")
    say("|---:|---:|---:|---:|")
    ps = faiss.ParameterSpace()
    recalls: dict[int, float] = {}
    for nprobe in (int(v) for v in args.nprobes.split(",")):
        ps.set_index_parameter(ivf, "nprobe", nprobe)
        _, ids = ivf.search(q32, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, gt, strict=True)]))
        t1 = _timeit(lambda: ivf.search(q32[:1], k), 1.0, min_reps=20)
        tb = _timeit(lambda: ivf.search(q32, k), 1.0)
        say(f"| {nprobe} | {recall:.3f} | {t1 * 1e3:.2f} | {tb * 1e3 / len(q32):.3f} |")
        recalls[nprobe] = recall
    say()
    good = [p for p, r in recalls.items() if r >= 0.95]
    say("## Reading the figures")
    say()
    say(f"- ONNX Runtime vs PyTorch eager: best ORT setting {speedups[args.batch]:.2f}x at batch {args.batch}, "
        f"{speedups[1]:.2f}x at batch 1 (target 1.5x: "
        f"{'met' if min(speedups.values()) >= 1.5 else 'not met at every batch size; see the rows above'}). "
        "On 2 busy cores one ORT thread can beat two (less contention with the other jobs).")
    say("- int8-dynamic uses ConvInteger kernels, which are slow on this x86 CPU; int8-static (QDQ, U8 activations, "
        "S8 per-channel reduce_range weights, calibrated on synthetic training images) is the int8 variant for CPU "
        "speed, written by `serving.export` and served on the CPU by default (`--precision auto`; fp32 with "
        "`--precision fp32` or `SCWM_PRECISION=fp32`; an index serves the precision it was built with, the "
        "fingerprints differ); analysis in [int8.md](int8.md). Check its mAP change on "
        "real data; fp16 mainly halves the file (its CPU speed depends on the ORT kernels of the machine) and is "
        "the natural choice on a GPU.")
    say("- Exact search: compare the FAISS `IndexFlatIP` and numpy rows of section 4; both are exact and give the "
        "same top-10 (a single query is scanned by one FAISS thread; batches are BLAS-bound in both). The index's "
        "value is one API with the approximate (IVF/HNSW/PQ) and GPU indexes.")
    say(f"- `{args.ann_factory}` at {n:,} embeddings reaches recall@10 >= 0.95 from nprobe "
        f"{min(good) if good else '(none of those tried)'}; build with `python -m serving.index build "
        f"--factory {args.ann_factory} --nprobe N`.")
    say()
    say(f"Load average at the end of the run: {load_average()}.")
    atomic_write_bytes(args.out, ("\n".join(lines) + "\n").encode())
    shutil.rmtree(work, ignore_errors=True)  # generated data, models and index (kept if the run fails)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
