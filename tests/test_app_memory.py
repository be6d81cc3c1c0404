"""``serving.app.memory``: the malloc arena cap, counted by glibc itself in a fresh process."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref

import pytest

from serving.app import memory

_PROBE = """
import sys, threading
import numpy as np
from serving.app import memory
print(memory.limit_malloc_arenas(int(sys.argv[1])))
def work():
    for _ in range(100):
        blocks = [np.ones(50_000) for _ in range(4)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(memory.malloc_arena_count())
"""

needs_glibc = pytest.mark.skipif(memory.malloc_arena_count() is None, reason="glibc only")


def _arenas(n: int, env: dict[str, str] | None = None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != memory.ARENA_ENV} | (env or {})
    out = subprocess.run([sys.executable, "-c", _PROBE, str(n)], capture_output=True, text=True, env=env,
                         check=True, timeout=120).stdout.split()
    return out[0] == "True", int(out[1])


@needs_glibc
def test_the_cap_bounds_the_arenas_of_threaded_allocation() -> None:
    set_default, default = _arenas(0)  # 0 = glibc's default: one arena per contending thread, up to 8 per core
    set_two, two = _arenas(2)
    assert not set_default and set_two
    assert two <= 2 < default


@needs_glibc
def test_glibc_environment_variable_wins() -> None:
    was_set, arenas = _arenas(2, {memory.ARENA_ENV: "3"})
    assert not was_set and arenas <= 3


def test_bad_values_are_refused() -> None:
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="malloc arenas"):
            memory.limit_malloc_arenas(bad)  # type: ignore[arg-type]


_TRIM = """
import numpy as np
from serving.app import memory
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
blocks = [np.ones(8_000) for _ in range(10_000)]  # 64 KB each (under the mmap threshold), ~640 MB of heap
keep = blocks[::50]  # pins the heap's top: free() alone cannot give the rest back
del blocks
before = rss_mb()
trimmer = memory.MallocTrimmer(3600.0)
first, second = trimmer.maybe_trim(), trimmer.maybe_trim()
print(before, rss_mb(), first, second, trimmer.trims)
"""


@needs_glibc
def test_the_trimmer_gives_free_heap_back_and_waits_its_interval() -> None:
    env = {k: v for k, v in os.environ.items() if k != memory.ARENA_ENV}
    out = subprocess.run([sys.executable, "-c", _TRIM], capture_output=True, text=True, env=env, check=True,
                         timeout=120).stdout.split()
    before, after = float(out[0]), float(out[1])
    assert before - after > 250, (before, after)  # ~600 MB was free but held
    assert out[2:] == ["True", "False", "1"]


def test_the_trimmer_can_be_off_and_refuses_bad_intervals() -> None:
    off = memory.MallocTrimmer(0)
    assert not off.enabled and not off.maybe_trim() and off.trims == 0
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="malloc trim interval"):
            memory.MallocTrimmer(bad)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_trimmers_turn_collects_reference_cycles() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
    ref = weakref.ref(a)
    del a, b
    was = gc.isenabled()
    gc.disable()
    try:
        assert ref() is not None
        assert memory.MallocTrimmer(3600.0).maybe_trim() and ref() is None
    finally:
        if was:
            gc.enable()


def test_freezing_startup_objects_takes_them_out_of_later_collections() -> None:
    try:
        frozen = memory.freeze_startup_objects()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
