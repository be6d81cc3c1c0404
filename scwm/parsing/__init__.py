"""Self-learned human parsing: spatial cascaded clustering (Sec. 3.2, Eq. 2), mask smoothing (Eq. 3),
and parsing-quality metrics against ground-truth part masks."""

from scwm.parsing.cascaded import (
    DEFAULT_ETA,
    LINKAGES,
    batched_agglomerative,
    batched_kmeans,
    corrected_distance_matrix,
    default_far_value,
    foreground_from_cue,
    foreground_mask,
    norm_saliency,
    order_parts_top_to_bottom,
    spatial_cascaded_clustering,
)
from scwm.parsing.metrics import (
    ParsingConfusion,
    binary_auc,
    horizontal_stripes,
    norm_cue_cells,
    parsing_scores,
    part_map_similarity,
    within_position_auc,
)
from scwm.parsing.oracle import GT_PART_GROUPS, NUM_GT_LABELS, oracle_part_labels
from scwm.parsing.smoothing import labels_to_onehot, mask_momentum, smooth_masks

__all__ = [
    "DEFAULT_ETA",
    "GT_PART_GROUPS",
    "LINKAGES",
    "NUM_GT_LABELS",
    "ParsingConfusion",
    "batched_agglomerative",
    "binary_auc",
    "batched_kmeans",
    "corrected_distance_matrix",
    "default_far_value",
    "foreground_from_cue",
    "foreground_mask",
    "horizontal_stripes",
    "labels_to_onehot",
    "mask_momentum",
    "norm_cue_cells",
    "norm_saliency",
    "oracle_part_labels",
    "order_parts_top_to_bottom",
    "part_map_similarity",
    "parsing_scores",
    "smooth_masks",
    "spatial_cascaded_clustering",
    "within_position_auc",
]
