"""Data: records, readers, image loading, mask-aware transforms, identity sampler and torch dataset.

The synthetic world lives in :mod:`scwm.data.synthetic` (not imported here, to keep this light).
"""

from .dataset import ReIDImageDataset, collate_skip_none
from .images import IMAGE_EXTENSIONS, ImageLoadError, load_image, load_mask
from .readers import (
    DATASET_KINDS,
    DatasetError,
    load_dataset,
    read_folder,
    read_market1501,
    read_msmt17,
    read_synthetic,
)
from .records import ImageRecord, ReIDDataset, relabel_pids, split_stats
from .sampler import IdentityBatchSampler
from .transforms import (
    DEFAULT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_SIZE,
    AugParams,
    EvalTransform,
    TrainTransform,
    preprocess,
    resize_label_map,
    resize_soft_masks,
)

__all__ = [
    "AugParams",
    "DATASET_KINDS",
    "DEFAULT_SIZE",
    "DatasetError",
    "EvalTransform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "IdentityBatchSampler",
    "ImageLoadError",
    "ImageRecord",
    "PAPER_SIZE",
    "ReIDDataset",
    "ReIDImageDataset",
    "TrainTransform",
    "collate_skip_none",
    "load_dataset",
    "load_image",
    "load_mask",
    "preprocess",
    "read_folder",
    "read_market1501",
    "read_msmt17",
    "read_synthetic",
    "relabel_pids",
    "resize_label_map",
    "resize_soft_masks",
    "split_stats",
]
