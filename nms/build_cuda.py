"""Optional CUDA extension for setup.py: ``frcnn._native.gpu_nms``.

``cuda_extensions()`` returns the extension only where nvcc is found (CUDA_HOME or
CUDA_PATH, then PATH) or FORCE_CUDA=1 is set, and never where FRCNN_NO_CUDA=1 is.
``BuildExtWithCuda`` compiles the .cu sources with nvcc and links them into the
Cython module; if anything in that build fails it prints one warning and skips the
extension, so the install still succeeds and ``frcnn.nms`` runs on the CPU.

Environment:
  CUDA_HOME / CUDA_PATH   toolkit root (bin/nvcc, include/, lib64/)
  FORCE_CUDA=1            attempt the CUDA build even when nvcc was not found
  FRCNN_NO_CUDA=1         never build it
  FRCNN_CUDA_ARCH         e.g. "80;90" (compute capabilities to build SASS for; the
                          newest also gets PTX). Default: DEFAULT_ARCHS, Turing to
                          Blackwell, limited to what this nvcc supports.  Caffe's CUDA
                          build (caffe_ext/cuda_toolkit.py) uses the same.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import Extension
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ARCH_ENV = "FRCNN_CUDA_ARCH"
# Turing to Blackwell.  A cubin runs on its own major version's later minors, so sm_86's
# serves sm_87 and sm_89 (Ada) and sm_120's sm_121; the newest also goes in as PTX, which
# the driver compiles for GPUs newer than the list.  Caffe's CUDA build uses the same list
# (caffe_ext/cuda_toolkit.py): each entry costs about 3 s per .cu file on this machine.
DEFAULT_ARCHS = ("75", "80", "86", "90", "100", "120")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_toolkit(root: str | None) -> bool:
    return bool(root) and os.path.exists(os.path.join(root, "bin", "nvcc")) and \
        os.path.exists(os.path.join(root, "include", "cuda_runtime.h"))


def _nvcc_top(nvcc: str) -> str | None:
    """The toolkit root an nvcc (possibly a wrapper script) really uses."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        line = line.lstrip("#$ ").strip()
        if line.startswith("TOP="):
            return os.path.normpath(line[4:])
    return None


def find_cuda_home() -> str | None:
    """Toolkit root holding bin/nvcc and include/cuda_runtime.h, or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append(_nvcc_top(nvcc))
    candidates += ["/usr/local/cuda", "/opt/cuda"]
    for root in candidates:
        if _is_toolkit(root):
            return root
    return None


def cuda_extensions() -> list[Extension]:
    """The CUDA extension(s) to build, or [] when CUDA is unavailable or disabled."""
    if _truthy("FRCNN_NO_CUDA"):
        return []
    home = find_cuda_home()
    if home is None and not _truthy("FORCE_CUDA"):
        return []
    home = home or os.environ.get("CUDA_HOME") or "/usr/local/cuda"

    import numpy
    from Cython.Build import cythonize

    lib_dirs = [d for d in (os.path.join(home, "lib64"), os.path.join(home, "lib"),
                            os.path.join(home, "targets", "x86_64-linux", "lib"),
                            os.path.join(home, "targets", "sbsa-linux", "lib"))
                if os.path.isdir(d)] or [os.path.join(home, "lib64")]
    ext = Extension(
        "frcnn._native.gpu_nms",
        ["nms/gpu_nms.pyx", "nms/nms_kernel.cu"],
        include_dirs=[numpy.get_include(), os.path.join(home, "include"), "nms"],
        library_dirs=lib_dirs,
        # The static runtime loads the driver lazily: importing the module works on
        # machines without a GPU or driver, and device_count() then returns 0.
        libraries=["cudart_static", "rt", "pthread", "dl"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3", "-g0"],
        depends=["nms/nms_kernel.h", "nms/nms_kernel.cu"],
        language="c++",
        optional=True,
    )
    (ext,) = cythonize([ext], language_level=3, quiet=True)
    ext.optional = True  # cythonize does not carry it over: a missing module is not copied
    ext._frcnn_cuda_home = home  # type: ignore[attr-defined]
    return [ext]


def requested_archs() -> list[str]:
    """The compute capabilities asked for: $FRCNN_CUDA_ARCH ("80;90", "8.0,9.0"), else
    DEFAULT_ARCHS."""
    wanted = [a.strip() for a in os.environ.get(ARCH_ENV, "").replace(",", ";").split(";")
              if a.strip()] or list(DEFAULT_ARCHS)
    return [a.replace(".", "") for a in wanted]


def supported_archs(nvcc: str) -> list[str]:
    """``requested_archs()`` less those this nvcc cannot build (``--list-gpu-arch``); where
    none is left, its newest.  Where nvcc cannot say, the request as it is."""
    wanted = requested_archs()
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True,
                             timeout=60).stdout
        have = {line.strip().split("_")[-1] for line in out.splitlines() if "compute_" in line}
    except (OSError, subprocess.SubprocessError):
        have = set()
    if have:
        wanted = [a for a in wanted if a in have] or sorted(have, key=int)[-1:]
    return wanted


def gencode_flags(archs: list[str]) -> list[str]:
    """nvcc flags: SASS (``sm_XX``) for each arch, PTX (``compute_XX``) for the last."""
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    if archs:
        flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
    return flags


def _nvcc_flags(nvcc: str) -> list[str]:
    flags = ["-O3", "--std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-O3",
             # Same IoU arithmetic as the CPU kernel: no fused multiply-add, IEEE division.
             "-fmad=false", "-prec-div=true", "-ftz=false"]
    return flags + gencode_flags(supported_archs(nvcc))


def build_jobs() -> int:
    """How many extensions (and Cython translations) to build at once: FRCNN_BUILD_JOBS,
    else one per core."""
    jobs = os.environ.get("FRCNN_BUILD_JOBS", "").strip()
    return int(jobs) if jobs.isdigit() and int(jobs) > 0 else (os.cpu_count() or 1)


class BuildExtWithCuda(build_ext):
    """build_ext that compiles .cu sources with nvcc; a failed CUDA build is skipped.

    Unless ``--parallel`` / ``-j`` is given, the extensions build side by side, one per
    core (``FRCNN_BUILD_JOBS`` overrides the count).
    """

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = build_jobs()

    def build_extension(self, ext):
        home = getattr(ext, "_frcnn_cuda_home", None)
        if home is None:
            return super().build_extension(ext)
        try:
            self._build_cuda_extension(ext, home)
        except Exception as exc:  # any failure: warn once, install without the GPU kernel
            message = str(exc).strip().splitlines()
            brief = message[-1] if message else type(exc).__name__
            print(f"WARNING: skipping the optional CUDA extension {ext.name} ({brief}); "
                  "frcnn.nms will use the CPU.", file=sys.stderr)
            self._drop_stale_output(ext)

    def _drop_stale_output(self, ext):
        # A module left from an earlier successful build would be mixed with new sources.
        for path in (self.get_ext_fullpath(ext.name),):
            if os.path.exists(path):
                os.remove(path)

    def _build_cuda_extension(self, ext, home):
        nvcc = os.path.join(home, "bin", "nvcc")
        if not os.path.exists(nvcc):
            nvcc = shutil.which("nvcc") or nvcc
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        other = [s for s in ext.sources if not s.endswith(".cu")]
        os.makedirs(self.build_temp, exist_ok=True)
        objects = []
        for src in cu_sources:
            obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
            deps = [src] + [d for d in ext.depends if os.path.exists(d)]
            if self.force or not os.path.exists(obj) or any(
                    os.path.getmtime(d) > os.path.getmtime(obj) for d in deps):
                cmd = [nvcc, "-c", src, "-o", obj, "-I" + os.path.dirname(os.path.abspath(src))]
                cmd += _nvcc_flags(nvcc)
                print(" ".join(cmd))
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    if os.path.exists(obj):
                        os.remove(obj)
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                    raise RuntimeError("nvcc failed: " + " | ".join(tail))
            objects.append(obj)
        ext.sources = other
        ext.extra_objects = list(ext.extra_objects or []) + objects
        try:
            super().build_extension(ext)
        finally:
            ext.sources = other + cu_sources
            ext.extra_objects = [o for o in ext.extra_objects if o not in objects]
        # The object is linked in: a rebuild must also happen when the .cu changes.
        out = self.get_ext_fullpath(ext.name)
        if not os.path.exists(out):
            raise RuntimeError(f"{out} was not produced")
