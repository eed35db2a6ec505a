"""The README's figures from a fresh run: every table, with its command and machine.

    python tools/readme_figures.py [--quick] [--only SECTION ...] [--demo]
                                        [--out output/readme_figures] [--from DIR]

Runs the benchmarks behind the README's tables, each in its own process with its output
(JSON and a log) under OUT/<section>/, then prints every table as Markdown in the
README's column layout, each preceded by the command that produced it and followed by a
machine line (CPU model, cores, load average at the start and end of that section, the
OPENBLAS_CORETYPE the caffe package chose, date).  Writes OUT/figures.md (what it prints)
and OUT/figures.json (commands, machine lines and every benchmark's data).

Sections, in the README's order:

  demo       ## The main job: per-class AP, plain vs OHEM    benchmarks/bench_demo.py
             (long: minutes per run, so only with --demo or --only demo, or read back with
             --from from a folder holding its bench_demo.json)
  deploy     ## Deploy: parity on the demo model             benchmarks/bench_deploy.py
             (needs a trained model: --deploy-model, else output/demo/train's, else the
             one this run's demo section trained)
  backends   ## Deploy: speed per backend                    frcnn bench --backends ...
  bench      ## Performance: the whole detector, training,   frcnn bench
             model sizes
  openblas   ## Performance: OpenBLAS kernels                benchmarks/bench_openblas.py
             (Caffe's GEMM per OPENBLAS_CORETYPE, each in its own process)
  nms        ## Performance: NMS and box overlaps            benchmarks/bench_nms.py
  proposals  ## Performance: proposal layer speed            benchmarks/bench_proposals.py
             (--proposal-runs runs; the table gives the range of their medians)

--quick runs every benchmark at its smallest (a smoke run: the figures mean little).
--from DIR renders the tables again from a folder this script wrote (or from one holding
the benchmarks' own JSON files: bench.json, backends.json, deploy.json, openblas.json,
nms.json, proposals*.json, bench_demo.json) without running anything.

NMS peers (torchvision, OpenCV 5) may live in another venv: --peer-path DIR puts that
venv's site-packages on bench_nms's PYTHONPATH, ahead of this one's.  A peer that does not
import is 'n/a' in the table, with a footnote saying why.

The renderers (``render_*``, ``table_*``, ``machine_line``) are pure: a data dict in, a
Markdown string out.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("demo", "deploy", "backends", "bench", "openblas", "nms", "proposals")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "demo")
TITLES = {
    "demo": "The main job (`frcnn demo`): plain vs OHEM",
    "deploy": "Deploy: parity on the demo model",
    "backends": "Deploy: speed per backend",
    "bench": "Performance: the whole detector (`frcnn bench`)",
    "openblas": "Performance: OpenBLAS kernels",
    "nms": "Performance: NMS and box overlaps",
    "proposals": "Performance: proposal layer speed",
}
DEMO_MODEL = Path("output/demo/train")
PLAIN_NET = "squeezenet/faster_rcnn_end2end"
INFERENCE_LABELS = {"squeezenet": "squeezenet", "squeezenet-70": "squeezenet, 70 anchors",
                    "zf": "zf"}
TRAINING_LABELS = {"squeezenet": "squeezenet", "squeezenet-ohem": "squeezenet OHEM",
                   "zf": "zf"}
SUMMARY_LABELS = {"map_voc07": "mAP VOC07", "map_area": "mAP area",
                  "s_per_iter": "s / iteration"}
NMS_PEERS = (("numpy ref", "numpy reference"), ("torchvision", "torchvision.ops.nms"),
             ("opencv", "cv2.dnn.NMSBoxes"))


# ----------------------------------------------------------------------------- formatting

def md_table(headers: Sequence[str], align: Sequence[str], rows: Iterable[Sequence[Any]]
             ) -> str:
    """A compact pipe table as the README writes them; ``align`` holds '---' or '---:'."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms_text(v: float | None) -> str:
    """frcnn bench's style: 0 decimals from 100 ms, else 1."""
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def short_text(v: float) -> str:
    """1 decimal below 20, else none (the proposal table's style)."""
    return f"{v:.1f}" if v < 20 else f"{v:.0f}"


def range_text(values: Sequence[float], fmt: Callable[[float], str] = short_text,
               suffix: str = "") -> str:
    """'lo-hi' of the values in ``fmt`` ('x' when they print alike); 'n/a' for none."""
    if not values:
        return "n/a"
    lo, hi = fmt(min(values)), fmt(max(values))
    return (lo if lo == hi else f"{lo}-{hi}") + suffix


def mean(values: Sequence[float]) -> float:
    return float(statistics.mean(values)) if values else float("nan")


# ----------------------------------------------------------------------------- machine

def openblas_coretype(environ: dict | None = None) -> dict:
    """{'value', 'source'}: OPENBLAS_CORETYPE as set in the environment, else as the caffe
    package would set it (its ``_openblas_coretype`` module, read without importing caffe
    and without changing this process's environment), else None."""
    environ = os.environ if environ is None else environ
    if environ.get("OPENBLAS_CORETYPE"):
        return {"value": environ["OPENBLAS_CORETYPE"], "source": "set in the environment"}
    try:
        spec = importlib.util.find_spec("caffe")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return {"value": None, "source": "no caffe package"}
    path = Path(spec.origin).parent / "_openblas_coretype.py"
    if not path.is_file():
        return {"value": None, "source": "the caffe package does not set it"}
    saved = os.environ.get("OPENBLAS_CORETYPE")
    try:
        module_spec = importlib.util.spec_from_file_location("_frcnn_coretype_probe", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        value = getattr(module, "CORETYPE", None)
    except Exception as e:  # a broken file must not stop the figures
        return {"value": None, "source": f"caffe's _openblas_coretype failed: {e}"}
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_CORETYPE", None)
        else:
            os.environ["OPENBLAS_CORETYPE"] = saved
    return {"value": value, "source": "set by the caffe package from the CPU flags"
            if value else "the caffe package left it to OpenBLAS"}


def cpu_model() -> str:
    from frcnn.bench.report import cpu_model as model

    return model()


def load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_start() -> dict:
    """The machine record at the start of a section (``machine_end`` completes it)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "load_start": load_average(), "load_end": None,
            "openblas_coretype": openblas_coretype(),
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}


def machine_end(machine: dict) -> dict:
    return {**machine, "load_end": load_average()}


def machine_line(m: dict | None) -> str:
    """'Machine: CPU, N cores; load average a at start, b at end; OPENBLAS_CORETYPE=...;
    date.' from a machine record (None or {'unknown': why}: says so)."""
    if not m or m.get("unknown"):
        why = (m or {}).get("unknown") or "not recorded"
        return f"Machine: not recorded ({why})."
    cores = f"{m.get('cores')} cores"
    if m.get("usable_cores") and m.get("usable_cores") != m.get("cores"):
        cores += f" ({m['usable_cores']} usable)"
    parts = [f"{m.get('cpu', 'unknown CPU')}, {cores}"]
    start, end = m.get("load_start"), m.get("load_end")
    if start or end:
        load = "load average (1 min) " + " at start, ".join(
            [f"{start[0]:.2f}" if start else "?", f"{end[0]:.2f}" if end else "?"]) + " at end"
        parts.append(load)
    core = m.get("openblas_coretype") or {}
    if core.get("value"):
        parts.append(f"OPENBLAS_CORETYPE={core['value']} ({core.get('source', '?')})")
    elif core:
        parts.append(f"OPENBLAS_CORETYPE unset ({core.get('source', '?')})")
    if m.get("date"):
        parts.append(m["date"])
    return "Machine: " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- demo

def _demo_runs(data: dict, net: str) -> list[dict]:
    return [r for r in data.get("runs", []) if r.get("net") == net]


def _per_class(runs: list[dict], key: str) -> dict[str, float] | None:
    """Mean per-class AP over the runs (None when a run lacks ``key``)."""
    if not runs or any(not r.get(key) for r in runs):
        return None
    classes = list(runs[0][key])
    return {c: mean([r[key][c] for r in runs if c in r[key]]) for c in classes}


def table_demo_classes(data: dict, net: str = PLAIN_NET) -> str:
    """| class | AP (VOC07) | AP (area) | of ``net`` (the mean over its runs)."""
    runs = _demo_runs(data, net)
    voc = _per_class(runs, "ap_voc07") or {}
    area = _per_class(runs, "ap_area")
    rows = [[c, f"{v:.3f}", f"{area[c]:.3f}" if area and c in area else "n/a"]
            for c, v in voc.items()]
    rows.append(["**mAP**", f"**{mean([r['map_voc07'] for r in runs]):.3f}**",
                 f"**{mean([r['map_area'] for r in runs]):.3f}**"])
    return md_table(["class", "AP (VOC07)", "AP (area)"], ["---"] * 3, rows)


def table_demo_compare(data: dict) -> str:
    """The plain vs OHEM table: one row per net, the mean over its runs."""
    rows = []
    for net in dict.fromkeys(r["net"] for r in data.get("runs", [])):
        runs = _demo_runs(data, net)
        voc = _per_class(runs, "ap_voc07") or {}
        rows.append([net, f"{mean([r['s_per_iter'] for r in runs]):.3f}",
                     f"{mean([r['train_s'] for r in runs]):.0f} s",
                     f"{mean([r['s_per_image'] for r in runs]):.3f}",
                     f"{mean([r['map_voc07'] for r in runs]):.3f}",
                     f"{mean([r['map_area'] for r in runs]):.3f}",
                     " / ".join(f"{v:.3f}" for v in voc.values())])
    return md_table(["net", "s / iteration", "training", "s / test image", "mAP VOC07",
                     "mAP area", "circle / square / triangle (VOC07)"],
                    ["---"] + ["---:"] * 5 + ["---"], rows)


def table_demo_runs(data: dict) -> str:
    """One row per run (net, seed): the compare table's columns."""
    rows = [[r["net"], r.get("seed", "?"), r.get("iters", "?"), f"{r['s_per_iter']:.3f}",
             f"{r['train_s']:.0f} s", f"{r['s_per_image']:.3f}", f"{r['map_voc07']:.3f}",
             f"{r['map_area']:.3f}", " / ".join(f"{v:.3f}" for v in r["ap_voc07"].values())]
            for r in data.get("runs", [])]
    return md_table(["net", "seed", "iterations", "s / iteration", "training",
                     "s / test image", "mAP VOC07", "mAP area",
                     "circle / square / triangle (VOC07)"],
                    ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"],
                    rows)


def render_demo(data: dict) -> list[dict]:
    runs = data.get("runs", [])
    if not runs:
        return [{"title": "no runs", "notes": ["bench_demo.json lists no run"]}]
    plain = _demo_runs(data, PLAIN_NET) or _demo_runs(data, runs[0]["net"])
    net = plain[0]["net"]
    seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
    over = f" (mean over seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    notes = [f"{net}: training {mean([r['train_s'] for r in plain]):.0f} s "
             f"({mean([r['s_per_iter'] for r in plain]):.3f} s/iteration), testing "
             f"{mean([r['s_per_image'] for r in plain]):.3f} s/image, "
             f"{plain[0].get('iters', '?')} iterations{over}."]
    if _per_class(plain, "ap_area") is None:
        notes.append("AP (area) per class: n/a (bench_demo.json has no per-class area AP "
                     "and no eval.json was found beside it)")
    blocks = [{"title": f"Per-class AP, {net}{over}", "table": table_demo_classes(data, net),
               "notes": notes}]
    notes = []
    nets = list(dict.fromkeys(r["net"] for r in runs))
    if len(nets) == 2:
        a, b = (_demo_runs(data, n) for n in nets)
        gain = 100 * (mean([r["map_voc07"] for r in b]) - mean([r["map_voc07"] for r in a]))
        cost = mean([r["s_per_iter"] for r in b]) / mean([r["s_per_iter"] for r in a])
        notes.append(f"{nets[1]} against {nets[0]}: {gain:+.1f} points of mAP (VOC07) for "
                     f"{cost:.1f}x the time per iteration.")
    for name, s in (data.get("summary") or {}).items():
        if isinstance(s, dict) and len(_demo_runs(data, name)) > 1:
            notes.append(f"{name} over {len(_demo_runs(data, name))} runs: " + "; ".join(
                f"{SUMMARY_LABELS.get(k, k)} {v}" for k, v in s.items())
                + " (mean +- sd (min..max))")
    blocks.append({"title": f"Plain vs OHEM{over}", "table": table_demo_compare(data),
                   "notes": notes})
    if len(runs) > len(nets):
        blocks.append({"title": "Every run", "table": table_demo_runs(data), "notes": []})
    return blocks


# ----------------------------------------------------------------------------- deploy

def _version_label(backend: str, versions: dict) -> str:
    if backend == "opencv" and versions.get("opencv"):
        return f"opencv ({'.'.join(str(versions['opencv']).split('.')[:2])})"
    return backend


def table_deploy(data: dict) -> str:
    """bench_deploy.py's deploy.json -> the README's parity table."""
    versions = data.get("versions") or {}
    rows = []
    for backend, r in (data.get("results") or {}).items():
        if backend == "caffe" or "images" not in r:
            extra = ["-", "-", "-"]
        else:
            extra = [f"{r['images_same_detections']}/{r['images']}",
                     f"{r['max_box_diff']:.1e}", f"{r['max_score_diff']:.1e}"]
        rows.append([_version_label(backend, versions), f"{r['mAP_voc07']:.4f}",
                     f"{r['mAP_area']:.4f}", f"{r['seconds_per_image']:.3f}"] + extra)
    return md_table(["backend", "mAP VOC07", "mAP area", "s / image",
                     "images with Caffe's detections", "max box diff (px)", "max score diff"],
                    ["---"] + ["---:"] * 6, rows)


def render_deploy(data: dict) -> list[dict]:
    results = data.get("results") or {}
    notes = []
    if data.get("model"):
        notes.append(f"Model {data['model']}, dataset {data.get('dataset', '?')} under "
                     f"{data.get('root', '?')}"
                     + (f", first {data['max_images']} images" if data.get("max_images")
                        else "") + ".")
    parity = data.get("export_parity")
    if parity:
        names = {"feature": "the feature blob", "rpn_prob": "the RPN probabilities",
                 "rpn_deltas": "the RPN deltas"}
        notes.append("`frcnn export`'s check (ONNX against Caffe on a test image): at most "
                     + ", ".join(f"{v:.1e} on {names.get(k, k)}" for k, v in parity.items()
                                 if k != "rois") + ".")
    missing = [b for b in ("caffe", "onnxruntime", "opencv") if b not in results]
    if missing:
        notes.append(f"Not measured: {', '.join(missing)} (see the log: the backend was "
                     f"skipped)")
    return [{"title": "Parity", "table": table_deploy(data), "notes": notes}]


def table_backends(data: dict) -> str:
    """``frcnn bench --backends``'s backends.json -> the README's speed table."""
    rows = []
    for r in data.get("rows", []):
        s = r.get("stages") or {}

        def ms(key: str) -> str:
            return f"{s[key]:.1f}" if key in s else "-"
        rows.append([r["net"], f"{r['size'][0]}x{r['size'][1]}", r["backend"],
                     ms("backbone_rpn"), ms("proposals"), ms("head"), f"{r['total_ms']:.1f}",
                     f"{100 * r['gemm_share']:.0f}%" if r.get("gemm_share") else "-",
                     f"{r['time_vs_caffe']:.2f}x" if "time_vs_caffe" in r else "-"])
    return md_table(["net", "size", "backend", "backbone + RPN", "proposals", "RoI head",
                     "total", "share of GEMM rate", "time vs Caffe"],
                    ["---"] * 3 + ["---:"] * 6, rows)


def render_backends(data: dict) -> list[dict]:
    versions = data.get("versions") or {}
    gemm = (data.get("gemm") or {}).get("macs_per_s")
    caption = ["ms; median of the timed runs after the warm-up; random weights, one image "
               "at its own size"]
    if gemm:
        caption.append(f"the share is the net's multiply-adds per second over this run's "
                       f"Caffe float32 GEMM rate, {gemm / 1e9:.0f} GMAC/s")
    if versions:
        caption.append(", ".join(f"{k} {v}" for k, v in versions.items() if v))
    notes = []
    for backend in dict.fromkeys(r["backend"] for r in data.get("rows", [])):
        diffs = [r["vs_caffe"] for r in data["rows"] if r["backend"] == backend
                 and "vs_caffe" in r]
        if diffs:
            same = all(d.get("same_counts") for d in diffs)
            empty = [f"{r['net']} {r['size'][0]}x{r['size'][1]}" for r in data["rows"]
                     if r["backend"] == backend and "vs_caffe" in r
                     and not r["vs_caffe"].get("detections")]
            if empty:
                notes.append(f"{backend}: no Caffe detection to compare on "
                             f"{', '.join(empty)} (random weights)")
            notes.append(f"{backend} against Caffe: boxes within "
                         f"{max(d['max_box_diff'] for d in diffs):.1g} px, scores within "
                         f"{max(d['max_score_diff'] for d in diffs):.1g}"
                         + ("" if same else "; some images kept other detection counts"))
    return [{"title": "Speed", "caption": "; ".join(caption) + ".",
             "table": table_backends(data), "notes": notes}]


# ----------------------------------------------------------------------------- bench

def _ratio(results: dict, row: dict) -> str:
    for r in results.get("ratios", []):
        if r["net"] == row["net"] and r["size"] == row["size"]:
            return f"{r['total']:.2f}x"
    return "-"


def table_inference(results: dict) -> str:
    """bench.json -> the README's inference table (ms per image)."""
    rows = []
    for r in results.get("inference", []):
        ms = r["ms"]
        rows.append([INFERENCE_LABELS.get(r["net"], r["net"]), f"{r['size'][0]}x{r['size'][1]}",
                     ms_text(ms["backbone"]), ms_text(r["rpn_proposal_ms"]),
                     ms_text(ms["proposal"]), ms_text(ms["roi_head"]), ms_text(ms["post"]),
                     ms_text(r["total_ms"]), _ratio(results, r)])
    return md_table(["net", "size", "backbone", "RPN + proposal", "(proposal layer)",
                     "RoI head", "post-processing", "total", "ZF / net"],
                    ["---"] + ["---:"] * 8, rows)


def _python_share(results: dict, r: dict) -> float:
    """(Python layers + data layer) / (forward + backward + data layer), as frcnn bench."""
    d = results.get("data_layer", {}).get(f"{r['size'][0]}x{r['size'][1]}", {})
    data_ms = d.get("ms", 0.0) if d.get("measured") else 0.0
    total = r["total_ms"] + data_ms
    return 100 * (r["python_ms"] + data_ms) / total if total else float("nan")


def table_training(results: dict) -> str:
    """bench.json -> the README's training table: one column per image size."""
    runs = results.get("training", [])
    sizes = list(dict.fromkeys(f"{r['size'][0]}x{r['size'][1]}" for r in runs))
    rows = []
    for net in dict.fromkeys(r["net"] for r in runs):
        mine = {f"{r['size'][0]}x{r['size'][1]}": r for r in runs if r["net"] == net}
        label = TRAINING_LABELS.get(net, net)
        hard = sorted({r["hard_rois"] for r in mine.values() if r.get("hard_rois") is not None})
        if hard:
            label += (f" ({' / '.join(str(mine[s]['rois']) for s in sizes if s in mine)} RoIs "
                      f"scored, {' / '.join(map(str, hard))} kept)")
        shares = [_python_share(results, r) for r in mine.values()]
        rows.append([label] + [ms_text(mine[s]["total_ms"]) if s in mine else "-"
                               for s in sizes]
                    + [range_text(shares, lambda v: f"{v:.1f}", "%")])
    return md_table(["net"] + sizes + ["Python layers + data layer"],
                    ["---"] + ["---:"] * (len(sizes) + 1), rows)


def models_text(results: dict) -> str:
    """The README's models sentence from bench.json's models."""
    models = results.get("models", [])

    def find(net: str, k: int) -> dict | None:
        return next((m for m in models if m["net"] == net and m["num_classes"] == k), None)
    parts = []
    sq = find("squeezenet", 4)
    if sq:
        extra = [f"{m['mb']:.1f} MB with {what}" for m, what in
                 ((find("squeezenet-70", 4), "70 anchors"), (find("squeezenet", 21),
                                                            "21 classes")) if m]
        parts.append(f"SqueezeNet {sq['params'] / 1e6:.2f} M parameters, a {sq['mb']:.1f} MB "
                     f"caffemodel" + (f" ({'; '.join(extra)})" if extra else "")
                     + ", against the seed's 17 MB")
    zf = find("zf", 4)
    if zf:
        parts.append(f"ZF {zf['params'] / 1e6:.1f} M, {zf['mb']:.1f} MB")
    return ("Models: " + "; ".join(parts) + ".") if parts else "Models: not measured."


def bench_derived(results: dict) -> list[str]:
    """The figures the README's prose quotes, recomputed from bench.json."""
    out = []
    m = results.get("machine", {})
    if results.get("seconds") is not None:
        loads = [(v or [None])[0] for v in (m.get("load_average"),
                                             results.get("load_average_end"))]
        out.append(f"The run took {results['seconds']:.0f} s; load average (1 min) " + " at "
                   "start, ".join("?" if v is None else f"{v:.2f}" for v in loads) + " at end.")
    inf = {(r["net"], tuple(r["size"])): r for r in results.get("inference", [])}
    for (net, size), r in inf.items():
        if net != "squeezenet":
            continue
        zf = inf.get(("zf", size))
        text = f"{size[0]}x{size[1]}: "
        if zf:
            text += (f"backbone {zf['ms']['backbone'] / r['ms']['backbone']:.1f}x faster than "
                     f"ZF's ({ms_text(r['ms']['backbone'])} vs {ms_text(zf['ms']['backbone'])} "
                     f"ms); ")
        zf_head = f", ZF's {zf['macs']['roi_head'] / 1e9:.1f}" if zf else ""
        text += (f"RoI head {100 * r['ms']['roi_head'] / r['total_ms']:.0f}% of SqueezeNet's "
                 f"time ({r['macs']['roi_head'] / 1e9:.1f} GMAC{zf_head}); Python layers "
                 f"{100 * r['python_ms'] / r['total_ms']:.1f}% of its inference time")
        r70 = inf.get(("squeezenet-70", size))
        if r70:
            text += f" ({100 * r70['python_ms'] / r70['total_ms']:.1f}% with 70 anchors)"
        out.append(text + ".")
    a = results.get("arithmetic")
    if a:
        caffe, numpy = (a[k]["macs_per_s"] / 1e9 for k in ("caffe_gemm", "numpy_gemm"))
        for r in a.get("nets", []):
            if r["net"] == "squeezenet":
                out.append(f"SqueezeNet's backbone at {r['size'][0]}x{r['size'][1]}: "
                           f"{r['stages']['backbone']['macs_per_s'] / 1e9:.0f} GMAC/s, against "
                           f"{caffe:.0f} (Caffe InnerProduct) and {numpy:.0f} (numpy) for a "
                           f"plain {a['caffe_gemm']['n']}^3 GEMM.")
    for r in results.get("inference", []):
        out.append(f"Slowest layers, {INFERENCE_LABELS.get(r['net'], r['net'])} "
                   f"{r['size'][0]}x{r['size'][1]}: " + ", ".join(
                       f"{name} {ms_text(v)}" for name, v in r.get("top_layers", [])) + " ms.")
    return out


def render_bench(results: dict) -> list[dict]:
    s = results.get("settings", {})
    blocks = []
    notes = list(results.get("notes") or [])
    if results.get("inference"):
        blocks.append({"title": "Inference",
                       "caption": f"Inference, ms per image (median of {s.get('repeats')} "
                                  f"after {s.get('warmup')} warm-up; RPN_POST_NMS_TOP_N "
                                  f"{s.get('rpn_post_nms_top_n')}):",
                       "table": table_inference(results), "notes": bench_derived(results)})
    if results.get("training"):
        blocks.append({"title": "Training",
                       "caption": "Training, ms per iteration (forward + backward of one "
                                  "image, solver update excluded; median of "
                                  f"{s.get('train_repeats')}):",
                       "table": table_training(results), "notes": []})
    if results.get("models"):
        blocks.append({"title": "Models", "text": models_text(results), "notes": []})
    if blocks and notes:
        blocks[-1]["notes"] = blocks[-1]["notes"] + [f"frcnn bench: {n}" for n in notes]
    return blocks


# ----------------------------------------------------------------------------- openblas

def _openblas_label(row: dict) -> str:
    """'auto (SkylakeX)' for the caffe package's choice, else the core type asked for."""
    if row.get("coretype") != "auto":
        return str(row.get("coretype"))
    if row.get("chosen"):
        return f"auto ({row['chosen']})"
    return f"auto (unset; OpenBLAS: {row['kernel']})" if row.get("kernel") else "auto (unset)"


def _openblas_reason(row: dict, width: int = 60) -> str:
    """The first line of a failed row's error, cut to ``width``, safe in a table cell."""
    text = (str(row.get("error") or f"status {row.get('rc')}").splitlines() or ["?"])[0]
    text = text if len(text) <= width else text[:width - 3].rstrip() + "..."
    return text.replace("|", "\\|")


def _openblas_prescott(data: dict) -> float | None:
    return next((r["gmac_s"] for r in data.get("rows", []) if r.get("gmac_s")
                 and str(r.get("coretype")).lower() == "prescott"), None)


def table_openblas(data: dict) -> str:
    """bench_openblas.py's JSON -> one row per core type: Caffe's GEMM rate (GMAC/s) and
    its ratio to the Prescott kernels' ('-' without a Prescott figure or for a failed row)."""
    base = _openblas_prescott(data)
    rows = []
    for r in data.get("rows", []):
        gmac = r.get("gmac_s")
        if not gmac:
            rows.append([_openblas_label(r), f"failed: {_openblas_reason(r)}", "-"])
            continue
        rows.append([_openblas_label(r), f"{gmac:.1f}" if gmac < 100 else f"{gmac:.0f}",
                     f"{gmac / base:.2f}x" if base else "-"])
    return md_table(["OPENBLAS_CORETYPE", "GEMM GMAC/s", "vs Prescott"],
                    ["---", "---:", "---:"], rows)


def render_openblas(data: dict) -> list[dict]:
    flags = data.get("cpu_flags") or {}
    threads = data.get("threads")
    caption = (f"One Caffe InnerProduct, a float32 {data.get('n')} x {data.get('n')} x "
               f"{data.get('n')} GEMM, best of {data.get('repeats')} after a warm-up; each "
               f"core type in its own process"
               + (f", OPENBLAS_NUM_THREADS={threads}" if threads is not None else "")
               + "; CPU flags: " + (", ".join(f"{k} {'yes' if v else 'no'}"
                                              for k, v in flags.items()) or "not readable")
               + ".")
    rows = data.get("rows", [])
    notes = []
    auto = next((r for r in rows if r.get("coretype") == "auto" and r.get("gmac_s")), None)
    base = _openblas_prescott(data)
    if auto and base:
        choice = auto.get("chosen") or (f"unset: OpenBLAS's own, {auto['kernel']}"
                                        if auto.get("kernel") else "unset")
        notes.append(f"The caffe package's choice ({choice}) runs Caffe's GEMM at "
                     f"{auto['gmac_s'] / base:.1f}x the Prescott kernels' rate.")
    if data.get("env_coretype") and any(r.get("coretype") == "auto" for r in rows):
        notes.append(f"This environment sets OPENBLAS_CORETYPE={data['env_coretype']} (the "
                     f"other sections run with it); the auto row ran without it.")
    for r in rows:
        if not r.get("gmac_s"):
            notes.append(f"{_openblas_label(r)} not measured (status {r.get('rc')}): "
                         f"{r.get('error') or 'no figure'}.")
    return [{"title": "OpenBLAS kernels", "caption": caption, "table": table_openblas(data),
             "notes": notes}]


# ----------------------------------------------------------------------------- nms

def table_nms(data: dict) -> str:
    """bench_nms.py's JSON -> the README's NMS table (ms, best of the repeats)."""
    rows_in = data.get("rows", [])
    gpu = any("gpu" in r for r in rows_in)
    missing = {k for k, v in (data.get("peers") or {}).items() if "missing" in v}
    headers = ["N", "kept", "ours"] + (["ours (CUDA)"] if gpu else []) + [
        label for _, label in NMS_PEERS]
    rows = []
    for r in rows_in:
        row = [f"{r['n']:,}", f"{r['kept']:,}", f"{1e3 * r['ours']:.2f}"]
        if gpu:
            row.append(f"{1e3 * r['gpu']:.2f}" if "gpu" in r else "-")
        for key, _ in NMS_PEERS:
            row.append(f"{1e3 * r[key]:.2f}" if key in r else "n/a" if key in missing
                       else "-")
        rows.append(row)
    return md_table(headers, ["---"] * len(headers), rows)


def render_nms(data: dict) -> list[dict]:
    peers = data.get("peers") or {}
    versions = [v["version"] for v in peers.values() if "version" in v]
    caption = (f"Random float32 proposals in a 1000 x 600 image, IoU {data.get('thresh')}, "
               f"best of {data.get('repeat')}, times in ms; backends "
               f"{', '.join(data.get('backends', []))}; numpy {data.get('numpy')}"
               + (f"; peers: {'; '.join(versions)}" if versions else "") + ".")
    notes = []
    for key, label in NMS_PEERS:
        if "missing" in peers.get(key, {}):
            notes.append(f"n/a: {label} did not import in bench_nms's process "
                         f"({peers[key]['missing']}); --peer-path DIR puts a venv's "
                         f"site-packages with it on bench_nms's PYTHONPATH.")
    rows = data.get("rows", [])
    if any(r["n"] > 0 and "numpy ref" not in r for r in rows):
        notes.append("-: the numpy reference was not run above --reference-max.")
    differ = [f"{label} at N = {r['n']:,}" for r in rows for key, label in NMS_PEERS
              if key != "numpy ref" and r.get("same", {}).get(key) is False]
    measured = [key for key, _ in NMS_PEERS if key != "numpy ref"
                and any(key in r for r in rows)]
    if differ:
        notes.append("Keep lists other than ours: " + ", ".join(differ) + ".")
    elif measured:
        notes.append("Every peer returned exactly our keep list.")
    if any(r.get("same", {}).get("numpy ref") is False for r in rows):
        notes.append("The numpy reference's keep list differed from ours.")
    o = data.get("overlaps")
    if o:
        notes.append(f"`bbox_overlaps` on {o['n']:,} x {o['k']:,} boxes: {1e3 * o['ours']:.3f} "
                     f"ms against {1e3 * o['numpy']:.3f} ms for vectorised numpy"
                     + ("" if o.get("same") else " (results differ!)") + ".")
    return [{"title": "NMS", "caption": caption, "table": table_nms(data), "notes": notes}]


# ----------------------------------------------------------------------------- proposals

def table_proposals(data: dict) -> str:
    """The runs of bench_proposals.py -> the README's table (ranges over the runs'
    medians, ms per call)."""
    runs = data.get("runs", [])
    phases = list(dict.fromkeys(r["phase"] for run in runs for r in run.get("layer", [])))
    rows = []
    for phase in phases:
        mine = [r for run in runs for r in run.get("layer", []) if r["phase"] == phase]
        first = mine[0]
        topn = (f"{first['pre_nms_top_n']} -> {first['post_nms_top_n']}"
                if "pre_nms_top_n" in first else "?")
        rows.append([phase, topn] + [range_text([r[k] for r in mine]) for k in (
            "ours_ms", "straightforward_cython_ms", "straightforward_numpy_ms")]
                    + ["yes" if all(r["same"] for r in mine) else "no"])
    return md_table(["phase", "top-N", "ours", "straightforward pipeline, Cython NMS",
                     "straightforward, numpy NMS", "same rois, same order"],
                    ["---"] * 6, rows)


def render_proposals(data: dict) -> list[dict]:
    runs = data.get("runs", [])
    if not runs:
        return [{"title": "no runs", "notes": ["no bench_proposals JSON found"]}]
    caption = (f"ms per call, median of {runs[0].get('repeat')} (numpy NMS: "
               f"{runs[0].get('ref_repeat')})"
               + (f"; the range over {len(runs)} runs" if len(runs) > 1 else "; one run")
               + ".")
    notes = []
    nets = [run["net"] for run in runs if run.get("net")]
    if nets:
        notes.append("--net: the proposal layer (the test net's only Python layer) took "
                     + range_text([100 * n["python_share"] for n in nets],
                                  lambda v: f"{v:.2f}", "%")
                     + " of the SqueezeNet test net's forward time at 600 x 1000 ("
                     + range_text([n["forward_ms"] for n in nets], lambda v: f"{v:.0f}")
                     + " ms per forward).")
    return [{"title": "Proposal layer", "caption": caption, "table": table_proposals(data),
             "notes": notes}]


RENDERERS: dict[str, Callable[[dict], list[dict]]] = {
    "demo": render_demo, "deploy": render_deploy, "backends": render_backends,
    "bench": render_bench, "openblas": render_openblas, "nms": render_nms,
    "proposals": render_proposals}


def render_section(name: str, entry: dict) -> str:
    """One section of figures.md: a heading, then per table its command, the table, its
    notes and the machine line.  ``entry``: {'commands', 'machine', 'data', 'rc',
    'skipped', 'log'}."""
    out = [f"## {TITLES.get(name, name)}"]
    commands = entry.get("commands") or []
    command_text = ("```sh\n" + "\n".join(commands) + "\n```" if commands else
                    "No command recorded; read from " + ", ".join(
                        f"`{f}`" for f in entry.get("files") or ["?"]) + ".")
    if entry.get("skipped"):
        out.append(f"Not run: {entry['skipped']}")
        return "\n\n".join(out)
    if entry.get("quick"):
        out.append("--quick: a smoke run; these figures are not the README's.")
    if entry.get("rc"):
        out.append(f"**The command exited with status {entry['rc']}** (log "
                   f"{entry.get('log', '?')}); the figures below are what it wrote, if any.")
    if not entry.get("data"):
        out.append(command_text + "\n\nNo output to read.")
        return "\n\n".join(out)
    machine = machine_line(entry.get("machine"))
    for block in RENDERERS[name](entry["data"]):
        part = [f"### {block['title']}", command_text]
        if block.get("caption"):
            part.append(block["caption"])
        for key in ("table", "text"):
            if block.get(key):
                part.append(block[key])
        if block.get("notes"):
            part.append("\n".join(f"- {n}" for n in block["notes"]))
        part.append(machine)
        out.append("\n\n".join(part))
    return "\n\n".join(out)


def render_all(figures: dict) -> str:
    """figures.md from figures.json's dict (sections in the README's order)."""
    head = ["# README figures", f"`{figures.get('command', 'readme_figures.py')}`"
            + (" (--quick: smoke-run figures, not the README's)" if figures.get("quick")
               else "")]
    sections = figures.get("sections", {})
    body = [render_section(name, sections[name]) for name in SECTIONS if name in sections]
    return "\n\n".join(head + body) + "\n"


# ----------------------------------------------------------------------------- running

def _find(folder: Path, sub: str, names: Sequence[str]) -> Path | None:
    for name in names:
        for path in (folder / sub / name, folder / name):
            if path.is_file():
                return path
    return None


def _read_json(path: Path | None) -> Any:
    return json.loads(path.read_text()) if path and path.is_file() else None


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def deploy_versions() -> dict:
    """onnxruntime's and OpenCV's versions in this environment (without importing them)."""
    cv = next((v for v in (_package_version(n) for n in (
        "opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
        "opencv-contrib-python")) if v), None)
    return {"onnxruntime": _package_version("onnxruntime"), "opencv": cv}


def _demo_enrich(data: dict, folder: Path) -> dict:
    """Adds each run's per-class area AP from its eval.json (OUT/seed<S>/test[_ohem]/)
    where bench_demo.json lacks it."""
    for r in data.get("runs", []):
        if r.get("ap_area") or r.get("seed") is None:
            continue
        suffix = "_ohem" if str(r.get("net", "")).endswith("_ohem") else ""
        ev = _read_json(folder / f"seed{r['seed']}" / f"test{suffix}" / "eval.json")
        if ev and isinstance(ev.get("ap_area"), dict):
            r["ap_area"] = {k: v for k, v in ev["ap_area"].items() if k != "mAP"}
    return data


def load_section(name: str, folder: Path, extra: dict | None = None) -> tuple[dict | None,
                                                                               list[str]]:
    """(data, files read) of a section from the benchmarks' outputs under ``folder``."""
    extra = extra or {}
    if name == "bench":
        path = _find(folder, "bench", ["bench.json"])
        return _read_json(path), [str(path)] if path else []
    if name == "backends":
        path = _find(folder, "backends", ["backends.json"])
        data = _read_json(path)
        if data is not None:
            data["versions"] = extra.get("versions") or deploy_versions()
        return data, [str(path)] if path else []
    if name == "deploy":
        path = _find(folder, "deploy", ["deploy.json"])
        results = _read_json(path)
        if results is None:
            return None, []
        manifest = _read_json(path.parent / "export" / "manifest.json") or {}
        parity = (manifest.get("source") or {}).get("parity")
        return {"results": results, "versions": extra.get("versions") or deploy_versions(),
                **({"export_parity": parity} if parity else {}),
                **{k: extra[k] for k in ("model", "root", "dataset", "max_images")
                   if k in extra}}, [str(path)]
    if name == "openblas":
        path = _find(folder, "openblas", ["openblas.json"])
        return _read_json(path), [str(path)] if path else []
    if name == "nms":
        path = _find(folder, "nms", ["nms.json"])
        return _read_json(path), [str(path)] if path else []
    if name == "proposals":
        paths = sorted(glob.glob(str(folder / "proposals" / "run*.json"))) or sorted(
            glob.glob(str(folder / "proposals*.json")))
        runs = [json.loads(Path(p).read_text()) for p in paths]
        return ({"runs": runs} if runs else None), paths
    if name == "demo":
        path = _find(folder, "demo", ["bench_demo.json"])
        data = _read_json(path)
        return (_demo_enrich(data, path.parent) if data else None), [str(path)] if path else []
    raise ValueError(f"unknown section {name!r}")


def _display(argv: Sequence[str]) -> str:
    """The command as a user types it: `python ...`, `frcnn ...` for the CLI."""
    argv = list(argv)
    if argv[:3] == [sys.executable, "-m", "frcnn.cli"]:
        argv = ["frcnn"] + argv[3:]
    elif argv and argv[0] == sys.executable:
        argv = ["python"] + argv[1:]
    return " ".join(shlex.quote(str(a)) for a in argv)


def _script(name: str, folder: str = "benchmarks") -> str:
    path = ROOT / folder / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _latest_model(train_dir: Path) -> str | None:
    info = _read_json(train_dir / "run.json")
    model = (info or {}).get("model")
    if model and Path(model).is_file():
        return model
    return None


def section_commands(name: str, args: argparse.Namespace, out: Path
                     ) -> tuple[list[list[str]], dict, str | None]:
    """(commands to run, extra facts for the section's data, or why it cannot run)."""
    py, quick, d = sys.executable, args.quick, out / name
    extra: dict = {}
    if name == "bench":
        return [[py, "-m", "frcnn.cli", "bench", "--out", str(d)]
                + (["--quick"] if quick else [])], extra, None
    if name == "backends":
        extra["versions"] = deploy_versions()
        return [[py, "-m", "frcnn.cli", "bench", "--backends", "caffe,onnxruntime,opencv",
                 "--out", str(d)] + (["--quick"] if quick else [])], extra, None
    if name == "openblas":
        return [[py, _script("bench_openblas.py"), "--json", str(d / "openblas.json")]
                + (["--quick"] if quick else [])], extra, None
    if name == "nms":
        cmd = [py, _script("bench_nms.py"), "--json", str(d / "nms.json")]
        return [cmd + (["--sizes", "300,1000", "--repeat", "1"] if quick else [])], extra, None
    if name == "proposals":
        runs = 1 if quick else max(1, args.proposal_runs)
        base = [py, _script("bench_proposals.py")] + (
            ["--repeat", "3", "--ref-repeat", "1"] if quick else ["--net"])
        return [base + ["--json", str(d / f"run{i + 1}.json")] for i in range(runs)], extra, None
    if name == "deploy":
        model = args.deploy_model or _latest_model(DEMO_MODEL)
        if not model and "demo" in args.sections:
            demo = _read_json(out / "demo" / "bench_demo.json") or {}
            seeds = [r.get("seed") for r in demo.get("runs", []) if r.get("net") == PLAIN_NET]
            if seeds:
                model = _latest_model(out / "demo" / f"seed{seeds[0]}" / "train")
        if not model:
            return [], extra, (f"no trained model: none recorded in {DEMO_MODEL / 'run.json'}; "
                               f"run `frcnn demo` first or pass --deploy-model")
        root = args.deploy_root or str(Path(model).resolve().parent.parent / "synth")
        extra.update(model=model, root=root, dataset="synth_test", versions=deploy_versions())
        cmd = [py, _script("bench_deploy.py"), "--model", model, "--root", root,
               "--out", str(d)]
        if quick:
            cmd += ["--max-images", "5"]
            extra["max_images"] = 5
        return [cmd], extra, None
    if name == "demo":
        cmd = [py, _script("bench_demo.py"), "--out", str(d)]
        if args.demo_seeds:
            cmd += ["--seeds"] + [str(s) for s in args.demo_seeds]
        if quick:
            cmd += ([] if args.demo_seeds else ["--seeds", "1"]) + ["--iters", "20"]
        return [cmd], extra, None
    raise ValueError(f"unknown section {name!r}")


OUTPUT_FILES = {"bench": ["bench.json"], "backends": ["backends.json"], "nms": ["nms.json"],
                "openblas": ["openblas.json"], "proposals": ["run*.json"],
                "deploy": ["deploy.json"], "demo": ["bench_demo.json"]}


def run_section(name: str, args: argparse.Namespace, out: Path,
                log: Callable[[str], None]) -> dict:
    """Run a section's commands (logs in OUT/<name>/), then read what they wrote."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    machine = machine_start()
    commands, extra, skipped = section_commands(name, args, out)
    entry = {"commands": [_display(c) for c in commands], "skipped": skipped, "rc": 0}
    if skipped:
        log(f"[readme_figures] {name}: skipped ({skipped})")
        return {**entry, "machine": machine, "data": None, "files": []}
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    if name == "nms" and args.peer_path:
        env["PYTHONPATH"] = os.pathsep.join([args.peer_path] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    for stale in OUTPUT_FILES[name]:  # a failed run must not leave the last run's figures
        for path in folder.glob(stale):
            path.unlink()
    start = time.time()
    log_path = folder / f"{name}.log"
    with open(log_path, "w") as f:
        for argv in commands:
            log(f"[readme_figures] {name}: {_display(argv)}  (log {log_path})")
            f.write(f"$ {_display(argv)}\n")
            f.flush()
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
            entry["rc"] = entry["rc"] or rc
            if rc:
                log(f"[readme_figures] {name}: exited with status {rc}; see {log_path}")
    data, files = load_section(name, out, extra)
    return {**entry, "machine": machine_end(machine), "data": data, "files": files,
            "log": str(log_path), "seconds": round(time.time() - start, 1),
            "extra": {k: v for k, v in extra.items()}}


def from_folder(folder: Path, sections: Sequence[str]) -> dict:
    """The sections found under ``folder`` (a previous --out, or the benchmarks' own
    output folders), without running anything."""
    old = _read_json(folder / "figures.json") or {}
    out = {}
    for name in sections:
        before = old.get("sections", {}).get(name, {})
        data, files = load_section(name, folder, before.get("extra"))
        if data is None and before.get("data") is not None and not before.get("skipped"):
            data = before["data"]
        if data is None:
            if before.get("skipped"):
                out[name] = before
            continue
        machine = before.get("machine")
        if not machine:
            machine = _machine_from_data(name, data, files)
        if (name == "bench" and (data.get("settings") or {}).get("quick")) or (
                name == "openblas" and data.get("quick")):
            before = {**before, "quick": True}
        out[name] = {**before, "data": data, "files": files or before.get("files", []),
                     "machine": machine,
                     "commands": before.get("commands") or []}
    return out


def _machine_from_data(name: str, data: dict, files: Sequence[str]) -> dict:
    """A machine record for outputs read without figures.json: bench.json's own record,
    else the file's date only."""
    when = ""
    if files:
        stamp = datetime.datetime.fromtimestamp(Path(files[0]).stat().st_mtime).astimezone()
        when = stamp.strftime("%Y-%m-%d %H:%M %Z")
    if name == "bench" and data.get("machine"):
        m = data["machine"]
        blas = {b.get("user"): b.get("core") for b in m.get("blas", [])}
        core = (m.get("threads_env") or {}).get("OPENBLAS_CORETYPE") or blas.get("caffe")
        return {"cpu": m.get("cpu"), "cores": m.get("cpu_count"),
                "usable_cores": m.get("usable_cores"), "load_start": m.get("load_average"),
                "load_end": data.get("load_average_end"),
                "openblas_coretype": {"value": core, "source": "Caffe's OpenBLAS kernels, "
                                                               "from bench.json"},
                "date": when + " (file date)"}
    return {"unknown": f"read from {files[0] if files else '?'} without figures.json"
                       + (f", written {when}" if when else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="readme_figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="every benchmark at its smallest (a smoke run)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                    help=f"sections to run or render: {', '.join(SECTIONS)} (default all "
                         f"but demo; demo with --demo)")
    ap.add_argument("--demo", action="store_true",
                    help="also run benchmarks/bench_demo.py (long)")
    ap.add_argument("--out", default="output/readme_figures", metavar="DIR",
                    help="where the outputs, figures.md and figures.json go")
    ap.add_argument("--from", dest="source", metavar="DIR",
                    help="render from the saved outputs in DIR; run nothing")
    ap.add_argument("--peer-path", metavar="DIR",
                    help="site-packages with torch/torchvision/OpenCV 5 for bench_nms's peers")
    ap.add_argument("--proposal-runs", type=int, default=3, metavar="N",
                    help="bench_proposals.py runs (the table gives their range; default 3)")
    ap.add_argument("--deploy-model", metavar="CAFFEMODEL",
                    help="the model for the parity table (default: output/demo/train's)")
    ap.add_argument("--deploy-root", metavar="DIR",
                    help="its synthetic dataset (default: the model's run folder's ../synth)")
    ap.add_argument("--demo-seeds", type=int, nargs="+", metavar="S",
                    help="bench_demo.py --seeds (default: its own)")
    args = ap.parse_args(argv)
    if args.only:
        sections = list(args.only)
    elif args.source:
        sections = list(SECTIONS)
    else:
        sections = list(DEFAULT_SECTIONS) + (["demo"] if args.demo else [])
    args.sections = [s for s in SECTIONS if s in sections]  # README order (demo first)

    out = Path(args.out)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    command = "python " + _script("readme_figures.py", "tools") + (
        " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        if (argv if argv is not None else sys.argv[1:]) else "")
    if args.source:
        sections_data = from_folder(Path(args.source), args.sections)
        missing = [s for s in args.sections if s not in sections_data]
        if missing and args.only:
            log(f"[readme_figures] nothing found in {args.source} for: {', '.join(missing)}")
        figures = {"command": command, "from": args.source, "sections": sections_data,
                   "quick": any(e.get("quick") for e in sections_data.values())}
    else:
        figures = {"command": command, "sections": {}}
        for name in args.sections:
            figures["sections"][name] = {**run_section(name, args, out, log),
                                         "quick": args.quick}
        # sections not run this time stay as the previous figures.json had them
        previous = (_read_json(out / "figures.json") or {}).get("sections", {})
        kept = [n for n in SECTIONS if n in previous and n not in figures["sections"]]
        for name in kept:
            figures["sections"][name] = previous[name]
        if kept:
            log(f"[readme_figures] kept from the previous {out / 'figures.json'}: "
                f"{', '.join(kept)}")
        figures["quick"] = any(e.get("quick") for e in figures["sections"].values())
    figures["created"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    text = render_all(figures)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out / "figures.md").write_text(text)
    print(text, end="", flush=True)
    log(f"[readme_figures] wrote {out / 'figures.md'} and {out / 'figures.json'}")
    failed = [n for n, e in figures["sections"].items() if e.get("rc") and not args.source
              and n in args.sections]  # this run's failures only
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
