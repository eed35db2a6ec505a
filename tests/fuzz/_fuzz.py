"""What the fuzz properties share: the budget, a hang guard, input mutators, a case tally.

Budget: ``FRCNN_FUZZ_EXAMPLES`` examples per property (default 60, derandomized: the CI
run is the same every time).  ``tools/fuzz.py`` sets it large for the long run, which
is random (a new seed each run) and keeps Hypothesis' example database, so a failure found
once is replayed first next time.

A property passes when every input either works (and what it returns has the documented
types and ranges) or raises the parser's documented error type.  Any other exception, a
hang (``HANG_SECONDS`` per example, by SIGALRM) or a slow example (Hypothesis' deadline)
fails it, with the minimal example.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
from typing import Any, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FRCNN_FUZZ_EXAMPLES", "60"))
LONG = "FRCNN_FUZZ_EXAMPLES" in os.environ  # set: the long run (random, with a database)
#: per example: slower than DEADLINE_MS is a failure (reported after it returns) ...
DEADLINE_MS = int(os.environ.get("FRCNN_FUZZ_DEADLINE_MS", "5000"))
#: ... and one still running after HANG_SECONDS is stopped and reported as a hang
HANG_SECONDS = int(os.environ.get("FRCNN_FUZZ_HANG_S", "30"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    derandomize=not LONG,
    database=settings.default.database if LONG else None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
    print_blob=True,
)

# ----------------------------------------------------------------------------- tally

#: test id -> examples run (dumped to FRCNN_FUZZ_REPORT by conftest at the session's end)
CASES: collections.Counter = collections.Counter()


def count() -> None:
    """Count one example of the running property (call first in each property)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    CASES[test] += 1


def dump_counts(path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(CASES), f, indent=1, sort_keys=True)


# ----------------------------------------------------------------------------- hangs

class Hang(BaseException):
    """An example ran past HANG_SECONDS (a BaseException: library ``except Exception``
    clauses do not swallow it)."""


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs longer than ``seconds``."""
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(fn, documented: tuple[type[BaseException], ...], *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, or the documented exception it raised (returned, checked to
    carry a message).  Any other exception propagates: that is a finding."""
    with no_hang():
        try:
            return fn(*args, **kwargs)
        except documented as e:
            assert str(e).strip(), f"{type(e).__name__} without a message"
            return e


# ----------------------------------------------------------------------------- values

#: tokens that break parsers: numbers at the edges, brackets, YAML/Python syntax, NUL ...
TOKENS = (
    "0", "-1", "-0", "1.5", "1e400", "-1e400", "inf", "-inf", "nan", ".inf", ".nan",
    "NaN", "9" * 4400, "2147483648", "-9223372036854775809", "0x10", "1_000", "True",
    "false", "null", "None", "~", "", " ", "\t", "\n", "\x00", "\x85", "\ufeff", "\ud7ff",
    "'", '"', "\\", "[", "]", "{", "}", "(", ")", "(1,)", "[]", "{}", "()", ",", ":", ": ",
    "- ", "#", "&a", "*a", "!!python/tuple", "!!python/object/apply:os.system",
    "!!binary", "!!float", "!!str", "<", ">", "&amp;", "&#0;", "&x;", "<![CDATA[", "]]>",
    "<!--", "-->", "<?xml", "[" * 300, "{" * 300, "(" * 300, "a" * 300, "../",
    "/", "%s", "é", "\u202e",
)


#: numbers at the edges, as text: for fields that are read as numbers
NUMBER_TOKENS = ("0", "-0", "-1", "1", "1.5", "-1.5", "1e30", "-1e30", "1e400", "-1e400",
                 "inf", "-inf", "nan", "100000000000", "1048577", "2147483648",
                 "9" * 4400, "0x10", "1_0", " 5 ", "5e-324", "")


def json_values(max_leaves: int = 8) -> st.SearchStrategy:
    """JSON-like values, with the edge cases that matter to readers (huge ints,
    non-finite floats, long strings)."""
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(), st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, 10 ** 30, 10 ** 400]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12), st.sampled_from(TOKENS))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
        max_leaves=max_leaves)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, prefix + (i,))
    return out


def _replace(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in tree.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(tree)]


def _delete(tree: Any, path: tuple) -> Any:
    if len(path) == 1:
        if isinstance(tree, dict):
            return {k: v for k, v in tree.items() if k != path[0]}
        return [v for i, v in enumerate(tree) if i != path[0]]
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {k: (_delete(v, rest) if k == head else v) for k, v in tree.items()}
    return [(_delete(v, rest) if i == head else v) for i, v in enumerate(tree)]


@st.composite
def mutated_tree(draw, valid: Any, max_edits: int = 3) -> Any:
    """``valid`` (a JSON-like tree) with 0..max_edits values replaced by values of other
    types, deleted, or duplicated into another place."""
    tree = valid
    for _ in range(draw(st.integers(0, max_edits))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "copy"]))
        if op == "delete" and path:
            tree = _delete(tree, path)
        elif op == "copy" and path:
            source = draw(st.sampled_from(paths))
            node = tree
            for p in source:
                node = node[p]
            tree = _replace(tree, path, node)
        else:
            tree = _replace(tree, path, draw(json_values()))
    return tree


@st.composite
def mutated_text(draw, valid: str, max_edits: int = 4) -> str:
    """``valid`` with 1..max_edits edits: a character replaced, a slice deleted or
    duplicated, a token inserted, or the text truncated."""
    text = valid
    for _ in range(draw(st.integers(1, max_edits))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        op = draw(st.sampled_from(["token", "token", "char", "delete", "dup", "truncate",
                                   "random"]))
        if op == "token":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
        elif op == "char":
            text = text[:i] + draw(st.characters()) + text[i + 1:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "dup":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "truncate":
            text = text[:i]
        else:
            text = text[:i] + draw(st.text(max_size=8)) + text[j:]
    return text


@st.composite
def mutated_bytes(draw, valid: bytes, max_edits: int = 4) -> bytes:
    """``valid`` with 1..max_edits edits: bytes flipped or set, a slice deleted,
    duplicated or replaced with random bytes, or the data truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        n = len(data)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 64)))
        op = draw(st.sampled_from(["flip", "flip", "set", "delete", "dup", "truncate",
                                   "random"]))
        if op == "flip" and i < n:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and i < n:
            data[i] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif op == "delete":
            del data[i:j]
        elif op == "dup":
            data[j:j] = data[i:j]
        elif op == "truncate":
            del data[i:]
        else:
            data[i:j] = draw(st.binary(max_size=16))
    return bytes(data)
