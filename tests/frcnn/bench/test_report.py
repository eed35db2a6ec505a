"""The report: tables, JSON, CSV and the PNG chart, from a hand-made results dict."""
from __future__ import annotations

import csv
import json

import pytest

from frcnn.bench import report
from frcnn.bench.commands import arithmetic_rates, zf_ratios


def table_headers(text: str) -> set[tuple[str, ...]]:
    """The header cells of every pipe table in ``text`` (the line above a |---| line)."""
    lines = text.splitlines()
    return {tuple(c.strip() for c in lines[i - 1].strip().strip("|").split("|"))
            for i, line in enumerate(lines) if i and line.startswith("|-")}


def _inference(net: str, size: list[int], scale: float) -> dict:
    ms = {"backbone": 100 * scale, "rpn": 20.0, "proposal": 2.0, "roi_head": 50 * scale,
          "post": 1.0}
    macs = {"backbone": int(1e9 * scale), "rpn": int(2e8), "proposal": 0,
            "roi_head": int(5e8 * scale)}
    return {"net": net, "variant": f"{net}/x", "size": size, "runs": 3, "warmup": 1, "ms": ms,
            "rpn_proposal_ms": 22.0, "total_ms": sum(ms.values()),
            "total_runs_ms": [sum(ms.values())] * 3, "python_ms": 2.0,
            "python_layers_ms": {"proposal": 2.0}, "macs": macs,
            "total_macs": sum(macs.values()), "rois": 300, "detections": 12,
            "feature_blob": "f", "top_layers": [["conv", 50.0], ["fc", 10.0]]}


@pytest.fixture
def results() -> dict:
    inference = [_inference("squeezenet", [600, 1000], 1.0), _inference("zf", [600, 1000], 3.0)]
    return {
        "machine": {"cpu": "Test CPU", "cpu_count": 2, "usable_cores": 2, "threads_env": {},
                    "load_average": [0.1, 0.1, 0.1], "platform": "Linux", "python": "3.11",
                    "numpy": "2", "caffe": "1.0", "cpu_flags": ["avx2"],
                    "blas": [{"file": "libopenblas.so", "user": "caffe",
                              "config": "OpenBLAS 0.3 DYNAMIC_ARCH", "core": "Haswell",
                              "threads": 2}]},
        "settings": {"sizes": ["600x1000"], "repeats": 3, "train_repeats": 2, "warmup": 1,
                     "gemm_n": 64, "parts": ["inference"], "seed": 0, "quick": False,
                     "rpn_post_nms_top_n": 300},
        "inference": inference,
        "ratios": zf_ratios(inference),
        "arithmetic": {"numpy_gemm": {"n": 64, "seconds": 1e-3, "macs_per_s": 2.6e8},
                       "caffe_gemm": {"n": 64, "seconds": 1e-3, "macs_per_s": 2.6e8},
                       "nets": arithmetic_rates(inference)},
        "training": [{"net": "squeezenet-ohem", "variant": "v", "size": [600, 1000], "runs": 2,
                      "warmup": 1, "total_ms": 900.0, "forward_ms": 400.0,
                      "backward_ms": 500.0,
                      "ms": {"backbone": 1, "rpn": 1, "proposal": 1, "roi_head": 1},
                      "python_layers_ms": {"rpn-data": 3.0, "proposal": 2.0, "roi-data": 1.0,
                                           "hard_roi_mining": 1.5},
                      "python_ms": 7.5, "rois": 2003, "hard_rois": 128, "notes": []}],
        "data_layer": {"600x1000": {"measured": False, "reason": "not written"}},
        "models": [{"net": "squeezenet", "variant": "v", "num_classes": 4, "anchors": 9,
                    "params": 3409298, "bytes": 13640000, "mb": 13.64, "vs_seed": 0.80}],
        "notes": ["a note"],
    }


def test_ratios_and_rates(results):
    (ratio,) = results["ratios"]
    assert ratio["net"] == "squeezenet" and ratio["backbone"] == pytest.approx(3.0)
    assert ratio["roi_head"] == pytest.approx(3.0) and ratio["rpn_proposal"] == 1.0
    assert ratio["total"] == pytest.approx(results["inference"][1]["total_ms"]
                                           / results["inference"][0]["total_ms"])
    rate = results["arithmetic"]["nets"][0]
    assert rate["stages"]["backbone"]["macs_per_s"] == pytest.approx(1e9 / 0.1)


def test_markdown_table_columns_and_alignment():
    text = report.markdown_table(("name", "ms"), [["a", "1.5"], ["bb", "-"]])
    lines = text.splitlines()
    assert lines[0] == "| name | ms  |"
    assert lines[1] == "|------|----:|"
    assert lines[2] == "| a    | 1.5 |" and lines[3] == "| bb   |   - |"


def test_report_text_has_every_table(results):
    text = report.format_report(results)
    headers = table_headers(text)
    for columns in (report.INFERENCE_COLUMNS, report.RATIO_COLUMNS, report.ARITH_COLUMNS,
                    report.TRAINING_COLUMNS, report.MODEL_COLUMNS, report.SLOWEST_COLUMNS):
        assert tuple(columns) in headers, columns
    assert "machine: Test CPU, 2 cores" in text
    assert "caffe's BLAS: libopenblas.so: OpenBLAS 0.3, Haswell kernels, 2 threads" in text
    assert "2003 -> 128" in text and "not measured" in text and "- a note" in text
    row = next(line for line in text.splitlines() if line.startswith("| squeezenet "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["squeezenet", "600x1000", "100"] and cells[-2] == "2.73x"  # 473 / 173


def test_write_all(results, tmp_path):
    paths = report.write_all(results, tmp_path / "out")
    assert [p.name for p in paths] == ["bench.json", "bench.csv", "bench.png"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(results))
    with open(paths[1]) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["section", "net", "size", "metric", "value", "unit"]
    got = {(r[0], r[1], r[2], r[3]): r[4] for r in rows[1:]}
    assert float(got[("inference", "zf", "600x1000", "total_ms")]) == pytest.approx(
        results["inference"][1]["total_ms"])
    assert got[("training", "squeezenet-ohem", "600x1000", "hard_roi_mining_ms")] == "1.5"
    assert got[("model", "squeezenet K=4", "", "params")] == "3409298"
    assert ("ratio_zf", "squeezenet", "600x1000", "total") in got
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_chart_without_inference(results, tmp_path):
    results = dict(results, inference=[], ratios=[])
    results["arithmetic"]["nets"] = []
    paths = report.write_all(results, tmp_path)
    assert [p.name for p in paths] == ["bench.json", "bench.csv"]
    assert "Inference" not in report.format_report(results)


def test_machine_info_names_the_cpu_and_blas(caffe):
    info = report.machine_info()
    assert info["cpu"] and info["cpu_count"] >= 1 and info["usable_cores"] >= 1
    assert isinstance(info["threads_env"], dict)
    users = {b["user"] for b in info["blas"]}
    assert users <= {"caffe", "numpy"}
