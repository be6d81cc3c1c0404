"""Spatial cascaded clustering (SCC): pseudo part masks from backbone feature maps (Sec. 3.2, Eq. 2).

Everything is batched over images and runs on the device of the input (CPU or CUDA); there is no loop
over images or pixels, only loops over k-means iterations and agglomerative merge steps, which all
images of a batch take in lock-step.

Pipeline (``spatial_cascaded_clustering``):

1. **Foreground (step 1).** Per pixel ``s = sigmoid(10 * ||v|| / max_image ||v|| - 2)`` (ISP), then a
   1-D k-means per image on ``s``: 2 classes, higher-mean class = foreground (original cascaded
   clustering), or with ``foreground_correction`` 3 classes (salient fg, regular fg, background = the
   lowest-mean class), so that a salient region does not push the regular foreground into background.
2. **Parts (step 2).** Foreground vectors are L2-normalized. Original: k-means with ``k = num_parts-1``.
   With ``space_correction``: agglomerative clustering into ``num_parts-1`` clusters on the corrected
   distance matrix of Eq. 2, ``D = D_f`` if ``D_s < eta`` else "infinity".
3. **Ordering.** Foreground parts ``0..num_parts-2`` sorted top to bottom by the mean row of their
   pixels; background is ``num_parts-1``.

Decisions (the paper leaves them open; measured in ``benchmarks/bench_parsing.py``, figures and caveats
in ``docs/bench/parsing.md``):

* ``linkage="average"`` (UPGMA). It is what ``sklearn.cluster.AgglomerativeClustering`` can run on a
  precomputed matrix (Ward cannot), and it is verified identical to sklearn. On our synthetic maps
  complete (diameter-limited parts) and single (chaining, singleton parts) score clearly lower;
  ``"ward"`` (Lance-Williams Ward on Euclidean distances, clamped to stay reducible when far pairs make
  D non-Euclidean) scored higher at eta = H/2 (24x8: part mIoU 0.325 vs 0.233) and is available.
* ``feature_metric="cosine"``: ``D_f = 1 - cos(v_A, v_B)`` on L2-normalized vectors. ``"euclidean"``
  (``sqrt(2 - 2 cos)``) is a monotone transform of it, so single and complete linkage give identical
  partitions with either; average differed by <= 0.002 mIoU.
* ``eta`` is measured in **feature-grid cells** with the Euclidean grid distance
  (``spatial_metric="euclidean"``, ``eta_unit="cells"``), ``DEFAULT_ETA = 8`` (best finite eta for average
  linkage on 24x8 synthetic maps). With average (or complete) linkage a part cannot span two cells
  farther apart than eta without a merge "past infinity", so eta must exceed the expected part
  diameter. ``"chebyshev"`` (differs only at a few eta values) and ``eta_unit="height"`` (``D_s / H``) are
  available.
* Infinity is represented by a finite ``far_value`` larger than any reachable finite linkage value
  (default ``3 * (N^2 + 1)`` for an ``N = H*W`` grid, feature distances being <= 2). All
  merges at finite distance therefore happen before any merge across a forbidden pair (for average
  linkage a single forbidden pair already puts a cluster pair above every finite distance). When
  ``eta`` is so small that fewer merges are possible than needed, merging simply **continues** past
  "infinity" with the same Lance-Williams rule applied to ``far_value`` (for average linkage: the pair
  with the smallest fraction of forbidden pixel pairs merges first; ties go to the lowest flat index
  ``(i, j)``). This is the paper's "spatial constraint becomes ineffective"; it never fails.
  ``eta = inf`` gives plain agglomerative clustering.
* ``far_pairs`` decides how merges past "infinity" are ordered. ``"constant"`` (the default, used by every
  recorded run) gives every forbidden pair the same ``far_value``, so among cluster pairs made only of
  forbidden pixel pairs the features play no part and ties go to the lowest index: at ``eta <= 1`` cell
  every pair is forbidden and step 2 becomes a feature-free split of the foreground (one large part plus
  singleton cells). ``"feature"`` gives a forbidden pair ``far_value + D_f``: every finite merge still
  comes first, but past infinity the feature distance orders the merges, so a too-small eta degrades to
  plain agglomerative clustering on ``D_f`` (identical to ``eta = inf`` when every pair is forbidden), which
  is how the paper describes a too-small eta ("the spatial constraints become ineffective", Sec. 4.3).
  The distance matrix is then built in float64 so that ``D_f`` is not lost to the rounding of ``far_value``.

Edge cases: an image whose foreground has ``<= num_parts-1`` points gets one part per foreground point
(remaining part labels unused); an all-zero map (or any map with zero max norm) is all background;
``B = 0`` returns an empty ``(0, H, W)`` tensor. K-means is initialised deterministically: the 1-D norm
clustering runs from quantile and from farthest-point centres and keeps the lower-inertia result per
image; step 2 uses a farthest-point traversal from the point nearest the mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from scwm.parsing.kmeans import batched_kmeans

__all__ = [
    "DEFAULT_ETA",
    "FAR_PAIRS",
    "LINKAGES",
    "batched_agglomerative",
    "batched_kmeans",
    "corrected_distance_matrix",
    "default_far_value",
    "foreground_from_cue",
    "foreground_mask",
    "norm_saliency",
    "order_parts_top_to_bottom",
    "spatial_cascaded_clustering",
]

DEFAULT_ETA = 8.0
LINKAGES = ("average", "complete", "single", "ward")
FEATURE_METRICS = ("cosine", "euclidean")
SPATIAL_METRICS = ("euclidean", "chebyshev")
ETA_UNITS = ("cells", "height")
FAR_PAIRS = ("constant", "feature")


# --------------------------------------------------------------------------------------------------
# step 1: foreground
# --------------------------------------------------------------------------------------------------
def _saliency_from_norms(norms: Tensor) -> Tensor:
    mx = norms.amax(1, keepdim=True) if norms.shape[1] else norms
    x = torch.where(mx > 0, norms / mx.clamp_min(torch.finfo(norms.dtype).tiny), torch.zeros_like(norms))
    return torch.sigmoid(10.0 * x - 2.0)


def norm_saliency(feature_maps: Tensor) -> Tensor:
    """ISP's per-pixel saliency ``sigmoid(10 * ||v|| / max ||v|| - 2)``, ``(B, H*W)``; 0-max maps give 0."""
    return _saliency_from_norms(feature_maps.flatten(2).norm(dim=1))


def _foreground_from_norms(norms: Tensor, foreground_correction: bool, max_iter: int) -> Tensor:
    s = _saliency_from_norms(norms)
    b, n = s.shape
    if b == 0 or n == 0:
        return torch.zeros(b, n, dtype=torch.bool, device=s.device)
    k = 3 if foreground_correction else 2
    labels, c = batched_kmeans(s.unsqueeze(-1), None, k, max_iter=max_iter, init="auto")
    c = c[..., 0]
    # background = the cluster with the lowest centre; a cluster whose centre equals it (e.g. constant
    # maps) is background too; maps with zero max norm are all background
    bg = c.argmin(1, keepdim=True)
    fg = c.gather(1, labels.clamp_min(0)) > c.gather(1, bg)
    return fg & (norms.amax(1, keepdim=True) > 0)


def foreground_from_cue(cue: Tensor, foreground_correction: bool = True, max_iter: int = 100) -> Tensor:
    """Step 1's rule on any non-negative per-cell cue ``(B, H, W)`` in place of the feature norm: boolean
    foreground ``(B, H, W)`` (:func:`foreground_mask` is this rule on the norm), for measuring other cues."""
    if cue.dim() != 3:
        raise ValueError(f"cue must be (B, H, W), got shape {tuple(cue.shape)}")
    if cue.numel() and float(cue.min()) < 0:
        raise ValueError("cue must be non-negative (shift it by its per-image minimum)")
    return _foreground_from_norms(cue.flatten(1).float(), foreground_correction, max_iter).view(cue.shape)


def foreground_mask(feature_maps: Tensor, foreground_correction: bool = True, max_iter: int = 100) -> Tensor:
    """Step 1 of cascaded clustering: boolean foreground ``(B, H*W)``.

    2-class k-means on :func:`norm_saliency` (foreground = higher-mean class) or, with
    ``foreground_correction``, 3-class (salient fg, regular fg, background = lowest-mean class).
    Maps whose max norm is 0 are all background.
    """
    return _foreground_from_norms(feature_maps.flatten(2).norm(dim=1), foreground_correction, max_iter)


# --------------------------------------------------------------------------------------------------
# step 2: corrected distances and batched agglomerative clustering
# --------------------------------------------------------------------------------------------------
def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")


def _check_distance_options(eta: float, feature_metric: str, spatial_metric: str, eta_unit: str, far_pairs: str
                            ) -> None:
    """Validate the options of :func:`corrected_distance_matrix` (Eq. 2)."""
    _check_choice("feature_metric", feature_metric, FEATURE_METRICS)
    _check_choice("spatial_metric", spatial_metric, SPATIAL_METRICS)
    _check_choice("eta_unit", eta_unit, ETA_UNITS)
    _check_choice("far_pairs", far_pairs, FAR_PAIRS)
    if not eta > 0:
        raise ValueError(f"eta must be > 0 (use math.inf for no spatial constraint), got {eta}")


def corrected_distance_matrix(
    feats: Tensor,
    rows: Tensor,
    cols: Tensor,
    eta: float,
    *,
    feature_metric: str = "cosine",
    spatial_metric: str = "euclidean",
    eta_unit: str = "cells",
    height: int | None = None,
    far_value: float | None = None,
    far_pairs: str = "constant",
) -> Tensor:
    """Corrected distance matrix of Eq. 2, ``(B, n, n)``; "infinity" is ``far_value``.

    ``feats (B, n, C)`` are L2-normalized, ``rows``/``cols (B, n)`` are grid coordinates. ``D_s`` is the
    Euclidean or Chebyshev grid distance, divided by ``height`` when ``eta_unit == "height"``. Pairs with
    ``D_s >= eta`` get ``far_value`` (default :func:`default_far_value`), or ``far_value + D_f`` with
    ``far_pairs="feature"`` (computed in float64; see the module docstring). The diagonal is 0.
    """
    _check_distance_options(eta, feature_metric, spatial_metric, eta_unit, far_pairs)
    n = feats.shape[1]
    if far_pairs == "feature" and not math.isinf(eta):
        feats = feats.double()
    sim = torch.bmm(feats, feats.transpose(1, 2)).clamp_(-1.0, 1.0)
    if feature_metric == "cosine":
        df = (1.0 - sim).clamp_min_(0.0)
    else:
        df = (2.0 - 2.0 * sim).clamp_min_(0.0).sqrt_()
    if math.isinf(eta):
        out = df
    else:
        dr = (rows.unsqueeze(2) - rows.unsqueeze(1)).to(feats.dtype)
        dc = (cols.unsqueeze(2) - cols.unsqueeze(1)).to(feats.dtype)
        if spatial_metric == "euclidean":
            ds = torch.sqrt(dr * dr + dc * dc)
        else:
            ds = torch.maximum(dr.abs(), dc.abs())
        if eta_unit == "height":
            if not height:
                raise ValueError("eta_unit='height' needs the map height")
            ds = ds / float(height)
        fv = default_far_value(n) if far_value is None else float(far_value)
        far = ds >= eta
        out = torch.where(far, df + fv, df) if far_pairs == "feature" else df.masked_fill_(far, fv)
    out.diagonal(dim1=1, dim2=2).zero_()
    return out


def default_far_value(n: int) -> float:
    """Finite stand-in for Eq. 2's infinity: above any average/complete/single/ward value of finite pairs."""
    return 3.0 * (n * n + 1)


def batched_agglomerative(dist: Tensor, mask: Tensor, n_clusters: int, linkage: str = "average") -> Tensor:
    """Agglomerative clustering of every image on a precomputed distance matrix, in lock-step.

    ``dist (B, n, n)`` symmetric, ``mask (B, n)`` valid points. Each step merges, in every image that
    still has more than ``n_clusters`` clusters, the closest pair (lowest flat index on ties) and updates
    the merged row with the Lance-Williams formula of ``linkage`` (``single``, ``complete``, ``average``,
    ``ward``: Ward on Euclidean distances). Images with ``<= n_clusters`` valid points keep one cluster
    per point. Returns labels ``(B, n)`` in ``[0, n_clusters)`` numbered by first point, -1 for padding.
    """
    _check_choice("linkage", linkage, LINKAGES)
    if dist.dim() != 3 or dist.shape[1] != dist.shape[2]:
        raise ValueError(f"dist must be (B, n, n), got shape {tuple(dist.shape)}")
    b, n, _ = dist.shape
    dev = dist.device
    if b == 0 or n == 0:
        return torch.full((b, n), -1, dtype=torch.long, device=dev)
    inf = math.inf
    valid2 = mask.unsqueeze(2) & mask.unsqueeze(1)
    d = dist.masked_fill(~valid2, inf).clone()
    d.diagonal(dim1=1, dim2=2).fill_(inf)
    if linkage == "ward":
        d = d * d  # Lance-Williams Ward recurrence runs on squared distances
    size = mask.to(dist.dtype)
    lab = torch.arange(n, device=dev).expand(b, n).clone()
    need = (mask.sum(1) - n_clusters).clamp_min(0)
    bi = torch.arange(b, device=dev)
    ar = torch.arange(n, device=dev).unsqueeze(0)
    # nearest-neighbour cache: nnd[b, r] = min_c d[b, r, c], nni = first column reaching it. All the
    # linkages are reducible (d(k, i+j) >= min(d(k, i), d(k, j))), so only rows whose neighbour was i or
    # j (and row i) need a full recompute; that keeps every step O(B * n) instead of O(B * n^2).
    # argmin + gather rather than Tensor.min(dim): the latter is ~1000x slower for small tensors with
    # 2 threads on a loaded machine (thread-pool wake-ups), and argmin returns the first minimum
    nni = d.argmin(2)
    nnd = d.gather(2, nni.unsqueeze(2))[..., 0]
    flat = d.view(-1)
    base = (bi * (n * n)).unsqueeze(1)  # (B, 1) offset of each image in the flat view
    full_inf = torch.full((b, n), inf, dtype=d.dtype, device=dev)
    steps = int(need.max().item())
    for step in range(steps):
        active = need > step  # (B,)
        act = active.unsqueeze(1)
        r = nnd.argmin(1)
        c = nni.gather(1, r.unsqueeze(1))[:, 0]
        i, j = torch.minimum(r, c), torch.maximum(r, c)
        iu, ju = i.unsqueeze(1), j.unsqueeze(1)
        dij = d.gather(1, torch.stack([i, j], 1).view(b, 2, 1).expand(b, 2, n))
        di, dj = dij[:, 0], dij[:, 1]
        ni, nj = size.gather(1, iu), size.gather(1, ju)
        if linkage == "single":
            new = torch.minimum(di, dj)
        elif linkage == "complete":
            new = torch.maximum(di, dj)
        elif linkage == "average":
            new = (ni * di + nj * dj) / (ni + nj)
        else:
            dpair = di.gather(1, ju)
            tot = size + ni + nj
            new = ((size + ni) * di + (size + nj) * dj - size * dpair) / tot.clamp_min(1e-12)
            # clamp keeps the update reducible when far pairs make D non-Euclidean (never binds otherwise)
            new = torch.maximum(new, torch.minimum(di, dj))
            new = torch.where(torch.isfinite(di) & torch.isfinite(dj), new, full_inf)
        new = new.scatter(1, torch.cat([iu, ju], 1), inf)
        row_i = torch.where(act, new, di)
        row_j = torch.where(act, full_inf, dj)
        # write rows i, j and columns i, j (d stays symmetric) with one flat index_copy_
        idx = torch.cat([base + iu * n + ar, base + ju * n + ar, base + ar * n + iu, base + ar * n + ju], 1)
        flat.index_copy_(0, idx.view(-1), torch.cat([row_i, row_j, row_i, row_j], 1).view(-1))
        size = size.scatter(1, torch.cat([iu, ju], 1), torch.cat([ni + nj, torch.zeros_like(nj)], 1) * act
                            + torch.cat([ni, nj], 1) * ~act)
        lab = torch.where(act & (lab == ju), iu, lab)
        # cache update: rows that may now be closer to the merged cluster i (ties -> lower column)
        closer = act & ((row_i < nnd) | ((row_i == nnd) & (iu < nni)))
        nnd = torch.where(closer, row_i, nnd)
        nni = torch.where(closer, iu, nni)
        # rows whose neighbour was i or j, and row i itself, are recomputed exactly
        stale = act & (((nni == iu) | (nni == ju)) & torch.isfinite(nnd) | (ar == iu))
        kmax = int(stale.sum(1).max().item())
        if kmax:
            rows = stale.to(torch.int8).topk(kmax, dim=1).indices  # (B, K); extra rows are harmless
            sub = d.gather(1, rows.unsqueeze(2).expand(b, kmax, n))
            ri = sub.argmin(2)
            rd = sub.gather(2, ri.unsqueeze(2))[..., 0]
            nnd = nnd.scatter(1, rows, rd)
            nni = nni.scatter(1, rows, ri)
        nnd = torch.where(act & (ar == ju), full_inf, nnd)
    # representatives -> 0..k-1 in order of their index
    rep = (size > 0) & mask
    cid = rep.long().cumsum(1) - 1
    out = cid.gather(1, lab)
    return out.masked_fill(~mask, -1)


# --------------------------------------------------------------------------------------------------
# ordering and the full pipeline
# --------------------------------------------------------------------------------------------------
def order_parts_top_to_bottom(labels: Tensor, rows: Tensor, num_fg_parts: int) -> Tensor:
    """Relabel clusters ``(B, n)`` (-1 = none) so part 0 has the smallest mean row; empty parts go last."""
    b, n = labels.shape
    valid = labels >= 0
    oh = F.one_hot(labels.clamp_min(0), num_fg_parts).to(torch.float64) * valid.unsqueeze(-1)
    cnt = oh.sum(1)
    mean_row = (oh * rows.to(torch.float64).unsqueeze(-1)).sum(1) / cnt.clamp_min(1.0)
    mean_row = mean_row.masked_fill(cnt == 0, math.inf)
    order = mean_row.argsort(dim=1, stable=True)  # order[r] = old cluster with rank r
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(num_fg_parts, device=labels.device).expand(b, -1))
    return torch.where(valid, rank.gather(1, labels.clamp_min(0)), labels)


def spatial_cascaded_clustering(
    feature_maps: Tensor,
    num_parts: int,
    eta: float = DEFAULT_ETA,
    foreground_correction: bool = True,
    space_correction: bool = True,
    *,
    linkage: str = "average",
    feature_metric: str = "cosine",
    spatial_metric: str = "euclidean",
    eta_unit: str = "cells",
    far_value: float | None = None,
    far_pairs: str = "constant",
    kmeans_iters: int = 100,
    foreground: Tensor | None = None,
) -> Tensor:
    """Pseudo part labels ``(B, H, W)`` from feature maps ``(B, C, H, W)`` (Sec. 3.2, Eq. 2).

    ``foreground_correction=False, space_correction=False`` is ISP's original cascaded clustering; both
    True is SCWM's SCC. Foreground parts ``0..num_parts-2`` are ordered top to bottom by the mean row of
    their pixels, background is ``num_parts-1``. See the module docstring for the choices of
    ``linkage``, ``feature_metric``, ``spatial_metric``/``eta_unit``, ``far_pairs`` and for edge cases.

    ``foreground`` (boolean ``(B, H, W)``) replaces step 1 (and ``foreground_correction``) with a given
    foreground, e.g. the ground truth pooled to the grid, to measure step 2 apart from the norm cue.
    """
    if feature_maps.dim() != 4:
        raise ValueError(f"feature_maps must be (B, C, H, W), got shape {tuple(feature_maps.shape)}")
    if num_parts < 2:
        raise ValueError(f"num_parts must be >= 2 (at least one foreground part + background), got {num_parts}")
    if not feature_maps.is_floating_point():
        raise ValueError(f"feature_maps must be floating point, got dtype {feature_maps.dtype}")
    if space_correction:
        _check_choice("linkage", linkage, LINKAGES)
        _check_distance_options(eta, feature_metric, spatial_metric, eta_unit, far_pairs)
    b, c, h, w = feature_maps.shape
    dev = feature_maps.device
    bg_label = num_parts - 1
    if b == 0 or h * w == 0:
        return torch.full((b, h, w), bg_label, dtype=torch.long, device=dev)
    k = num_parts - 1

    flat = feature_maps.flatten(2)  # (B, C, N)
    norms = flat.norm(dim=1)  # (B, N)
    if foreground is None:
        fg = _foreground_from_norms(norms, foreground_correction, kmeans_iters)
    else:
        if foreground.shape != (b, h, w) or foreground.dtype != torch.bool:
            raise ValueError(f"foreground must be a boolean (B, H, W) = {(b, h, w)} map, got "
                             f"{foreground.dtype} {tuple(foreground.shape)}")
        fg = foreground.to(dev).flatten(1) & (norms > 0)
    # compact foreground points to the front (stable, so row-major order is kept)
    order = torch.argsort((~fg).to(torch.int8), dim=1, stable=True)
    n_fg = fg.sum(1)
    m = int(n_fg.max().item())
    out = torch.full((b, h * w), bg_label, dtype=torch.long, device=dev)
    if m == 0:
        return out.view(b, h, w)
    idx = order[:, :m]
    valid = torch.arange(m, device=dev).unsqueeze(0) < n_fg.unsqueeze(1)
    # gather along the contiguous pixel axis, then L2-normalize with the norms computed in step 1
    inv = torch.where(valid, 1.0 / norms.gather(1, idx).clamp_min(1e-12), torch.zeros_like(norms[:, :m]))
    feats = (flat.gather(2, idx.unsqueeze(1).expand(b, c, m)) * inv.unsqueeze(1)).transpose(1, 2)  # (B,m,C)
    rows = torch.div(idx, w, rounding_mode="floor")
    cols = idx % w

    if space_correction:
        dist = corrected_distance_matrix(
            feats, rows, cols, eta, feature_metric=feature_metric, spatial_metric=spatial_metric,
            eta_unit=eta_unit, height=h, far_value=far_value if far_value is not None else default_far_value(h * w),
            far_pairs=far_pairs,
        )
        lab = batched_agglomerative(dist, valid, k, linkage=linkage)
    else:
        lab, _ = batched_kmeans(feats.contiguous(), valid, k, max_iter=kmeans_iters, init="farthest")
    lab = order_parts_top_to_bottom(lab, rows, k)
    out.scatter_(1, idx, torch.where(valid, lab, torch.full_like(lab, bg_label)))
    # scatter of padded slots wrote bg_label onto background pixels, which is already their label
    return out.view(b, h, w)
