"""Tests for scwm.parsing: cascaded clustering (Sec. 3.2, Eq. 2) and smoothing (Eq. 3).

The parsing metrics are tested in test_parsing_metrics.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import squareform
from sklearn.cluster import AgglomerativeClustering, KMeans

from scwm.parsing import (
    batched_agglomerative,
    batched_kmeans,
    corrected_distance_matrix,
    default_far_value,
    foreground_from_cue,
    foreground_mask,
    labels_to_onehot,
    mask_momentum,
    smooth_masks,
    spatial_cascaded_clustering,
)


def same_partition(a, b) -> bool:
    a, b = list(np.asarray(a).ravel()), list(np.asarray(b).ravel())
    return len(set(zip(a, b, strict=True))) == len(set(a)) == len(set(b))


# ------------------------------------------------------------------------------------------ k-means
def test_kmeans_1d_matches_sklearn():
    rng = np.random.default_rng(0)
    data, masks = [], []
    for b in range(5):
        centres = np.sort(rng.uniform(0, 10, 3)) + np.array([0, 3, 6])
        n = 30 + 5 * b
        v = np.concatenate([rng.normal(cc, 0.2, n // 3) for cc in centres])
        v = np.pad(v, (0, 60 - len(v)))
        data.append(v)
        masks.append(np.arange(60) < 3 * (n // 3))
    x = torch.tensor(np.stack(data)).unsqueeze(-1)
    m = torch.tensor(np.stack(masks))
    lab, _ = batched_kmeans(x, m, 3)
    for b in range(5):
        nb = int(m[b].sum())
        ref = KMeans(3, n_init=10, random_state=0).fit_predict(x[b, :nb].numpy())
        assert same_partition(ref, lab[b, :nb].numpy())
        assert (lab[b, nb:] == -1).all()


def test_kmeans_nd_matches_sklearn():
    rng = np.random.default_rng(1)
    x = np.zeros((4, 50, 16))
    m = np.zeros((4, 50), dtype=bool)
    for b in range(4):
        n = 36 + 4 * b
        protos = rng.normal(0, 1, (3, 16)) * 4
        x[b, :n] = protos[rng.integers(0, 3, n)] + rng.normal(0, 0.3, (n, 16))
        m[b, :n] = True
    lab, cen = batched_kmeans(torch.tensor(x), torch.tensor(m), 3)
    assert cen.shape == (4, 3, 16)
    for b in range(4):
        nb = int(m[b].sum())
        ref = KMeans(3, n_init=10, random_state=0).fit_predict(x[b, :nb])
        assert same_partition(ref, lab[b, :nb].numpy())


def test_foreground_mask_matches_literal_isp_step1():
    rng = np.random.default_rng(2)
    level = rng.choice([0.3, 1.5, 4.0], size=(3, 1, 12, 6), p=[0.4, 0.45, 0.15])
    fmap = np.abs(rng.normal(1, 0.05, (3, 16, 12, 6))) * level * rng.uniform(0.9, 1.1, (3, 1, 12, 6))
    for k, corr in ((2, False), (3, True)):
        fg = foreground_mask(torch.tensor(fmap), foreground_correction=corr).numpy()
        for b in range(3):
            norms = np.linalg.norm(fmap[b].reshape(16, -1), axis=0)
            s = 1 / (1 + np.exp(-(10 * norms / norms.max() - 2)))
            km = KMeans(k, n_init=10, random_state=0).fit(s[:, None])
            ref = km.labels_ != np.argmin(km.cluster_centers_[:, 0])
            assert (fg[b] == ref).all()


# ------------------------------------------------------------------------------------------ agglomerative
def literal_corrected(x: np.ndarray, rows, cols, eta: float, far: float) -> np.ndarray:
    """Eq. 2 by an explicit double loop: cosine distance, Euclidean grid distance in cells."""
    n = len(x)
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            ds = math.hypot(rows[a] - rows[b], cols[a] - cols[b])
            out[a, b] = (1 - float(x[a] @ x[b])) if ds < eta else far
    np.fill_diagonal(out, 0)
    return out


@pytest.mark.parametrize(
    "linkage, eta",
    [("average", math.inf), ("average", 5.0), ("average", 3.0), ("complete", math.inf), ("complete", 12.0),
     ("single", math.inf), ("single", 5.0), ("single", 1.5)],
)
def test_agglomerative_matches_sklearn(linkage, eta):
    torch.manual_seed(3)
    b, n = 5, 40
    x = F.normalize(torch.randn(b, n, 8, dtype=torch.float64), dim=-1)
    rows, cols = torch.randint(0, 12, (b, n)), torch.randint(0, 4, (b, n))
    counts = [40, 30, 12, 3, 25]
    mask = torch.arange(n)[None] < torch.tensor(counts)[:, None]
    far = default_far_value(48)
    dist = corrected_distance_matrix(x, rows, cols, eta, far_value=far)
    lab = batched_agglomerative(dist, mask, 4, linkage)
    for i, nb in enumerate(counts):
        lit = literal_corrected(x[i, :nb].numpy(), rows[i, :nb].tolist(), cols[i, :nb].tolist(), eta, far)
        np.testing.assert_allclose(dist[i, :nb, :nb].numpy(), lit, atol=1e-12)
        if nb <= 4:
            assert sorted(lab[i, :nb].tolist()) == list(range(nb))
            continue
        ref = AgglomerativeClustering(n_clusters=4, metric="precomputed", linkage=linkage).fit_predict(lit)
        assert same_partition(ref, lab[i, :nb].numpy()), (linkage, eta, i)
        assert (lab[i, nb:] == -1).all()


def test_ward_matches_scipy():
    torch.manual_seed(4)
    x = F.normalize(torch.randn(3, 30, 6, dtype=torch.float64), dim=-1)
    z = torch.zeros(3, 30, dtype=torch.long)
    dist = corrected_distance_matrix(x, z, z, math.inf, feature_metric="euclidean")
    lab = batched_agglomerative(dist, torch.ones(3, 30, dtype=torch.bool), 5, "ward")
    for i in range(3):
        ref = AgglomerativeClustering(n_clusters=5, linkage="ward").fit_predict(x[i].numpy())
        assert same_partition(ref, lab[i].numpy())
        zz = scipy_linkage(squareform(dist[i].numpy(), checks=False), method="ward")
        assert zz.shape == (29, 4)


def test_eta_inf_is_plain_agglomerative():
    torch.manual_seed(5)
    fmap = torch.randn(4, 16, 8, 4, dtype=torch.float64)
    a = spatial_cascaded_clustering(fmap, 4, math.inf)
    b = spatial_cascaded_clustering(fmap, 4, 1e9)
    assert torch.equal(a, b)
    # and equal to sklearn on the plain cosine distance of the foreground vectors
    fg = foreground_mask(fmap, True)
    for i in range(4):
        v = F.normalize(fmap[i].flatten(1).T[fg[i]], dim=-1).numpy()
        ref = AgglomerativeClustering(3, metric="precomputed", linkage="average").fit_predict(1 - v @ v.T)
        assert same_partition(ref, a[i].flatten()[fg[i]].numpy())
        assert (a[i].flatten()[~fg[i]] == 3).all()


# ------------------------------------------------------------------------------------------ pipeline
def banded_map(protos_by_row, h=24, w=8, noise=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = protos_by_row[0].shape[0]
    fmap = torch.zeros(c, h, w)
    for r in range(h):
        fmap[:, r, 1 : w - 1] = protos_by_row[r].unsqueeze(1)  # columns 0 and w-1 are background
    scale = 0.5 + 0.5 * torch.rand(1, h, w, generator=g)  # realistic spread of foreground norms
    return fmap * scale + noise * torch.randn(c, h, w, generator=g)


def test_parts_ordered_top_to_bottom_and_background_last():
    c = 32
    p = torch.eye(c)[:4] * 5
    # rows 0-5: part A, 6-13: part B, 14-19: part C, 20-23: background (zero)
    protos = [p[2]] * 6 + [p[0]] * 8 + [p[1]] * 6 + [torch.zeros(c)] * 4
    fmap = banded_map(protos, noise=0.01).unsqueeze(0)
    for fc in (False, True):
        for sc in (False, True):
            lab = spatial_cascaded_clustering(fmap, 4, 10.0, fc, sc)[0]
            body = lab[:, 1:7]
            assert (body[:6] == 0).all() and (body[6:14] == 1).all() and (body[14:20] == 2).all()
            assert (lab[20:] == 3).all() and (lab[:, 0] == 3).all() and (lab[:, 7] == 3).all()


def test_foreground_correction_recovers_regular_foreground():
    """Paper's foreground omission: a salient blob makes the 2-class split drop regular foreground."""
    c, h, w = 16, 24, 8
    g = torch.Generator().manual_seed(1)
    fmap = 0.05 * torch.rand(1, c, h, w, generator=g)  # background, small norm
    fmap[0, :, 2:22, 2:6] += 1.0 * F.normalize(torch.ones(c), dim=0).view(c, 1, 1)  # regular fg
    fmap[0, :, 8:10, 3:5] *= 12.0  # salient blob
    fg2 = foreground_mask(fmap, foreground_correction=False)[0].view(h, w)
    fg3 = foreground_mask(fmap, foreground_correction=True)[0].view(h, w)
    person = torch.zeros(h, w, dtype=torch.bool)
    person[2:22, 2:6] = True
    assert fg2.sum() == 4  # only the salient blob
    assert torch.equal(fg3, person)
    orig = spatial_cascaded_clustering(fmap, 4, 4.0, False, False)[0]
    corr = spatial_cascaded_clustering(fmap, 4, 4.0, True, False)[0]
    assert (orig != 3).sum() == 4 and torch.equal(corr != 3, person)


def test_space_correction_separates_far_regions_with_same_feature():
    """Paper's spatial confusion: head and shoes share a feature; only the space correction splits them."""
    c = 32
    a, t1, z = torch.eye(c)[0] * 5, torch.eye(c)[1] * 5, torch.zeros(c)
    protos = [a] * 4 + [t1] * 8 + [z] * 8 + [a] * 4  # head | torso | gap | shoes (same feature as head)
    fmap = banded_map(protos, noise=0.02, seed=2).unsqueeze(0)
    for fc in (False, True):
        plain = spatial_cascaded_clustering(fmap, 4, 10.0, fc, False)[0, :, 1:7]
        nospace = spatial_cascaded_clustering(fmap, 4, math.inf, fc, True)[0, :, 1:7]
        scc = spatial_cascaded_clustering(fmap, 4, 10.0, fc, True)[0, :, 1:7]
        for lab in (plain, nospace):  # some part mixes head and shoes pixels
            shared = set(lab[:4].flatten().tolist()) & set(lab[20:].flatten().tolist())
            assert shared
        assert (scc[:4] == 0).all() and (scc[4:12] == 1).all() and (scc[20:] == 2).all()
        assert (scc[12:20] == 3).all()


def test_eta_chebyshev_and_height_units():
    c = 32
    a, t1, z = torch.eye(c)[0] * 5, torch.eye(c)[1] * 5, torch.zeros(c)
    fmap = banded_map([a] * 4 + [t1] * 8 + [z] * 8 + [a] * 4, noise=0.02, seed=2).unsqueeze(0)
    ref = spatial_cascaded_clustering(fmap, 4, 10.0)
    assert torch.equal(ref, spatial_cascaded_clustering(fmap, 4, 10.0 / 24, eta_unit="height"))
    cheb = spatial_cascaded_clustering(fmap, 4, 10.0, spatial_metric="chebyshev")
    assert torch.equal(ref[0, :, 1:7], cheb[0, :, 1:7])
    with pytest.raises(ValueError, match="linkage"):
        spatial_cascaded_clustering(fmap, 4, 4.0, linkage="median")
    with pytest.raises(ValueError, match="eta"):
        spatial_cascaded_clustering(fmap, 4, 0.0)


def test_small_eta_keeps_merging_past_infinity():
    torch.manual_seed(6)
    fmap = torch.randn(3, 16, 8, 4)
    for linkage in ("average", "complete", "single", "ward"):
        lab = spatial_cascaded_clustering(fmap, 4, 0.5, linkage=linkage)  # no finite pair at all
        fg = foreground_mask(fmap)
        for i in range(3):
            assert lab[i].flatten()[fg[i]].unique().numel() == 3
            assert (lab[i].flatten()[~fg[i]] == 3).all()


@pytest.mark.parametrize("space", [False, True])
def test_fewer_foreground_points_than_parts(space):
    fmap = torch.zeros(2, 8, 6, 4)
    fmap[0, 0, 4, 1] = 3.0
    fmap[0, 1, 1, 2] = 3.0
    fmap[1, 2, 0, 0] = 1.0
    lab = spatial_cascaded_clustering(fmap, 5, 2.0, True, space)
    assert lab[0, 1, 2] == 0 and lab[0, 4, 1] == 1  # one part per point, top to bottom
    assert (lab[0] != 4).sum() == 2
    assert lab[1, 0, 0] == 0 and (lab[1] != 4).sum() == 1


def test_all_zero_maps_and_empty_batch():
    for fc in (False, True):
        for sc in (False, True):
            lab = spatial_cascaded_clustering(torch.zeros(3, 16, 8, 4), 4, 4.0, fc, sc)
            assert lab.dtype == torch.long and (lab == 3).all()
            empty = spatial_cascaded_clustering(torch.zeros(0, 16, 8, 4), 4, 4.0, fc, sc)
            assert empty.shape == (0, 8, 4)
    mixed = torch.randn(2, 16, 8, 4)
    mixed[1] = 0
    lab = spatial_cascaded_clustering(mixed, 4, 4.0)
    assert (lab[1] == 3).all() and (lab[0] != 3).any()
    with pytest.raises(ValueError, match="num_parts"):
        spatial_cascaded_clustering(mixed, 1, 4.0)
    with pytest.raises(ValueError, match="shape"):
        spatial_cascaded_clustering(mixed[0], 4, 4.0)


def test_batch_result_independent_of_batch_composition():
    torch.manual_seed(7)
    fmap = torch.randn(5, 32, 12, 4)
    full = spatial_cascaded_clustering(fmap, 4, 4.0)
    for i in range(5):
        assert torch.equal(full[i], spatial_cascaded_clustering(fmap[i : i + 1], 4, 4.0)[0])



@pytest.mark.parametrize("space", [False, True])
def test_given_foreground_replaces_step_one(space: bool) -> None:
    """Step 1's own mask passed in gives the same labels; a given mask is followed exactly (its cells are the
    foreground, the rest background), whatever the norms say."""
    torch.manual_seed(3)
    fmap = torch.randn(4, 16, 8, 4)
    own = foreground_mask(fmap, foreground_correction=space).view(4, 8, 4)
    ref = spatial_cascaded_clustering(fmap, 4, 4.0, space, space)
    assert torch.equal(spatial_cascaded_clustering(fmap, 4, 4.0, space, space, foreground=own), ref)
    given = torch.zeros(4, 8, 4, dtype=torch.bool)
    given[:, 2:7, 1:3] = True  # a body in the middle columns, as ground truth pooled to the grid would be
    lab = spatial_cascaded_clustering(fmap, 4, 4.0, space, space, foreground=given)
    assert torch.equal(lab != 3, given)
    with pytest.raises(ValueError, match="foreground"):
        spatial_cascaded_clustering(fmap, 4, 4.0, foreground=given.flatten(1))
    with pytest.raises(ValueError, match="foreground"):
        spatial_cascaded_clustering(fmap, 4, 4.0, foreground=given.float())


def test_foreground_from_cue_is_step_one_on_any_cue() -> None:
    torch.manual_seed(4)
    fmap = torch.randn(3, 8, 6, 4)
    for corr in (False, True):
        assert torch.equal(foreground_from_cue(fmap.norm(dim=1), corr),
                           foreground_mask(fmap, foreground_correction=corr).view(3, 6, 4))
    cue = torch.zeros(3, 6, 4)
    cue[:, 1:5, 1:3] = 5.0  # a high block on a flat field: the block is the foreground
    assert torch.equal(foreground_from_cue(cue, False), cue > 0)
    with pytest.raises(ValueError, match="non-negative"):
        foreground_from_cue(cue - 1.0)
    with pytest.raises(ValueError, match="shape"):
        foreground_from_cue(cue.flatten(1))

# ------------------------------------------------------------------------------------------ smoothing
def test_smooth_masks_literal_eq3():
    torch.manual_seed(8)
    prev = torch.rand(2, 4, 6, 3)
    labels = torch.randint(0, 4, (2, 6, 3))
    out = smooth_masks(prev, labels, 0.2)
    onehot = torch.zeros(2, 4, 6, 3)
    for b in range(2):
        for y in range(6):
            for x in range(3):
                onehot[b, labels[b, y, x], y, x] = 1.0
    assert torch.allclose(out, 0.2 * prev + 0.8 * onehot)
    assert torch.equal(labels_to_onehot(labels, 4), onehot)
    assert torch.allclose(smooth_masks(prev, onehot, 0.2), out)
    assert torch.equal(smooth_masks(None, labels, 0.2, num_parts=4), onehot)
    assert torch.equal(smooth_masks(prev, labels, 0.0), onehot)
    with pytest.raises(ValueError, match="gamma"):
        smooth_masks(prev, labels, 1.5)
    with pytest.raises(ValueError, match="shape"):
        smooth_masks(prev, torch.zeros(2, 5, 6, 3), 0.2)
    with pytest.raises(ValueError, match="range"):
        labels_to_onehot(labels + 1, 4)


def test_mask_momentum_boundary():
    assert mask_momentum(0) == 0.2 and mask_momentum(19) == 0.2
    assert mask_momentum(20) == 0.0 and mask_momentum(59) == 0.0
    assert mask_momentum(4, gamma=0.5, until=5) == 0.5 and mask_momentum(5, gamma=0.5, until=5) == 0.0


def test_eta_at_most_one_cell_forbids_every_pair_and_ignores_the_features() -> None:
    """With eta <= 1 grid cell every off-diagonal pair has D_s >= eta (Eq. 2), so step 2 never sees a
    finite feature distance: the split is a fixed function of the foreground mask (the ``eta-1`` rows of
    Fig. 5). Known answer for average linkage and a 16-cell foreground: the lowest-index tie-break chains
    14 cells into one part and leaves the last two cells as singletons."""
    from scwm.parsing.cascaded import batched_agglomerative, corrected_distance_matrix

    torch.manual_seed(0)
    h, w = 8, 4
    x = torch.randn(16, 32, h, w).abs()
    y = torch.randn(16, 32, h, w)
    y = y / y.norm(dim=1, keepdim=True) * x.norm(dim=1, keepdim=True)  # same norms, other directions
    assert torch.equal(spatial_cascaded_clustering(x, 4, eta=1.0), spatial_cascaded_clustering(y, 4, eta=1.0))
    assert not torch.equal(spatial_cascaded_clustering(x, 4, eta=2.0), spatial_cascaded_clustering(y, 4, eta=2.0))
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.reshape(1, -1), cols.reshape(1, -1)
    fg = (cols >= 1) & (cols <= 2)
    feats = torch.nn.functional.normalize(torch.randn(1, h * w, 8), dim=-1)
    labels = batched_agglomerative(corrected_distance_matrix(feats, rows, cols, 1.0), fg, 3)
    assert sorted(torch.bincount(labels[fg]).tolist()) == [1, 1, 14]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label vectors describe the same partition (labels may be permuted)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_far_pairs_feature_orders_merges_past_infinity_by_feature_distance() -> None:
    """``far_pairs="feature"`` gives a forbidden pair ``far_value + D_f`` (Eq. 2's infinity plus the
    feature distance). Checked against scikit-learn's average linkage on the same matrix, and by its
    known limits: with every pair forbidden (eta <= 1 cell) it is plain agglomerative clustering on D_f
    (eta = inf), with no pair forbidden it equals the default "constant" mode."""
    from scwm.parsing.cascaded import FAR_PAIRS, batched_agglomerative, corrected_distance_matrix

    assert FAR_PAIRS == ("constant", "feature")
    h, w = 8, 4
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.reshape(1, -1), cols.reshape(1, -1)
    fg = (cols >= 1) & (cols <= 2)
    gen = torch.Generator().manual_seed(8)
    feats = F.normalize(torch.randn(1, h * w, 8, generator=gen), dim=-1)
    plain = batched_agglomerative(corrected_distance_matrix(feats, rows, cols, math.inf), fg, 3)
    feat1 = corrected_distance_matrix(feats, rows, cols, 1.0, far_pairs="feature")
    assert feat1.dtype == torch.float64  # D_f is not rounded away next to far_value
    assert _same_partition(batched_agglomerative(feat1, fg, 3)[fg].numpy(), plain[fg].numpy())
    const1 = batched_agglomerative(corrected_distance_matrix(feats, rows, cols, 1.0), fg, 3)
    assert sorted(torch.bincount(const1[fg]).tolist()) == [1, 1, 14]  # the feature-free split, for contrast
    for eta in (2.0, 3.0):  # merges pass infinity here: compare with sklearn on the same matrix
        d = corrected_distance_matrix(feats, rows, cols, eta, far_pairs="feature")
        ours = batched_agglomerative(d, fg, 3)[fg].numpy()
        sub = d[0][fg[0]][:, fg[0]].numpy()
        ref = AgglomerativeClustering(n_clusters=3, metric="precomputed", linkage="average").fit_predict(sub)
        assert _same_partition(ours, ref)
        if eta == 2.0:  # and here the order of the merges past infinity changes the parts
            const = batched_agglomerative(corrected_distance_matrix(feats, rows, cols, eta), fg, 3)[fg].numpy()
            assert not _same_partition(ours, const)
        far = corrected_distance_matrix(feats, rows, cols, eta)
        assert torch.allclose(d.float()[far > 10], far[far > 10] + corrected_distance_matrix(
            feats, rows, cols, math.inf)[far > 10])
    big = 100.0  # no pair is forbidden: both modes are the plain clustering
    assert torch.equal(spatial_cascaded_clustering(feats.transpose(1, 2).reshape(1, 8, h, w), 4, eta=big),
                       spatial_cascaded_clustering(feats.transpose(1, 2).reshape(1, 8, h, w), 4, eta=big,
                                                   far_pairs="feature"))
    x = torch.randn(16, 32, h, w, generator=gen).abs()
    y = torch.randn(16, 32, h, w, generator=gen)
    y = y / y.norm(dim=1, keepdim=True) * x.norm(dim=1, keepdim=True)  # same norms, other directions
    a = spatial_cascaded_clustering(x, 4, eta=1.0, far_pairs="feature")
    assert torch.equal(a, spatial_cascaded_clustering(x, 4, eta=math.inf))  # eta <= 1: plain clustering
    assert not torch.equal(a, spatial_cascaded_clustering(y, 4, eta=1.0, far_pairs="feature"))  # features count
    with pytest.raises(ValueError, match="far_pairs"):
        spatial_cascaded_clustering(x, 4, far_pairs="nearest")
