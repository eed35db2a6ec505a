"""benchmarks/bench_demo.py: --report over saved runs (the figures, the spread) and its
argument checks; the runs themselves are the measurement, not a test."""
from __future__ import annotations

import json
from pathlib import Path

import pytest



def _saved_run(root: Path, seed: int, ohem: bool, m07: float, area: float) -> None:
    suffix = "_ohem" if ohem else ""
    net = "squeezenet/faster_rcnn_end2end" + suffix
    (root / f"seed{seed}" / f"train{suffix}").mkdir(parents=True)
    (root / f"seed{seed}" / f"test{suffix}").mkdir(parents=True)
    (root / f"seed{seed}" / f"train{suffix}" / "run.json").write_text(json.dumps(
        {"net": net, "iters": 2400, "seconds_per_iter": 0.2, "train_seconds": 480.0}))
    (root / f"seed{seed}" / f"test{suffix}" / "eval.json").write_text(json.dumps(
        {"seconds_per_image": 0.1, "ap_voc07": {"circle": m07, "mAP": m07},
         "ap_area": {"circle": area, "mAP": area}}))


def test_report_reads_saved_runs_and_spreads_them(bd, tmp_path, capsys):
    _saved_run(tmp_path, 1, False, 0.80, 0.85)
    _saved_run(tmp_path, 2, False, 0.90, 0.95)
    _saved_run(tmp_path, 1, True, 0.70, 0.75)
    assert bd.main(["--out", str(tmp_path), "--seeds", "1", "2", "--nets", "plain",
                    "--report"]) == 0
    out = capsys.readouterr().out
    assert "circle 0.800" in out and "circle 0.900" in out and "_ohem" not in out
    saved = json.loads((tmp_path / "bench_demo.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [1, 2]
    assert saved["summary"]["squeezenet/faster_rcnn_end2end"]["map_voc07"] == \
        "0.850 +- 0.071 (0.800..0.900)"
    assert saved["set"] == []


def test_report_of_a_run_not_made_says_which(bd, tmp_path):
    with pytest.raises(FileNotFoundError, match="seed4"):
        bd.main(["--out", str(tmp_path), "--seeds", "4", "--nets", "plain", "--report"])


def test_set_must_pair(bd, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bd.main(["--out", str(tmp_path), "--set", "TRAIN.USE_EMPTY_IMAGES", "--report"])
    assert "KEY VALUE pairs" in capsys.readouterr().err
