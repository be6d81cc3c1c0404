"""Weighted memory (Eq. 8-9) against slow per-cluster loops of the literal equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scwm.memory import WeightedMemory, difficulty_weights

B, P, D, C = 12, 3, 8, 5


def _data(seed: int = 0, b: int = B, with_outlier: bool = True):
    g = torch.Generator().manual_seed(seed)
    gf = F.normalize(torch.randn(b, D, generator=g, dtype=torch.float64), dim=1)
    pf = F.normalize(torch.randn(b, P, D, generator=g, dtype=torch.float64), dim=2)
    labels = torch.tensor([0, 0, 1, 1, 1, 3, 3, 0, 1, 3, 3, 0][:b])
    if with_outlier:
        labels[4] = -1
    ap = torch.rand(b, P, generator=g, dtype=torch.float64)
    return gf, pf, labels, ap


def _memory(strategy: str = "average", seed: int = 1, **kw) -> WeightedMemory:
    g = torch.Generator().manual_seed(seed)
    gc = F.normalize(torch.randn(C, D, generator=g, dtype=torch.float64), dim=1)
    pc = F.normalize(torch.randn(P, C, D, generator=g, dtype=torch.float64), dim=2)
    return WeightedMemory(gc, pc, update_strategy=strategy, **kw)


def test_difficulty_weights_match_eq8_loop() -> None:
    _, _, _, ap = _data()
    ag = ap.mean(dim=1)
    wg, wp = difficulty_weights(ag, ap)
    total_g = sum(1.0 - float(a) for a in ag)
    for i in range(B):
        assert wg[i].item() == pytest.approx((1.0 - ag[i].item()) / total_g)
        for k in range(P):
            col = sum(float(ap[j, k]) for j in range(B))
            assert wp[i, k].item() == pytest.approx(ap[i, k].item() / col)
    assert torch.allclose(wg.sum(), torch.tensor(1.0, dtype=wg.dtype))
    assert torch.allclose(wp.sum(0), torch.ones(P, dtype=wp.dtype))
    # all-zero column stays finite and zero
    wg0, wp0 = difficulty_weights(torch.ones(4), torch.zeros(4, 2))
    assert torch.all(wg0 == 0) and torch.all(wp0 == 0)
    with pytest.raises(ValueError):
        difficulty_weights(torch.ones(4), torch.ones(3, 2))


def test_from_features_cluster_means_exclude_outliers() -> None:
    gf, pf, labels, _ = _data()
    mem = WeightedMemory.from_features(gf, pf, labels)
    assert mem.global_centroids.shape == (4, D) and mem.part_centroids.shape == (P, 4, D)
    for j in range(4):
        members = [i for i in range(B) if labels[i].item() == j]
        if not members:
            assert torch.all(mem.global_centroids[j] == 0)
            continue
        mean_g = sum(gf[i] for i in members) / len(members)
        assert torch.allclose(mem.global_centroids[j], mean_g / mean_g.norm())
        for k in range(P):
            mean_p = sum(pf[i, k] for i in members) / len(members)
            assert torch.allclose(mem.part_centroids[k, j], mean_p / mean_p.norm())
    # the outlier (index 4) must not contribute: changing it leaves the memory unchanged
    gf2, pf2 = gf.clone(), pf.clone()
    gf2[4] = -gf2[4]
    pf2[4] = -pf2[4]
    mem2 = WeightedMemory.from_features(gf2, pf2, labels)
    assert torch.equal(mem.global_centroids, mem2.global_centroids)
    assert torch.equal(mem.part_centroids, mem2.part_centroids)
    assert WeightedMemory.from_features(gf, pf, labels, num_clusters=6).num_clusters == 6


def _loop_update(c_old: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, weight_of, m: float):
    """Eq. 9 per cluster: c <- normalize(m c + (1 - m) sum_i w_i f_i) for clusters present in the batch."""
    c_new = c_old.clone()
    for j in range(c_old.shape[0]):
        members = [i for i in range(len(labels)) if labels[i].item() == j]
        if not members:
            continue
        agg = sum(weight_of(i, members) * feats[i] for i in members)
        v = m * c_old[j] + (1 - m) * agg
        c_new[j] = v / v.norm()
    return c_new


def test_update_average_matches_loop() -> None:
    gf, pf, labels, _ = _data()
    mem = _memory("average")
    g0, p0 = mem.global_centroids.clone(), mem.part_centroids.clone()
    mem.update(gf, pf, labels)
    w = lambda i, members: 1.0 / len(members)  # noqa: E731
    assert torch.allclose(mem.global_centroids, _loop_update(g0, gf, labels, w, 0.2))
    for k in range(P):
        assert torch.allclose(mem.part_centroids[k], _loop_update(p0[k], pf[:, k], labels, w, 0.2))
    # clusters 2 and 4 are absent from the batch: untouched
    for j in (2, 4):
        assert torch.equal(mem.global_centroids[j], g0[j])
        assert torch.equal(mem.part_centroids[:, j], p0[:, j])


def test_update_average_equals_cluster_contrast_cm_for_single_samples() -> None:
    """With one sample per cluster the mean form is exactly CM's sequential per-sample update."""
    gf, pf, _, _ = _data()
    labels = torch.tensor([0, 1, 3])
    mem = _memory("average")
    g0 = mem.global_centroids.clone()
    mem.update(gf[:3], pf[:3], labels)
    for x, y in zip(gf[:3], labels.tolist(), strict=True):  # CM.backward
        g0[y] = 0.2 * g0[y] + 0.8 * x
        g0[y] /= g0[y].norm()
    assert torch.allclose(mem.global_centroids, g0)


def test_update_hardest_matches_cm_hard_loop() -> None:
    gf, pf, labels, _ = _data()
    mem = _memory("hardest")
    g0, p0 = mem.global_centroids.clone(), mem.part_centroids.clone()
    mem.update(gf, pf, labels)

    def expected(c_old, feats):
        c_new = c_old.clone()
        for j in range(C):
            members = [i for i in range(B) if labels[i].item() == j]
            if not members:
                continue
            sims = [float(feats[i] @ c_old[j]) for i in members]
            hard = members[min(range(len(members)), key=lambda t: sims[t])]
            v = 0.2 * c_old[j] + 0.8 * feats[hard]
            c_new[j] = v / v.norm()
        return c_new

    assert torch.allclose(mem.global_centroids, expected(g0, gf))
    for k in range(P):
        assert torch.allclose(mem.part_centroids[k], expected(p0[k], pf[:, k]))


@pytest.mark.parametrize("normalization", ["cluster", "batch"])
def test_update_weighted_matches_loop(normalization: str) -> None:
    gf, pf, labels, ap = _data()
    ag = ap.mean(dim=1) * 0.9
    mem = _memory("weighted", weight_normalization=normalization)
    g0, p0 = mem.global_centroids.clone(), mem.part_centroids.clone()
    mem.update(gf, pf, labels, alpha_global=ag, alpha_parts=ap)
    valid = [i for i in range(B) if labels[i].item() >= 0]

    def make_weight(raw):
        def weight_of(i, members):
            pool = members if normalization == "cluster" else valid
            return raw[i] / sum(raw[t] for t in pool)

        return weight_of

    raw_g = [1.0 - float(a) for a in ag]  # Eq. 8: hard global features weigh more
    assert torch.allclose(mem.global_centroids, _loop_update(g0, gf, labels, make_weight(raw_g), 0.2))
    for k in range(P):
        raw_p = [float(a) for a in ap[:, k]]  # Eq. 8: reliable parts weigh more
        exp_k = _loop_update(p0[k], pf[:, k], labels, make_weight(raw_p), 0.2)
        assert torch.allclose(mem.part_centroids[k], exp_k)


def test_weighted_with_uniform_alpha_equals_average_and_default_alpha_global() -> None:
    gf, pf, labels, ap = _data()
    a = _memory("average")
    w = _memory("weighted")
    a.update(gf, pf, labels)
    w.update(gf, pf, labels, alpha_global=torch.full((B,), 0.3), alpha_parts=torch.full((B, P), 0.5))
    assert torch.allclose(a.global_centroids, w.global_centroids)
    assert torch.allclose(a.part_centroids, w.part_centroids)
    w1, w2 = _memory("weighted"), _memory("weighted")
    w1.update(gf, pf, labels, alpha_parts=ap)
    w2.update(gf, pf, labels, alpha_global=ap.mean(1), alpha_parts=ap)
    assert torch.equal(w1.global_centroids, w2.global_centroids)


def test_batch_normalisation_shrinks_the_effective_step() -> None:
    """Measurement: B = 16 x 4, uniform weights, literal batch-wide Eq. 8 -> the batch gets 20 %, not 80 %."""
    d = 4
    labels = torch.arange(16).repeat_interleave(4)
    gc = torch.zeros(16, d, dtype=torch.float64)
    gc[:, 0] = 1.0
    feats = torch.zeros(64, d, dtype=torch.float64)
    feats[:, 1] = 1.0
    alpha = torch.full((64, 1), 0.5, dtype=torch.float64)
    steps = {}
    for norm in ("cluster", "batch"):
        mem = WeightedMemory(gc, gc.unsqueeze(0), update_strategy="weighted", weight_normalization=norm)
        mem.update(feats, feats.unsqueeze(1), labels, alpha_parts=alpha)
        c = mem.global_centroids[0]
        steps[norm] = float(c[1] / (c[0] + c[1]))  # share of the batch in the new centroid
    assert steps["cluster"] == pytest.approx(0.8)
    assert steps["batch"] == pytest.approx(0.2)


def test_logits_and_gradients_only_wrt_features() -> None:
    gf, pf, labels, _ = _data()
    mem = _memory()
    gf = gf.clone().requires_grad_(True)
    pf = pf.clone().requires_grad_(True)
    lg, lp = mem.logits(gf, pf)
    assert lg.shape == (B, C) and lp.shape == (B, P, C)
    assert torch.allclose(lg, gf @ mem.global_centroids.t() / 0.05)
    for k in range(P):
        assert torch.allclose(lp[:, k], pf[:, k] @ mem.part_centroids[k].t() / 0.05)
    (lg.sum() + lp.sum()).backward()
    assert torch.isfinite(gf.grad).all() and torch.isfinite(pf.grad).all()
    assert not mem.global_centroids.requires_grad and not mem.part_centroids.requires_grad


def test_update_accepts_grad_features_and_rejects_bad_input() -> None:
    gf, pf, labels, ap = _data()
    mem = _memory("weighted")
    mem.update(gf.clone().requires_grad_(True), pf.clone().requires_grad_(True), labels, alpha_parts=ap)
    assert torch.allclose(mem.global_centroids.norm(dim=1), torch.ones(C, dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha_parts"):
        mem.update(gf, pf, labels)
    with pytest.raises(ValueError, match="update_strategy"):
        _memory("median")
    with pytest.raises(ValueError):
        mem.update(gf[:, :3], pf, labels, alpha_parts=ap)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("strategy", ["average", "hardest", "weighted"])
def test_update_on_cuda_without_host_sync(strategy: str) -> None:
    gf, pf, labels, ap = _data()
    cpu = _memory(strategy)
    gpu = _memory(strategy).to("cuda")
    cpu.update(gf, pf, labels, alpha_parts=ap)
    args = (gf.cuda(), pf.cuda(), labels.cuda())
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu.update(*args, alpha_parts=ap.cuda())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(gpu.global_centroids.cpu(), cpu.global_centroids)
    assert torch.allclose(gpu.part_centroids.cpu(), cpu.part_centroids)
