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
from frcnn.data.synth import SynthOptions, write_synth_dataset
from frcnn.train import read_sidecar

SMALL = ("TRAIN.SCALES", "(96,)", "TRAIN.MAX_SIZE", "128", "TEST.SCALES", "(96,)",
         "TEST.MAX_SIZE", "128", "TRAIN.RPN_PRE_NMS_TOP_N", "600", "TRAIN.RPN_POST_NMS_TOP_N",
         "100", "TRAIN.BATCH_SIZE", "16", "TEST.RPN_POST_NMS_TOP_N", "50",
         "TRAIN.OHEM_BATCH_SIZE", "16")


@pytest.fixture(autouse=True)
def restore_cfg():
    saved = copy.deepcopy(config.cfg)
    yield
    config.cfg.clear()
    config.cfg.update(saved)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth_dataset(root, SynthOptions(num_train=12, num_test=4, height=96, width=128,
                                           min_object=24, max_object=48), log=None)
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
    image = str(tiny_data / "JPEGImages" / "000001.jpg")
    out = run_detect(DetectRequest(model=model, images=[image], out=str(tmp_path / "det"),
                                   thresh=0.0))
    assert Path(out[0]["drawn"]).exists()
    for row in out[0]["detections"]:
        x1, y1, x2, y2 = row["box"]
        assert 0 <= x1 <= x2 <= 127 and 0 <= y1 <= y2 <= 95
        assert row["class"] in ("circle", "square", "triangle")


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
    (tmp_path / "cut.caffemodel.frcnn.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cut.caffemodel: not a caffemodel"):
        load_detector(ModelRequest(model=str(cut)))
    assert read_sidecar(model)["model_bytes"] == Path(model).stat().st_size
    shutil.rmtree(tmp_path)
