"""Facts about the machine a benchmark ran on, shared by the benchmark reports."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["cpu_model", "ram_gib", "load_average"]

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_model() -> tuple[str, str]:
    """``(model name, the SIMD flags that matter here)`` from ``/proc/cpuinfo`` ("unknown CPU", "" elsewhere)."""
    cpu, flags = "unknown CPU", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown CPU":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                fl = line.split(":", 1)[1].split()
                flags = ", ".join(f for f in _FLAGS if f in fl) or "no AVX2"
    return cpu, flags


def ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, ``"a / b / c"``."""
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())
