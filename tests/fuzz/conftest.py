"""The fuzz properties' case tally: written to $FRCNN_FUZZ_REPORT (JSON) at the end."""
from __future__ import annotations

import os

from tests.fuzz._fuzz import dump_counts


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FRCNN_FUZZ_REPORT")
    if path:
        dump_counts(path)
