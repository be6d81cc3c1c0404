"""PLIP's ResNet-50 trunk and the shared weight loader.

The checkpoints are the tests' own constructions of the published layouts: PLIP's image encoder (CLIP's
ModifiedResNet-50: its key names, ``attnpool`` head, ``image_encoder.`` prefix beside ``text_encoder.`` keys, or
PLIP's ``{"ImgEncoder_state_dict", "TxtEncoder_state_dict"}`` file), its wide-stem ``MResNetv2`` variant, a
7x7-stem variant, torchvision's ResNet-50 (plain, with DDP's ``module.``), and a fast-reid model file. The
trunk's forward pass is compared with an independent functional transcription of the published network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50

from scwm.models import BACKBONES, ModelSpec, SCWMNet, WeightLoadError, build_backbone, load_model, save_checkpoint
from scwm.models.plip_resnet import PLIPResNet, detect_stem

BLOCKS = (3, 4, 6, 3)
STEM_CONVS = {"clip": [(32, 3, 3), (32, 32, 3), (64, 32, 3)], "wide": [(64, 3, 3), (64, 64, 3), (128, 64, 3)],
              "7x7": [(64, 3, 7)]}


def published_trunk(stem: str = "clip", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the key names and shapes of PLIP's ModifiedResNet-50 trunk (no head)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 1 + torch.rand(c, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    for i, (cout, cin, k) in enumerate(STEM_CONVS[stem], 1):
        conv(f"conv{i}", cout, cin, k)
        bn(f"bn{i}", cout)
    inplanes = STEM_CONVS[stem][-1][0]
    for li, (blocks, planes) in enumerate(zip(BLOCKS, (64, 128, 256, 512), strict=True), 1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            conv(f"{p}.conv1", planes, inplanes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                conv(f"{p}.downsample.0", planes * 4, inplanes, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return sd


def attnpool_head() -> dict[str, torch.Tensor]:
    """CLIP's attention-pool projection head of ResNet-50 at 256x128 (8x4 cells), output 1024."""
    head = {"attnpool.positional_embedding": torch.randn(33, 2048), "attnpool.c_proj.weight": torch.randn(1024, 2048),
            "attnpool.c_proj.bias": torch.zeros(1024)}
    for name in ("q_proj", "k_proj", "v_proj"):
        head[f"attnpool.{name}.weight"] = torch.randn(64, 2048)  # (2048, 2048) in the real head; never loaded
        head[f"attnpool.{name}.bias"] = torch.zeros(64)
    return head


TEXT_ENCODER = {"encoder.embeddings.word_embeddings.weight": torch.randn(50, 768),
                "encoder.encoder.layer.0.attention.self.query.weight": torch.randn(768, 768),
                "conv1.weight": torch.randn(8, 8, 3, 3)}  # a name clash with the trunk that must not matter


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, stem: str, last_stride: int = 2) -> torch.Tensor:
    """The published trunk, functionally: stem, then anti-aliased Bottlenecks (avg pool after the 3x3 conv
    and before the downsample conv), BatchNorm in eval mode."""
    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-5)

    def conv(t: torch.Tensor, p: str, stride: int = 1) -> torch.Tensor:
        w = sd[f"{p}.weight"]
        return F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2)

    x = F.relu(bn(conv(x, "conv1", 2), "bn1"))
    if stem != "7x7":
        x = F.relu(bn(conv(x, "conv2"), "bn2"))
        x = F.relu(bn(conv(x, "conv3"), "bn3"))
    x = F.avg_pool2d(x, 2) if stem == "clip" else F.max_pool2d(x, 3, 2, 1)
    for li, (blocks, stride) in enumerate(zip(BLOCKS, (1, 2, 2, last_stride), strict=True), 1):
        for b in range(blocks):
            p, s = f"layer{li}.{b}", stride if b == 0 else 1
            out = F.relu(bn(conv(x, f"{p}.conv1"), f"{p}.bn1"))
            out = F.relu(bn(conv(out, f"{p}.conv2"), f"{p}.bn2"))
            out = F.avg_pool2d(out, s) if s > 1 else out
            out = bn(conv(out, f"{p}.conv3"), f"{p}.bn3")
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = F.avg_pool2d(x, s) if s > 1 else x
                identity = bn(conv(identity, f"{p}.downsample.0"), f"{p}.downsample.1")
            x = F.relu(out + identity)
    return x


def assert_same_trunk(backbone: torch.nn.Module, trunk: dict[str, torch.Tensor]) -> None:
    """Every key of the backbone came from ``trunk`` (none left at initialisation), with equal values."""
    own = backbone.state_dict()
    assert set(own) == set(trunk), (sorted(set(own) ^ set(trunk)))[:5]
    for k, v in trunk.items():
        assert torch.equal(own[k], v), k


def assert_close_scaled(got: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.fixture(scope="module")
def clip_trunk() -> dict[str, torch.Tensor]:
    return published_trunk("clip")


def test_registered_as_a_backbone() -> None:
    assert "plip_resnet50" in BACKBONES
    from training.config import ModelConfig

    assert ModelConfig(backbone="plip_resnet50").backbone == "plip_resnet50"
    with pytest.raises(WeightLoadError, match="no ImageNet weights"):
        build_backbone("plip_resnet50", weights="imagenet")


@pytest.mark.parametrize("layout", ["prefixed", "published_file", "ddp"])
def test_plip_checkpoint_loads_the_whole_trunk(tmp_path: Path, clip_trunk: dict, layout: str, caplog) -> None:
    """PLIP's encoder with wrapper prefixes, text encoder and attnpool keys: every trunk tensor is loaded,
    the rest ignored (and logged), and the network computes what the published one computes."""
    image = {**clip_trunk, **attnpool_head()}
    text = {f"text_encoder.{k}": v for k, v in TEXT_ENCODER.items()}
    if layout == "prefixed":
        obj: dict = {**{f"image_encoder.{k}": v for k, v in image.items()}, **text}
    elif layout == "published_file":  # PLIP's released .pth.tar
        obj = {"ImgEncoder_state_dict": image, "TxtEncoder_state_dict": dict(TEXT_ENCODER)}
    else:
        obj = {"state_dict": {**{f"module.image_encoder.{k}": v for k, v in image.items()},
                              **{f"module.{k}": v for k, v in text.items()}}}
    path = tmp_path / "plip.pth"
    torch.save(obj, path)
    with caplog.at_level(logging.INFO, logger="scwm"):
        bb = build_backbone("plip_resnet50", last_stride=2, weights=path).eval()
    assert bb.stem == "clip"
    assert_same_trunk(bb, clip_trunk)
    if layout == "prefixed":
        assert "text_encoder" in caplog.text and "attnpool" in caplog.text
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert_close_scaled(bb(x), reference_forward(clip_trunk, x, "clip"))
        bb.set_last_stride(1)
        assert_close_scaled(bb(x), reference_forward(clip_trunk, x, "clip", last_stride=1))


@pytest.mark.parametrize("stem", ["wide", "7x7"])
def test_other_stems_are_detected_and_rebuilt(tmp_path: Path, stem: str) -> None:
    trunk = published_trunk(stem, seed=1)
    torch.save({"model.visual." + k: v for k, v in {**trunk, **attnpool_head()}.items()}, tmp_path / "v.pt")
    bb = build_backbone("plip_resnet50", weights=tmp_path / "v.pt").eval()
    assert bb.stem == stem
    assert_same_trunk(bb, trunk)
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert_close_scaled(bb(x), reference_forward(trunk, x, stem, last_stride=1))


def test_detect_stem(clip_trunk: dict) -> None:
    assert detect_stem(clip_trunk) == "clip"
    assert detect_stem({"conv1.weight": torch.zeros(64, 3, 3, 3)}) == "wide"
    assert detect_stem({"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}, "backbone.") == "7x7"
    assert detect_stem(resnet50().state_dict()) == "7x7"
    assert detect_stem({"conv1.weight": torch.zeros(16, 3, 5, 5)}) is None
    assert detect_stem({}) is None


def test_last_stride_keeps_or_halves_layer4() -> None:
    x = torch.randn(1, 3, 256, 128)
    for stride, size in ((1, (16, 8)), (2, (8, 4))):
        bb = build_backbone("plip_resnet50", last_stride=stride).eval()
        assert bb.out_channels == 2048
        with torch.no_grad():
            assert bb(x).shape == (1, 2048, *size)
    bb = PLIPResNet(last_stride=1)
    assert isinstance(bb.layer4[0].avgpool, torch.nn.Identity)
    assert isinstance(getattr(bb.layer4[0].downsample, "-1"), torch.nn.Identity)
    with pytest.raises(ValueError, match="last_stride"):
        PLIPResNet(last_stride=3)


@pytest.mark.parametrize("layout", ["torchvision", "ddp", "fastreid"])
def test_torchvision_and_fastreid_resnets_load(tmp_path: Path, layout: str, caplog) -> None:
    torch.manual_seed(0)
    state = resnet50().state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if layout == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    elif layout == "fastreid":  # fastreid.engine checkpoint: {"model": Baseline.state_dict(), ...}
        model = {f"backbone.{k}": v for k, v in trunk.items()}
        model.update({"pixel_mean": torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1),
                      "pixel_std": torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1),
                      "heads.bottleneck.0.weight": torch.ones(2048), "heads.weight": torch.randn(751, 2048)})
        state = {"model": model, "iteration": 1000}
    torch.save(state, tmp_path / "w.pth")
    with caplog.at_level(logging.INFO, logger="scwm"):
        bb = build_backbone("resnet50", weights=tmp_path / "w.pth")
    assert_same_trunk(bb, trunk)
    if layout == "fastreid":
        assert "mean 0.4850 0.4560 0.4060" in caplog.text


def test_partial_or_foreign_checkpoints_are_refused(tmp_path: Path, clip_trunk: dict) -> None:
    partial = {f"image_encoder.{k}": v for k, v in clip_trunk.items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial_plip.pth")
    with pytest.raises(WeightLoadError, match=r"partial_plip\.pth does not hold the whole backbone trunk"):
        build_backbone("plip_resnet50", weights=tmp_path / "partial_plip.pth")
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "stem_only.pt")
    with pytest.raises(WeightLoadError, match=r"stem_only\.pt"):
        build_backbone("resnet50", weights=tmp_path / "stem_only.pt")
    torch.save(clip_trunk, tmp_path / "plip_trunk.pth")
    with pytest.raises(WeightLoadError, match=r"plip_trunk\.pth do not fit.*plip_resnet50"):
        build_backbone("resnet50", weights=tmp_path / "plip_trunk.pth")


def test_scwm_net_forwards_and_its_checkpoint_keeps_the_stem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SCWMNet("plip_resnet50", num_parts=4, num_classes=5)
    out = net.train()(torch.randn(4, 3, 64, 32))
    assert out.feature_map.shape == (4, 2048, 4, 2) and out.part_feats.shape == (4, 3, 2048)
    assert out.global_logits.shape == (4, 5)
    torch.testing.assert_close(out.global_feat.norm(dim=-1), torch.ones(4))
    # a run started from a wide-stem checkpoint: the scwm checkpoint rebuilds with that stem
    net.backbone.set_stem("wide")
    spec = ModelSpec(backbone="plip_resnet50", num_parts=4, height=64, width=32)
    save_checkpoint(tmp_path / "m.pt", net, spec)
    back, _ = load_model(tmp_path / "m.pt")
    assert back.backbone.stem == "wide"
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x).global_feat, net.eval()(x).global_feat)


def test_trainer_initial_weights_from_a_plip_checkpoint(tmp_path: Path, clip_trunk: dict) -> None:
    from training.model_init import load_initial_weights

    torch.save({"epoch": 60, "ImgEncoder_state_dict": {**clip_trunk, **attnpool_head()},
                "TxtEncoder_state_dict": TEXT_ENCODER}, tmp_path / "PLIP_RN50.pth.tar")
    net = SCWMNet("plip_resnet50", num_parts=4)
    load_initial_weights(net, tmp_path / "PLIP_RN50.pth.tar")
    assert_same_trunk(net.backbone, clip_trunk)


def test_pixel_statistics_reach_spec_loaders_and_export(tmp_path: Path) -> None:
    """``--data.mean/--data.std`` set the model spec (hence checkpoints and ONNX metadata, which the serving
    engine preprocesses with) and the training and evaluation transforms."""
    from scwm.data.records import ImageRecord
    from serving.engine import OnnxEngine
    from serving.export import export_model
    from training.cli import config_from_args
    from training.features import eval_loader
    from training.model_init import model_spec

    mean, std = (0.357, 0.323, 0.328), (0.252, 0.242, 0.239)
    cfg, _ = config_from_args(["--preset", "smoke", "--model.backbone", "plip_resnet50", "--data.height", "64",
                               "--data.width", "32", "--data.mean", *map(str, mean), "--data.std", *map(str, std)])
    spec = model_spec(cfg)
    assert spec.mean == mean and spec.std == std and spec.backbone == "plip_resnet50"
    tf = eval_loader([ImageRecord("x.jpg", 0, 0)], cfg).dataset.transform
    assert tf.mean == mean and tf.std == std
    torch.manual_seed(0)
    net = spec.build().eval()
    report = export_model(net, spec, tmp_path / "plip.onnx")[0]  # about 15 s on 2 CPU cores
    engine = OnnxEngine(report.path, providers=["CPUExecutionProvider"])
    assert engine.spec.mean == mean and engine.spec.std == std
    img = np.full((64, 32, 3), 255, np.uint8)
    np.testing.assert_allclose(engine.preprocess(img)[:, 0, 0], (1 - np.array(mean)) / np.array(std), rtol=1e-5)
