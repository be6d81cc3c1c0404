"""Transforms: eval preprocessing vs. an independent computation, and image/mask alignment in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scwm.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    preprocess,
    resize_label_map,
    resize_soft_masks,
)

MEAN = np.array(IMAGENET_MEAN)
STD = np.array(IMAGENET_STD)
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # class 0 = black


def _label_image(seed: int = 0, h: int = 32, w: int = 16) -> tuple[np.ndarray, Image.Image]:
    """A (h, w) label map of random blocks and a (2h, 2w) image whose colour encodes the label."""
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.repeat(rng.integers(0, 4, (h // 4, w // 4)), 4, 0), 4, 1).astype(np.uint8)
    big = np.repeat(np.repeat(lab, 2, 0), 2, 1)
    return lab, Image.fromarray(PALETTE[big])


def _np_geometry(x: np.ndarray, flip: bool, top: int, left: int, pad: int, fill: np.ndarray) -> np.ndarray:
    """Independent flip + pad + crop of a (C, H, W) array, padding filled with per-channel ``fill``."""
    C, H, W = x.shape
    if flip:
        x = x[:, :, ::-1]
    padded = np.empty((C, H + 2 * pad, W + 2 * pad), x.dtype)
    padded[:] = fill.reshape(C, 1, 1)
    padded[:, pad:pad + H, pad:pad + W] = x
    return padded[:, top:top + H, left:left + W]


# ---------------------------------------------------------------- eval

def test_preprocess_matches_numpy_and_torchvision() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    out = preprocess(Image.fromarray(arr), 64, 32)
    assert out.dtype == np.float32 and out.shape == (3, 64, 32)
    ref = ((arr.astype(np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(out, ref, atol=1e-5)

    import torchvision.transforms as T

    img = Image.fromarray(rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
    tv = T.Compose([T.Resize((40, 20), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
    np.testing.assert_allclose(preprocess(img, 40, 20), tv.numpy(), atol=1e-5)
    resized = np.asarray(img.resize((20, 40), Image.BILINEAR), np.float64)
    np.testing.assert_allclose(preprocess(img, 40, 20), ((resized / 255 - MEAN) / STD).transpose(2, 0, 1),
                               atol=1e-5)
    gray = Image.fromarray(arr[..., 0])
    assert preprocess(gray, 64, 32).shape == (3, 64, 32)
    x, m = EvalTransform(40, 20)(img)
    assert m is None and torch.equal(x, torch.from_numpy(preprocess(img, 40, 20)))
    with pytest.raises(ValueError, match="mean and std"):
        preprocess(img, 40, 20, mean=(0.5, 0.5))


# ---------------------------------------------------------------- resizing

def test_resize_label_map_is_pixel_centre_nearest() -> None:
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 300, (7, 5))
    out = resize_label_map(lab, 20, 11)
    ys = np.minimum(np.floor((np.arange(20) + 0.5) * 7 / 20).astype(int), 6)
    xs = np.minimum(np.floor((np.arange(11) + 0.5) * 5 / 11).astype(int), 4)
    assert out.dtype == torch.long
    np.testing.assert_array_equal(out.numpy(), lab[ys][:, xs])
    with pytest.raises(ValueError, match="integer dtype"):
        resize_label_map(np.zeros((4, 4), np.float32), 8, 8)


def _np_bilinear_axis(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix of align_corners=False bilinear upsampling."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = src - i0
    M = np.zeros((n_out, n_in))
    M[np.arange(n_out), i0] += 1 - w
    M[np.arange(n_out), i1] += w
    return M


def test_resize_soft_masks_bilinear_upsampling() -> None:
    rng = np.random.default_rng(2)
    soft = rng.random((3, 6, 4)).astype(np.float32)
    out = resize_soft_masks(soft, 24, 10)
    ref = np.einsum("hi,kij,wj->khw", _np_bilinear_axis(6, 24), soft, _np_bilinear_axis(4, 10))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


# ---------------------------------------------------------------- training

def test_train_label_mask_follows_image_colours() -> None:
    lab, img = _label_image(0)  # mask at half the image resolution
    t = TrainTransform(64, 32, flip_p=0.5, pad=10, erase_p=0.7)
    flips, erases = set(), 0
    for seed in range(24):
        params = t.sample_params(torch.Generator().manual_seed(seed))
        x, m = t(img, lab, generator=torch.Generator().manual_seed(seed))
        flips.add(params.flip)
        assert x.shape == (3, 64, 32) and m.shape == (64, 32) and m.dtype == torch.long
        xn = x.numpy()
        erased = np.all(xn == 0.0, axis=0)
        erases += int(erased.any())
        assert erased.sum() == (0 if params.erase is None else params.erase[2] * params.erase[3])
        pix = (xn.transpose(1, 2, 0) * STD + MEAN) * 255.0
        cls = np.argmin(((pix[:, :, None, :] - PALETTE[None, None].astype(float)) ** 2).sum(-1), axis=-1)
        mk = m.numpy()
        np.testing.assert_array_equal(mk[~erased], cls[~erased])
        assert (mk[erased] == 0).all()
    assert flips == {True, False} and 0 < erases < 24


def test_train_matches_numpy_flip_pad_crop_erase() -> None:
    lab, img = _label_image(3)
    big_lab = np.repeat(np.repeat(lab, 2, 0), 2, 1)
    rng = np.random.default_rng(0)
    soft = rng.random((4, 64, 32)).astype(np.float32)
    t = TrainTransform(64, 32, flip_p=0.5, pad=6, erase_p=0.5, background_label=3)
    seen_erase = False
    for seed in range(12):
        p = t.sample_params(torch.Generator().manual_seed(seed))
        assert 0 <= p.top <= 12 and 0 <= p.left <= 12
        x, m = t(img, big_lab, generator=torch.Generator().manual_seed(seed))
        _, s = t(img, torch.from_numpy(soft), generator=torch.Generator().manual_seed(seed))
        ref_x = _np_geometry(preprocess(img, 64, 32), p.flip, p.top, p.left, 6, -MEAN / STD)
        ref_m = _np_geometry(big_lab[None].astype(np.int64), p.flip, p.top, p.left, 6, np.array([3]))[0]
        bg = np.array([0, 0, 0, 1.0])
        ref_s = _np_geometry(soft, p.flip, p.top, p.left, 6, bg)
        if p.erase is not None:
            seen_erase = True
            a, b, h, w = p.erase
            ref_x[:, a:a + h, b:b + w] = 0
            ref_m[a:a + h, b:b + w] = 3
            ref_s[:, a:a + h, b:b + w] = bg[:, None, None]
            area = h * w / (64 * 32)
            assert 0.02 - 0.01 <= area <= 0.4 + 0.02 and 0.2 <= h / w <= 4.0
        np.testing.assert_allclose(x.numpy(), ref_x, atol=1e-6)
        np.testing.assert_array_equal(m.numpy(), ref_m)
        np.testing.assert_allclose(s.numpy(), ref_s, atol=1e-6)
    assert seen_erase


def test_train_soft_masks_low_resolution() -> None:
    lab, img = _label_image(4)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 8, 4))
    soft = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)  # feature-map resolution masks
    t = TrainTransform(64, 32, erase_p=1.0, background_channel=0)
    for seed in range(6):
        x, s = t(img, soft.astype(np.float32), generator=torch.Generator().manual_seed(seed))
        assert s.shape == (5, 64, 32) and s.dtype == torch.float32
        np.testing.assert_allclose(s.sum(0).numpy(), 1.0, atol=1e-5)  # still a distribution per pixel
        erased = (x == 0).all(0)
        assert erased.any() and (s[0][erased] == 1).all()
    with pytest.raises(ValueError, match="background_channel"):
        TrainTransform(64, 32, background_channel=7)(img, soft)


def test_train_reproducible() -> None:
    lab, img = _label_image(5)
    a = TrainTransform(64, 32, seed=11)
    b = TrainTransform(64, 32, seed=11)
    for _ in range(4):
        (xa, ma), (xb, mb) = a(img, lab), b(img, lab)
        assert torch.equal(xa, xb) and torch.equal(ma, mb)
    t = TrainTransform(64, 32)
    torch.manual_seed(5)
    x1, _ = t(img)
    torch.manual_seed(5)
    x2, m2 = t(img)
    assert torch.equal(x1, x2) and m2 is None
    with pytest.raises(ValueError, match="flip_p"):
        TrainTransform(64, 32, flip_p=1.5)


def test_eval_transform_masks() -> None:
    lab, img = _label_image(6)
    x, m = EvalTransform(64, 32)(img, lab)
    assert m.shape == (64, 32)
    np.testing.assert_array_equal(m.numpy(), np.repeat(np.repeat(lab, 2, 0), 2, 1))
    _, s = EvalTransform(64, 32)(img, torch.ones(3, 8, 4))
    assert s.shape == (3, 64, 32) and torch.allclose(s, torch.ones(()))
