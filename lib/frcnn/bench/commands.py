"""The ``frcnn bench`` subcommand (registered by frcnn.cli).

  frcnn bench [--quick] [--out output/bench] [--sizes 600,300] [--repeats 5]
              [--train-repeats 3] [--warmup 1] [--only inference,training,models,arithmetic]
      SqueezeNet (9 and 70 anchors) against ZF on the CPU: inference per stage, training
      per iteration, model sizes, achieved multiply-add rate; prints the tables and writes
      bench.json, bench.csv and bench.png into --out
  frcnn bench nms [--sizes 2000,6000 --thresh 0.7 --repeat 5 --seed 0 --reference-max N]
      benchmarks/bench_nms.py (our NMS against the numpy reference and peers)

Sizes are short sides (long side short * 5 / 3: 600 -> 600x1000, 300 -> 300x500) or HxW.
``--quick`` is a seconds-long smoke run (one tiny size, one run each, fewer proposals and
RoIs, K = 4 models only, a small GEMM): it checks the machinery, its figures mean little.

Nothing heavy is imported at module import time.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from frcnn import devices

PARTS = ("inference", "training", "models", "arithmetic")
DEFAULT_SIZES = ((600, 1000), (300, 500))
QUICK_SIZES = ((128, 213),)
# what --quick changes in the cfg: fewer proposals and RoIs, so the RoI heads are cheap
QUICK_CFG = {"TEST": {"RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 20},
             "TRAIN": {"RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 40,
                       "OHEM_BATCH_SIZE": 16}}


@dataclass
class BenchOptions:
    """What ``run_bench`` measures and how often."""

    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeats: int = 5          # timed inference runs per net and size
    train_repeats: int = 3    # timed training iterations per net and size
    warmup: int = 1           # untimed runs before those
    gemm_n: int = 2048        # reference GEMM: n x n x n
    model_classes: tuple[int, ...] = (4, 21)
    parts: tuple[str, ...] = PARTS
    seed: int = 0
    quick: bool = False
    cfg_overrides: dict = field(default_factory=dict)

    @classmethod
    def quick_options(cls, **changes: Any) -> "BenchOptions":
        opts = dict(sizes=QUICK_SIZES, repeats=1, train_repeats=1, warmup=0, gemm_n=512,
                    model_classes=(4,), quick=True, cfg_overrides=QUICK_CFG)
        opts.update(changes)
        return cls(**opts)


def cfg_overrides(base: dict | None, pairs: Sequence[str]) -> dict | None:
    """``base`` (a nested mapping such as QUICK_CFG) with ``--set`` KEY VALUE pairs on top,
    checked against the config's keys now (a typo fails before minutes of benchmarking)."""
    from frcnn import config

    given = config.pairs_to_dict(list(pairs))
    config.merge_dict(given, config.default_config())   # raises ConfigError on a bad key
    return config.overlay(base or {}, given) or None


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'600,300' -> ((600, 1000), (300, 500)); 'HxW' items are taken as given."""
    sizes = []
    for item in (t.strip().lower() for t in text.split(",") if t.strip()):
        try:
            if "x" in item:
                h, w = (int(v) for v in item.split("x"))
            else:
                h = int(item)
                w = round(h * 5 / 3)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected short sides or HxW, got {item!r}")
        if h < 32 or w < 32:
            raise argparse.ArgumentTypeError(f"image sizes must be at least 32, got {item!r}")
        sizes.append((h, w))
    if not sizes:
        raise argparse.ArgumentTypeError("no size given")
    return tuple(sizes)


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}; got {text!r}")
    return parts


def _inference_nets() -> list[tuple[str, Any]]:
    from frcnn.nets.variants import preset

    return [("squeezenet", preset("squeezenet/faster_rcnn_end2end")),
            ("squeezenet-70", preset("squeezenet/faster_rcnn_end2end_ohem_seed70")),
            ("zf", preset("zf/faster_rcnn_end2end"))]


def _training_nets() -> list[tuple[str, Any]]:
    from frcnn.nets.variants import preset

    return [("squeezenet", preset("squeezenet/faster_rcnn_end2end")),
            ("squeezenet-ohem", preset("squeezenet/faster_rcnn_end2end_ohem")),
            ("zf", preset("zf/faster_rcnn_end2end"))]


def zf_ratios(inference: list[dict], base: str = "zf") -> list[dict]:
    """ZF time / net time per stage and in total, for every non-ZF net and size."""
    out = []
    for r in inference:
        if r["net"] == base:
            continue
        zf = next((z for z in inference if z["net"] == base and z["size"] == r["size"]), None)
        if zf is None:
            continue
        row = {"net": r["net"], "size": r["size"]}
        for key in ("backbone", "roi_head", "post"):
            row[key] = zf["ms"][key] / r["ms"][key] if r["ms"][key] else float("nan")
        row["rpn_proposal"] = zf["rpn_proposal_ms"] / r["rpn_proposal_ms"]
        row["total"] = zf["total_ms"] / r["total_ms"]
        out.append(row)
    return out


def arithmetic_rates(inference: list[dict]) -> list[dict]:
    """Achieved multiply-adds per second of each inference result, whole and per stage."""
    out = []
    for r in inference:
        stages = {}
        for stage in ("backbone", "rpn", "roi_head"):
            ms = r["ms"][stage]
            stages[stage] = {"macs": r["macs"][stage], "ms": ms,
                             "macs_per_s": r["macs"][stage] / (ms / 1e3) if ms else 0.0}
        out.append({"net": r["net"], "size": r["size"], "macs": r["total_macs"],
                    "macs_per_s": r["total_macs"] / (r["total_ms"] / 1e3), "stages": stages})
    return out


def _notes(results: dict) -> list[str]:
    notes = []
    m = results["machine"]
    loads = [v for v in (m.get("load_average") or [])[:1] + (results.get(
        "load_average_end") or [])[:1]]
    if loads and max(loads) > 0.5 * (m["usable_cores"] or 1) + 0.5:
        notes.append(f"other work was running (1-minute load average up to {max(loads):.2f} "
                     f"on {m['usable_cores']} cores): timings may be noisy")
    a = results.get("arithmetic")
    if a and a["caffe_gemm"]["macs_per_s"] < 0.5 * a["numpy_gemm"]["macs_per_s"]:
        cores = {b["user"]: b["core"] for b in m.get("blas", [])}
        notes.append(
            f"Caffe's BLAS reaches {a['caffe_gemm']['macs_per_s'] / 1e9:.1f} GMAC/s on the "
            f"reference GEMM, numpy's {a['numpy_gemm']['macs_per_s'] / 1e9:.1f}: Caffe's "
            f"OpenBLAS runs its {cores.get('caffe', '?')} kernels here (numpy's: "
            f"{cores.get('numpy', '?')}); OPENBLAS_CORETYPE={cores.get('numpy', 'Haswell')} "
            f"in the environment lets it use the CPU's vector units (the benchmark leaves the "
            f"environment as it is)")
    for size, d in results.get("data_layer", {}).items():
        if not d.get("measured"):
            notes.append(f"RoIDataLayer {size} not measured: {d.get('reason')}")
    for r in results.get("training", []):
        notes += [f"{r['net']}: {n}" for n in r.get("notes", [])]
    if results["settings"]["quick"]:
        notes.append("--quick: tiny image, single runs, fewer proposals and RoIs; the figures "
                     "check the machinery only")
    return notes


def run_bench(opts: BenchOptions, log: Callable[[str], None] = print) -> dict:
    """Measure what ``opts`` asks for; returns the results dict (see frcnn.bench.report)."""
    from frcnn import config
    from frcnn.bench import arithmetic, inference, models, report, training
    from frcnn.bench.nets import import_caffe

    start = time.time()
    import_caffe()
    overrides = opts.cfg_overrides or None
    post_n = (overrides or {}).get("TEST", {}).get("RPN_POST_NMS_TOP_N",
                                                   config.cfg.TEST.RPN_POST_NMS_TOP_N)
    results: dict = {
        "machine": report.machine_info(),
        "settings": {"sizes": [f"{h}x{w}" for h, w in opts.sizes], "repeats": opts.repeats,
                     "train_repeats": opts.train_repeats, "warmup": opts.warmup,
                     "gemm_n": opts.gemm_n, "parts": list(opts.parts), "seed": opts.seed,
                     "quick": opts.quick, "rpn_post_nms_top_n": post_n},
    }
    for line in report.header_lines(results):
        log(line)

    if "inference" in opts.parts:
        nets = _inference_nets()
        log(f"[bench] inference: {len(nets)} test nets x {len(opts.sizes)} sizes, "
            f"{opts.warmup} + {opts.repeats} runs each")
        runs = []
        for size in opts.sizes:
            for label, variant in nets:
                runs.append(inference.bench_inference(
                    label, variant, size, opts.repeats, opts.warmup, opts.seed, overrides,
                    log))
        results["inference"] = runs
        results["ratios"] = zf_ratios(runs)
    if "arithmetic" in opts.parts:
        log(f"[bench] reference GEMM {opts.gemm_n}^3 (numpy, Caffe InnerProduct)")
        results["arithmetic"] = {
            "numpy_gemm": arithmetic.numpy_gemm_rate(opts.gemm_n, seed=opts.seed),
            "caffe_gemm": arithmetic.caffe_gemm_rate(opts.gemm_n, seed=opts.seed),
            "nets": arithmetic_rates(results.get("inference", [])),
        }
    if "training" in opts.parts:
        nets = _training_nets()
        log(f"[bench] training: {len(nets)} train nets x {len(opts.sizes)} sizes, "
            f"{opts.warmup} + {opts.train_repeats} iterations each, and the data layer")
        runs, data = [], {}
        for size in opts.sizes:
            data[f"{size[0]}x{size[1]}"] = training.bench_data_layer(
                size, max(opts.train_repeats, 3), opts.warmup, opts.seed, log=log)
            for label, variant in nets:
                runs.append(training.bench_training(
                    label, variant, size, opts.train_repeats, opts.warmup, opts.seed,
                    overrides, log))
        results["training"], results["data_layer"] = runs, data
    if "models" in opts.parts:
        log(f"[bench] models: K = {', '.join(map(str, opts.model_classes))}")
        sizes = []
        for label, variant in _inference_nets():
            for k in opts.model_classes:
                sizes.append(models.model_size(label, variant.replace(num_classes=k), log))
        results["models"] = sizes
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["seconds"] = round(time.time() - start, 1)
    results["notes"] = _notes(results)
    return results


def _cmd_bench_backends(args: argparse.Namespace) -> int:
    import json

    from frcnn.bench import arithmetic
    from frcnn.bench.backends import bench_backends, format_table
    from frcnn.bench.nets import import_caffe
    from frcnn.fileio import write_atomic
    from frcnn.nets.variants import preset

    quick = args.quick
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    sizes = args.sizes or (QUICK_SIZES if quick else DEFAULT_SIZES)
    repeats = args.repeats or (1 if quick else 5)
    warmup = args.warmup if args.warmup is not None else (0 if quick else 1)
    overrides = cfg_overrides(QUICK_CFG if quick else None, args.set_pairs)
    import_caffe()
    start = time.time()
    gemm = arithmetic.caffe_gemm_rate(512 if quick else 2048)
    print(f"[bench] backends {', '.join(backends)}: Caffe float32 GEMM "
          f"{gemm['macs_per_s'] / 1e9:.1f} GMAC/s", flush=True)
    nets = [("squeezenet", preset("squeezenet/faster_rcnn_end2end")),
            ("zf", preset("zf/faster_rcnn_end2end"))]
    rows = bench_backends(nets, sizes, backends, repeats, warmup, args.seed or 0,
                          gemm["macs_per_s"],
                          overrides=overrides,
                          log=lambda line: print(line, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "backends.json", json.dumps(
        {"gemm": gemm, "rows": rows, "cfg_overrides": overrides,
         "seconds": round(time.time() - start, 1)}, indent=2).encode() + b"\n")
    print()
    print(format_table(rows))
    print(f"\n{time.time() - start:.0f} s; wrote {out / 'backends.json'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from frcnn.bench import report

    if args.backends:
        return _cmd_bench_backends(args)

    if args.quick:
        opts = BenchOptions.quick_options()
    else:
        opts = BenchOptions()
    changes = {k: getattr(args, k) for k in ("sizes", "repeats", "train_repeats", "warmup",
                                             "parts", "seed")
               if getattr(args, k) is not None}
    for key in ("repeats", "train_repeats"):
        if changes.get(key, 1) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1")
    if changes.get("warmup", 0) < 0:
        raise ValueError("--warmup must be >= 0")
    if args.set_pairs:
        changes["cfg_overrides"] = cfg_overrides(opts.cfg_overrides, args.set_pairs)
    opts = BenchOptions(**{**asdict(opts), **changes})
    results = run_bench(opts, log=lambda line: print(line, flush=True))
    paths = report.write_all(results, args.out)
    print()
    print(report.format_report(results))
    print(f"\n{results['seconds']:.0f} s; wrote " + ", ".join(str(p) for p in paths))
    return 0


def _bench_nms_path() -> Path:
    import frcnn

    return Path(frcnn.__file__).resolve().parents[2] / "benchmarks" / "bench_nms.py"


def _cmd_bench_nms(args: argparse.Namespace) -> int:
    import importlib.util

    path = _bench_nms_path()
    if not path.is_file():
        raise FileNotFoundError(f"benchmarks/bench_nms.py not found at {path} (it is in the "
                                f"source checkout)")
    spec = importlib.util.spec_from_file_location("bench_nms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = []
    for flag, dest in (("--sizes", "nms_sizes"), ("--thresh", "thresh"),
                       ("--repeat", "repeat"), ("--seed", "nms_seed"),
                       ("--reference-max", "reference_max")):
        value = getattr(args, dest)
        if value is not None:
            argv += [flag, str(value)]
    return int(module.main(argv) or 0)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="SqueezeNet vs ZF: inference and training time, model size, arithmetic",
        description="Benchmark the detectors on the CPU (random weights and images): "
                    "inference per stage, training per iteration, model sizes, achieved "
                    "multiply-add rate.  Prints the tables; writes bench.json, bench.csv "
                    "and bench.png into --out.")
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long smoke run (tiny image, single runs)")
    p.add_argument("--out", default="output/bench", metavar="DIR",
                   help="output folder (default output/bench)")
    p.add_argument("--sizes", type=parse_sizes, default=None, metavar="LIST",
                   help="short sides (600 -> 600x1000) or HxW, comma-separated "
                        "(default 600,300)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed inference runs per net and size (default 5)")
    p.add_argument("--train-repeats", type=int, default=None, metavar="N",
                   help="timed training iterations per net and size (default 3)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="untimed runs first (default 1)")
    p.add_argument("--only", dest="parts", type=_parts, default=None, metavar="PARTS",
                   help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="weights and image seed (default 0)")
    p.add_argument("--backends", default=None, metavar="LIST",
                   help="compare deployment backends instead (caffe,onnxruntime,opencv,openvino,"
                        "openvino-native): "
                        "the SqueezeNet and ZF detectors exported and run in each, per stage; "
                        "writes backends.json")
    p.add_argument("--set", dest="set_pairs", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides for the benchmarked nets, e.g. --set "
                        "TEST.RPN_MIN_SIZE 0 (OpenCV's Proposal layer has no min_size)")
    devices.add_argument(p)
    p.set_defaults(func=_cmd_bench)

    sub = p.add_subparsers(dest="bench_command", metavar="[nms]")
    n = sub.add_parser("nms", help="benchmarks/bench_nms.py: NMS and bbox_overlaps",
                       description="Run benchmarks/bench_nms.py (unset options: its defaults).")
    n.add_argument("--sizes", dest="nms_sizes", metavar="LIST",
                   help="comma-separated box counts")
    n.add_argument("--thresh", type=float, metavar="X", help="IoU threshold")
    n.add_argument("--repeat", type=int, metavar="N", help="runs per figure, best taken")
    n.add_argument("--seed", dest="nms_seed", type=int, metavar="N")
    n.add_argument("--reference-max", type=int, metavar="N",
                   help="skip the numpy reference above this N")
    n.set_defaults(func=_cmd_bench_nms)
