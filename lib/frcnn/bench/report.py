"""The benchmark's report: machine header, terminal tables, JSON, CSV and a PNG chart.

``results`` is the dict ``frcnn.bench.commands.run_bench`` returns (sections machine,
settings, inference, ratios, arithmetic, training, data_layer, models).  The tables are
Markdown pipe tables, readable on a terminal and pasteable into the README.

Files written by ``write_all(results, out_dir)``:
  bench.json   the whole results dict
  bench.csv    one row per figure: section, net, size, metric, value, unit
  bench.png    stacked bars of the inference stages, per net and image size
"""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

INFERENCE_COLUMNS = ("net", "size", "backbone", "RPN + proposal", "(proposal)", "RoI head",
                     "post", "total", "ZF / net", "Python layers")
TRAINING_COLUMNS = ("net", "size", "fwd + bwd", "forward", "backward", "RoIs", "rpn-data",
                    "proposal", "roi-data", "hard_roi_mining", "data layer", "Python")
MODEL_COLUMNS = ("net", "K", "anchors", "parameters", "caffemodel", "/ seed 17 MB")
ARITH_COLUMNS = ("net", "size", "GMAC", "backbone / RPN / RoI head GMAC", "GMAC/s",
                 "backbone / RPN / RoI head GMAC/s", "% of Caffe GEMM", "% of numpy GEMM")
SLOWEST_COLUMNS = ("net", "size", "slowest layers, forward ms (median)")
RATIO_COLUMNS = ("size", "ZF / net", "backbone", "RPN + proposal", "RoI head", "post",
                 "total")
CHART_STAGES = (("backbone", "backbone"), ("rpn_proposal", "RPN + proposal"),
                ("roi_head", "RoI head"), ("post", "post-processing"))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(wanted: Sequence[str] = ("avx", "avx2", "fma", "avx512f")) -> list[str]:
    """Which of the ``wanted`` vector-unit flags /proc/cpuinfo lists."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def openblas_libraries() -> list[dict]:
    """The OpenBLAS libraries loaded in this process (after ``import caffe``: Caffe's and
    numpy's), each {'file', 'user', 'config', 'core', 'threads'}, from their own
    ``openblas_get_*`` functions (numpy's are prefixed ``scipy_``)."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps
                    if "openblas" in line.split()[-1].rsplit("/", 1)[-1].lower()})
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("openblas_", ""), ("scipy_openblas_", "64_")):
            try:
                config = getattr(lib, f"{prefix}get_config{suffix}")
                core = getattr(lib, f"{prefix}get_corename{suffix}")
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            config.restype = core.restype = ctypes.c_char_p
            out.append({"file": Path(path).name,
                        "user": "numpy" if "numpy" in path else "caffe",
                        "config": " ".join(config().decode().split()),
                        "core": core().decode(), "threads": int(threads())})
            break
    return out


def machine_info() -> dict:
    """CPU, cores, thread settings, load and versions (the numbers depend on them)."""
    import numpy

    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threads_env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                   "MKL_NUM_THREADS") if k in os.environ},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
    }
    info["cpu_flags"] = cpu_flags()
    try:
        import caffe

        info["caffe"] = getattr(caffe, "__version__", "?")
    except ImportError:
        info["caffe"] = None
    info["blas"] = openblas_libraries()
    info["device"] = device_name()
    return info


def device_name() -> str:
    """Where Caffe runs in this benchmark: 'CPU', or the selected GPU (``--gpu``)."""
    from frcnn import devices

    gpu = devices.selected()
    if gpu is None:
        return "CPU"
    found = [g for g in devices.driver_gpus()[0] if g.index == gpu]
    return f"GPU {gpu} ({found[0].name})" if found else f"GPU {gpu}"


def header_lines(results: dict) -> list[str]:
    """The report's first lines: machine, threads, load, what was run."""
    m, s = results["machine"], results["settings"]
    threads = ", ".join(f"{k}={v}" for k, v in m["threads_env"].items()) or \
        "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS unset (OpenBLAS uses every core)"
    lines = [f"machine: {m['cpu']}, {m['cpu_count']} cores ({m['usable_cores']} usable); "
             f"{threads}",
             f"python {m['python']}, numpy {m['numpy']}, caffe {m['caffe']} "
             f"({m.get('device', 'CPU')}); "
             f"{m['platform']}"]
    if m.get("cpu_flags"):
        lines[0] += f"; CPU flags {' '.join(m['cpu_flags'])}"
    for b in m.get("blas", []):
        lines.append(f"{b['user']}'s BLAS: {b['file']}: {b['config'].split(' DYNAMIC')[0]}, "
                     f"{b['core']} kernels, {b['threads']} threads")
    if m.get("load_average"):
        lines.append("load average at start: " + " ".join(f"{v:.2f}" for v in
                                                           m["load_average"]))
    end = results.get("load_average_end")
    if end:
        lines.append("load average at end: " + " ".join(f"{v:.2f}" for v in end))
    lines.append(f"settings: {', '.join(f'{k}={v}' for k, v in s.items())}")
    return lines


def size_text(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A pipe table, columns padded; numbers right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str], numeric: Sequence[bool]) -> str:
        return "| " + " | ".join(c.rjust(wd) if num else c.ljust(wd)
                                 for c, wd, num in zip(cells, widths, numeric)) + " |"

    numeric = [all(_numeric(r[i]) for r in rows) and rows != [] for i in range(len(headers))]
    out = [line(list(headers), [False] * len(headers)),
           "|" + "|".join((("-" * (wd + 1)) + ":") if num else ("-" * (wd + 2))
                          for wd, num in zip(widths, numeric)) + "|"]
    out += [line(r, numeric) for r in rows]
    return "\n".join(out)


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace("x", "").replace(" ms", "").replace(
        " MB", "").strip()
    if t in ("-", ""):
        return True
    try:
        float(t)
        return True
    except ValueError:
        return False


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _ratio_for(results: dict, row: dict) -> str:
    for r in results.get("ratios", []):
        if r["net"] == row["net"] and r["size"] == row["size"]:
            return f"{r['total']:.2f}x"
    return "-"


def inference_table(results: dict) -> str:
    rows = []
    for r in results["inference"]:
        ms = r["ms"]
        rows.append([r["net"], size_text(r["size"]), _ms(ms["backbone"]),
                     _ms(r["rpn_proposal_ms"]), _ms(ms["proposal"]), _ms(ms["roi_head"]),
                     _ms(ms["post"]), _ms(r["total_ms"]), _ratio_for(results, r),
                     _pct(r["python_ms"], r["total_ms"])])
    return markdown_table(INFERENCE_COLUMNS, rows)


def ratio_table(results: dict) -> str:
    rows = [[size_text(r["size"]), r["net"]] + [f"{r[k]:.2f}" for k in (
        "backbone", "rpn_proposal", "roi_head", "post", "total")] for r in results["ratios"]]
    return markdown_table(RATIO_COLUMNS, rows)


def arithmetic_table(results: dict) -> str:
    a = results["arithmetic"]
    caffe_peak, numpy_peak = a["caffe_gemm"]["macs_per_s"], a["numpy_gemm"]["macs_per_s"]
    rows = []
    for r in a["nets"]:
        st = [r["stages"][s] for s in ("backbone", "rpn", "roi_head")]
        rows.append([r["net"], size_text(r["size"]), f"{r['macs'] / 1e9:.1f}",
                     " / ".join(f"{x['macs'] / 1e9:.1f}" for x in st),
                     f"{r['macs_per_s'] / 1e9:.1f}",
                     " / ".join(f"{x['macs_per_s'] / 1e9:.1f}" for x in st),
                     _pct(r["macs_per_s"], caffe_peak), _pct(r["macs_per_s"], numpy_peak)])
    return markdown_table(ARITH_COLUMNS, rows)


def slowest_table(results: dict) -> str:
    rows = [[r["net"], size_text(r["size"]),
             ", ".join(f"{name} {_ms(ms)}" for name, ms in r["top_layers"][:4])]
            for r in results["inference"]]
    return markdown_table(SLOWEST_COLUMNS, rows)


def training_table(results: dict) -> str:
    rows = []
    data = results.get("data_layer", {})
    for r in results["training"]:
        py = r["python_layers_ms"]
        d = data.get(size_text(r["size"]), {})
        data_ms = d.get("ms") if d.get("measured") else None
        total = r["total_ms"] + (data_ms or 0.0)
        python = r["python_ms"] + (data_ms or 0.0)
        rows.append([r["net"], size_text(r["size"]), _ms(r["total_ms"]), _ms(r["forward_ms"]),
                     _ms(r["backward_ms"]), str(r["rois"]) if r.get("hard_rois") is None
                     else f"{r['rois']} -> {r['hard_rois']}"]
                    + [_ms(py.get(k)) for k in ("rpn-data", "proposal", "roi-data",
                                                "hard_roi_mining")]
                    + [_ms(data_ms) if d.get("measured") else "not measured",
                       _pct(python, total)])
    return markdown_table(TRAINING_COLUMNS, rows)


def model_table(results: dict) -> str:
    rows = [[r["net"], str(r["num_classes"]), str(r["anchors"]), f"{r['params']:,}",
             f"{r['mb']:.1f} MB", f"{r['vs_seed']:.2f}x"] for r in results["models"]]
    return markdown_table(MODEL_COLUMNS, rows)


def format_report(results: dict) -> str:
    """Header and every table present in ``results``, as text."""
    s = results["settings"]
    parts = ["\n".join(header_lines(results))]
    if results.get("inference"):
        parts.append(f"Inference, ms per image (median of {s['repeats']} after {s['warmup']} "
                     f"warm-up; random weights and image; RPN_POST_NMS_TOP_N "
                     f"{s['rpn_post_nms_top_n']}); 'Python layers' = proposal layer / total\n"
                     + inference_table(results))
    if results.get("ratios"):
        parts.append("ZF / net time, per stage\n" + ratio_table(results))
    if results.get("inference"):
        parts.append("Where the inference time goes\n" + slowest_table(results))
    if results.get("arithmetic"):
        a = results["arithmetic"]
        parts.append(
            "Arithmetic (multiply-adds of Convolution and InnerProduct layers), forward pass; "
            f"reference float32 GEMM {a['caffe_gemm']['n']}^3: Caffe InnerProduct "
            f"{a['caffe_gemm']['macs_per_s'] / 1e9:.1f} GMAC/s, numpy "
            f"{a['numpy_gemm']['macs_per_s'] / 1e9:.1f} GMAC/s; whole forward (post-"
            "processing included) and per stage\n" + arithmetic_table(results))
    if results.get("training"):
        parts.append(f"Training, ms per iteration (one image, forward + backward, median of "
                     f"{s['train_repeats']} after {s['warmup']} warm-up; no solver update); "
                     "Python = the Python layers and the data layer / (fwd + bwd + data)\n"
                     + training_table(results))
    if results.get("models"):
        parts.append("Models (test net parameters; caffemodel as written by net.save)\n"
                     + model_table(results))
    if results.get("notes"):
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in results["notes"]))
    return "\n\n".join(parts)


def csv_rows(results: dict) -> list[list[Any]]:
    """[section, net, size, metric, value, unit] rows of every figure."""
    rows: list[list[Any]] = []
    for r in results.get("inference", []):
        size = size_text(r["size"])
        for stage, v in r["ms"].items():
            rows.append(["inference", r["net"], size, f"{stage}_ms", round(v, 3), "ms"])
        rows.append(["inference", r["net"], size, "rpn_proposal_ms",
                     round(r["rpn_proposal_ms"], 3), "ms"])
        rows.append(["inference", r["net"], size, "total_ms", round(r["total_ms"], 3), "ms"])
        rows.append(["inference", r["net"], size, "python_ms", round(r["python_ms"], 3), "ms"])
        rows.append(["inference", r["net"], size, "total_macs", r["total_macs"], "MAC"])
    for r in results.get("ratios", []):
        for k in ("backbone", "rpn_proposal", "roi_head", "post", "total"):
            rows.append(["ratio_zf", r["net"], size_text(r["size"]), k, round(r[k], 4), "x"])
    a = results.get("arithmetic")
    if a:
        for key in ("numpy_gemm", "caffe_gemm"):
            rows.append(["arithmetic", key, f"{a[key]['n']}^3", "macs_per_s",
                         round(a[key]["macs_per_s"]), "MAC/s"])
        for r in a["nets"]:
            size = size_text(r["size"])
            rows.append(["arithmetic", r["net"], size, "total_macs_per_s",
                         round(r["macs_per_s"]), "MAC/s"])
            for stage, st in r["stages"].items():
                rows.append(["arithmetic", r["net"], size, f"{stage}_macs", st["macs"], "MAC"])
                rows.append(["arithmetic", r["net"], size, f"{stage}_macs_per_s",
                             round(st["macs_per_s"]), "MAC/s"])
    for r in results.get("training", []):
        size = size_text(r["size"])
        for k in ("total_ms", "forward_ms", "backward_ms", "python_ms"):
            rows.append(["training", r["net"], size, k, round(r[k], 3), "ms"])
        for layer, v in r["python_layers_ms"].items():
            rows.append(["training", r["net"], size, f"{layer}_ms", round(v, 3), "ms"])
        rows.append(["training", r["net"], size, "rois", r["rois"], "RoIs"])
    for size, d in results.get("data_layer", {}).items():
        if d.get("measured"):
            rows.append(["training", "RoIDataLayer", size, "data_ms", round(d["ms"], 3), "ms"])
    for r in results.get("models", []):
        name = f"{r['net']} K={r['num_classes']}"
        rows.append(["model", name, "", "params", r["params"], "parameters"])
        rows.append(["model", name, "", "caffemodel_bytes", r["bytes"], "bytes"])
    return rows


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def write_csv(results: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["section", "net", "size", "metric", "value", "unit"])
        writer.writerows(csv_rows(results))


def write_chart(results: dict, path: Path) -> bool:
    """Stacked bars of the inference stages (ms), one bar per net and size; False when
    there is nothing to draw."""
    runs = results.get("inference", [])
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['net']}\n{size_text(r['size'])}" for r in runs]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(runs) + 2), 4.5))
    bottom = [0.0] * len(runs)
    for key, name in CHART_STAGES:
        values = [r["rpn_proposal_ms"] if key == "rpn_proposal" else r["ms"][key]
                  for r in runs]
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, r in enumerate(runs):
        ax.annotate(f"{r['total_ms']:.0f} ms", (x, bottom[x]), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    m = results["machine"]
    ax.set_ylabel("ms per image (median)")
    where = m.get("device", "CPU")
    where = f"CPU ({m['cpu']}, {m['usable_cores']} cores)" if where == "CPU" else where
    ax.set_title(f"Faster R-CNN inference per stage, {where}", fontsize=9)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(results: dict, out_dir: str | os.PathLike) -> list[Path]:
    """bench.json, bench.csv and (when there are inference results) bench.png in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.csv"]
    write_json(results, paths[0])
    write_csv(results, paths[1])
    if write_chart(results, out / "bench.png"):
        paths.append(out / "bench.png")
    return paths
