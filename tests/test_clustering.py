"""Tests for scwm.clustering: sparse Jaccard vs the dense reference, DBSCAN labels, Eq. 7 agreement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN

from scwm.clustering import cross_agreement, jaccard_distance, pseudo_labels, relabel_by_first_member
from tests.reference.reference_jaccard import reference_jaccard_distance

# Reference: literal dense transcription of Cluster Contrast's compute_jaccard_distance (see the module).
ref_compute_jaccard_distance = reference_jaccard_distance


def clustered(n_ids: int = 12, per_id: int = 15, dim: int = 32, noise: float = 0.35, seed: int = 0):
    """Unit-norm features: random identity centres on the sphere plus Gaussian noise, shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.integers(max(2, per_id - 6), per_id + 7, size=n_ids)
    ids = np.repeat(np.arange(n_ids), sizes)
    x = centres[ids] + noise * rng.standard_normal((ids.size, dim)) / np.sqrt(dim)
    # a few isolated points that should become outliers
    x = np.concatenate([x, rng.standard_normal((8, dim))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(len(x))
    return x[perm].astype(np.float32)


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    return clustered()


@pytest.mark.parametrize("k1,k2", [(20, 6), (30, 6), (30, 1), (13, 3), (7, 2)])
def test_jaccard_matches_dense_reference(feats: np.ndarray, k1: int, k2: int) -> None:
    ref = ref_compute_jaccard_distance(feats, k1=k1, k2=k2)
    got = jaccard_distance(feats, k1=k1, k2=k2, search_batch=37)
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32 and got.shape == ref.shape
    dense = got.toarray()
    stored = np.zeros(ref.shape, dtype=bool)
    stored[np.repeat(np.arange(got.shape[0]), np.diff(got.indptr)), got.indices] = True
    dense[~stored] = 1.0  # missing entries mean exactly 1.0
    np.testing.assert_allclose(dense, ref, atol=2e-6, rtol=0)
    # sparsity: exactly the pairs the reference puts below 1 are stored, plus the diagonal
    assert np.array_equal(stored, (ref < 1.0) | np.eye(len(ref), dtype=bool))
    assert np.all(got.diagonal() == 0.0) and stored.diagonal().all()


def test_jaccard_torch_input_and_unnormalised(feats: np.ndarray) -> None:
    ref = jaccard_distance(feats, k1=20, k2=6)
    got = jaccard_distance(torch.from_numpy(feats * 3.0).double(), k1=20, k2=6, device="cpu")
    assert (ref != got).nnz == 0 or abs(ref - got).max() < 1e-6


def test_jaccard_small_n_clamps_with_warning() -> None:
    x = clustered(n_ids=2, per_id=4, seed=3)[:9]
    with pytest.warns(UserWarning, match="clamping k1"):
        got = jaccard_distance(x, k1=30, k2=6)
    ref = ref_compute_jaccard_distance(x, k1=9, k2=6)
    dense = np.ones_like(ref)
    coo = got.tocoo()
    dense[coo.row, coo.col] = coo.data
    np.testing.assert_allclose(dense, ref, atol=2e-6)


@pytest.mark.parametrize("bad", [dict(k1=0), dict(k2=0)])
def test_jaccard_bad_arguments(feats: np.ndarray, bad: dict) -> None:
    with pytest.raises(ValueError, match="k1 and k2"):
        jaccard_distance(feats, **bad)
    with pytest.raises(ValueError, match="dimensions"):
        jaccard_distance(feats[0])
    with pytest.raises(ValueError, match="NaN"):
        jaccard_distance(np.full((5, 3), np.nan, dtype=np.float32), k1=3, k2=1)


@pytest.mark.parametrize("eps,min_samples", [(0.5, 4), (0.6, 4), (0.3, 2)])
def test_pseudo_labels_match_sklearn_on_dense_reference(
    feats: np.ndarray, eps: float, min_samples: int
) -> None:
    ref_dist = ref_compute_jaccard_distance(feats, k1=30, k2=6)
    ref = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(ref_dist)
    got = pseudo_labels(feats, eps=eps, min_samples=min_samples, k1=30, k2=6)
    assert got.dtype == np.int64
    assert np.array_equal(got, relabel_by_first_member(ref))
    assert got.max() >= 3 and (got == -1).any()  # the data set really has clusters and outliers
    # numbering rule: cluster c's smallest member precedes cluster c+1's
    firsts = [np.flatnonzero(got == c)[0] for c in range(got.max() + 1)]
    assert firsts == sorted(firsts)
    # precomputed sparse input gives the same labels
    assert np.array_equal(pseudo_labels(jaccard_distance(feats), eps=eps, min_samples=min_samples), got)


def test_pseudo_labels_explicit_zeros_are_neighbours() -> None:
    # Hand-made precomputed sparse distance: samples 0-3 at explicit distance 0 of each other
    # (diagonal and off-diagonal zeros stored), 4-5 at 0.2, everything else missing (= 1.0).
    n = 7
    rows, cols, vals = [], [], []
    for i in range(4):
        for j in range(4):
            rows.append(i), cols.append(j), vals.append(0.0)
    for i, j in [(4, 5), (5, 4)]:
        rows.append(i), cols.append(j), vals.append(0.2)
    for i in range(4, n):
        rows.append(i), cols.append(i), vals.append(0.0)
    dist = sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(n, n))
    assert dist.nnz == 16 + 2 + 3  # the zeros really are stored
    dense = np.ones((n, n), np.float32)
    dense[rows, cols] = vals
    for eps, min_samples in [(0.1, 4), (0.3, 2), (0.1, 2)]:
        ref = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dense)
        got = pseudo_labels(dist, eps=eps, min_samples=min_samples)
        assert np.array_equal(got, relabel_by_first_member(ref)), (eps, min_samples)
    assert list(pseudo_labels(dist, eps=0.1, min_samples=4)) == [0, 0, 0, 0, -1, -1, -1]
    assert list(pseudo_labels(dist, eps=0.3, min_samples=2)) == [0, 0, 0, 0, 1, 1, -1]


def test_pseudo_labels_all_outliers() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 64)).astype(np.float32)  # no structure at all
    got = pseudo_labels(x, eps=0.05, min_samples=4, k1=10, k2=3)
    assert got.dtype == np.int64 and np.all(got == -1)
    eye = sp.csr_matrix((np.zeros(5, np.float32), np.arange(5), np.arange(6)), shape=(5, 5))
    assert np.all(pseudo_labels(eye, eps=0.5, min_samples=2) == -1)


def test_pseudo_labels_bad_arguments(feats: np.ndarray) -> None:
    with pytest.raises(ValueError, match="eps=1.0"):
        pseudo_labels(feats, eps=1.0)
    with pytest.raises(ValueError, match="min_samples"):
        pseudo_labels(feats, eps=0.5, min_samples=0)
    with pytest.raises(ValueError, match="square"):
        pseudo_labels(sp.csr_matrix((3, 4), dtype=np.float32), eps=0.5)


def test_relabel_invariant_to_label_ids() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 6, size=50)
    expected = relabel_by_first_member(labels)
    for _ in range(5):
        perm = rng.permutation(6)
        permuted = np.where(labels >= 0, perm[np.clip(labels, 0, None)] + 100, -1)
        assert np.array_equal(relabel_by_first_member(permuted), expected)
    assert np.array_equal(relabel_by_first_member(np.array([5, 5, -1, 2, 5, 2, 9])), [0, 0, -1, 1, 0, 1, 2])
    assert np.array_equal(relabel_by_first_member(np.array([-1, -1])), [-1, -1])


# --------------------------------------------------------------------------------------------------
# Cross agreement (Eq. 7)


def slow_cross_agreement(g: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Obvious per-sample set implementation (PPLR compute_cross_agreement, self excluded)."""

    def knn(x: np.ndarray) -> list[set[int]]:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        out = []
        for i in range(len(x)):
            order = [j for j in np.argsort(-sim[i], kind="stable") if j != i]
            out.append(set(order[:k]))
        return out

    kg = knn(g)
    res = np.zeros((len(g), p.shape[1]))
    for j in range(p.shape[1]):
        kp = knn(p[:, j])
        for i in range(len(g)):
            res[i, j] = len(kg[i] & kp[i]) / len(kg[i] | kp[i])
    return res


def test_cross_agreement_matches_slow_sets() -> None:
    rng = np.random.default_rng(0)
    g = clustered(n_ids=8, per_id=10, dim=24, seed=2)
    n = len(g)
    p = np.stack([g + s * rng.standard_normal(g.shape) for s in (0.05, 0.3, 1.0)], axis=1).astype(np.float32)
    alpha_p, alpha_g = cross_agreement(g, p, k=7, batch=13)
    ref = slow_cross_agreement(g, p, k=7)
    assert alpha_p.shape == (n, 3) and alpha_g.shape == (n,)
    np.testing.assert_allclose(alpha_p.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(alpha_g.numpy(), ref.mean(1), atol=1e-6)
    assert alpha_p[:, 0].mean() > alpha_p[:, 2].mean()  # noisier parts agree less


def test_cross_agreement_hand_made() -> None:
    rng = np.random.default_rng(4)
    g = rng.standard_normal((30, 8)).astype(np.float32)
    # identical global and part features -> perfect agreement; scaling does not matter (cosine)
    alpha_p, alpha_g = cross_agreement(torch.from_numpy(g), torch.from_numpy(np.stack([g, 2 * g], 1)), k=5)
    assert torch.all(alpha_p == 1.0) and torch.all(alpha_g == 1.0)
    # points on a line of angles: neighbours of sample i are known exactly
    n, k = 12, 3
    ang = np.linspace(0, 1.1, n)  # < pi/2 apart, nearest by angle
    gl = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    # part feature of sample 0 moved next to sample 11: its kNN {10, 9, 8} vs global {1, 2, 3} -> m=0
    pt = gl.copy()
    pt[0] = gl[11] * 1.0 + np.array([1e-3, -1e-3], np.float32)
    alpha_p, _ = cross_agreement(gl, pt[:, None, :], k=k)
    assert alpha_p[0, 0] == 0.0
    # sample 5: global kNN {4, 6, 3 or 7}; part identical except sample 0 is far -> unchanged sets
    assert alpha_p[5, 0] == 1.0
    # overlap m known: sample 11 global kNN {10, 9, 8}; part kNN {0, 10, 9} -> m=2 -> 2/(6-2)
    assert alpha_p[11, 0] == pytest.approx(2 / (2 * k - 2))


def test_cross_agreement_bad_arguments() -> None:
    g = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="k=5"):
        cross_agreement(g, np.ones((5, 2, 4), np.float32), k=5)
    with pytest.raises(ValueError, match="expected \\(N, P, D\\)"):
        cross_agreement(g, np.ones((5, 4, 2), np.float32), k=2)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))],
)
def test_device_param_honoured(feats: np.ndarray, device: str) -> None:
    ref = jaccard_distance(feats, k1=20, k2=6)
    got = jaccard_distance(torch.from_numpy(feats), k1=20, k2=6, device=device)
    assert abs(ref - got).max() < 1e-5
    parts = np.stack([feats, feats[::-1].copy()], 1)
    a_p, a_g = cross_agreement(feats, parts, k=5, device=device)
    assert a_p.device.type == device and a_g.device.type == device
    b_p, _ = cross_agreement(feats, parts, k=5)
    assert torch.equal(a_p.cpu(), b_p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = pseudo_labels(torch.from_numpy(feats), eps=0.5, device=device)
    assert np.array_equal(labels, pseudo_labels(feats, eps=0.5))
