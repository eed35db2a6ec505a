"""`frcnn bench`: option parsing, and a --quick run through every part."""
from __future__ import annotations

import argparse
import json

import pytest

from frcnn import cli
from frcnn.bench import commands, report
from tests.frcnn.bench.test_report import table_headers


def test_parse_sizes():
    assert commands.parse_sizes("600,300") == ((600, 1000), (300, 500))
    assert commands.parse_sizes(" 128x200 ") == ((128, 200),)
    for bad in ("", "abc", "16", "600x"):
        with pytest.raises(argparse.ArgumentTypeError):
            commands.parse_sizes(bad)


def test_options_from_the_command_line():
    args = cli.build_parser().parse_args(
        ["bench", "--sizes", "300", "--repeats", "2", "--only", "models,inference"])
    assert args.sizes == ((300, 500),) and args.repeats == 2
    assert args.parts == ("models", "inference") and args.bench_command is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--only", "speed"])


def test_set_pairs_go_on_top_of_the_quick_cfg():
    merged = commands.cfg_overrides(commands.QUICK_CFG, ["TEST.RPN_MIN_SIZE", "0",
                                                         "TEST.RPN_POST_NMS_TOP_N", "7"])
    assert merged["TEST"] == {"RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 7,
                              "RPN_MIN_SIZE": 0}
    assert merged["TRAIN"] == commands.QUICK_CFG["TRAIN"]
    assert commands.QUICK_CFG["TEST"]["RPN_POST_NMS_TOP_N"] == 20   # not changed in place
    assert commands.cfg_overrides(None, []) is None
    assert commands.cfg_overrides(None, ["TEST.NMS", "0.4"]) == {"TEST": {"NMS": 0.4}}


def test_a_bad_set_pair_fails_before_benchmarking(capsys):
    from frcnn.config import ConfigError

    assert cli.main(["bench", "--backends", "caffe", "--set", "TEST.RPN_MIN_SIZ", "0"]) != 0
    out, err = capsys.readouterr()
    assert "unknown config key TEST.RPN_MIN_SIZ" in err and "[bench]" not in out
    with pytest.raises(ConfigError, match="odd number"):
        commands.cfg_overrides(None, ["TEST.NMS"])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `frcnn bench --quick` (a few seconds): its exit status, output and folder."""
    import copy

    from frcnn import config

    out = tmp_path_factory.mktemp("bench")
    saved = copy.deepcopy(config.cfg)
    capture = pytest.MonkeyPatch()
    lines: list[str] = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        rc = cli.main(["bench", "--quick", "--out", str(out)])
    finally:
        capture.undo()
    assert config.cfg == saved  # every net's cfg was restored
    return rc, "\n".join(lines), out


def test_quick_run_writes_every_file(quick_run):
    rc, text, out = quick_run
    assert rc == 0, text
    assert {p.name for p in out.iterdir()} == {"bench.json", "bench.csv", "bench.png"}
    results = json.loads((out / "bench.json").read_text())
    assert [(r["net"], r["size"]) for r in results["inference"]] == [
        ("squeezenet", [128, 213]), ("squeezenet-70", [128, 213]), ("zf", [128, 213])]
    assert [r["net"] for r in results["training"]] == ["squeezenet", "squeezenet-ohem", "zf"]
    assert [(r["net"], r["num_classes"]) for r in results["models"]] == [
        ("squeezenet", 4), ("squeezenet-70", 4), ("zf", 4)]
    assert [r["net"] for r in results["ratios"]] == ["squeezenet", "squeezenet-70"]
    assert set(results["arithmetic"]) == {"numpy_gemm", "caffe_gemm", "nets"}


def test_quick_run_measures_every_stage(quick_run):
    results = json.loads((quick_run[2] / "bench.json").read_text())
    for r in results["inference"]:
        assert set(r["ms"]) == {"backbone", "rpn", "proposal", "roi_head", "post"}
        assert 0 < r["rois"] <= 20  # --quick keeps 20 proposals
        assert list(r["python_layers_ms"]) == ["proposal"]
        assert r["total_macs"] == sum(r["macs"].values()) > 0
    sq, sq70, zf = results["inference"]
    assert sq["feature_blob"] == "fire9/concat" and zf["feature_blob"] == "conv5"
    assert sq70["macs"]["rpn"] > sq["macs"]["rpn"]  # 70 anchors: wider RPN heads
    plain, ohem, zf_train = results["training"]
    assert set(plain["python_layers_ms"]) == {"rpn-data", "proposal", "roi-data"}
    assert set(ohem["python_layers_ms"]) == {"rpn-data", "proposal", "roi-data",
                                             "hard_roi_mining"}
    assert ohem["hard_rois"] is not None and plain["hard_rois"] is None
    assert ohem["rois"] >= ohem["hard_rois"]
    (data,) = results["data_layer"].values()
    assert data["measured"] is True and data["blob_shape"][:3] == [1, 3, 128]
    assert data["blob_shape"][3] in (212, 213)  # half-size images: 106 * 2
    sizes = {r["net"]: r for r in results["models"]}
    assert sizes["squeezenet"]["params"] == 3_409_298
    assert sizes["zf"]["params"] == 58_946_506
    assert sizes["squeezenet"]["bytes"] > 4 * 3_409_298  # float32 + protobuf framing


def test_quick_run_prints_the_tables(quick_run):
    rc, text, _ = quick_run
    assert "[bench] inference:" in text and "[bench] training:" in text  # progress
    headers = table_headers(text)
    for columns in (report.INFERENCE_COLUMNS, report.TRAINING_COLUMNS, report.MODEL_COLUMNS,
                    report.RATIO_COLUMNS, report.ARITH_COLUMNS, report.SLOWEST_COLUMNS):
        assert tuple(columns) in headers
    assert "machine:" in text and "wrote" in text


def test_bench_nms_delegates(capsys):
    assert cli.main(["bench", "nms", "--sizes", "300", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "NMS at IoU 0.7" in out and "bbox_overlaps" in out
