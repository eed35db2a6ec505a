"""An old run folder whose cfg.yml says USE_GPU_NMS: true, tested on a machine without a GPU:
`frcnn test` runs on the CPU and says so in one plain stderr line (issue 19)."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from frcnn import config
from frcnn import nms as fnms
from frcnn.app.training import TrainRequest, run_train
from tests.tiny_synth import SMALL, write_tiny_synth


@pytest.mark.skipif(fnms.gpu_device_count() > 0, reason="needs a machine without a usable GPU")
def test_frcnn_test_on_a_run_that_asked_for_gpu_nms_says_so_once(tmp_path):
    data = tmp_path / "synth"
    write_tiny_synth(data, 6, 3)
    saved = copy.deepcopy(config.cfg)
    try:
        model = run_train(TrainRequest(
            net="squeezenet/faster_rcnn_end2end", dataset="synth_train", root=str(data),
            iters=2, out=str(tmp_path / "run"), set_pairs=SMALL, base_lr=0.001,
            scales=(1.5, 3), iter_size=1, snapshot_iters=0, display=1, force=True))
    finally:
        config.cfg.clear()
        config.cfg.update(saved)
    run_cfg = tmp_path / "run" / "cfg.yml"
    text = run_cfg.read_text()
    assert "USE_GPU_NMS: auto" in text
    run_cfg.write_text(text.replace("USE_GPU_NMS: auto", "USE_GPU_NMS: true"))  # an old run

    proc = subprocess.run(
        [sys.executable, "-m", "frcnn.cli", "test", "--model", model, "--dataset",
         "synth_test", "--root", str(data), "--out", str(tmp_path / "test")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    err = proc.stderr
    said = [line for line in err.splitlines() if "USE_GPU_NMS" in line]
    assert said == [f"frcnn.nms: USE_GPU_NMS is True (GPU 0) but {fnms._gpu_unavailable_reason(0)}"
                    f"; using the CPU"], err
    assert "Warning" not in err and "warnings.warn" not in err, err  # no warning, no source
    assert (tmp_path / "test" / "eval.json").is_file()
