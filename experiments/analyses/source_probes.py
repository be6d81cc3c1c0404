"""Does the trunk know where the body is? Cues learned on the source world, scored on the targets.

Step 1 of SCC finds the foreground from the feature norm, and on our backbones that cue is mostly positional
(``docs/bench/norm_cue.md``). This analysis asks whether the trunk's cells hold the body at all, and which
cue gets it out, on target **train** images with ground-truth masks:

* **norm**: the paper's cue (SCC as the loop runs it);
* **source-mask probe (upper bound)**: a logistic regression on the cells, fitted on the *source* world's
  ground-truth body masks (its cue is the body probability). It uses labels the method never has (source
  masks only ever as an explicitly labelled upper bound): how much of the body a linear read-out of the trunk
  can find;
* **attribute CAM**: per-group logistic regressions on the mean of the cells (the PLIP-analogue attribute
  head: hair, upper and lower garment, shoes, bag) fitted on the *source* identities' attributes, applied to
  every target cell (:func:`scwm.parsing.cues.attribute_evidence`); its foreground is the summed evidence, its
  parts the body region whose groups win (:func:`scwm.parsing.cues.family_parts`);
* **first principal component** of the normalised cells (:func:`scwm.parsing.cues.first_component_cue`), no
  labels at all.

Each cue is scored by the within-position and pooled AUC of body cells, then used as step 1's foreground for
SCC (``spatial_cascaded_clustering(..., foreground=...)``), scored by foreground IoU and part mIoU as in
``parsing_quality``. Stripes, SCC on the true foreground and the ground truth pooled to the grid are the
reference rows.

    python -m experiments.analyses.source_probes --checkpoint zoo/plip-resnet18-128x64.pt \\
        --presets market msmt --source-images 3000 --max-images 600
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from experiments.analyses import feature_model, write_outputs
from experiments.registry import TARGETS
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.data.synthetic.attributes import ATTRIBUTE_GROUPS, GROUP_SIZES
from scwm.parsing import (
    GT_PART_GROUPS,
    NUM_GT_LABELS,
    ParsingConfusion,
    binary_auc,
    foreground_from_cue,
    horizontal_stripes,
    norm_cue_cells,
    oracle_part_labels,
    spatial_cascaded_clustering,
    within_position_auc,
)
from scwm.parsing.cues import attribute_evidence, family_parts, first_component_cue
from training.config import PLIP_PRETRAIN, ZOO_SOURCE
from training.datasets import ensure_synthetic
from training.pretrain_tasks import source_attribute_labels

REGION_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("hair_color", "hair_style", "headwear", "headwear_color"),
    2: ("upper_color", "upper_pattern", "upper_sleeve"),
    3: ("lower_color", "lower_type"),
    4: ("shoe_color",),
    5: ("bag", "bag_color"),
}
"""Attribute groups of each body region, keyed by the ground truth's label of that region (1 head, 2 upper
body, 3 lower body, 4 shoes, 5 accessory): the attribute vocabulary names the region, no mask is read."""


def attribute_families(num_parts: int) -> list[list[int]]:
    """Group indices of each of the ``num_parts - 1`` foreground parts: the regions are merged into parts as
    the ground truth's are (``GT_PART_GROUPS``, top to bottom), so the two parsings speak of the same parts."""
    names = list(ATTRIBUTE_GROUPS)
    parts = GT_PART_GROUPS[min(num_parts - 1, max(GT_PART_GROUPS))]
    return [[names.index(g) for region in labels for g in REGION_GROUPS[region]] for labels in parts]


def _sample(records: list, n: int) -> list:
    rng = np.random.default_rng(0)
    return records if len(records) <= n else [records[i] for i in sorted(rng.choice(len(records), n, replace=False))]


@torch.no_grad()
def _cells(model: torch.nn.Module, records: list, size: tuple[int, int], spec) -> tuple[torch.Tensor, ...]:
    """Feature maps ``(N, C, h, w)``, body cells ``(N, h, w)`` and GT masks ``(N, H, W)`` of ``records``."""
    loader = DataLoader(ReIDImageDataset(records, EvalTransform(*size, mean=spec.mean, std=spec.std),
                                         use_gt_masks=True), batch_size=64, num_workers=0,
                        collate_fn=collate_skip_none)
    fmaps, body, masks = [], [], []
    for b in loader:
        fm = model(b["image"]).feature_map.float()
        fmaps.append(fm)
        body.append(norm_cue_cells(fm, b["mask"])[1])
        masks.append(b["mask"])
    return torch.cat(fmaps), torch.cat(body), torch.cat(masks)


def fit_probes(model: torch.nn.Module, spec, size: tuple[int, int], source_root: str, n: int,
               max_cells: int = 100_000) -> dict:
    """The two read-outs fitted on the source world: the body probe on cells (source masks: upper bound) and
    one attribute classifier per group on the mean of the cells (over the classes the sample has; none for a
    group with one class); with their held-out source figures."""
    records = _sample([r for r in load_dataset("synthetic", source_root).train if r.pid > 0], n)
    attrs = source_attribute_labels(source_root, records, "training")
    fmaps, body, _ = _cells(model, records, size, spec)
    pids = np.array([r.pid for r in records])
    held = np.isin(pids, np.unique(pids)[::7])  # every 7th identity held out
    cell_x = fmaps.permute(0, 2, 3, 1)
    rng = np.random.default_rng(0)
    train_cells = cell_x[torch.from_numpy(~held)].reshape(-1, cell_x.shape[-1]).numpy()
    train_body = body[torch.from_numpy(~held)].flatten().numpy()
    pick = rng.choice(len(train_cells), min(max_cells, len(train_cells)), replace=False)
    fg_scaler = StandardScaler().fit(train_cells[pick])
    fg = LogisticRegression(C=1.0, max_iter=500).fit(fg_scaler.transform(train_cells[pick]), train_body[pick])
    held_cells = cell_x[torch.from_numpy(held)]
    held_score = fg.decision_function(fg_scaler.transform(held_cells.reshape(-1, cell_x.shape[-1]).numpy()))
    out = {"fg": (fg_scaler, fg), "source_images": len(records),
           "source_fg_auc": binary_auc(torch.from_numpy(held_score), body[torch.from_numpy(held)].flatten())}
    pooled = fmaps.mean((2, 3)).numpy()
    scaler = StandardScaler().fit(pooled[~held])
    heads, accs = [], []
    for g in range(len(GROUP_SIZES)):  # a group with one class in the sample says nothing: no head
        y = attrs[:, g]
        if len(np.unique(y[~held])) < 2:
            heads.append(None)
            continue
        clf = LogisticRegression(C=0.1, max_iter=500).fit(scaler.transform(pooled[~held]), y[~held])
        heads.append(clf)
        accs.append(float((clf.predict(scaler.transform(pooled[held])) == y[held]).mean()))
    out.update(attr=(scaler, heads), source_attr_acc=float(np.mean(accs)))
    return out


def cell_scores(scaler: StandardScaler, weight: np.ndarray, bias: np.ndarray, fmaps: torch.Tensor) -> torch.Tensor:
    """A linear read-out ``(K, C)`` after standardisation, applied to every cell: ``(N, K, h, w)``."""
    w = torch.from_numpy(weight / scaler.scale_[None, :]).float()
    b = torch.from_numpy(bias - (weight * scaler.mean_ / scaler.scale_).sum(1)).float()
    return torch.einsum("nchw,kc->nkhw", fmaps, w) + b[None, :, None, None]


def class_weights(clf: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """``(K, C)`` weights and ``(K,)`` biases of one logit per class; a two-class model's single logit ``s``
    becomes ``(-s/2, s/2)`` (the same softmax, and the evidence of :func:`attribute_evidence` stays ``+-s/2``)."""
    if clf.coef_.shape[0] == 1 and len(clf.classes_) == 2:
        return np.concatenate([-clf.coef_, clf.coef_]) / 2, np.concatenate([-clf.intercept_, clf.intercept_]) / 2
    return clf.coef_, clf.intercept_


def target_cues(probes: dict, fmaps: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every cue ``(N, h, w)`` on the target cells, and the attribute evidence ``(N, G, h, w)``."""
    scaler, fg = probes["fg"]
    body_logit = cell_scores(scaler, fg.coef_, fg.intercept_, fmaps)[:, 0]
    cues = {"norm (the paper's cue)": fmaps.norm(dim=1), "source-mask probe (upper bound)": torch.sigmoid(body_logit)}
    scaler, heads = probes["attr"]
    n, _, h, w = fmaps.shape
    evidence = fmaps.new_zeros(n, len(heads), h, w)
    for g, head in enumerate(heads):  # the classes the source sample has: a head's own size
        if head is not None:
            weight, bias = class_weights(head)
            evidence[:, g] = attribute_evidence(cell_scores(scaler, weight, bias, fmaps), [len(bias)])[:, 0]
    cues["attribute CAM"] = evidence.sum(1)
    cues["first principal component"] = first_component_cue(fmaps)
    return cues, evidence


def score_preset(probes: dict, model: torch.nn.Module, spec, preset: str, size: tuple[int, int],
                 args: argparse.Namespace) -> dict:
    root = ensure_synthetic(Path(args.data_dir) / f"{preset}-seed0", preset, 0, progress=False)
    records = _sample(load_dataset("synthetic", root).train, args.max_images)
    fmaps, body, masks = _cells(model, records, size, spec)
    n, _, h, w = fmaps.shape
    parts = int(TARGETS[preset]["model.num_parts"])
    eta = args.eta * h / 8  # eta counts cells: the 8x4 default scales with the map
    cues, evidence = target_cues(probes, fmaps)

    def parsing(labels: torch.Tensor, stripes: bool = False) -> dict[str, float]:
        conf = ParsingConfusion(parts, NUM_GT_LABELS, None if stripes else parts - 1)
        conf.update(labels, masks)
        s = conf.scores()
        return {"fg_iou": s["fg_iou"], "part_miou": s["part_miou"]}

    rows: dict[str, dict] = {}
    for name, cue in cues.items():
        fg = None if name.startswith("norm") else foreground_from_cue(cue - cue.amin((1, 2), keepdim=True))
        rows[name] = {"within_auc": within_position_auc(cue, body)[0], "pooled_auc": binary_auc(cue, body),
                      **parsing(spatial_cascaded_clustering(fmaps, parts, eta=eta, foreground=fg))}
    families = attribute_families(parts)
    attr_fg = foreground_from_cue(cues["attribute CAM"] - cues["attribute CAM"].amin((1, 2), keepdim=True))
    rows["attribute CAM parts"] = parsing(family_parts(evidence, families, attr_fg, parts - 1))
    rows["attribute CAM parts, true foreground"] = parsing(family_parts(evidence, families, body, parts - 1))
    rows["SCC, true foreground"] = parsing(spatial_cascaded_clustering(fmaps, parts, eta=eta, foreground=body))
    rows["stripes"] = parsing(horizontal_stripes(n, h, w, parts), stripes=True)
    rows["ground truth pooled (ceiling)"] = parsing(oracle_part_labels(masks, parts, (h, w)))
    return {"preset": preset, "input": list(size), "map": [h, w], "l": parts, "eta": eta, "images": n,
            "rows": rows}


def to_markdown(results: list[dict], command: str) -> str:
    lines = ["## Does the trunk know the body? Cues learned on the source, scored on the targets", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, 2 CPU cores, torch {torch.__version__}. AUC: body cells (most pixels "
             "body) against background cells, within each grid position (content only) and pooled; SCC rows: "
             "the cue as step 1's foreground (the norm row is SCC as the loop runs it). Part mIoU over the 5 GT "
             "body labels after one Hungarian assignment (``parsing_quality``). The source-mask probe reads "
             "ground-truth masks of the source world: an upper bound, never a method.", ""]
    for r in results:
        lines += [f"### `{r['checkpoint']}` on `{r['preset']}`, input {r['input'][0]}x{r['input'][1]} "
                  f"(map {r['map'][0]}x{r['map'][1]}, l = {r['l']}, eta = {r['eta']:g}, {r['images']} images)", "",
                  f"Fitted on {r['source_images']} source images: body probe AUC on held-out source identities "
                  f"{r['source_fg_auc']:.3f}; attribute accuracy on held-out identities {r['source_attr_acc']:.3f}.",
                  "", "| cue / pseudo masks | within-position AUC | pooled AUC | fg IoU | part mIoU |",
                  "| --- | --- | --- | --- | --- |"]
        for name, row in r["rows"].items():
            auc = (f"{row['within_auc']:.3f} | {row['pooled_auc']:.3f}" if "within_auc" in row else "- | -")
            lines.append(f"| {name} | {auc} | {row['fg_iou']:.3f} | {row['part_miou']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", nargs="+", default=[ZOO_SOURCE])
    p.add_argument("--presets", nargs="+", default=["market", "msmt"], choices=sorted(TARGETS))
    p.add_argument("--source-root", default=PLIP_PRETRAIN["root"])
    p.add_argument("--source-images", type=int, default=3000)
    p.add_argument("--max-images", type=int, default=600)
    p.add_argument("--eta", type=float, default=3.0, help="SCC's eta at an 8x4 map (scaled with the map height)")
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--out", default="experiments/results/analyses/source_probes.json")
    p.add_argument("--markdown", default="docs/bench/source_probes.md")
    args = p.parse_args(argv)
    if args.source_root == PLIP_PRETRAIN["root"]:  # the pretraining's own world: generated if missing
        ensure_synthetic(args.source_root, PLIP_PRETRAIN["preset"], 0, progress=False)
    results = []
    for ckpt in args.checkpoint:
        model, spec = feature_model(ckpt)
        size = (spec.height, spec.width)
        probes = fit_probes(model, spec, size, args.source_root, args.source_images)
        for preset in args.presets:
            results.append({"checkpoint": ckpt, "source_images": probes["source_images"],
                            "source_fg_auc": probes["source_fg_auc"], "source_attr_acc": probes["source_attr_acc"],
                            **score_preset(probes, model, spec, preset, size, args)})
    command = (f"python -m experiments.analyses.source_probes --checkpoint {' '.join(args.checkpoint)} --presets "
               f"{' '.join(args.presets)} --source-images {args.source_images} --max-images {args.max_images}")
    write_outputs({"rows": results}, args.out, args.markdown, to_markdown(results, command))


if __name__ == "__main__":
    main()
