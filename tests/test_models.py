"""Model tests: shapes, last stride, Eq. 1 pooling, chunked BN, classifiers, weight loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scwm.models import SCWMNet, WeightLoadError, build_backbone, convert_to_chunked_bn, part_pooling
from scwm.utils import atomic_torch_save


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_backbone_last_stride(name: str, channels: int) -> None:
    x = torch.randn(1, 3, 64, 32)
    for stride, size in [(1, (4, 2)), (2, (2, 1))]:
        bb = build_backbone(name, last_stride=stride).eval()
        with torch.no_grad():
            y = bb(x)
        assert y.shape == (1, channels, *size)


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="resnet9"):
        build_backbone("resnet9")


def test_forward_shapes_and_normalisation() -> None:
    torch.manual_seed(0)
    m = SCWMNet("resnet18", num_parts=4, num_classes=7)
    m.train()
    out = m(torch.randn(4, 3, 64, 32))
    assert out.feature_map.shape == (4, 512, 4, 2)
    assert out.part_probs.shape == (4, 4, 4, 2)
    torch.testing.assert_close(out.part_probs.sum(1), torch.ones(4, 4, 2))
    assert out.global_feat.shape == (4, 512) and out.part_feats.shape == (4, 3, 512)
    torch.testing.assert_close(out.global_feat.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.part_feats.norm(dim=-1), torch.ones(4, 3))
    assert out.global_logits.shape == (4, 7) and out.part_logits.shape == (4, 3, 7)
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 64, 32))
    assert out.global_logits is None


def test_part_pooling_literal_eq1() -> None:
    torch.manual_seed(1)
    fmap = torch.randn(2, 5, 3, 2)
    probs = torch.softmax(torch.randn(2, 4, 3, 2), dim=1)
    got = part_pooling(fmap, probs)
    for b in range(2):
        for k in range(3):
            expected = (probs[b, k][None] * fmap[b]).mean(dim=(1, 2))  # GAP(G(F)_k * F)
            torch.testing.assert_close(got[b, k], expected)


def test_part_bn_is_per_part() -> None:
    """The vectorized part BN equals one BatchNorm1d per part."""
    torch.manual_seed(2)
    m = SCWMNet("resnet18", num_parts=3)
    m.train()
    x = torch.randn(6, 2, 512)
    y = m.part_bn(x.reshape(6, -1)).reshape(6, 2, 512)
    for k in range(2):
        ref = F.batch_norm(x[:, k], None, None, training=True, eps=m.part_bn.eps)
        torch.testing.assert_close(y[:, k], ref, rtol=1e-4, atol=1e-4)


def test_reset_classifiers_from_centroids() -> None:
    m = SCWMNet("resnet18", num_parts=3)
    g = torch.randn(5, 512)
    p = torch.randn(2, 5, 512)
    m.reset_classifiers(5, g, p)
    torch.testing.assert_close(m.global_classifier.data, F.normalize(g, dim=-1))
    torch.testing.assert_close(m.part_classifier.data, F.normalize(p, dim=-1))
    m.train()
    out = m(torch.randn(2, 3, 64, 32))
    g_bn = m.global_bn  # logits are BN features times the classifier
    assert out.global_logits.shape == (2, 5)
    assert g_bn.bias.requires_grad is False


def test_chunked_bn_matches_separate_chunks() -> None:
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    ref = nn.BatchNorm2d(4)
    ref.load_state_dict(bn.state_dict())
    holder = nn.Sequential(bn)
    convert_to_chunked_bn(holder, 2)
    x = torch.randn(8, 4, 3, 3)
    y = holder(x)
    expected = torch.cat([ref(x[:4])] + [F.batch_norm(x[4:], None, None, ref.weight, ref.bias, True)])
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    # running statistics come from the first chunk only (as DataParallel's replica 0)
    torch.testing.assert_close(holder[0].running_mean, ref.running_mean)
    torch.testing.assert_close(holder[0].running_var, ref.running_var)
    with pytest.raises(ValueError, match="divisible"):
        holder(torch.randn(7, 4, 3, 3))
    holder.eval()
    torch.testing.assert_close(holder(x), ref.eval()(x))


def test_chunked_bn_whole_model_keeps_weights() -> None:
    torch.manual_seed(4)
    m = SCWMNet("resnet18", num_parts=3).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        before = m(x).global_feat
        convert_to_chunked_bn(m, 4)
        after = m(x).global_feat
    torch.testing.assert_close(before, after)
    assert m.global_bn.bias.requires_grad is False


def test_load_scwm_checkpoint_roundtrip(tmp_path) -> None:
    torch.manual_seed(5)
    m = SCWMNet("resnet18", num_parts=3)
    path = tmp_path / "ckpt.pt"
    atomic_torch_save(path, {"model": m.state_dict(), "epoch": 3})
    bb = build_backbone("resnet18", weights=path)
    for k, v in bb.state_dict().items():
        torch.testing.assert_close(v, m.backbone.state_dict()[k])


def test_load_weights_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(WeightLoadError, match="not found"):
        build_backbone("resnet18", weights=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightLoadError, match="bad.pt"):
        build_backbone("resnet18", weights=bad)
    other = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightLoadError, match="no parameter"):
        build_backbone("resnet18", weights=other)
    wrong = tmp_path / "wrong.pt"
    torch.save(build_backbone("resnet50").state_dict(), wrong)
    with pytest.raises(WeightLoadError, match="do not fit"):
        build_backbone("resnet18", weights=wrong)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(WeightLoadError, match="offline"):
        build_backbone("resnet18", weights="imagenet")


def test_checkpoint_roundtrip_and_errors(tmp_path) -> None:
    from scwm.models import CheckpointError, ModelSpec, load_model, save_checkpoint

    torch.manual_seed(6)
    spec = ModelSpec(backbone="resnet18", num_parts=3, height=64, width=32,
                     part_names=["top", "bottom", "background"])
    m = spec.build()
    m.reset_classifiers(4)
    m.eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, m, spec, epoch=2)
    m2, spec2 = load_model(path)
    assert spec2 == spec
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x, with_logits=False).global_feat, m2(x).global_feat)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not an scwm checkpoint"):
        load_model(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="part_names"):
        ModelSpec(num_parts=3, part_names=["a"])


def test_stripe_mode_pools_horizontal_stripes() -> None:
    from scwm.models import stripe_probs

    probs = stripe_probs(4, 8, 2)
    assert probs.shape == (1, 4, 8, 2)
    # three stripes of rows [0,1,2], [3,4,5], [6,7] (floor(r*3/8)), empty background channel
    assert probs[0, 0, :, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert probs[0, 1, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert probs[0, 2, :, 0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert probs[0, 3].sum() == 0
    torch.manual_seed(7)
    m = SCWMNet("resnet18", num_parts=4, part_mode="stripes").eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 128, 32))
    torch.testing.assert_close(out.part_probs, probs.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="part_mode"):
        SCWMNet("resnet18", part_mode="grid")


def test_part_pooling_grad_flag_cuts_only_the_pooling_path_to_the_part_head() -> None:
    """``part_pooling_grad=False``: a loss on the part features no longer reaches G, but still reaches the trunk;
    a loss on ``part_probs`` (Eq. 4-5) reaches G either way; the forward values are the same."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 32)
    on = SCWMNet("resnet18", num_parts=4, last_stride=1).eval()
    off = SCWMNet("resnet18", num_parts=4, last_stride=1, part_pooling_grad=False).eval()
    off.load_state_dict(on.state_dict())
    grads = {}
    for name, net in (("on", on), ("off", off)):
        out = net(x, with_logits=False)
        net.zero_grad()
        out.part_feats.sum().backward(retain_graph=True)
        g_head = net.part_head.weight.grad
        g_trunk = next(p for p in net.backbone.parameters() if p.grad is not None).grad
        grads[name] = (None if g_head is None else g_head.abs().sum().item(), g_trunk.abs().sum().item())
        net.zero_grad()
        out.part_probs[:, 0].sum().backward()
        assert net.part_head.weight.grad.abs().sum() > 0
    assert grads["on"][0] > 0 and (grads["off"][0] is None or grads["off"][0] == 0)
    assert grads["on"][1] > 0 and grads["off"][1] > 0
    torch.testing.assert_close(on(x).part_feats, off(x).part_feats)
