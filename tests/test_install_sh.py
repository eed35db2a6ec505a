"""install.sh's order of work, with stand-ins for the slow steps: the Python packages of
requirements.txt install in the background while the Debian packages and Caffe do, and are
waited for (their failure reported) before the package's own install."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Stands in for the environment's python: logs each call, and "pip install -r" takes a
# second (failing where FAKE_PIP_FAIL is set) so that what overlaps it shows in the log.
_FAKE_PYTHON = """#!/bin/bash
echo "start $*" >> "$FAKE_LOG"
if [[ "$*" == *"-r requirements.txt"* ]]; then
  sleep 1
  if [ -n "${FAKE_PIP_FAIL:-}" ]; then
    echo "ERROR: No matching distribution found for onnxruntime" >&2
    echo "end $*" >> "$FAKE_LOG"
    exit 1
  fi
fi
echo "end $*" >> "$FAKE_LOG"
"""


def _run_install(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs Debian's dpkg-query")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "frcnn"):
        exe = venv / "bin" / name
        exe.write_text(_FAKE_PYTHON)
        exe.chmod(0o755)
    log = tmp_path / "calls.log"
    proc = subprocess.run([str(ROOT / "install.sh"), "--no-job"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, FRCNN_VENV=str(venv),
                                                FAKE_LOG=str(log), **env))
    return proc, log.read_text().splitlines() if log.exists() else []


def _index(calls: list[str], prefix: str, part: str) -> int:
    return next(i for i, c in enumerate(calls) if c.startswith(prefix) and part in c)


def test_requirements_install_in_the_background_of_the_caffe_build(tmp_path):
    proc, calls = _run_install(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    numpy_done = _index(calls, "end", "pip install -q --disable-pip-version-check numpy")
    req_start = _index(calls, "start", "-r requirements.txt")
    req_end = _index(calls, "end", "-r requirements.txt")
    caffe = _index(calls, "start", "caffe_ext/build_caffe.py")
    editable = _index(calls, "start", "-e .")
    assert numpy_done < req_start, "numpy (which Caffe compiles against) comes first"
    assert req_start < caffe < req_end, "Caffe builds while requirements.txt installs"
    assert req_end < editable, "the package's own install waits for requirements.txt"
    assert "installed in" in proc.stdout
    assert (tmp_path / "venv" / ".frcnn-requirements").exists()


def test_a_failed_background_install_stops_with_its_log(tmp_path):
    proc, calls = _run_install(tmp_path, FAKE_PIP_FAIL="1")
    assert proc.returncode != 0
    assert "pip install -r requirements.txt failed" in proc.stderr
    assert "No matching distribution found for onnxruntime" in proc.stderr
    assert not any("-e ." in c for c in calls), "nothing installs on top of a failed one"
    assert not (tmp_path / "venv" / ".frcnn-requirements").exists()
