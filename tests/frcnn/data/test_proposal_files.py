"""Proposal files: py-faster-rcnn's pickle and the plain JSON form (frcnn.data.proposal_files)."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct

import numpy as np
import pytest

from frcnn.data.proposal_files import ProposalFileError, load_proposals, save_proposals

IDS = ["000005", "000007"]
SIZES = [(40, 30), (20, 40)]  # (width, height)
BOXES = [np.array([[0, 0, 9, 9], [5.5, 6, 20, 29]], np.float32), np.zeros((0, 4), np.float32)]


@pytest.mark.parametrize("name", ["p.pkl", "p.json"])
def test_round_trip(tmp_path, name):
    path = save_proposals(tmp_path / name, IDS, BOXES, dataset="d")
    got = load_proposals(path, IDS, SIZES, log=None)
    assert len(got) == 2 and got[1].shape == (0, 4) and got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], BOXES[0])
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_pickle_is_py_faster_rcnns_list_in_protocol_2(tmp_path):
    path = save_proposals(tmp_path / "p.pkl", IDS, BOXES)
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02"
    loaded = pickle.loads(data)
    assert isinstance(loaded, list) and loaded[0].shape == (2, 4)


def test_a_pickle_written_by_numpy_with_scores_and_float64(tmp_path):
    # what a fork of rpn_generate may write: float64 (P, 5) with a score column
    path = tmp_path / "rpn.pkl"
    path.write_bytes(pickle.dumps([np.array([[1, 2, 3, 4, 0.9]]), np.zeros((0, 5))],
                                  protocol=pickle.HIGHEST_PROTOCOL))
    got = load_proposals(path, IDS, None, log=None)
    np.testing.assert_allclose(got[0], [[1, 2, 3, 4]])


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_pickle_naming_other_objects_is_refused_not_run(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_Evil(target), np.zeros((0, 4))]))
    with pytest.raises(ProposalFileError, match="refusing to unpickle"):
        load_proposals(path, IDS, None, log=None)
    assert not target.exists()


def test_count_mismatch_and_bad_numbers_name_the_file_and_image(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([np.zeros((0, 4))]))
    with pytest.raises(ProposalFileError, match="1 proposal sets but the dataset has 2"):
        load_proposals(path, IDS, None, log=None)
    path.write_bytes(pickle.dumps([np.array([[0, 0, np.nan, 4]]), np.zeros((0, 4))]))
    with pytest.raises(ProposalFileError, match=r"image 000005: box 0 is not finite"):
        load_proposals(path, IDS, None, log=None)
    path.write_bytes(pickle.dumps([np.zeros((3, 3)), np.zeros((0, 4))]))
    with pytest.raises(ProposalFileError, match=r"must be \(P, 4\)"):
        load_proposals(path, IDS, None, log=None)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ProposalFileError, match="not a readable pickle"):
        load_proposals(tmp_path / "junk.pkl", IDS, None, log=None)
    with pytest.raises(FileNotFoundError, match="proposals file not found"):
        load_proposals(tmp_path / "missing.pkl", IDS, None, log=None)
    with pytest.raises(ProposalFileError, match="unknown proposals format"):
        (tmp_path / "p.txt").write_text("")
        load_proposals(tmp_path / "p.txt", IDS, None, log=None)


def test_boxes_are_clipped_and_empty_ones_dropped(tmp_path, capsys):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([np.array([[-5, -1, 50, 10], [45, 0, 60, 5]]),
                                   np.array([[3, 3, 2, 9]])]))
    got = load_proposals(path, IDS, SIZES)
    # clipped to the 40 x 30 image (the second becomes a one-pixel column at x = 39)
    np.testing.assert_allclose(got[0], [[0, 0, 39, 10], [39, 0, 39, 5]])
    assert got[1].shape == (0, 4)  # x2 < x1
    assert "dropped 1 empty after clipping" in capsys.readouterr().out


def test_json_is_matched_by_id(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "frcnn-proposals", "version": 1, "images": [
        {"id": "000007", "boxes": [[1, 1, 5, 5]]}, {"id": "000005", "boxes": []}]}))
    got = load_proposals(path, IDS, SIZES, log=None)
    assert got[0].shape == (0, 4) and got[1].tolist() == [[1, 1, 5, 5]]
    with pytest.raises(ProposalFileError, match=r"no proposals for 1 .* \(e.g. 000009\)"):
        load_proposals(path, IDS + ["000009"], None, log=None)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ProposalFileError, match='"format": "frcnn-proposals"'):
        load_proposals(path, IDS, None, log=None)


def test_json_keeps_scores(tmp_path):
    path = save_proposals(tmp_path / "p.json", IDS, BOXES,
                          scores=[np.array([0.9, 0.5]), np.zeros(0)], dataset="voc")
    doc = json.loads(path.read_text())
    assert doc["dataset"] == "voc" and doc["images"][0]["scores"] == [0.9, 0.5]


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str (BINSTRING), as a pickle from Python 2 holds them."""

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def test_a_python_2_pickle_loads(tmp_path):
    buf = io.BytesIO()
    boxes = [np.array([[1.5, 2, 300, 400]], np.float32), np.zeros((0, 4), np.float32)]
    _Python2Pickler(buf, protocol=2).dump(boxes)
    data = buf.getvalue().replace(b"numpy._core", b"numpy.core")  # numpy 1's module name
    assert b"_codecs" not in data and b"numpy.core.multiarray" in data
    path = tmp_path / "py2.pkl"
    path.write_bytes(data)
    got = load_proposals(path, IDS, None, log=None)
    np.testing.assert_allclose(got[0], boxes[0])
