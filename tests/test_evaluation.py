"""Tests for scwm.evaluation: hand-computed cases, literal reference transcriptions, chunked == dense."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from scwm.evaluation import (
    RankResult,
    chunk_size_for_budget,
    evaluate_features,
    evaluate_rank,
    pairwise_distance,
    re_ranking,
)
from scwm.evaluation.rank import rank_chunk

# --------------------------------------------------------------------------------------------------
# Literal transcriptions of the references (kept as close to the originals as possible).
# --------------------------------------------------------------------------------------------------

# fmt: off


def ref_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """fast-reid ``fastreid/evaluation/rank.py`` ``eval_market1501`` (JDAI-CV/fast-reid), which is
    torchreid ``torchreid/metrics/rank.py`` ``eval_market1501`` (KaiyangZhou/deep-person-reid) plus the
    mINP lines (``pos_idx`` ... ``all_INP``). Returns (cmc, mAP, mINP)."""
    num_q, num_g = distmat.shape

    if num_g < max_rank:
        max_rank = num_g
        print('Note: number of gallery samples is quite small, got {}'.format(num_g))  # noqa: UP032

    indices = np.argsort(distmat, axis=1)

    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)

    # compute cmc curve for each query
    all_cmc = []
    all_AP = []
    all_INP = []
    num_valid_q = 0.  # number of valid query

    for q_idx in range(num_q):
        # get query pid and camid
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]

        # remove gallery samples that have the same pid and camid with query
        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)

        # compute cmc curve
        raw_cmc = matches[q_idx][keep]  # binary vector, positions with value 1 are correct matches
        if not np.any(raw_cmc):
            # this condition is true when query identity does not appear in gallery
            continue

        cmc = raw_cmc.cumsum()

        pos_idx = np.where(raw_cmc == 1)
        max_pos_idx = np.max(pos_idx)
        inp = cmc[max_pos_idx] / (max_pos_idx + 1.0)
        all_INP.append(inp)

        cmc[cmc > 1] = 1

        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.

        # compute average precision
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        AP = tmp_cmc.sum() / num_rel
        all_AP.append(AP)

    assert num_valid_q > 0, 'Error: all query identities do not appear in gallery'

    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    mAP = np.mean(all_AP)
    mINP = np.mean(all_INP)

    return all_cmc, mAP, mINP


def ref_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """torchreid ``torchreid/utils/rerank.py`` ``re_ranking`` (KaiyangZhou/deep-person-reid; Zhong et
    al.'s person-re-ranking code, distance-matrix version by Houjing Huang), transcribed literally."""
    original_dist = np.concatenate(
        [
            np.concatenate([q_q_dist, q_g_dist], axis=1),
            np.concatenate([q_g_dist.T, g_g_dist], axis=1)
        ],
        axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(
        1. * original_dist / np.max(original_dist, axis=0)
    )
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    query_num = q_g_dist.shape[0]
    gallery_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    all_num = gallery_num

    for i in range(all_num):
        # k-reciprocal neighbors
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[
                candidate, :int(np.around(k1 / 2.)) + 1]
            candidate_backward_k_neigh_index = initial_rank[
                candidate_forward_k_neigh_index, :int(np.around(k1 / 2.)) + 1]
            fi_candidate = np.where(
                candidate_backward_k_neigh_index == candidate
            )[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[
                fi_candidate]
            if len(
                np.
                intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)
            ) > 2. / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )

        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1. * weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)

    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = []
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2. - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    del original_dist
    del V
    del jaccard_dist
    final_dist = final_dist[:query_num, query_num:]
    return final_dist
# fmt: on


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def random_case(seed, num_q=30, num_g=90, num_ids=12, num_cams=4):
    rng = np.random.default_rng(seed)
    distmat = rng.random((num_q, num_g))
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    return distmat, q_pids, g_pids, q_camids, g_camids


def clustered_features(seed, num_q=40, num_g=150, dim=16, num_ids=10, num_cams=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_ids, dim))
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q = centers[q_pids] + 0.8 * rng.standard_normal((num_q, dim))
    g = centers[g_pids] + 0.8 * rng.standard_normal((num_g, dim))
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    return q.astype(dtype), g.astype(dtype), q_pids, g_pids, q_cams, g_cams


def assert_same_result(a: RankResult, b: RankResult) -> None:
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == b.mAP
    assert a.mINP == b.mINP
    assert a.num_valid_queries == b.num_valid_queries


# --------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------

# Gallery (pid, cam): g0 (1,0) g1 (1,1) g2 (2,1) g3 (1,2) g4 (3,0) g5 (2,2)
HAND_G_PIDS = np.array([1, 1, 2, 1, 3, 2])
HAND_G_CAMS = np.array([0, 1, 1, 2, 0, 2])
# q0 (pid 1, cam 0): g0 is junk; ranked kept list g2 g4 g5 g1 g3 -> hits at ranks 4, 5.
#   AP = (1/4 + 2/5) / 2 = 0.325, INP = 2/5, first hit at rank 4.
# q1 (pid 2, cam 1): g2 is junk; g5 ranked first -> AP = 1, INP = 1, first hit at rank 1.
# q2 (pid 3, cam 0): its only gallery entry g4 is junk -> no valid match, skipped.
HAND_DIST = np.array(
    [
        [0.1, 0.5, 0.2, 0.9, 0.3, 0.4],
        [0.3, 0.2, 0.05, 0.6, 0.7, 0.1],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.6],
    ]
)
HAND_Q_PIDS = np.array([1, 2, 3])
HAND_Q_CAMS = np.array([0, 1, 0])


def test_hand_computed_case():
    res = evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=5)
    assert res.num_valid_queries == 2
    assert res.num_queries == 3
    np.testing.assert_allclose(res.cmc, [0.5, 0.5, 0.5, 1.0, 1.0])
    assert res.mAP == pytest.approx((0.325 + 1.0) / 2, abs=1e-15)
    assert res.mINP == pytest.approx((0.4 + 1.0) / 2, abs=1e-15)
    assert res.rank1 == 0.5 and res.rank(4) == 1.0
    cmc, mAP, mINP = ref_eval_market1501(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5)
    np.testing.assert_allclose(res.cmc, cmc, rtol=1e-6)
    assert res.mAP == pytest.approx(mAP, abs=1e-12) and res.mINP == pytest.approx(mINP, abs=1e-12)


def test_same_camera_removal_changes_result():
    # Moving g0 to camera 1 makes it a true match for q0 at rank 1.
    g_cams = HAND_G_CAMS.copy()
    g_cams[0] = 1
    res = evaluate_rank(HAND_DIST[:1], HAND_Q_PIDS[:1], HAND_G_PIDS, HAND_Q_CAMS[:1], g_cams, max_rank=6)
    # kept list g0 g2 g4 g5 g1 g3: hits at 1, 5, 6 -> AP = (1 + 2/5 + 3/6) / 3, INP = 3/6
    assert res.mAP == pytest.approx((1 + 0.4 + 0.5) / 3, abs=1e-15)
    assert res.mINP == pytest.approx(0.5, abs=1e-15)
    assert res.rank1 == 1.0


def test_ties_broken_by_gallery_index():
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids, g_cams = np.array([2, 1, 2, 1]), np.array([1, 1, 1, 1])
    res = evaluate_rank(np.zeros((1, 4)), q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # order g0 g1 g2 g3 -> hits at ranks 2 and 4
    np.testing.assert_allclose(res.cmc, [0, 1, 1, 1])
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2) and res.mINP == pytest.approx(0.5)
    # reversing the gallery puts the hits at ranks 1 and 3
    rev = evaluate_rank(np.zeros((1, 4)), q_pids, g_pids[::-1], q_cams, g_cams, max_rank=4)
    assert rev.rank1 == 1.0 and rev.mAP == pytest.approx((1 + 2 / 3) / 2)
    # partial ties: equal distance 0.5 for g0 (non-match) and g1 (match), g2 match nearer
    d = np.array([[0.5, 0.5, 0.1, 0.9]])
    res = evaluate_rank(d, q_pids, np.array([2, 1, 1, 3]), q_cams, g_cams, max_rank=4)
    # order g2 g0 g1 g3 -> hits at 1 and 3
    assert res.mAP == pytest.approx((1 + 2 / 3) / 2) and res.mINP == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_search_ranking_equals_stable_sort_with_heavy_ties(seed):
    # quantized distances (many ties, some +inf): the searchsorted ranking must equal a stable argsort
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(seed, num_q=25, num_g=70, num_ids=5)
    d = torch.from_numpy(np.round(distmat * 4) / 4)
    d[d > 0.9] = float("inf")
    args = [torch.from_numpy(a) for a in (q_pids, q_camids, g_pids, g_camids)]
    fast = rank_chunk(d, *args)
    slow = rank_chunk(d, *args, use_sort=True)
    for name in ("valid", "first_rank", "ap", "inp"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    # and the metrics equal the reference's when its sort is made stable the same way
    res = evaluate_rank(d, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    dn = d.numpy()
    order = np.argsort(dn, axis=1, kind="stable")
    g_rank = np.empty_like(order)
    np.put_along_axis(g_rank, order, np.arange(dn.shape[1])[None].repeat(dn.shape[0], 0), axis=1)
    cmc, mAP, mINP = ref_eval_market1501(g_rank.astype(float), q_pids, g_pids, q_camids, g_camids, 10)
    np.testing.assert_allclose(res.cmc, cmc, rtol=1e-6)
    assert res.mAP == pytest.approx(mAP, abs=1e-12) and res.mINP == pytest.approx(mINP, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Random cases against the reference transcription
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_matches_reference(seed):
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(seed)
    res = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20)
    cmc, mAP, mINP = ref_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, 20)
    assert res.cmc.shape == (20,)
    np.testing.assert_allclose(res.cmc, cmc, rtol=1e-6)
    assert res.mAP == pytest.approx(mAP, abs=1e-12)
    assert res.mINP == pytest.approx(mINP, abs=1e-12)
    # torch input (float32 tensor, so ranks come from the float32 values) gives the same numbers
    d32 = distmat.astype(np.float32)
    res_t = evaluate_rank(torch.from_numpy(d32), torch.from_numpy(q_pids), g_pids, q_camids, g_camids, 20)
    cmc32, mAP32, mINP32 = ref_eval_market1501(d32, q_pids, g_pids, q_camids, g_camids, 20)
    np.testing.assert_allclose(res_t.cmc, cmc32, rtol=1e-6)
    assert res_t.mAP == pytest.approx(mAP32, abs=1e-12)


def test_skipped_queries_and_small_chunks_match_reference():
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(11, num_q=50, num_g=60, num_ids=40)
    res = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    cmc, mAP, mINP = ref_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, 10)
    assert 0 < res.num_valid_queries < 50
    np.testing.assert_allclose(res.cmc, cmc, rtol=1e-6)
    assert res.mAP == pytest.approx(mAP, abs=1e-12) and res.mINP == pytest.approx(mINP, abs=1e-12)
    # a budget of one row per chunk gives exactly the same result
    tiny = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10, memory_budget_bytes=1)
    assert_same_result(res, tiny)


def test_gallery_smaller_than_max_rank():
    rng = np.random.default_rng(3)
    distmat = rng.random((5, 8))
    q_pids, g_pids = rng.integers(0, 3, 5), rng.integers(0, 3, 8)
    q_cams, g_cams = np.zeros(5, int), np.ones(8, int)  # no junk, so the reference has no ragged rows
    with pytest.warns(UserWarning, match="max_rank=50"):
        res = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    cmc, mAP, mINP = ref_eval_market1501(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    assert res.cmc.shape == (8,) == cmc.shape
    np.testing.assert_allclose(res.cmc, cmc, rtol=1e-6)
    assert res.mAP == pytest.approx(mAP) and res.mINP == pytest.approx(mINP)
    assert res.cmc[-1] == 1.0


def test_short_kept_list_is_padded_with_ones():
    # 6 gallery entries, q0 and q1 each lose one junk entry: kept lists of 5 < max_rank 6.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # num_g == max_rank: no warning
        res = evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=6)
    np.testing.assert_allclose(res.cmc, [0.5, 0.5, 0.5, 1.0, 1.0, 1.0])


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(np.ones((2, 3)), [0, 1], [5, 6, 7], [0, 0], [1, 1, 1], max_rank=3)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.ones(3), [0], [0, 1, 2], [0], [1, 1, 1]), "distmat must be 2-D"),
        ((np.ones((2, 3)), [0], [0, 1, 2], [0, 0], [1, 1, 1]), "q_pids has length 1 but there are 2"),
        ((np.ones((2, 3)), [0, 1], [0, 1], [0, 0], [1, 1, 1]), "g_pids has length 2 but there are 3"),
        ((np.ones((2, 3)), [0, 1], [0, 1, 2], [0, 0], [1, 1]), "g_camids has length 2"),
        ((np.ones((2, 3)), [0, 1], [0, 1, 2], [[0, 0]], [1, 1, 1]), "q_camids must be 1-D"),
        ((np.ones((2, 3)), [0.5, 1], [0, 1, 2], [0, 0], [1, 1, 1]), "q_pids must hold integers"),
        ((np.full((1, 2), np.nan), [0], [0, 1], [0], [1, 1]), "NaN"),
    ],
)
def test_evaluate_rank_errors(args, match):
    with pytest.raises(ValueError, match=match):
        evaluate_rank(*args, max_rank=1)


def test_bad_max_rank_and_rank_k():
    with pytest.raises(ValueError, match="max_rank must be a positive integer, got 0"):
        evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=0)
    res = evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=5)
    with pytest.raises(ValueError, match=r"rank k must be an integer in \[1, 5\], got 6"):
        res.rank(6)


def test_as_dict_is_json_fractions():
    res = evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=5)
    d = json.loads(json.dumps(res.as_dict()))
    assert d["mAP"] == pytest.approx(0.6625) and d["mINP"] == pytest.approx(0.7)
    assert d["rank1"] == 0.5 and d["rank5"] == 1.0 and "rank10" not in d
    assert d["cmc"] == [0.5, 0.5, 0.5, 1.0, 1.0] and d["num_valid_queries"] == 2


# --------------------------------------------------------------------------------------------------
# Chunked feature evaluation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunked_equals_dense(metric, dtype):
    q, g, qp, gp, qc, gc = clustered_features(5, dtype=dtype)
    dense = evaluate_rank(pairwise_distance(q, g, metric), qp, gp, qc, gc, max_rank=30)
    for chunk in (1, 7, len(q), len(q) + 13):
        res = evaluate_features(q, g, qp, gp, qc, gc, max_rank=30, metric=metric, chunk_size=chunk)
        assert_same_result(res, dense)
    by_budget = evaluate_features(
        torch.from_numpy(q),
        torch.from_numpy(g),
        qp,
        gp,
        qc,
        gc,
        max_rank=30,
        metric=metric,
        memory_budget_bytes=1,
        device="cpu",
    )
    assert_same_result(by_budget, dense)


def test_chunked_exact_integer_features():
    # integer-valued float32 features: every squared distance is exact, so rows are bitwise identical
    rng = np.random.default_rng(8)
    q = rng.integers(-3, 4, (25, 12)).astype(np.float32)
    g = rng.integers(-3, 4, (70, 12)).astype(np.float32)
    qp, gp = rng.integers(0, 6, 25), rng.integers(0, 6, 70)
    qc, gc = rng.integers(0, 3, 25), rng.integers(0, 3, 70)
    d = cdist(q.astype(np.float64), g.astype(np.float64))  # many exact ties among integer distances
    dense = evaluate_rank(d, qp, gp, qc, gc, max_rank=10)
    for chunk in (1, 4, 100):
        res = evaluate_features(q, g, qp, gp, qc, gc, max_rank=10, metric="euclidean", chunk_size=chunk)
        np.testing.assert_allclose(res.cmc, dense.cmc, rtol=0, atol=0)
        assert res.mAP == pytest.approx(dense.mAP, abs=1e-15)


def test_pairwise_distance_formulas():
    q, g, *_ = clustered_features(2, num_q=5, num_g=9)
    np.testing.assert_allclose(pairwise_distance(q, g, "euclidean").numpy(), cdist(q, g), atol=1e-10)
    np.testing.assert_allclose(pairwise_distance(q, g, "cosine").numpy(), cdist(q, g, "cosine"), atol=1e-12)


def test_chunk_size_for_budget():
    assert chunk_size_for_budget(82161, 1 << 30) == (1 << 30) // (82161 * 36)
    assert chunk_size_for_budget(82161, 10) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "manhattan"}, "metric must be one of"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
    ],
)
def test_evaluate_features_errors(kwargs, match):
    q, g, qp, gp, qc, gc = clustered_features(1, num_q=4, num_g=10)
    with pytest.raises(ValueError, match=match):
        evaluate_features(q, g, qp, gp, qc, gc, max_rank=5, **kwargs)


def test_evaluate_features_shape_errors():
    q, g, qp, gp, qc, gc = clustered_features(1, num_q=4, num_g=10)
    with pytest.raises(ValueError, match="different feature dims: 16 vs 15"):
        evaluate_features(q, g[:, :15], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="g_pids has length 9 but there are 10 gallery"):
        evaluate_features(q, g, qp, gp[:9], qc, gc)
    with pytest.raises(ValueError, match="q_feats must be 2-D"):
        evaluate_features(q[0], g, qp, gp, qc, gc)


# --------------------------------------------------------------------------------------------------
# Re-ranking
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k1", "k2", "lam"), [(20, 6, 0.3), (5, 3, 0.0), (4, 1, 0.5)])
def test_re_ranking_matches_reference(k1, k2, lam):
    rng = np.random.default_rng(k1 + k2)
    q = rng.standard_normal((12, 6))
    g = rng.standard_normal((33, 6))
    q_g, q_q, g_g = cdist(q, g), cdist(q, q), cdist(g, g)
    ours = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    ref = ref_re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert ours.shape == ref.shape == (12, 33) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_evaluate_features_rerank():
    q, g, qp, gp, qc, gc = clustered_features(4, num_q=15, num_g=50)
    res = evaluate_features(q, g, qp, gp, qc, gc, max_rank=10, metric="euclidean", rerank=True)
    d = lambda a, b: pairwise_distance(a, b, "euclidean").numpy()  # noqa: E731
    expect = evaluate_rank(re_ranking(d(q, g), d(q, q), d(g, g)), qp, gp, qc, gc, max_rank=10)
    assert_same_result(res, expect)
    plain = evaluate_features(q, g, qp, gp, qc, gc, max_rank=10, metric="euclidean")
    assert plain.mAP != res.mAP


def test_re_ranking_shape_errors():
    with pytest.raises(ValueError, match=r"q_q_dist must have shape \(2, 2\)"):
        re_ranking(np.ones((2, 3)), np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"g_g_dist must have shape \(3, 3\)"):
        re_ranking(np.ones((2, 3)), np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="k1 must be a positive integer"):
        re_ranking(np.ones((2, 3)), np.ones((2, 2)), np.ones((3, 3)), k1=0)
