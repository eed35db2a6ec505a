"""RoIDataLayer: configured by param_str in a real caffe.Net and under `caffe train`, fed by
set_roidb from Python, and its errors."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from frcnn import config
from frcnn.data.roidb import training_roidb
from frcnn.data.synth import SynthOptions, write_synth_dataset
from frcnn.data.voc import load_voc
from frcnn.testing import NumpyBlob, make_layer
from roi_data_layer.layer import RoIDataLayer

TINY = SynthOptions(num_train=6, num_test=2, height=64, width=80, min_object=16,
                    max_object=40, max_objects=3, seed=11)
LABEL = "layer 'input-data' (roi_data_layer.layer.RoIDataLayer)"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("roi_data") / "synth"
    write_synth_dataset(out, TINY, log=None)
    return out



def _layer(param_str: str):
    layer = make_layer(RoIDataLayer, param_str, phase="TRAIN", name="input-data")
    top = [NumpyBlob() for _ in range(3)]
    layer.setup([], top)
    return layer, top


def _expected_data(entry: dict, scale: float, means) -> np.ndarray:
    """The data blob of an entry, computed independently of frcnn.data.blobs."""
    im = cv2.imread(entry["image"]).astype(np.float32)
    if entry["flipped"]:
        im = im[:, ::-1]
    im = cv2.resize(im - np.array(means, np.float32), None, fx=scale, fy=scale,
                    interpolation=cv2.INTER_LINEAR)
    return im.transpose(2, 0, 1)[None]


def _check_blobs(data, im_info, gt_boxes, roidb, scales, means):
    h, w, scale = im_info[0]
    assert data.shape == (1, 3, int(h), int(w)) and min(data.shape[2:]) in scales
    assert gt_boxes.ndim == 2 and gt_boxes.shape[1] == 5 and len(gt_boxes) >= 1
    assert set(gt_boxes[:, 4].tolist()) <= {1.0, 2.0, 3.0}
    matches = [e for e in roidb if len(e["boxes"]) == len(gt_boxes)
               and np.allclose(e["boxes"] * scale, gt_boxes[:, :4], atol=1e-3)
               and np.array_equal(e["gt_classes"], gt_boxes[:, 4])]
    # (a box centred left-right matches the entry and its flipped copy: the data decides)
    same = [e for e in matches
            if np.allclose(data, _expected_data(e, scale, means), atol=1e-2)]
    assert matches and same, "the blobs match no roidb entry"
    return same[0]


# ----------------------------------------------------------------------- a real caffe.Net

def test_net_configured_by_param_str(make_net, synth):
    param_str = (f"'num_classes': 4, 'dataset': '{synth}', 'split': 'train', "
                 f"'scales': (32, 48), 'max_size': 100, 'seed': 1")
    net = make_net(f"""
        name: "roi_data_only"
        layer {{ name: "input-data" type: "Python" top: "data" top: "im_info" top: "gt_boxes"
          python_param {{ module: "roi_data_layer.layer" layer: "RoIDataLayer"
                          param_str: "{param_str}" }} }}
        """, phase="TRAIN")
    layer = net.layers[0]
    roidb = layer._roidb
    n_images = sum(len(r["gt_classes"]) > 0 for r in load_voc(synth, "train"))
    assert len(roidb) == 2 * n_images   # flipped per cfg TRAIN.USE_FLIPPED
    assert net.blobs["data"].data.shape == (1, 3, 48, 100)   # the setup placeholder
    seen, shapes = set(), set()
    for _ in range(2 * len(roidb)):
        out = net.forward()
        entry = _check_blobs(out["data"], out["im_info"], out["gt_boxes"], roidb, (32, 48),
                             config.cfg.PIXEL_MEANS)
        seen.add((entry["image"], entry["flipped"]))
        shapes.add(out["data"].shape)
    assert seen == {(e["image"], e["flipped"]) for e in roidb}  # every entry, flipped too
    assert shapes == {(1, 3, 32, 40), (1, 3, 48, 60)}


def test_caffe_train_with_a_dataset_in_param_str(tmp_path, synth):
    """The plain `caffe train` command: relative root and cfg file, prefetch thread on."""
    (tmp_path / "synth").symlink_to(synth)
    (tmp_path / "cfg.yml").write_text("TRAIN:\n  SCALES: [40]\n  MAX_SIZE: 64\n")
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        name: "roi_data_train"
        layer { name: "input-data" type: "Python" top: "data" top: "im_info" top: "gt_boxes"
          python_param { module: "roi_data_layer.layer" layer: "RoIDataLayer"
            param_str: "'num_classes': 4, 'dataset': 'synth_train', 'root': 'synth', 'cfg': 'cfg.yml', 'prefetch': True" } }
        layer { name: "silence" type: "Silence" bottom: "gt_boxes" }
        layer { name: "small" type: "Power" bottom: "data" top: "small"
          power_param { scale: 0.01 } }
        layer { name: "conv" type: "Convolution" bottom: "small" top: "conv"
          convolution_param { num_output: 3 kernel_size: 3 pad: 1
            weight_filler { type: "gaussian" std: 0.01 } } }
        layer { name: "pool_conv" type: "Pooling" bottom: "conv" top: "pool_conv"
          pooling_param { pool: AVE global_pooling: true } }
        layer { name: "pool_small" type: "Pooling" bottom: "small" top: "pool_small"
          pooling_param { pool: AVE global_pooling: true } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "pool_conv" bottom: "pool_small"
          top: "loss" }
        """))
    (tmp_path / "solver.prototxt").write_text(textwrap.dedent("""
        net: "net.prototxt"
        base_lr: 0.01
        lr_policy: "fixed"
        momentum: 0.9
        display: 1
        max_iter: 20
        snapshot: 0
        snapshot_after_train: false
        solver_mode: CPU
        random_seed: 1
        """))
    caffe_cmd = Path(sys.executable).with_name("caffe")
    proc = subprocess.run([str(caffe_cmd), "train", "--solver=solver.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0"))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "[roidb] 6 images + flipped ->" in log
    # im_info is a net output, so the solver prints it: [40, 50, 0.625] from the cfg file's
    # SCALES 40 and MAX_SIZE 64 (the 64 x 80 images: min(40 / 64, 64 / 80) = 0.625)
    for value in ("im_info = 40", "im_info = 50", "im_info = 0.625"):
        assert value in log
    losses = [float(v) for v in re.findall(r"Iteration \d+, loss = ([-+0-9.eE]+)", log)]
    assert len(losses) == 21 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])   # it learns (the mean colour)


# ----------------------------------------------------------------------- from Python

def test_set_roidb_and_prefetch(synth):
    roidb = training_roidb(load_voc(synth, "train"), 4, flip=False, log=None)
    layer, top = _layer("'num_classes': 4\n'scales': [48]\n'max_size': 80\n'prefetch': True")
    with pytest.raises(RuntimeError, match=f"{re.escape(LABEL)}: no roidb"):
        layer.forward([], top)
    layer.set_roidb(roidb)
    try:
        for _ in range(len(roidb)):
            layer.forward([], top)
            _check_blobs(top[0].data, top[1].data, top[2].data, roidb, (48,),
                         config.cfg.PIXEL_MEANS)
        prefetcher = layer._prefetcher
        layer.set_roidb(roidb[:2])          # a new roidb replaces the old and its thread
        assert not prefetcher.alive
        layer.forward([], top)
    finally:
        layer.close()
    assert layer._prefetcher is None
    bad = [dict(roidb[0], gt_classes=np.array([7] * len(roidb[0]["gt_classes"]), np.int32))]
    with pytest.raises(ValueError, match=rf"{re.escape(LABEL)}: roidb entry 0 .*outside 1..3"):
        layer.set_roidb(bad)


def test_seeded_and_same_with_or_without_prefetch(synth):
    def run(prefetch: bool, seed: int) -> list[list[np.ndarray]]:
        layer, top = _layer(f"'num_classes': 4, 'dataset': '{synth}', 'scales': (32, 48), "
                            f"'prefetch': {prefetch}, 'seed': {seed}")
        out = []
        for _ in range(6):
            layer.forward([], top)
            out.append([top[i].data.copy() for i in range(3)])
        layer.close()
        return out

    def same(a, b) -> bool:
        return all(x.shape == y.shape and np.array_equal(x, y)
                   for p, q in zip(a, b) for x, y in zip(p, q))

    first = run(False, 5)
    assert same(first, run(False, 5))
    assert same(first, run(True, 5))
    assert not same(first, run(False, 6))


def test_cfg_settings_apply(cfg, synth):
    cfg.TRAIN.SCALES = (24,)
    cfg.TRAIN.MAX_SIZE = 40
    cfg.TRAIN.USE_FLIPPED = False
    layer, top = _layer(f"'num_classes': 4, 'dataset': '{synth}'")
    assert top[0].data.shape == (1, 3, 24, 40)
    assert not any(e["flipped"] for e in layer._roidb)
    layer.forward([], top)
    assert top[0].data.shape == (1, 3, 24, 30)
    layer, top = _layer(f"'num_classes': 4, 'dataset': '{synth}', 'flip': True")
    assert any(e["flipped"] for e in layer._roidb)


def test_images_without_objects_become_negatives_with_the_cfg_key(cfg, synth):
    records = load_voc(synth, "train")
    empty = dict(records[0], boxes=np.zeros((0, 4), np.float32),
                 gt_classes=np.zeros(0, np.int32), difficult=np.zeros(0, bool))
    roidb = training_roidb([empty, *records[1:3]], 4, flip=False, log=None, keep_empty=True)
    layer, top = _layer("'num_classes': 4\n'scales': [48]\n'max_size': 80")
    with pytest.raises(ValueError, match="no gt boxes.*TRAIN.USE_EMPTY_IMAGES"):
        layer.set_roidb(roidb)
    cfg.TRAIN.USE_EMPTY_IMAGES = True
    layer, top = _layer("'num_classes': 4\n'scales': [48]\n'max_size': 80")
    layer.set_roidb(roidb)
    counts = []
    for _ in range(len(roidb)):
        layer.forward([], top)
        counts.append(top[2].data.shape[0])
    assert sorted(counts)[0] == 0 and top[2].data.shape[1:] == (5,)
    layer, top = _layer(f"'num_classes': 4, 'dataset': '{synth}'")  # the param_str way
    assert len(layer._roidb) >= len(records)


# ----------------------------------------------------------------------- errors

@pytest.mark.parametrize("param_str, error, message", [
    ("'num_classes': 21, 'dataset': '{synth}'", ValueError,
     r"num_classes is 21 but dataset .* has 4 classes \(__background__, circle, square, "
     r"triangle\)"),
    ("'num_classes': 4, 'dataset': 'nope'", ValueError, "unknown dataset 'nope'"),
    ("'num_classes': 4, 'dataset': 'synth_train', 'root': '{synth}/missing'",
     FileNotFoundError, "no synthetic dataset at .*missing .write one with `frcnn data synth"),
    ("'num_classes': 4, 'root': 'data'", ValueError, r"keys \['root'\] need a 'dataset'"),
    ("'num_classes': 4, 'colour': 1", ValueError, "unknown param_str key"),
    ("'num_classes': 4, 'scales': 0", ValueError, "'scales' must be"),
    ("'num_classes': 1", ValueError, "must be >= 2"),
])
def test_setup_errors_name_the_layer(synth, param_str, error, message):
    with pytest.raises(error, match=message) as info:
        _layer(param_str.format(synth=synth))
    assert LABEL in str(info.value)


def test_bad_image_stops_forward_with_its_name(tmp_path):
    out = tmp_path / "synth"
    write_synth_dataset(out, SynthOptions(num_train=2, num_test=0, height=48, width=64,
                                          min_object=16, max_object=32, seed=2), log=None)
    for jpg in (out / "JPEGImages").glob("*.jpg"):
        jpg.write_bytes(b"garbage")
    layer, top = _layer(f"'num_classes': 4, 'dataset': '{out}', 'flip': False")
    with pytest.raises(ValueError, match=rf"{re.escape(LABEL)}: image .*\.jpg cannot be "
                                         rf"decoded"):
        layer.forward([], top)


def test_caffe_train_reports_a_bad_dataset(tmp_path, synth):
    (tmp_path / "net.prototxt").write_text(textwrap.dedent(f"""
        layer {{ name: "input-data" type: "Python" top: "data" top: "im_info" top: "gt_boxes"
          python_param {{ module: "roi_data_layer.layer" layer: "RoIDataLayer"
            param_str: "'num_classes': 21, 'dataset': '{synth}'" }} }}
        layer {{ name: "silence" type: "Silence" bottom: "data" bottom: "im_info"
          bottom: "gt_boxes" }}
        """))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\n'
                                              'max_iter: 1\nsolver_mode: CPU\n')
    caffe_cmd = Path(sys.executable).with_name("caffe")
    proc = subprocess.run([str(caffe_cmd), "train", "--solver=solver.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"{LABEL}: param_str num_classes is 21 but dataset" in proc.stderr
