"""The VOC-format reader and the dataset registry, on a synthetic folder and hand-written
annotations."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from frcnn.data.datasets import get_dataset, list_datasets, parse_classes
from frcnn.data.problems import DatasetError
from frcnn.data.synth import SYNTH_CLASSES
from frcnn.data.voc import (BACKGROUND, VOC_CLASSES, folder_classes, load_voc,
                            read_class_file)
from tests.frcnn.data.conftest import TINY, obj_xml

CLASSES = ("dog", "cat")


# ----------------------------------------------------------------------------- synthetic

def test_reads_the_synthetic_folder(synth_dir):
    records = load_voc(synth_dir, "train")
    assert len(records) == TINY.num_train
    assert folder_classes(synth_dir) == (BACKGROUND, *SYNTH_CLASSES)
    for r in records:
        assert (r["width"], r["height"]) == (TINY.width, TINY.height)
        assert r["boxes"].dtype == np.float32 and r["gt_classes"].dtype == np.int32
        assert r["boxes"].shape == (len(r["gt_classes"]), 4)
        b = r["boxes"]
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= TINY.width - 1)
        assert np.all(b[:, 1] >= 0) and np.all(b[:, 3] <= TINY.height - 1)
        assert np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
        assert set(r["gt_classes"].tolist()) <= {1, 2, 3}
        assert not r["difficult"].any()
        # the XML's 1-based corners are the record's plus one
        objs = ET.parse(r["annotation"]).getroot().findall("object")
        xml_boxes = [[float(o.find("bndbox").find(t).text) for t in
                      ("xmin", "ymin", "xmax", "ymax")] for o in objs]
        np.testing.assert_array_equal(np.array(xml_boxes).reshape(-1, 4) - 1, b)
    assert len(load_voc(synth_dir, "test")) == TINY.num_test


# ----------------------------------------------------------------------------- edge cases

def test_difficult_truncated_border_and_one_pixel_boxes(voc_folder):
    voc_folder.add("a", obj_xml("dog", 1, 1, 50, 40, truncated=1)      # the whole image
                   + obj_xml("cat", 5, 7, 5, 7, difficult=1)            # one pixel
                   + obj_xml("dog", 10.5, 3, 20.5, 9))                  # sub-pixel coords
    voc_folder.add("b")                                                 # no objects
    a, b = load_voc(voc_folder.root, "trainval", CLASSES)
    np.testing.assert_array_equal(a["boxes"], [[0, 0, 49, 39], [4, 6, 4, 6],
                                               [9.5, 2, 19.5, 8]])
    assert a["boxes"].dtype == np.float32
    assert a["gt_classes"].tolist() == [1, 2, 1]
    assert a["difficult"].tolist() == [False, True, False]
    assert a["truncated"].tolist() == [True, False, False]
    assert b["boxes"].shape == (0, 4) and b["gt_classes"].shape == (0,)


def test_flags_in_words_read_as_meant(voc_folder):
    voc_folder.add("a", obj_xml("dog", 1, 1, 9, 9, difficult="Yes", truncated="true")
                   + obj_xml("cat", 1, 1, 9, 9, difficult="no", truncated="False")
                   + obj_xml("cat", 1, 1, 9, 9, difficult="1.0", truncated=" ")
                   + "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                     "<xmax>9</xmax><ymax>9</ymax></bndbox></object>")   # no flags at all
    (a,) = load_voc(voc_folder.root, "trainval", CLASSES)
    assert a["difficult"].tolist() == [True, False, True, False]
    assert a["truncated"].tolist() == [True, False, False, False]


def test_box_off_the_border_by_rounding_is_clipped(voc_folder):
    voc_folder.add("a", obj_xml("dog", 0, 0, 51, 41))  # one pixel past each side
    (a,) = load_voc(voc_folder.root, "trainval", CLASSES)
    np.testing.assert_array_equal(a["boxes"], [[0, 0, 49, 39]])


def test_size_read_from_the_image_when_the_xml_has_none(voc_folder):
    voc_folder.add("a", obj_xml("dog", 2, 2, 30, 20), width=60, height=30, write_size=False)
    (a,) = load_voc(voc_folder.root, "trainval", CLASSES)
    assert (a["width"], a["height"]) == (60, 30)


@pytest.mark.parametrize("objects, message", [
    (obj_xml("dog", 20, 5, 10, 9), "x2 < x1"),
    (obj_xml("dog", 5, 9, 10, 5), "y2 < y1"),
    (obj_xml("horse", 1, 1, 5, 5), "unknown class 'horse'"),
    (obj_xml("dog", 1, 1, 55, 20), "outside the 50x40 image"),
    (obj_xml("dog", -3, 1, 10, 20), "outside the 50x40 image"),
    (obj_xml("dog", "abc", 1, 10, 20), "<xmin> is 'abc'"),
    (obj_xml("dog", 1, 1, 10, 20, difficult="maybe"), "<difficult> is 'maybe', not 0 or 1"),
    (obj_xml("dog", 1, 1, 10, 20, truncated="nan"), "<truncated> is 'nan'"),
    ("<object><name>dog</name></object>", "has no <bndbox>"),
    ("<object><bndbox/></object>", "has no <name>"),
])
def test_bad_objects_name_the_file_and_object(voc_folder, objects, message):
    voc_folder.add("ok", obj_xml("cat", 1, 1, 5, 5))
    path = voc_folder.add("bad", obj_xml("cat", 1, 1, 5, 5) + objects)
    with pytest.raises(DatasetError, match=message) as info:
        load_voc(voc_folder.root, "trainval", CLASSES)
    assert str(path) in str(info.value) and "object 1" in str(info.value)


def test_skip_mode_drops_bad_objects_and_images_with_a_count(voc_folder, capsys):
    voc_folder.add("a", obj_xml("cat", 1, 1, 5, 5) + obj_xml("horse", 1, 1, 5, 5)
                   + obj_xml("dog", 30, 1, 5, 5))
    voc_folder.add("b", obj_xml("dog", 1, 1, 5, 5), image=False)       # image missing
    voc_folder.add("c", xml="<annotation><object>")                     # malformed XML
    lines = []
    records = load_voc(voc_folder.root, "trainval", CLASSES, skip_bad=True, log=lines.append)
    assert [r["id"] for r in records] == ["a"]
    assert records[0]["gt_classes"].tolist() == [2]
    assert lines == [f"[data] {voc_folder.root} trainval: skipped 2 image(s) and 2 object(s) "
                     f"with problems"]
    err = capsys.readouterr().err
    assert err.count("[data] warning: skipping") == 4 and "unknown class 'horse'" in err


@pytest.mark.parametrize("case", ["no_image", "empty_image", "no_annotation", "bad_xml"])
def test_bad_files_are_clear_errors(voc_folder, case):
    path = voc_folder.add("a", obj_xml("dog", 1, 1, 5, 5))
    image = voc_folder.root / "JPEGImages" / "a.jpg"
    error, what = {"no_image": (FileNotFoundError, "image of a not found"),
                   "empty_image": (DatasetError, "is an empty file"),
                   "no_annotation": (FileNotFoundError, "annotation of image a not found"),
                   "bad_xml": (DatasetError, "not valid XML")}[case]
    if case == "no_image":
        image.unlink()
    elif case == "empty_image":
        image.write_bytes(b"")
    elif case == "no_annotation":
        path.unlink()
    else:
        path.write_text("<annotation><size>")
    with pytest.raises(error, match=what):
        load_voc(voc_folder.root, "trainval", CLASSES)


def test_missing_split_and_folder(voc_folder, tmp_path):
    voc_folder.add("a")
    with pytest.raises(FileNotFoundError, match=r"split 'test'.*splits there: trainval"):
        load_voc(voc_folder.root, "test", CLASSES)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load_voc(tmp_path / "nowhere", "trainval")


def test_image_named_by_the_xml_filename(voc_folder):
    import shutil

    voc_folder.add("a", obj_xml("dog", 1, 1, 5, 5))
    shutil.move(voc_folder.root / "JPEGImages" / "a.jpg", voc_folder.root / "JPEGImages" / "x.png")
    xml = voc_folder.root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("a.jpg", "x.png"))
    (a,) = load_voc(voc_folder.root, "trainval", CLASSES)
    assert a["image"].endswith("x.png")


# ----------------------------------------------------------------------------- classes

def test_class_lists(voc_folder, tmp_path):
    voc_folder.add("a", obj_xml("dog", 1, 1, 5, 5))
    assert folder_classes(voc_folder.root) == (BACKGROUND, "dog")  # no classes.txt: its names
    assert len(VOC_CLASSES) == 20
    (voc_folder.root / "classes.txt").write_text("# mine\n__background__\nzebra\n\nyak\n")
    assert folder_classes(voc_folder.root) == (BACKGROUND, "zebra", "yak")
    assert folder_classes(voc_folder.root, ["cat"]) == (BACKGROUND, "cat")
    bad = tmp_path / "dupes.txt"
    bad.write_text("cat\ncat\n")
    with pytest.raises(DatasetError, match=r"dupes.txt: duplicate class names \['cat'\]"):
        read_class_file(bad)
    assert parse_classes("a, b") == ("a", "b")
    assert parse_classes(str(voc_folder.root / "classes.txt")) == ("zebra", "yak")
    assert parse_classes("") is None


# ----------------------------------------------------------------------------- registry

def test_named_and_path_datasets(synth_dir, tmp_path, monkeypatch):
    assert {"synth_train", "synth_test", "voc_2007_trainval", "voc_2012_val"} <= set(
        list_datasets())
    d = get_dataset("synth_train", root=str(synth_dir))
    assert (d.root, d.split, d.num_classes) == (synth_dir, "train", 4)
    assert len(d.load()) == TINY.num_train
    # relative roots are taken from the current directory
    monkeypatch.chdir(synth_dir.parent)
    assert get_dataset("synth_test", root=synth_dir.name).root == synth_dir
    p = get_dataset(str(synth_dir))
    assert (p.split, p.classes) == ("trainval", (BACKGROUND, *SYNTH_CLASSES))
    assert get_dataset(str(synth_dir), split="test").split == "test"
    assert get_dataset(str(synth_dir), classes=["a"]).num_classes == 2
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        get_dataset("nope")
    with pytest.raises(ValueError, match="only for a dataset given by path"):
        get_dataset("synth_train", root=str(synth_dir), split="test")


def test_voc_names_accept_devkit_or_year_folder(voc_folder, tmp_path):
    voc_folder.add("a", obj_xml("dog", 1, 1, 5, 5))
    devkit = tmp_path / "devkit"
    devkit.mkdir()
    (devkit / "VOC2007").symlink_to(voc_folder.root)
    for root in (devkit, voc_folder.root):
        d = get_dataset("voc_2007_trainval", root=str(root))
        assert d.num_classes == 21 and d.split == "trainval"
        assert [r["id"] for r in d.load()] == ["a"]
    with pytest.raises(FileNotFoundError, match="no VOC2012 folder under"):
        get_dataset("voc_2012_train", root=str(tmp_path))
