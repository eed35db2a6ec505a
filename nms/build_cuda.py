"""Optional CUDA extensions for setup.py (placeholder: no CUDA kernels yet)."""
from setuptools.command.build_ext import build_ext as BuildExtWithCuda  # noqa: F401


def cuda_extensions():
    return []
