"""mAP of ``serving.export``'s default files: the fp32 model and the int8-static one it calibrates on its own 8
rendered verification images (no ``--calibration-images``), on the full query/gallery split of a Market-layout root.

``python -m benchmarks.bench_int8_default --export-dir DIR --checkpoint CKPT --data ROOT`` after
``python -m serving.export --checkpoint CKPT --out DIR/model.onnx``; figures in docs/bench/int8.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.bench_int8 import _embed, session
from benchmarks.bench_serving import _rank_metrics
from scwm.data.images import load_image
from scwm.data.transforms import preprocess
from scwm.models import load_model

FILES = ("model.onnx", "model.int8-static.onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export-dir", required=True, help="folder holding model.onnx and model.int8-static.onnx")
    ap.add_argument("--checkpoint", required=True, help="the exported checkpoint (for its input size and mean/std)")
    ap.add_argument("--data", required=True, help="Market-layout root with query/ and bounding_box_test/")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    out, data = Path(args.export_dir), Path(args.data)
    missing = [str(out / f) for f in FILES if not (out / f).is_file()]
    if missing:
        ap.error(f"not found: {', '.join(missing)} (run python -m serving.export --out {out / FILES[0]} first)")
    _, spec = load_model(args.checkpoint)
    queries, gallery = sorted((data / "query").glob("*.jpg")), sorted((data / "bounding_box_test").glob("*.jpg"))
    if not queries or not gallery:
        ap.error(f"{data} has no query/*.jpg or bounding_box_test/*.jpg")

    def prep(files: list[Path]) -> np.ndarray:
        return np.stack([preprocess(load_image(p), spec.height, spec.width, spec.mean, spec.std) for p in files])

    xq, xg = prep(queries), prep(gallery)
    emb = {}
    for name in FILES:
        sess = session(out / name, args.threads)
        emb[name] = (_embed(sess, xq, 32), _embed(sess, xg, 32))
    ref_q, ref_g = emb[FILES[0]]
    print(f"{len(queries)} queries vs {len(gallery)} gallery images of {data}")
    for name, (q, g) in emb.items():
        cos = np.concatenate([(q * ref_q).sum(1), (g * ref_g).sum(1)])
        m, r1 = _rank_metrics(q, g, queries, gallery)
        print(f"{name}: mAP {100 * m:.2f}%, rank-1 {100 * r1:.2f}%, cosine to fp32 mean {cos.mean():.4f} / "
              f"min {cos.min():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
