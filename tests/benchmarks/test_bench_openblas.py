"""benchmarks/bench_openblas.py: a quick real run (auto and Prescott, each in its own
process), core types that are not measured (OpenBLAS ignores the name, the child dies,
fails, prints nothing or hangs) as rows rather than crashes, and the child's environment."""
from __future__ import annotations

import json
import sys

import pytest


def test_quick_run_measures_auto_and_prescott(bo, rf, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    expected = rf.openblas_coretype()["value"]  # what the caffe package picks here
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")  # 'auto' must not inherit it
    path = tmp_path / "sub" / "openblas.json"
    assert bo.main(["--quick", "--cores", "auto,Prescott", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert (data["n"], data["repeats"], data["threads"], data["quick"]) == (256, 1, None, True)
    assert data["env_coretype"] == "Haswell"
    auto, prescott = data["rows"]
    assert [auto["coretype"], prescott["coretype"]] == ["auto", "Prescott"]
    for row in (auto, prescott):
        assert row["rc"] == 0 and "error" not in row
        assert row["gmac_s"] > 0 and row["seconds"] > 0
        assert row["gmac_s"] == pytest.approx(256 ** 3 / row["seconds"] / 1e9)
    assert auto["chosen"] == expected
    assert prescott["chosen"] == "Prescott" and prescott["kernel"] == "Prescott"
    flags = bo.cpu_flags()
    assert data["cpu_flags"] == flags
    if flags.get("avx2") and flags.get("fma"):
        assert auto["chosen"] in ("Haswell", "SkylakeX") and auto["kernel"] == auto["chosen"]
    out = capsys.readouterr().out
    assert "OPENBLAS_CORETYPE" in out and "Prescott" in out and "1.00" in out


def test_a_name_openblas_ignores_is_a_failed_row(bo, tmp_path, capsys):
    path = tmp_path / "openblas.json"
    assert bo.main(["--quick", "--cores", "Bogus", "--json", str(path)]) == 1  # none measured
    row, = json.loads(path.read_text())["rows"]
    assert row["coretype"] == "Bogus" and row["chosen"] == "Bogus"
    assert row["rc"] == bo.IGNORED_STATUS and row["gmac_s"] is None and row["seconds"] is None
    assert row["kernel"] and row["kernel"] != "Bogus"
    assert row["error"] == f"OpenBLAS runs its {row['kernel']} kernels for OPENBLAS_CORETYPE=Bogus"
    assert "failed (rc 3)" in capsys.readouterr().out


@pytest.mark.parametrize("code, rc, error", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGILL)", -4, "killed by SIGILL"),
    ("import sys; print('partial'); sys.exit('boom: bad kernel')", 1,
     "exited with status 1: boom: bad kernel"),
    ("print('{\"chosen\": \"X\"}')", 0, "no result printed"),
    ("print('{\"chosen\": \"X\", \"gmac_s\": 5.0, \"seconds\": 1.0}'); raise SystemExit(2)", 2,
     "exited with status 2"),
])
def test_a_failing_child_is_a_row(bo, monkeypatch, code, rc, error):
    monkeypatch.setattr(bo, "child_command", lambda core, n, repeats: [sys.executable, "-c",
                                                                       code])
    row = bo.measure("SkylakeX", 16, 1)
    assert row["coretype"] == "SkylakeX" and row["rc"] == rc
    assert row["gmac_s"] is None and row["seconds"] is None
    assert row["error"] == error


def test_main_survives_failing_children(bo, monkeypatch, tmp_path, capsys):
    def command(core, n, repeats):
        if core == "Prescott":
            return [sys.executable, "-c", "print('{\"chosen\": \"Prescott\", \"kernel\": "
                                          "\"Prescott\", \"gmac_s\": 2.0, \"seconds\": 0.5}')"]
        return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
    monkeypatch.setattr(bo, "child_command", command)
    path = tmp_path / "o.json"
    assert bo.main(["--cores", "Prescott,SkylakeX", "--n", "8", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["coretype"], r["rc"], r["gmac_s"]) for r in rows] == [
        ("Prescott", 0, 2.0), ("SkylakeX", -4, None)]
    assert "killed by SIGILL" in capsys.readouterr().out


def test_a_hanging_child_is_killed(bo, monkeypatch):
    monkeypatch.setattr(bo, "child_command", lambda core, n, repeats: [
        sys.executable, "-c", "import time; time.sleep(60)"])
    row = bo.measure("Haswell", 16, 1, timeout=0.5)
    assert row["rc"] < 0 and row["gmac_s"] is None
    assert row["error"] == "timed out after 0.5 s (killed)"


def test_child_env_and_command(bo):
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "7", "X": "1"}
    assert bo.child_env("auto", None, base) == {"OPENBLAS_NUM_THREADS": "7", "X": "1"}
    assert bo.child_env("Prescott", 2, base) == {"OPENBLAS_CORETYPE": "Prescott",
                                                 "OPENBLAS_NUM_THREADS": "2", "X": "1"}
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # not changed
    assert bo.child_command("auto", 64, 2)[-3:] == ["64", "2", ""]
    assert bo.child_command("SkylakeX", 64, 2)[-1] == "SkylakeX"


def test_cpu_flags(bo, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse3 avx2 fma\nprocessor\t: 1\n"
                    "flags\t\t: fpu avx512f\n")
    assert bo.cpu_flags(info) == {"avx2": True, "fma": True, "avx512f": False}
    assert bo.cpu_flags(tmp_path / "missing") == {}


def test_cores_must_name_something(bo, capsys):
    with pytest.raises(SystemExit):
        bo.main(["--cores", " , "])
    assert "at least one core type" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bo.main(["--cores", "auto,rm -rf"])
    assert "not a core type name: rm -rf" in capsys.readouterr().err
