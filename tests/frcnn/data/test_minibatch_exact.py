"""frcnn.data.minibatch: settings checks, the exact blobs of one image, class-0 rows, the
epoch order with and without aspect grouping, and the source's cursor."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from frcnn.data.minibatch import BlobSettings, MinibatchSource, get_minibatch, shuffled_order
from frcnn.data.roidb import entry_from_record


@pytest.fixture
def entry(tmp_path):
    """A 20 x 30 (H x W) PNG, value 10 * channel + 1, and its entry with two boxes."""
    im = np.zeros((20, 30, 3), np.uint8)
    im[:] = [1, 11, 21]
    path = tmp_path / "im.png"
    cv2.imwrite(str(path), im)
    return entry_from_record({"image": str(path), "width": 30, "height": 20,
                              "boxes": np.array([[1, 2, 10, 12], [0, 0, 29, 19]], np.float32),
                              "gt_classes": np.array([2, 1], np.int32)}, 3)


def test_settings_defaults_and_checks():
    s = BlobSettings()
    assert s.scales == (600,) and s.max_size == 1000
    assert s.pixel_means == (102.9801, 115.9465, 122.7717)
    s.check()
    BlobSettings(scales=(1,), max_size=1).check()
    for bad in (BlobSettings(scales=()), BlobSettings(scales=(600, 0)),
                BlobSettings(scales=(-1,)), BlobSettings(max_size=0)):
        with pytest.raises(ValueError, match="must be positive"):
            bad.check()
    with pytest.raises(ValueError, match=r"pixel_means must be 3 BGR values, got \(1, 2\)"):
        BlobSettings(pixel_means=(1, 2)).check()


def test_blobs_by_hand(entry):
    # short side 20 -> 40: scale 2 (long side 60 <= 100)
    mb = get_minibatch([entry], BlobSettings(scales=(40,), max_size=100, pixel_means=(1, 1, 1)),
                       np.random.default_rng(0))
    assert mb["data"].shape == (1, 3, 40, 60) and mb["data"].dtype == np.float32
    np.testing.assert_allclose(mb["data"][0, :, 7, 9], [0, 10, 20])
    assert mb["im_info"].dtype == np.float32 and mb["im_info"].tolist() == [[40, 60, 2]]
    assert mb["gt_boxes"].dtype == np.float32
    np.testing.assert_array_equal(mb["gt_boxes"], [[2, 4, 20, 24, 2], [0, 0, 58, 38, 1]])


def test_rows_of_class_zero_are_not_gt_boxes(entry):
    e = {**entry, "gt_classes": np.array([0, 1], np.int32)}
    mb = get_minibatch([e], BlobSettings(scales=(20,), max_size=100, pixel_means=(0, 0, 0)),
                       np.random.default_rng(0))
    np.testing.assert_array_equal(mb["gt_boxes"], [[0, 0, 29, 19, 1]])


def test_the_scale_is_drawn_from_the_settings(entry):
    settings = BlobSettings(scales=(20, 40, 60), max_size=1000, pixel_means=(0, 0, 0))
    rng = np.random.default_rng(3)
    expected = [(20, 40, 60)[int(i)] for i in np.random.default_rng(3).integers(3, size=8)]
    got = [int(get_minibatch([entry], settings, rng)["im_info"][0, 0]) for _ in range(8)]
    assert got == expected and len(set(got)) > 1


def test_minibatch_errors_name_the_image(entry):
    with pytest.raises(ValueError, match=r"one image per minibatch, got 0 \(set "
                                         r"TRAIN.IMS_PER_BATCH 1\)"):
        get_minibatch([], BlobSettings(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"im.png is 30x20 but its annotation says 30x21"):
        get_minibatch([{**entry, "height": 21}], BlobSettings(), np.random.default_rng(0))


# ----------------------------------------------------------------------------- the order

def test_order_without_grouping_is_the_generators_permutation():
    widths, heights = np.array([10, 20, 10, 20, 30]), np.array([20, 10, 10, 30, 5])
    got = shuffled_order(widths, heights, np.random.default_rng(4), False)
    np.testing.assert_array_equal(got, np.random.default_rng(4).permutation(5))


def test_grouping_pairs_squares_with_landscapes():
    # 0, 2 square (W == H counts as landscape), 4, 5 landscape; 1, 3 portrait
    widths, heights = np.array([10, 10, 10, 10, 30, 40]), np.array([10, 20, 10, 30, 5, 6])
    for seed in range(10):
        order = shuffled_order(widths, heights, np.random.default_rng(seed), True)
        assert sorted(order.tolist()) == [0, 1, 2, 3, 4, 5]
        landscape = (widths >= heights)[order]
        assert np.all(landscape[0::2] == landscape[1::2])  # never a mixed pair


def test_grouping_with_odd_groups_leaves_pairs_of_one():
    # 3 landscape and 1 portrait: pairs [l, l], [l], [p] in some order
    widths, heights = np.array([30, 10, 30, 30]), np.array([10, 20, 10, 10])
    seen = set()
    for seed in range(20):
        order = shuffled_order(widths, heights, np.random.default_rng(seed), True).tolist()
        assert sorted(order) == [0, 1, 2, 3]
        where = order.index(1)
        seen.add(where)
        # the landscape pair stays together: two landscapes next to each other somewhere
        kinds = ["p" if i == 1 else "l" for i in order]
        assert "ll" in "".join(kinds)
    assert len(seen) > 1


def test_grouping_by_hand_for_a_seed():
    widths, heights = np.array([10, 10, 30, 30]), np.array([20, 20, 5, 5])
    rng = np.random.default_rng(7)
    land = rng.permutation(np.array([2, 3]))
    port = rng.permutation(np.array([0, 1]))
    pairs = [land, port]
    expected = np.concatenate([pairs[i] for i in rng.permutation(2)])
    np.testing.assert_array_equal(
        shuffled_order(widths, heights, np.random.default_rng(7), True), expected)


def test_empty_order():
    out = shuffled_order(np.zeros(0), np.zeros(0), np.random.default_rng(0), True)
    assert out.shape == (0,) and out.dtype == np.int64
    assert shuffled_order(np.zeros(0), np.zeros(0), np.random.default_rng(0), False).shape == \
        (0,)


# ----------------------------------------------------------------------------- the source

def _roidb(n):
    return [{"image": f"{i}", "width": 10 + i, "height": 10, "flipped": False}
            for i in range(n)]


def test_source_walks_epochs_and_batches_with_the_builder():
    calls = []

    def build(entries, rng):
        calls.append([e["image"] for e in entries])
        return {"n": len(entries)}

    source = MinibatchSource(_roidb(3), BlobSettings(), seed=5, aspect_grouping=False,
                             ims_per_batch=2, build=build)
    assert source.epoch == 0
    assert source.next() == {"n": 2}
    assert source.epoch == 1
    source.next()  # the third image of epoch 1, then the first of epoch 2
    assert source.epoch == 2
    rng = np.random.default_rng(5)
    first, second = rng.permutation(3), rng.permutation(3)
    flat = [str(i) for i in np.concatenate([first, second])]
    assert calls == [flat[0:2], flat[2:4]]


def test_source_index_sequence_and_the_default_builder(entry):
    source = MinibatchSource([entry], BlobSettings(scales=(20,), max_size=100), seed=0)
    assert [source.next_index() for _ in range(3)] == [0, 0, 0] and source.epoch == 3
    mb = source.next()
    assert mb["data"].shape == (1, 3, 20, 30)


def test_source_checks():
    with pytest.raises(ValueError, match="the roidb is empty"):
        MinibatchSource([], BlobSettings(), seed=0)
    with pytest.raises(ValueError, match="ims_per_batch must be >= 1, got 0"):
        MinibatchSource(_roidb(1), BlobSettings(), seed=0, ims_per_batch=0)
    with pytest.raises(ValueError, match="must be positive"):
        MinibatchSource(_roidb(1), BlobSettings(scales=()), seed=0)
    source = MinibatchSource(_roidb(2), BlobSettings(), seed=0, ims_per_batch=1)
    assert source.ims_per_batch == 1 and source.aspect_grouping is True


# ----------------------------------------------------------------------------- state

def test_state_continues_the_sequence():
    a = MinibatchSource(_roidb(3), BlobSettings(), seed=2, aspect_grouping=False,
                        build=lambda entries, rng: entries[0]["image"])
    for _ in range(4):
        a.next()
    state = a.get_state()
    assert state["cursor"] == 1 and state["epoch"] == 2 and state["roidb_size"] == 3
    assert sorted(state["order"]) == [0, 1, 2]
    b = MinibatchSource(_roidb(3), BlobSettings(), seed=99, aspect_grouping=False,
                        build=lambda entries, rng: entries[0]["image"])
    b.set_state({**state, "order": [state["order"]]})  # nested: flattened
    assert [b.next() for _ in range(7)] == [a.next() for _ in range(7)]
    assert b.epoch == a.epoch == 4


def test_state_checks():
    source = MinibatchSource(_roidb(3), BlobSettings(), seed=0)
    good = source.get_state()
    assert good["order"] == [] and good["cursor"] == 0
    source.set_state(good)
    source.set_state({**good, "order": [2, 0, 1], "cursor": 3})  # at the end: fine
    for bad in ({k: v for k, v in good.items() if k != "rng"}, {**good, "cursor": "x"},
                {**good, "order": ["a"]}, {**good, "epoch": None}):
        with pytest.raises(ValueError, match="not a minibatch source state"):
            source.set_state(bad)
    with pytest.raises(ValueError, match="the saved data state is of a roidb of 4 entries but "
                                         "this one has 3"):
        source.set_state({**good, "roidb_size": 4})
    for order, cursor in (([0, 1, 2], 4), ([0, 1, 2], -1), ([0, 1, 3], 0), ([0, -1, 2], 0),
                          ([], 1)):
        with pytest.raises(ValueError, match=rf"order or cursor \({cursor} of {len(order)}\) "
                                             r"does not fit a roidb of 3 entries"):
            source.set_state({**good, "order": order, "cursor": cursor})
