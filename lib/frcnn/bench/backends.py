"""The same detector in each backend (caffe, onnxruntime, opencv), stage by stage, one run.

Per test net (random weights, exported once with ``frcnn export`` into a scratch folder)
and image size: the median of ``repeats`` timed ``detect()`` calls after ``warmup`` (the
whole detector: input blob, forward, proposals, decoding, NMS), and where the backend can
split it, the stages: backbone + RPN, proposals, RoI head.  Caffe's stages come from a
layer-by-layer pass of the same net; onnxruntime's from its two sessions and the proposal
code between them; OpenCV DNN gives only the total.  The multiply-adds of the net (at that
size and RoI count) over the time give the achieved rate, reported as a share of a plain
float32 GEMM on this machine.  Detections are compared with Caffe's (largest box and score
difference over the detections both keep).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

BACKENDS = ("caffe", "onnxruntime", "opencv", "openvino", "openvino-native",
            "onnxruntime-int8", "openvino-int8")


def _median_ms(values: Sequence[float]) -> float:
    return float(np.median(values) * 1e3)


def _prepare(label: str, variant: Any, work: Path, seed: int,
             openvino: bool = False, int8: bool = False) -> tuple[str, str, Path]:
    """(test prototxt, caffemodel, export folder) for ``variant`` with random weights.

    The model's run cfg is the global cfg of the moment (the variant's and the bench's
    overrides), so the export's proposal settings are those the Caffe reference runs with.
    """
    from frcnn import config
    from frcnn.app.export import ExportRequest, run_export
    from frcnn.bench import nets as bnets
    from frcnn.caffe_files import write_sidecar, write_text_proto

    folder = work / label.replace("/", "_").replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    net_path = folder / "test.prototxt"
    write_text_proto(net_path, bnets.variant_net_param(variant, "test"))
    net = bnets.load_net(bnets.variant_net_param(variant, "test"), "TEST")
    bnets.randomize(net, seed)
    model = folder / "model.caffemodel"
    net.save(str(model))
    classes = ["__background__"] + [f"class{k}" for k in range(1, variant.num_classes)]
    config.write_cfg(str(folder / "cfg.yml"))
    write_sidecar(model, {"bbox_normalization_folded": True, "classes": classes,
                          "means": [0, 0, 0, 0], "stds": [0.1, 0.1, 0.2, 0.2],
                          "cfg_file": "cfg.yml"})
    formats = ("onnx", "caffe-deploy") + (("openvino",) if openvino else ())
    run_export(ExportRequest(model=str(model), out=str(folder / "export"), net=str(net_path),
                             formats=formats, check=False))
    if int8:  # calibrated on random images: for the speed, not the accuracy
        from frcnn.deploy.manifest import load_manifest, write_manifest
        from frcnn.deploy.quantize import quantize_export

        rng = np.random.default_rng(seed)
        images = [(rng.random((300, 500, 3)) * 255).astype(np.uint8) for _ in range(4)]
        manifest = load_manifest(folder / "export")
        manifest["int8"] = quantize_export(folder / "export", manifest, images,
                                           "4 random images (bench)", log=lambda line: None)
        manifest.pop("folder", None)
        write_manifest(folder / "export", manifest)
    return str(net_path), str(model), folder / "export"


def _caffe_stages(detector: Any, image: np.ndarray, repeats: int) -> dict[str, float]:
    from frcnn.bench import nets as bnets
    from frcnn.inference import prepare_input

    net = detector.net
    lay = bnets.layout(net)
    blob, im_info, _ = prepare_input(image, detector.settings)
    detector.forward(blob, im_info, None)
    runs = np.zeros((repeats, len(lay.names)))
    for r in range(repeats):
        bnets.forward_layers(net, runs[r])
    stage = {s: runs[:, lay.indices(s)].sum(axis=1) for s in bnets.STAGES}
    return {"backbone_rpn": _median_ms(stage["backbone"] + stage["rpn"]),
            "proposals": _median_ms(stage["proposal"]), "head": _median_ms(stage["roi_head"])}


def _compare(reference: list[np.ndarray], other: list[np.ndarray]) -> dict[str, Any]:
    """One image's detections against Caffe's: the largest |box| and |score| difference,
    detections paired by position (``frcnn.deploy.parity``), and whether every class kept
    as many."""
    from frcnn.deploy.parity import compare_images

    r = compare_images([reference], [other])
    return {"max_box_diff": r["max_box_diff"], "max_score_diff": r["max_score_diff"],
            "same_counts": r["images_same_counts"] == 1, "detections": r["detections"]}


def _below_min_size(det: Any, min_size: float) -> int | None:
    """How many of ``det``'s last proposals (original-image pixels) are narrower or lower
    than ``min_size``: OpenCV's Proposal layer does not drop them, Caffe's and onnxruntime's
    do, so a count above 0 explains detections that differ."""
    p = getattr(det, "last_proposals", None)
    if p is None:
        return None
    p = np.asarray(p, np.float64).reshape(-1, 4)
    return int(np.sum((p[:, 2] - p[:, 0] + 1 < min_size) | (p[:, 3] - p[:, 1] + 1 < min_size)))


def _parity_text(row: dict) -> str:
    """'boxes ... px, scores ...[, other counts[: N proposals below RPN_MIN_SIZE]]'."""
    v = row["vs_caffe"]
    text = f"boxes {v['max_box_diff']:.2g} px, scores {v['max_score_diff']:.2g}"
    if not v["same_counts"]:
        text += ", other counts"
        if row.get("proposals_below_min_size"):
            text += f" ({row['proposals_below_min_size']} proposals below RPN_MIN_SIZE kept)"
    return text


def _detectors(backends: Sequence[str], export: Path, net_path: str, model: str,
               size: tuple[int, int], log: Callable[[str], None] | None) -> dict[str, Any]:
    """One detector per available backend, set to run an image of ``size`` at scale 1."""
    from frcnn.deploy.manifest import load_manifest
    from frcnn.deploy.onnx_backend import OnnxDetector, settings_from_manifest
    from frcnn.deploy.opencv_backend import opencv_dnn_available
    from frcnn.inference import Detector

    h, w = size
    detectors: dict[str, Any] = {}
    for backend in backends:
        if backend == "opencv" and opencv_dnn_available():
            if log:
                log(f"  skipped opencv: {opencv_dnn_available()}")
            continue
        if backend.startswith("openvino"):
            from frcnn.deploy.openvino_backend import (OpenVINODetector,
                                                       OpenVINONativeDetector,
                                                       openvino_available)

            if openvino_available():
                if log:
                    log(f"  skipped {backend}: {openvino_available()}")
                continue
            if backend == "openvino-native":
                det = OpenVINONativeDetector(export)
            else:
                det = OpenVINODetector(export, precision="int8" if backend.endswith("-int8")
                                       else "float")
        elif backend.startswith("onnxruntime"):
            det = OnnxDetector(export, precision="int8" if backend.endswith("-int8")
                               else "float")
        elif backend == "opencv":
            from frcnn.deploy.opencv_detector import OpenCVDetector

            det = OpenCVDetector(export)
        else:
            det = Detector(net_path, model, settings_from_manifest(load_manifest(export)),
                           unnormalize=False)
        det.settings = dataclasses.replace(det.settings, scale=min(h, w), max_size=max(h, w))
        detectors[backend] = det
    return detectors


def _time(backend: str, det: Any, image: np.ndarray, repeats: int, warmup: int
          ) -> tuple[list[np.ndarray], float, dict[str, float]]:
    """(last detections, median total ms, median stage ms) of ``det.detect(image)``."""
    times, stage_runs = [], []
    dets: list[np.ndarray] = []
    for r in range(warmup + repeats):
        t = time.perf_counter()
        dets = det.detect(image)
        if r >= warmup:
            times.append(time.perf_counter() - t)
            if "backbone_rpn" in getattr(det, "timings", {}):  # the split-form backends
                stage_runs.append(dict(det.timings))
    if backend == "caffe":
        stages = _caffe_stages(det, image, repeats)
    elif stage_runs:
        stages = {k: _median_ms([s[k] for s in stage_runs])
                  for k in ("backbone_rpn", "proposals", "head")}
    else:
        stages = {}
    return dets, _median_ms(times), stages


def _log_row(row: dict, log: Callable[[str], None]) -> None:
    extra = ""
    if "vs_caffe" in row:
        extra = f", {row['time_vs_caffe']:.2f}x Caffe's time, {_parity_text(row)}"
    h, w = row["size"]
    log(f"  {row['net']} {h}x{w} {row['backend']}: {row['total_ms']:.1f} ms"
        + "".join(f", {k} {v:.1f}" for k, v in row["stages"].items()) + extra)


def bench_backends(nets: Sequence[tuple[str, Any]], sizes: Sequence[tuple[int, int]],
                   backends: Sequence[str], repeats: int = 5, warmup: int = 1, seed: int = 0,
                   gemm_macs_per_s: float | None = None, work_dir: str | None = None,
                   overrides: dict | None = None,
                   log: Callable[[str], None] | None = print) -> list[dict]:
    """Rows {net, size, backend, total_ms, stages (ms), gflops share, parity} (see module)."""
    from frcnn import config
    from frcnn.bench import nets as bnets
    from frcnn.bench.arithmetic import layer_macs

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for label, variant in nets:
            with bnets.variant_cfg(variant, overrides):
                net_path, model, export = _prepare(
                    label, variant, Path(tmp), seed, "openvino-native" in backends,
                    any(b.endswith("-int8") for b in backends))
                for h, w in sizes:
                    image = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(
                        np.uint8)
                    detectors = _detectors(backends, export, net_path, model, (h, w), log)
                    results, size_rows = {}, []
                    for backend, det in detectors.items():
                        results[backend], total, stages = _time(backend, det, image, repeats,
                                                                warmup)
                        size_rows.append({
                            "net": label, "size": [h, w], "backend": backend,
                            "total_ms": total, "stages": stages,
                            "proposals_below_min_size": _below_min_size(
                                det, float(config.cfg.TEST.RPN_MIN_SIZE))})
                    macs = None
                    if "caffe" in detectors:
                        macs = int(sum(layer_macs(detectors["caffe"].net).values()))
                    caffe_ms = next((r["total_ms"] for r in size_rows
                                     if r["backend"] == "caffe"), None)
                    for row in size_rows:
                        row["macs"] = macs
                        if macs and gemm_macs_per_s:
                            row["gemm_share"] = macs / (row["total_ms"] / 1e3) / gemm_macs_per_s
                        if caffe_ms is not None and row["backend"] != "caffe":
                            row["vs_caffe"] = _compare(results["caffe"], results[row["backend"]])
                            row["time_vs_caffe"] = row["total_ms"] / caffe_ms
                        if log:
                            _log_row(row, log)
                    rows.extend(size_rows)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The README's table of bench_backends rows."""
    lines = ["| net | size | backend | backbone + RPN | proposals | RoI head | total | "
             "share of GEMM rate | vs Caffe |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s = r["stages"]

        def ms(key: str) -> str:
            return f"{s[key]:.1f}" if key in s else "-"
        share = f"{100 * r['gemm_share']:.0f}%" if r.get("gemm_share") else "-"
        vs = "-"
        if "vs_caffe" in r:
            vs = f"{r['time_vs_caffe']:.2f}x time; {_parity_text(r)}"
        lines.append(f"| {r['net']} | {r['size'][0]}x{r['size'][1]} | {r['backend']} | "
                     f"{ms('backbone_rpn')} | {ms('proposals')} | {ms('head')} | "
                     f"{r['total_ms']:.1f} | {share} | {vs} |")
    return "\n".join(lines)
