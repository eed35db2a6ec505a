"""The CUDA toolkit of Caffe's GPU build: which one ``$FRCNN_CUDA`` picks, whether it is
complete, and what the build passes to make.

``$FRCNN_CUDA``:

``auto`` (default)
    a complete system toolkit (``$CUDA_HOME``, ``$CUDA_PATH``, ``nvcc`` on PATH,
    ``/usr/local/cuda``) gives the CUDA build; otherwise the CPU build, and one line says
    why (nothing is downloaded on a machine without a toolkit).
``pip``
    install the pinned CUDA 13.0 wheels of ``PIP_WHEELS`` from PyPI into the virtual
    environment (``site-packages/nvidia/cu13``) and build with them: a machine with a
    driver but no toolkit, or none at all, can build the GPU variant.
``system``
    a complete system toolkit or an error saying what it lacks.
``0``
    the CPU build.

A toolkit is complete when it has nvcc, the CUDA runtime, cuBLAS and cuRAND (headers and
shared libraries: Caffe links all three) and thrust (Caffe's ``math_functions.cu``; CUDA
13 keeps it under ``include/cccl``).  cuDNN is not used: Caffe 1.0's cuDNN code calls
cuDNN 7 functions that cuDNN 8 removed (see the README's GPU section).

The architectures are ``nms/build_cuda.py``'s (``$FRCNN_CUDA_ARCH`` overrides), so the
CUDA NMS and Caffe are built for the same GPUs.
"""
from __future__ import annotations

import glob
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

_NMS_DIR = Path(__file__).resolve().parent.parent / "nms"
if str(_NMS_DIR) not in sys.path:
    sys.path.insert(0, str(_NMS_DIR))
import build_cuda  # noqa: E402  (nms/build_cuda.py: toolkit root and architectures)

CUDA_ENV = "FRCNN_CUDA"
MODES = ("auto", "pip", "system", "0")

# CUDA 13.0, the oldest CUDA 13: its runtime runs on every CUDA 13 driver (r580 and newer),
# and it is the nvcc the lent GPU machines carry.  cuRAND keeps its own version numbers.
PIP_WHEELS = {
    "nvidia-cuda-nvcc": "13.0.88",     # bin/nvcc, ptxas, fatbinary, nvlink
    "nvidia-cuda-crt": "13.0.88",      # include/crt (nvcc's host headers)
    "nvidia-nvvm": "13.0.88",          # nvvm/bin/cicc
    "nvidia-cuda-runtime": "13.0.96",  # cuda_runtime.h, libcudart
    "nvidia-cuda-cccl": "13.0.85",     # thrust, cub (include/cccl)
    "nvidia-cublas": "13.0.2.14",
    "nvidia-curand": "10.4.0.35",
}
PIP_SUBDIR = Path("nvidia") / "cu13"  # where the wheels put the toolkit in site-packages
MIN_VERSION = (11, 0)

HEADERS = ("cuda_runtime.h", "cublas_v2.h", "curand.h")
LIBRARIES = ("cudart", "cublas", "curand")  # what Caffe's Makefile links (-l...)


class ToolkitError(RuntimeError):
    """No usable toolkit where one was required; the message says what is missing."""


@dataclass
class Toolkit:
    """A complete CUDA toolkit.

    ``root``: holds ``bin/nvcc``; ``include_dirs``: the runtime's headers first, then
    thrust's where they are apart; ``lib_dir``: the shared libraries; ``source``:
    'system' or 'pip'; ``version``: nvcc's release, e.g. '13.0'; ``archs``: compute
    capabilities to build, e.g. ['75', '80', ...] (the last also as PTX).
    """

    root: Path
    source: str
    version: str
    include_dirs: list[Path]
    lib_dir: Path
    archs: list[str] = field(default_factory=list)

    @property
    def nvcc(self) -> Path:
        return self.root / "bin" / "nvcc"

    def gencode(self) -> str:
        """nvcc's ``-gencode`` flags: SASS for every arch, PTX for the newest."""
        return " ".join(build_cuda.gencode_flags(self.archs))

    def describe(self) -> dict:
        """What goes into the cache key and the build record (``_frcnn_build.json``)."""
        return {"version": self.version, "source": self.source, "root": str(self.root),
                "lib_dir": str(self.lib_dir), "archs": list(self.archs),
                "ptx": self.archs[-1] if self.archs else None}


REMEMBERED = ".frcnn-cuda"  # in the environment (sys.prefix): the last FRCNN_CUDA given


def mode_from_env(environ=os.environ, remembered: Path | None = None) -> str:
    """The build's mode: ``$FRCNN_CUDA``; where it is not set, the one given last time in
    this environment (``remembered``, a file), so a later ``./install.sh`` or ``./test.sh``
    keeps a GPU build instead of replacing it with the CPU one; else ``auto``.  A value
    given is written to ``remembered``."""
    given = environ.get(CUDA_ENV, "").strip().lower()
    mode = given
    if not mode and remembered is not None and remembered.exists():
        mode = remembered.read_text().strip()
    mode = mode or "auto"
    aliases = {"off": "0", "no": "0", "false": "0", "cpu": "0", "1": "system"}
    mode = aliases.get(mode, mode)
    if mode not in MODES:
        raise ToolkitError(f"{CUDA_ENV}={environ.get(CUDA_ENV)!r}: use auto (the default: a "
                           "system toolkit where there is a complete one, else CPU), pip "
                           "(CUDA 13.0 from PyPI), system (a system toolkit or an error) or 0 "
                           "(CPU only)")
    if given and remembered is not None:
        try:
            remembered.write_text(mode + "\n")
        except OSError:
            pass
    return mode


def _lib_candidates(root: Path) -> list[Path]:
    return [root / "lib64", root / "lib", root / "targets" / "x86_64-linux" / "lib",
            root / "targets" / "sbsa-linux" / "lib", root / "lib" / "x86_64-linux-gnu"]


def _has_lib(directory: Path, name: str) -> bool:
    return bool(glob.glob(str(directory / f"lib{name}.so*")))


def _include_candidates(root: Path) -> list[Path]:
    return [root / "include", root / "targets" / "x86_64-linux" / "include"]


def inspect(root: Path) -> tuple[dict, list[str]]:
    """The parts of the toolkit under ``root`` and what it lacks.

    Returns ``({'include_dirs': [...], 'lib_dir': Path | None}, missing)``, ``missing``
    naming each absent part (an empty list: complete).
    """
    missing = []
    if not (root / "bin" / "nvcc").exists():
        missing.append("bin/nvcc")
    includes = [d for d in _include_candidates(root) if (d / "cuda_runtime.h").exists()]
    for header in HEADERS:
        if not any((d / header).exists() for d in includes):
            missing.append(f"include/{header}")
    thrust = [d for base in includes for d in (base, base / "cccl")
              if (d / "thrust" / "version.h").exists()]
    if not thrust:
        missing.append("thrust (include/thrust or include/cccl/thrust)")
    lib_dir = next((d for d in _lib_candidates(root) if _has_lib(d, "cudart")), None)
    for name in LIBRARIES:
        if lib_dir is None or not _has_lib(lib_dir, name):
            missing.append(f"lib{name}.so")
    include_dirs = includes[:1] + [d for d in thrust if d not in includes[:1]][:1]
    return {"include_dirs": include_dirs, "lib_dir": lib_dir}, missing


def nvcc_version(nvcc: Path) -> str:
    """nvcc's release ('13.0'), or '' when it does not run."""
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else ""


def _make(root: Path, source: str) -> Toolkit:
    parts, missing = inspect(root)
    if missing:
        raise ToolkitError(f"the CUDA toolkit at {root} lacks {', '.join(missing)}")
    version = nvcc_version(root / "bin" / "nvcc")
    if not version:
        raise ToolkitError(f"{root / 'bin' / 'nvcc'} does not run (nvcc --version failed)")
    if tuple(int(v) for v in version.split(".")) < MIN_VERSION:
        raise ToolkitError(f"the CUDA toolkit at {root} is CUDA {version}; the build needs "
                           f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer (C++17 device code)")
    archs = build_cuda.supported_archs(str(root / "bin" / "nvcc"))
    if not archs:
        raise ToolkitError(f"nvcc {version} at {root} supports none of the architectures asked "
                           f"for ({build_cuda.ARCH_ENV}={os.environ.get(build_cuda.ARCH_ENV)!r})")
    return Toolkit(root=root, source=source, version=version,
                   include_dirs=parts["include_dirs"], lib_dir=parts["lib_dir"], archs=archs)


def system_toolkit() -> Toolkit:
    """The system toolkit, complete, or ToolkitError saying what is absent or missing."""
    home = build_cuda.find_cuda_home()
    if home is None:
        raise ToolkitError("no CUDA toolkit found (CUDA_HOME, CUDA_PATH, nvcc on PATH, "
                           "/usr/local/cuda)")
    return _make(Path(home), "system")


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def pip_toolkit_root(site: Path | None = None) -> Path:
    return (site or site_packages()) / PIP_SUBDIR


def pip_wheels_installed() -> bool:
    for name, version in PIP_WHEELS.items():
        try:
            if importlib.metadata.version(name) != version:
                return False
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def pip_toolkit(log=print) -> Toolkit:
    """Install the pinned wheels into this Python's environment (skipped when they are
    there) and return the toolkit they make."""
    if not pip_wheels_installed():
        specs = [f"{name}=={version}" for name, version in PIP_WHEELS.items()]
        log(f"installing the CUDA 13.0 toolkit from PyPI into {site_packages()} "
            "(about 600 MB of wheels)")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *specs],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ToolkitError("pip could not install the CUDA toolkit wheels ("
                               + " ".join(specs) + "):\n  " + "\n  ".join(tail))
    return _make(pip_toolkit_root(), "pip")


def resolve(mode: str, log=print) -> Toolkit | None:
    """The toolkit to build with, or None for the CPU build (``auto`` then logs why)."""
    if mode == "0":
        return None
    if mode == "pip":
        return pip_toolkit(log)
    try:
        return system_toolkit()
    except ToolkitError as e:
        if mode == "system":
            raise ToolkitError(f"{CUDA_ENV}=system: {e}; install a complete toolkit or use "
                               f"{CUDA_ENV}=pip") from None
        log(f"CPU build: {e} ({CUDA_ENV}=pip builds for the GPU with CUDA from PyPI)")
        return None


def runtime_rpaths(toolkit: Toolkit, package_dir: Path) -> list[str]:
    """Where ``libcaffe.so`` (installed in ``package_dir``, site-packages/caffe) finds the
    CUDA libraries at run time: for the pip toolkit beside it in the same environment,
    relative to $ORIGIN (every environment it is installed into has the wheels, and one
    cached build serves them all); for a system toolkit its library folder."""
    if toolkit.source == "pip":
        return ["$ORIGIN/" + os.path.relpath(pip_toolkit_root(package_dir.parent) / "lib",
                                             package_dir)]
    return [str(toolkit.lib_dir)]


def link_dir(lib_dir: Path, dest: Path) -> Path:
    """A folder of unversioned ``lib<name>.so`` links to a toolkit's ``lib_dir``, for the
    link step: the PyPI wheels ship only ``libcublas.so.13`` and the like, which
    ``-lcublas`` does not find."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in LIBRARIES:
        plain = lib_dir / f"lib{name}.so"
        target = plain if plain.exists() else Path(sorted(
            glob.glob(str(lib_dir / f"lib{name}.so.*")), key=len)[0])
        link = dest / f"lib{name}.so"
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            link.unlink()
        link.symlink_to(target)
    return dest
