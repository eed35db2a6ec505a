"""Image blobs, minibatches, the minibatch source and the prefetch thread."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from frcnn.data.blobs import image_scale, im_list_to_blob, prep_im_for_blob, read_image
from frcnn.data.minibatch import BlobSettings, MinibatchSource, get_minibatch
from frcnn.data.prefetch import Prefetcher
from frcnn.data.roidb import entry_from_record, flipped_entry, training_roidb
from frcnn.data.voc import load_voc

MEANS = (102.9801, 115.9465, 122.7717)


@pytest.fixture
def marked_image(tmp_path):
    """A 60 x 80 PNG (lossless), grey with a white block at x 10..29, y 5..24 (inclusive)."""
    im = np.full((60, 80, 3), 50, np.uint8)
    im[5:25, 10:30] = 255
    path = tmp_path / "marked.png"
    cv2.imwrite(str(path), im)
    box = [10, 5, 29, 24]
    return path, im, entry_from_record({"image": str(path), "width": 80, "height": 60,
                                        "boxes": np.array([box], np.float32),
                                        "gt_classes": np.array([1], np.int32)}, 2)


def test_image_scale():
    assert image_scale(600, 800, 600, 1000) == 1.0
    assert image_scale(300, 400, 600, 1000) == 2.0
    assert image_scale(100, 500, 600, 1000) == 2.0         # the long side caps it
    assert image_scale(500, 100, 600, 1000) == 2.0         # portrait alike


def test_prep_and_blob():
    im = np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    out, scale = prep_im_for_blob(im, MEANS, 30, 1000)
    assert scale == 1.0 and out.dtype == np.float32
    np.testing.assert_allclose(out, im.astype(np.float32) - np.array(MEANS, np.float32))
    out, scale = prep_im_for_blob(im, MEANS, 60, 1000)
    assert scale == 2.0 and out.shape == (60, 80, 3)
    ref = cv2.resize(im.astype(np.float32) - np.array(MEANS, np.float32), (80, 60),
                     interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    blob = im_list_to_blob([np.ones((2, 3, 3)), np.ones((4, 1, 3))])
    assert blob.shape == (2, 3, 4, 3) and blob.dtype == np.float32
    assert blob[0, :, 2:].sum() == 0 and blob[1, :, :, 1:].sum() == 0


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found: .*nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg is an empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="junk.jpg cannot be decoded"):
        read_image(tmp_path / "junk.jpg")


def test_minibatch_blobs(marked_image):
    _, im, entry = marked_image
    settings = BlobSettings(scales=(120,), max_size=1000, pixel_means=MEANS)
    mb = get_minibatch([entry], settings, np.random.default_rng(0))
    assert mb["data"].shape == (1, 3, 120, 160) and mb["data"].dtype == np.float32
    np.testing.assert_allclose(mb["im_info"], [[120, 160, 2.0]])
    np.testing.assert_allclose(mb["gt_boxes"], [[20, 10, 58, 48, 1]])
    # the mean is subtracted: the grey area is 50 - mean per channel
    np.testing.assert_allclose(mb["data"][0, :, 100, 150], 50 - np.array(MEANS), atol=1e-3)
    # the block lies inside the scaled box
    x1, y1, x2, y2 = mb["gt_boxes"][0, :4].astype(int)
    white = mb["data"][0, 0] > 255 - MEANS[0] - 1
    ys, xs = np.nonzero(white)
    assert x1 <= xs.min() and xs.max() <= x2 and y1 <= ys.min() and ys.max() <= y2


def test_flipped_minibatch_mirrors_image_and_boxes(marked_image):
    _, im, entry = marked_image
    settings = BlobSettings(scales=(60,), max_size=1000, pixel_means=(0, 0, 0))
    mb = get_minibatch([flipped_entry(entry)], settings, np.random.default_rng(0))
    np.testing.assert_array_equal(mb["data"][0].transpose(1, 2, 0), im[:, ::-1])
    np.testing.assert_array_equal(mb["gt_boxes"], [[50, 5, 69, 24, 1]])
    ys, xs = np.nonzero(mb["data"][0, 0] == 255)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (50, 5, 69, 24)


def test_long_side_cap_and_errors(marked_image, tmp_path):
    path, _, entry = marked_image
    mb = get_minibatch([entry], BlobSettings((600,), 100), np.random.default_rng(0))
    assert mb["data"].shape == (1, 3, 75, 100) and mb["im_info"][0, 2] == 1.25
    with pytest.raises(ValueError, match="one image per minibatch"):
        get_minibatch([entry, entry], BlobSettings(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"is 80x60 but its annotation says 81x60"):
        get_minibatch([{**entry, "width": 81}], BlobSettings(), np.random.default_rng(0))
    empty = {**entry, "boxes": np.zeros((0, 4)), "gt_classes": np.zeros(0, np.int32)}
    with pytest.raises(ValueError, match="marked.png has no gt boxes"):
        get_minibatch([empty], BlobSettings(), np.random.default_rng(0))
    negative = get_minibatch([empty], BlobSettings(), np.random.default_rng(0), allow_empty=True)
    assert negative["gt_boxes"].shape == (0, 5) and negative["data"].shape[0] == 1


def test_source_epochs_and_scales(synth_dir):
    roidb = training_roidb(load_voc(synth_dir, "train"), 4, flip=True, log=None)
    settings = BlobSettings(scales=(48, 64), max_size=200, pixel_means=MEANS)
    source = MinibatchSource(roidb, settings, seed=3, aspect_grouping=True)
    seen, shorts = [], set()
    for _ in range(len(roidb)):
        seen.append(source.next_index())
    assert sorted(seen) == list(range(len(roidb)))    # an epoch visits each entry once
    assert source.epoch == 1
    source = MinibatchSource(roidb, settings, seed=3)
    again = MinibatchSource(roidb, settings, seed=3)
    for _ in range(6):
        a, b = source.next(), again.next()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        shorts.add(int(min(a["data"].shape[2:])))
        assert a["gt_boxes"].shape[0] >= 1
    assert shorts <= {48, 64} and len(shorts) == 2


def test_prefetch_gives_the_same_minibatches(synth_dir):
    roidb = training_roidb(load_voc(synth_dir, "train"), 4, flip=True, log=None)
    settings = BlobSettings(scales=(48, 64), max_size=200, pixel_means=MEANS)
    direct = MinibatchSource(roidb, settings, seed=7)
    fetched = Prefetcher(MinibatchSource(roidb, settings, seed=7).next, depth=2)
    try:
        for _ in range(5):
            a, b = direct.next(), fetched.get(timeout=30)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    finally:
        fetched.close()
    assert not fetched.alive


def test_prefetch_errors_and_shutdown():
    calls = []

    def fail():
        calls.append(1)
        raise ValueError("image x.jpg cannot be decoded")

    p = Prefetcher(fail)
    with pytest.raises(ValueError, match="x.jpg cannot be decoded"):
        p.get(timeout=10)
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match="closed"):
        p.get()

    before = threading.active_count()
    p = Prefetcher(lambda: time.sleep(0.01) or 1, depth=3)
    assert p.get(timeout=10) == 1
    del p  # dropping it stops the thread
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
