"""frcnn demo end to end, at a toy size (the real run is measured, not tested)."""
from __future__ import annotations

import json
import math

from frcnn.app.demo import run_demo


def test_demo_runs_every_stage(tmp_path, cfg, capsys):
    m_ap = run_demo(str(tmp_path), iters=2, num_train=8, num_test=4)
    out = capsys.readouterr().out
    for stage in ("1/4", "2/4", "3/4", "4/4", "VOC07 mAP"):
        assert stage in out
    assert math.isnan(m_ap) or 0.0 <= m_ap <= 1.0
    assert (tmp_path / "synth" / "ImageSets" / "Main" / "test.txt").exists()
    assert json.loads((tmp_path / "test" / "eval.json").read_text())["images"] == 4
    assert len(json.loads((tmp_path / "detect" / "detections.json").read_text())) == 4
