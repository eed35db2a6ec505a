"""The frcnn command line: info and the smoke job through `caffe train`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from frcnn import cli, smoke


def test_info_reports_the_caffe_layers(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "ROIPooling yes" in out and "SmoothL1Loss yes" in out and "Python yes" in out
    assert "caffe build: brocolli-caffe-9.0.2, compiled with" in out


def test_smoke_job_trains_through_caffe(tmp_path):
    frcnn_cmd = Path(sys.executable).with_name("frcnn")
    proc = subprocess.run([str(frcnn_cmd), "smoke", "--out", str(tmp_path), "--iters", "40"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[smoke] OK" in proc.stdout
    assert (tmp_path / "caffe_train.log").exists()


def test_smoke_sample_is_consistent():
    import numpy as np

    sample = smoke.make_sample(np.random.default_rng(0))
    assert sample["data"].shape == (1, 3, smoke.IMAGE_SIZE, smoke.IMAGE_SIZE)
    rois = sample["rois"]
    assert rois.shape == (smoke.NUM_ROIS, 5) and np.all(rois[:, 0] == 0)
    assert np.all(rois[:, 3] > rois[:, 1]) and np.all(rois[:, 4] > rois[:, 2])
    assert np.all(np.abs(sample["targets"][:, :2]) < 1)


def test_unknown_command_is_an_error():
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])
