"""The layer modules answer to py-faster-rcnn's module names, installed or on PYTHONPATH."""
from __future__ import annotations

import importlib
import sysconfig

import pytest

from tests.conftest import ROOT, run_python

MODULES = ["roi_data_layer.layer", "rpn.anchor_target_layer", "rpn.proposal_layer",
           "rpn.proposal_target_layer"]


@pytest.mark.parametrize("name", MODULES)
def test_importable_in_the_environment(name):
    module = importlib.import_module(name)
    assert module.__file__.startswith(str(ROOT / "layers"))


def test_importable_with_plain_pythonpath(tmp_path):
    # -S: no site processing, so the editable install's path entries are not used;
    # only PYTHONPATH (the repository's layers/ and lib/, plus the installed
    # third-party packages) is.
    site = sysconfig.get_paths()["purelib"]
    code = ("import importlib, frcnn\n"
            f"for n in {MODULES!r}:\n"
            "    m = importlib.import_module(n)\n"
            "    print(n, m.__file__)\n")
    proc = run_python(code, args=("-S",), cwd=str(tmp_path),
                      env={"PYTHONPATH": f"{ROOT / 'layers'}:{ROOT / 'lib'}:{site}"})
    assert proc.returncode == 0, proc.stderr
    for name in MODULES:
        assert f"{name} {ROOT / 'layers'}" in proc.stdout
