"""Deploy parity: the same trained model in Caffe, onnxruntime and OpenCV DNN on a dataset.

    python benchmarks/bench_deploy.py --model output/demo/train/<model>.caffemodel \\
        [--dataset synth_test --root output/demo/data] [--export DIR] [--backends ...]

Exports the model (``frcnn export``, both formats) unless --export names an existing
folder, detects every image of the dataset with each backend, and prints per backend: the
VOC07 and area mAP, seconds per image, and against Caffe how many images keep as many
detections per class, and the largest box and score difference over those images, each
Caffe detection paired with the nearest one of the other backend
(``frcnn.deploy.parity``: a swap of two near-tied scores is no difference).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from frcnn.deploy.parity import compare_images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="synth_test")
    ap.add_argument("--root", default="output/demo/data")
    ap.add_argument("--export", help="an export folder (default: export into DIR/export)")
    ap.add_argument("--backends", default="caffe,onnxruntime,opencv")
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--out", default="output/bench_deploy")
    args = ap.parse_args(argv)

    from frcnn.app.export import ExportRequest, run_export
    from frcnn.app.testing import ModelRequest, load_detector
    from frcnn.data.blobs import read_image
    from frcnn.data.datasets import get_dataset
    from frcnn.deploy.manifest import is_export_folder
    from frcnn.evaluation import evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export = Path(args.export) if args.export else out / "export"
    if not is_export_folder(export):
        run_export(ExportRequest(model=args.model, out=str(export)))
    dataset = get_dataset(args.dataset, root=args.root)
    records = dataset.load()
    if args.max_images:
        records = records[:args.max_images]
    k = dataset.num_classes
    results: dict[str, dict] = {}
    all_dets: dict[str, list[list[np.ndarray]]] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        model = args.model if backend == "caffe" else str(export)
        try:
            detector, _ = load_detector(ModelRequest(model=model, backend=backend))
        except RuntimeError as e:
            print(f"[deploy] {backend}: skipped ({e})", flush=True)
            continue
        dets_per_image = []
        start = time.perf_counter()
        for r in records:
            dets_per_image.append(detector.detect(read_image(r["image"])))
        seconds = (time.perf_counter() - start) / max(len(records), 1)
        by_class = [[d[c] for d in dets_per_image] for c in range(k)]
        aps07 = evaluate(by_class, records, dataset.classes, use_07_metric=True)
        aps = evaluate(by_class, records, dataset.classes, use_07_metric=False)
        results[backend] = {"mAP_voc07": aps07["mAP"], "mAP_area": aps["mAP"],
                            "seconds_per_image": seconds}
        all_dets[backend] = dets_per_image
        print(f"[deploy] {backend}: mAP {aps07['mAP']:.4f} (VOC07) {aps['mAP']:.4f} (area), "
              f"{seconds:.3f} s/image", flush=True)
    if "caffe" in all_dets:
        for backend, dets in all_dets.items():
            if backend == "caffe":
                continue
            r = compare_images(all_dets["caffe"], dets)
            results[backend].update(images_same_detections=r["images_same_counts"],
                                    images=r["images"], max_box_diff=r["max_box_diff"],
                                    max_score_diff=r["max_score_diff"])
    print()
    print("| backend | mAP VOC07 | mAP area | s / image | images with Caffe's detection "
          "count | max box diff (px) | max score diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, r in results.items():
        extra = ("| - | - | - |" if backend == "caffe" else
                 f"| {r['images_same_detections']}/{r['images']} | {r['max_box_diff']:.3g} | "
                 f"{r['max_score_diff']:.2g} |")
        print(f"| {backend} | {r['mAP_voc07']:.4f} | {r['mAP_area']:.4f} | "
              f"{r['seconds_per_image']:.3f} " + extra)
    (out / "deploy.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
