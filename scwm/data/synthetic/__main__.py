"""CLI: ``python -m scwm.data.synthetic --preset market --out DIR --seed 0 [--preview [PATH]]``."""

from __future__ import annotations

import argparse
import sys
import time

from .config import PRESETS, preset
from .writer import OutputDirError, generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scwm.data.synthetic",
                                 description="Render a synthetic pedestrian re-ID dataset (Market-1501 layout, "
                                             "with part label masks).")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="market")
    ap.add_argument("--out", required=True, help="output directory (empty, or an earlier output of the same "
                                                 "preset and seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preview", nargs="?", const=True, default=None, metavar="PATH",
                    help="also write a preview sheet (default OUT/preview.png)")
    ap.add_argument("--num-workers", type=int, default=0, help="worker processes (0 = render in this process)")
    ap.add_argument("--overwrite", action="store_true", help="replace earlier generator outputs in OUT")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--track-background", type=float, default=None, metavar="S",
                    help="scale of each tracklet's own backdrop change (preset default 1; 0 = every tracklet of a "
                         "camera scene sees the same backdrop)")
    ap.add_argument("--scenes", nargs="+", default=None, choices=("street", "park", "indoor", "studio"),
                    help="draw every camera scene from these kinds instead of the preset's camera domain's "
                         "(e.g. a cluttered source domain: --preset source --scenes street park indoor)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        config = preset(args.preset)
        if args.track_background is not None:
            config = config.model_validate({**config.model_dump(), "track_background": args.track_background})
        if args.scenes is not None:
            config = config.model_validate({**config.model_dump(), "scene_kinds": tuple(args.scenes)})
        out = generate(config, args.out, seed=args.seed, progress=not args.quiet,
                       num_workers=args.num_workers, overwrite=args.overwrite, preview=args.preview)
    except (OutputDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
