"""frcnn train -> test on the COCO form of a tiny synthetic dataset, in real Caffe nets."""
from __future__ import annotations

import json

import pytest

from frcnn.app.testing import EvalRequest, run_test
from frcnn.app.training import TrainRequest, run_train
from frcnn.coco_eval import SUMMARY_NAMES
from frcnn.data.coco import write_coco
from frcnn.data.datasets import get_dataset
from frcnn.caffe_files import read_sidecar

from tests.tiny_synth import SMALL, write_tiny_synth

pytest.importorskip("pycocotools")

CATEGORY_IDS = (3, 5, 9)  # non-contiguous on purpose


pytestmark = pytest.mark.usefixtures("cfg")  # the global cfg, restored after each test


def test_train_and_test_on_coco_json(tmp_path):
    root = tmp_path / "synth"
    write_tiny_synth(root, 8, 3)
    jsons = {}
    for split in ("train", "test"):
        voc = get_dataset(str(root), split=split)
        jsons[split] = write_coco(voc.load(log=None), voc.classes,
                                  root / "annotations" / f"instances_{split}.json",
                                  CATEGORY_IDS)
    model = run_train(TrainRequest(net="squeezenet/faster_rcnn_end2end",
                                   dataset=str(jsons["train"]), iters=4,
                                   out=str(tmp_path / "run"), set_pairs=SMALL, base_lr=0.001,
                                   scales=(1.5, 3), iter_size=1, snapshot_iters=0, display=2))
    meta = read_sidecar(model)
    assert meta["classes"] == ["__background__", "circle", "square", "triangle"]
    assert meta["category_ids"] == list(CATEGORY_IDS)

    out = tmp_path / "test"
    aps = run_test(EvalRequest(model=model, dataset=str(jsons["test"]), out=str(out),
                               set_pairs=("TEST.SCALES", "(96,)", "TEST.MAX_SIZE", "128")))
    assert "mAP" in aps
    report = json.loads((out / "eval.json").read_text())
    assert list(report["coco"]) == list(SUMMARY_NAMES)
    assert all(v is None or 0.0 <= v <= 1.0 for v in report["coco"].values())
    results = json.loads((out / "coco_results.json").read_text())
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    assert {r["image_id"] for r in results} <= {9, 10, 11}
    assert "AR_100" in (out / "eval.txt").read_text()
