"""Fuzz: VOC-format folders (frcnn.data.voc.load_voc): annotation XML, split list, classes.

Contract (the module docstring): a bad file raises DatasetError (a ValueError) or
FileNotFoundError naming the file (or is skipped with skip_bad); what is returned has
positive int sizes no larger than an image may be, float32 (G, 4) finite boxes inside the
image with x1 <= x2 and y1 <= y2, int32 labels 1..K-1 and bool flags.
"""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data import voc
from frcnn.data.problems import DatasetError
from tests.fuzz._fuzz import (FUZZ, NUMBER_TOKENS, TOKENS, count, json_values, mutated_bytes,
                              mutated_text, outcome)

CLASSES = ("dog", "cat", "person")
SIZES = {"a": (30, 20), "c": (17, 25)}     # image id -> (width, height)
#: the most pixels per side an annotation may claim (OpenCV reads no more)
MAX_SIDE = 1 << 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("voc")
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / sub).mkdir(parents=True)
    w, h = SIZES["a"]
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.full((h, w, 3), 90, np.uint8))
    w, h = SIZES["c"]  # found through <filename> only
    cv2.imwrite(str(root / "JPEGImages" / "c_image.png"), np.full((h, w, 3), 40, np.uint8))
    return root


@st.composite
def annotation(draw, image_id: str) -> bytes:
    w, h = SIZES[image_id]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = "a.jpg" if image_id == "a" else "c_image.png"
    if draw(st.booleans()) or image_id == "a":
        size = ET.SubElement(root, "size")
        for tag, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
    for _ in range(draw(st.integers(0, 4))):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = draw(st.sampled_from(CLASSES))
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(draw(st.integers(0, 1)))
        ET.SubElement(obj, "difficult").text = str(draw(st.integers(0, 1)))
        bb = ET.SubElement(obj, "bndbox")
        x1, x2 = sorted(draw(st.integers(1, w)) for _ in range(2))
        y1, y2 = sorted(draw(st.integers(1, h)) for _ in range(2))
        for tag, v in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(v)
    return serialise(root)


@st.composite
def mutated_element(draw, xml: bytes) -> bytes:
    """The tree with 1..3 elements given other text (numbers at the edges, other types),
    removed, duplicated or given a child."""
    root = ET.fromstring(xml)
    for _ in range(draw(st.integers(1, 3))):
        nodes = list(root.iter())
        leaves = [n for n in nodes if not len(n)]
        node = draw(st.sampled_from(leaves if draw(st.booleans()) else nodes))
        op = draw(st.sampled_from(["text", "text", "text", "remove", "dup", "child"]))
        if op == "text":
            node.text = draw(st.one_of(st.sampled_from(NUMBER_TOKENS), st.sampled_from(TOKENS),
                                       json_values().map(str), st.text(max_size=10)))
        elif op in ("remove", "dup"):
            parent = next((p for p in root.iter() if node in list(p)), None)
            if parent is not None:
                if op == "remove":
                    parent.remove(node)
                else:
                    parent.append(node)
        else:
            ET.SubElement(node, draw(st.sampled_from(["size", "width", "object", "name",
                                                     "bndbox", "xmin", "x"]))).text = "1"
    return serialise(root)


def _clean_xml_text(text: str) -> str:
    """ET refuses to write characters XML cannot hold; keep the rest."""
    return "".join(c for c in text if c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF
                   or 0xE000 <= ord(c) <= 0xFFFD)


def serialise(root: ET.Element) -> bytes:
    for node in root.iter():
        if node.text is not None:
            node.text = _clean_xml_text(node.text)
    return ET.tostring(root, encoding="utf-8")


def check_records(records: list[dict], root: Path) -> None:
    assert records
    for r in records:
        w, h = r["width"], r["height"]
        assert type(w) is int and type(h) is int and 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE, r
        assert Path(r["image"]).is_file(), r
        b = r["boxes"]
        g = len(r["gt_classes"])
        assert b.dtype == np.float32 and b.shape == (g, 4), r
        assert np.isfinite(b).all(), r
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w - 1).all() and (b[:, 0] <= b[:, 2]).all()
        assert (b[:, 1] >= 0).all() and (b[:, 3] <= h - 1).all() and (b[:, 1] <= b[:, 3]).all()
        assert r["gt_classes"].dtype == np.int32
        k = len(voc.folder_classes(root))  # with the background
        assert ((r["gt_classes"] >= 1) & (r["gt_classes"] < k)).all(), r
        for flag in ("difficult", "truncated"):
            assert r[flag].dtype == bool and r[flag].shape == (g,), r


def load(root: Path, xml: dict[str, bytes], split: bytes, classes: bytes, skip: bool,
         split_name: str = "trainval"):
    for image_id, data in xml.items():
        (root / "Annotations" / f"{image_id}.xml").write_bytes(data)
    (root / "ImageSets" / "Main" / "trainval.txt").write_bytes(split)
    (root / "classes.txt").write_bytes(classes)
    result = outcome(voc.load_voc, (DatasetError, FileNotFoundError), root, split_name,
                     skip_bad=skip, log=None)
    if not isinstance(result, BaseException):
        check_records(result, root)
    return result


_SPLIT = b"a\nc\n"
_CLASSES = "".join(f"{c}\n" for c in CLASSES).encode()


@FUZZ
@given(data=st.data(), skip=st.booleans())
def test_valid_annotations_load(folder, data, skip):
    count()
    xml = {i: data.draw(annotation(i)) for i in SIZES}
    result = load(folder, xml, _SPLIT, _CLASSES, skip)
    assert not isinstance(result, BaseException), result


@FUZZ
@given(data=st.data(), skip=st.booleans(), which=st.sampled_from(sorted(SIZES)),
       how=st.sampled_from(["element", "text", "bytes"]))
def test_mutated_annotations(folder, data, skip, which, how):
    count()
    xml = {i: data.draw(annotation(i)) for i in SIZES}
    if how == "element":
        xml[which] = data.draw(mutated_element(xml[which]))
    elif how == "text":
        xml[which] = data.draw(mutated_text(xml[which].decode())).encode("utf-8",
                                                                          "surrogatepass")
    else:
        xml[which] = data.draw(mutated_bytes(xml[which]))
    load(folder, xml, _SPLIT, _CLASSES, skip)


@FUZZ
@given(data=st.data(), skip=st.booleans(), which=st.sampled_from(["split", "classes"]),
       split_name=st.one_of(st.just("trainval"), st.sampled_from(TOKENS),
                            st.text(max_size=8)))
def test_mutated_split_and_class_lists(folder, data, skip, which, split_name):
    count()
    xml = {i: data.draw(annotation(i)) for i in SIZES}
    split, classes = _SPLIT, _CLASSES
    if which == "split":
        split = data.draw(mutated_bytes(split))
    else:
        classes = data.draw(mutated_bytes(classes))
    load(folder, xml, split, classes, skip, split_name if data.draw(st.booleans()) else
         "trainval")


@FUZZ
@given(data=st.data(), skip=st.booleans())
def test_damaged_image_of_an_annotation_without_size(folder, data, skip):
    """Without <size>, the size comes from the image file: a damaged one is a DatasetError
    (or skipped), never an OpenCV error; a header claiming gigapixels is not decoded."""
    count()
    import cv2

    image = folder / "JPEGImages" / "c_image.png"
    good = image.read_bytes()
    xml = {i: data.draw(annotation(i)) for i in SIZES}
    root = ET.fromstring(xml["c"])
    for size in root.findall("size"):
        root.remove(size)
    xml["c"] = serialise(root)
    w, h = data.draw(st.sampled_from([(17, 25), (20000, 20000), (1 << 21, 1), (0, 5)]))
    try:
        if (w, h) == (17, 25):
            image.write_bytes(data.draw(mutated_bytes(good)))
        else:  # a valid header claiming w x h, a few bytes of data
            image.write_bytes(good[:16] + struct.pack(">II", w, h) + good[24:])
        result = load(folder, xml, _SPLIT, _CLASSES, skip)
        if (w, h) != (17, 25) and not skip:
            assert isinstance(result, DatasetError), result
    finally:
        image.write_bytes(good)
    assert cv2.imread(str(image)) is not None
