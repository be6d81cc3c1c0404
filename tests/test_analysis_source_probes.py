"""Source probes (experiments/analyses/source_probes.py): the read-outs applied per cell are exact, the
attribute regions map onto the ground truth's parts, and the whole analysis runs on a tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from experiments.analyses.source_probes import attribute_families, cell_scores, class_weights, main
from scwm.data.synthetic import generate
from scwm.data.synthetic.attributes import ATTRIBUTE_GROUPS
from scwm.models import ModelSpec, save_checkpoint


@pytest.mark.parametrize("classes", [2, 4])
def test_cell_scores_average_to_the_image_decision(classes: int) -> None:
    rng = np.random.default_rng(0)
    fmaps = torch.from_numpy(rng.normal(size=(40, 6, 3, 2)) * rng.uniform(0.5, 3, size=(1, 6, 1, 1))).float()
    pooled = fmaps.mean((2, 3)).numpy()
    y = np.arange(40) % classes
    scaler = StandardScaler().fit(pooled)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(pooled), y)
    w, b = class_weights(clf)
    cells = cell_scores(scaler, w, b, fmaps)
    assert cells.shape == (40, classes, 3, 2)
    image = cells.mean((2, 3)).double().numpy()  # linear: the mean of the cells' logits is the image's logits
    np.testing.assert_allclose(image.argmax(1), clf.predict(scaler.transform(pooled)))
    ref = clf.decision_function(scaler.transform(pooled))
    if classes == 2:
        np.testing.assert_allclose(image[:, 1] - image[:, 0], ref, atol=1e-4)
    else:
        np.testing.assert_allclose(image, ref, atol=1e-4)


def test_attribute_families_follow_the_ground_truth_parts() -> None:
    names = list(ATTRIBUTE_GROUPS)
    three = [[names[g] for g in fam] for fam in attribute_families(4)]  # l = 4: (head, upper, bag), lower, shoes
    assert "hair_color" in three[0] and "upper_color" in three[0] and "bag" in three[0]
    assert three[1] == ["lower_color", "lower_type"] and three[2] == ["shoe_color"]
    six = attribute_families(7)  # five regions, each its own part
    assert len(six) == 5 and sorted(g for f in six for g in f) == list(range(len(names)))


def test_runs_end_to_end_on_a_tiny_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.analyses import source_probes

    # l = 7 (as msmt): more parts than the five body regions, so the background label is not len(families)
    monkeypatch.setitem(source_probes.TARGETS, "tiny", {**source_probes.TARGETS["tiny"], "model.num_parts": 7})
    world = generate("tiny", tmp_path / "data" / "tiny-seed0", seed=0, progress=False)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, spec.build().eval(), spec)
    out, md = tmp_path / "p.json", tmp_path / "p.md"
    main(["--checkpoint", str(ckpt), "--presets", "tiny", "--source-root", str(world), "--source-images", "80",
          "--max-images", "40", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--markdown", str(md)])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["map"] == [4, 2] and rows[0]["l"] == 7
    r = rows[0]["rows"]
    probe, norm = r["source-mask probe (upper bound)"], r["norm (the paper's cue)"]
    assert probe["pooled_auc"] > max(0.8, norm["pooled_auc"])  # a supervised read-out of even a random trunk
    # both parsings take the true foreground as theirs: the same foreground IoU, whatever the parts
    assert r["attribute CAM parts, true foreground"]["fg_iou"] == pytest.approx(r["SCC, true foreground"]["fg_iou"])
    assert set(r) >= {"attribute CAM", "first principal component", "stripes", "ground truth pooled (ceiling)"}
    assert "attribute CAM parts" in md.read_text()
