"""Alternative foreground cues for step 1 of cascaded clustering (Sec. 3.2), measured against the feature norm.

Step 1 of ISP's cascaded clustering, which SCWM's SCC keeps, calls a feature cell foreground when its norm is
large. On our backbones that norm is mostly a fixed spatial profile (``docs/bench/norm_cue.md``): the cells at
the image centre are "foreground" whatever the image shows. The two cues below remove position by construction:
each compares a cell only with the cells at the **same grid position** in the other images.

* :func:`position_normalized_norm`: the norm divided by the mean norm at that position over the other images
  (the norm's content part, its positional profile divided out).
* :func:`background_model_distance`: the cosine distance of the cell's feature to a background model, the mean
  L2-normalised feature at that position over the other images of the same camera (or of all images). It is the
  classical background-subtraction idea of fixed surveillance cameras, with only what unsupervised re-ID has:
  images and camera ids. A pedestrian is what differs from what this camera usually shows at that place.

A third cue compares content across images instead of positions:

* :func:`cross_camera_match`: co-segmentation across views. For each cell, the best cosine match among the
  cells of every other image of the same (pseudo) identity seen by another camera, averaged over those
  images. What a person carries from camera to camera is the person; the backdrop changes with the camera.

and a fourth asks the re-ID model itself:

* :func:`identity_activation_map`: the class activation map (CAM) of each image's (pseudo) identity. The
  cells, passed through the global BN neck, are scored against the identity's centroid in the embedding space,
  minus the mean centroid: the cells that make the image look like its identity rather than like anyone.
  Weakly supervised localisation with the identities as classes and the memory's centroids as classifier.

and three more that use what the source world teaches or no labels at all (``experiments.analyses.source_probes``):

* :func:`attribute_evidence`: the CAM of each attribute the source-pretraining head predicts (PLIP's
  attribute prediction: hair, upper and lower garment, shoes, bag). A garment's colour is predicted from the
  cells that show the garment, so the evidence for the predicted class, per group, should sit on its part;
  :func:`family_parts` turns the groups of a body region (head, upper body, ...) into part labels.
* :func:`first_component_cue`: the first principal component of the L2-normalised cells over the whole set,
  the cue that separates object from background in self-supervised vision transformers (DINOv2, Sec. 7).

All but the CAMs are leave-one-out (the image itself is not in its own reference); all are pure and vectorised
over the batch. They are diagnostics beside the paper's cue, not SCC's default (issue "Parts that look like body
parts").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _leave_one_out_group_mean(values: Tensor, groups: Tensor) -> Tensor:
    """Mean of ``values (N, ...)`` over the other members of each row's group, ``(N, ...)``.

    A row alone in its group gets the mean over all other rows instead (nothing else to compare with)."""
    n = values.shape[0]
    if n < 2:
        raise ValueError("a leave-one-out reference needs at least 2 images")
    groups = torch.as_tensor(groups, device=values.device).long().flatten()
    if groups.numel() != n:
        raise ValueError(f"groups must have one entry per image: {groups.numel()} vs {n}")
    _, inverse = torch.unique(groups, return_inverse=True)
    k = int(inverse.max()) + 1
    sums = torch.zeros((k, *values.shape[1:]), dtype=values.dtype, device=values.device)
    sums.index_add_(0, inverse, values)
    counts = torch.bincount(inverse, minlength=k).to(values.dtype)
    own_sum, own_count = sums[inverse], counts[inverse].view(n, *([1] * (values.dim() - 1)))
    alone = own_count <= 1
    group_mean = (own_sum - values) / (own_count - 1).clamp_min(1)
    all_mean = (values.sum(0, keepdim=True) - values) / (n - 1)
    return torch.where(alone, all_mean, group_mean)


def position_normalized_norm(feature_maps: Tensor) -> Tensor:
    """Per cell ``(N, h, w)``: ``||f_i(p)|| / mean_{j != i} ||f_j(p)||`` for the feature maps ``(N, C, h, w)``.

    The ratio to the mean norm of the other images at the same position ``p``: 1 everywhere for a purely
    positional norm profile, larger where this image responds more than the others do at that place."""
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (N, C, h, w), got {tuple(feature_maps.shape)}")
    norms = feature_maps.float().norm(dim=1)
    ref = _leave_one_out_group_mean(norms, torch.zeros(norms.shape[0], dtype=torch.long))
    return norms / ref.clamp_min(1e-12)


def background_model_distance(feature_maps: Tensor, cameras: Tensor | None = None) -> Tensor:
    """Per cell ``(N, h, w)``: ``1 - cos(f_i(p), b(p))``, where the background model ``b(p)`` is the mean
    L2-normalised feature at position ``p`` over the other images of the same camera (``cameras (N,)``) or of
    all images (``cameras=None``). 0 = the cell looks like what this camera usually shows there; up to 2."""
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (N, C, h, w), got {tuple(feature_maps.shape)}")
    unit = torch.nn.functional.normalize(feature_maps.float(), dim=1)
    groups = torch.zeros(unit.shape[0], dtype=torch.long) if cameras is None else cameras
    model = torch.nn.functional.normalize(_leave_one_out_group_mean(unit, groups), dim=1)
    return 1.0 - (unit * model).sum(1)


def cross_camera_match(feature_maps: Tensor, identities: Tensor, cameras: Tensor,
                       chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Per cell ``(N, h, w)``: ``mean_{j in V(i)} max_q cos(f_i(p), f_j(q))``, the best match of the cell among
    the cells of image ``j``, averaged over ``V(i)`` = the other images of the same identity from another
    camera (``identities (N,)``, e.g. pseudo labels, negative = outlier; ``cameras (N,)``). Also returns which
    images have such a view ``(N,)`` bool; the others get 0. Image pairs are processed ``chunk`` at a time."""
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (N, C, h, w), got {tuple(feature_maps.shape)}")
    n, _, h, w = feature_maps.shape
    ids = torch.as_tensor(identities, device=feature_maps.device).long().flatten()
    cams = torch.as_tensor(cameras, device=feature_maps.device).long().flatten()
    if ids.numel() != n or cams.numel() != n:
        raise ValueError(f"identities and cameras need one entry per image: {ids.numel()}, {cams.numel()} vs {n}")
    unit = torch.nn.functional.normalize(feature_maps.float().flatten(2), dim=1).transpose(1, 2)  # (N, h*w, C)
    views = (ids[:, None] == ids[None, :]) & (ids[:, None] >= 0) & (cams[:, None] != cams[None, :])
    i, j = views.nonzero(as_tuple=True)
    total = unit.new_zeros(n, h * w)
    for s in range(0, i.numel(), chunk):
        ii, jj = i[s:s + chunk], j[s:s + chunk]
        total.index_add_(0, ii, torch.bmm(unit[ii], unit[jj].transpose(1, 2)).amax(2))
    count = views.sum(1)
    return (total / count.clamp_min(1)[:, None]).view(n, h, w), count > 0



def identity_directions(global_feats: Tensor, identities: Tensor) -> Tensor:
    """``(N, C)``: ``c_y(i) - mean_y c_y`` for each image ``i``, the classifier weight of its identity's CAM.

    ``global_feats (N, C)``: the L2-normalised image embeddings; ``identities (N,)``: (pseudo) labels, negative =
    outlier. ``c_y`` is the L2-normalised mean embedding of identity ``y``; an outlier uses its own embedding as
    its centroid and does not enter the mean."""
    if global_feats.dim() != 2:
        raise ValueError(f"global_feats must be (N, C), got {tuple(global_feats.shape)}")
    ids = torch.as_tensor(identities, device=global_feats.device).long().flatten()
    if ids.numel() != global_feats.shape[0]:
        raise ValueError(f"identities need one entry per image: {ids.numel()} vs {global_feats.shape[0]}")
    feats = global_feats.float()
    own = ids >= 0
    centroid = feats.clone()
    if not bool(own.any()):
        return centroid - feats.mean(0)
    _, inverse = torch.unique(ids[own], return_inverse=True)
    centres = torch.nn.functional.normalize(
        feats.new_zeros(int(inverse.max()) + 1, feats.shape[1]).index_add_(0, inverse, feats[own]), dim=1)
    centroid[own] = centres[inverse]
    return centroid - centres.mean(0)


def identity_activation_map(cell_embeddings: Tensor, directions: Tensor) -> Tensor:
    """Per cell ``(N, h, w)``: ``<e_i(p), c_y(i) - mean_y c_y>``, the CAM of image ``i``'s identity.

    ``cell_embeddings (N, C, h, w)``: each cell through the global BN neck (an affine map at inference, so the
    cells average to the image's embedding before normalisation); ``directions (N, C)``: from
    :func:`identity_directions` over the whole set."""
    if cell_embeddings.dim() != 4 or directions.dim() != 2 or cell_embeddings.shape[:2] != directions.shape:
        raise ValueError(f"need cell_embeddings (N, C, h, w) and directions (N, C), got "
                         f"{tuple(cell_embeddings.shape)} and {tuple(directions.shape)}")
    return torch.einsum("nchw,nc->nhw", cell_embeddings.float(), directions.float())


def attribute_evidence(cell_logits: Tensor, group_sizes: Sequence[int]) -> Tensor:
    """Per cell and attribute group ``(N, G, h, w)``: ``z_k*(p) - mean_k z_k(p)`` within each group, where
    ``cell_logits (N, K, h, w)`` is a linear attribute head applied to every cell (``K = sum(group_sizes)``;
    for a head on the mean of the cells they average to the image's logits) and ``k*`` is the class the image's
    logits predict. The cells that make the predicted class win over the group's average class."""
    sizes = [int(k) for k in group_sizes]
    if cell_logits.dim() != 4 or cell_logits.shape[1] != sum(sizes):
        raise ValueError(f"cell_logits must be (N, {sum(sizes)}, h, w) for groups {sizes}, "
                         f"got {tuple(cell_logits.shape)}")
    z = cell_logits.float()
    out = []
    for zg in z.split(sizes, dim=1):
        k = zg.mean((2, 3)).argmax(1)
        picked = zg.gather(1, k.view(-1, 1, 1, 1).expand(-1, 1, *zg.shape[2:]))[:, 0]
        out.append(picked - zg.mean(1))
    return torch.stack(out, 1)


def family_parts(evidence: Tensor, families: Sequence[Sequence[int]], foreground: Tensor,
                 background: int | None = None) -> Tensor:
    """Part labels ``(N, h, w)`` from per-group evidence ``(N, G, h, w)``: each foreground cell
    (``foreground (N, h, w)`` bool) goes to the family (a list of group indices, e.g. the head's groups) whose
    summed evidence, standardised over the image's cells, is largest; background cells get ``background``
    (default ``len(families)``; a run with more parts than families keeps its background label last)."""
    if evidence.dim() != 4 or foreground.shape != (evidence.shape[0], *evidence.shape[2:]):
        raise ValueError(f"need evidence (N, G, h, w) and foreground (N, h, w), got {tuple(evidence.shape)} "
                         f"and {tuple(foreground.shape)}")
    if not families or any(not f for f in families):
        raise ValueError(f"every family needs at least one group, got {families}")
    fam = torch.stack([evidence[:, list(f)].sum(1) for f in families], 1)
    fam = (fam - fam.mean((2, 3), keepdim=True)) / fam.std((2, 3), keepdim=True).clamp_min(1e-6)
    labels = fam.argmax(1)
    background = len(families) if background is None else background
    if background < len(families):
        raise ValueError(f"background label {background} collides with the {len(families)} family labels")
    labels[~foreground.bool()] = background
    return labels


def first_component_cue(feature_maps: Tensor) -> Tensor:
    """Per cell ``(N, h, w)``: the projection of the L2-normalised, centred cell features on their first
    principal component over all cells of all images, signed to correlate positively with the feature norm
    (step 1's own cue: which side is "foreground" is the one thing the component cannot say by itself)."""
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (N, C, h, w), got {tuple(feature_maps.shape)}")
    x = feature_maps.float().permute(0, 2, 3, 1)
    unit = torch.nn.functional.normalize(x, dim=-1)
    centred = unit - unit.reshape(-1, unit.shape[-1]).mean(0)
    flat = centred.reshape(-1, unit.shape[-1])
    _, _, vh = torch.linalg.svd(flat.T @ flat)
    score = centred @ vh[0]
    norms = x.norm(dim=-1)
    if float(((score - score.mean()) * (norms - norms.mean())).sum()) < 0:
        score = -score
    return score
