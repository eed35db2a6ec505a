"""The tools (tools/*.py) as modules: the fixtures of tests/benchmarks serve them too."""
from tests.benchmarks.conftest import rf  # noqa: F401  (the readme_figures module)
