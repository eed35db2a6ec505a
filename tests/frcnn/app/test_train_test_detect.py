"""frcnn train -> test -> detect on a tiny synthetic dataset, in real Caffe nets."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from frcnn import config
from frcnn.app.testing import DetectRequest, EvalRequest, run_detect, run_test
from frcnn.app.training import TrainRequest, run_train
from frcnn.caffe_files import read_sidecar
from tests.tiny_synth import SMALL, write_tiny_synth


@pytest.fixture(autouse=True)
def restore_cfg():
    saved = copy.deepcopy(config.cfg)
    yield
    config.cfg.clear()
    config.cfg.update(saved)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_tiny_synth(root, 12, 4)
    return root


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    saved = copy.deepcopy(config.cfg)
    model = run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                                   root=str(tiny_data), iters=6, out=str(out), set_pairs=SMALL,
                                   base_lr=0.001, scales=(1.5, 3), iter_size=1,
                                   snapshot_iters=3, display=2, force=True))
    config.cfg.clear()
    config.cfg.update(saved)
    return out, model


def test_training_writes_snapshots_with_folded_normalisation(trained):
    out, model = trained
    assert Path(model).name == "squeezenet_faster_rcnn_iter_6.caffemodel"
    assert (out / "squeezenet_faster_rcnn_iter_3.caffemodel").exists()
    meta = read_sidecar(model)
    assert meta["bbox_normalization_folded"] is True and meta["iteration"] == 6
    assert meta["classes"] == ["__background__", "circle", "square", "triangle"]
    assert list((out / "state").glob("*.solverstate"))
    assert (out / "net" / "test.prototxt").exists() and (out / "cfg.yml").exists()


def test_test_and_detect_load_the_snapshot(trained, tiny_data, tmp_path):
    _, model = trained
    aps = run_test(EvalRequest(model=model, dataset="synth_test", root=str(tiny_data),
                               out=str(tmp_path / "test")))
    assert set(aps) == {"circle", "square", "triangle", "mAP"}
    assert 0.0 <= aps["mAP"] <= 1.0 or np.isnan(aps["mAP"])
    results = list((tmp_path / "test" / "results").glob("comp4_det_test_*.txt"))
    assert len(results) == 3
    report = json.loads((tmp_path / "test" / "eval.json").read_text())
    assert report["images"] == 4
    # the diagnostics (frcnn.diagnostics): keys, the RPN's 50 proposals, a PR curve per class
    assert {"proposal_recall", "ap_by_size", "false_positives", "size_thresholds"} <= set(report)
    assert report["proposal_recall"]["images"] == 4
    assert report["proposal_recall"]["proposals_per_image"]["max"] <= 50  # TEST.RPN_POST_NMS
    assert set(report["ap_by_size"]["ap"]) == {"all", "small", "medium", "large"}
    for name in ("circle", "square", "triangle"):
        png = (tmp_path / "test" / f"pr_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    image = str(tiny_data / "JPEGImages" / "000001.jpg")
    out = run_detect(DetectRequest(model=model, images=[image], out=str(tmp_path / "det"),
                                   thresh=0.0))
    assert Path(out[0]["drawn"]).exists()
    for row in out[0]["detections"]:
        x1, y1, x2, y2 = row["box"]
        assert 0 <= x1 <= x2 <= 127 and 0 <= y1 <= y2 <= 95
        assert row["class"] in ("circle", "square", "triangle")


def test_test_and_detect_rerun_into_their_default_folders(trained, tiny_data, tmp_path):
    import shutil

    _, model = trained
    local = tmp_path / "m" / "net.caffemodel"  # a copy, so the folder beside it is ours
    local.parent.mkdir()
    shutil.copy(model, local)
    shutil.copy(str(model) + ".frcnn.json", str(local) + ".frcnn.json")
    meta = json.loads((local.parent / "net.caffemodel.frcnn.json").read_text())
    for key in ("test_net", "cfg_file"):  # the sidecar's paths are relative to the model
        if meta.get(key):
            meta[key] = str((Path(model).parent / meta[key]).resolve())
    (local.parent / "net.caffemodel.frcnn.json").write_text(json.dumps(meta))
    request = EvalRequest(model=str(local), dataset="synth_test", root=str(tiny_data),
                          max_images=2)
    first = run_test(request)
    folder = local.parent / "net_test_synth_test"
    assert (folder / ".frcnn-output").is_file() and (folder / "eval.json").is_file()
    (folder / "stale.txt").write_text("from an earlier run")
    second = run_test(request)  # the same command again: just works, folder replaced
    assert json.dumps(second, sort_keys=True) == json.dumps(first, sort_keys=True)  # NaN too
    assert not (folder / "stale.txt").exists() and (folder / "eval.json").is_file()
    assert json.loads((folder / "eval.json").read_text())["images"] == 2
    image = str(tiny_data / "JPEGImages" / "000001.jpg")
    for _ in range(2):
        rows = run_detect(DetectRequest(model=str(local), images=[image], thresh=0.0))
        assert Path(rows[0]["drawn"]).parent == local.parent / "net_detect"
    assert (local.parent / "net_detect" / "detections.json").is_file()
    assert sorted(p.name for p in local.parent.iterdir()) == [
        "net.caffemodel", "net.caffemodel.frcnn.json", "net_detect", "net_test_synth_test"]


def test_explicit_out_is_rerunnable_but_an_unrelated_folder_needs_force(trained, tiny_data,
                                                                       tmp_path):
    _, model = trained
    request = dict(model=model, dataset="synth_test", root=str(tiny_data), max_images=1)
    run_test(EvalRequest(out=str(tmp_path / "t"), **request))
    run_test(EvalRequest(out=str(tmp_path / "t"), **request))  # made by frcnn test: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--force"):
        run_test(EvalRequest(out=str(mine), **request))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    run_test(EvalRequest(out=str(mine), force=True, **request))
    run_test(EvalRequest(out=str(mine), force=True, **request))  # still not ours: kept
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "eval.json").is_file()
    assert not (mine / ".frcnn-output").exists()
    image = str(tiny_data / "JPEGImages" / "000001.jpg")
    run_detect(DetectRequest(model=model, images=[image], out=str(mine)))  # detect: as before
    assert (mine / "notes.txt").exists() and (mine / "detections.json").is_file()
    run_detect(DetectRequest(model=model, images=[image], out=str(tmp_path / "d")))
    with pytest.raises(FileExistsError, match="--force"):  # a detect folder is not test's
        run_test(EvalRequest(out=str(tmp_path / "d"), **request))


def test_resume_continues_from_a_solver_state(trained, tiny_data, tmp_path):
    out, _ = trained
    state = sorted((out / "state").glob("*_iter_3.solverstate"))[0]
    model = run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                                   root=str(tiny_data), iters=4, out=str(tmp_path / "r"),
                                   set_pairs=SMALL, base_lr=0.001, scales=(1.5, 3),
                                   iter_size=1, snapshot_iters=0, resume=str(state)))
    assert Path(model).name.endswith("_iter_4.caffemodel")


def test_output_folder_is_not_overwritten_without_force(trained, tiny_data):
    out, _ = trained
    with pytest.raises(FileExistsError, match="--force"):
        run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                               root=str(tiny_data), iters=1, out=str(out)))


def test_missing_model_and_bad_image_are_clear_errors(trained, tmp_path):
    _, model = trained
    with pytest.raises(FileNotFoundError, match="model not found"):
        run_detect(DetectRequest(model=str(tmp_path / "nope.caffemodel"), images=["x.jpg"]))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        run_detect(DetectRequest(model=model, images=[str(bad)], out=str(tmp_path / "d")))


def test_diverging_loss_stops_training_naming_the_loss(tiny_data, tmp_path):
    with pytest.raises(RuntimeError, match=r"(?i)iteration \d+.*(nan|inf)|(nan|inf).*iteration"):
        run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                               root=str(tiny_data), iters=30, out=str(tmp_path / "nan"),
                               set_pairs=SMALL, base_lr=1e6, scales=(1.5, 3), iter_size=1,
                               snapshot_iters=0, display=1))


def test_solver_type_reaches_the_solver_and_a_bad_one_is_refused(tiny_data, tmp_path):
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    with pytest.raises(ValueError, match="--solver-type must be one of"):
        run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                               root=str(tiny_data), iters=1, out=str(tmp_path / "bad"),
                               solver_type="adam", force=True))
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "adam"
    run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end", dataset="synth_train",
                           root=str(tiny_data), iters=2, out=str(out), set_pairs=SMALL,
                           base_lr=0.001, solver_type="Adam", iter_size=1, snapshot_iters=0,
                           display=1, force=True))
    solvers = [f for f in out.rglob("*solver*.prototxt")]
    types = set()
    for f in solvers:
        solver = caffe_pb2.SolverParameter()
        text_format.Merge(f.read_text(), solver)
        types.add(solver.type)
    assert "Adam" in types


def test_cli_help_lists_the_commands():
    proc = subprocess.run([sys.executable, "-m", "frcnn.cli", "--help"], capture_output=True,
                          text=True)
    for command in ("train", "test", "detect", "demo"):
        assert command in proc.stdout


def test_a_damaged_model_is_an_error_in_process(trained, tmp_path):
    """Caffe would abort the process on a truncated caffemodel; we raise first."""
    import shutil

    from frcnn.app.testing import ModelRequest, load_detector

    out, model = trained
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(Path(model).read_bytes()[:1000])
    meta = json.loads(Path(model + ".frcnn.json").read_text())
    meta["test_net"] = str(out / "net" / "test.prototxt")
    meta["cfg_file"] = str(out / "cfg.yml")
    (tmp_path / "cut.caffemodel.frcnn.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="bytes but its sidecar says"):
        load_detector(ModelRequest(model=str(cut)))
    meta.pop("model_bytes")
    meta.pop("model_sha256")  # without the record: the caffemodel check itself
    (tmp_path / "cut.caffemodel.frcnn.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cut.caffemodel: not a caffemodel"):
        load_detector(ModelRequest(model=str(cut)))
    assert read_sidecar(model)["model_bytes"] == Path(model).stat().st_size
    shutil.rmtree(tmp_path)


def test_default_output_folders_are_named_after_model_and_dataset(tmp_path):
    from frcnn.app.runs import default_derived_out

    model = tmp_path / "run" / "zf_iter_9.caffemodel"
    model.parent.mkdir()
    model.write_bytes(b"x")
    export = tmp_path / "export"
    export.mkdir()
    assert default_derived_out("test", model, "voc_2007_test") == \
        model.parent / "zf_iter_9_test_voc_2007_test"
    assert default_derived_out("test", model, "/data/coco/annotations/instances_val2017.json") \
        == model.parent / "zf_iter_9_test_instances_val2017"
    assert default_derived_out("test", model, "data/my voc/") == \
        model.parent / "zf_iter_9_test_my_voc"
    assert default_derived_out("detect", model) == model.parent / "zf_iter_9_detect"
    assert default_derived_out("test", export, "synth_test") == export / "test_synth_test"
    assert default_derived_out("detect", export) == export / "detect"
    with pytest.raises(FileNotFoundError, match="model not found"):
        default_derived_out("test", tmp_path / "nope.caffemodel", "synth_test")
    assert not (tmp_path / "nope_test_synth_test").exists()
