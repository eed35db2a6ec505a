"""``frcnn export``: a trained model as ONNX graphs and/or a Caffe net with a native Proposal
layer, in one folder with its manifest (frcnn.deploy)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FORMATS = ("onnx", "caffe-deploy", "openvino")
DEFAULT_FORMATS = ("onnx", "caffe-deploy")  # openvino also writes the ONNX graphs it is built from


@dataclass
class ExportRequest:
    model: str
    out: str
    net: str | None = None                 # test.prototxt; default: the model's sidecar's
    formats: Sequence[str] = DEFAULT_FORMATS
    cfg_file: str | None = None
    set_pairs: Sequence[str] = ()
    unnormalize: bool | None = None        # None: from the sidecar
    check: bool = True                     # measure ONNX against Caffe on a test image
    int8: bool = False                     # also INT8 graphs (frcnn.deploy.quantize)
    calibration: str | None = None         # their calibration dataset (name, folder, .json)
    calibration_root: str | None = None    # the folder of a registered calibration dataset
    calibration_images: int = 32           # images of it to calibrate on


def _test_settings(c) -> dict[str, Any]:
    t = c.TEST
    return {"scale": int(t.SCALES[0]), "max_size": int(t.MAX_SIZE),
            "pixel_means": [float(v) for v in c.PIXEL_MEANS],
            "rpn_pre_nms_top_n": int(t.RPN_PRE_NMS_TOP_N),
            "rpn_post_nms_top_n": int(t.RPN_POST_NMS_TOP_N),
            "rpn_nms_thresh": float(t.RPN_NMS_THRESH), "rpn_min_size": float(t.RPN_MIN_SIZE),
            "nms_thresh": float(t.NMS), "score_thresh": float(t.SCORE_THRESH),
            "max_per_image": int(t.MAX_PER_IMAGE)}


def run_export(req: ExportRequest) -> Path:
    """Write the export folder; return the manifest's path."""
    from frcnn.app.runs import install_cfg, merged_cfg, model_context
    from frcnn.app.testing import resolve_test_net
    from frcnn.caffe_files import read_caffemodel
    from frcnn.deploy.export import export_onnx, fold_into, plan_split
    from frcnn.deploy.manifest import write_manifest
    from frcnn.layer_params import parse_param_str

    unknown = [f for f in req.formats if f not in FORMATS]
    if unknown or not req.formats:
        raise ValueError(f"--format: choose from {', '.join(FORMATS)}, got {list(req.formats)}")
    if not Path(req.model).is_file():
        raise FileNotFoundError(f"model not found: {req.model}")
    if req.int8:
        if not req.calibration:
            raise ValueError("--int8 needs --calibration DATASET (training images of the "
                             "model's classes)")
        if req.calibration_images < 1:
            raise ValueError(f"--calibration-images must be >= 1, got {req.calibration_images}")
        if "onnx" not in req.formats:  # the INT8 graphs are quantized ONNX graphs
            req.formats = ("onnx", *req.formats)
    if "openvino" in req.formats:
        from frcnn.deploy.openvino_backend import openvino_available

        if openvino_available():
            raise RuntimeError(f"--format openvino needs openvino: {openvino_available()}")
        if "onnx" not in req.formats:  # the IR is built from the ONNX graphs
            req.formats = ("onnx", *req.formats)
    meta = model_context(req.model)
    base = [meta["cfg_file"]] if meta.get("cfg_file") and Path(meta["cfg_file"]).is_file() else []
    c = merged_cfg(base, req.cfg_file, req.set_pairs)
    install_cfg(c)
    classes = meta.get("classes")
    net = resolve_test_net(req.net or meta.get("test_net"), req.model,
                           len(classes) if classes else 0, c, Path(req.out))
    weights = read_caffemodel(req.model)
    folded = meta.get("bbox_normalization_folded", False)
    unnormalize = (not folded) if req.unnormalize is None else req.unnormalize
    means = meta.get("means") or list(c.TRAIN.BBOX_NORMALIZE_MEANS)
    stds = meta.get("stds") or list(c.TRAIN.BBOX_NORMALIZE_STDS)
    if unnormalize:  # every export gives plain deltas
        weights = fold_into(weights, "bbox_pred", means, stds)
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"test": _test_settings(c), "bbox_normalization_folded": True,
                                "means": list(means), "stds": list(stds)}
    plan = None
    if "onnx" in req.formats:
        section, plan = export_onnx(net, weights, out)
        manifest["onnx"] = section
    if plan is None:
        from frcnn.caffe_files import net_inputs, read_prototxt, test_phase_layers

        parsed = read_prototxt(net)
        plan = plan_split(test_phase_layers(parsed), net_inputs(parsed), str(net))
    anchors = parse_param_str(plan.param_str, "rpn.proposal_layer.ProposalLayer")
    manifest["anchors"] = {"feat_stride": int(anchors["feat_stride"]), "base_size": 16,
                           "ratios": list(anchors["ratios"]), "scales": list(anchors["scales"])}
    k = _num_classes(weights)
    manifest["classes"] = list(classes) if classes else (
        ["__background__"] + [f"class{i}" for i in range(1, k)])
    if "caffe-deploy" in req.formats:
        from frcnn.deploy.caffe_deploy import write_caffe_deploy

        t = manifest["test"]
        files = write_caffe_deploy(
            net, req.model, out, pre_nms_topn=t["rpn_pre_nms_top_n"],
            post_nms_topn=t["rpn_post_nms_top_n"], nms_thresh=t["rpn_nms_thresh"],
            min_size=t["rpn_min_size"], fold=(means, stds) if unnormalize else None)
        manifest["caffe_deploy"] = {"prototxt": Path(files["prototxt"]).name,
                                    "caffemodel": Path(files["caffemodel"]).name}
    if "openvino" in req.formats:
        from frcnn.deploy.openvino_export import export_openvino

        manifest["openvino"] = export_openvino(out, manifest)
    manifest["source"] = {"model": str(Path(req.model).resolve()), "net": str(net),
                          "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "normalization_folded_at_export": bool(unnormalize)}
    path = write_manifest(out, manifest)
    if req.int8:
        manifest["int8"] = _quantize(out, req, manifest["classes"])
        path = write_manifest(out, manifest)
    if req.check and "onnx" in req.formats:
        parity = check_parity(out, net, req.model, unnormalize)
        manifest["source"]["parity"] = parity
        path = write_manifest(out, manifest)
        print("[export] ONNX against Caffe on a test image: max |diff| "
              + ", ".join(f"{k} {v:.2e}" for k, v in parity.items() if k != "rois"), flush=True)
    print(f"[export] {', '.join(req.formats)} -> {out} (manifest {path.name})", flush=True)
    return path


def _quantize(out: Path, req: ExportRequest, classes: list[str]) -> dict[str, Any]:
    """The INT8 section: the calibration dataset checked against the model's classes, its
    first ``calibration_images`` images, frcnn.deploy.quantize."""
    from frcnn.data.blobs import read_image
    from frcnn.data.datasets import get_dataset
    from frcnn.deploy.manifest import load_manifest
    from frcnn.deploy.quantize import quantize_export

    dataset = get_dataset(req.calibration, root=req.calibration_root)
    if list(dataset.classes) != list(classes):
        raise ValueError(f"calibration dataset {dataset.name} has classes "
                         f"{list(dataset.classes[1:])}, the model {classes[1:]}: calibrate on "
                         f"images of the model's own data")
    records = dataset.load()[:req.calibration_images]
    images = [read_image(r["image"]) for r in records]
    return quantize_export(out, load_manifest(out), images,
                           f"{dataset.name} split {dataset.split}, first {len(images)} images")


def _num_classes(weights: dict[str, list[np.ndarray]]) -> int:
    if "cls_score" in weights:
        return int(weights["cls_score"][0].shape[0])
    if "bbox_pred" in weights:
        return int(weights["bbox_pred"][0].shape[0]) // 4
    raise ValueError("the model has no cls_score or bbox_pred layer: not a detector")


def check_parity(folder: Path, net: str, model: str, unnormalize: bool) -> dict[str, float]:
    """Max |ONNX - Caffe| of every exported output on one synthetic image, the head fed with
    Caffe's own rois (so the comparison does not depend on the proposals' ties)."""
    from frcnn.deploy.onnx_backend import OnnxDetector
    from frcnn.inference import Detector, prepare_input

    onnx_det = OnnxDetector(folder)
    caffe_det = Detector(net, model, onnx_det.settings, unnormalize=unnormalize)
    rng = np.random.default_rng(0)
    t = onnx_det.manifest["test"]
    height = int(t["scale"])
    width = int(min(t["max_size"], round(height * 4 / 3)))
    im = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    blob, im_info, _ = prepare_input(im, onnx_det.settings)
    rois, cls_prob, bbox_pred = caffe_det.forward(blob, im_info, None)
    feature, probs, deltas = onnx_det.backbone(blob)
    o = onnx_det.manifest["onnx"]
    caffe_net = caffe_det.net
    out = {"feature": float(np.abs(feature - caffe_net.blobs[o["feature"]].data).max()),
           "rpn_prob": float(np.abs(probs - caffe_net.blobs[o["rpn_prob"]].data).max()),
           "rpn_deltas": float(np.abs(deltas - caffe_net.blobs[o["rpn_deltas"]].data).max())}
    onnx_cls, onnx_bbox = onnx_det.head(feature, rois.astype(np.float32))
    caffe_bbox = bbox_pred
    if unnormalize:  # the export folded the normalisation; Caffe's outputs are normalised
        from frcnn.detection import per_output

        m = onnx_det.manifest
        k4 = caffe_bbox.shape[1]
        caffe_bbox = caffe_bbox * per_output(m["stds"], k4) + per_output(m["means"], k4)
    out["cls_prob"] = float(np.abs(onnx_cls - cls_prob).max()) if len(rois) else 0.0
    out["bbox_pred"] = float(np.abs(onnx_bbox - caffe_bbox).max()) if len(rois) else 0.0
    own = onnx_det.proposals(probs, deltas, im_info)
    out["rois"] = float(len(own) == len(rois) and np.allclose(own, rois, atol=1e-3))
    return out
