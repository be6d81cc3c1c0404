"""Search a gallery index from the command line.

``python -m serving.search --index DIR --query IMG [--k 10] [--json] [--model PATH] [--precision auto|fp32|int8]``
(by default the model is served at the precision the index was built with).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from serving.engine import PRECISION_CHOICES, PRECISION_HELP
from serving.index import GalleryIndexError
from serving.retriever import Retriever


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.search", description="Query a gallery index.")
    ap.add_argument("--index", required=True, help="index directory (python -m serving.index build)")
    ap.add_argument("--query", required=True, nargs="+", help="query image file(s)")
    ap.add_argument("--k", type=int, default=10, help="number of hits (default: %(default)s)")
    ap.add_argument("--model", help="ONNX model (default: the one recorded in the index manifest)")
    ap.add_argument("--precision", choices=PRECISION_CHOICES, help=f"{PRECISION_HELP}; it must serve the file that "
                    "built the index (default: $SCWM_PRECISION, else the precision the index was built with)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    if args.k < 1:
        ap.error(f"--k must be >= 1, got {args.k}")
    try:
        retriever = Retriever.load(args.index, model_path=args.model, precision=args.precision)
        t0 = time.perf_counter()
        results = retriever.search_batch(list(args.query), k=args.k)
        ms = (time.perf_counter() - t0) * 1e3
    except (GalleryIndexError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in zip(args.query, results,
                                                                                    strict=True)]
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
        return 0
    for q, hits in zip(args.query, results, strict=True):
        print(f"query {q} ({len(retriever)} gallery images, {ms:.1f} ms for {len(args.query)} queries)")
        print(f"{'rank':>4} {'score':>7} {'pid':>6} {'cam':>4}  path")
        for h in hits:
            pid = "-" if h.pid is None else h.pid
            cam = "-" if h.camera is None else h.camera
            print(f"{h.rank:>4} {h.score:7.4f} {pid!s:>6} {cam!s:>4}  {h.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
