"""The benchmark scripts as modules (they live outside the package, in benchmarks/; the
tools beside them in tools/)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str, folder: str = "benchmarks"):
    """<folder>/<name>.py imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rf():
    return load_benchmark("readme_figures", "tools")


@pytest.fixture(scope="module")
def bd():
    return load_benchmark("bench_demo")


@pytest.fixture(scope="module")
def bo():
    return load_benchmark("bench_openblas")
