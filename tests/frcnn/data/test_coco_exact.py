"""frcnn.data.coco at its edges: file and category checks, each image and annotation check
with its message, the border tolerance, areas, crowd flags and ids, and the exact files the
writers produce."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from frcnn.data import coco
from frcnn.data.problems import DatasetError
from tests.frcnn.data.test_coco import _image, coco_file

CATS = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]


def _load(tmp_path, annotations, images=None, **kwargs):
    path = coco_file(tmp_path, images=images, annotations=annotations, categories=CATS)
    return coco.load_coco(path, log=None, **kwargs)


# ----------------------------------------------------------------------------- names

def test_paths_and_split_names(tmp_path):
    assert coco.is_coco_path("a/b/X.JSON") and coco.is_coco_path(Path("x.json"))
    assert not coco.is_coco_path("x.json.bak") and not coco.is_coco_path("voc")
    assert coco.split_name("a/instances_val.json") == "val"
    assert coco.split_name("instances_.json") == "instances_"
    assert coco.split_name("gt.json") == "gt"
    ann = tmp_path / "annotations"
    ann.mkdir()
    assert coco.default_images_dir(ann / "instances_train.json") == tmp_path
    (tmp_path / "train").mkdir()
    assert coco.default_images_dir(ann / "instances_train.json") == tmp_path / "train"
    assert coco.default_images_dir(tmp_path / "train" / "instances_train.json") == \
        tmp_path / "train"


# ----------------------------------------------------------------------------- the file

def test_file_checks(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found: .*x.json"):
        coco.read_coco_file(path)
    for text, message in (("[]", "expected a JSON object with images, annotations"),
                          ('{"categories": []}', "no 'images' list"),
                          ('{"images": [], "categories": {}}', "no 'categories' list"),
                          ('{"images": [], "categories": [], "annotations": {}}',
                           "'annotations' is not a list")):
        path.write_text(text)
        with pytest.raises(DatasetError, match=f"x.json: {message}"):
            coco.read_coco_file(path)
    path.write_bytes(b'{"images": "\xff"}')
    with pytest.raises(DatasetError, match="x.json: not a readable JSON file"):
        coco.read_coco_file(path)
    path.write_text('{"images": [], "categories": []}')
    assert coco.read_coco_file(path)["annotations"] == []


def test_categories_sorted_by_id(tmp_path):
    data = {"categories": [{"id": 9, "name": " b "}, {"id": 2, "name": "a"},
                           {"id": 5, "name": "c"}]}
    assert coco.coco_categories(data, "f") == (("__background__", "a", "c", "b"), (2, 5, 9))


@pytest.mark.parametrize("cat", [{"id": "1", "name": "a"}, {"id": True, "name": "a"},
                                 {"id": 1, "name": "  "}, {"id": 1}, {"name": "a"}, "cat",
                                 {"id": 1.0, "name": "a"}])
def test_bad_category_entries(cat):
    with pytest.raises(DatasetError, match=r"^f: category entry 1 .* needs an integer 'id' "
                                           r"and a 'name'"):
        coco.coco_categories({"categories": [{"id": 4, "name": "ok"}, cat]}, "f")


def test_duplicate_category_ids_and_names():
    with pytest.raises(DatasetError, match=r"^f: duplicate category ids \[2, 4\]$"):
        coco.coco_categories({"categories": [{"id": i, "name": f"n{k}"} for k, i in
                                             enumerate([4, 2, 4, 1, 2])]}, "f")
    with pytest.raises(DatasetError, match=r"^f: categories: duplicate class names \['a'\]"):
        coco.coco_categories({"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]},
                             "f")


# ----------------------------------------------------------------------------- images

@pytest.mark.parametrize("entry, message", [
    ({"id": "1", "file_name": "a.jpg", "width": 60, "height": 40},
     r"image 1: needs an integer 'id'"),
    ({"id": False, "file_name": "a.jpg", "width": 60, "height": 40},
     r"image False: needs an integer 'id'"),
    ({"file_name": "a.jpg", "width": 60, "height": 40}, r"image entry 1: needs an integer"),
    ("a.jpg", r"image entry 1: needs an integer 'id'"),
    ({"id": 2, "width": 60, "height": 40}, r"image 2: needs 'file_name' and positive"),
    ({"id": 2, "file_name": "a.jpg", "width": 0, "height": 40}, r"got 'a.jpg' 0x40"),
    ({"id": 2, "file_name": "a.jpg", "width": 60, "height": -4}, r"got 'a.jpg' 60x-4"),
    ({"id": 2, "file_name": "a.jpg", "width": "60", "height": 40}, r"got 'a.jpg' '60'x40"),
    ({"id": 2, "file_name": "a.jpg", "width": 60, "height": True}, r"got 'a.jpg' 60xTrue"),
    ({"id": 2, "file_name": "a.jpg", "width": 60}, r"got 'a.jpg' 60xNone"),
])
def test_bad_image_entries(tmp_path, entry, message):
    images = [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40}, entry]
    path = coco_file(tmp_path, images=images[:1], annotations=[], categories=CATS)
    data = json.loads(path.read_text())
    data["images"] = images
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"instances_train.json: .*{message}"):
        coco.load_coco(path, log=None)
    assert [r["id"] for r in coco.load_coco(path, skip_bad=True, log=None)] == ["1"]


def test_empty_image_file_and_subfolders(tmp_path):
    _image(tmp_path / "train" / "sub", "c.jpg")
    images = [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40},
              {"id": 3, "file_name": "sub/c.jpg", "width": 60, "height": 40}]
    records = _load(tmp_path, [], images=images)
    assert records[1]["image"] == str(tmp_path / "train" / "sub" / "c.jpg")
    (tmp_path / "train" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"image 1: image .*a.jpg is an empty file"):
        _load(tmp_path, [], images=images)


def test_width_and_height_from_floats(tmp_path):
    _image(tmp_path / "train", "a.jpg")
    images = [{"id": 1, "file_name": "a.jpg", "width": 60.0, "height": 40.9}]
    (r,) = _load(tmp_path, [], images=images)
    assert (r["width"], r["height"]) == (60, 40) and isinstance(r["width"], int)


# ----------------------------------------------------------------------------- annotations

def _one(tmp_path, **ann):
    ann = {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], **ann}
    (a, _) = _load(tmp_path, [ann])
    return a


def test_box_corners_areas_and_crowd(tmp_path):
    a = _one(tmp_path, bbox=[2.5, 3, 10, 4.5], area=7.25, iscrowd=1)
    np.testing.assert_array_equal(a["boxes"], [[2.5, 3, 11.5, 6.5]])
    assert a["areas"].tolist() == [7.25] and a["areas"].dtype == np.float32
    assert a["crowd"].tolist() == [True] and a["difficult"].tolist() == [True]
    assert a["truncated"].tolist() == [False]
    b = _one(tmp_path, bbox=[2, 3, 10, 4], area=0)       # area 0: w * h
    assert b["areas"].tolist() == [40.0] and b["crowd"].tolist() == [False]
    c = _one(tmp_path, bbox=[2, 3, 10, 4])               # no area: w * h
    assert c["areas"].tolist() == [40.0]


@pytest.mark.parametrize("area", ["big", [1], True])
def test_an_area_that_is_no_float32_number_is_refused(tmp_path, area):
    with pytest.raises(DatasetError, match=r"annotation 1 \(image 1\): area .* is not a"):
        _one(tmp_path, area=area)


def test_boxes_narrower_than_a_pixel_become_one_pixel(tmp_path):
    a = _one(tmp_path, bbox=[4, 6, 0.5, 0.25])
    np.testing.assert_array_equal(a["boxes"], [[4, 6, 4, 6]])


def test_border_tolerance_on_each_side(tmp_path):
    # image 60 x 40: x1, y1 >= -1 and x2 <= 60, y2 <= 40 are accepted and clipped
    a = _one(tmp_path, bbox=[-1, -1, 62, 42])
    np.testing.assert_array_equal(a["boxes"], [[0, 0, 59, 39]])
    inside = _one(tmp_path, bbox=[3, 4, 50, 30])
    np.testing.assert_array_equal(inside["boxes"], [[3, 4, 52, 33]])
    for bbox in ([-1.5, 0, 5, 5], [0, -1.01, 5, 5], [50, 0, 11.5, 5], [0, 30, 5, 11.25]):
        with pytest.raises(DatasetError, match=r"annotation 1 \(image 1\): bbox .* lies "
                                               r"outside the 60x40 image"):
            _one(tmp_path, bbox=bbox)


def test_one_pixel_boxes_just_outside_each_edge_are_moved_onto_it(tmp_path):
    # x = 60 is one pixel right of the 60-wide image, y = -1 one above it
    np.testing.assert_array_equal(_one(tmp_path, bbox=[60, 3, 1, 2])["boxes"], [[59, 3, 59, 4]])
    np.testing.assert_array_equal(_one(tmp_path, bbox=[3, 40, 2, 1])["boxes"], [[3, 39, 4, 39]])
    np.testing.assert_array_equal(_one(tmp_path, bbox=[-1, -1, 1, 1])["boxes"], [[0, 0, 0, 0]])


def test_annotation_ids_of_64_bits(tmp_path):
    for ann_id in (1000, 2 ** 40, 2 ** 63 - 1, -2 ** 63):
        assert _one(tmp_path, id=ann_id)["ann_ids"].tolist() == [ann_id]
    for ann_id in (2 ** 63, -2 ** 63 - 1):
        with pytest.raises(DatasetError, match=rf"annotation {ann_id}: the id is not a 64-bit "
                                               r"integer"):
            _one(tmp_path, id=ann_id)


@pytest.mark.parametrize("bbox", [[1, 1, 5], [1, 1, 5, 5, 5], "1 1 5 5", None,
                                  [1, "1", 5, 5], [1, 1, True, 5], [1, float("nan"), 5, 5]])
def test_bad_bbox(tmp_path, bbox):
    with pytest.raises(DatasetError, match=r"annotation 1 \(image 1\): bbox .* is not "
                                           r"\[x, y, w, h\] numbers"):
        _one(tmp_path, bbox=bbox)


@pytest.mark.parametrize("w, h", [(0, 5), (5, 0), (-1, 5), (5, -0.5)])
def test_zero_or_negative_sizes(tmp_path, w, h):
    with pytest.raises(DatasetError, match="w or h <= 0"):
        _one(tmp_path, bbox=[1, 1, w, h])


def test_annotation_that_is_not_an_object_and_missing_ids(tmp_path):
    path = coco_file(tmp_path, annotations=[7], categories=CATS)
    with pytest.raises(DatasetError, match=r"annotation entry 0: not an object"):
        coco.load_coco(path, log=None)
    anns = [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 3, "bbox": [2, 2, 5, 5]}]
    (a, _) = _load(tmp_path, anns)
    assert a["ann_ids"].tolist() == [-1, -1] and a["ann_ids"].dtype == np.int64
    assert a["gt_classes"].tolist() == [2, 1] and a["gt_classes"].dtype == np.int32
    with pytest.raises(DatasetError, match=r"annotation entry 0: unknown image_id None"):
        _load(tmp_path, [{"category_id": 3, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetError, match=r"annotation 4 \(image 1\): unknown category_id "
                                           r"None \(categories: \[3, 7\]\)"):
        _load(tmp_path, [{"id": 4, "image_id": 1, "bbox": [1, 1, 5, 5]}])


def test_annotations_of_a_skipped_image_are_dropped_without_a_count(tmp_path, capsys):
    images = [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40},
              {"id": 2, "file_name": "b.jpg", "width": 60, "height": 40}]
    anns = [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}]
    path = coco_file(tmp_path, images=images, annotations=anns, categories=CATS)
    (tmp_path / "train" / "b.jpg").unlink()
    lines = []
    records = coco.load_coco(path, skip_bad=True, log=lines.append)
    assert [r["id"] for r in records] == ["1"] and records[0]["ann_ids"].tolist() == [2]
    assert lines == [f"[data] {path}: skipped 1 image(s) and 0 object(s) with problems"]
    assert capsys.readouterr().err.count("warning") == 1


def test_images_folder_argument_and_no_usable_image(tmp_path, monkeypatch):
    path = coco_file(tmp_path, annotations=[], categories=CATS)
    monkeypatch.chdir(tmp_path)
    records = coco.load_coco(path, images="train", log=None)
    assert records[0]["image"] == str(tmp_path / "train" / "a.jpg")
    assert records[0]["annotation"] == str(path)
    with pytest.raises(FileNotFoundError, match=r"image folder of .* not found: .*nope "
                                                r"\(give --images\)"):
        coco.load_coco(path, images="nope")
    only_bad = coco_file(tmp_path, images=[{"id": 1, "file_name": "zz.jpg", "width": 60,
                                            "height": 40}], annotations=[], categories=CATS,
                         split="other")
    (tmp_path / "other" / "zz.jpg").unlink()
    with pytest.raises(DatasetError, match="no usable images in .*instances_other.json"):
        coco.load_coco(only_bad, skip_bad=True, log=None)
    assert len(coco.load_coco(path, log=None)) == 2  # quiet without problems


# ----------------------------------------------------------------------------- writing

def _records(tmp_path):
    _image(tmp_path / "imgs", "000005.jpg")
    _image(tmp_path / "imgs", "000012.jpg")
    return [{"id": "000005", "image": str(tmp_path / "imgs" / "000005.jpg"), "width": 60,
             "height": 40, "boxes": np.array([[0, 0, 9, 4], [10.5, 2, 20, 30]], np.float32),
             "gt_classes": np.array([2, 1]), "difficult": np.array([False, True])},
            {"id": "000012", "image": str(tmp_path / "imgs" / "000012.jpg"), "width": 60,
             "height": 40, "boxes": np.zeros((0, 4), np.float32),
             "gt_classes": np.zeros(0, int)}]


def test_coco_box():
    assert coco.coco_box([2, 3, 11, 5, 0.9]) == [2.0, 3.0, 10.0, 3.0]
    assert coco.coco_box(np.array([1.5, 0, 1.5, 0])) == [1.5, 0.0, 1.0, 1.0]


def test_records_to_coco_by_hand(tmp_path):
    records = _records(tmp_path)
    data = coco.records_to_coco(records, ("__background__", "cat", "dog"), tmp_path)
    assert data["images"] == [
        {"id": 5, "file_name": "imgs/000005.jpg", "width": 60, "height": 40},
        {"id": 12, "file_name": "imgs/000012.jpg", "width": 60, "height": 40}]
    assert data["annotations"] == [
        {"id": 1, "image_id": 5, "category_id": 2, "bbox": [0.0, 0.0, 10.0, 5.0],
         "area": 50.0, "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 1, "bbox": [10.5, 2.0, 10.5, 29.0],
         "area": 10.5 * 29.0, "iscrowd": 1}]
    assert data["categories"] == [{"id": 1, "name": "cat", "supercategory": "none"},
                                  {"id": 2, "name": "dog", "supercategory": "none"}]
    elsewhere = coco.records_to_coco(records, ("cat", "dog"), tmp_path / "other", (30, 40))
    assert elsewhere["images"][0]["file_name"] == str(tmp_path / "imgs" / "000005.jpg")
    assert [a["category_id"] for a in elsewhere["annotations"]] == [40, 30]
    assert [c["id"] for c in elsewhere["categories"]] == [30, 40]
    with pytest.raises(ValueError, match="2 classes but 1 category ids"):
        coco.records_to_coco(records, ("cat", "dog"), tmp_path, (30,))


def test_image_ids_and_crowd_sources(tmp_path):
    records = _records(tmp_path)
    ids = lambda rs: [im["id"] for im in coco.records_to_coco(  # noqa: E731
        rs, ("cat", "dog"), tmp_path)["images"]]
    assert ids(records) == [5, 12]
    assert ids([{**records[0], "id": "a"}, records[1]]) == [1, 2]
    assert ids([{**records[0], "id": "012"}, records[1]]) == [1, 2]   # both are 12
    assert ids([{**r, "coco_id": 40 + i} for i, r in enumerate(records)]) == [40, 41]
    assert ids([{**records[0], "coco_id": 40}, records[1]]) == [5, 12]  # not all have one
    crowd = {**records[0], "crowd": np.array([True, False])}
    anns = coco.records_to_coco([crowd], ("cat", "dog"), tmp_path)["annotations"]
    assert [a["iscrowd"] for a in anns] == [1, 0]
    plain = {k: v for k, v in records[0].items() if k != "difficult"}
    anns = coco.records_to_coco([plain], ("cat", "dog"), tmp_path)["annotations"]
    assert [a["iscrowd"] for a in anns] == [0, 0]


def test_write_coco_and_read_it_back(tmp_path):
    records = _records(tmp_path)
    path = coco.write_coco(records, ("__background__", "cat", "dog"),
                           tmp_path / "annotations" / "instances_imgs.json")
    assert path == tmp_path / "annotations" / "instances_imgs.json"
    assert path.read_text().endswith("}\n")
    data = json.loads(path.read_text())
    assert data["images"][0]["file_name"] == "000005.jpg"  # relative to ROOT/imgs
    back = coco.load_coco(path, log=None)
    np.testing.assert_array_equal(back[0]["boxes"], records[0]["boxes"])
    assert back[0]["gt_classes"].tolist() == [2, 1]
    assert back[0]["crowd"].tolist() == [False, True]


def test_write_voc_by_hand(tmp_path):
    records = _records(tmp_path)
    dest = coco.write_voc(records, ("__background__", "cat", "dog"), tmp_path / "voc", "val")
    assert dest == tmp_path / "voc"
    assert (dest / "ImageSets" / "Main" / "val.txt").read_text() == "000005\n000012\n"
    assert (dest / "classes.txt").read_text() == "cat\ndog\n"
    assert (dest / "JPEGImages" / "000012.jpg").read_bytes() == \
        (tmp_path / "imgs" / "000012.jpg").read_bytes()
    root = ET.parse(dest / "Annotations" / "000005.xml").getroot()
    assert root.find("filename").text == "000005.jpg"
    assert [root.find(f"size/{t}").text for t in ("width", "height", "depth")] == \
        ["60", "40", "3"]
    objs = root.findall("object")
    assert [o.find("name").text for o in objs] == ["dog", "cat"]
    assert [o.find("difficult").text for o in objs] == ["0", "1"]
    assert [o.find("truncated").text for o in objs] == ["0", "0"]
    assert [[o.find(f"bndbox/{t}").text for t in ("xmin", "ymin", "xmax", "ymax")]
            for o in objs] == [["1", "1", "10", "5"], ["11.5", "3", "21", "31"]]
    empty = ET.parse(dest / "Annotations" / "000012.xml").getroot()
    assert empty.findall("object") == []
    # writing into the folder the images already are in: no copy onto themselves
    again = coco.write_voc([{**records[0], "image": str(dest / "JPEGImages" / "000005.jpg")}],
                           ("__background__", "cat", "dog"), dest, "one")
    assert (again / "ImageSets" / "Main" / "one.txt").read_text() == "000005\n"


def test_write_voc_refuses_two_images_of_one_stem(tmp_path):
    records = _records(tmp_path)
    _image(tmp_path / "more", "000005.jpg")
    twin = {**records[1], "image": str(tmp_path / "more" / "000005.jpg")}
    with pytest.raises(DatasetError, match="two images named 000005 .*: VOC ids are file "
                                           "stems"):
        coco.write_voc([records[0], twin], ("__background__", "cat", "dog"), tmp_path / "v",
                       "x")
