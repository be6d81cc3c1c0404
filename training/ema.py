"""The slow "mean teacher" of ``--model.ema_decay`` (MMT: an exponential moving average of the trained model)."""

from __future__ import annotations

import copy

import torch


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, student: torch.nn.Module, decay: float,
                skip: tuple[str, ...] = ("classifier",)) -> None:
    """In place: ``t = decay * t + (1 - decay) * s`` for every floating parameter and buffer (BatchNorm running
    statistics included); integer buffers (``num_batches_tracked``) are copied. Entries whose name contains one
    of ``skip`` are left alone (the classifiers are rebuilt for each epoch's clusters and serve no embedding).
    Both modules must have the same state-dict keys (besides those)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    t_state, s_state = teacher.state_dict(), student.state_dict()
    keys = [k for k in t_state if not any(x in k for x in skip)]
    if set(keys) != {k for k in s_state if not any(x in k for x in skip)}:
        raise ValueError("teacher and student differ in their state-dict keys: "
                         f"{sorted(set(keys) ^ set(s_state))[:5]}")
    floats = [(t_state[k], s_state[k]) for k in keys if t_state[k].is_floating_point()]
    if floats:
        ts, ss = zip(*floats, strict=True)
        torch._foreach_lerp_(list(ts), [s.to(t.dtype) for t, s in floats], 1.0 - decay)
    for k in keys:
        if not t_state[k].is_floating_point():
            t_state[k].copy_(s_state[k])


def make_teacher(student: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``student`` (no gradients) to be moved by :func:`ema_update_`."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
