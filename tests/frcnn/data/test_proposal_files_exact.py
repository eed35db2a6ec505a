"""frcnn.data.proposal_files at its edges: every message, clipping on each side, the JSON
checks, the accepted containers and the exact files written."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from frcnn.data.proposal_files import (FORMAT, ProposalFileError, load_proposals,
                                       save_proposals)

IDS = ["000005", "000007"]


def _pickle(tmp_path, data, name="p.pkl"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def _json(tmp_path, images, **extra):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "images": images, **extra}))
    return path


# ----------------------------------------------------------------------------- clipping

def test_clipping_on_each_side_and_dropping_inverted_boxes(tmp_path):
    # image 0 is 40 wide, 30 high
    boxes = np.array([[-10, 0, -5, 5],      # left of the image: a one-pixel column at x = 0
                      [0, -9, 5, -2],       # above: a one-pixel row at y = 0
                      [45, 32, 50, 33],     # past the bottom right: the corner pixel
                      [1.5, 2.5, 38.5, 28.5],  # inside: kept as it is
                      [5, 0, 3, 5],         # x2 < x1: dropped
                      [0, 5, 5, 3]], float)  # y2 < y1: dropped
    lines = []
    got = load_proposals(_pickle(tmp_path, [boxes, np.zeros((0, 4))]), IDS,
                         [(40, 30), (20, 10)], log=lines.append)
    np.testing.assert_array_equal(got[0], [[0, 0, 0, 5], [0, 0, 5, 0], [39, 29, 39, 29],
                                           [1.5, 2.5, 38.5, 28.5]])
    assert got[0].dtype == np.float32
    assert lines == ["[proposals] p.pkl: 4 boxes for 2 images; dropped 2 empty after clipping"]


def test_without_sizes_boxes_are_not_clipped_but_inverted_ones_go(tmp_path):
    boxes = np.array([[-10, -4, 500, 600], [5, 0, 3, 5]], float)
    lines = []
    got = load_proposals(_pickle(tmp_path, [boxes, boxes[:1]]), IDS, None, log=lines.append)
    np.testing.assert_array_equal(got[0], [[-10, -4, 500, 600]])
    np.testing.assert_array_equal(got[1], [[-10, -4, 500, 600]])
    assert lines == ["[proposals] p.pkl: 2 boxes for 2 images; dropped 1 empty after clipping"]
    lines.clear()
    load_proposals(_pickle(tmp_path, [boxes[:1], boxes[:1]]), IDS, None, log=lines.append)
    assert lines == ["[proposals] p.pkl: 2 boxes for 2 images"]


# ----------------------------------------------------------------------------- containers

def test_tuples_dicts_by_id_and_a_boxes_key(tmp_path):
    a, b = np.array([[1, 2, 3, 4]], np.float32), np.array([[5, 6, 7, 8]], np.float32)
    for data in ((a, b), {"000007": b, "000005": a, "extra": a}, {"boxes": [a, b], "n": 2}):
        got = load_proposals(_pickle(tmp_path, data), IDS, None, log=None)
        assert [g.tolist() for g in got] == [[[1, 2, 3, 4]], [[5, 6, 7, 8]]]
    # a dict that has the ids is matched by id even with a 'boxes' key
    got = load_proposals(_pickle(tmp_path, {"boxes": a, "000005": b, "000007": a}), IDS,
                         None, log=None)
    assert got[0].tolist() == [[5, 6, 7, 8]]


def test_wrong_containers_and_counts(tmp_path):
    with pytest.raises(ProposalFileError, match="p.pkl: expected a list of per-image boxes, "
                                                "got int"):
        load_proposals(_pickle(tmp_path, 5), IDS, None, log=None)
    with pytest.raises(ProposalFileError, match=r"p.pkl: 3 proposal sets but the dataset has 2 "
                                                r"images \(a pickle lists every image"):
        load_proposals(_pickle(tmp_path, [[], [], []]), IDS, None, log=None)
    ids = ["a", "b", "c", "d", "e"]
    with pytest.raises(ProposalFileError, match=r"no proposals for 4 of the dataset's 5 "
                                                r"images \(e.g. b, c, d\)$"):
        load_proposals(_pickle(tmp_path, {"a": []}), ids, None, log=None)


@pytest.mark.parametrize("boxes, message", [
    ([["a", 1, 2, 3]], "boxes are not numbers"),
    ([[1, 2, 3, 4], [1, 2]], "boxes are not numbers"),
    ([1, 2, 3, 4], r"boxes must be \(P, 4\) x1 y1 x2 y2 \(or \(P, 5\) with a score\), got shape "
                   r"\(4,\)"),
    ([[1, 2, 3, 4, 5, 6]], r"boxes must be .*, got shape \(1, 6\)"),
    ([[1, 2, 3, 4], [0, 0, np.inf, 1]], r"box 1 is not finite: \[0.0, 0.0, inf, 1.0\]"),
])
def test_bad_boxes_name_the_file_and_image(tmp_path, boxes, message):
    with pytest.raises(ProposalFileError, match=rf"p.pkl: image 000007: {message}"):
        load_proposals(_pickle(tmp_path, [[], boxes]), IDS, None, log=None)


def test_empty_sets_of_any_shape(tmp_path):
    got = load_proposals(_pickle(tmp_path, [[], np.zeros((0, 5))]), IDS, None, log=None)
    assert [g.shape for g in got] == [(0, 4), (0, 4)]
    assert all(g.dtype == np.float32 for g in got)


# ----------------------------------------------------------------------------- pickles

def test_unpicklable_files_name_the_last_error(tmp_path):
    path = tmp_path / "p.pickle"
    path.write_bytes(b"\x80\x02]q\x00")  # a truncated protocol 2 list
    with pytest.raises(ProposalFileError, match=r"p.pickle: not a readable pickle of "
                                                r"proposals \(.+\)$"):
        load_proposals(path, IDS, None, log=None)


def test_uppercase_suffixes(tmp_path):
    path = _pickle(tmp_path, [[], []], name="P.PKL")
    assert [g.shape for g in load_proposals(path, IDS, None, log=None)] == [(0, 4)] * 2


# ----------------------------------------------------------------------------- JSON

def test_json_ids_as_numbers_and_the_checks(tmp_path):
    got = load_proposals(_json(tmp_path, [{"id": 7, "boxes": [[1, 2, 3, 4]]},
                                          {"id": "000005", "boxes": []}]),
                         ["000005", "7"], None, log=None)
    assert got[1].tolist() == [[1, 2, 3, 4]]
    for images, message in (([{"id": "a"}], r'images\[0\] needs "id" and "boxes"'),
                            ([{"id": "a", "boxes": []}, {"boxes": []}],
                             r'images\[1\] needs "id" and "boxes"'),
                            ([{"id": "a", "boxes": []}, "b"], r'images\[1\] needs'),
                            ([{"id": "a", "boxes": []}, {"id": "a", "boxes": []}],
                             "image id 'a' appears twice")):
        with pytest.raises(ProposalFileError, match=f"p.json: {message}"):
            load_proposals(_json(tmp_path, images), ["a"], None, log=None)
    path = tmp_path / "p.json"
    for doc in ([], {"format": "other", "images": []}, {"format": FORMAT, "images": {}}):
        path.write_text(json.dumps(doc))
        with pytest.raises(ProposalFileError, match=r'expected a JSON object with "format": '
                                                    r'"frcnn-proposals" and an "images" list'):
            load_proposals(path, ["a"], None, log=None)
    path.write_text("{oops")
    with pytest.raises(ProposalFileError, match=r"p.json: not valid JSON \("):
        load_proposals(path, ["a"], None, log=None)


# ----------------------------------------------------------------------------- saving

def test_saved_json_by_hand(tmp_path):
    path = save_proposals(tmp_path / "p.json", IDS,
                          [[[1.234, 2.345, 3.0, 4.999]], np.zeros((0, 4))],
                          scores=[[0.123456789], []], dataset="voc_2007_test")
    assert path == tmp_path / "p.json"
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {
        "format": FORMAT, "version": 1, "dataset": "voc_2007_test",
        "images": [{"id": "000005", "boxes": [[1.23, 2.35, 3.0, 5.0]], "scores": [0.12346]},
                   {"id": "000007", "boxes": [], "scores": []}]}
    plain = save_proposals(tmp_path / "q.json", [5], [np.array([1, 2, 3, 4.0])])
    assert json.loads(plain.read_text()) == {"format": FORMAT, "version": 1, "dataset": "",
                                             "images": [{"id": "5",
                                                         "boxes": [[1.0, 2.0, 3.0, 4.0]]}]}


def test_saved_pickle_by_hand(tmp_path):
    path = save_proposals(tmp_path / "p.pickle", IDS, [[[1, 2, 3, 4]], np.zeros((0, 4))])
    loaded = pickle.loads(path.read_bytes())
    assert [a.dtype for a in loaded] == [np.float32, np.float32]
    assert [a.tolist() for a in loaded] == [[[1, 2, 3, 4]], []]
    assert loaded[1].shape == (0, 4)


def test_save_checks(tmp_path):
    with pytest.raises(ValueError, match="one boxes array .* per image id"):
        save_proposals(tmp_path / "p.pkl", IDS, [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="one boxes array .* per image id"):
        save_proposals(tmp_path / "p.json", IDS, [np.zeros((0, 4))] * 2, scores=[[]])
    with pytest.raises(ValueError, match=r"p.txt: use a .pkl \(py-faster-rcnn's\) or .json"):
        save_proposals(tmp_path / "p.txt", IDS, [np.zeros((0, 4))] * 2)
    assert not (tmp_path / "p.txt").exists()
