"""Losses (Eq. 4-5, 10-11, 13-16) against literal equations computed with slow loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scwm.losses import (
    LossTerms,
    diversity_loss,
    pairwise_euclidean,
    parsing_loss,
    part_classification_loss,
    part_separation_loss,
    soft_triplet_loss,
    total_loss,
    wnce_loss,
)
from scwm.memory import WeightedMemory, difficulty_weights

B, P, D, C, TAU = 6, 3, 5, 4, 0.05
DT = torch.float64


def _feats(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gf = F.normalize(torch.randn(B, D, generator=g, dtype=DT), dim=1)
    pf = F.normalize(torch.randn(B, P, D, generator=g, dtype=DT), dim=2)
    gc = F.normalize(torch.randn(C, D, generator=g, dtype=DT), dim=1)
    pc = F.normalize(torch.randn(P, C, D, generator=g, dtype=DT), dim=2)
    labels = torch.tensor([0, 1, 1, 2, 3, 0])
    ap = torch.rand(B, P, generator=g, dtype=DT) * 0.9 + 0.05
    return gf, pf, gc, pc, labels, ap


def _log_softmax_at(logits: list[float], target: int) -> torch.Tensor:
    t = torch.tensor(logits, dtype=DT)
    return t[target] - torch.logsumexp(t, 0)


# ----------------------------------------------------------------------------------------- wNCE (Eq. 10)
def _wnce_literal_loop(gf, pf, gc, pc, labels, wg, wp):
    """Eq. 10 exactly as printed, per sample, averaged over the batch; parts averaged over P."""
    total = torch.zeros((), dtype=DT)
    for i in range(B):
        y = int(labels[i])
        num = wg[i] * torch.exp(gf[i] @ gc[y] / TAU)
        den = sum(torch.exp(gf[i] @ gc[j] / TAU) for j in range(C))
        term = -torch.log(num / den)
        part = 0.0
        for k in range(P):
            num_k = wp[i, k] * torch.exp(pf[i, k] @ pc[k, y] / TAU)
            den_k = sum(torch.exp(pf[i, k] @ pc[k, j] / TAU) for j in range(C))
            part = part + -torch.log(num_k / den_k)
        total = total + term + part / P
    return total / B


def _ce_i(gf_i, pf_i, gc, pc, y):
    g = -(gf_i @ gc[y] / TAU - torch.logsumexp(gf_i @ gc.t() / TAU, 0))
    p = [-(pf_i[k] @ pc[k, y] / TAU - torch.logsumexp(pf_i[k] @ pc[k].t() / TAU, 0)) for k in range(P)]
    return g, p


def test_unweighted_wnce_is_cluster_nce() -> None:
    gf, pf, gc, pc, labels, _ = _feats()
    loss = wnce_loss(gf, pf, labels, (gc, pc), tau=TAU)
    expected = F.cross_entropy(gf @ gc.t() / TAU, labels)
    expected = expected + sum(F.cross_entropy(pf[:, k] @ pc[k].t() / TAU, labels) for k in range(P)) / P
    assert torch.allclose(loss, expected)
    assert torch.allclose(wnce_loss(gf, None, labels, (gc, None)), F.cross_entropy(gf @ gc.t() / TAU, labels))
    ones = _wnce_literal_loop(gf, pf, gc, pc, labels, torch.ones(B, dtype=DT), torch.ones(B, P, dtype=DT))
    assert torch.allclose(loss, ones)
    mem = WeightedMemory(gc, pc, tau=TAU)
    assert torch.allclose(wnce_loss(gf, pf, labels, mem), loss)


def test_wnce_literal_form_matches_eq10_and_has_unweighted_gradient() -> None:
    gf, pf, gc, pc, labels, ap = _feats()
    wg, wp = difficulty_weights(ap.mean(1), ap)
    x_g, x_p = gf.clone().requires_grad_(True), pf.clone().requires_grad_(True)
    loss = wnce_loss(x_g, x_p, labels, (gc, pc), w_global=wg, w_parts=wp, literal=True)
    y_g, y_p = gf.clone().requires_grad_(True), pf.clone().requires_grad_(True)
    ref = _wnce_literal_loop(y_g, y_p, gc, pc, labels, wg, wp)
    assert torch.allclose(loss, ref)
    loss.backward()
    ref.backward()
    assert torch.allclose(x_g.grad, y_g.grad) and torch.allclose(x_p.grad, y_p.grad)
    z_g, z_p = gf.clone().requires_grad_(True), pf.clone().requires_grad_(True)
    wnce_loss(z_g, z_p, labels, (gc, pc)).backward()
    assert torch.allclose(x_g.grad, z_g.grad) and torch.allclose(x_p.grad, z_p.grad)
    # literal = unweighted + constant -log w terms
    const = -torch.log(wg).mean() - torch.log(wp).mean(0).mean()
    assert torch.allclose(loss, wnce_loss(gf, pf, labels, (gc, pc)) + const)


def test_wnce_intended_form_is_weighted_sum_and_gradient() -> None:
    gf, pf, gc, pc, labels, ap = _feats()
    raw_g, raw_p = 1.0 - ap.mean(1), ap  # unnormalised: wnce re-normalises (Eq. 8)
    x_g, x_p = gf.clone().requires_grad_(True), pf.clone().requires_grad_(True)
    loss = wnce_loss(x_g, x_p, labels, (gc, pc), w_global=raw_g, w_parts=raw_p)
    loss.backward()
    wg = raw_g / raw_g.sum()
    wp = raw_p / raw_p.sum(0)
    exp_loss = torch.zeros((), dtype=DT)
    grad_g, grad_p = torch.zeros_like(gf), torch.zeros_like(pf)
    for i in range(B):
        fi_g, fi_p = gf[i].clone().requires_grad_(True), pf[i].clone().requires_grad_(True)
        ce_g, ce_p = _ce_i(fi_g, fi_p, gc, pc, int(labels[i]))
        term = wg[i] * ce_g + sum(wp[i, k] * ce_p[k] for k in range(P)) / P
        exp_loss = exp_loss + term.detach()
        gg, gp = torch.autograd.grad(term, (fi_g, fi_p))
        grad_g[i], grad_p[i] = gg, gp
    assert torch.allclose(loss, exp_loss)
    assert torch.allclose(x_g.grad, grad_g) and torch.allclose(x_p.grad, grad_p)
    # the weights matter (the test can fail): differs from the unweighted loss
    assert not torch.allclose(loss, wnce_loss(gf, pf, labels, (gc, pc)))


# ------------------------------------------------------------------------------ part separation (Eq. 11)
def test_part_separation_matches_loop() -> None:
    gf, pf, gc, pc, labels, _ = _feats()
    x = pf.clone().requires_grad_(True)
    loss = part_separation_loss(x, labels, pc, tau=TAU)
    ref = torch.zeros((), dtype=DT)
    for i in range(B):
        y = int(labels[i])
        for k in range(P):
            logits = [float(pf[i, k] @ pc[j, y] / TAU) for j in range(P)]
            ref = ref - _log_softmax_at(logits, k)
    ref = ref / (B * P)
    assert torch.allclose(loss, ref)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    mem = WeightedMemory(gc, pc, tau=TAU)
    assert torch.allclose(part_separation_loss(pf, labels, mem), loss)


# ------------------------------------------------------------------------------------- parsing (Eq. 4)
def _probs_and_masks(h: int = 4, w: int = 3, seed: int = 0, ch: int = P + 1):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(2, ch, h, w, generator=g, dtype=DT), dim=1)
    masks = torch.softmax(2 * torch.randn(2, ch, h, w, generator=g, dtype=DT), dim=1)
    return probs, masks


def test_parsing_loss_matches_literal() -> None:
    probs, masks = _probs_and_masks()
    n, ch, h, w = probs.shape
    ref = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                ref += -sum(float(masks[b, c, y, x]) * math.log(float(probs[b, c, y, x])) for c in range(ch))
    ref /= n * h * w
    assert parsing_loss(probs, masks, eps=0.0).item() == pytest.approx(ref)
    assert parsing_loss(probs, masks).item() == pytest.approx(ref, rel=1e-4)
    # hard integer label maps == one-hot soft targets
    hard = masks.argmax(dim=1)
    onehot = F.one_hot(hard, ch).permute(0, 3, 1, 2).to(DT)
    assert torch.allclose(parsing_loss(probs, hard), parsing_loss(probs, onehot))


def test_parsing_loss_resizes_targets_and_masks() -> None:
    probs, _ = _probs_and_masks(h=4, w=3)
    _, big = _probs_and_masks(h=8, w=6, seed=1)
    n, ch, h, w = probs.shape
    # literal: each low-res pixel's target is the mean of its 2x2 block, renormalised
    ref = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                t = [float(big[b, c, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].mean()) for c in range(ch)]
                s = sum(t)
                ref += -sum(t[c] / s * math.log(float(probs[b, c, y, x])) for c in range(ch))
    assert parsing_loss(probs, big, eps=0.0).item() == pytest.approx(ref / (n * h * w))
    # validity mask: only valid pixels count
    valid = torch.zeros(n, h, w, dtype=torch.bool)
    valid[:, :2] = True
    sub = parsing_loss(probs[:, :, :2], big[:, :, :4], eps=0.0)
    assert parsing_loss(probs, big, eps=0.0, valid_mask=valid).item() == pytest.approx(sub.item())
    # upsampling path (targets smaller than predictions) runs and stays a proper distribution
    small = F.softmax(torch.randn(n, ch, 2, 2, dtype=DT), dim=1)
    assert torch.isfinite(parsing_loss(probs, small))
    with pytest.raises(ValueError):
        parsing_loss(probs, big[:, :2])


# ----------------------------------------------------------------------------------- diversity (Eq. 5)
def _diversity_loop(probs, maps: int) -> float:
    n, _, h, w = probs.shape
    total = 0.0
    for b in range(n):
        s = 0.0
        for i in range(maps - 1):
            for j in range(i + 1, maps):
                for y in range(h):
                    for x in range(w):
                        s += float(probs[b, i, y, x] * probs[b, j, y, x])
        total += 2.0 / (maps * (maps - 1)) * s
    return total / n


def test_diversity_loss_matches_double_loop() -> None:
    probs, _ = _probs_and_masks(h=3, w=2)
    n, ch, h, w = probs.shape
    literal = _diversity_loop(probs, ch)
    assert diversity_loss(probs, normalize=False).item() == pytest.approx(literal)
    assert diversity_loss(probs).item() == pytest.approx(literal / (h * w))  # default: mean over pixels
    fg_only = _diversity_loop(probs[:, :-1], ch - 1)
    assert diversity_loss(probs, include_background=False, normalize=False).item() == pytest.approx(fg_only)
    assert diversity_loss(probs[:, :1]).item() == 0.0
    x = probs.clone().requires_grad_(True)
    diversity_loss(x).backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------ part classification (Eq. 13-15)
def _classification_loop(ql, pl, labels, ap, beta, ls_eps=None, terms="both"):
    n, c = ql.shape
    p = pl.shape[1]
    total = 0.0
    for i in range(n):
        y = int(labels[i])
        if ap is None:
            omega = [1.0 / p] * p
        else:
            z = sum(math.exp(float(ap[i, k])) for k in range(p))
            omega = [math.exp(float(ap[i, k])) / z for k in range(p)]
        q_parts = [torch.softmax(pl[i, k], 0) for k in range(p)]
        yg = [
            beta * (cls == y) + (1 - beta) * sum(omega[k] * float(q_parts[k][cls]) for k in range(p))
            for cls in range(c)
        ]
        logq = torch.log_softmax(ql[i], 0)
        loss_g = -sum(yg[cls] * float(logq[cls]) for cls in range(c))
        loss_p = 0.0
        for k in range(p):
            a = (1 - ls_eps) if (ap is None or ls_eps is not None) else float(ap[i, k])
            if ap is None or ls_eps is not None:
                yk = [a * (cls == y) + ls_eps / c for cls in range(c)]
            else:
                yk = [a * (cls == y) + (1 - a) / c for cls in range(c)]
            logqk = torch.log_softmax(pl[i, k], 0)
            loss_p += -sum(yk[cls] * float(logqk[cls]) for cls in range(c))
        total += {"both": loss_g + loss_p / p, "global": loss_g, "parts": loss_p / p}[terms]
    return total / n


def _logits(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g, dtype=DT), torch.randn(B, P, C, generator=g, dtype=DT)


def test_part_classification_matches_eq13_15() -> None:
    _, _, _, _, labels, ap = _feats()
    ql, pl = _logits()
    got = part_classification_loss(ql, pl, labels, ap, beta=0.35)
    assert got.item() == pytest.approx(_classification_loop(ql, pl, labels, ap, 0.35))
    # PPLR's AALS (alpha CE + (1 - alpha) KL(uni || q)) differs by the constant (1 - alpha) log C
    aals = 0.0
    for k in range(P):
        logp = torch.log_softmax(pl[:, k], 1)
        ce = -logp.gather(1, labels[:, None]).squeeze(1)
        kl = F.kl_div(logp, torch.full_like(logp, 1.0 / C), reduction="none").sum(1)
        aals += (ap[:, k] * ce + (1 - ap[:, k]) * kl).mean()
    aals = aals / P
    part_term = part_classification_loss(ql, pl, labels, ap, beta=1.0) - F.cross_entropy(ql, labels)
    const = ((1 - ap) * math.log(C)).mean()
    assert part_term.item() == pytest.approx((aals + const).item())


def test_part_classification_halves_of_eq15() -> None:
    """``terms`` keeps one half of Eq. 15: the global term with its Eq. 14 target, or the part term of Eq. 13."""
    _, _, _, _, labels, ap = _feats()
    ql, pl = _logits(3)
    for terms in ("global", "parts"):
        got = part_classification_loss(ql, pl, labels, ap, beta=0.35, terms=terms)
        assert got.item() == pytest.approx(_classification_loop(ql, pl, labels, ap, 0.35, terms=terms))
    halves = sum(part_classification_loss(ql, pl, labels, ap, terms=t) for t in ("global", "parts"))
    assert halves.item() == pytest.approx(part_classification_loss(ql, pl, labels, ap).item())
    x = pl.clone().requires_grad_(True)
    part_classification_loss(ql.clone().requires_grad_(True), x, labels, ap, terms="global").backward()
    assert x.grad is None or not x.grad.any()  # the part ensemble of Eq. 14 is detached: no part gradient
    with pytest.raises(ValueError, match="terms"):
        part_classification_loss(ql, pl, labels, ap, terms="all")


def test_part_classification_label_smoothing_mode() -> None:
    _, _, _, _, labels, ap = _feats()
    ql, pl = _logits(1)
    got = part_classification_loss(ql, pl, labels, None)
    assert got.item() == pytest.approx(_classification_loop(ql, pl, labels, None, 0.35, ls_eps=0.1))
    warm = part_classification_loss(ql, pl, labels, ap, smoothing_only_epsilon=0.2)
    assert warm.item() == pytest.approx(_classification_loop(ql, pl, labels, ap, 0.35, ls_eps=0.2))


def test_part_classification_detaches_the_part_ensemble() -> None:
    _, _, _, _, labels, ap = _feats()
    ql, pl = _logits(2)
    x = pl.clone().requires_grad_(True)
    part_classification_loss(ql, x, labels, ap, beta=0.0).backward()
    y = pl.clone().requires_grad_(True)
    a = ap.unsqueeze(2)
    target = a * F.one_hot(labels, C).to(DT).unsqueeze(1) + (1 - a) / C
    (-(target * torch.log_softmax(y, 2)).sum(2)).mean().backward()  # part term only
    assert torch.allclose(x.grad, y.grad)


# ---------------------------------------------------------------------------------- total (Eq. 6, 12, 16)
def _total_inputs():
    gf, pf, gc, pc, labels, ap = _feats()
    probs, masks = _probs_and_masks()
    probs = torch.cat([probs, probs, probs])  # batch of 6
    masks = torch.cat([masks, masks, masks])
    ql, pl = _logits()
    leaves = {
        "global_feats": gf.clone().requires_grad_(True),
        "part_feats": pf.clone().requires_grad_(True),
        "part_probs": probs.clone().requires_grad_(True),
        "global_logits": ql.clone().requires_grad_(True),
        "part_logits": pl.clone().requires_grad_(True),
    }
    kw = dict(
        leaves, labels=labels, memory=WeightedMemory(gc, pc, tau=TAU), target_masks=masks, alpha_parts=ap
    )
    return kw, leaves


def test_total_loss_sums_enabled_terms_and_switches() -> None:
    kw, leaves = _total_inputs()
    total, terms = total_loss(LossTerms(), **kw)
    assert set(terms) == {"nce", "separation", "parsing", "diversity", "id"}
    assert torch.allclose(total.detach(), sum(terms.values()))
    ap, labels, mem = kw["alpha_parts"], kw["labels"], kw["memory"]
    wg, wp = difficulty_weights(ap.mean(1), ap)
    gf, pf = leaves["global_feats"], leaves["part_feats"]
    assert torch.allclose(terms["nce"], wnce_loss(gf, pf, labels, mem, wg, wp).detach())
    assert torch.allclose(terms["separation"], part_separation_loss(pf, labels, mem).detach())
    assert torch.allclose(terms["parsing"], parsing_loss(leaves["part_probs"], kw["target_masks"]).detach())
    assert torch.allclose(terms["diversity"], diversity_loss(leaves["part_probs"]).detach())
    ql, pl = leaves["global_logits"], leaves["part_logits"]
    assert torch.allclose(terms["id"], part_classification_loss(ql, pl, labels, ap).detach())
    total.backward()
    for name, t in leaves.items():
        assert t.grad is not None and torch.isfinite(t.grad).all(), name

    for off in ("separation", "parsing", "diversity", "part_classification"):
        kw2, _ = _total_inputs()
        _, terms2 = total_loss(LossTerms(**{off: False}), **kw2)
        assert {"part_classification": "id"}.get(off, off) not in terms2
    kw4, _ = _total_inputs()
    _, only_parts = total_loss(LossTerms(id_terms="parts"), **kw4)
    assert torch.allclose(only_parts["id"], part_classification_loss(ql, pl, labels, ap, terms="parts").detach())
    kw3, _ = _total_inputs()
    _, plain = total_loss(LossTerms(nce_weighted=False), **kw3)
    assert torch.allclose(plain["nce"], wnce_loss(gf, pf, labels, mem).detach())
    _, glob = total_loss(LossTerms(nce_weighted=False, nce_parts=False), **kw3)
    assert torch.allclose(glob["nce"], F.cross_entropy(gf @ mem.global_centroids.t() / TAU, labels).detach())
    _, summed = total_loss(LossTerms(diversity_sum=True), **kw3)  # Eq. 5 as printed: sum over the pixels
    assert torch.allclose(summed["diversity"], diversity_loss(leaves["part_probs"], normalize=False).detach())
    weighted, _ = total_loss(LossTerms(lambda_diversity=3.0), **kw3)
    assert torch.allclose(weighted.detach(), sum(terms.values()) + 2 * terms["diversity"])
    off_all = LossTerms(
        nce=False, separation=False, parsing=False, diversity=False, part_classification=False
    )
    zero, none = total_loss(off_all, **kw3)
    assert zero.item() == 0.0 and none == {}


def test_total_loss_reports_missing_inputs() -> None:
    kw, _ = _total_inputs()
    kw.pop("alpha_parts")
    with pytest.raises(ValueError, match="alpha_parts"):
        total_loss(LossTerms(), **kw)
    kw["alpha_parts"] = None
    kw.pop("part_probs")
    with pytest.raises(ValueError, match="part_probs"):
        total_loss(LossTerms(nce_weighted=False), **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_losses_on_cuda_match_cpu_without_host_sync() -> None:
    kw, _ = _total_inputs()
    cpu_total, _ = total_loss(LossTerms(), **kw)
    kw_gpu = {
        k: (v.detach().cuda().requires_grad_(v.requires_grad) if torch.is_tensor(v) else v)
        for k, v in kw.items()
    }
    kw_gpu["memory"] = kw["memory"].to("cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu_total, _ = total_loss(LossTerms(), **kw_gpu)
        gpu_total.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(gpu_total.detach().cpu(), cpu_total.detach())


# ------------------------------------------------------------------------- PPLR's soft triplet (baseline)
def _soft_triplet_loop(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MMT's softmax-triplet with hard labels, anchor by anchor: -log(e^{d_n} / (e^{d_p} + e^{d_n})) with the
    farthest same-label sample (the anchor included) and the nearest other-label sample; 0 without negatives."""
    n = len(x)
    total = torch.zeros((), dtype=x.dtype)
    for i in range(n):
        d = [torch.linalg.vector_norm(x[i] - x[j]) for j in range(n)]
        pos = [d[j] for j in range(n) if labels[j] == labels[i]]
        neg = [d[j] for j in range(n) if labels[j] != labels[i]]
        if not neg:
            continue
        d_p, d_n = max(pos), min(neg)
        total = total - torch.log(torch.exp(d_n) / (torch.exp(d_p) + torch.exp(d_n)))
    return total / n


def test_soft_triplet_matches_brute_force_and_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # pid 2 has no other positive: d_p = 0
    for scale in (1.0, 6.0):  # unit-scale and BN-neck-scale embeddings (no saturation either way)
        x = (torch.randn(8, 5, generator=g, dtype=DT) * scale).requires_grad_(True)
        got = soft_triplet_loss(x, labels)
        ref = _soft_triplet_loop(x, labels)
        assert got.item() == pytest.approx(ref.item(), abs=1e-6)  # the 1e-12 clamp: self-distance 1e-6, not 0
        (g_got,) = torch.autograd.grad(got, x)
        (g_ref,) = torch.autograd.grad(ref, x)
        assert torch.allclose(g_got, g_ref, atol=1e-7)
    assert torch.allclose(pairwise_euclidean(x.detach()), torch.cdist(x.detach(), x.detach()), atol=1e-6)
    # separated identities: the loss falls towards 0; one identity only: no negatives, loss 0, finite gradient
    far = torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 0.0], [50.1, 0.0]], dtype=DT)
    assert soft_triplet_loss(far, torch.tensor([0, 0, 1, 1])).item() < 1e-20
    assert soft_triplet_loss(far, torch.tensor([1, 0, 1, 0])).item() > 40  # wrong grouping: ~ d_p - d_n
    one = far.clone().requires_grad_(True)
    loss = soft_triplet_loss(one, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(one.grad).all()
    with pytest.raises(ValueError, match="expected embeddings"):
        soft_triplet_loss(far, torch.zeros(3, dtype=torch.long))


def test_soft_triplet_switch_changes_the_total() -> None:
    kw, leaves = _total_inputs()
    base, terms = total_loss(LossTerms(), **kw)
    assert "soft_triplet" not in terms
    kw2, leaves2 = _total_inputs()
    with_tri, terms2 = total_loss(LossTerms(soft_triplet=True, lambda_soft_triplet=0.5), **kw2)
    expected = soft_triplet_loss(leaves["global_feats"].detach(), kw["labels"])
    assert torch.allclose(terms2["soft_triplet"], expected) and expected.item() > 0
    assert torch.allclose(with_tri.detach(), base.detach() + 0.5 * expected)
    with_tri.backward()
    assert torch.isfinite(leaves2["global_feats"].grad).all()
    # explicit embeddings (PPLR: the BN-neck output before normalisation) replace the global features
    kw3, _ = _total_inputs()
    emb = torch.randn(B, 7, dtype=DT, generator=torch.Generator().manual_seed(5)) * 4
    _, terms3 = total_loss(LossTerms(soft_triplet=True), embeddings=emb, **kw3)
    assert torch.allclose(terms3["soft_triplet"], soft_triplet_loss(emb, kw["labels"]))
    # soft_triplet_normalized: the L2-normalised global features again, whatever embeddings are given
    kw5, _ = _total_inputs()
    _, terms5 = total_loss(LossTerms(soft_triplet=True, soft_triplet_normalized=True), embeddings=emb, **kw5)
    assert torch.allclose(terms5["soft_triplet"], expected)
    assert not torch.allclose(terms5["soft_triplet"], terms3["soft_triplet"])
    # only the triplet: the total is that term alone
    kw4, _ = _total_inputs()
    only = LossTerms(nce=False, separation=False, parsing=False, diversity=False, part_classification=False,
                     soft_triplet=True)
    total4, terms4 = total_loss(only, **kw4)
    assert set(terms4) == {"soft_triplet"} and torch.allclose(total4.detach(), expected)


def test_soft_triplet_flag_reaches_the_terms_and_keeps_old_fingerprints() -> None:
    from training.config import preset_config

    base = preset_config("synthetic", {"loss": {"soft_triplet": False}})  # the paper's Eq. 16
    assert not base.loss.terms().soft_triplet and preset_config("synthetic").loss.terms().soft_triplet
    on = preset_config("synthetic", {"loss": {"soft_triplet": True, "lambda_soft_triplet": 0.5}})
    assert on.loss.terms().soft_triplet and on.loss.terms().lambda_soft_triplet == 0.5
    recorded = base.fingerprint_dict()["loss"]  # runs recorded before the switch existed keep their fingerprint
    assert "soft_triplet" not in recorded and "lambda_soft_triplet" not in recorded
    assert on.fingerprint() != base.fingerprint()
    normed = preset_config("synthetic", {"loss": {"soft_triplet_normalized": True}})
    assert normed.loss.terms().soft_triplet_normalized and not on.loss.terms().soft_triplet_normalized
    assert "soft_triplet_normalized" not in preset_config("synthetic").fingerprint_dict()["loss"]
    stripes = preset_config("synthetic", {"cluster": {"part_source": "stripes"}, "loss": {"soft_triplet": True}})
    assert stripes.loss.terms(parts_learned=stripes.uses_parsing).soft_triplet
