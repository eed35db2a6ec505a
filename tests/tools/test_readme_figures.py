"""tools/readme_figures.py: its pure renderers on hand-made data (the README's column
layouts), --from on saved outputs, and quick real runs of the NMS and OpenBLAS sections."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the README and docs/, where the tables are
README = "\n".join(p.read_text() for p in [ROOT / "README.md",
                                          *sorted((ROOT / "docs").glob("*.md"))])


def head(table: str) -> str:
    """A table's header and alignment lines (what must match the README's)."""
    return "\n".join(table.splitlines()[:2])


NMS = {"backends": ["cpu", "numpy"], "numpy": "2.4", "thresh": 0.7, "repeat": 5,
       "peers": {"torchvision": {"missing": "ModuleNotFoundError: No module named 'torch'"},
                 "opencv": {"version": "opencv 4.14.0"}},
       "rows": [{"n": 2000, "kept": 1612, "ours": 0.00044, "numpy ref": 0.03165,
                 "opencv": 0.02215, "same": {"numpy ref": True, "opencv": True}},
                {"n": 20000, "kept": 9788, "ours": 0.00768, "opencv": 1.10026,
                 "same": {"opencv": True}}],
       "overlaps": {"n": 2000, "k": 50, "ours": 0.000143, "numpy": 0.001083, "same": True}}


def test_nms_table_and_notes(rf):
    table = rf.table_nms(NMS)
    assert table == (
        "| N | kept | ours | numpy reference | torchvision.ops.nms | cv2.dnn.NMSBoxes |\n"
        "|---|---|---|---|---|---|\n"
        "| 2,000 | 1,612 | 0.44 | 31.65 | n/a | 22.15 |\n"
        "| 20,000 | 9,788 | 7.68 | - | n/a | 1100.26 |")
    assert head(table) in README
    notes = rf.render_nms(NMS)[0]["notes"]
    assert notes[0].startswith("n/a: torchvision.ops.nms did not import") and "torch" in notes[0]
    assert "Every peer returned exactly our keep list." in notes
    assert notes[-1] == ("`bbox_overlaps` on 2,000 x 50 boxes: 0.143 ms against 1.083 ms for "
                         "vectorised numpy.")
    differ = json.loads(json.dumps(NMS))
    differ["rows"][1]["same"]["opencv"] = False
    assert "Keep lists other than ours: cv2.dnn.NMSBoxes at N = 20,000." in \
        rf.render_nms(differ)[0]["notes"]


def _inf(net, size, backbone, total, python=1.0):
    return {"net": net, "size": size, "ms": {"backbone": backbone, "rpn": 30.0,
                                             "proposal": 1.7, "roi_head": 134.0, "post": 0.5},
            "rpn_proposal_ms": 31.5, "total_ms": total, "python_ms": python,
            "macs": {"backbone": 3e9, "rpn": 1e9, "proposal": 0, "roi_head": 7.8e9},
            "top_layers": [["conv1_last", 77.0], ["roi_pool5", 28.0]]}


BENCH = {
    "machine": {"cpu": "Xeon", "cpu_count": 2, "usable_cores": 2, "load_average": [1.3, 1, 1],
                "blas": [{"user": "caffe", "core": "SkylakeX"}], "threads_env": {}},
    "settings": {"repeats": 5, "warmup": 1, "train_repeats": 3, "rpn_post_nms_top_n": 300},
    "inference": [_inf("squeezenet", [600, 1000], 159.0, 325.0),
                  _inf("squeezenet-70", [600, 1000], 158.0, 349.0),
                  _inf("zf", [600, 1000], 673.0, 834.0)],
    "ratios": [{"net": "squeezenet", "size": [600, 1000], "total": 834 / 325},
               {"net": "squeezenet-70", "size": [600, 1000], "total": 834 / 349}],
    "training": [
        {"net": "squeezenet", "size": [600, 1000], "total_ms": 672.0, "python_ms": 9.0,
         "rois": 128, "hard_rois": None},
        {"net": "squeezenet", "size": [300, 500], "total_ms": 290.0, "python_ms": 3.6,
         "rois": 128, "hard_rois": None},
        {"net": "squeezenet-ohem", "size": [600, 1000], "total_ms": 1522.0, "python_ms": 9.0,
         "rois": 2003, "hard_rois": 128},
        {"net": "squeezenet-ohem", "size": [300, 500], "total_ms": 981.0, "python_ms": 6.0,
         "rois": 1178, "hard_rois": 128}],
    "data_layer": {"600x1000": {"measured": True, "ms": 1.0},
                   "300x500": {"measured": False, "reason": "x"}},
    "models": [{"net": "squeezenet", "num_classes": 4, "params": 3409298, "mb": 13.6},
               {"net": "squeezenet-70", "num_classes": 4, "params": 3500000, "mb": 14.0},
               {"net": "squeezenet", "num_classes": 21, "params": 7e6, "mb": 30.3},
               {"net": "zf", "num_classes": 4, "params": 58.9e6, "mb": 235.8}],
    "seconds": 52.0, "load_average_end": [1.4, 1, 1], "notes": []}


def test_bench_tables(rf):
    table = rf.table_inference(BENCH)
    assert head(table) in README
    assert table.splitlines()[2:] == [
        "| squeezenet | 600x1000 | 159 | 31.5 | 1.7 | 134 | 0.5 | 325 | 2.57x |",
        "| squeezenet, 70 anchors | 600x1000 | 158 | 31.5 | 1.7 | 134 | 0.5 | 349 | 2.39x |",
        "| zf | 600x1000 | 673 | 31.5 | 1.7 | 134 | 0.5 | 834 | - |"]
    table = rf.table_training(BENCH)
    assert head(table) in README
    # (9 + 1) / (672 + 1) = 1.5%, 3.6 / 290 = 1.2%; OHEM (9 + 1) / 1523 = 0.7%, 6 / 981 = 0.6%
    assert table.splitlines()[2:] == [
        "| squeezenet | 672 | 290 | 1.2-1.5% |",
        "| squeezenet OHEM (2003 / 1178 RoIs scored, 128 kept) | 1522 | 981 | 0.6-0.7% |"]
    assert rf.models_text(BENCH) == (
        "Models: SqueezeNet 3.41 M parameters, a 13.6 MB caffemodel (14.0 MB with 70 anchors; "
        "30.3 MB with 21 classes), against the seed's 17 MB; ZF 58.9 M, 235.8 MB.")
    derived = rf.bench_derived(BENCH)
    assert derived[0] == "The run took 52 s; load average (1 min) 1.30 at start, 1.40 at end."
    assert derived[1].startswith("600x1000: backbone 4.2x faster than ZF's (159 vs 673 ms)")


def test_proposal_ranges(rf):
    def run(ours, cy, same=True):
        return {"repeat": 21, "ref_repeat": 5, "net": {"python_share": 0.0015,
                                                       "forward_ms": 320.0},
                "layer": [{"phase": "TEST", "pre_nms_top_n": 6000, "post_nms_top_n": 300,
                           "ours_ms": ours, "straightforward_cython_ms": cy,
                           "straightforward_numpy_ms": 66.4, "same": same}]}
    data = {"runs": [run(1.21, 4.3), run(1.33, 11.1, same=False)]}
    table = rf.table_proposals(data)
    assert head(table) in README
    assert table.splitlines()[2] == "| TEST | 6000 -> 300 | 1.2-1.3 | 4.3-11.1 | 66 | no |"
    assert "0.15%" in rf.render_proposals(data)[0]["notes"][0]


def test_deploy_tables(rf):
    data = {"results": {
        "caffe": {"mAP_voc07": 0.82222, "mAP_area": 0.8516, "seconds_per_image": 0.1238},
        "opencv": {"mAP_voc07": 0.82222, "mAP_area": 0.8516, "seconds_per_image": 0.132,
                   "images_same_detections": 100, "images": 100, "max_box_diff": 1.1e-4,
                   "max_score_diff": 1.5e-6}}, "versions": {"opencv": "4.14.0.94"}}
    table = rf.table_deploy(data)
    assert head(table) in README
    assert table.splitlines()[2:] == [
        "| caffe | 0.8222 | 0.8516 | 0.124 | - | - | - |",
        "| opencv (4.14) | 0.8222 | 0.8516 | 0.132 | 100/100 | 1.1e-04 | 1.5e-06 |"]
    speed = {"gemm": {"macs_per_s": 74e9}, "rows": [
        {"net": "zf", "size": [300, 500], "backend": "caffe", "total_ms": 513.3,
         "stages": {"backbone_rpn": 276.0, "proposals": 2.2, "head": 221.2},
         "gemm_share": 0.54},
        {"net": "zf", "size": [300, 500], "backend": "opencv", "total_ms": 2049.7,
         "stages": {}, "gemm_share": 0.14, "time_vs_caffe": 3.99,
         "vs_caffe": {"max_box_diff": 1e-4, "max_score_diff": 1e-6, "same_counts": True}}]}
    table = rf.table_backends(speed)
    assert head(table) in README
    assert table.splitlines()[2:] == [
        "| zf | 300x500 | caffe | 276.0 | 2.2 | 221.2 | 513.3 | 54% | - |",
        "| zf | 300x500 | opencv | - | - | - | 2049.7 | 14% | 3.99x |"]
    assert "74 GMAC/s" in rf.render_backends(speed)[0]["caption"]


def test_demo_tables(rf):
    def run(net, seed, m07, circle):
        return {"seed": seed, "net": net, "iters": 3000, "s_per_iter": 0.183, "train_s": 550,
                "s_per_image": 0.103, "map_voc07": m07, "map_area": 0.849,
                "ap_voc07": {"circle": circle, "square": 0.889, "triangle": 0.711},
                "ap_area": {"circle": 0.881, "square": 0.937, "triangle": 0.731}}
    data = {"runs": [run("squeezenet/faster_rcnn_end2end", 1, 0.810, 0.830),
                     run("squeezenet/faster_rcnn_end2end", 2, 0.818, 0.850),
                     run("squeezenet/faster_rcnn_end2end_ohem", 1, 0.833, 0.876)]}
    classes = rf.table_demo_classes(data)
    assert head(classes) in README
    assert classes.splitlines()[2:] == ["| circle | 0.840 | 0.881 |",
                                        "| square | 0.889 | 0.937 |",
                                        "| triangle | 0.711 | 0.731 |",
                                        "| **mAP** | **0.814** | **0.849** |"]
    compare = rf.table_demo_compare(data)
    assert head(compare) in README
    assert compare.splitlines()[2] == ("| squeezenet/faster_rcnn_end2end | 0.183 | 550 s | "
                                       "0.103 | 0.814 | 0.849 | 0.840 / 0.889 / 0.711 |")
    blocks = rf.render_demo(data)
    assert [b["title"] for b in blocks] == [
        "Per-class AP, squeezenet/faster_rcnn_end2end (mean over seeds 1, 2)",
        "Plain vs OHEM (mean over seeds 1, 2)", "Every run"]


def test_machine_line(rf):
    m = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "usable_cores": 2,
         "load_start": [1.3, 1.0, 0.9], "load_end": [1.52, 1.1, 1.0],
         "openblas_coretype": {"value": "SkylakeX", "source": "set by the caffe package"},
         "date": "2025-01-02 03:04 UTC"}
    assert rf.machine_line(m) == (
        "Machine: Intel(R) Xeon(R) Processor, 2 cores; load average (1 min) 1.30 at start, "
        "1.52 at end; OPENBLAS_CORETYPE=SkylakeX (set by the caffe package); "
        "2025-01-02 03:04 UTC.")
    assert rf.machine_line({"unknown": "read from x"}) == "Machine: not recorded (read from x)."
    assert rf.openblas_coretype({"OPENBLAS_CORETYPE": "Haswell"}) == {
        "value": "Haswell", "source": "set in the environment"}


def test_from_a_folder_of_saved_outputs(rf, tmp_path, capsys):
    (tmp_path / "nms").mkdir()
    (tmp_path / "nms" / "nms.json").write_text(json.dumps(NMS))
    (tmp_path / "bench_demo.json").write_text(json.dumps({"runs": []}))  # bench_demo's own
    assert rf.main(["--from", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "figures.md").read_text()
    assert capsys.readouterr().out == text
    assert "| 2,000 | 1,612 | 0.44 | 31.65 | n/a | 22.15 |" in text
    assert "Machine: not recorded (read from" in text
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert set(figures["sections"]) == {"nms", "demo"}


def test_quick_nms_section_runs(rf, tmp_path, capsys):
    assert rf.main(["--quick", "--only", "nms", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "python " in text and "bench_nms.py --json" in text
    assert head(rf.table_nms(NMS)) in text
    figures = json.loads((tmp_path / "figures.json").read_text())
    entry = figures["sections"]["nms"]
    assert entry["rc"] == 0 and [r["n"] for r in entry["data"]["rows"]] == [300, 1000]
    assert entry["machine"]["cpu"] and entry["machine"]["load_end"] is not None
    assert "Machine: " in text and (tmp_path / "nms" / "nms.log").is_file()


OPENBLAS = {"n": 2048, "repeats": 3, "threads": None, "quick": False,
            "cpu_flags": {"avx2": True, "fma": True, "avx512f": True},
            "rows": [{"coretype": "auto", "chosen": "SkylakeX", "kernel": "SkylakeX",
                      "gmac_s": 123.4, "seconds": 0.0696, "rc": 0},
                     {"coretype": "Prescott", "chosen": "Prescott", "kernel": "Prescott",
                      "gmac_s": 41.0, "seconds": 0.2095, "rc": 0},
                     {"coretype": "Haswell", "chosen": "Haswell", "kernel": "Haswell",
                      "gmac_s": 79.5, "seconds": 0.108, "rc": 0},
                     {"coretype": "SkylakeX", "chosen": "SkylakeX", "kernel": None,
                      "gmac_s": None, "seconds": None, "rc": -4,
                      "error": "killed by SIGILL"},
                     {"coretype": "Bogus", "chosen": "Bogus", "kernel": "Cooperlake",
                      "gmac_s": None, "seconds": None, "rc": 3,
                      "error": "OpenBLAS runs its Cooperlake kernels for "
                               "OPENBLAS_CORETYPE=Bogus"}]}


def test_openblas_table_and_notes(rf):
    table = rf.table_openblas(OPENBLAS)
    assert head(table) in README
    assert table == (
        "| OPENBLAS_CORETYPE | GEMM GMAC/s | vs Prescott |\n"
        "|---|---:|---:|\n"
        "| auto (SkylakeX) | 123 | 3.01x |\n"
        "| Prescott | 41.0 | 1.00x |\n"
        "| Haswell | 79.5 | 1.94x |\n"
        "| SkylakeX | failed: killed by SIGILL | - |\n"
        "| Bogus | failed: OpenBLAS runs its Cooperlake kernels for OPENBLAS_CORETYP... | - |")
    block, = rf.render_openblas(OPENBLAS)
    assert block["title"] == "OpenBLAS kernels"
    assert block["caption"] == (
        "One Caffe InnerProduct, a float32 2048 x 2048 x 2048 GEMM, best of 3 after a "
        "warm-up; each core type in its own process; CPU flags: avx2 yes, fma yes, "
        "avx512f yes.")
    assert block["notes"] == [
        "The caffe package's choice (SkylakeX) runs Caffe's GEMM at 3.0x the Prescott "
        "kernels' rate.",
        "SkylakeX not measured (status -4): killed by SIGILL.",
        "Bogus not measured (status 3): OpenBLAS runs its Cooperlake kernels for "
        "OPENBLAS_CORETYPE=Bogus."]


def test_openblas_without_prescott_or_choice(rf):
    data = {"n": 256, "repeats": 1, "threads": 1, "cpu_flags": {},
            "rows": [{"coretype": "auto", "chosen": None, "kernel": "Cooperlake",
                      "gmac_s": 30.0, "seconds": 0.01, "rc": 0},
                     {"coretype": "Prescott", "chosen": "Prescott", "gmac_s": None, "rc": 1,
                      "error": "exited with status 1: a | b\nsecond line"}]}
    assert rf.table_openblas(data).splitlines()[2:] == [
        "| auto (unset; OpenBLAS: Cooperlake) | 30.0 | - |",
        "| Prescott | failed: exited with status 1: a \\| b | - |"]
    block, = rf.render_openblas(data)
    assert "OPENBLAS_NUM_THREADS=1" in block["caption"]
    assert block["caption"].endswith("CPU flags: not readable.")
    assert not any("caffe package's choice" in n for n in block["notes"])
    assert not any("This environment sets" in n for n in block["notes"])
    block, = rf.render_openblas({**data, "env_coretype": "Haswell"})
    assert "This environment sets OPENBLAS_CORETYPE=Haswell (the other sections run with " \
           "it); the auto row ran without it." in block["notes"]


def test_openblas_section_is_wired(rf, tmp_path):
    assert rf.SECTIONS.index("openblas") == rf.SECTIONS.index("bench") + 1
    assert "openblas" in rf.DEFAULT_SECTIONS and rf.OUTPUT_FILES["openblas"] == ["openblas.json"]
    for quick in (False, True):
        args = argparse.Namespace(quick=quick, sections=["openblas"])
        commands, extra, skipped = rf.section_commands("openblas", args, tmp_path)
        assert skipped is None and extra == {}
        assert commands == [[sys.executable, rf._script("bench_openblas.py"), "--json",
                             str(tmp_path / "openblas" / "openblas.json")]
                            + (["--quick"] if quick else [])]


def test_from_a_folder_renders_openblas(rf, tmp_path, capsys):
    (tmp_path / "openblas").mkdir()
    (tmp_path / "openblas" / "openblas.json").write_text(json.dumps({**OPENBLAS,
                                                                     "quick": True}))
    (tmp_path / "nms.json").write_text(json.dumps(NMS))
    assert rf.main(["--from", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "out" / "figures.md").read_text()
    section = text[text.index("## Performance: OpenBLAS kernels"):text.index(
        "## Performance: NMS")]  # after bench, before nms
    assert rf.table_openblas(OPENBLAS) in section
    assert "3.0x the Prescott kernels' rate" in section
    assert "--quick: a smoke run" in section and "Machine: not recorded (read from" in section
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert set(figures["sections"]) == {"openblas", "nms"}
    assert figures["sections"]["openblas"]["files"] == [
        str(tmp_path / "openblas" / "openblas.json")]


def test_quick_openblas_section_runs(rf, tmp_path, capsys):
    assert rf.main(["--quick", "--only", "openblas", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "bench_openblas.py --json" in text and "--quick" in text
    assert head(rf.table_openblas(OPENBLAS)) in text
    entry = json.loads((tmp_path / "figures.json").read_text())["sections"]["openblas"]
    assert entry["rc"] == 0 and entry["data"]["n"] == 256
    assert [r["coretype"] for r in entry["data"]["rows"]] == [
        "auto", "Prescott", "Haswell", "SkylakeX"]
    assert (tmp_path / "openblas" / "openblas.log").is_file()
