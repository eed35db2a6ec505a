"""Fuzz: precomputed proposal files (frcnn.data.proposal_files.load_proposals), JSON and
py-faster-rcnn's pickles.

Contract (the module docstring): a file that cannot be used raises ProposalFileError (a
ValueError) naming the file (FileNotFoundError when missing); a pickle naming anything but
numpy arrays is refused, never run.  What is returned: one float32 (P, 4) finite array per
image, clipped to its image, x1 <= x2 and y1 <= y2.
"""
from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.proposal_files import FORMAT, ProposalFileError, load_proposals
from tests.fuzz._fuzz import (FUZZ, NUMBER_TOKENS, count, mutated_bytes, mutated_text,
                              mutated_tree, outcome)

IDS = ["000005", "000007", "x"]
SIZES = [(30, 20), (17, 25), (5, 5)]


def check(result, n: int) -> None:
    assert isinstance(result, list) and len(result) == n
    for boxes, (w, h) in zip(result, SIZES):
        assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and np.isfinite(boxes).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w - 1).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h - 1).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def load(raw: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"proposals{suffix}"
        path.write_bytes(raw)
        result = outcome(load_proposals, (ProposalFileError, FileNotFoundError), path, IDS,
                         SIZES, log=None)
    if not isinstance(result, BaseException):
        check(result, len(IDS))
    return result


_COORD = st.floats(-50, 80, allow_nan=False, allow_infinity=False)
_BOXES = st.lists(st.lists(_COORD, min_size=4, max_size=4), max_size=5)


@FUZZ
@given(boxes=st.lists(_BOXES, min_size=3, max_size=3),
       how=st.sampled_from(["tree", "text", "bytes", "numbers", "valid"]), data=st.data())
def test_json_files(boxes, how, data):
    count()
    doc = {"format": FORMAT, "version": 1, "dataset": "d",
           "images": [{"id": i, "boxes": b} for i, b in zip(IDS, boxes)]}
    if how == "tree":
        doc = data.draw(mutated_tree(doc))
    text = json.dumps(doc)
    if how == "text":
        text = data.draw(mutated_text(text))
    elif how == "numbers":
        spots = [i for i, c in enumerate(text) if c.isdigit() and not text[i - 1].isdigit()]
        if spots:
            i = data.draw(st.sampled_from(spots))
            text = text[:i] + data.draw(st.sampled_from(NUMBER_TOKENS + ("Infinity", "NaN"))) \
                + text[i + 1:]
    raw = text.encode("utf-8", "surrogatepass")
    if how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    result = load(raw, ".json")
    if how == "valid":
        assert not isinstance(result, BaseException), result


_DTYPES = st.sampled_from([np.float32, np.float64, np.int32, np.uint16, np.int64,
                           np.complex64, np.bool_, np.float16, object])


@st.composite
def pickled(draw) -> bytes:
    """A pickle of py-faster-rcnn's form: a list (or dict by id) of (P, 4|5) arrays, some of
    odd dtypes and shapes, in pickle protocols 0..5."""
    arrays = []
    for _ in range(draw(st.sampled_from([3, 3, 3, 2, 0]))):
        shape = draw(st.sampled_from([(0, 4), (2, 4), (3, 5), (1, 4), (4,), (2, 3), (1, 1, 4)]))
        values = draw(st.lists(_COORD, min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))
        arrays.append(np.array(values, dtype=np.float64).reshape(shape)
                      .astype(draw(_DTYPES)))
    obj = dict(zip(IDS, arrays)) if draw(st.booleans()) else arrays
    return pickle.dumps(obj, protocol=draw(st.integers(0, 5)))


@FUZZ
@given(raw=pickled(), mutate=st.booleans(), data=st.data())
def test_pickle_files(raw, mutate, data):
    count()
    if mutate:
        raw = data.draw(mutated_bytes(raw))
    load(raw, data.draw(st.sampled_from([".pkl", ".pickle"])))
