#!/usr/bin/env python3
"""Build CPU Caffe (BVLC 1.0 style) with this project's ROIPooling and SmoothL1Loss
layers, cache the result outside the clone, and install it into a virtual environment.

Usage (run with the virtual environment's python, numpy already installed):

    python caffe_ext/build_caffe.py [--jobs N] [--force]

What it does, each step skipped when already done:

1. fetch the pinned source archive (brocolli-caffe 9.0.2 from PyPI, sha256 checked);
2. unpack it into a build tree under the cache, overlay ``caffe_ext/include`` and
   ``caffe_ext/src`` (our layers), apply ``caffe_ext/patches/*.patch`` (unified diffs
   against the pinned archive, each file rewritten from the archive's own copy every time;
   what each changes: docs/caffe-build.md), write a ``Makefile.config`` (CPU or CUDA,
   Python layers, OpenBLAS, ``-fopenmp-simd`` or ``-fopenmp``, ``-march`` from
   ``$FRCNN_CAFFE_ARCH``, default ``native``), precompile the headers every source
   includes (``precompile_header``) and make pycaffe and the caffe tool (``MAKE_TARGETS``;
   not Caffe's other tools or its static library, which nothing installs); incremental:
   the build tree is kept, so a changed layer recompiles one file; changed flags or
   headers recompile everything;
3. stage ``caffe/`` (the Python package with ``_caffe.so``, ``libcaffe.so`` and
   ``caffe.bin`` side by side, linked with ``rpath=$ORIGIN``) under a key made of the
   archive hash, our sources, this script and the Python ABI;
4. copy the staged package into the environment's site-packages and write a ``caffe``
   command into its ``bin/`` that runs ``caffe.bin`` with the environment's import path,
   so Python layers work from ``caffe train``.

The cache lives in ``$FRCNN_CACHE`` (default ``~/.cache/squeezenet-frcnn``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

import cuda_toolkit  # this script's folder is on sys.path, run as a script or imported
from cuda_toolkit import build_cuda  # nms/build_cuda.py: the architectures, gencode flags

ARCHIVE_NAME = "brocolli-caffe"
ARCHIVE_VERSION = "9.0.2"
ARCHIVE_SHA256 = "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"
LIBCAFFE = "libcaffe.so.1.0.0-rc3"
BUILD_DIR = ".temp_release"  # where the archive's Makefile puts objects (and we the PCH)

HERE = Path(__file__).resolve().parent
OVERLAY_DIRS = ("include", "src")

PATCH_DIR = HERE / "patches"
# Every patched file carries this word in a comment where it was changed.
PROTO_MARK = "squeezenet-frcnn"
# FRCNN_PARALLEL_MIN, defined for every compile: below this many elements the element-wise
# loops of the patches (ReLU, Scale, MVN, max pooling, im2col/col2im) and ROIPooling's
# overlay run on the calling thread (see docs/caffe-build.md).
PARALLEL_MIN = 32768
PARALLEL_MIN_MACRO = "FRCNN_PARALLEL_MIN"


MAKEFILE_CONFIG = """# Written by squeezenet-frcnn caffe_ext/build_caffe.py
{device_config}
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
USE_HDF5 := 1
WITH_PYTHON_LAYER := 1
BLAS := open
PYTHON_LIBRARIES := boost_python{pyver_nodot} python{pyver}
PYTHON_INCLUDE := {py_include} {np_include}
PYTHON_LIB := {py_libdir}
INCLUDE_DIRS := $(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial{cuda_include_dirs}
LIBRARY_DIRS := $(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial{cuda_library_dirs}
# libcaffe, _caffe.so and caffe.bin are installed side by side; libpython is found
# where this Python lives (and the CUDA libraries where the toolkit keeps them).
LINKFLAGS += -Wl,-rpath,\\$$ORIGIN -Wl,-rpath,{py_libdir}{cuda_rpaths}
# Code generation: the CPU (FRCNN_CAFFE_ARCH) and OpenMP (FRCNN_CAFFE_OPENMP: threads or
# simd only) for g++; nvcc takes only the defines.
CXXFLAGS += {cflags}
LINKFLAGS += {cflags}
NVCCFLAGS += {defines}
# The precompiled header of what every source includes (build_caffe.py passes it on the
# command line once it is built; empty, the build is the same without it).
CXXFLAGS += $(FRCNN_PCH_FLAGS)
Q ?= @
"""

CPU_CONFIG = "CPU_ONLY := 1"
# The GPU build (caffe_ext/cuda_toolkit.py): no cuDNN (Caffe 1.0's cuDNN code needs the
# cuDNN 7 API, removed in cuDNN 8); C++17, which CUDA 13's thrust needs.
CUDA_CONFIG = """# CUDA {version} ({source} toolkit)
CUDA_DIR := {root}
CUDA_ARCH := {gencode}
USE_CUDNN := 0
NVCCFLAGS += -std=c++17 -Wno-deprecated-gpu-targets"""


def makefile_config(abi: dict, link_dir: Path | None = None) -> str:
    """Makefile.config for this Python and, where ``abi['cuda']`` is set, the CUDA build
    (``link_dir``: the unversioned library links of cuda_toolkit.link_dir)."""
    cuda = abi.get("cuda")
    defines = " ".join(f for f in abi["cflags"].split() if f.startswith("-D"))
    fields = {"device_config": CPU_CONFIG, "cuda_include_dirs": "", "cuda_library_dirs": "",
              "cuda_rpaths": ""}
    if cuda:
        fields["device_config"] = CUDA_CONFIG.format(
            gencode=" ".join(build_cuda.gencode_flags(cuda["archs"])), **cuda)
        fields["cuda_include_dirs"] = "".join(f" {d}" for d in cuda["include_dirs"])
        fields["cuda_library_dirs"] = f" {link_dir} {cuda['lib_dir']}"
        # -rpath-link: libcublas.so needs libcublasLt.so.13 beside it at link time
        fields["cuda_rpaths"] = f" -Wl,-rpath-link,{cuda['lib_dir']}" + "".join(
            " -Wl,-rpath," + r.replace("$ORIGIN", "\\$$ORIGIN") for r in cuda["rpaths"])
    return MAKEFILE_CONFIG.format(pyver_nodot=abi["pyver"].replace(".", ""), defines=defines,
                                  **fields, **abi)


CAFFE_WRAPPER = '''#!{python}
"""The caffe command-line tool (squeezenet-frcnn build).

Runs caffe.bin with this environment's import path, so that Python layers resolve as in
`python -c 'import caffe'`: sys.path, plus the folders of the project's packages (an
editable install finds them with an import hook that PYTHONPATH cannot carry).
"""
import importlib.util
import os
import sys

import caffe

binary = os.path.join(os.path.dirname(caffe.__file__), "caffe.bin")
paths = [p for p in sys.path if p and os.path.isdir(p)]
for name in ("frcnn", "roi_data_layer", "rpn"):
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin:
        parent = os.path.dirname(os.path.dirname(spec.origin))
        if parent not in paths:
            paths.append(parent)
old = os.environ.get("PYTHONPATH")
os.environ["PYTHONPATH"] = os.pathsep.join(([old] if old else []) + paths)


def gpu_flag(argv):
    """The value of caffe's -gpu flag (-gpu 0, --gpu=0,1, -gpu all), or None."""
    for i, arg in enumerate(argv):
        for flag in ("-gpu", "--gpu"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
    return None


# A GPU asked for is checked first (a CPU build, no driver or device, a device the build has
# no code for): Caffe's own checks abort with a stack trace.
gpu = gpu_flag(sys.argv[1:])
if gpu is not None and gpu.strip() not in ("", "-1"):
    try:
        from frcnn import devices
    except ImportError:
        devices = None
    if devices is not None:
        gpus, reason = devices.driver_gpus()
        try:
            ids = [g.index for g in gpus] if gpu.strip() == "all" else devices.parse_gpu(gpu)
            devices.check_gpus(ids or [0], devices.caffe_build(), gpus, reason)
        except (devices.GpuError, ValueError) as e:
            sys.exit("caffe: error: " + str(e))
os.execv(binary, [binary] + sys.argv[1:])
'''


# Written into the installed caffe package and imported first by its __init__.py.
OPENBLAS_CORETYPE_MODULE = '''"""Set OpenBLAS's kernels and OpenMP's threads before libcaffe loads (squeezenet-frcnn).

Debian 12's OpenBLAS 0.3.21 does not recognise recent Intel CPUs and falls back to its
generic SSE3 ("Prescott") kernels, two to three times slower than the AVX-512 ones on
Caffe's GEMMs.  Unless OPENBLAS_CORETYPE is already set, pick the kernels by the CPU's
flags: SkylakeX (AVX-512 F/BW/VL/DQ/CD), else Haswell (AVX2 + FMA); otherwise leave
OpenBLAS to decide.

In a build with FRCNN_CAFFE_OPENMP=1, Caffe's element-wise loops run on OpenMP threads,
its GEMMs on OpenBLAS's: one knob sets both.  Unless OMP_NUM_THREADS is set, it follows
OPENBLAS_NUM_THREADS (so ``OPENBLAS_NUM_THREADS=1`` keeps a run on one core).  The caffe command
inherits both choices.
"""
import os

_SKYLAKEX = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose():
    """The core type set (or None when left to OpenBLAS)."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return os.environ["OPENBLAS_CORETYPE"]
    flags = _cpu_flags()
    if _SKYLAKEX <= flags:
        core = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        core = "Haswell"
    else:
        return None
    os.environ["OPENBLAS_CORETYPE"] = core
    return core


def threads():
    """OpenMP's thread count (None when left to OpenMP: one per core)."""
    if not os.environ.get("OMP_NUM_THREADS") and os.environ.get("OPENBLAS_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"]
    return os.environ.get("OMP_NUM_THREADS") or None


CORETYPE = choose()
THREADS = threads()
'''


class BuildError(RuntimeError):
    """A step of the Caffe build failed; the message says which and what to do."""


def log(msg: str) -> None:
    print(f"[caffe] {msg}", flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("FRCNN_CACHE", Path.home() / ".cache" / "squeezenet-frcnn"))


def python_abi() -> dict:
    import numpy

    return {
        "pyver": sysconfig.get_python_version(),
        "soabi": sysconfig.get_config_var("SOABI") or "",
        "py_include": sysconfig.get_paths()["include"],
        "py_libdir": sysconfig.get_config_var("LIBDIR"),
        "np_include": numpy.get_include(),
        "np_major": numpy.__version__.split(".")[0],
    }


ARCH_ENV = "FRCNN_CAFFE_ARCH"
# "1": compile with -fopenmp, so the patched element-wise loops run on OpenMP threads.
# Off by default: on the 2-vCPU machines here it was slower (docs/caffe-build.md).
OPENMP_ENV = "FRCNN_CAFFE_OPENMP"


def codegen() -> dict:
    """Compiler flags for Caffe's CPU code and the instruction sets they resolve to.

    ``$FRCNN_CAFFE_ARCH`` (default ``native``: this machine's CPU) goes to ``-march``;
    ``generic`` leaves it out, for a build that must run on other x86-64 machines.  The
    resolved target (what gcc expands ``-march`` to) is part of the cache key, so a cache
    shared between different CPUs never hands one a build for the other.
    ``$FRCNN_CAFFE_OPENMP=1`` compiles with ``-fopenmp`` (threads), otherwise
    ``-fopenmp-simd`` (only the ``omp simd`` vector loops; no OpenMP runtime).
    ``PARALLEL_MIN`` is defined for every source (the loops' serial cut-off).
    """
    arch = os.environ.get(ARCH_ENV, "native").strip() or "native"
    openmp = os.environ.get(OPENMP_ENV, "0").strip() or "0"
    if openmp not in ("0", "1"):
        raise BuildError(f"{OPENMP_ENV}={openmp!r}: use 1 (OpenMP threads) or 0 (the default)")
    flags = ([] if arch == "generic" else [f"-march={arch}"]) + (
        ["-fopenmp"] if openmp == "1" else ["-fopenmp-simd"]) + [
        f"-D{PARALLEL_MIN_MACRO}={PARALLEL_MIN}"]
    cmd = ["g++", *flags, "-E", "-v", "-x", "c++", "/dev/null", "-o", "/dev/null"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"g++ rejects {' '.join(flags)} (from {ARCH_ENV}={arch!r}): "
                         + (proc.stderr.strip().splitlines() or ["no message"])[-1])
    cc1 = next((line for line in proc.stderr.splitlines() if "cc1plus" in line), "")
    target = sorted(word for word in cc1.split() if word.startswith(("-m", "--param")))
    return {"cflags": " ".join(flags),
            "cpu_target": hashlib.sha256(" ".join(target).encode()).hexdigest()[:16]}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def overlay_files() -> list[Path]:
    files = []
    for d in OVERLAY_DIRS:
        files.extend(p for p in sorted((HERE / d).rglob("*")) if p.is_file())
    return files


def cuda_key(cuda: dict | None) -> dict | None:
    """What of the CUDA toolkit a build depends on.  The PyPI toolkit is the same in every
    environment that installs the pinned wheels, and the build finds its libraries relative
    to itself there, so its folder is left out: a fresh clone's environment reuses the
    cached build."""
    if not cuda:
        return None
    if cuda["source"] == "pip":
        return {"source": "pip", "version": cuda["version"], "archs": cuda["archs"],
                "wheels": cuda_toolkit.PIP_WHEELS}
    return cuda


def build_key(abi: dict) -> str:
    """Hash of everything the finished build depends on."""
    h = hashlib.sha256()
    h.update(ARCHIVE_SHA256.encode())
    # numpy's include path differs per environment; its major version is what matters
    h.update(repr(sorted((k, v) for k, v in abi.items()
                         if k not in ("np_include", "cuda"))).encode())
    if abi.get("cuda"):
        h.update(json.dumps(cuda_key(abi["cuda"]), sort_keys=True).encode())
    for p in overlay_files() + sorted((HERE / "patches").glob("*.patch")) + [HERE / "build_caffe.py"]:
        h.update(str(p.relative_to(HERE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


def fetch_archive(downloads: Path) -> Path:
    target = downloads / f"{ARCHIVE_NAME}-{ARCHIVE_VERSION}.tar.gz"
    if target.exists() and sha256_file(target) == ARCHIVE_SHA256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    log(f"downloading {ARCHIVE_NAME}=={ARCHIVE_VERSION} source from PyPI")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(downloads),
           f"{ARCHIVE_NAME}=={ARCHIVE_VERSION}"]
    # pip may try to prepare metadata (its setup.py wants conda); the archive is
    # saved before that, so a failure there is only fatal if the file is absent.
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not target.exists():
        raise BuildError(f"could not download {ARCHIVE_NAME}=={ARCHIVE_VERSION} from PyPI "
                         f"(tried: {' '.join(cmd)})")
    got = sha256_file(target)
    if got != ARCHIVE_SHA256:
        target.unlink()
        raise BuildError(f"{target.name}: sha256 {got} does not match the pinned {ARCHIVE_SHA256}")
    return target


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def _patch_target(patch: Path) -> str:
    """The archive file a unified diff changes (its ``+++ b/<path>`` line)."""
    for line in patch.read_text().splitlines():
        if line.startswith("+++ "):
            return line[4:].split("\t")[0].removeprefix("b/")
    raise BuildError(f"{patch}: no '+++' line (not a unified diff)")


# The archive's files this build changes, each with its patch (caffe_ext/patches/*.patch,
# unified diffs against the pinned archive, applied in name order; one file each).
PATCHES = {_patch_target(patch): patch for patch in sorted(PATCH_DIR.glob("*.patch"))}


def apply_patch(text: str, rel: str, patch: Path) -> str:
    """``text`` (the archive's ``rel``) with ``patch`` applied by GNU patch, exactly (no
    fuzz, no offsets beyond what the diff says); BuildError when it does not apply."""
    with tempfile.TemporaryDirectory(prefix="frcnn-patch-") as tmp:
        target = Path(tmp) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())
        proc = subprocess.run(["patch", "--batch", "--forward", "--fuzz=0", "--silent",
                               "--no-backup-if-mismatch", "-p1", "-d", tmp, "-i", str(patch)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            why = (proc.stdout + proc.stderr).strip().splitlines() or ["no message"]
            raise BuildError(f"{patch.name} does not apply to {rel} (is the archive the pinned "
                             f"one?): {why[-1]}")
        return target.read_bytes().decode()


def apply_patches(archive: Path, tree: Path) -> list[str]:
    """Write each file of PATCHES as its pristine archive text with its patch applied;
    files whose result is unchanged keep their timestamps (no recompilation).  Returns
    the files written."""
    written = []
    with tarfile.open(archive) as tf:
        prefix = tf.next().name.split("/")[0]
        for rel, patch in PATCHES.items():
            member = tf.extractfile(f"{prefix}/{rel}")
            if member is None:
                raise BuildError(f"{archive.name}: no {rel}")
            text = apply_patch(member.read().decode(), rel, patch)
            if write_if_changed(tree / rel, text.encode()):
                log(f"patched {rel}")
                written.append(rel)
    return written


def prepare_tree(archive: Path, tree: Path, abi: dict) -> bool:
    """Unpack (once), overlay our sources, patch, write Makefile.config.  Returns whether a
    header changed: Caffe's Makefile includes ./include with -isystem, so its dependency
    files omit our headers and make would not recompile what includes them."""
    if not (tree / "Makefile").exists():
        log(f"unpacking {archive.name} into {tree}")
        tmp = tree.with_name(tree.name + ".unpack")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
        (top,) = list(tmp.iterdir())
        shutil.rmtree(tree, ignore_errors=True)
        top.rename(tree)
        shutil.rmtree(tmp)

    written = []
    for src in overlay_files():
        if write_if_changed(tree / src.relative_to(HERE), src.read_bytes()):
            log(f"overlay {src.relative_to(HERE)}")
            written.append(str(src.relative_to(HERE)))
    # The archive's test of its SSD-style SmoothL1Loss does not fit our layer.
    (tree / "src/caffe/test/test_smooth_L1_loss_layer.cpp").unlink(missing_ok=True)

    written += apply_patches(archive, tree)

    link_dir = None
    if abi.get("cuda"):
        link_dir = cuda_toolkit.link_dir(Path(abi["cuda"]["lib_dir"]), tree / ".frcnn-cuda-link")
    write_if_changed(tree / "Makefile.config", makefile_config(abi, link_dir).encode())
    # caffe.proto too: every source includes the caffe.pb.h made from it, and the
    # precompiled header holds it
    return any(rel.endswith((".hpp", ".h", ".cuh", ".proto")) for rel in written)


def reset_objects(tree: Path, abi: dict, headers_changed: bool) -> None:
    """Drop the tree's objects where make would not notice they are stale: the
    code-generation flags differ from those of the tree's last build, or a header of
    ours changed (see prepare_tree)."""
    stamp = tree / ".frcnn-codegen"
    want = f"{abi['cflags']} {abi['cpu_target']} {json.dumps(cuda_key(abi.get('cuda')))}\n"
    flags_same = stamp.exists() and stamp.read_text() == want
    if flags_same and not headers_changed:
        return
    if (tree / BUILD_DIR).exists():
        log("compiler flags or CUDA toolkit changed: recompiling everything" if not flags_same
            else "a header changed: recompiling everything")
    for built in (BUILD_DIR, "temp", "python/caffe/_caffe.so"):
        path = tree / built
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    stamp.write_text(want)


PCH_HEADER = f"{BUILD_DIR}/pch/frcnn_pch.hpp"
# Caffe's common headers (boost, glog, protobuf's caffe.pb.h, Blob, Layer): parsing them is
# about 4.7 of the 6-7 s that g++ -O2 takes on a typical layer; precompiled, a layer
# compiles in 2-3 s.
PCH_TEXT = """// Written by squeezenet-frcnn caffe_ext/build_caffe.py: precompiled into
// frcnn_pch.hpp.gch and included first in every source of the Caffe build.
#include <algorithm>
#include <map>
#include <string>
#include <vector>
#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/math_functions.hpp"
"""


def make_variables(tree: Path, *names: str) -> list[str]:
    """The values of ``names`` as the tree's Makefile computes them (one make run, with
    GNU make's --eval)."""
    values = " ".join(f"'$({name})'" for name in names)
    proc = subprocess.run(["make", "--no-print-directory",
                           f"--eval=frcnn-print: ; @printf '%s\\n' {values}",
                           "frcnn-print"], cwd=tree, capture_output=True, text=True)
    values = proc.stdout.splitlines()
    if proc.returncode != 0 or len(values) != len(names):
        raise BuildError(f"make cannot print {', '.join(names)} in {tree}: "
                         + (proc.stderr.strip().splitlines() or ["no message"])[-1])
    return [value.strip() for value in values]


def precompile_header(tree: Path) -> str:
    """Build the precompiled header under the build directory (so reset_objects drops it
    with the objects it was built for); return the flags that make it used, or "" where
    it cannot be built (the build then goes on without it, only slower).

    g++ uses ``frcnn_pch.hpp.gch`` in place of ``-include frcnn_pch.hpp`` only when the
    source's flags match those it was built with (``-Winvalid-pch`` says when not), so it is
    built with the Makefile's own CXXFLAGS, after ``make proto`` has generated caffe.pb.h.
    """
    header, gch = tree / PCH_HEADER, tree / (PCH_HEADER + ".gch")
    flags = f"-include {PCH_HEADER} -Winvalid-pch"
    if gch.exists() and header.exists() and header.read_text() == PCH_TEXT:
        return flags
    proto = subprocess.run(["make", "proto"], cwd=tree, capture_output=True, text=True)
    if proto.returncode != 0:
        raise BuildError(f"make proto failed in {tree}:\n  "
                         + "\n  ".join(proto.stdout.splitlines()[-10:] + proto.stderr.splitlines()[-10:]))
    cxx, cxxflags = make_variables(tree, "CXX", "CXXFLAGS")
    cxxflags = [f for f in cxxflags.split() if f not in ("-MMD", "-MP")]
    header.parent.mkdir(parents=True, exist_ok=True)
    header.write_text(PCH_TEXT)
    tmp = gch.with_name(gch.name + ".tmp")
    start = time.time()
    proc = subprocess.run([cxx or "g++", "-x", "c++-header", PCH_HEADER,
                           *cxxflags, "-o", str(tmp.relative_to(tree))],
                          cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = proc.stderr.strip().splitlines()
        first_error = next((line for line in lines if "error" in line), lines[-1] if lines else "")
        log("could not precompile the common headers (building without them, slower): "
            + (first_error.strip() or "no message"))
        return ""
    tmp.replace(gch)
    log(f"precompiled the common headers in {time.time() - start:.0f}s")
    return flags


# What stage() installs: pycaffe (which links libcaffe.so) and caffe.bin.  `make all` would
# also build compute_image_mean, convert_imageset, extract_features, the three upgrade_*
# tools and libcaffe.a, which nothing installs: 12 compiles and links, about 20 s on 2 cores.
MAKE_TARGETS = ("pycaffe", f"{BUILD_DIR}/tools/caffe.bin")


def run_make(tree: Path, jobs: int, pch_flags: str = "", cuda: bool = False) -> None:
    # one line per compiled source, two for caffe.bin and for pycaffe (compile, link),
    # proto, the library
    suffixes = (".cpp", ".cu") if cuda else (".cpp",)
    total = sum(1 for p in (tree / "src/caffe").rglob("*") if p.suffix in suffixes
                and "/test/" not in str(p))
    total += 2 + 6
    interactive = sys.stdout.isatty()
    log(f"make -j{jobs} {' '.join(MAKE_TARGETS)} in {tree} (a first build takes "
        f"{'15-25' if cuda else '2-5'} minutes on 2 cores)")
    start = time.time()
    proc = subprocess.Popen(["make", f"-j{jobs}", *MAKE_TARGETS, f"FRCNN_PCH_FLAGS={pch_flags}"],
                            cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = 0
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-60:]
        if re.match(r"^(CXX|NVCC|PROTOC|LD|AR|CXX/LD)\b", line):
            done += 1
            status = f"[caffe] [{min(done, total)}/{total}] {time.time() - start:5.0f}s"
            if interactive:
                print(f"\r{status} {line.strip()[:70]:<70}", end="", flush=True)
            elif done % 20 == 0:
                print(status, flush=True)
    rc = proc.wait()
    if interactive:
        print(flush=True)
    if rc != 0:
        errors = [l for l in tail if "error" in l.lower()] or tail[-20:]
        raise BuildError("make failed in " + str(tree) + ":\n  " + "\n  ".join(errors[-20:]))
    log(f"build finished in {time.time() - start:.0f}s")


BUILD_INFO = "_frcnn_build.json"  # in the caffe package: how it was built (frcnn info)


def stage(tree: Path, dest: Path, info: dict) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(tree / "python/caffe", tmp / "caffe",
                    ignore=shutil.ignore_patterns("__pycache__", "test", "*.cpp", "imagenet"))
    (tmp / "caffe" / "_openblas_coretype.py").write_text(OPENBLAS_CORETYPE_MODULE)
    init = tmp / "caffe" / "__init__.py"
    init.write_text("from . import _openblas_coretype  # noqa: F401  (before libopenblas "
                    "loads)\n" + init.read_text())
    release = tree / BUILD_DIR
    shutil.copy2(release / "lib" / LIBCAFFE, tmp / "caffe" / LIBCAFFE)
    shutil.copy2(release / "tools" / "caffe.bin", tmp / "caffe" / "caffe.bin")
    (tmp / "caffe" / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def prune_stages(root: Path, keep: Path, count: int = 3) -> None:
    """Delete all but the ``count`` newest finished builds (``keep`` always stays)."""
    stages = sorted((p for p in root.glob("stage-*") if p.is_dir() and p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in stages[count - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def install(staged: Path, key: str, site_packages: Path, bin_dir: Path) -> None:
    target = site_packages / "caffe"
    marker = target / ".frcnn-build-key"
    if not (marker.exists() and marker.read_text().strip() == key):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staged / "caffe", target)
        marker.write_text(key + "\n")
        log(f"installed the caffe package into {target}")
    wrapper = bin_dir / "caffe"
    if write_if_changed(wrapper, CAFFE_WRAPPER.format(python=sys.executable).encode()):
        wrapper.chmod(0o755)
        log(f"installed the caffe command as {wrapper}")


def cuda_config() -> dict | None:
    """The CUDA toolkit of this build ($FRCNN_CUDA; see cuda_toolkit.py) as the Makefile
    needs it, or None for the CPU build."""
    in_venv = sys.prefix != sys.base_prefix
    remembered = Path(sys.prefix) / cuda_toolkit.REMEMBERED if in_venv else None
    try:
        mode = cuda_toolkit.mode_from_env(remembered=remembered)
        if not os.environ.get(cuda_toolkit.CUDA_ENV) and remembered and remembered.exists():
            log(f"{cuda_toolkit.CUDA_ENV}={mode}, as given last time in this environment "
                f"(set {cuda_toolkit.CUDA_ENV} to change it)")
        toolkit = cuda_toolkit.resolve(mode, log)
    except cuda_toolkit.ToolkitError as e:
        raise BuildError(str(e)) from None
    if toolkit is None:
        return None
    package_dir = Path(sysconfig.get_paths()["purelib"]) / "caffe"
    return {**toolkit.describe(), "include_dirs": [str(d) for d in toolkit.include_dirs],
            "rpaths": cuda_toolkit.runtime_rpaths(toolkit, package_dir)}


def build_record_cuda(cuda: dict | None) -> dict | None:
    """The CUDA part of ``_frcnn_build.json`` (None: a CPU build): what ``frcnn info`` and
    ``frcnn.devices`` read."""
    if not cuda:
        return None
    return {"version": cuda["version"], "source": cuda["source"], "archs": cuda["archs"],
            "ptx": cuda["ptx"], "root": cuda["root"], "cudnn": False, "nccl": False}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--force", action="store_true", help="rebuild even when a cached build exists")
    ap.add_argument("--no-install", action="store_true", help="build and stage only")
    args = ap.parse_args(argv)

    if sys.prefix == sys.base_prefix and not args.no_install:
        raise BuildError("run this with a virtual environment's python: the caffe package and "
                         "command are installed into that environment")
    for tool in ("make", "g++", "protoc", "patch"):
        if shutil.which(tool) is None:
            raise BuildError(f"'{tool}' not found: install the Debian packages listed in install.sh")

    abi = {**python_abi(), **codegen(), "cuda": cuda_config()}
    key = build_key(abi)
    root = cache_root() / "caffe"
    staged = root / f"stage-{key}"
    if args.force or not (staged / "DONE").exists():
        archive = fetch_archive(cache_root() / "downloads")
        tree = root / f"tree-{ARCHIVE_SHA256[:12]}-{abi['soabi'] or abi['pyver']}"
        if abi["cuda"]:  # a tree of its own: switching variants recompiles neither
            tree = tree.with_name(f"{tree.name}-cuda{abi['cuda']['version']}")
        headers_changed = prepare_tree(archive, tree, abi)
        reset_objects(tree, abi, headers_changed)
        pch_flags = precompile_header(tree)
        run_make(tree, args.jobs, pch_flags, cuda=bool(abi["cuda"]))
        stage(tree, staged, {"key": key, "archive": f"{ARCHIVE_NAME}-{ARCHIVE_VERSION}",
                             "cflags": abi["cflags"], "arch_env": ARCH_ENV,
                             "precompiled_header": bool(pch_flags),
                             "cuda": build_record_cuda(abi["cuda"])})
        (staged / "DONE").write_text(key + "\n")
        prune_stages(root, staged)
    else:
        log(f"using the cached build {staged}")
    if not args.no_install:
        site = Path(sysconfig.get_paths()["purelib"])
        install(staged, key, site, Path(sysconfig.get_paths()["scripts"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"[caffe] error: {e}", file=sys.stderr)
        sys.exit(1)
