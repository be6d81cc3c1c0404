"""Torch dataset over :class:`~scwm.data.records.ImageRecord` lists, with pseudo labels, part masks and
lazy corrupt-image handling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .images import ImageLoadError, load_image, load_mask
from .records import ImageRecord
from .transforms import EvalTransform

__all__ = ["ReIDImageDataset", "collate_skip_none"]

logger = logging.getLogger(__name__)


class ReIDImageDataset(Dataset):
    """Items are dicts ``{"image", "label", "pid", "camid", "index"[, "mask"]}``.

    - ``label`` is ``labels[i]`` (pseudo label, -1 = outlier) when ``labels`` is given, else the record pid.
    - ``mask``: ``soft_masks[i]`` (an indexable ``(N, K, h, w)`` tensor/array set per epoch by the
      trainer), or with ``use_gt_masks`` the record's ground-truth label map; passed through
      ``transform(image, mask)`` so it stays aligned with the image.
    - ``transform`` follows the ``t(image, mask=None) -> (Tensor, mask_out)`` protocol of
      :mod:`scwm.data.transforms`; a plain callable returning a tensor is also accepted when there is no
      mask. Default: :class:`~scwm.data.transforms.EvalTransform` at the default size.
    - A corrupt image (or ground-truth mask) yields ``None`` when ``skip_corrupt`` (use
      :func:`collate_skip_none`), is appended to ``corrupt_files`` and logged as a warning (worker
      processes do not share ``corrupt_files`` with the main process; the warning names the file).
      With ``skip_corrupt=False`` the :class:`~scwm.data.images.ImageLoadError` is raised.

    ``set_labels`` / ``set_soft_masks`` update the dataset in place; DataLoader workers hold copies, so
    create the DataLoader after the update (no ``persistent_workers`` across updates).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[..., Any] | None = None,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        soft_masks: Any = None,
        use_gt_masks: bool = False,
        skip_corrupt: bool = True,
    ) -> None:
        self.records = list(records)
        self.transform = transform if transform is not None else EvalTransform()
        self.use_gt_masks = bool(use_gt_masks)
        self.skip_corrupt = bool(skip_corrupt)
        self.corrupt_files: list[str] = []
        self.labels: np.ndarray | None = None
        self.soft_masks: Any = None
        if self.use_gt_masks:
            missing = [r.path for r in self.records if r.mask_path is None]
            if missing:
                raise ValueError(f"use_gt_masks=True but {len(missing)} record(s) have no mask_path, "
                                 f"e.g. {missing[0]!r}")
        self.set_labels(labels)
        self.set_soft_masks(soft_masks)

    def set_labels(self, labels: Sequence[int] | np.ndarray | torch.Tensor | None) -> None:
        """Set per-image (pseudo) labels, or None to use the record pids."""
        if labels is None:
            self.labels = None
            return
        arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if arr.shape != (len(self.records),):
            raise ValueError(f"labels must have shape ({len(self.records)},) to match the records, "
                             f"got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
        self.labels = arr.astype(np.int64)

    def set_soft_masks(self, soft_masks: Any) -> None:
        """Set soft part masks indexable as ``soft_masks[i] -> (K, h, w)``, or None."""
        if soft_masks is not None:
            if self.use_gt_masks:
                raise ValueError("soft_masks and use_gt_masks=True are mutually exclusive")
            if len(soft_masks) != len(self.records):
                raise ValueError(f"soft_masks has {len(soft_masks)} entries for {len(self.records)} records")
            shape = getattr(soft_masks, "shape", None)
            if shape is not None and len(shape) != 4:
                raise ValueError(f"soft_masks must be (N, K, h, w), got shape {tuple(shape)}")
        self.soft_masks = soft_masks

    @property
    def num_corrupt(self) -> int:
        """Number of corrupt files met so far in this process."""
        return len(self.corrupt_files)

    def __len__(self) -> int:
        return len(self.records)

    def _corrupt(self, err: ImageLoadError) -> None:
        if not self.skip_corrupt:
            raise err
        self.corrupt_files.append(err.path)
        logger.warning("skipping corrupt file: %s", err)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        rec = self.records[index]
        try:
            image = load_image(rec.path)
            mask = None
            if self.soft_masks is not None:
                mask = self.soft_masks[index]
            elif self.use_gt_masks:
                mask = load_mask(rec.mask_path)  # type: ignore[arg-type]
        except ImageLoadError as err:
            self._corrupt(err)
            return None
        out = self.transform(image, mask) if mask is not None else self.transform(image)
        if isinstance(out, tuple):
            img_t, mask_t = out
        else:
            if mask is not None:
                raise TypeError(f"transform {self.transform!r} returned a single value but a mask was given; "
                                f"use a paired transform (t(image, mask) -> (image, mask))")
            img_t, mask_t = out, None
        label = int(self.labels[index]) if self.labels is not None else rec.pid
        item: dict[str, Any] = {"image": img_t, "label": label, "pid": rec.pid, "camid": rec.camid,
                                "index": index}
        if mask_t is not None:
            item["mask"] = mask_t
        return item


def collate_skip_none(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """``default_collate`` after dropping ``None`` items (corrupt images); None if nothing is left."""
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return default_collate(kept)
