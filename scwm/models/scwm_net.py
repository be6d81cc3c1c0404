"""The SCWM network: backbone f_theta, part head G, global/part features (Eq. 1), BN necks, classifiers.

One forward path serves training, evaluation, feature extraction for the clustering stage, and ONNX
export. Part features exist for the ``num_parts - 1`` foreground parts; the background channel of G
(the last one) only shapes the parsing (the paper's l counts the background as a part).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scwm.models.backbone import Backbone, build_backbone


@dataclass
class SCWMOutput:
    """Result of :meth:`SCWMNet.forward`.

    feature_map: F, (B, C, h, w).  global_feat: L2-normalized BN-neck embedding of GAP(F), (B, C).
    part_feats: L2-normalized BN-neck embeddings of GAP(G(F)_k * F), (B, P, C), P = num_parts - 1.
    part_probs: softmax of the part head G, (B, num_parts, h, w), background last.
    global_logits (B, num_classes) and part_logits (B, P, num_classes) when classifiers are set.
    global_embedding: the global BN-neck output before L2 normalisation, (B, C) (PPLR's soft-triplet input).
    """

    feature_map: torch.Tensor
    global_feat: torch.Tensor
    part_feats: torch.Tensor
    part_probs: torch.Tensor
    global_logits: torch.Tensor | None = None
    part_logits: torch.Tensor | None = None
    global_embedding: torch.Tensor | None = None


def stripe_probs(num_parts: int, h: int, w: int, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed horizontal-stripe "part maps" (1, num_parts, h, w): ``num_parts - 1`` equal stripes top to
    bottom (PCB / PPLR baseline), every cell foreground, an all-zero background channel last."""
    rows = torch.arange(h, device=device)
    stripe = torch.div(rows * (num_parts - 1), h, rounding_mode="floor")  # (h,)
    onehot = torch.nn.functional.one_hot(stripe, num_parts).to(dtype)  # (h, l)
    return onehot.t()[None, :, :, None].expand(1, num_parts, h, w).contiguous()


def part_pooling(feature_map: torch.Tensor, part_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 1: f^{p_k} = GAP(G(F)_k * F) for every foreground part k; returns (B, P, C)."""
    fg = part_probs[:, :-1]
    h, w = feature_map.shape[-2:]
    return torch.einsum("bkhw,bchw->bkc", fg, feature_map) / (h * w)


class SCWMNet(nn.Module):
    """Backbone + part head + BN necks + (optional) per-branch bias-free classifiers.

    ``part_mode="learned"`` pools parts with the part head G (SCWM); ``"stripes"`` with fixed horizontal
    stripes (the PPLR-style baseline; G is then unused). ``part_pooling_grad=False`` pools with detached part
    maps: G then learns only from what is computed on ``part_probs`` (Eq. 4-5), not from the part features.
    """

    def __init__(self, backbone: Backbone | str = "resnet50", num_parts: int = 4,
                 num_classes: int = 0, weights: str | None = None, last_stride: int = 1,
                 part_mode: str = "learned", part_pooling_grad: bool = True) -> None:
        super().__init__()
        if num_parts < 2:
            raise ValueError(f"num_parts counts the background and must be >= 2, got {num_parts}")
        if isinstance(backbone, str):
            backbone = build_backbone(backbone, last_stride=last_stride, weights=weights)
        self.backbone = backbone
        c = backbone.out_channels
        if part_mode not in ("learned", "stripes"):
            raise ValueError(f"part_mode must be 'learned' or 'stripes', got {part_mode!r}")
        self.num_parts = num_parts
        self.part_mode = part_mode
        self.part_pooling_grad = part_pooling_grad
        self.feat_dim = c
        self.part_head = nn.Conv2d(c, num_parts, kernel_size=3, padding=1)  # G (Sec. 3.1)
        self.global_bn = nn.BatchNorm1d(c)
        self.global_bn.bias.requires_grad_(False)  # BNNeck
        self.part_bn = nn.BatchNorm1d((num_parts - 1) * c)  # one BN per part, vectorized
        self.part_bn.bias.requires_grad_(False)
        self.global_classifier: nn.Parameter | None = None
        self.part_classifier: nn.Parameter | None = None
        if num_classes > 0:
            self.reset_classifiers(num_classes)

    @property
    def num_fg_parts(self) -> int:
        return self.num_parts - 1

    def reset_classifiers(self, num_classes: int, global_centroids: torch.Tensor | None = None,
                          part_centroids: torch.Tensor | None = None) -> None:
        """(Re-)create the bias-free classifiers, optionally from centroids (C, D) and (P, C, D),
        which are L2-normalized first (classifier re-initialisation every epoch, as in PPLR)."""
        dev = self.part_head.weight.device
        gw = torch.empty(num_classes, self.feat_dim, device=dev)
        pw = torch.empty(self.num_fg_parts, num_classes, self.feat_dim, device=dev)
        if global_centroids is None:
            nn.init.normal_(gw, std=0.001)
        else:
            gw.copy_(F.normalize(global_centroids.to(dev).float(), dim=-1))
        if part_centroids is None:
            nn.init.normal_(pw, std=0.001)
        else:
            pw.copy_(F.normalize(part_centroids.to(dev).float(), dim=-1))
        self.global_classifier = nn.Parameter(gw)
        self.part_classifier = nn.Parameter(pw)

    def forward(self, x: torch.Tensor, with_logits: bool | None = None) -> SCWMOutput:
        fmap = self.backbone(x)
        if self.part_mode == "stripes":
            h, w = fmap.shape[-2:]
            probs = stripe_probs(self.num_parts, h, w, fmap.device, fmap.dtype).expand(fmap.shape[0], -1, -1, -1)
        else:
            probs = torch.softmax(self.part_head(fmap), dim=1)
        g_raw = fmap.mean(dim=(2, 3))
        p_raw = part_pooling(fmap, probs if self.part_pooling_grad else probs.detach())
        b, p, c = p_raw.shape
        g_bn = self.global_bn(g_raw)
        p_bn = self.part_bn(p_raw.reshape(b, p * c)).reshape(b, p, c)
        out = SCWMOutput(fmap, F.normalize(g_bn, dim=-1), F.normalize(p_bn, dim=-1), probs, global_embedding=g_bn)
        if with_logits is None:
            with_logits = self.training
        if with_logits and self.global_classifier is not None and self.part_classifier is not None:
            out.global_logits = g_bn @ self.global_classifier.t()
            out.part_logits = torch.einsum("bpc,pkc->bpk", p_bn, self.part_classifier)
        return out
