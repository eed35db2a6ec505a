"""The demo's quality bar, measured: plain vs OHEM SqueezeNet Faster R-CNN, the same recipe,
over several seeds (each seed makes its own dataset and training run).

    python benchmarks/bench_demo.py [--out output/bench_demo] [--seeds 1 2 3]
                                    [--nets plain ohem] [--iters N] [--jobs 1]
                                    [--set KEY VALUE ...] [--recipe FIELD=VALUE ...]

Each run is ``frcnn demo --seed S [--ohem]`` (``frcnn.app.demo``) in
``OUT/seed<S>/``; the figures come from its run.json and eval.json.  Prints a row per run,
then the mean and the spread (sample standard deviation, min..max) per net, and writes
``OUT/bench_demo.json``.  A plain run takes about 8 minutes on 2 CPU cores, an OHEM run
about twice that.  ``--jobs 2`` runs two at a time, one BLAS thread each (more runs per
hour on 2 cores; the seconds per iteration are then those of a loaded machine).
``--set`` passes config overrides to every run (``frcnn demo --set``), ``--scales`` anchor
scales (``frcnn demo --scales``), ``--recipe`` recipe fields (``frcnn demo --recipe``,
e.g. ``trunk_filler=msra``): how a lever is measured, e.g. ``--seeds 3 --nets plain
--set TRAIN.USE_EMPTY_IMAGES True --out output/lever_empty``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from frcnn.app.demo import DEMO
from frcnn.fileio import write_atomic


def figures(root: Path, ohem: bool) -> dict:
    """One run's figures from its run.json and eval.json."""
    suffix = "_ohem" if ohem else ""
    run = json.loads((root / f"train{suffix}" / "run.json").read_text())
    ev = json.loads((root / f"test{suffix}" / "eval.json").read_text())
    return {"net": run["net"], "iters": run["iters"], "s_per_iter": run["seconds_per_iter"],
            "train_s": run["train_seconds"], "s_per_image": ev["seconds_per_image"],
            "map_voc07": ev["ap_voc07"]["mAP"], "map_area": ev["ap_area"]["mAP"],
            "ap_voc07": {k: v for k, v in ev["ap_voc07"].items() if k != "mAP"},
            "ap_area": {k: v for k, v in ev["ap_area"].items() if k != "mAP"}}


def spread(values: list[float]) -> str:
    """'mean +- sd (min..max)' of a list (sd 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{statistics.mean(values):.3f} +- {sd:.3f} ({min(values):.3f}.."
            f"{max(values):.3f})")


def _run(out: Path, seed: int, ohem: bool, iters: int, threads: int | None,
         set_pairs: list[str], scales: str | None, recipe: list[str]) -> None:
    env = dict(os.environ)
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "frcnn.cli", "demo", "--out", str(out), "--seed", str(seed),
           "--iters", str(iters)] + (["--ohem"] if ohem else []) + (
               ["--set", *set_pairs] if set_pairs else []) + (
               ["--scales", scales] if scales else []) + (
               ["--recipe", *recipe] if recipe else [])
    log = out / f"demo{'_ohem' if ohem else ''}.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        print(f"[bench_demo] {' '.join(cmd[2:])}  (log {log})", flush=True)
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="output/bench_demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--nets", nargs="+", choices=("plain", "ohem"), default=["plain", "ohem"])
    ap.add_argument("--iters", type=int, help="training iterations (default: the recipe's)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report", action="store_true",
                    help="run nothing: report the runs already in OUT (e.g. runs made by "
                         "several invocations side by side)")
    ap.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE",
                    help="config overrides for every run (frcnn demo --set)")
    ap.add_argument("--scales", help="anchor scales for every run (frcnn demo --scales)")
    ap.add_argument("--recipe", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="recipe changes for every run (frcnn demo --recipe), e.g. "
                         "trunk_filler=msra")
    args = ap.parse_args(argv)
    if len(args.set_pairs) % 2:
        ap.error(f"--set takes KEY VALUE pairs, got {args.set_pairs}")
    try:
        recipe = DEMO.replace(args.recipe)
    except ValueError as e:
        ap.error(str(e))
    root = Path(args.out)
    runs = [(seed, net == "ohem") for net in args.nets for seed in args.seeds]
    threads = 1 if args.jobs > 1 else None
    if not args.report:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda r: _run(root / f"seed{r[0]}", r[0], r[1],
                                         args.iters or recipe.iters, threads, args.set_pairs,
                                         args.scales, args.recipe), runs))
    rows = [{"seed": seed, **figures(root / f"seed{seed}", ohem)} for seed, ohem in runs]
    print(f"\n{'net':<36} {'seed':>4} {'iters':>6} {'s/iter':>7} {'train s':>8} "
          f"{'s/image':>8} {'mAP07':>6} {'mAParea':>7}  per-class AP (VOC07)")
    for r in rows:
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in r["ap_voc07"].items())
        print(f"{r['net']:<36} {r['seed']:>4} {r['iters']:>6} {r['s_per_iter']:>7.3f} "
              f"{r['train_s']:>8.0f} {r['s_per_image']:>8.3f} {r['map_voc07']:>6.3f} "
              f"{r['map_area']:>7.3f}  {per_class}")
    summary = {}
    for net in dict.fromkeys(r["net"] for r in rows):
        mine = [r for r in rows if r["net"] == net]
        summary[net] = {key: spread([r[key] for r in mine])
                        for key in ("map_voc07", "map_area", "s_per_iter")}
        print(f"{net:<36} over seeds {[r['seed'] for r in mine]}: mAP VOC07 "
              f"{summary[net]['map_voc07']}, area {summary[net]['map_area']}, s/iter "
              f"{summary[net]['s_per_iter']}")
    write_atomic(root / "bench_demo.json", json.dumps(
        {"runs": rows, "summary": summary, "set": args.set_pairs, "scales": args.scales,
         "recipe": args.recipe},
        indent=2).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
