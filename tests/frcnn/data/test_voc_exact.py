"""frcnn.data.voc at its edges: class files, split lists, flags, sizes, image paths, the
border tolerance on each side, and the exact records and messages."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.data.problems import DatasetError, Problems
from frcnn.data.voc import (BACKGROUND, BORDER_TOLERANCE, VOC_CLASSES, check_class_names,
                            folder_classes, load_voc, read_annotation, read_class_file,
                            read_split)
from tests.frcnn.data.conftest import obj_xml

CLASSES = ("dog", "cat")
NAMES = (BACKGROUND, *CLASSES)


# ----------------------------------------------------------------------------- classes

def test_class_file_comments_blanks_and_background(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("__background__\n  dog  # a pet\n\n# only a comment\ncat\n")
    assert read_class_file(path) == ("dog", "cat")


def test_class_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="class list not found: .*missing.txt"):
        read_class_file(tmp_path / "missing.txt")
    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(DatasetError, match="class list .*latin.txt cannot be read"):
        read_class_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match=r"class list .*empty.txt: no class names"):
        read_class_file(empty)
    folder = tmp_path / "dir.txt"
    folder.mkdir()
    with pytest.raises(DatasetError, match="dir.txt cannot be read"):
        read_class_file(folder)


def test_check_class_names():
    assert check_class_names([" dog ", "cat"]) == ("dog", "cat")
    assert check_class_names([BACKGROUND, "dog"]) == ("dog",)
    with pytest.raises(DatasetError, match="no class names"):
        check_class_names([BACKGROUND])
    with pytest.raises(DatasetError, match="no class names"):
        check_class_names([])
    with pytest.raises(DatasetError, match=r"empty class name in \['dog', ''\]"):
        check_class_names(["dog", "  "])
    with pytest.raises(DatasetError, match="__background__ may only come first"):
        check_class_names(["dog", BACKGROUND])
    with pytest.raises(DatasetError, match=r"duplicate class names \['a', 'b'\]"):
        check_class_names(["b", "a", "b", "c", "a"])


def test_folder_classes_order_of_precedence(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>yak</name></object><object><name>cat</name></object>"
        "</annotation>")
    assert folder_classes(tmp_path) == (BACKGROUND, "cat", "yak")  # the annotations, sorted
    devkit = tmp_path / "VOCdevkit" / "VOC2007"
    devkit.mkdir(parents=True)
    assert folder_classes(devkit) == (BACKGROUND, *VOC_CLASSES)  # a PASCAL VOC devkit folder
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    (tmp_path / "classes.txt").write_text("zebra\n")
    assert folder_classes(tmp_path) == (BACKGROUND, "zebra")
    assert folder_classes(tmp_path, ["yak", "ox"]) == (BACKGROUND, "yak", "ox")
    with pytest.raises(DatasetError):
        folder_classes(tmp_path, [])


# ----------------------------------------------------------------------------- splits

def test_split_lists(tmp_path):
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("000001 1\n\n  000002  \n000003 -1\n")
    assert read_split(tmp_path, "train") == ["000001", "000002", "000003"]
    (main / "val.txt").write_text("\n  \n")
    with pytest.raises(DatasetError, match="image list .*val.txt is empty"):
        read_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"split 'test' not found: .*test.txt "
                                                r"\(splits there: train, val\)$"):
        read_split(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"split 'x' not found: .* \(is this a "
                                                r"VOC-format folder\?\)$"):
        read_split(tmp_path / "elsewhere", "x")
    for i in range(25):
        (main / f"s{i:02d}.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError) as info:
        read_split(tmp_path, "test")
    assert str(info.value).endswith("s18, s19)")  # the first 20 names only


# ----------------------------------------------------------------------------- objects

def _record(voc_folder, objects, **kwargs):
    voc_folder.add("a", objects, **kwargs)
    return read_annotation(voc_folder.root, "a", NAMES)


def test_record_fields(voc_folder):
    r = _record(voc_folder, obj_xml("cat", 3, 4, 10, 20, difficult=1, truncated=0)
                + obj_xml("dog", 1, 2, 3, 4, truncated=1), width=50, height=40)
    assert r["id"] == "a"
    assert r["image"] == str(voc_folder.root.absolute() / "JPEGImages" / "a.jpg")
    assert r["annotation"] == str(voc_folder.root.absolute() / "Annotations" / "a.xml")
    assert (r["width"], r["height"]) == (50, 40)
    np.testing.assert_array_equal(r["boxes"], [[2, 3, 9, 19], [0, 1, 2, 3]])
    assert r["gt_classes"].dtype == np.int32 and r["gt_classes"].tolist() == [2, 1]
    assert r["difficult"].tolist() == [True, False] and r["difficult"].dtype == bool
    assert r["truncated"].tolist() == [False, True] and r["truncated"].dtype == bool


@pytest.mark.parametrize("text, flag", [("1", True), ("0", False), ("1.0", True), ("2", True),
                                        ("", False), ("yes", True), ("No", False),
                                        (" 1 ", True), ("0.4", False)])
def test_flags(voc_folder, text, flag):
    obj = (f"<object><name>dog</name><difficult>{text}</difficult><bndbox><xmin>1</xmin>"
           f"<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>")
    assert _record(voc_folder, obj)["difficult"].tolist() == [flag]
    assert _record(voc_folder, obj)["truncated"].tolist() == [False]  # no <truncated>


def test_border_tolerance_on_each_side(voc_folder):
    assert BORDER_TOLERANCE == 1.0
    # 50 x 40: 0-based x in [-1, 50] and y in [-1, 40] are accepted, then clipped
    r = _record(voc_folder, obj_xml("dog", 0, 0, 51, 41) + obj_xml("dog", 0.5, 20, 51, 22)
                + obj_xml("dog", 10, 0.5, 12, 41))
    np.testing.assert_array_equal(r["boxes"], [[0, 0, 49, 39], [0, 19, 49, 21],
                                               [9, 0, 11, 39]])
    for coords in ((-0.5, 5, 10, 10), (5, -0.01, 10, 10), (5, 5, 51.5, 10), (5, 5, 10, 41.25)):
        with pytest.raises(DatasetError, match="lies outside the 50x40 image"):
            _record(voc_folder, obj_xml("dog", *coords))


def test_one_pixel_boxes_just_outside_each_edge_are_moved_onto_it(voc_folder):
    # 1-based 51 is 0-based 50 = width: one pixel past the right edge; 0 is -1: left of it
    r = _record(voc_folder, obj_xml("dog", 51, 5, 51, 6) + obj_xml("dog", 5, 41, 6, 41)
                + obj_xml("dog", 0, 0, 0, 0))
    np.testing.assert_array_equal(r["boxes"], [[49, 4, 49, 5], [4, 39, 5, 39], [0, 0, 0, 0]])


def test_inside_boxes_are_not_moved(voc_folder):
    r = _record(voc_folder, obj_xml("dog", 2, 3, 49, 39) + obj_xml("dog", 1, 1, 1, 1))
    np.testing.assert_array_equal(r["boxes"], [[1, 2, 48, 38], [0, 0, 0, 0]])


@pytest.mark.parametrize("coords, message", [
    ((5, 5, 4.9, 10), r"x2 < x1 or y2 < y1 \(xmin 5, ymin 5, xmax 4.9, ymax 10\)"),
    ((5, 5, 10, 4), r"x2 < x1 or y2 < y1"),
    (("nan", 5, 10, 10), r"coordinates \[nan, 5.0, 10.0, 10.0\] are not finite"),
    ((1, 1, 5, "inf"), "are not finite"),
    ((1, 1, 5, ""), r"<ymax> is None, not a number"),
])
def test_bad_coordinates(voc_folder, coords, message):
    with pytest.raises(DatasetError, match=message) as info:
        _record(voc_folder, obj_xml("dog", *coords))
    assert "a.xml: object 0 ('dog')" in str(info.value)


def test_the_background_is_no_class_of_an_object(voc_folder):
    with pytest.raises(DatasetError, match=r"object 0 \('__background__'\): unknown class "
                                           r"'__background__' \(classes: dog, cat\)"):
        _record(voc_folder, obj_xml(BACKGROUND, 1, 1, 5, 5))


def test_an_object_without_a_name_is_described_without_one(voc_folder):
    with pytest.raises(DatasetError, match=r"a.xml: object 0: has no <name>"):
        _record(voc_folder, "<object><name> </name><bndbox/></object>")


# ----------------------------------------------------------------------------- images

def test_sizes_from_the_image_when_the_xml_size_is_unusable(voc_folder):
    for size in ("<size><width>0</width><height>40</height></size>",
                 "<size><width>abc</width><height>40</height></size>",
                 "<size><height>40</height></size>", ""):
        voc_folder.add("a", width=33, height=21, write_size=False,
                       xml=f"<annotation>{size}</annotation>")
        r = read_annotation(voc_folder.root, "a", NAMES)
        assert (r["width"], r["height"]) == (33, 21)
    voc_folder.add("a", width=33, height=21, write_size=False,
                   xml="<annotation><size><width>64.0</width><height> 48 </height></size>"
                       "</annotation>")
    r = read_annotation(voc_folder.root, "a", NAMES)
    assert (r["width"], r["height"]) == (64, 48)


def test_image_found_by_its_filename_or_named_in_the_error(voc_folder):
    voc_folder.add("a", image=False, xml="<annotation><filename>x.png</filename></annotation>")
    with pytest.raises(FileNotFoundError, match=r"image of a not found: .*JPEGImages/a.jpg or "
                                                r".*JPEGImages/x.png$"):
        read_annotation(voc_folder.root, "a", NAMES)
    voc_folder.add("b", image=False, xml="<annotation></annotation>")
    with pytest.raises(FileNotFoundError, match=r"image of b not found: .*JPEGImages/b.jpg$"):
        read_annotation(voc_folder.root, "b", NAMES)


def test_undecodable_image_without_size(voc_folder):
    voc_folder.add("a", write_size=False)
    (voc_folder.root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="a.jpg cannot be decoded"):
        read_annotation(voc_folder.root, "a", NAMES)
    assert read_annotation(voc_folder.root, "a", NAMES, Problems(skip=True, out=None)) is None


def test_unreadable_annotation(voc_folder):
    voc_folder.add("a")
    xml = voc_folder.root / "Annotations" / "a.xml"
    xml.unlink()
    xml.mkdir()  # a folder where the file should be
    with pytest.raises(FileNotFoundError, match="annotation of image a not found"):
        read_annotation(voc_folder.root, "a", NAMES)


# ----------------------------------------------------------------------------- load_voc

def test_load_voc_relative_root_and_quiet_log(voc_folder, monkeypatch):
    voc_folder.add("a", obj_xml("dog", 1, 1, 5, 5))
    monkeypatch.chdir(voc_folder.root.parent)
    lines = []
    records = load_voc(voc_folder.root.name, "trainval", CLASSES, log=lines.append)
    assert [r["id"] for r in records] == ["a"] and lines == []
    assert records[0]["image"].startswith(str(voc_folder.root.absolute()))
    assert load_voc(voc_folder.root.name, "trainval", [BACKGROUND, *CLASSES],
                    log=None)[0]["gt_classes"].tolist() == [1]


def test_load_voc_with_nothing_usable(voc_folder, capsys):
    voc_folder.add("a", image=False)
    with pytest.raises(DatasetError, match=r"no usable images in .* split 'trainval'"):
        load_voc(voc_folder.root, "trainval", CLASSES, skip_bad=True, log=None)
    with pytest.raises(FileNotFoundError, match="image of a not found"):
        load_voc(voc_folder.root, "trainval", CLASSES)
