"""Parsing metrics: confusion-based mIoU, oracle labels, AUCs and map similarity, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scwm.parsing import (
    ParsingConfusion,
    horizontal_stripes,
    parsing_scores,
)


def same_partition(a, b) -> bool:
    a, b = list(np.asarray(a).ravel()), list(np.asarray(b).ravel())
    return len(set(zip(a, b, strict=True))) == len(set(a)) == len(set(b))



# ------------------------------------------------------------------------------------------ metrics
def test_confusion_hand_computed():
    # pred at 2x2 (background = 2), GT at 4x4: each pred cell covers a 2x2 block
    pred = torch.tensor([[[0, 1], [2, 1]]])
    gt = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 2, 0], [0, 1, 0, 2]]])
    acc = ParsingConfusion(3, 3, pred_background=2)
    acc.update(pred, gt)
    s = acc.scores()
    expect = np.array([[0, 4, 0], [2, 0, 6], [3, 1, 0]])
    assert (s["confusion"] == expect).all()
    # fg: pred fg = 12 pixels, gt fg = 11, inter = 10
    assert s["fg_iou"] == pytest.approx(10 / 13)
    # IoU(p0,g1) = 4/(4+5-4) = 0.8, IoU(p1,g2) = 6/(8+6-6) = 0.75
    assert s["assignment"] == {0: 1, 1: 2}
    assert s["part_iou"] == pytest.approx({1: 0.8, 2: 0.75})
    assert s["part_miou"] == pytest.approx(0.775)


def test_confusion_matches_naive_per_image_loop():
    torch.manual_seed(9)
    pred = torch.randint(0, 4, (6, 8, 4))
    gt = torch.randint(0, 6, (6, 32, 16))
    acc = ParsingConfusion(4, 6, pred_background=3)
    acc.update(pred[:2], gt[:2])
    acc.update(pred[2:], gt[2:])
    naive = np.zeros((4, 6), dtype=np.int64)
    for b in range(6):
        for y in range(32):
            for x in range(16):
                naive[pred[b, y // 4, x // 4], gt[b, y, x]] += 1
    assert (acc.confusion == naive).all()
    # more GT parts (5) than predicted parts (3): 2 GT parts count 0
    s = acc.scores()
    assert len(s["assignment"]) == 3 and sum(v == 0.0 for v in s["part_iou"].values()) >= 2
    assert s["part_miou"] == pytest.approx(sum(s["part_iou"].values()) / 5)


def test_dataset_level_assignment_penalises_per_image_permutation():
    gt = torch.tensor([[[1, 1], [2, 2]], [[1, 1], [2, 2]]])
    consistent = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [1, 1]]])
    swapped = torch.tensor([[[0, 0], [1, 1]], [[1, 1], [0, 0]]])
    assert parsing_scores(consistent, gt, 3, 3, 2)["part_miou"] == pytest.approx(1.0)
    per_image = [parsing_scores(swapped[i : i + 1], gt[i : i + 1], 3, 3, 2)["part_miou"] for i in range(2)]
    assert per_image == pytest.approx([1.0, 1.0])
    assert parsing_scores(swapped, gt, 3, 3, 2)["part_miou"] == pytest.approx(1 / 3)


def test_horizontal_stripes():
    s = horizontal_stripes(2, 8, 3, 4)
    assert s.shape == (2, 8, 3)
    assert s[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    gt = torch.zeros(2, 8, 3, dtype=torch.long)
    gt[:, 2:] = 1
    sc = parsing_scores(s, gt, 4, 2, pred_background=None)
    assert sc["fg_iou"] == pytest.approx(18 / 24)
    with pytest.raises(ValueError, match="pred_labels"):
        parsing_scores(s + 4, gt, 4, 2, None)


# ------------------------------------------------------------------------------------------ oracle masks
def _oracle_reference(gt: np.ndarray, num_parts: int, h: int, w: int) -> np.ndarray:
    """Per-cell majority vote written as loops (independent of the vectorized pooling)."""
    from scwm.parsing import GT_PART_GROUPS

    groups = GT_PART_GROUPS[min(num_parts - 1, 5)]
    lut = {lab: num_parts - 1 for lab in range(6)}
    for part, labels in enumerate(groups):
        for lab in labels:
            lut[lab] = part
    b, hh, ww = gt.shape
    ch, cw = hh // h, ww // w
    out = np.zeros((b, h, w), dtype=np.int64)
    for i in range(b):
        for r in range(h):
            for c in range(w):
                cell = [lut[int(v)] for v in gt[i, r * ch:(r + 1) * ch, c * cw:(c + 1) * cw].ravel()]
                counts = np.bincount(cell, minlength=num_parts)
                out[i, r, c] = int(np.argmax(counts))  # first maximum = lower index
    return out


def test_oracle_labels_known_layout() -> None:
    from scwm.parsing import oracle_part_labels

    gt = torch.zeros(1, 16, 8, dtype=torch.long)
    gt[0, 0:4, 4:] = 1  # head
    gt[0, 4:8, 4:] = 2  # upper
    gt[0, 8:12, 4:] = 3  # lower
    gt[0, 12:16, 4:] = 4  # shoes
    gt[0, 4:8, 0:4] = 5  # accessory joins the upper part when l = 4
    lab = oracle_part_labels(gt, 4, (4, 2))
    assert lab.tolist() == [[[3, 0], [0, 0], [3, 1], [3, 2]]]
    lab6 = oracle_part_labels(gt, 6, (4, 2))  # five foreground parts: head, upper, accessory, lower, shoes
    assert lab6.tolist() == [[[5, 0], [2, 1], [5, 3], [5, 4]]]


def test_oracle_labels_match_loop_reference() -> None:
    from scwm.parsing import oracle_part_labels

    gen = torch.Generator().manual_seed(3)
    gt = torch.randint(0, 6, (5, 32, 16), generator=gen)
    for num_parts in (2, 3, 4, 5, 6, 7):
        got = oracle_part_labels(gt, num_parts, (8, 4)).numpy()
        np.testing.assert_array_equal(got, _oracle_reference(gt.numpy(), num_parts, 8, 4))


def test_oracle_labels_tie_prefers_foreground_and_rejects_bad_input() -> None:
    from scwm.parsing import oracle_part_labels

    gt = torch.zeros(1, 2, 2, dtype=torch.long)
    gt[0, 0, :] = 2  # half upper body, half background in the single cell
    assert oracle_part_labels(gt, 4, (1, 1)).item() == 0
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        oracle_part_labels(torch.full((1, 4, 4), 6), 4, (2, 2))
    with pytest.raises(ValueError, match="num_parts"):
        oracle_part_labels(torch.zeros(1, 4, 4, dtype=torch.long), 1, (2, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        oracle_part_labels(torch.zeros(4, 4, dtype=torch.long), 4, (2, 2))


def test_binary_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from scwm.parsing import binary_auc

    gen = torch.Generator().manual_seed(5)
    for _ in range(5):
        scores = torch.randint(0, 7, (300,), generator=gen).float() / 7  # many ties
        labels = torch.rand(300, generator=gen) < 0.3
        assert binary_auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    assert binary_auc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert binary_auc(torch.tensor([0.9, 0.1]), torch.tensor([False, True])) == 0.0
    assert binary_auc(torch.tensor([0.5, 0.5]), torch.tensor([False, True])) == 0.5
    assert math.isnan(binary_auc(torch.tensor([0.1, 0.2]), torch.tensor([True, True])))
    with pytest.raises(ValueError, match="differ in size"):
        binary_auc(torch.zeros(3), torch.zeros(2, dtype=torch.bool))


def test_norm_cue_cells_known_answer() -> None:
    from scwm.parsing import binary_auc, norm_cue_cells

    gt = torch.zeros(2, 16, 8, dtype=torch.long)
    gt[:, :, 4:] = 2  # right half body
    fmap = torch.ones(2, 3, 4, 2)
    fmap[:, :, :, 1] = 2.0  # the body column responds twice as strongly
    norms, body = norm_cue_cells(fmap, gt)
    assert norms.shape == body.shape == (2, 4, 2)  # the feature grid, for within_position_auc
    assert body[:, :, 1].all() and not body[:, :, 0].any()
    torch.testing.assert_close(norms[:, :, 0], torch.full((2, 4), 0.5))
    assert binary_auc(norms, body) == 1.0
    assert binary_auc(-norms, body) == 0.0  # a background-dominated map inverts the cue


def test_part_map_similarity_matches_loop_and_known_answers() -> None:
    from scwm.parsing import part_map_similarity

    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(3, 5, 6, 4), dim=1)
    got = part_map_similarity(probs)
    for b in range(3):
        fg = probs[b, :-1].flatten(1)
        sims = [F.cosine_similarity(fg[i], fg[j], dim=0) for i in range(4) for j in range(4) if i < j]
        assert got[b].item() == pytest.approx(torch.stack(sims).mean().item(), abs=1e-6)
    with_bg = part_map_similarity(probs, include_background=True)
    full = probs[0].flatten(1)
    ref = torch.stack([F.cosine_similarity(full[i], full[j], dim=0) for i in range(5) for j in range(i + 1, 5)])
    assert with_bg[0].item() == pytest.approx(ref.mean().item(), abs=1e-6)
    # collapse (every part the same map, whatever its scale) -> 1; disjoint parts -> 0; an empty part -> 0
    same = torch.rand(1, 1, 4, 2).expand(1, 4, 4, 2) * torch.tensor([1.0, 2.0, 0.5, 1.0]).view(1, 4, 1, 1)
    assert part_map_similarity(same).item() == pytest.approx(1.0, abs=1e-6)
    disjoint = F.one_hot(torch.arange(8).view(1, 4, 2) % 4, 4).permute(0, 3, 1, 2).float()
    assert part_map_similarity(disjoint).item() == 0.0
    empty = torch.zeros(1, 3, 2, 2)
    empty[0, 0] = 1.0
    assert part_map_similarity(empty).item() == 0.0
    assert math.isnan(part_map_similarity(torch.ones(2, 2, 3, 3)).tolist()[0])
    with pytest.raises(ValueError, match="part_probs"):
        part_map_similarity(torch.ones(2, 3, 3))


def test_within_position_auc_matches_per_position_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    from scwm.parsing import within_position_auc

    gen = torch.Generator().manual_seed(11)
    body = torch.rand(200, 4, 3, generator=gen) < torch.tensor([0.02, 0.5, 0.3])  # column 0 almost never body
    norms = torch.rand(200, 4, 3, generator=gen) + 0.3 * body
    ref = [roc_auc_score(body[:, i, j].numpy(), norms[:, i, j].numpy())
           for i in range(4) for j in range(3) if 0.1 <= body[:, i, j].float().mean() <= 0.9]
    auc, n = within_position_auc(norms, body)
    assert n == len(ref) == 8
    assert auc == pytest.approx(sum(ref) / len(ref), abs=1e-12)


def test_within_position_auc_separates_position_from_content() -> None:
    from scwm.parsing import binary_auc, within_position_auc

    gen = torch.Generator().manual_seed(3)
    body = torch.zeros(400, 6, 4, dtype=torch.bool)
    body[:, :, 1:3] = torch.rand(400, 6, 2, generator=gen) < 0.7  # bodies in the centre columns
    body[:, :, 0] = torch.rand(400, 6, generator=gen) < 0.2
    profile = torch.tensor([0.2, 1.0, 1.0, 0.2])[None, None, :]
    positional = profile.expand(400, 6, 4)  # a fixed spatial profile, blind to content
    assert binary_auc(positional, body) > 0.75  # the pooled AUC is fooled by the layout ...
    assert within_position_auc(positional, body)[0] == pytest.approx(0.5)  # ... this is not (all ties)
    content = body.float() + 0.01 * torch.rand(400, 6, 4, generator=gen)
    assert within_position_auc(content, body)[0] == pytest.approx(1.0)
    assert math.isnan(within_position_auc(positional, torch.ones_like(body))[0])
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        within_position_auc(positional.flatten(), body.flatten())
    with pytest.raises(ValueError, match="min_share"):
        within_position_auc(positional, body, min_share=0.5)
