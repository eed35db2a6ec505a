"""roidb preparation: entries, flipping, filtering, checks, and the shuffled order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frcnn.data.minibatch import shuffled_order
from frcnn.data.roidb import (append_flipped, check_roidb, entry_from_record, filter_roidb,
                              flip_boxes, flipped_entry, training_roidb)
from frcnn.data.voc import load_voc


def record(boxes, classes, difficult=None, width=50, height=40, image="im.jpg"):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return {"image": image, "width": width, "height": height, "boxes": boxes,
            "gt_classes": np.array(classes, np.int32),
            "difficult": np.array(difficult or [False] * len(classes), bool)}


@st.composite
def boxes_in_image(draw):
    width = draw(st.integers(1, 500))
    n = draw(st.integers(0, 6))
    xs = [sorted(draw(st.lists(st.integers(0, width - 1), min_size=2, max_size=2)))
          for _ in range(n)]
    boxes = np.array([[a, 0, b, 3] for a, b in xs], np.float32).reshape(-1, 4)
    return boxes, width


@settings(max_examples=200, deadline=None)
@given(boxes_in_image())
def test_flip_keeps_boxes_valid_and_is_an_involution(case):
    boxes, width = case
    flipped = flip_boxes(boxes, width)
    assert flipped.dtype == np.float32
    assert np.all(flipped[:, 2] >= flipped[:, 0])
    assert np.all(flipped[:, 0] >= 0) and np.all(flipped[:, 2] <= width - 1)
    np.testing.assert_array_equal(flipped[:, 2] - flipped[:, 0], boxes[:, 2] - boxes[:, 0])
    np.testing.assert_array_equal(flip_boxes(flipped, width), boxes)


def test_flip_border_and_one_pixel_boxes():
    # border boxes map onto the border, one-pixel boxes stay one pixel; and nothing wraps:
    # py-faster-rcnn's uint16 boxes turn x2 = W (an off-by-one annotation) into x1' = 65535
    np.testing.assert_array_equal(flip_boxes([[0, 0, 49, 9], [4, 1, 4, 1]], 50),
                                  [[0, 0, 49, 9], [45, 1, 45, 1]])
    assert flip_boxes([[0, 0, 50, 9]], 50)[0, 0] == -1  # negative, visible to check_roidb


def test_entries_from_records():
    r = record([[1, 2, 10, 20], [5, 5, 8, 8], [0, 0, 49, 39]], [2, 1, 3], [False, True, False])
    e = entry_from_record(r, num_classes=4)
    assert e["gt_classes"].tolist() == [2, 3]  # the difficult object is dropped
    np.testing.assert_array_equal(e["gt_overlaps"], [[0, 0, 1, 0], [0, 0, 0, 1]])
    assert e["gt_overlaps"].dtype == np.float32
    assert e["max_classes"].tolist() == [2, 3] and e["max_overlaps"].tolist() == [1, 1]
    assert e["flipped"] is False and e["difficult"].tolist() == [False, False]
    keep = entry_from_record(r, num_classes=4, use_difficult=True)
    assert keep["gt_classes"].tolist() == [2, 1, 3]
    assert keep["difficult"].tolist() == [False, True, False]
    assert keep["gt_ishard"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"class indices \[1, 2, 3\] outside 1..2"):
        entry_from_record(r, num_classes=3)


def test_flipped_entry():
    e = entry_from_record(record([[1, 2, 10, 20]], [1]), 2)
    f = flipped_entry(e)
    assert f["flipped"] is True and e["flipped"] is False
    np.testing.assert_array_equal(f["boxes"], [[39, 2, 48, 20]])
    assert flipped_entry(f)["flipped"] is False
    np.testing.assert_array_equal(flipped_entry(f)["boxes"], e["boxes"])
    both = append_flipped([e])
    assert [x["flipped"] for x in both] == [False, True]


def test_training_roidb_flips_filters_and_reports():
    records = [record([[1, 2, 10, 20]], [1], image="a.jpg"),
               record([], [], image="b.jpg"),
               record([[1, 1, 5, 5]], [2], [True], image="c.jpg")]
    lines = []
    roidb = training_roidb(records, 3, flip=True, log=lines.append)
    assert [(e["image"], e["flipped"]) for e in roidb] == [("a.jpg", False), ("a.jpg", True)]
    assert lines == ["[roidb] 3 images + flipped -> 2 entries; removed 4 without usable gt "
                     "boxes (e.g. b.jpg, c.jpg)"]
    assert len(training_roidb(records, 3, flip=False, use_difficult=True, log=None)) == 2
    with pytest.raises(ValueError, match="no training images with usable gt boxes"):
        training_roidb(records[1:], 3, flip=True, log=None)
    kept, removed = filter_roidb([entry_from_record(r, 3) for r in records])
    assert len(kept) == 1 and len(removed) == 2


def test_training_roidb_keeps_images_without_objects_as_negatives():
    records = [record([[1, 2, 10, 20]], [1], image="a.jpg"), record([], [], image="b.jpg"),
               record([[1, 1, 5, 5]], [2], [True], image="c.jpg")]
    lines = []
    roidb = training_roidb(records, 3, flip=False, log=lines.append, keep_empty=True)
    assert [(e["image"], len(e["gt_classes"])) for e in roidb] == [
        ("a.jpg", 1), ("b.jpg", 0), ("c.jpg", 0)]
    assert lines == ["[roidb] 3 images -> 3 entries, 2 of them without objects (kept as "
                     "negatives)"]
    check_roidb(roidb, 3, allow_empty=True)
    with pytest.raises(ValueError, match=r"b.jpg.*no gt boxes.*TRAIN.USE_EMPTY_IMAGES"):
        check_roidb(roidb, 3)
    with pytest.raises(ValueError, match="no training images with usable gt boxes"):
        training_roidb(records[1:], 3, flip=False, log=None, keep_empty=True)


def test_training_roidb_of_the_synthetic_folder(synth_dir):
    records = load_voc(synth_dir, "train")
    roidb = training_roidb(records, 4, flip=True, log=None)
    n_with_boxes = sum(len(r["gt_classes"]) > 0 for r in records)
    assert len(roidb) == 2 * n_with_boxes
    check_roidb(roidb, 4)


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("boxes"), r"missing keys \['boxes'\]"),
    (lambda e: e.update(gt_classes=np.array([4], np.int32)), r"outside 1..3"),
    (lambda e: e.update(boxes=np.array([[5, 1, 2, 3]], np.float32)), "x1 <= x2"),
    (lambda e: e.update(boxes=np.array([[0, 0, 50, 3]], np.float32)), "for the 50x40 image"),
    (lambda e: e.update(boxes=np.zeros((0, 4)), gt_classes=np.zeros(0, np.int32)),
     "no gt boxes"),
    (lambda e: e.update(gt_overlaps=np.zeros((1, 21))), r"expected \(G, 4\)"),
])
def test_check_roidb_names_the_entry(change, message):
    e = entry_from_record(record([[1, 2, 10, 20]], [1], image="x.jpg"), 4)
    check_roidb([e], 4)
    change(e)
    with pytest.raises(ValueError, match=message) as info:
        check_roidb([e], 4)
    assert "roidb entry 0 (x.jpg)" in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        check_roidb([], 4)


def test_shuffled_order():
    widths = np.array([100, 50, 100, 50, 100, 100, 50])
    heights = np.array([50, 100, 50, 100, 50, 50, 100])
    for grouping in (False, True):
        a = shuffled_order(widths, heights, np.random.default_rng(0), grouping)
        b = shuffled_order(widths, heights, np.random.default_rng(0), grouping)
        assert sorted(a.tolist()) == list(range(7)) and a.tolist() == b.tolist()


def test_aspect_grouping_pairs_like_orientations():
    widths = np.array([100, 50, 100, 50, 100, 100, 50, 50])   # 4 landscape, 4 portrait
    heights = widths[::-1]
    landscape = widths >= heights
    mixed_pairs = 0
    for seed in range(20):
        grouped = landscape[shuffled_order(widths, heights, np.random.default_rng(seed), True)]
        assert np.all(grouped[0::2] == grouped[1::2])   # every minibatch pair is one kind
        plain = landscape[shuffled_order(widths, heights, np.random.default_rng(seed), False)]
        mixed_pairs += np.sum(plain[0::2] != plain[1::2])
    assert mixed_pairs > 0   # without grouping they mix
