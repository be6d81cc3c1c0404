"""Dataset records: one :class:`ImageRecord` per image, grouped into a :class:`ReIDDataset`.

Conventions: ``pid == -1`` means unlabeled / unknown identity, ``camid`` is 0-based (Market's ``c1`` is
camera 0) and ``camid == -1`` means unknown camera.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

__all__ = ["ImageRecord", "ReIDDataset", "relabel_pids", "split_stats"]


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, identity (-1 = unknown), 0-based camera (-1 = unknown), optional mask path."""

    path: str
    pid: int
    camid: int
    mask_path: str | None = None


def split_stats(records: Sequence[ImageRecord]) -> tuple[int, int, int]:
    """Return ``(#identities, #images, #cameras)`` of a split; unknown pids/cameras (-1) are not counted."""
    pids = {r.pid for r in records if r.pid != -1}
    cams = {r.camid for r in records if r.camid != -1}
    return len(pids), len(records), len(cams)


def relabel_pids(records: Iterable[ImageRecord]) -> tuple[list[ImageRecord], dict[int, int]]:
    """Map the pids of ``records`` to contiguous labels ``0..C-1`` (in sorted order of the original pids).

    Unlabeled records (pid -1) keep -1. Returns the relabelled records and the ``{old: new}`` mapping.
    """
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records if r.pid != -1}))}
    out = [r if r.pid == -1 else replace(r, pid=mapping[r.pid]) for r in records]
    return out, mapping


@dataclass
class ReIDDataset:
    """A re-ID dataset: training images plus query and gallery for evaluation."""

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    part_names: list[str] | None = field(default=None)

    @property
    def num_train_pids(self) -> int:
        """Number of distinct labelled identities in ``train``."""
        return split_stats(self.train)[0]

    @property
    def num_train_cams(self) -> int:
        """Number of distinct known cameras in ``train``."""
        return split_stats(self.train)[2]

    def relabeled_train(self) -> list[ImageRecord]:
        """``train`` with pids relabelled to contiguous ``0..C-1`` (for supervised modes)."""
        return relabel_pids(self.train)[0]

    def summary(self) -> str:
        """A torchreid-style table of identities / images / cameras per split."""
        rows = [("train", *split_stats(self.train)), ("query", *split_stats(self.query)),
                ("gallery", *split_stats(self.gallery))]
        lines = [
            f"=> {self.name} loaded from {self.root}",
            "  ----------------------------------------",
            "  subset   | # ids | # images | # cameras",
            "  ----------------------------------------",
        ]
        lines += [f"  {n:<8} | {p:5d} | {i:8d} | {c:9d}" for n, p, i, c in rows]
        lines.append("  ----------------------------------------")
        if self.part_names:
            lines.append(f"  parts: {', '.join(self.part_names)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
