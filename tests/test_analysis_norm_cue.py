"""Norm-cue benchmark: content vs position on a tiny world, with models whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.analyses.norm_cue import cue_stats, main
from scwm.data.synthetic import generate
from scwm.models import ModelSpec, save_checkpoint
from scwm.parsing import norm_cue_cells, within_position_auc
from scwm.parsing.cues import background_model_distance, position_normalized_norm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate("tiny", tmp_path_factory.mktemp("w") / "tiny-seed0", seed=0, progress=False)


class _FixedMap(nn.Module):
    """Stands in for SCWMNet: a feature map that is either a fixed spatial profile or the input itself."""

    def __init__(self, positional: bool) -> None:
        super().__init__()
        self.positional = positional
        self.global_bn = nn.BatchNorm1d(1).eval()  # identity at initialisation

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2] // 8, x.shape[-1] // 8
        if self.positional:  # bright centre columns, whatever the image shows
            cols = torch.linspace(-1, 1, w).abs()
            fmap = (2.0 - cols)[None, None, None, :].expand(x.shape[0], 1, h, w)
        else:  # the pooled image intensity: follows the content wherever it moves
            fmap = nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True) + 3.0, (h, w))
        feat = nn.functional.normalize(self.global_bn(fmap.mean((2, 3))), dim=1)
        return type("Out", (), {"feature_map": fmap, "global_feat": feat})()


def _batches(tiny: Path) -> list[dict]:
    from torch.utils.data import DataLoader

    from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset

    recs = load_dataset("synthetic", tiny).train[:24]
    return list(DataLoader(ReIDImageDataset(recs, EvalTransform(64, 32), use_gt_masks=True), batch_size=12,
                           collate_fn=collate_skip_none))


def test_positional_map_is_recognised(tiny: Path) -> None:
    s = cue_stats(_FixedMap(positional=True), _batches(tiny), (0, 8, 16))
    assert s[16]["corr_position"] == pytest.approx(1.0)
    assert s[0]["within_position_auc"] == pytest.approx(0.5)  # no content signal at all
    assert s[0]["auc"] != pytest.approx(s[16]["auc"], abs=0.02)  # the pooled AUC swings with the roll


def test_content_map_follows_the_roll(tiny: Path) -> None:
    s = cue_stats(_FixedMap(positional=False), _batches(tiny), (0, 8, 16))
    assert s[16]["corr_content"] > 0.95  # the map moved with the image (roll by whole cells)
    assert s[16]["corr_content"] > s[16]["corr_position"]


def test_cli_writes_json_and_markdown(tiny: Path, tmp_path: Path) -> None:
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", spec.build().eval(), spec)
    main(["--checkpoint", str(tmp_path / "m.pt"), "--presets", "tiny", "--data-dir", str(tiny.parent),
          "--max-images", "10", "--sizes", "64x32", "--out", str(tmp_path / "r.json"),
          "--markdown", str(tmp_path / "r.md")])
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["images"] == 10 and rows[0]["input"] == [64, 32]
    assert 0.0 <= rows[0]["stats"]["0"]["auc"] <= 1.0
    assert "| tiny | 10 | 64x32 | 4x2 |" in (tmp_path / "r.md").read_text()
    with pytest.raises(SystemExit, match="--sizes"):
        main(["--sizes", "64-32"])


def test_position_free_alternatives_are_reported(tiny: Path) -> None:
    """A fixed profile gives the position-free cues nothing (AUC 0.5); on a content map the norm over its
    leave-one-out position mean ranks cells at each position exactly as the norm does."""
    batches = _batches(tiny)
    fmaps = torch.cat([_FixedMap(positional=True)(b["image"]).feature_map for b in batches])
    cams = torch.cat([b["camid"] for b in batches])
    torch.testing.assert_close(position_normalized_norm(fmaps), torch.ones(fmaps.shape[0], *fmaps.shape[2:]))
    torch.testing.assert_close(background_model_distance(fmaps, cams), torch.zeros(fmaps.shape[0], *fmaps.shape[2:]))
    # constant cues carry no signal; float rounding of the constants may break ties either way
    alt = cue_stats(_FixedMap(positional=True), batches, (0, 8, 16))["alternatives"]
    assert set(alt) == {"norm_over_position_mean", "background_model_camera", "background_model_all",
                        "cross_camera_match", "identity_cam"}
    assert 0 < alt["cross_camera_match"]["images"] <= alt["background_model_all"]["images"]
    content = _FixedMap(positional=False)
    fmaps = torch.cat([content(b["image"]).feature_map for b in batches])
    body = torch.cat([norm_cue_cells(content(b["image"]).feature_map, b["mask"])[1] for b in batches])
    s = cue_stats(content, batches, (0, 8, 16))
    assert s["alternatives"]["norm_over_position_mean"]["within_position_auc"] == pytest.approx(
        within_position_auc(fmaps.norm(dim=1), body)[0])


def test_neck_cells_average_to_the_embedding() -> None:
    """The global BN neck is affine at inference, so the cells through it average to the image's embedding before
    L2 normalisation (what makes the identity CAM a CAM)."""
    from experiments.analyses import neck_cells

    torch.manual_seed(0)
    model = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32).build()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        model.global_bn.running_mean.normal_()
        model.global_bn.running_var.uniform_(0.5, 2.0)
        model.global_bn.weight.normal_()
        model.global_bn.bias.normal_()
    model.eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        out = model(x)
        cells = neck_cells(model, out.feature_map)
    torch.testing.assert_close(cells.mean((2, 3)), out.global_embedding, atol=1e-4, rtol=1e-4)
