"""Fuzz: COCO instances files (frcnn.data.coco.load_coco).

Contract (the module docstring): a bad file or entry raises DatasetError (a ValueError) or
FileNotFoundError naming the file and the entry (or is skipped with skip_bad); what is
returned has positive int sizes no larger than an image may be, float32 (G, 4) finite
boxes inside the image, int32 labels 1..K-1, bool crowd flags (crowd only from iscrowd 0/1
or true/false), int64 annotation ids and finite areas.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.coco import load_coco
from frcnn.data.problems import DatasetError
from tests.fuzz._fuzz import (FUZZ, NUMBER_TOKENS, count, json_values, mutated_bytes,
                              mutated_text, mutated_tree, outcome)

IMAGES = {"a.jpg": (30, 20), "sub/b.png": (17, 25)}
MAX_SIDE = 1 << 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("coco")
    for name, (w, h) in IMAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.full((h, w, 3), 70, np.uint8))
    return root


@st.composite
def coco_doc(draw) -> dict:
    cat_ids = draw(st.lists(st.integers(-5, 10 ** 6), min_size=1, max_size=4, unique=True))
    names = draw(st.lists(st.text(st.characters(categories=["L", "N"]), min_size=1,
                                  max_size=6), min_size=len(cat_ids), max_size=len(cat_ids),
                          unique=True))
    image_ids = draw(st.lists(st.integers(0, 10 ** 9), min_size=1, max_size=len(IMAGES),
                              unique=True))
    images, annotations = [], []
    for image_id, (name, (w, h)) in zip(image_ids, IMAGES.items()):
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for _ in range(draw(st.integers(0, 3))):
            x = draw(st.integers(0, w - 1))
            y = draw(st.integers(0, h - 1))
            bw = draw(st.floats(0.5, w - x))
            bh = draw(st.floats(0.5, h - y))
            ann = {"id": len(annotations) + 1, "image_id": image_id,
                   "category_id": draw(st.sampled_from(cat_ids)), "bbox": [x, y, bw, bh],
                   "iscrowd": draw(st.sampled_from([0, 1])), "area": bw * bh}
            annotations.append(ann)
    return {"info": {"description": "fuzz"}, "images": images, "annotations": annotations,
            "categories": [{"id": c, "name": n, "supercategory": "x"}
                           for c, n in zip(cat_ids, names)]}


def check_records(records: list[dict], doc) -> None:
    assert records
    k = len(doc["categories"]) + 1
    for r in records:
        w, h = r["width"], r["height"]
        assert type(w) is int and type(h) is int and 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE, r
        assert Path(r["image"]).is_file(), r
        b, g = r["boxes"], len(r["gt_classes"])
        assert b.dtype == np.float32 and b.shape == (g, 4) and np.isfinite(b).all(), r
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w - 1).all() and (b[:, 0] <= b[:, 2]).all()
        assert (b[:, 1] >= 0).all() and (b[:, 3] <= h - 1).all() and (b[:, 1] <= b[:, 3]).all()
        assert r["gt_classes"].dtype == np.int32
        assert ((r["gt_classes"] >= 1) & (r["gt_classes"] < k)).all(), r
        assert r["crowd"].dtype == bool and r["crowd"].shape == (g,)
        assert r["ann_ids"].dtype == np.int64 and r["ann_ids"].shape == (g,)
        assert r["areas"].dtype == np.float32 and np.isfinite(r["areas"]).all()
    # a crowd flag comes only from iscrowd 0/1 (or a JSON boolean)
    by_id = {a.get("id"): a for a in doc.get("annotations", []) if isinstance(a, dict)
             and isinstance(a.get("id"), int)}
    for r in records:
        for ann_id, crowd in zip(r["ann_ids"].tolist(), r["crowd"].tolist()):
            if ann_id in by_id:
                assert by_id[ann_id].get("iscrowd", 0) in (0, 1), by_id[ann_id]
                assert bool(by_id[ann_id].get("iscrowd", 0)) == crowd


def load(folder: Path, raw: bytes, doc, skip: bool):
    path = folder / "instances_fuzz.json"
    path.write_bytes(raw)
    result = outcome(load_coco, (DatasetError, FileNotFoundError), path, folder,
                     skip_bad=skip, log=None)
    if not isinstance(result, BaseException):
        check_records(result, doc if isinstance(doc, dict) else json.loads(raw))
    return result


@FUZZ
@given(doc=coco_doc(), skip=st.booleans())
def test_valid_files_load(folder, doc, skip):
    count()
    result = load(folder, json.dumps(doc).encode(), doc, skip)
    assert not isinstance(result, BaseException), result


_FIELD_VALUES = st.one_of(json_values(), st.sampled_from(
    [10 ** 400, -(10 ** 400), 1e308, 1 << 21, 1.5, True, "0", "1", [1], {}, None, ""]))


@st.composite
def mutated_field(draw, doc: dict) -> dict:
    """One field of one entry (image, annotation, category) given a value of another type."""
    doc = json.loads(json.dumps(doc))
    section = draw(st.sampled_from(["images", "annotations", "categories"]))
    entries = doc[section]
    if not entries:
        return doc
    entry = draw(st.sampled_from(entries))
    key = draw(st.sampled_from(sorted(entry) + ["id", "bbox"]))
    if key == "bbox" and "bbox" in entry and draw(st.booleans()):
        entry["bbox"][draw(st.integers(0, 3))] = draw(_FIELD_VALUES)
    elif draw(st.integers(0, 5)) == 0:
        entry.pop(key, None)
    else:
        entry[key] = draw(_FIELD_VALUES)
    return doc


@FUZZ
@given(data=st.data(), skip=st.booleans(),
       how=st.sampled_from(["field", "field", "tree", "text", "bytes", "numbers"]))
def test_mutated_files(folder, data, skip, how):
    count()
    doc = data.draw(coco_doc())
    if how == "field":
        doc = data.draw(mutated_field(doc))
        raw = json.dumps(doc).encode()
    elif how == "tree":
        doc = data.draw(mutated_tree(doc))
        raw = json.dumps(doc).encode()
    elif how == "numbers":  # a number of the text replaced by one at the edges
        text = json.dumps(doc)
        spots = [i for i, c in enumerate(text) if c.isdigit() and not text[i - 1].isdigit()]
        if spots:
            i = data.draw(st.sampled_from(spots))
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] in ".e-"):
                j += 1
            text = text[:i] + data.draw(st.sampled_from(NUMBER_TOKENS + ("Infinity", "NaN",
                                                                         "-Infinity"))) + text[j:]
        raw, doc = text.encode(), None
    elif how == "text":
        raw, doc = data.draw(mutated_text(json.dumps(doc))).encode("utf-8", "surrogatepass"), None
    else:
        raw, doc = data.draw(mutated_bytes(json.dumps(doc).encode())), None
    if doc is None:
        try:
            doc = json.loads(raw)
        except Exception:
            doc = None
    load(folder, raw, doc, skip)
