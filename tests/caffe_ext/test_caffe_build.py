"""The project's Caffe build: the installed package, command and cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import caffe
import pytest

from tests.conftest import ROOT


def _build_caffe():
    sys.path.insert(0, str(ROOT / "caffe_ext"))
    try:
        import build_caffe
    finally:
        sys.path.pop(0)
    return build_caffe


def test_required_layers_are_registered():
    assert {"Python", "ROIPooling", "SmoothL1Loss"} <= set(caffe.layer_type_list())


def test_caffe_command_runs_from_the_environment():
    exe = Path(sys.executable).with_name("caffe")
    assert exe.exists(), "install.sh puts the caffe command into the environment's bin/"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1.0.0" in proc.stdout + proc.stderr


def test_second_build_uses_the_cache():
    proc = subprocess.run([sys.executable, str(ROOT / "caffe_ext" / "build_caffe.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "using the cached build" in proc.stdout
    assert "make" not in proc.stdout


def _key_of_a_copy(tmp_path, monkeypatch):
    """(build_caffe, abi, the key, a copy of caffe_ext/ that build_caffe now reads)."""
    build_caffe = _build_caffe()
    abi = build_caffe.python_abi()
    key = build_caffe.build_key(abi)
    copy = tmp_path / "caffe_ext"
    shutil.copytree(ROOT / "caffe_ext", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build_caffe, "HERE", copy)
    return build_caffe, abi, key, copy


def test_build_key_depends_on_layer_sources(tmp_path, monkeypatch):
    build_caffe, abi, key, copy = _key_of_a_copy(tmp_path, monkeypatch)
    assert build_caffe.build_key(abi) == key
    src = copy / "src/caffe/layers/roi_pooling_layer.cpp"
    src.write_text(src.read_text() + "\n// changed\n")
    assert build_caffe.build_key(abi) != key


def _expected_coretype() -> str:
    flags: set[str] = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return "None"


def test_openblas_kernels_follow_the_cpu_unless_the_user_chose():
    code = "import os, caffe; print(os.environ.get('OPENBLAS_CORETYPE'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    auto = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)
    assert auto.stdout.strip() == _expected_coretype()
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(env, OPENBLAS_CORETYPE="Prescott"), timeout=60)
    assert chosen.stdout.strip() == "Prescott"


def test_target_cpu_is_part_of_the_key_and_a_bad_one_is_named(monkeypatch):
    build_caffe = _build_caffe()
    abi = build_caffe.python_abi()
    monkeypatch.setenv("FRCNN_CAFFE_ARCH", "generic")
    generic = build_caffe.codegen()
    monkeypatch.setenv("FRCNN_CAFFE_ARCH", "native")
    native = build_caffe.codegen()
    assert "-march" not in generic["cflags"] and "-march=native" in native["cflags"]
    assert build_caffe.build_key({**abi, **generic}) != build_caffe.build_key({**abi, **native})
    monkeypatch.setenv("FRCNN_CAFFE_ARCH", "no-such-cpu")
    with pytest.raises(build_caffe.BuildError, match="FRCNN_CAFFE_ARCH='no-such-cpu'"):
        build_caffe.codegen()


def test_openmp_threads_are_opt_in_and_part_of_the_key(monkeypatch):
    build_caffe = _build_caffe()
    abi = build_caffe.python_abi()
    monkeypatch.delenv("FRCNN_CAFFE_OPENMP", raising=False)
    default = build_caffe.codegen()
    monkeypatch.setenv("FRCNN_CAFFE_OPENMP", "1")
    threads = build_caffe.codegen()
    assert "-fopenmp-simd" in default["cflags"].split()
    assert "-fopenmp" in threads["cflags"].split() and "-fopenmp-simd" not in threads["cflags"]
    assert build_caffe.build_key({**abi, **default}) != build_caffe.build_key({**abi, **threads})
    monkeypatch.setenv("FRCNN_CAFFE_OPENMP", "yes")
    with pytest.raises(build_caffe.BuildError, match="FRCNN_CAFFE_OPENMP='yes'"):
        build_caffe.codegen()


def test_openmp_threads_follow_openblas_threads(tmp_path):
    """The installed caffe package sets OMP_NUM_THREADS from OPENBLAS_NUM_THREADS unless
    it is set (one knob for both thread pools)."""
    build_caffe = _build_caffe()
    module = tmp_path / "coretype.py"
    module.write_text(build_caffe.OPENBLAS_CORETYPE_MODULE)
    code = f"import runpy, os; runpy.run_path({str(module)!r}); print(os.environ.get('OMP_NUM_THREADS'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    for extra, expected in (({"OPENBLAS_NUM_THREADS": "1"}, "1"),
                            ({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, "2"),
                            ({}, "None")):
        run_env = {k: v for k, v in env.items() if k != "OPENBLAS_NUM_THREADS"} | extra
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected, extra


def test_patches_apply_to_the_pinned_archive(tmp_path):
    """Every patched file is rewritten from the archive's pristine text, and a second
    preparation writes nothing (so make recompiles nothing)."""
    build_caffe = _build_caffe()
    archive = build_caffe.fetch_archive(build_caffe.cache_root() / "downloads")
    written = build_caffe.apply_patches(archive, tmp_path)
    assert sorted(written) == sorted(build_caffe.PATCHES)
    for rel in written:
        assert build_caffe.PROTO_MARK in (tmp_path / rel).read_text(), rel
    assert build_caffe.apply_patches(archive, tmp_path) == []


def test_the_installed_build_used_the_precompiled_header():
    """install.sh's build compiled every source with the common headers precompiled (the
    staged build records it): without it a fresh install takes minutes longer."""
    import json

    info = json.loads(Path(caffe.__file__).with_name("_frcnn_build.json").read_text())
    assert info.get("precompiled_header") is True, info


_TOY_MAKEFILE = """CXX := g++
CXXFLAGS += -MMD -MP -O1 -DTOY_FLAG=1 -isystem ./include $(FRCNN_PCH_FLAGS)
proto:
\t@mkdir -p include/caffe && printf '#pragma once\\ninline int toy_proto() { return 7; }\\n' > include/caffe/toy.pb.h
toy.o: toy.cpp
\t$(CXX) $< $(CXXFLAGS) -H -c -o $@
"""


def _toy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text(_TOY_MAKEFILE)
    (tree / "toy.cpp").write_text('#include "caffe/toy.pb.h"\nint main() { return toy_proto() - 7; }\n')
    return tree


def test_precompiled_header_is_built_with_the_makefiles_flags_and_used(tmp_path, monkeypatch):
    build_caffe = _build_caffe()
    monkeypatch.setattr(build_caffe, "PCH_TEXT", '#include <vector>\n#include "caffe/toy.pb.h"\n')
    tree = _toy_tree(tmp_path)
    flags = build_caffe.precompile_header(tree)
    gch = tree / (build_caffe.PCH_HEADER + ".gch")
    assert flags.startswith(f"-include {build_caffe.PCH_HEADER}") and gch.is_file()
    assert (tree / "include/caffe/toy.pb.h").exists(), "make proto runs first"
    # g++ -H marks a precompiled header it used with '!' (and -Winvalid-pch would say why not)
    proc = subprocess.run(["make", "toy.o", f"FRCNN_PCH_FLAGS={flags}"], cwd=tree,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    used = [line for line in proc.stderr.splitlines() if line.startswith("! ")]
    assert used and used[0].endswith(f"{build_caffe.PCH_HEADER}.gch"), proc.stderr
    assert "not used" not in proc.stderr
    # kept while its text is the same; rebuilt when the header list changes
    stamp = gch.stat().st_mtime_ns
    assert build_caffe.precompile_header(tree) == flags and gch.stat().st_mtime_ns == stamp
    monkeypatch.setattr(build_caffe, "PCH_TEXT", '#include <map>\n#include "caffe/toy.pb.h"\n')
    assert build_caffe.precompile_header(tree) == flags
    assert "<map>" in (tree / build_caffe.PCH_HEADER).read_text()


def test_a_header_that_does_not_precompile_leaves_the_build_without_it(tmp_path, monkeypatch,
                                                                        capsys):
    build_caffe = _build_caffe()
    monkeypatch.setattr(build_caffe, "PCH_TEXT", '#include "caffe/no_such_header.h"\n')
    tree = _toy_tree(tmp_path)
    assert build_caffe.precompile_header(tree) == ""
    assert not (tree / (build_caffe.PCH_HEADER + ".gch")).exists()
    out = capsys.readouterr().out
    assert "building without them" in out and "no_such_header.h" in out
    proc = subprocess.run(["make", "toy.o", "FRCNN_PCH_FLAGS="], cwd=tree, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_makefile_config_passes_the_precompiled_header_to_every_compile():
    build_caffe = _build_caffe()
    assert "CXXFLAGS += $(FRCNN_PCH_FLAGS)" in build_caffe.MAKEFILE_CONFIG


@pytest.mark.parametrize("flag", [["-gpu", "0"], ["--gpu=0"], ["-gpu", "0,1"]])
def test_caffe_command_checks_a_gpu_before_caffe_aborts(flag):
    """`caffe ... -gpu 0` on a CPU build, or on a CUDA build without a device: one line and
    exit code 1 instead of Caffe's CHECK failure and stack trace."""
    from frcnn import devices

    if devices.driver_gpus()[0] and devices.caffe_build().get("cuda") and flag[-1] == "0":
        pytest.skip("a usable CUDA device is present")
    exe = Path(sys.executable).with_name("caffe")
    proc = subprocess.run([str(exe), "device_query", *flag], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    gpu = flag[-1].split("=")[-1]
    assert proc.stderr.startswith(f"caffe: error: --gpu {gpu}: "), proc.stderr
    assert "Check failure" not in proc.stderr


def test_build_key_depends_on_the_patches(tmp_path, monkeypatch):
    """caffe_ext/patches/*.patch are sources of the build like the overlay."""
    build_caffe, abi, key, copy = _key_of_a_copy(tmp_path, monkeypatch)
    patch = sorted((copy / "patches").glob("*.patch"))[0]
    patch.write_text(patch.read_text() + " \n")
    assert build_caffe.build_key(abi) != key


def test_a_patch_that_does_not_apply_is_named(tmp_path):
    build_caffe = _build_caffe()
    rel, patch = next(iter(build_caffe.PATCHES.items()))
    with pytest.raises(build_caffe.BuildError, match=f"{patch.name} does not apply to {rel}"):
        build_caffe.apply_patch("nothing like the archive's file\n", rel, patch)
