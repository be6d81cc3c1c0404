"""Process runtime: the torch.distributed process group and numeric precision (autocast)."""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger("scwm")


@dataclass
class DistEnv:
    """Process-group facts; a single process is rank 0 of world size 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_request: str) -> tuple[DistEnv, torch.device]:
    """Initialise torch.distributed from torchrun's environment (gloo on CPU, nccl on CUDA)."""
    from scwm.utils import pick_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), pick_device(device_request)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local), device


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    holder = [obj if env.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_cat(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate equally shaped tensors from all ranks along dim 0 (no gradient)."""
    if not env.enabled:
        return t
    out = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it autocast emulates bf16.

    Uses torch's CPU capability probes; if they are missing (another torch build), falls back to the
    ``/proc/cpuinfo`` flags, and assumes native support where neither is available.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(f) for f in probes):
        return any(bool(f()) for f in probes)  # type: ignore[misc]
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_warning(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` will not do what it promises on ``device``, or None if it will."""
    if precision == "amp" and device.type != "cuda":
        return f"precision 'amp' needs CUDA; running in fp32 on {device}"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return ("precision 'bf16' on a CPU without native bf16 (AVX512-BF16 / AMX): autocast is emulated and "
                "much slower than fp32 (16x on an AVX2 EPYC, docs/bench/training.md); use --run.precision fp32 "
                "on this machine")
    return None


def check_precision(device: torch.device, precision: str) -> None:
    """Log :func:`precision_warning`, if any (the run still goes ahead)."""
    warning = precision_warning(device, precision)
    if warning:
        log.warning("%s", warning)


def autocast_context(device: torch.device, precision: str) -> Any:
    """bf16 autocast on CPU, fp16 autocast on CUDA ("amp"), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()
