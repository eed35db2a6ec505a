"""The demo's quality bar, measured: plain vs OHEM SqueezeNet Faster R-CNN at the same
iterations on the synthetic dataset (VOC07 and area mAP, seconds per training iteration
and per test image).

    python benchmarks/bench_demo.py [--out output/bench_demo] [--iters N] [--only plain|ohem]

Each net is trained by ``frcnn demo`` (``frcnn.app.demo``) into its own folder; the figures
come from the run's run.json and eval.json.  Takes about 10 minutes per plain run and more
for OHEM on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from frcnn.app.demo import DEMO, run_demo


def _figures(root: Path, ohem: bool) -> dict:
    suffix = "_ohem" if ohem else ""
    run = json.loads((root / f"train{suffix}" / "run.json").read_text())
    ev = json.loads((root / f"test{suffix}" / "eval.json").read_text())
    return {"net": run["net"], "iters": run["iters"], "s_per_iter": run["seconds_per_iter"],
            "train_s": run["train_seconds"], "s_per_image": ev["seconds_per_image"],
            "map_voc07": ev["ap_voc07"]["mAP"], "map_area": ev["ap_area"]["mAP"],
            "ap_voc07": {k: v for k, v in ev["ap_voc07"].items() if k != "mAP"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="output/bench_demo")
    ap.add_argument("--iters", type=int, default=DEMO.iters)
    ap.add_argument("--only", choices=("plain", "ohem"))
    args = ap.parse_args(argv)
    root = Path(args.out)
    rows = []
    for ohem in (False, True):
        if args.only and args.only != ("ohem" if ohem else "plain"):
            continue
        run_demo(str(root), iters=args.iters, ohem=ohem)
        rows.append(_figures(root, ohem))
    print(f"\n{'net':<36} {'iters':>6} {'s/iter':>7} {'train s':>8} {'s/image':>8} "
          f"{'mAP07':>6} {'mAParea':>7}  per-class AP (VOC07)")
    for r in rows:
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in r["ap_voc07"].items())
        print(f"{r['net']:<36} {r['iters']:>6} {r['s_per_iter']:>7.3f} {r['train_s']:>8.0f} "
              f"{r['s_per_image']:>8.3f} {r['map_voc07']:>6.3f} {r['map_area']:>7.3f}  "
              f"{per_class}")
    (root / "bench_demo.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
