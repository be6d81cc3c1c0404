"""GPU smoke check: the CUDA paths that CPU tests cannot reach (issue 20), in under 5 minutes on one GPU.

    bash scripts/gpu_check.sh [--only amp faiss onnx ddp clustering] [--device cuda:0]

One line per check, ``PASS`` / ``FAIL`` / ``SKIP``, its name and a figure; the exit code is 1 if a check failed.
Without a GPU every check prints ``SKIP`` and the exit code is 0. The expected figures are in docs/GPU.md.

- ``amp``: the trainer (``training.run.Trainer``) with the ``market1501`` preset's model, input size and batch
  (ResNet-50, 384x128, 64 images) and ``--run.precision amp`` (fp16 autocast + GradScaler) for one short epoch on
  the tiny synthetic world (ground-truth identities, so that the training stage runs from random weights).
- ``faiss``: an exact inner-product index moved to the GPU returns the CPU index's neighbours.
- ``onnx``: the exported model on ONNX Runtime's CUDA provider gives the CPU provider's embeddings.
- ``ddp``: DistributedDataParallel over NCCL under torchrun (2 processes with 2 GPUs, else 1): parameters stay
  identical across ranks, ``all_gather_cat`` gathers in rank order, all-reduce bandwidth.
- ``clustering``: one clustering stage at Market-1501 scale on CUDA tensors: spatial cascaded clustering of
  12,936 feature maps of 2048x24x8 (the trainer's ``parse_batch``, eval-batch sized), Jaccard + DBSCAN and the
  cross agreement of 2048-d features, with CPU parity on a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHECKS = ("amp", "faiss", "onnx", "ddp", "clustering")
ROOT = Path(__file__).resolve().parents[1]
DDP_TAG = "GPUCHECK_DDP "


@dataclass
class Result:
    """The outcome of one check: ``status`` is PASS, FAIL or SKIP; ``figure`` says what was measured or why."""

    name: str
    status: str
    figure: str
    seconds: float = 0.0


def format_result(r: Result) -> str:
    """``PASS amp        412 img/s ...  (38 s)``: one line per check."""
    took = f"  ({r.seconds:.0f} s)" if r.seconds else ""
    return f"{r.status:<4} {r.name:<10} {r.figure}{took}"


def exit_code(results: list[Result]) -> int:
    """1 if any check failed, else 0 (skipped checks do not fail the run)."""
    return int(any(r.status == "FAIL" for r in results))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def topk_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the fraction of row ``i``'s neighbour ids in ``a`` that ``b`` also returns (order-free)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (Q, k) id arrays of one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 1.0
    hits = (a[:, :, None] == b[:, None, :]).any(axis=2)
    return float(hits.mean())


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows of ``a`` and ``b`` (``(N, D)``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float((num / np.maximum(den, 1e-12)).min())


def ddp_processes(num_gpus: int) -> int:
    """torchrun processes for the DDP check: 2 when there are 2 GPUs, else 1."""
    return 2 if num_gpus >= 2 else 1


def amp_overrides(output: str, device: str, iters: int) -> dict[str, Any]:
    """Overrides of the ``market1501`` preset for the AMP check: its model, input size and batch on the tiny
    synthetic world, random initial weights (no download) and ground-truth identities (so that random features
    still give a training stage), one epoch of ``iters`` steps, fp16 autocast with the grad scaler."""
    return {
        "data": {"kind": "synthetic", "root": "data/synthetic/tiny-seed0", "synthetic_preset": "tiny",
                 "synthetic_seed": 0},
        "model": {"weights": None},
        "cluster": {"supervised": True},
        "optim": {"epochs": 1, "iters": iters},
        "run": {"precision": "amp", "device": device, "output": output, "eval_every": 0, "progress": False,
                "resume": False},
    }


def parse_ddp_output(stdout: str) -> dict[str, Any]:
    """The JSON record rank 0 of the DDP worker prints after :data:`DDP_TAG`."""
    for line in stdout.splitlines():
        if line.startswith(DDP_TAG):
            return json.loads(line[len(DDP_TAG):])
    raise ValueError("the DDP workers printed no result line (see their output above)")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- checks
def check_amp(device: Any, iters: int = 30) -> Result:
    import torch

    from training.config import preset_config
    from training.run import Trainer

    with tempfile.TemporaryDirectory(prefix="scwm-gpu-check-") as tmp:
        cfg = preset_config("market1501", amp_overrides(tmp, str(device), iters))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(cfg)
        if trainer.scaler is None:
            return Result("amp", "FAIL", f"no GradScaler for precision amp on {device}")
        first = next(trainer.net.backbone.parameters())
        before = first.detach().clone()
        trainer.fit()
        records = [r for r in trainer.metrics.records() if "train_images_per_s" in r]
        if not records:
            return Result("amp", "FAIL", "the training stage did not run (see the log above)")
        rec = records[-1]
        scale = float(trainer.scaler.get_scale())
        moved = float((first.detach() - before).abs().max())
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        finite = all(np.isfinite(v) for k, v in rec.items() if k.startswith("loss_"))
        ok = finite and moved > 0 and np.isfinite(scale) and scale > 0
        skipped = max(0, round(np.log2(65536.0 / scale))) if scale > 0 else -1
        fig = (f"{rec['train_images_per_s']:.0f} img/s training ({cfg.model.backbone} {cfg.data.height}x"
               f"{cfg.data.width}, batch {cfg.optim.batch_size}), "
               f"peak {peak:.1f} GiB allocated, loss {rec.get('loss_total', float('nan')):.2f}, "
               f"scale {scale:.0f} (~{skipped} overflow steps skipped), weights moved {moved:.1e}")
        return Result("amp", verdict(ok), fig)


def check_faiss(device: Any, n: int = 50_000, dim: int = 2048, queries: int = 1_000, k: int = 10) -> Result:
    import faiss

    from serving.index import make_faiss_index

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return Result("faiss", "FAIL", "this faiss build has no GPU support; install the `gpu` extra "
                                       "(bash scripts/setup.sh picks it on a CUDA machine)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    q = x[:queries] + 0.3 * rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    cpu = make_faiss_index(x, "Flat")
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, device.index or 0, cpu)
    t = time.perf_counter()
    d_cpu, i_cpu = cpu.search(q, k)
    t_cpu = time.perf_counter() - t
    gpu.search(q[:16], k)  # warm-up
    t = time.perf_counter()
    d_gpu, i_gpu = gpu.search(q, k)
    t_gpu = time.perf_counter() - t
    agree = topk_agreement(i_cpu, i_gpu)
    diff = float(np.abs(d_cpu - d_gpu).max())
    fig = (f"top-{k} agreement {agree:.4f}, max score diff {diff:.1e}; {queries / t_gpu:,.0f} queries/s on the GPU "
           f"vs {queries / t_cpu:,.0f} on the CPU (Flat, {n:,} x {dim})")
    return Result("faiss", verdict(agree >= 0.999 and diff < 1e-3), fig)


def check_onnx(device: Any, batch: int = 32) -> Result:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return Result("onnx", "FAIL", "this onnxruntime build has no CUDAExecutionProvider; install the `gpu` "
                                      "extra (onnxruntime-gpu, never together with onnxruntime)")
    from scwm.models import SCWMNet
    from serving.engine import OnnxEngine
    from serving.export import export_model, verification_images
    from training.config import preset_config
    from training.model_init import model_spec

    spec = model_spec(preset_config("market1501", {"model": {"weights": None}}))
    net = SCWMNet(spec.backbone, num_parts=spec.num_parts, part_mode=spec.part_mode)
    with tempfile.TemporaryDirectory(prefix="scwm-gpu-check-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_model(net, spec, path)  # verified against PyTorch on the CPU provider
        cuda = OnnxEngine(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], precision="fp32")
        if cuda.providers[0] != "CUDAExecutionProvider":
            return Result("onnx", "FAIL", f"ONNX Runtime fell back to {cuda.providers} (CUDA or cuDNN libraries "
                                          "not found by onnxruntime-gpu?)")
        cpu = OnnxEngine(path, providers=["CPUExecutionProvider"], precision="fp32")  # the same file as CUDA
        images = np.stack([cpu.preprocess(im) for im in verification_images(None, 8)])
        a, b = cpu.run(images)["global_feat"], cuda.run(images)["global_feat"]
        cos, diff = min_cosine(a, b), float(np.abs(a - b).max())
        big = np.random.default_rng(0).standard_normal((batch, 3, spec.height, spec.width)).astype(np.float32)
        timings = {}
        for name, engine, reps in (("cuda", cuda, 10), ("cpu", cpu, 2)):
            engine.run(big)  # warm-up
            t = time.perf_counter()
            for _ in range(reps):
                engine.run(big)
            timings[name] = (time.perf_counter() - t) / reps
    fig = (f"min cosine CUDA vs CPU provider {cos:.6f} (max abs diff {diff:.1e}); batch {batch} at "
           f"{spec.height}x{spec.width}: {1e3 * timings['cuda']:.0f} ms on CUDA vs {1e3 * timings['cpu']:.0f} ms "
           f"on the CPU ({device})")
    return Result("onnx", verdict(cos >= 0.999), fig)


def launch_ddp(nproc: int, device_type: str, height: int = 256, width: int = 128, mib: int = 256,
               timeout: float = 240.0) -> dict[str, Any]:
    """Run :func:`ddp_worker` under torchrun (``nproc`` processes) and return rank 0's record."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(Path(__file__).resolve()), "--ddp-worker", "--ddp-device", device_type, "--ddp-size",
           f"{height}x{width}", "--ddp-mib", str(mib)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"torchrun exited with {proc.returncode}:\n{tail}")
    return parse_ddp_output(proc.stdout)


def check_ddp(device: Any, nproc: int | None = None, height: int = 256, width: int = 128, mib: int = 256) -> Result:
    import torch

    if nproc is None:
        nproc = ddp_processes(torch.cuda.device_count() if device.type == "cuda" else 1)
    rec = launch_ddp(nproc, device.type, height, width, mib)
    ok = rec["params_spread"] == 0.0 and rec["gather_ok"] and rec["allreduce_ok"]
    fig = (f"{rec['backend']} world {rec['world']}: parameters identical after {rec['steps']} steps "
           f"(spread {rec['params_spread']:.1e}), all_gather_cat {'ok' if rec['gather_ok'] else 'WRONG'}, "
           f"all-reduce {rec['mib']} MiB at {rec['algbw_gbs']:.1f} GB/s, DDP step {1e3 * rec['step_s']:.0f} ms")
    return Result("ddp", verdict(ok), fig)


def ddp_worker(device_type: str, height: int, width: int, mib: int, steps: int = 3) -> dict[str, Any]:
    """One torchrun process: a few DDP steps of a ResNet-18 SCWMNet on per-rank data, then the checks."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from scwm.models import SCWMNet
    from training.runtime import DistEnv, all_gather_cat

    cuda = device_type == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    env = DistEnv(rank, world, local)
    torch.manual_seed(0)
    net = SCWMNet("resnet18", num_parts=4).to(device)
    model = DDP(net, device_ids=[local] if cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(100 + rank)  # different images on every rank
    w_g = torch.randn(net.feat_dim, generator=torch.Generator().manual_seed(7)).to(device)
    step_s = 0.0
    for step in range(steps):
        x = torch.randn(4, 3, height, width, generator=data).to(device)
        _sync(device)
        t = time.perf_counter()
        out = model(x)
        loss = (out.global_feat * w_g).sum() + (out.part_feats * w_g).sum() + out.part_probs[:, 0].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if step:
            step_s += (time.perf_counter() - t) / (steps - 1)
    flat = torch.cat([p.detach().float().flatten() for p in net.parameters()]).unsqueeze(0)
    spread = float((all_gather_cat(flat, env) - flat).abs().max())
    mine = torch.full((2, 3), float(rank), device=device)
    expected = torch.arange(world, device=device, dtype=torch.float32).repeat_interleave(2)[:, None].expand(-1, 3)
    gather_ok = bool(torch.equal(all_gather_cat(mine, env), expected))
    big = torch.ones(mib * 2**18, device=device)  # mib MiB of float32
    dist.all_reduce(big)
    _sync(device)
    t = time.perf_counter()
    for _ in range(3):
        dist.all_reduce(big)
    _sync(device)
    algbw = 3 * mib * 2**20 / (time.perf_counter() - t) / 1e9
    allreduce_ok = bool(big[0].item() == float(world) ** 4)  # four all-reduces (sums) of ones
    dist.destroy_process_group()
    return {"backend": "nccl" if cuda else "gloo", "world": world, "steps": steps, "params_spread": spread,
            "gather_ok": gather_ok, "allreduce_ok": allreduce_ok, "mib": mib, "algbw_gbs": algbw, "step_s": step_s,
            "rank": rank}


def clustered_features(n: int, dim: int, parts: int, device: Any, seed: int = 0) -> tuple[Any, Any]:
    """Identity-structured L2-normalised features: ``n // 17`` centres on the sphere, per-identity noise in
    [0.6, 1.1] (as docs/bench/clustering.md); global ``(n, dim)`` and ``parts`` part features ``(n, parts, dim)``."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device=device).manual_seed(seed)
    ids = max(2, n // 17)
    who = torch.randint(0, ids, (n,), generator=g, device=device)
    noise = 0.6 + 0.5 * torch.rand(ids, generator=g, device=device)

    def draw(k: int) -> Any:
        centres = F.normalize(torch.randn(k, ids, dim, generator=g, device=device), dim=2)[:, who]  # (k, n, dim)
        eps = torch.randn(k, n, dim, generator=g, device=device) * (noise[who] / dim**0.5)[None, :, None]
        return F.normalize(centres + eps, dim=2)

    return draw(1)[0], draw(parts).transpose(0, 1).contiguous()


def check_clustering(device: Any, n: int = 12_936, channels: int = 2048, height: int = 24, width: int = 8,
                     batch: int | None = None, parity_n: int = 2_000) -> Result:
    import torch
    from sklearn.metrics import adjusted_rand_score

    from scwm.clustering import cross_agreement, pseudo_labels
    from training.config import preset_config
    from training.stages import parse_batch

    cfg = preset_config("market1501")
    batch = batch or cfg.run.eval_batch_size
    cl = cfg.cluster
    g = torch.Generator(device=device).manual_seed(0)
    body = torch.full((height, width), 0.15, device=device)  # a person-shaped block of high-norm cells
    body[height // 12: height - height // 12, width // 4: width - width // 4] = 1.0

    def maps(b: int) -> Any:
        return torch.randn(b, channels, height, width, generator=g, device=device).abs_() * body

    t_scc = 0.0
    for start in range(0, n, batch):
        fmap = maps(min(batch, n - start))
        _sync(device)
        t = time.perf_counter()
        lab = parse_batch(fmap, cfg)
        _sync(device)
        t_scc += time.perf_counter() - t
    labels_ok = bool(((lab >= 0) & (lab < cfg.model.num_parts)).all())
    del fmap
    gf, pf = clustered_features(n, channels, cfg.model.num_parts - 1, device)
    _sync(device)
    t = time.perf_counter()
    pseudo = pseudo_labels(gf, cl.eps, cl.min_samples, min(cl.k1, n - 1), min(cl.k2, n - 1))
    t_jac = time.perf_counter() - t
    t = time.perf_counter()
    alpha_p, _ = cross_agreement(gf, pf, k=min(cl.knn_k, n - 1))
    _sync(device)
    t_agree = time.perf_counter() - t
    # parity with the CPU on a subset
    sample = maps(8)
    px = float((parse_batch(sample, cfg).cpu() == parse_batch(sample.cpu(), cfg)).float().mean())
    m = min(parity_n, n)
    sub = gf[:m]
    ari = adjusted_rand_score(pseudo_labels(sub.cpu(), cl.eps, cl.min_samples, min(cl.k1, m - 1), min(cl.k2, m - 1)),
                              pseudo_labels(sub, cl.eps, cl.min_samples, min(cl.k1, m - 1), min(cl.k2, m - 1)))
    clusters = int(pseudo.max()) + 1
    ok = labels_ok and px >= 0.9 and ari >= 0.99 and bool(torch.isfinite(alpha_p).all())
    fig = (f"SCC {t_scc:.1f} s + Jaccard/DBSCAN {t_jac:.1f} s + agreement {t_agree:.1f} s = "
           f"{t_scc + t_jac + t_agree:.1f} s for {n:,} maps {channels}x{height}x{width} (batch {batch}; "
           f"{clusters} clusters, {int((pseudo < 0).sum())} outliers); CPU parity: SCC pixels {100 * px:.1f}%, "
           f"partition ARI {ari:.3f} on {m:,}")
    return Result("clustering", verdict(ok), fig)


RUNNERS: dict[str, Callable[..., Result]] = {"amp": check_amp, "faiss": check_faiss, "onnx": check_onnx,
                                             "ddp": check_ddp, "clustering": check_clustering}


def run_check(name: str, device: Any, **kwargs: Any) -> Result:
    """Run one check; an exception is its FAIL line (first line of the message), not the end of the run."""
    t = time.perf_counter()
    try:
        r = RUNNERS[name](device, **kwargs)
    except Exception as exc:  # every failure of a check is reported, then the next check runs
        first = (str(exc).strip().splitlines() or [""])[0]
        r = Result(name, "FAIL", f"{type(exc).__name__}: {first}"[:300])
    r.seconds = time.perf_counter() - t
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS), help="checks to run (default: all)")
    ap.add_argument("--device", default="cuda:0", help="CUDA device of the single-GPU checks")
    ap.add_argument("--amp-iters", type=int, default=30, help="training steps of the AMP check")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ddp-device", default="cuda", choices=("cuda", "cpu"), help=argparse.SUPPRESS)
    ap.add_argument("--ddp-size", default="256x128", help=argparse.SUPPRESS)
    ap.add_argument("--ddp-mib", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ddp_worker:
        h, w = (int(v) for v in args.ddp_size.split("x"))
        rec = ddp_worker(args.ddp_device, h, w, args.ddp_mib)
        if rec["rank"] == 0:
            print(DDP_TAG + json.dumps(rec), flush=True)
        return 0

    import torch

    tic = time.perf_counter()
    results: list[Result] = []
    if not torch.cuda.is_available():
        why = "no CUDA device (torch.cuda.is_available() is False)"
        results = [Result(name, "SKIP", why) for name in args.only]
        for r in results:
            print(format_result(r), flush=True)
    else:
        device = torch.device(args.device)
        props = torch.cuda.get_device_properties(device)
        print(f"gpu_check on {props.name} ({props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} GPU(s)), "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
        for name in args.only:
            r = run_check(name, device, **({"iters": args.amp_iters} if name == "amp" else {}))
            results.append(r)
            print(format_result(r), flush=True)
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(f"gpu_check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in "
          f"{time.perf_counter() - tic:.0f} s", flush=True)
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
