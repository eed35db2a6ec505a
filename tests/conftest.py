"""Shared fixtures: real caffe.Net objects built from prototxt text."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def caffe():
    """pycaffe in CPU mode.  The project's install step builds it: tests never skip."""
    import caffe as _caffe

    _caffe.set_mode_cpu()
    return _caffe


@pytest.fixture
def make_net(caffe, tmp_path):
    """make_net(prototxt_text, phase='TEST') -> caffe.Net."""

    def _make(text: str, phase: str = "TEST"):
        path = tmp_path / f"net_{len(list(tmp_path.iterdir()))}.prototxt"
        path.write_text(textwrap.dedent(text))
        return caffe.Net(str(path), getattr(caffe, phase))

    return _make


def run_python(code: str, env: dict | None = None, cwd: str | None = None,
               args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this environment (for fatal Caffe checks)."""
    full_env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


@pytest.fixture
def cfg():
    """The global frcnn cfg, restored after the test (layers read it at setup)."""
    from frcnn import config

    with config.preserved() as c:
        yield c
