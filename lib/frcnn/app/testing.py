"""``frcnn test`` and ``frcnn detect``: a trained model on a dataset or on image files."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn.app.runs import (default_derived_out, derived_out_dir, install_cfg, merged_cfg,
                            model_context)
from frcnn.caffe_files import read_sidecar


BACKENDS = ("auto", "caffe", "onnxruntime", "opencv", "openvino",  # auto: caffe for a caffemodel,
            "openvino-native")
#                                                       onnxruntime for an export folder


@dataclass
class ModelRequest:
    model: str                            # a .caffemodel, or an `frcnn export` folder
    net: str | None = None                # test.prototxt or a variant name; default: sidecar
    cfg_file: str | None = None
    set_pairs: Sequence[str] = ()
    unnormalize: bool | None = None       # None: from the model's sidecar
    backend: str = "auto"                 # auto, caffe, onnxruntime, opencv or openvino
    device: str = "CPU"                   # OpenVINO's device (openvino backend)
    precision: str = "float"              # int8: an export's INT8 graphs


def load_detector(req: ModelRequest, num_classes: int | None = None, work_dir: Path | None = None):
    """(detector, class names from the model or None) for a model; installs its cfg.

    A caffemodel runs in Caffe: the test net is ``req.net`` (a prototxt path, or a variant
    name generated with ``num_classes``), else the one the model's sidecar names; the cfg is
    the defaults <- the model's run cfg <- --cfg <- --set.  An export folder runs in
    onnxruntime (default for a folder) or OpenCV DNN, with the manifest's settings, then
    --cfg / --set over them.
    """
    from frcnn.deploy.manifest import is_export_folder

    if req.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {req.backend!r}")
    if is_export_folder(req.model):
        return _load_exported(req)
    if not Path(req.model).is_file():
        raise FileNotFoundError(f"model not found: {req.model}")
    if req.backend not in ("auto", "caffe"):
        raise ValueError(f"--backend {req.backend} runs an export folder: write one with "
                         f"`frcnn export --model {req.model} --out DIR`, then pass --model DIR")
    if req.precision != "float":
        raise ValueError(f"--precision {req.precision} runs an export folder's graphs: write "
                         f"them with `frcnn export --model {req.model} --out DIR --int8 "
                         f"--calibration DATASET`, then pass --model DIR")
    from frcnn.inference import DetectSettings, Detector

    meta = model_context(req.model)
    base = [meta["cfg_file"]] if meta.get("cfg_file") and Path(meta["cfg_file"]).is_file() else []
    c = merged_cfg(base, req.cfg_file, req.set_pairs)
    install_cfg(c)
    net = resolve_test_net(req.net or meta.get("test_net"), req.model,
                           num_classes or len(meta.get("classes", [])) or 0, c, work_dir)
    detector = Detector(net, req.model, DetectSettings.from_cfg(c), unnormalize=req.unnormalize)
    classes = meta.get("classes")
    if classes and len(classes) != detector.num_classes:
        raise ValueError(f"{req.model}: its sidecar lists {len(classes)} classes but the net "
                         f"{net} outputs {detector.num_classes}")
    return detector, classes


def resolve_test_net(net: str | None, model: str, num_classes: int, c, work_dir: Path | None
                     ) -> str:
    """A test net path from --net (a prototxt, or a variant name generated for the classes)."""
    if not net:
        raise ValueError(f"{model} has no sidecar naming its test net: pass --net "
                         f"(a test.prototxt or a variant name)")
    if not _is_net_file(net):
        return _generated_test_net(net, num_classes, c, work_dir)
    if not Path(net).is_file():
        raise FileNotFoundError(f"test net not found: {net}")
    return net


def _load_exported(req: ModelRequest):
    """An export folder in onnxruntime or OpenCV DNN (see load_detector)."""
    from frcnn.deploy.manifest import load_manifest
    from frcnn.deploy.onnx_backend import settings_from_manifest

    if req.net:
        raise ValueError(f"{req.model} is an export folder: its nets are in its manifest "
                         f"(drop --net)")
    manifest = load_manifest(req.model)
    settings = settings_from_manifest(manifest)
    if req.cfg_file or req.set_pairs:
        from frcnn.inference import DetectSettings

        c = merged_cfg([], req.cfg_file, req.set_pairs)
        given = DetectSettings.from_cfg(c)
        default = DetectSettings.from_cfg(merged_cfg([], None, ()))
        changed = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)
                   if getattr(given, f.name) != getattr(default, f.name)}
        settings = dataclasses.replace(settings, **changed)
    if req.precision != "float" and req.backend not in ("auto", "onnxruntime", "openvino"):
        raise ValueError(f"--precision {req.precision} runs in the onnxruntime and openvino "
                         f"backends, not {req.backend}")
    if req.backend == "caffe":
        raise ValueError(f"{req.model} is an export folder, which runs in onnxruntime, openvino or "
                         f"opencv; for Caffe pass the caffemodel it was exported from "
                         f"({manifest.get('source', {}).get('model', '?')})")
    if req.backend in ("auto", "onnxruntime"):
        from frcnn.deploy.onnx_backend import OnnxDetector

        detector = OnnxDetector(req.model, settings, manifest=manifest,
                                precision=req.precision)
    elif req.backend == "openvino":
        from frcnn.deploy.openvino_backend import OpenVINODetector

        detector = OpenVINODetector(req.model, settings, manifest=manifest, device=req.device,
                                    precision=req.precision)
    elif req.backend == "openvino-native":
        from frcnn.deploy.openvino_backend import OpenVINONativeDetector

        detector = OpenVINONativeDetector(req.model, settings, manifest=manifest,
                                          device=req.device)
    else:
        from frcnn.deploy.opencv_detector import OpenCVDetector

        detector = OpenCVDetector(req.model, settings, manifest=manifest)
    return detector, list(manifest["classes"])


def model_classes(model: str | Path) -> list[str] | None:
    """The class names a model was trained with, ``__background__`` first: its sidecar's,
    or an export folder's manifest's; None where it has none (or cannot be read: loading
    the model then says why)."""
    from frcnn.deploy.manifest import is_export_folder, load_manifest

    try:
        if is_export_folder(model):
            return list(load_manifest(model)["classes"]) or None
        if Path(model).is_file():
            return list((read_sidecar(model) or {}).get("classes") or []) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _is_net_file(net: str) -> bool:
    """A prototxt path (py-faster-rcnn names some .pt), rather than a variant name."""
    from frcnn.nets import variants

    if net in variants.PRESETS:
        return False
    return net.endswith((".prototxt", ".pt", ".pbtxt")) or Path(net).is_file()


def _generated_test_net(name: str, num_classes: int, c, work_dir: Path | None) -> str:
    from frcnn.nets import generate, variants

    if num_classes < 2:
        raise ValueError(f"--net {name}: the class count is unknown; give a dataset or a "
                         f"test.prototxt")
    variant = variants.preset(name).replace(num_classes=num_classes,
                                            scale=int(c.TEST.SCALES[0]),
                                            max_size=int(c.TEST.MAX_SIZE))
    folder = (work_dir or Path("output")) / "net"
    generate.write(variant, folder)
    return str(folder / "test.prototxt")


@dataclass
class EvalRequest(ModelRequest):
    dataset: str = "synth_test"
    root: str | None = None
    split: str | None = None              # of a folder given by path (trainval)
    images: str | None = None             # image folder of a COCO .json dataset
    classes: Sequence[str] | None = None  # the dataset's class list (None: see run_test)
    out: str | None = None                # None: beside the model (runs.default_derived_out)
    force: bool = False                   # write into a non-empty --out it did not make
    max_images: int = 0                   # 0: all
    proposals: str | None = None          # for a Fast R-CNN test net (rois as an input)
    size_thresholds: tuple[float, float] = (32.0, 96.0)  # sqrt(area): small | medium | large


def run_test(req: EvalRequest) -> dict[str, float]:
    """Detect on every image of the dataset, evaluate, save; return the VOC07 APs.

    Besides the APs (eval.json, eval.txt, the VOC results files): the diagnostics of
    ``frcnn.diagnostics`` (proposal recall, AP by size, false positives by kind; eval.json
    keys proposal_recall, ap_by_size, false_positives, size_thresholds) and a
    precision-recall curve per class, pr_<class>.png.
    """
    from frcnn import diagnostics
    from frcnn.data.blobs import read_image
    from frcnn.data.datasets import get_dataset
    from frcnn.evaluation import evaluate, format_table

    dataset = get_dataset(req.dataset, root=req.root, split=req.split, images=req.images,
                          classes=req.classes)
    trained = model_classes(req.model)
    if dataset.classes_source == "annotations" and trained:
        # a folder without a class list of its own: the model's, in the order it was trained
        dataset = dataclasses.replace(dataset, classes=tuple(trained), classes_source="model",
                                      classes_from=f"the model's ({req.model})")
    out = derived_out_dir(req.out or default_derived_out("test", req.model, req.dataset),
                          "test", req.force)
    detector, classes = load_detector(req, dataset.num_classes, out)
    if classes and list(classes) != list(dataset.classes):
        raise ValueError(f"the model was trained on classes {classes[1:]} but {dataset.name} "
                         f"has {list(dataset.classes[1:])} ({dataset.classes_from}): pass "
                         f"--classes {','.join(classes[1:])} to test it with the model's list")
    records = dataset.load()
    proposals = None
    if detector.fast_rcnn:
        from frcnn.data.proposal_files import load_proposals

        if not req.proposals:
            raise ValueError("the test net takes its rois as an input (a Fast R-CNN net): give "
                             "the dataset's proposals with --proposals FILE (see `frcnn "
                             "proposals`)")
        proposals = load_proposals(req.proposals, [r["id"] for r in records],
                                   [(r["width"], r["height"]) for r in records])
    elif req.proposals:
        raise ValueError("--proposals given, but the test net makes its own (it has an RPN)")
    if req.max_images:
        records = records[:req.max_images]
    diagnostics.check_size_thresholds(req.size_thresholds)  # before the long loop
    recall = diagnostics.ProposalRecallEvaluator(source="given" if detector.fast_rcnn
                                                 else "rpn")
    k = len(dataset.classes)
    all_dets: list[list[np.ndarray]] = [[np.zeros((0, 5), np.float32)] * len(records)
                                        for _ in range(k)]
    start = time.time()
    for i, r in enumerate(records):
        dets = detector.detect(read_image(r["image"]),
                               None if proposals is None else proposals[i])
        for c in range(1, k):
            all_dets[c][i] = dets[c]
        recall.process(r, getattr(detector, "last_proposals", None))
        if (i + 1) % 25 == 0 or i + 1 == len(records):
            per = (time.time() - start) / (i + 1)
            print(f"[test] {i + 1}/{len(records)} images  {per:.3f}s/image  "
                  f"ETA {per * (len(records) - i - 1):.0f}s", flush=True)
    seconds_per_image = (time.time() - start) / max(len(records), 1)
    aps07 = evaluate(all_dets, records, dataset.classes, use_07_metric=True)
    aps = evaluate(all_dets, records, dataset.classes, use_07_metric=False)
    table = format_table(aps07, aps)
    coco = None
    if dataset.format == "coco":  # COCO metrics too (pycocotools), coco_results.json
        from frcnn.coco_eval import evaluate_test_run, format_summary

        coco = evaluate_test_run(out, all_dets, records, dataset)
        table += "\n\n" + format_summary(coco)
    diag = {"proposal_recall": recall.evaluate(),
            **diagnostics.diagnose(all_dets, records, dataset.classes, req.size_thresholds)}
    table += "\n\n" + diagnostics.format_diagnostics(diag)
    print(table, flush=True)
    write_voc_results(out, all_dets, records, dataset.classes)
    curves = diagnostics.write_pr_curves(out, all_dets, records, dataset.classes)
    (out / "eval.json").write_text(json.dumps(
        {"dataset": dataset.name, "model": str(req.model), "backend": detector.backend,
         "images": len(records),
         "seconds_per_image": round(seconds_per_image, 4), "ap_voc07": aps07,
         "ap_area": aps, **({"coco": coco} if coco else {}), **diag,
         "pr_curves": [p.name for p in curves]}, indent=2) + "\n")
    (out / "eval.txt").write_text(table + "\n")
    print(f"[test] mAP (VOC07 11-point) {aps07['mAP']:.4f}, (area) {aps['mAP']:.4f} on "
          f"{len(records)} images, {seconds_per_image:.3f}s/image; results in {out}",
          flush=True)
    return aps07


def write_voc_results(out: Path, all_dets, records, classes) -> None:
    """VOC results format: results/comp4_det_test_<class>.txt, lines
    '<image id> <score> <x1> <y1> <x2> <y2>' with 1-based pixel coordinates."""
    folder = out / "results"
    folder.mkdir(exist_ok=True)
    for c in range(1, len(classes)):
        with open(folder / f"comp4_det_test_{classes[c]}.txt", "w") as f:
            for i, r in enumerate(records):
                for x1, y1, x2, y2, score in all_dets[c][i]:
                    f.write(f"{r['id']} {score:.3f} {x1 + 1:.1f} {y1 + 1:.1f} {x2 + 1:.1f} "
                            f"{y2 + 1:.1f}\n")


@dataclass
class DetectRequest(ModelRequest):
    images: Sequence[str] = ()
    out: str | None = None                # None: beside the model (runs.default_derived_out)
    thresh: float = 0.5
    classes: Sequence[str] | None = None
    from_file: str | None = None          # a list file of image paths (--from)
    jsonl: str | None = None              # stream results to this JSON Lines file
    resume: bool = False                  # skip the images the jsonl file already holds


def run_detect_stream(req: DetectRequest) -> dict[str, int]:
    """``frcnn detect --jsonl FILE``: every image of the inputs (files, folders, patterns,
    ``--from`` list) streamed to JSON Lines (frcnn.app.detect_stream); returns the counts."""
    from frcnn.app.detect_stream import detect_stream, expand_inputs

    paths = expand_inputs(req.images, req.from_file)
    if not paths:
        raise ValueError("no images given (paths, folders, patterns or --from FILE)")
    work = Path(req.jsonl).absolute().parent
    detector, classes = load_detector(req, len(req.classes) + 1 if req.classes else None, work)
    names = (["__background__"] + list(req.classes)) if req.classes else classes
    if not names:
        names = ["__background__"] + [f"class{k}" for k in range(1, detector.num_classes)]
    category_ids = None
    if Path(req.model).is_file() and not req.classes:
        category_ids = (read_sidecar(req.model) or {}).get("category_ids") or None
    counts = detect_stream(detector, names, paths, req.jsonl, req.thresh, req.resume,
                           category_ids, log=lambda line: print(line, flush=True))
    print(f"[detect] {counts['images']} images written to {req.jsonl} ({counts['errors']} "
          f"errors, {counts['skipped']} already there)", flush=True)
    return counts


def run_detect(req: DetectRequest) -> list[dict]:
    """Detect objects in image files; write <out>/detections.json and <out>/<name>.png."""
    import cv2

    from frcnn.data.blobs import read_image
    from frcnn.inference import detections_to_json, draw_detections

    if not req.images:
        raise ValueError("no images given")
    out = derived_out_dir(req.out or default_derived_out("detect", req.model), "detect",
                          force=True)  # detect has no --force: it writes into any --out
    detector, classes = load_detector(req, len(req.classes) + 1 if req.classes else None, out)
    names = (["__background__"] + list(req.classes)) if req.classes else classes
    if not names:
        names = ["__background__"] + [f"class{k}" for k in range(1, detector.num_classes)]
    results = []
    for path in req.images:
        im = read_image(path)
        dets = detector.detect(im)
        rows = detections_to_json(dets, names, req.thresh)
        drawn = out / (Path(path).stem + "_detections.png")
        cv2.imwrite(str(drawn), draw_detections(im, dets, names, req.thresh))
        results.append({"image": str(path), "drawn": str(drawn), "detections": rows})
        print(f"[detect] {path}: {len(rows)} objects >= {req.thresh} -> {drawn}", flush=True)
    (out / "detections.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
