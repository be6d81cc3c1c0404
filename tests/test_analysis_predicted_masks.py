"""Predicted-mask benchmark: statistics of a model's part head on a tiny world, checked independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.analyses.predicted_masks import main, score_model
from scwm.data.synthetic import generate
from scwm.models import ModelSpec, save_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate("tiny", tmp_path_factory.mktemp("w") / "tiny", seed=0, progress=False)


def test_scores_a_model_tree(tiny: Path, tmp_path: Path) -> None:
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    net = spec.build().eval()
    with torch.no_grad():  # a part head that puts all mass on part 2 everywhere: fully collapsed maps
        net.part_head.weight.zero_()
        net.part_head.bias.copy_(torch.tensor([0.0, 30.0, 0.0, 0.0]))
    run = tmp_path / "runs" / "t1-wm-parsing" / "seed0"
    run.mkdir(parents=True)
    save_checkpoint(run / "model.pt", net, spec)
    res = main(["--runs", str(tmp_path / "runs"), "--experiments", "t1-wm-parsing", "t2-oracle", "--seeds", "0",
                "--data-root", str(tiny), "--max-images", "20", "--out", str(tmp_path / "r.json"),
                "--markdown", str(tmp_path / "r.md")])
    assert set(res) == {"t1-wm-parsing"}  # t2-oracle has no model: skipped
    r = res["t1-wm-parsing"]["0"]
    assert r["images"] == 20
    assert r["argmax_share"] == pytest.approx([0.0, 1.0, 0.0, 0.0])
    assert r["mass"][1] == pytest.approx(1.0, abs=1e-6)
    assert r["fg_iou"] < 1.0 and 0.0 <= r["part_miou"] <= 1.0 and 0.0 <= r["norm_auc"] <= 1.0
    assert r["eq5"] == pytest.approx(0.0, abs=1e-9)  # one channel holds all mass: no pair overlaps
    assert 0.0 <= r["similarity"] <= 1.0
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(res))
    assert "| t1-wm-parsing | 1 |" in (tmp_path / "r.md").read_text()


def test_uniform_head_is_maximally_similar_and_stripes_are_rejected(tiny: Path, tmp_path: Path) -> None:
    spec = ModelSpec(backbone="resnet18", num_parts=3, height=64, width=32)
    net = spec.build().eval()
    with torch.no_grad():
        net.part_head.weight.zero_()
        net.part_head.bias.zero_()
    save_checkpoint(tmp_path / "u.pt", net, spec)
    r = score_model(tmp_path / "u.pt", tiny, max_images=8, probe=False)
    assert r["similarity"] == pytest.approx(1.0, abs=1e-6)
    assert r["eq5"] == pytest.approx(1 / 9, rel=1e-5)  # every pair product (1/3)^2, mean over pairs and pixels
    stripes = ModelSpec(backbone="resnet18", num_parts=3, height=64, width=32, part_mode="stripes")
    save_checkpoint(tmp_path / "s.pt", stripes.build().eval(), stripes)
    with pytest.raises(ValueError, match="no learned part head"):
        score_model(tmp_path / "s.pt", tiny)


def test_merge_keeps_rows_that_cannot_be_measured_again(tiny: Path, tmp_path: Path) -> None:
    spec = ModelSpec(backbone="resnet18", num_parts=3, height=64, width=32)
    torch.manual_seed(0)
    runs = tmp_path / "runs"
    for exp in ("t1-wm-scc", "peer-diversity-sum"):
        (runs / exp / "seed0").mkdir(parents=True)
        save_checkpoint(runs / exp / "seed0" / "model.pt", spec.build().eval(), spec)
    common = ["--runs", str(runs), "--seeds", "0", "--data-root", str(tiny), "--max-images", "6", "--no-probe",
              "--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    first = main([*common, "--experiments", "t1-wm-scc"])
    (runs / "t1-wm-scc" / "seed0" / "model.pt").unlink()  # models are not kept: the row must survive
    merged = main([*common, "--experiments", "peer-diversity-sum", "--merge"])
    assert set(merged) == {"t1-wm-scc", "peer-diversity-sum"} and merged["t1-wm-scc"] == first["t1-wm-scc"]
    assert "--experiments t1-wm-scc peer-diversity-sum" in (tmp_path / "r.md").read_text()
    assert set(main([*common, "--experiments", "peer-diversity-sum"])) == {"peer-diversity-sum"}  # no --merge


def test_probe_recovers_labels_that_the_maps_encode_and_not_others() -> None:
    """Known answer: maps whose channels are the one-hot labels (plus noise) give a probe that labels held-out
    images exactly; labels independent of the maps give a held-out accuracy near chance."""
    from experiments.analyses.predicted_masks import fit_part_probe

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (40, 8, 4), generator=gen)
    maps = torch.cat([torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float(),
                      0.1 * torch.randn(40, 4, 8, 4, generator=gen)], dim=1)
    head = fit_part_probe(maps[0::2], labels[0::2], 4, steps=300, lr=0.05)
    with torch.no_grad():
        assert (head(maps[1::2]).argmax(1) == labels[1::2]).float().mean() == 1.0
    noise = torch.randn(40, 8, 8, 4, generator=gen)
    head = fit_part_probe(noise[0::2], labels[0::2], 4, steps=300, lr=0.05)
    with torch.no_grad():
        assert (head(noise[1::2]).argmax(1) == labels[1::2]).float().mean() < 0.45  # chance is 0.25
    with pytest.raises(ValueError, match="labels"):
        fit_part_probe(maps, labels[:, :4], 4)


def test_targets_score_matches_the_oracle_labels_scored_directly(tiny: Path, tmp_path: Path) -> None:
    """``targets_part_miou`` is the oracle labels' part mIoU, recomputed here from the masks without the model."""
    from scwm.data import load_dataset
    from scwm.data.images import load_mask
    from scwm.data.transforms import resize_label_map
    from scwm.parsing import NUM_GT_LABELS, ParsingConfusion
    from scwm.parsing.oracle import oracle_part_labels

    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", spec.build().eval(), spec)
    r = score_model(tmp_path / "m.pt", tiny, max_images=10_000)
    records = [x for x in load_dataset("synthetic", tiny).train if x.mask_path]
    masks = torch.stack([resize_label_map(load_mask(x.mask_path), 64, 32) for x in records])
    conf = ParsingConfusion(4, NUM_GT_LABELS, 3)
    conf.update(oracle_part_labels(masks, 4, (4, 2)), masks)  # 64x32 input, stride 16: 4x2 maps
    assert r["targets_part_miou"] == pytest.approx(conf.scores()["part_miou"], abs=1e-9)
    # layout: the commonest oracle label per position over the even images (ties to the lower label, as
    # np.bincount(...).argmax()), scored on the odd ones
    lab = oracle_part_labels(masks, 4, (4, 2)).numpy()
    mode = np.array([[np.bincount(lab[0::2, i, j], minlength=4).argmax() for j in range(2)] for i in range(4)])
    conf = ParsingConfusion(4, NUM_GT_LABELS, 3)
    conf.update(torch.from_numpy(np.broadcast_to(mode, lab[1::2].shape).copy()), masks[1::2])
    assert r["layout_part_miou"] == pytest.approx(conf.scores()["part_miou"], abs=1e-9)
    assert 0.0 <= r["probe_part_miou"] <= 1.0 and 0.0 <= r["probe_fg_iou"] <= 1.0
    assert "probe_part_miou" not in score_model(tmp_path / "m.pt", tiny, max_images=8, probe=False)
