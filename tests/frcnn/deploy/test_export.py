"""frcnn export and the deploy backends, end to end on a real (tiny) trained model.

A SqueezeNet Faster R-CNN trained a few iterations on a tiny synthetic set is exported to
ONNX and to the Caffe deploy net; the onnxruntime backend must give Caffe's detections, the
opencv backend must run; a process where ``import caffe`` fails runs the onnxruntime
backend; bad export folders and models give clear errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from frcnn import config
from frcnn.app.export import ExportRequest, run_export
from frcnn.app.testing import DetectRequest, EvalRequest, ModelRequest, load_detector, run_test
from frcnn.app.training import TrainRequest, run_train
from frcnn.data.blobs import read_image
from frcnn.deploy.manifest import ExportFolderError, load_manifest
from tests.tiny_synth import SMALL, write_tiny_synth

SMALL_EXPORT = SMALL + ("TEST.SCORE_THRESH", "0.0")


pytestmark = pytest.mark.usefixtures("cfg")  # the global cfg, restored after each test


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_tiny_synth(root, 8, 3)
    return root


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    with config.preserved():
        return run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                                      root=str(data), iters=4, out=str(out), set_pairs=SMALL_EXPORT,
                                      base_lr=0.001, scales=(1.5, 3), snapshot_iters=0,
                                      display=2, force=True))


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    with config.preserved():
        run_export(ExportRequest(model=model, out=str(out)))
    return out


def images(data) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((data / "JPEGImages").iterdir())[:3]]


def test_export_writes_both_formats_and_a_manifest(exported):
    m = load_manifest(exported)
    assert set(m["files"]) == {"backbone.onnx", "head.onnx", "head_pooled.onnx",
                               "deploy.prototxt", "deploy.caffemodel"}
    assert m["classes"] == ["__background__", "circle", "square", "triangle"]
    assert m["anchors"]["scales"] == [1.5, 3.0] and m["anchors"]["feat_stride"] == 16
    assert m["test"]["scale"] == 96 and m["test"]["rpn_post_nms_top_n"] == 50
    assert m["bbox_normalization_folded"] is True
    parity = m["source"]["parity"]
    assert max(parity[k] for k in ("feature", "rpn_prob", "rpn_deltas", "cls_prob",
                                   "bbox_pred")) < 1e-4
    assert parity["rois"] == 1.0  # our proposals from ONNX's RPN outputs are Caffe's rois
    text = (exported / "deploy.prototxt").read_text()
    assert 'type: "Proposal"' in text and 'type: "Python"' not in text


def test_onnxruntime_gives_caffes_detections(model, exported, data):
    caffe_det, _ = load_detector(ModelRequest(model=model))
    onnx_det, classes = load_detector(ModelRequest(model=str(exported)))
    assert onnx_det.backend == "onnxruntime" and classes[1] == "circle"
    total = 0
    for im in images(data):
        a, b = caffe_det.detect(im), onnx_det.detect(im)
        for da, db in zip(a[1:], b[1:]):
            assert da.shape == db.shape
            np.testing.assert_allclose(da[:, :4], db[:, :4], atol=0.01)
            np.testing.assert_allclose(da[:, 4], db[:, 4], atol=1e-4)
            total += len(da)
    assert total > 0


def test_the_portable_head_gives_the_same_detections(exported, data):
    from frcnn.deploy.onnx_backend import OnnxDetector

    fast, portable = OnnxDetector(exported), OnnxDetector(exported, portable_head=True)
    assert fast._pooling is not None and portable._pooling is None
    for im in images(data):
        for a, b in zip(fast.detect(im)[1:], portable.detect(im)[1:]):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_opencv_backend_runs_the_deploy_net(exported, data):
    from frcnn.deploy.opencv_backend import opencv_dnn_available

    if opencv_dnn_available():
        pytest.skip(opencv_dnn_available())
    det, _ = load_detector(ModelRequest(model=str(exported), backend="opencv"))
    dets = det.detect(images(data)[0])
    assert len(dets) == 4 and all(d.shape[1] == 5 for d in dets)


def test_test_and_detect_take_an_export_folder(exported, data, tmp_path):
    aps = run_test(EvalRequest(model=str(exported), dataset="synth_test", root=str(data),
                               out=str(tmp_path / "eval"), force=True))
    assert 0 <= aps["mAP"] <= 1
    report = json.loads((tmp_path / "eval/eval.json").read_text())
    assert report["backend"] == "onnxruntime"
    assert report["proposal_recall"]["images"] == report["images"]  # the backend's rois
    from frcnn.app.testing import run_detect

    image = sorted((data / "JPEGImages").iterdir())[0]
    rows = run_detect(DetectRequest(model=str(exported), images=[str(image)],
                                    out=str(tmp_path / "detect"), thresh=0.0))
    assert rows[0]["detections"] and (tmp_path / "detect" / "detections.json").exists()


def test_the_onnxruntime_backend_needs_no_caffe(exported, data, tmp_path):
    image = sorted((data / "JPEGImages").iterdir())[0]
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "caffe.py").write_text("raise ImportError('caffe is blocked in this test')\n")
    code = textwrap.dedent(f"""
        import sys
        try:
            import caffe
        except ImportError as e:
            print("no caffe:", e)
        from frcnn.app.testing import ModelRequest, load_detector
        from frcnn.data.blobs import read_image
        det, classes = load_detector(ModelRequest(model={str(exported)!r}))
        dets = det.detect(read_image({str(image)!r}))
        print("OK", det.backend, sum(len(d) for d in dets), "caffe" in sys.modules and
              sys.modules["caffe"] is not None and hasattr(sys.modules["caffe"], "Net"))
    """)
    env = dict(os.environ, PYTHONPATH=str(blocker) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                  ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no caffe: caffe is blocked" in proc.stdout
    assert "OK onnxruntime" in proc.stdout and proc.stdout.strip().endswith("False")


def test_an_edited_or_missing_file_is_named(exported, tmp_path):
    copy_dir = tmp_path / "copy"
    shutil.copytree(exported, copy_dir)
    with open(copy_dir / "head.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportFolderError, match=r"head.onnx: its sha256 differs"):
        load_detector(ModelRequest(model=str(copy_dir)))
    (copy_dir / "backbone.onnx").unlink()
    with pytest.raises(ExportFolderError, match=r"backbone.onnx is missing"):
        load_manifest(copy_dir)


def test_backend_choices_are_explained(model, exported):
    with pytest.raises(ValueError, match="runs an export folder"):
        load_detector(ModelRequest(model=model, backend="onnxruntime"))
    with pytest.raises(ValueError, match="is an export folder"):
        load_detector(ModelRequest(model=str(exported), backend="caffe"))


def test_a_truncated_model_is_an_error_not_a_crash(model, tmp_path):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(Path(model).read_bytes()[:100])
    shutil.copy(model + ".frcnn.json", str(bad) + ".frcnn.json")
    with pytest.raises(ValueError, match="bad.caffemodel"):
        run_export(ExportRequest(model=str(bad), out=str(tmp_path / "x"),
                                 net=str(Path(model).parent / "net" / "test.prototxt")))


def _load_without(module: str, exported, tmp_path, backend: str = "auto") -> str:
    """What load_detector says in a process where ``import module`` fails."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / f"{module}.py").write_text("raise ImportError('blocked in this test')\n")
    code = textwrap.dedent(f"""
        from frcnn.app.testing import ModelRequest, load_detector
        try:
            load_detector(ModelRequest(model={str(exported)!r}, backend={backend!r}))
        except RuntimeError as e:
            print("ERROR", e)
    """)
    env = dict(os.environ, PYTHONPATH=str(blocker) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                  ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc.stdout + proc.stderr


def test_a_missing_backend_package_is_named(exported, tmp_path):
    out = _load_without("onnxruntime", exported, tmp_path)
    assert "ERROR the onnxruntime backend needs onnxruntime" in out, out


def _need_openvino():
    from frcnn.deploy.openvino_backend import openvino_available

    if openvino_available():
        pytest.skip(openvino_available())


def test_openvino_gives_onnxruntimes_detections(exported, data):
    """The same graphs in OpenVINO (its ROIPooling in the head by default) and the same
    proposal step: onnxruntime's detections to float rounding."""
    _need_openvino()
    onnx_det, _ = load_detector(ModelRequest(model=str(exported)))
    ov_det, classes = load_detector(ModelRequest(model=str(exported), backend="openvino"))
    assert ov_det.backend == "openvino" and ov_det._pooling is None and classes[1] == "circle"
    total = 0
    for im in images(data):
        for a, b in zip(onnx_det.detect(im)[1:], ov_det.detect(im)[1:]):
            assert a.shape == b.shape
            np.testing.assert_allclose(a[:, :4], b[:, :4], atol=0.01)
            np.testing.assert_allclose(a[:, 4], b[:, 4], atol=1e-4)
            total += len(a)
        assert set(ov_det.timings) == {"backbone_rpn", "proposals", "head"}
    assert total > 0


def test_openvino_runs_frcnn_test(exported, data, tmp_path):
    _need_openvino()
    aps = run_test(EvalRequest(model=str(exported), backend="openvino", dataset="synth_test",
                               root=str(data), out=str(tmp_path / "eval"), force=True))
    onnx_aps = run_test(EvalRequest(model=str(exported), dataset="synth_test", root=str(data),
                                    out=str(tmp_path / "eval_onnx"), force=True))
    assert json.loads((tmp_path / "eval/eval.json").read_text())["backend"] == "openvino"
    assert aps["mAP"] == pytest.approx(onnx_aps["mAP"], abs=0.005)


def test_an_openvino_device_that_is_not_there_is_named(exported):
    _need_openvino()
    with pytest.raises(ValueError, match="OpenVINO device 'NPU7' is not on this machine "
                                         r"\(available: CPU"):
        load_detector(ModelRequest(model=str(exported), backend="openvino", device="NPU7"))


def test_a_missing_openvino_says_what_to_install(exported, tmp_path):
    out = _load_without("openvino", exported, tmp_path, backend="openvino")
    assert "ERROR the openvino backend needs openvino" in out, out
    assert "squeezenet-frcnn[openvino]" in out


def test_openvino_native_is_one_model_with_openvinos_proposal(model, data, tmp_path):
    """--format openvino: the whole detector in one IR; its proposals are OpenVINO's, so
    the detections are compared by mAP, not box for box."""
    _need_openvino()
    out = tmp_path / "ov"
    with config.preserved():
        run_export(ExportRequest(model=model, out=str(out), formats=("openvino",),
                                 set_pairs=SMALL_EXPORT, check=False))
    manifest = load_manifest(out)
    assert (out / "detector.xml").exists() and (out / "detector.bin").exists()
    assert "onnx" in manifest and manifest["openvino"]["proposal"]["framework"] == ""
    assert set(manifest["files"]) >= {"detector.xml", "detector.bin"}
    det, classes = load_detector(ModelRequest(model=str(out), backend="openvino-native"))
    dets = det.detect(images(data)[0])
    assert len(dets) == len(classes) and all(d.shape[1] == 5 for d in dets)
    assert det.last_proposals is not None and len(det.last_proposals) > 0
    assert not np.all(det.last_proposals == 0, axis=1).any()  # the padding rows are dropped
    native = run_test(EvalRequest(model=str(out), backend="openvino-native",
                                  dataset="synth_test", root=str(data),
                                  out=str(tmp_path / "eval"), force=True))
    split = run_test(EvalRequest(model=str(out), backend="openvino", dataset="synth_test",
                                 root=str(data), out=str(tmp_path / "eval2"), force=True))
    assert abs(native["mAP"] - split["mAP"]) <= 0.05
    with pytest.raises(ValueError, match="no OpenVINO model"):
        from frcnn.deploy.openvino_backend import OpenVINONativeDetector

        OpenVINONativeDetector(tmp_path / "missing_ir", manifest={**manifest, "openvino": None})


def test_int8_graphs_stay_close_to_float(model, data, tmp_path):
    """--int8: QDQ graphs calibrated on training images; a valid model whose detections stay
    close to the float export's (scores within 0.1 on this tiny model), in onnxruntime and
    in OpenVINO; the manifest records the calibration and the scheme."""
    out = tmp_path / "int8"
    with config.preserved():
        run_export(ExportRequest(model=model, out=str(out), formats=("onnx",), int8=True,
                                 calibration="synth_train", calibration_root=str(data),
                                 calibration_images=4, set_pairs=SMALL_EXPORT, check=False))
    manifest = load_manifest(out)
    int8 = manifest["int8"]
    assert int8["calibration"] == {"data": "synth_train split train, first 4 images",
                                   "images": 4}
    assert int8["scheme"]["format"] == "QDQ" and (out / int8["backbone"]["file"]).exists()
    import onnx

    for part in ("backbone", "head"):
        graph = onnx.load(str(out / int8[part]["file"]))
        onnx.checker.check_model(graph)
        assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    full, _ = load_detector(ModelRequest(model=str(out)))
    quant, _ = load_detector(ModelRequest(model=str(out), precision="int8"))
    assert quant.precision == "int8" and quant._pooling is None
    im = images(data)[0]
    s_full, _ = full.raw(im)
    s_quant, _ = quant.raw(im)
    assert s_full.shape[1] == s_quant.shape[1]
    n = min(len(s_full), len(s_quant))
    assert n > 0 and np.abs(s_full[:n].max(axis=0) - s_quant[:n].max(axis=0)).max() < 0.1
    from frcnn.deploy.openvino_backend import openvino_available

    if not openvino_available():
        ov_quant, _ = load_detector(ModelRequest(model=str(out), backend="openvino",
                                                 precision="int8"))
        assert len(ov_quant.detect(im)) == len(manifest["classes"])


def test_int8_bad_input_is_named(model, data, tmp_path, exported):
    with pytest.raises(ValueError, match="--int8 needs --calibration"):
        run_export(ExportRequest(model=model, out=str(tmp_path / "a"), int8=True))
    other = tmp_path / "other"
    write_tiny_synth(other, 2, 1)
    (other / "classes.txt").write_text("cat\ndog\nbird\n")
    with config.preserved(), pytest.raises(ValueError, match="calibration dataset .* has "
                                                            "classes .*model's own data"):
        run_export(ExportRequest(model=model, out=str(tmp_path / "b"), int8=True,
                                 calibration="synth_train", calibration_root=str(other),
                                 check=False))
    with pytest.raises(ValueError, match="has no INT8 graphs"):
        load_detector(ModelRequest(model=str(exported), precision="int8"))
    with pytest.raises(ValueError, match="--precision int8 runs an export folder"):
        load_detector(ModelRequest(model=model, precision="int8"))


def test_the_seed_designs_70_anchors_go_through_openvinos_proposal(tmp_path):
    """Random weights: the 70-anchor variant exported as one OpenVINO model; its Proposal op
    takes the 7 ratios x 10 scales, and the detections match the split form's."""
    _need_openvino()
    import dataclasses

    from frcnn.bench import nets as bnets
    from frcnn.bench.backends import _prepare
    from frcnn.deploy.openvino_backend import OpenVINODetector, OpenVINONativeDetector
    from frcnn.nets.variants import preset

    variant = preset("squeezenet/faster_rcnn_end2end_ohem_seed70")
    with config.preserved(), bnets.variant_cfg(variant, {"TEST": {"RPN_POST_NMS_TOP_N": 50}}):
        _, _, export = _prepare("seed70", variant, tmp_path, 0, openvino=True)
    proposal = load_manifest(export)["openvino"]["proposal"]
    assert len(proposal["ratio"]) * len(proposal["scale"]) == 70
    image = (np.random.default_rng(1).random((160, 240, 3)) * 255).astype(np.uint8)
    native, split = OpenVINONativeDetector(export), OpenVINODetector(export)
    for det in (native, split):
        det.settings = dataclasses.replace(det.settings, scale=160, max_size=240,
                                           score_thresh=0.0)
    a, b = native.detect(image), split.detect(image)
    assert sum(len(d) for d in a[1:]) > 0
    for da, db in zip(a[1:], b[1:]):
        assert da.shape == db.shape
        np.testing.assert_allclose(da, db, atol=0.05)
