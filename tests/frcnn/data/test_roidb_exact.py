"""frcnn.data.roidb with exact entries, each check of check_roidb at its boundary, and the
exact report lines."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.data.roidb import (check_roidb, entry_from_record, filter_roidb, flip_boxes,
                              flipped_entry, gt_overlaps, training_roidb)


def record(boxes, classes, difficult=None, width=50, height=40, image="im.jpg", **extra):
    return {"image": image, "width": width, "height": height,
            "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "gt_classes": np.array(classes, np.int32),
            **({} if difficult is None else {"difficult": np.array(difficult, bool)}), **extra}


def test_flip_by_hand_keeps_y_and_the_input():
    boxes = np.array([[0.5, 3, 10.5, 7], [20, 1, 49, 2]], np.float64)
    out = flip_boxes(boxes, 50)
    assert out.dtype == np.float32 and out is not boxes
    np.testing.assert_array_equal(out, [[38.5, 3, 48.5, 7], [0, 1, 29, 2]])
    np.testing.assert_array_equal(boxes, [[0.5, 3, 10.5, 7], [20, 1, 49, 2]])
    assert flip_boxes([], 10).shape == (0, 4)


def test_gt_overlaps_one_hot():
    out = gt_overlaps([2, 1, 2], 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert gt_overlaps([], 3).shape == (0, 3)


def test_entry_by_hand():
    r = record([[1, 2, 10, 20], [5, 5, 8, 8]], [3, 1], width="50", height=40.0,
               image="a.jpg")
    e = entry_from_record(r, 4)  # no difficult flags: every object kept
    assert e["image"] == "a.jpg" and (e["width"], e["height"]) == (50, 40)
    assert isinstance(e["width"], int) and isinstance(e["height"], int)
    np.testing.assert_array_equal(e["boxes"], [[1, 2, 10, 20], [5, 5, 8, 8]])
    assert e["gt_classes"].dtype == np.int32 and e["gt_classes"].tolist() == [3, 1]
    assert e["max_classes"].tolist() == [3, 1] and e["max_classes"] is not e["gt_classes"]
    assert e["max_overlaps"].dtype == np.float32 and e["max_overlaps"].tolist() == [1, 1]
    assert e["flipped"] is False
    assert e["difficult"].tolist() == [False, False]
    assert e["gt_ishard"].dtype == np.int32 and e["gt_ishard"].tolist() == [0, 0]


def test_entry_class_range_and_messages():
    entry_from_record(record([[0, 0, 1, 1]], [3]), 4)  # K - 1 is fine
    with pytest.raises(ValueError, match=r"^im.jpg: class indices \[0, 2\] outside 1..3$"):
        entry_from_record(record([[0, 0, 1, 1]] * 2, [2, 0]), 4)
    with pytest.raises(ValueError, match=r"^a.xml: class indices \[4\] outside 1..3$"):
        entry_from_record(record([[0, 0, 1, 1]], [4], annotation="a.xml"), 4)
    # checked before difficult objects are dropped
    with pytest.raises(ValueError, match="outside"):
        entry_from_record(record([[0, 0, 1, 1]], [9], [True]), 4)
    assert len(entry_from_record(record([], []), 4)["gt_classes"]) == 0


def test_flipped_entry_copies():
    e = entry_from_record(record([[1, 2, 10, 20]], [1]), 2)
    f = flipped_entry(e)
    assert f is not e and f["boxes"] is not e["boxes"]
    assert f["gt_classes"] is e["gt_classes"]  # everything but boxes and flipped is shared
    np.testing.assert_array_equal(e["boxes"], [[1, 2, 10, 20]])


def test_filter_keeps_order():
    es = [entry_from_record(record(b, c, image=n), 3) for b, c, n in
          (([], [], "a"), ([[0, 0, 1, 1]], [1], "b"), ([], [], "c"), ([[0, 0, 1, 1]], [2], "d"))]
    kept, removed = filter_roidb(es)
    assert [e["image"] for e in kept] == ["b", "d"]
    assert [e["image"] for e in removed] == ["a", "c"]


def test_report_lines():
    recs = [record([[1, 1, 5, 5]], [1], image="a.jpg")]
    lines = []
    assert len(training_roidb(recs, 2, flip=False, log=lines.append)) == 1
    assert lines == ["[roidb] 1 images -> 1 entries"]
    recs += [record([], [], image=f"{n}.jpg") for n in "edcb"]
    lines.clear()
    training_roidb(recs, 2, flip=False, log=lines.append)
    assert lines == ["[roidb] 5 images -> 1 entries; removed 4 without usable gt boxes "
                     "(e.g. b.jpg, c.jpg, d.jpg)"]
    assert training_roidb(recs, 2, flip=False, log=None)[0]["image"] == "a.jpg"


# ----------------------------------------------------------------------------- check_roidb

def _entry(box, width=50, height=40, classes=(1,)):
    return entry_from_record(record([box] * len(classes), list(classes), width=width,
                                    height=height, image="x.jpg"), 4)


@pytest.mark.parametrize("box", [[0, 0, 49, 39], [49, 39, 49, 39], [0, 0, 0, 0],
                                 [10.5, 3, 10.5, 3.5]])
def test_boxes_on_the_edges_pass(box):
    check_roidb([_entry(box)], 4)


@pytest.mark.parametrize("box", [[-0.5, 0, 5, 5], [0, -1, 5, 5], [0, 0, 49.5, 5],
                                 [0, 0, 5, 39.01], [5, 0, 4.9, 5], [0, 5, 5, 4]])
def test_boxes_past_an_edge_or_inverted_fail(box):
    with pytest.raises(ValueError, match=r"roidb entry 0 \(x.jpg\): boxes must satisfy 0 <= "
                                         r"x1 <= x2 <= W-1 and 0 <= y1 <= y2 <= H-1 for the "
                                         r"50x40 image"):
        check_roidb([_entry(box)], 4)


def test_other_checks_and_their_messages():
    good = _entry([1, 1, 5, 5])
    check_roidb([good, good], 4)
    for change, message in (
            ({"boxes": np.zeros((1, 5), np.float32)}, r"boxes \(1, 5\) and gt_classes \(1,\) "
                                                      r"must be \(G, 4\) and \(G,\)"),
            ({"boxes": np.zeros(4, np.float32)}, r"boxes \(4,\) and gt_classes"),
            ({"boxes": np.zeros((2, 4), np.float32)}, r"boxes \(2, 4\) and gt_classes \(1,\)"),
            ({"gt_classes": np.array([0], np.int32)}, r"gt_classes \[0\] outside 1..3 "
                                                      r"\(num_classes 4\)"),
            ({"gt_overlaps": np.zeros((1, 3))}, r"gt_overlaps has shape \(1, 3\), expected "
                                                r"\(G, 4\) for num_classes 4")):
        with pytest.raises(ValueError, match=rf"roidb entry 1 \(x.jpg\): {message}"):
            check_roidb([good, {**good, **change}], 4)
    with pytest.raises(ValueError, match=r"roidb entry 0 \(\?\): missing keys \['image', "
                                         r"'flipped'\]"):
        check_roidb([{k: v for k, v in good.items() if k not in ("image", "flipped")}], 4)
    no_overlaps = {k: v for k, v in good.items() if k != "gt_overlaps"}
    check_roidb([no_overlaps], 4)  # optional

    class Sparse:  # scipy.sparse's (G, K) matrices have a shape, and that is all we read
        shape = (1, 4)

    check_roidb([{**good, "gt_overlaps": Sparse()}], 4)
    with pytest.raises(ValueError, match="the roidb is empty"):
        check_roidb([], 4)
