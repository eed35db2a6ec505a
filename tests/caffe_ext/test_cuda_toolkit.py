"""The GPU build's logic, with fake toolkits: FRCNN_CUDA, toolkit discovery and
completeness, architectures, cache keys, the Makefile.config and the library links."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "caffe_ext"))
try:
    import build_caffe
    import cuda_toolkit
    from cuda_toolkit import build_cuda
finally:
    sys.path.pop(0)

FAKE_NVCC = """#!/bin/sh
case "$1" in
  --version) echo "Cuda compilation tools, release {version}, V{version}.1";;
  --list-gpu-arch) for a in {archs}; do echo "compute_$a"; done;;
  *) exit 1;;
esac
"""


def fake_toolkit(root: Path, version: str = "13.0", archs: str = "75 80 86 89 90 100 120",
                 lib: str = "lib64", cccl: bool = False, versioned_only: bool = False,
                 drop: tuple[str, ...] = ()) -> Path:
    """A toolkit folder with an nvcc that answers --version and --list-gpu-arch, the
    headers and libraries a build needs, less those named in ``drop``."""
    (root / "bin").mkdir(parents=True)
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(FAKE_NVCC.format(version=version, archs=archs))
    nvcc.chmod(0o755)
    inc = root / "include"
    thrust = (inc / "cccl" if cccl else inc) / "thrust"
    thrust.mkdir(parents=True)
    (thrust / "version.h").write_text("")
    for header in cuda_toolkit.HEADERS:
        (inc / header).write_text("")
    (root / lib).mkdir(parents=True, exist_ok=True)
    for name in cuda_toolkit.LIBRARIES:
        soname = f"lib{name}.so.{version.split('.')[0]}"
        (root / lib / soname).write_text("")
        if not versioned_only:
            (root / lib / f"lib{name}.so").symlink_to(soname)
    for rel in drop:
        for path in root.glob(rel):
            path.unlink()
    return root


@pytest.fixture
def no_cuda_env(monkeypatch):
    for var in ("CUDA_HOME", "CUDA_PATH", "FRCNN_CUDA", "FRCNN_CUDA_ARCH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvcc from the machine
    monkeypatch.setattr(build_cuda, "find_cuda_home",
                        lambda: os.environ.get("CUDA_HOME"))  # no /usr/local/cuda either
    return monkeypatch


@pytest.mark.parametrize("value, mode", [("", "auto"), ("auto", "auto"), ("pip", "pip"),
                                         ("PIP", "pip"), ("0", "0"), ("off", "0"),
                                         ("system", "system"), ("1", "system")])
def test_frcnn_cuda_values(value, mode):
    assert cuda_toolkit.mode_from_env({"FRCNN_CUDA": value}) == mode


def test_a_bad_frcnn_cuda_value_lists_the_choices():
    with pytest.raises(cuda_toolkit.ToolkitError, match="FRCNN_CUDA='gpu'.*auto.*pip.*system.*0"):
        cuda_toolkit.mode_from_env({"FRCNN_CUDA": "gpu"})


def test_the_mode_given_is_kept_for_later_runs_in_the_environment(tmp_path):
    remembered = tmp_path / ".frcnn-cuda"
    assert cuda_toolkit.mode_from_env({}, remembered) == "auto"
    assert not remembered.exists()
    assert cuda_toolkit.mode_from_env({"FRCNN_CUDA": "pip"}, remembered) == "pip"
    assert cuda_toolkit.mode_from_env({}, remembered) == "pip"  # ./test.sh keeps the GPU build
    assert cuda_toolkit.mode_from_env({"FRCNN_CUDA": "0"}, remembered) == "0"
    assert cuda_toolkit.mode_from_env({}, remembered) == "0"


def test_a_complete_system_toolkit_is_found_with_its_parts(tmp_path, no_cuda_env):
    root = fake_toolkit(tmp_path / "cuda", cccl=True, lib="lib")
    no_cuda_env.setenv("CUDA_HOME", str(root))
    tk = cuda_toolkit.system_toolkit()
    assert (tk.root, tk.source, tk.version, tk.lib_dir) == (root, "system", "13.0", root / "lib")
    assert tk.include_dirs == [root / "include", root / "include" / "cccl"]
    # the default architectures, Turing to Blackwell, the newest also as PTX
    assert tk.archs == list(build_cuda.DEFAULT_ARCHS)
    assert tk.gencode().split()[-2:] == ["-gencode", "arch=compute_120,code=compute_120"]
    assert "arch=compute_75,code=sm_75" in tk.gencode()


def test_architectures_follow_frcnn_cuda_arch_and_what_nvcc_supports(tmp_path, no_cuda_env):
    root = fake_toolkit(tmp_path / "cuda", archs="80 86 90")
    no_cuda_env.setenv("CUDA_HOME", str(root))
    assert cuda_toolkit.system_toolkit().archs == ["80", "86", "90"]  # 75, 100, 120 dropped
    no_cuda_env.setenv("FRCNN_CUDA_ARCH", "9.0")
    assert cuda_toolkit.system_toolkit().archs == ["90"]
    no_cuda_env.setenv("FRCNN_CUDA_ARCH", "70")  # older than this nvcc: its newest instead
    assert cuda_toolkit.system_toolkit().archs == ["90"]


@pytest.mark.parametrize("drop, named", [
    (("include/cublas_v2.h",), "include/cublas_v2.h"),
    (("lib64/libcurand.so*",), "libcurand.so"),
    (("include/thrust/version.h",), "thrust"),
    (("bin/nvcc",), "bin/nvcc"),
])
def test_an_incomplete_toolkit_names_what_it_lacks(tmp_path, no_cuda_env, drop, named):
    root = fake_toolkit(tmp_path / "cuda", drop=drop)
    assert named in ", ".join(cuda_toolkit.inspect(root)[1])
    assert cuda_toolkit.inspect(fake_toolkit(tmp_path / "full"))[1] == []


def test_auto_falls_back_to_the_cpu_and_says_why(tmp_path, no_cuda_env):
    """What this machine has: a system nvcc without cuBLAS or cuRAND."""
    root = fake_toolkit(tmp_path / "cuda", drop=("include/cublas_v2.h", "lib64/libcublas.so*"))
    no_cuda_env.setenv("CUDA_HOME", str(root))
    lines: list[str] = []
    assert cuda_toolkit.resolve("auto", lines.append) is None
    assert len(lines) == 1 and "CPU build" in lines[0] and "cublas" in lines[0]
    assert "FRCNN_CUDA=pip" in lines[0]
    with pytest.raises(cuda_toolkit.ToolkitError, match="FRCNN_CUDA=system: .*cublas"):
        cuda_toolkit.resolve("system", lines.append)
    assert cuda_toolkit.resolve("0", lines.append) is None


def test_auto_without_any_toolkit_builds_for_the_cpu_without_a_download(no_cuda_env):
    lines: list[str] = []
    assert cuda_toolkit.resolve("auto", lines.append) is None
    assert "no CUDA toolkit found" in lines[0]


def test_an_old_toolkit_is_refused(tmp_path, no_cuda_env):
    no_cuda_env.setenv("CUDA_HOME", str(fake_toolkit(tmp_path / "cuda", version="10.2")))
    with pytest.raises(cuda_toolkit.ToolkitError, match="CUDA 10.2.*11.0 or newer"):
        cuda_toolkit.system_toolkit()


def test_link_dir_gives_unversioned_names_for_the_linker(tmp_path, no_cuda_env):
    """PyPI's wheels ship only libcublas.so.13 and the like."""
    root = fake_toolkit(tmp_path / "cu13", lib="lib", versioned_only=True)
    no_cuda_env.setenv("CUDA_HOME", str(root))
    tk = cuda_toolkit.system_toolkit()
    links = cuda_toolkit.link_dir(tk.lib_dir, tmp_path / "links")
    for name in cuda_toolkit.LIBRARIES:
        assert os.readlink(links / f"lib{name}.so") == str(root / "lib" / f"lib{name}.so.13")
    assert cuda_toolkit.link_dir(tk.lib_dir, tmp_path / "links") == links  # again: unchanged


def _cuda_abi(tk, package_dir: Path) -> dict:
    return {**build_caffe.python_abi(), "cflags": "-march=native -DFRCNN_PARALLEL_MIN=1",
            "cpu_target": "x",
            "cuda": {**tk.describe(), "include_dirs": [str(d) for d in tk.include_dirs],
                     "rpaths": cuda_toolkit.runtime_rpaths(tk, package_dir)}}


def test_the_cuda_makefile_config(tmp_path, no_cuda_env):
    root = fake_toolkit(tmp_path / "venv/site-packages/nvidia/cu13", lib="lib", cccl=True)
    no_cuda_env.setenv("CUDA_HOME", str(root))
    tk = cuda_toolkit.system_toolkit()
    tk.source = "pip"
    monkey_site = tmp_path / "venv/site-packages"
    no_cuda_env.setattr(cuda_toolkit, "site_packages", lambda: monkey_site)
    abi = _cuda_abi(tk, monkey_site / "caffe")
    text = build_caffe.makefile_config(abi, tmp_path / "links")
    assert "CPU_ONLY" not in text and "USE_CUDNN := 0" in text
    assert f"CUDA_DIR := {root}" in text
    assert "CUDA_ARCH := -gencode arch=compute_75,code=sm_75" in text
    # the libraries beside the package in the same environment, whatever its path
    assert r"-Wl,-rpath,\$$ORIGIN/../nvidia/cu13/lib" in text
    assert str(root / "include" / "cccl") in text and str(tmp_path / "links") in text
    # nvcc gets the defines, never g++'s -march
    nvcc_line = next(line for line in text.splitlines() if line.startswith("NVCCFLAGS += -D"))
    assert "-march" not in nvcc_line and "-DFRCNN_PARALLEL_MIN=1" in nvcc_line
    cpu = build_caffe.makefile_config({**abi, "cuda": None})
    assert "CPU_ONLY := 1" in cpu and "CUDA_DIR" not in cpu and "nvidia" not in cpu


def test_cache_key_has_the_toolkit_and_architectures_not_the_pip_folder(tmp_path, no_cuda_env):
    root = fake_toolkit(tmp_path / "a", lib="lib")
    no_cuda_env.setenv("CUDA_HOME", str(root))
    tk = cuda_toolkit.system_toolkit()
    base = _cuda_abi(tk, tmp_path / "caffe")
    cpu_key = build_caffe.build_key({**base, "cuda": None})
    key = build_caffe.build_key(base)
    assert key != cpu_key
    other_archs = {**base, "cuda": {**base["cuda"], "archs": ["90"]}}
    other_version = {**base, "cuda": {**base["cuda"], "version": "13.1"}}
    assert len({key, build_caffe.build_key(other_archs), build_caffe.build_key(other_version)}) == 3
    # two environments with the pinned PyPI toolkit share one cached build ...
    pip_a = {**base, "cuda": {**base["cuda"], "source": "pip", "root": "/venv-a/nvidia/cu13"}}
    pip_b = {**base, "cuda": {**base["cuda"], "source": "pip", "root": "/venv-b/nvidia/cu13"}}
    assert build_caffe.build_key(pip_a) == build_caffe.build_key(pip_b)
    # ... two system toolkits in different places do not
    sys_b = {**base, "cuda": {**base["cuda"], "root": "/opt/cuda-b"}}
    assert build_caffe.build_key(sys_b) != key


def test_pip_wheels_are_one_cuda_release():
    versions = {v for name, v in cuda_toolkit.PIP_WHEELS.items() if name != "nvidia-curand"}
    assert {v.split(".")[0] + "." + v.split(".")[1] for v in versions} == {"13.0"}


def test_build_record_says_what_was_built(tmp_path, no_cuda_env):
    assert build_caffe.build_record_cuda(None) is None
    root = fake_toolkit(tmp_path / "cuda")
    no_cuda_env.setenv("CUDA_HOME", str(root))
    record = build_caffe.build_record_cuda(_cuda_abi(cuda_toolkit.system_toolkit(),
                                                     tmp_path)["cuda"])
    assert record["version"] == "13.0" and record["ptx"] == "120"
    assert record["cudnn"] is False and record["nccl"] is False
