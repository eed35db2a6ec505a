"""Where Caffe runs: the CPU, or one CUDA GPU (``--gpu ID`` on the command line,
``use_gpu(ID)`` from Python).

The CPU is the default, in every build.  A GPU needs three things, checked in this order
before Caffe is asked (Caffe's own checks abort the process): a CUDA build of Caffe
(``FRCNN_CUDA=pip ./install.sh`` or a system toolkit; ``caffe/_frcnn_build.json`` says
which), an NVIDIA driver with that device (asked through the driver API,
``libcuda.so.1``, whose interface every driver keeps), and code in the build for the
device's compute capability.

A selected GPU also becomes cfg ``GPU_ID`` when a command installs its cfg
(``frcnn.app.runs.install_cfg``), so the Python layers' NMS runs on the same device
(``USE_GPU_NMS: auto``), as py-faster-rcnn's ``--gpu`` did.

Caffe's device is per thread: ``apply(caffe)`` must run in the thread that builds and runs
the net.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

BUILD_RECORD = "_frcnn_build.json"  # written by caffe_ext/build_caffe.py into the caffe package
REBUILD_HINT = ("rebuild Caffe for the GPU: `FRCNN_CUDA=pip ./install.sh --no-job` (CUDA 13 "
                "from PyPI) or, with a system CUDA toolkit, `FRCNN_CUDA=system ./install.sh "
                "--no-job`")
OOM_HINT = ("make the input smaller (TRAIN.SCALES / TRAIN.MAX_SIZE, TEST.SCALES), train "
            "with fewer RoIs per image (TRAIN.BATCH_SIZE), use a GPU with more free memory "
            "(--gpu ID), or run on the CPU (no --gpu)")

_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76


class GpuError(RuntimeError):
    """A GPU was asked for and cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Gpu:
    """One CUDA device as the driver reports it (``index``: CUDA's ordinal, after
    CUDA_VISIBLE_DEVICES)."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_mib: int

    def __str__(self) -> str:
        return (f"GPU {self.index}: {self.name}, compute capability "
                f"{self.capability[0]}.{self.capability[1]}, {self.memory_mib} MiB")


# ---------------------------------------------------------------------------- the build

def caffe_build() -> dict:
    """The caffe package's build record ({} where caffe is not installed or predates it),
    read without importing caffe."""
    spec = importlib.util.find_spec("caffe")
    if spec is None or not spec.origin:
        return {}
    path = Path(spec.origin).with_name(BUILD_RECORD)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe_build(build: dict) -> str:
    """'CPU only' or 'CUDA 13.0 (pip toolkit), code for sm_75 ... + PTX compute_120, no cuDNN'."""
    cuda = build.get("cuda")
    if not cuda:
        return "CPU only"
    sass = " ".join(f"sm_{a}" for a in cuda.get("archs", []))
    ptx = f" + PTX compute_{cuda['ptx']}" if cuda.get("ptx") else ""
    return (f"CUDA {cuda.get('version', '?')} ({cuda.get('source', '?')} toolkit), code for "
            f"{sass}{ptx}, {'cuDNN' if cuda.get('cudnn') else 'no cuDNN'}")


def runs_on(capability: tuple[int, int], cuda: dict) -> bool:
    """Whether a build with ``cuda['archs']`` (SASS) and ``cuda['ptx']`` (PTX) has code for
    a device of ``capability``: a cubin runs on its own major version from its minor up;
    PTX is compiled by the driver for any device at least as new."""
    cc = capability[0] * 10 + capability[1]
    for arch in cuda.get("archs", []):
        a = int(arch)
        if a // 10 == capability[0] and a <= cc:
            return True
    return bool(cuda.get("ptx")) and int(cuda["ptx"]) <= cc


# --------------------------------------------------------------------------- the driver

def _driver() -> ctypes.CDLL:
    return ctypes.CDLL("libcuda.so.1")


def _cu_error(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return f"{name.value.decode()} ({code})"
    except AttributeError:
        pass
    return f"error {code}"


def driver_gpus() -> tuple[list[Gpu], str | None]:
    """The CUDA devices this process can use, and why there are none (None when some).

    Asks the NVIDIA driver directly; never aborts, never needs Caffe.
    """
    try:
        lib = _driver()
    except OSError:
        return [], "no NVIDIA driver (libcuda.so.1 not found)"
    code = lib.cuInit(0)
    if code != 0:
        return [], f"the NVIDIA driver found no usable device (cuInit: {_cu_error(lib, code)})"
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        return [], f"the NVIDIA driver cannot count devices ({_cu_error(lib, code)})"
    gpus = []
    for index in range(count.value):
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), index) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        major, minor, mem = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_size_t(0)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev)
        lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append(Gpu(index, name.value.decode(errors="replace"), (major.value, minor.value),
                        mem.value >> 20))
    return gpus, (None if gpus else "the NVIDIA driver reports no CUDA device")


def driver_version() -> str | None:
    """The driver's CUDA version ('13.0'), or None without a driver."""
    try:
        lib = _driver()
    except OSError:
        return None
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


# ------------------------------------------------------------------------ the selection

def parse_gpu(text: str | int | None) -> list[int]:
    """``--gpu``'s value as device ids: '0' -> [0], '0,1' -> [0, 1]; '-1', 'cpu' or
    None -> [] (the CPU).  ValueError for anything else."""
    if text is None:
        return []
    if isinstance(text, int):
        return [] if text < 0 else [text]
    value = str(text).strip().lower()
    if value in ("", "-1", "cpu", "none"):
        return []
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--gpu {text!r}: expected a device id such as 0 (or 0,1), "
                             "or -1 for the CPU")
        if int(part) not in ids:
            ids.append(int(part))
    return ids


def check_gpus(ids: Sequence[int], build: dict, gpus: Sequence[Gpu],
               no_gpu_reason: str | None = None) -> int | None:
    """The one device to run on (None: the CPU), or GpuError saying why ``ids`` cannot be
    used with this ``build`` (caffe_build()) and these ``gpus`` (driver_gpus())."""
    if not ids:
        return None
    asked = ",".join(map(str, ids))
    if len(ids) > 1:
        raise GpuError(
            f"--gpu {asked}: multi-GPU training is not available: this Caffe (BVLC 1.0-rc3 "
            "base) has only the thread-based P2PSync, which cannot run Python layers, and no "
            "NCCL; train on one GPU (--gpu ID)")
    (gpu_id,) = ids
    if not build.get("cuda"):
        raise GpuError(f"--gpu {gpu_id}: this Caffe is a CPU-only build; {REBUILD_HINT}")
    if not gpus:
        raise GpuError(f"--gpu {gpu_id}: no CUDA device: {no_gpu_reason or 'none found'}. "
                       "This CUDA build runs on the CPU without --gpu")
    by_index = {g.index: g for g in gpus}
    if gpu_id not in by_index:
        present = "; ".join(str(g) for g in gpus)
        raise GpuError(f"--gpu {gpu_id}: no such device ({len(gpus)} present: {present})")
    gpu = by_index[gpu_id]
    if not runs_on(gpu.capability, build["cuda"]):
        raise GpuError(f"--gpu {gpu_id}: {gpu.name} has compute capability "
                       f"{gpu.capability[0]}.{gpu.capability[1]}, and this build has no code "
                       f"for it ({describe_build(build)}); rebuild with "
                       f"FRCNN_CUDA_ARCH={gpu.capability[0]}{gpu.capability[1]} (CUDA 13 "
                       "supports 7.5 and newer)")
    return gpu_id


_selected: int | None = None


def use_gpu(gpu: str | int | None) -> int | None:
    """Select where Caffe runs in this process from now on (``apply`` makes it so): a GPU
    id, or None / -1 for the CPU.  Checks everything first (GpuError)."""
    global _selected
    ids = parse_gpu(gpu)
    if ids:
        gpus, reason = driver_gpus()
        _selected = check_gpus(ids, caffe_build(), gpus, reason)
    else:
        _selected = None
    return _selected


def selected() -> int | None:
    """The GPU selected with use_gpu (None: the CPU)."""
    return _selected


def apply(caffe: Any) -> None:
    """Put pycaffe (the module) in the selected mode, in the calling thread."""
    if _selected is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(_selected)


def explain(error: BaseException) -> str:
    """The message for ``error``, with what to do where it is Caffe's out-of-GPU-memory."""
    text = str(error)
    if "CUDA out of memory" in text:
        return f"{text}: {OOM_HINT}"
    return text


def add_argument(parser: Any) -> None:
    """``--gpu ID`` on a command's parser (checked and selected by ``frcnn.cli``)."""
    parser.add_argument("--gpu", metavar="ID", default=None,
                        help="run Caffe on this CUDA GPU (needs a CUDA build; default: the "
                             "CPU; -1: the CPU)")


def report() -> list[str]:
    """Lines for ``frcnn info``: the build and the devices it sees."""
    build = caffe_build()
    lines = [f"caffe device code: {describe_build(build)}"]
    gpus, reason = driver_gpus()
    version = driver_version()
    if gpus:
        lines.append(f"CUDA devices (driver CUDA {version}):")
        for gpu in gpus:
            usable = "" if not build.get("cuda") or runs_on(gpu.capability, build["cuda"]) \
                else " (no code for it in this build)"
            lines.append(f"  {gpu}{usable}")
    else:
        lines.append(f"CUDA devices: none ({reason})")
    return lines
