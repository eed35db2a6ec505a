"""frcnn.data.synth: option checks at each boundary, the drawing helpers by hand, the
documented properties of rendered images, and the exact files and summary written."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from frcnn.data import synth
from frcnn.data.synth import SYNTH_CLASSES, SynthOptions, annotation_xml, write_synth_dataset


# ----------------------------------------------------------------------------- options

def test_defaults():
    assert SynthOptions() == SynthOptions(num_train=300, num_test=100, height=240, width=320,
                                          min_object=24, max_object=96, max_objects=4, seed=3,
                                          jpeg_quality=92)
    assert SYNTH_CLASSES == ("circle", "square", "triangle")


@pytest.mark.parametrize("opts", [
    SynthOptions(num_train=0, num_test=1), SynthOptions(num_train=1, num_test=0),
    SynthOptions(height=32, width=40, min_object=8, max_object=28),
    SynthOptions(height=40, width=32, min_object=28, max_object=28),
    SynthOptions(max_objects=1), SynthOptions(jpeg_quality=10), SynthOptions(jpeg_quality=100),
])
def test_options_on_the_boundaries_pass(opts):
    opts.check()


@pytest.mark.parametrize("opts, message", [
    (SynthOptions(num_train=-1, num_test=5), r"need at least one image \(num_train -1"),
    (SynthOptions(num_train=5, num_test=-1), "need at least one image"),
    (SynthOptions(num_train=0, num_test=0), "need at least one image"),
    (SynthOptions(height=31, width=40, min_object=8, max_object=20),
     "image size 31x40 is below 32 pixels"),
    (SynthOptions(height=40, width=31, min_object=8, max_object=20), "40x31 is below 32"),
    (SynthOptions(min_object=7), r"8 <= min_object <= max_object, got 7..96"),
    (SynthOptions(min_object=50, max_object=49), "got 50..49"),
    (SynthOptions(height=60, width=80, max_object=57), "max_object 57 does not fit a 60x80"),
    (SynthOptions(height=80, width=60, max_object=57), "does not fit a 80x60"),
    (SynthOptions(max_objects=0), "max_objects must be >= 1, got 0"),
    (SynthOptions(jpeg_quality=9), "jpeg_quality must be in 10..100, got 9"),
    (SynthOptions(jpeg_quality=101), "got 101"),
])
def test_options_past_the_boundaries_fail(opts, message):
    with pytest.raises(ValueError, match=f"^synthetic dataset options: .*{message}"):
        opts.check()


def test_every_problem_is_named_once():
    with pytest.raises(ValueError) as info:
        SynthOptions(max_objects=0, jpeg_quality=5).check()
    assert str(info.value) == ("synthetic dataset options: max_objects must be >= 1, got 0; "
                               "jpeg_quality must be in 10..100, got 5")


# ----------------------------------------------------------------------------- helpers

def test_square_and_circle_masks_by_hand():
    rng = np.random.default_rng(0)
    # side 10 at (20, 15): r = 4.5, x1 = round(15.5) = 16, y1 = round(10.5) = 10 (to even)
    square = synth._shape_mask(rng, "square", 10, 20.0, 15.0, 40, 50)
    assert square.shape == (40, 50) and square.dtype == np.uint8
    assert synth._extent(square) == (16, 10, 25, 19)
    assert int(square.sum()) == 255 * 100
    # side 11: radius 5 around (20, 15)
    circle = synth._shape_mask(rng, "circle", 11, 20.0, 15.0, 40, 50)
    assert synth._extent(circle) == (15, 10, 25, 20)
    assert circle[15, 20] == 255 and circle[10, 15] == 0  # centre in, corner out


def test_triangles_are_inscribed_in_the_circle():
    for seed in range(20):
        mask = synth._shape_mask(np.random.default_rng(seed), "triangle", 21, 20.0, 15.0, 40, 50)
        x1, y1, x2, y2 = synth._extent(mask)
        assert 10 <= x1 and x2 <= 30 and 5 <= y1 and y2 <= 25  # radius 10
        assert x2 - x1 >= 14 and y2 - y1 >= 14                 # side r * sqrt(3) ~ 17
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        synth._shape_mask(np.random.default_rng(0), "star", 5, 5, 5, 10, 10)


def test_extent_area_and_intersection_by_hand():
    mask = np.zeros((6, 8), np.uint8)
    assert synth._extent(mask) is None
    mask[1, 2] = mask[4, 6] = 1
    assert synth._extent(mask) == (2, 1, 6, 4)
    assert synth._area((2, 1, 6, 4)) == 5 * 4
    assert synth._intersection((0, 0, 9, 9), (5, 3, 14, 20)) == 5 * 7
    assert synth._intersection((5, 3, 14, 20), (0, 0, 9, 9)) == 5 * 7
    assert synth._intersection((0, 0, 9, 9), (5, 3, 14, 8)) == 5 * 6   # b's y2 inside
    assert synth._intersection((2, 1, 9, 9), (0, 0, 20, 20)) == 8 * 9  # a inside b
    assert synth._intersection((0, 0, 9, 9), (0, 20, 9, 30)) == 0     # x overlaps, y not
    assert synth._intersection((0, 0, 9, 9), (20, 0, 30, 9)) == 0     # y overlaps, x not
    assert synth._intersection((0, 0, 9, 9), (9, 9, 12, 12)) == 1
    assert synth._intersection((0, 0, 9, 9), (10, 0, 12, 9)) == 0
    assert synth._intersection((0, 0, 9, 9), (20, 20, 30, 30)) == 0  # both sides negative


class _FixedRng:
    """uniform() always returns the same colour."""

    def __init__(self, colour):
        self.colour = np.asarray(colour, float)
        self.calls = 0

    def uniform(self, low, high, size):
        self.calls += 1
        return self.colour.copy()


def test_contrasting_colour():
    background = np.array([100.0, 120.0, 140.0])
    near = _FixedRng(background + 60)  # norm 104: not contrasting enough
    np.testing.assert_array_equal(synth._contrasting_colour(near, background),
                                  255 - background)
    assert near.calls == 50
    far = _FixedRng(background + [70, 70, 0])  # norm 99 < 110
    np.testing.assert_array_equal(synth._contrasting_colour(far, background), 255 - background)
    ok = _FixedRng(background + [80, 80, 0])  # norm 113 > 110
    np.testing.assert_array_equal(synth._contrasting_colour(ok, background),
                                  background + [80, 80, 0])
    assert ok.calls == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = synth._contrasting_colour(rng, background)
        assert np.linalg.norm(c - background) > 110 or np.array_equal(c, 255 - background)


def test_background_is_textured_and_in_range():
    for seed in range(5):
        im = synth._background(np.random.default_rng(seed), 48, 64)
        assert im.shape == (48, 64, 3) and im.dtype == np.float32
        assert im.min() >= 0 and im.max() <= 255
        assert im.std(axis=(0, 1)).min() > 1  # not flat


# ----------------------------------------------------------------------------- rendering

OPTS = SynthOptions(height=96, width=128, min_object=16, max_object=48, max_objects=3)


def test_rendered_objects_follow_the_rules():
    counts = []
    for i in range(60):
        im, objects = synth.render_image(np.random.default_rng((7, i)), OPTS)
        assert im.shape == (96, 128, 3) and im.dtype == np.uint8
        counts.append(len(objects))
        boxes = [b for _, b in objects]
        for k, (name, (x1, y1, x2, y2)) in enumerate(objects):
            assert name in SYNTH_CLASSES
            assert 0 <= x1 and 0 <= y1 and x2 <= 127 and y2 <= 95
            assert min(x2 - x1, y2 - y1) >= 6
            assert max(x2 - x1, y2 - y1) + 1 <= 48 + 1
            for b in boxes[:k]:  # an earlier shape stays mostly visible, no near-duplicate
                inter = synth._intersection((x1, y1, x2, y2), b)
                assert inter / synth._area(b) < 0.4
                assert inter / (synth._area((x1, y1, x2, y2)) + synth._area(b) - inter) < 0.3
    assert max(counts) == 3 and min(counts) == 0
    assert 1 <= counts.count(0) <= 15  # about 1 in 10


@pytest.fixture(scope="module")
def many():
    """The objects of 300 rendered images (about 1 s)."""
    return [obj for i in range(300)
            for obj in synth.render_image(np.random.default_rng((21, i)), OPTS)[1]]


def test_shapes_lie_inside_the_image_and_anywhere_in_it(many):
    boxes = np.array([b for _, b in many])
    # centres are drawn at least side / 2 + 1 from the left and top and side / 2 + 2 from
    # the right and bottom: no shape touches the border
    assert boxes[:, :2].min() >= 1
    assert boxes[:, 2].max() <= 128 - 2 and boxes[:, 3].max() <= 96 - 2
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    right, low = centres[:, 0] > 64, centres[:, 1] > 48
    for quadrant in (right & low, right & ~low, ~right & low, ~right & ~low):
        assert quadrant.sum() >= 20


def test_sides_cover_min_object_to_max_object(many):
    squares = np.array([b for kind, b in many if kind == "square"])
    sides = squares[:, 2] - squares[:, 0] + 1
    np.testing.assert_array_equal(sides, squares[:, 3] - squares[:, 1] + 1)
    assert sides.min() == 16 and sides.max() == 48  # both ends drawn
    assert {kind for kind, _ in many} == set(SYNTH_CLASSES)


def test_boxes_narrower_than_seven_pixels_are_redrawn():
    # min_object 8: triangles can come out 6 pixels across (x2 - x1 = 6), which is kept;
    # narrower ones are not
    small = SynthOptions(height=40, width=40, min_object=8, max_object=9, max_objects=4)
    spans = [min(x2 - x1, y2 - y1) for i in range(60)
             for _, (x1, y1, x2, y2) in synth.render_image(np.random.default_rng((22, i)),
                                                           small)[1]]
    assert min(spans) == 6 and spans.count(6) >= 5


def test_shapes_are_filled_in_a_contrasting_colour():
    checked = 0
    for i in range(20):
        im, objects = synth.render_image(np.random.default_rng((9, i)), OPTS)
        im = im.astype(float)
        boxes = [b for _, b in objects]
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            if any(synth._intersection((x1 - 3, y1 - 3, x2 + 3, y2 + 3), b) for j, b in
                   enumerate(boxes) if j != k):
                continue  # only shapes apart from the others
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            inside = im[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(axis=0)
            ring = np.ones(im.shape[:2], bool)
            ring[max(y1 - 1, 0):y2 + 2, max(x1 - 1, 0):x2 + 2] = False
            ring[:max(y1 - 3, 0)] = ring[y2 + 4:] = False
            ring[:, :max(x1 - 3, 0)] = ring[:, x2 + 4:] = False
            around = im[ring].mean(axis=0)
            assert np.linalg.norm(inside - around) > 50
            checked += 1
    assert checked >= 10


def _ramp(height, width):
    """A background whose mean differs over any two regions: x in channel 0, 2y in 1."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.dstack([50 + xs, 50 + 2 * ys, np.full_like(xs, 60)])


def test_the_colour_is_chosen_against_the_mean_of_the_box(monkeypatch):
    ramp = _ramp(OPTS.height, OPTS.width)
    monkeypatch.setattr(synth, "_background", lambda rng, h, w: ramp.copy())
    seen = []
    real = synth._contrasting_colour
    monkeypatch.setattr(synth, "_contrasting_colour",
                        lambda rng, background: seen.append(background.copy())
                        or real(rng, background))
    checked = 0
    for i in range(10):
        seen.clear()
        _, objects = synth.render_image(np.random.default_rng((24, i)), OPTS)
        if objects:  # the first shape is drawn on the untouched background
            x1, y1, x2, y2 = objects[0][1]
            np.testing.assert_allclose(seen[0], ramp[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3)
                                       .mean(axis=0), rtol=1e-6)
            checked += 1
    assert checked >= 5


def test_shapes_are_filled_with_their_colour_clipped_to_0_255(monkeypatch):
    import cv2

    before_blur = []
    real_blur = cv2.GaussianBlur
    monkeypatch.setattr(cv2, "GaussianBlur", lambda im, k, sigma: before_blur.append(im.copy())
                        or real_blur(im, k, sigma))
    monkeypatch.setattr(synth, "_background",
                        lambda rng, h, w: _ramp(h, w))  # >= 50 everywhere
    for colour, bound in ((np.zeros(3), 0.0), (np.full(3, 255.0), 255.0)):
        monkeypatch.setattr(synth, "_contrasting_colour", lambda rng, bg, c=colour: c.copy())
        before_blur.clear()
        extremes = []
        for i in range(8):
            _, objects = synth.render_image(np.random.default_rng((25, i)), OPTS)
            im = before_blur[-1]
            for _, (x1, y1, x2, y2) in objects:
                region = im[y1:y2 + 1, x1:x2 + 1]
                extremes.append(region.min() if bound == 0 else region.max())
                assert region.min() >= 0 and region.max() <= 255
        # the shade (sigma 10) pushes some channel of most shapes past the bound: clipped
        assert extremes.count(bound) >= 3


def test_background_lines_have_colours_clipped_to_0_255(monkeypatch):
    import cv2

    colours = []
    real_line = cv2.line
    monkeypatch.setattr(cv2, "line", lambda im, p1, p2, colour, *rest:
                        colours.append(colour) or real_line(im, p1, p2, colour, *rest))
    for i in range(300):
        synth._background(np.random.default_rng((26, i)), 32, 32)
    values = np.array([c for colour in colours for c in colour])
    assert values.min() == 0.0 and values.max() == 255.0
    assert len(colours) >= 300  # 0 .. 3 lines each, 1.5 on average


def test_rendered_images_are_noisy():
    # sigma 6 noise on every pixel: neighbours differ by about 6 * sqrt(2) * 0.8 on average
    for i in range(5):
        im, _ = synth.render_image(np.random.default_rng((23, i)), OPTS)
        assert 5 < np.abs(np.diff(im.astype(int), axis=1)).mean() < 10


def test_render_is_a_function_of_the_generator():
    a = synth.render_image(np.random.default_rng((1, 2)), OPTS)
    b = synth.render_image(np.random.default_rng((1, 2)), OPTS)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


# ----------------------------------------------------------------------------- writing

def test_annotation_xml_by_hand():
    text = annotation_xml("000007.jpg", 64, 48, [("square", (0, 1, 9, 12)),
                                                 ("circle", (10, 20, 30, 40))])
    assert text == """<annotation>
  <folder>synth</folder>
  <filename>000007.jpg</filename>
  <size>
    <width>64</width>
    <height>48</height>
    <depth>3</depth>
  </size>
  <segmented>0</segmented>
  <object>
    <name>square</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>1</xmin>
      <ymin>2</ymin>
      <xmax>10</xmax>
      <ymax>13</ymax>
    </bndbox>
  </object>
  <object>
    <name>circle</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>11</xmin>
      <ymin>21</ymin>
      <xmax>31</xmax>
      <ymax>41</ymax>
    </bndbox>
  </object>
</annotation>
"""


def test_written_files_summary_and_progress(tmp_path):
    opts = SynthOptions(num_train=3, num_test=2, height=48, width=64, min_object=12,
                        max_object=30, max_objects=2, seed=11)
    lines = []
    summary = write_synth_dataset(tmp_path / "s", opts, log=lines.append, every=2)
    root = tmp_path / "s"
    ids = ["000001", "000002", "000003", "000004", "000005"]
    assert (root / "ImageSets/Main/train.txt").read_text() == "000001\n000002\n000003\n"
    assert (root / "ImageSets/Main/trainval.txt").read_text() == "000001\n000002\n000003\n"
    assert (root / "ImageSets/Main/test.txt").read_text() == "000004\n000005\n"
    assert (root / "classes.txt").read_text() == "circle\nsquare\ntriangle\n"
    assert sorted(p.name for p in (root / "JPEGImages").iterdir()) == [f"{i}.jpg" for i in ids]
    assert [ln.split(" (")[0] for ln in lines] == ["[synth] 2/5 images", "[synth] 4/5 images",
                                                   "[synth] 5/5 images"]
    # the summary counts what the annotation files hold
    counts, empty = {c: 0 for c in SYNTH_CLASSES}, 0
    for image_id in ids:
        names = [o.find("name").text for o in
                 ET.parse(root / "Annotations" / f"{image_id}.xml").getroot().iter("object")]
        for name in names:
            counts[name] += 1
        empty += not names
    # image i is the one drawn from the generator seeded with (seed, i)
    _, objects = synth.render_image(np.random.default_rng((11, 3)), opts)
    assert (root / "Annotations" / "000004.xml").read_text() == annotation_xml(
        "000004.jpg", 64, 48, objects)
    assert {k: v for k, v in summary.items() if k != "seconds"} == {
        "images": 5, "train": 3, "test": 2, "objects": counts, "empty_images": empty}
    assert summary["seconds"] >= 0
    saved = json.loads((root / "synth.json").read_text())
    assert saved["options"] == {"num_train": 3, "num_test": 2, "height": 48, "width": 64,
                                "min_object": 12, "max_object": 30, "max_objects": 2,
                                "seed": 11, "jpeg_quality": 92}
    assert saved["objects"] == counts and saved["images"] == 5


def test_writing_into_new_nested_and_existing_folders(tmp_path):
    opts = SynthOptions(num_train=1, num_test=0, height=32, width=32, min_object=8,
                        max_object=20, max_objects=1)
    out = tmp_path / "a" / "b" / "c"
    first = write_synth_dataset(out, opts, log=None)
    again = write_synth_dataset(out, opts, log=None)  # over the first: the same files
    assert first["images"] == again["images"] == 1
    assert (out / "ImageSets" / "Main" / "train.txt").read_text() == "000001\n"


def test_bad_options_write_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_synth_dataset(tmp_path / "s", SynthOptions(max_objects=0), log=None)
    assert not (tmp_path / "s").exists()
