"""The COCO-format reader and writer (frcnn.data.coco) and COCO datasets by path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frcnn import cli
from frcnn.data import coco
from frcnn.data.datasets import get_dataset
from frcnn.data.problems import DatasetError
from frcnn.data.roidb import training_roidb
from frcnn.evaluation import evaluate


def _image(folder: Path, name: str, width: int = 60, height: int = 40) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), np.full((height, width, 3), 100, np.uint8))


def coco_file(root: Path, images=None, annotations=None, categories=None,
              split: str = "train") -> Path:
    """ROOT/annotations/instances_<split>.json and ROOT/<split>/*.jpg: by default two images
    (60x40), categories 3 'cat' and 7 'dog', a crowd box, and image 2 without objects."""
    images = images if images is not None else [
        {"id": 1, "file_name": "a.jpg", "width": 60, "height": 40},
        {"id": 2, "file_name": "b.jpg", "width": 60, "height": 40}]
    annotations = annotations if annotations is not None else [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "area": 200,
         "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 3, "bbox": [0, 0, 60, 40], "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [30, 20, 10, 10], "iscrowd": 1}]
    categories = categories if categories is not None else [
        {"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    for im in images:
        if not (root / split / im["file_name"]).exists():
            _image(root / split, im["file_name"], im["width"], im["height"])
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return path


def test_reader_maps_categories_boxes_crowd_and_empty_images(tmp_path):
    path = coco_file(tmp_path)
    records = coco.load_coco(path)
    assert [r["id"] for r in records] == ["1", "2"] and records[0]["coco_id"] == 1
    a, b = records
    assert a["image"] == str(tmp_path / "train" / "a.jpg")
    assert (a["width"], a["height"]) == (60, 40)
    # [x, y, w, h] -> x1 = x, y1 = y, x2 = x + w - 1, y2 = y + h - 1
    np.testing.assert_array_equal(a["boxes"], [[10, 5, 29, 14], [0, 0, 59, 39],
                                               [30, 20, 39, 29]])
    assert a["boxes"].dtype == np.float32
    assert a["gt_classes"].tolist() == [2, 1, 1]          # cat (id 3) -> 1, dog (id 7) -> 2
    assert a["difficult"].tolist() == [False, False, True] == a["crowd"].tolist()
    assert a["areas"].tolist() == [200, 2400, 100] and a["ann_ids"].tolist() == [10, 11, 12]
    assert len(b["boxes"]) == 0 and b["boxes"].shape == (0, 4)

    dataset = get_dataset(str(path))
    assert dataset.format == "coco" and dataset.split == "train"
    assert dataset.classes == ("__background__", "cat", "dog")
    assert dataset.category_ids == (3, 7)
    assert dataset.root == tmp_path / "train"
    roidb = dataset.training_roidb(flip=False, log=None)   # crowd dropped, image 2 too
    assert len(roidb) == 1 and roidb[0]["gt_classes"].tolist() == [2, 1]


def test_default_image_folder_rule(tmp_path):
    path = coco_file(tmp_path, split="val")
    assert coco.default_images_dir(path) == tmp_path / "val"         # ROOT/<split>
    other = tmp_path / "x" / "annotations" / "instances_val2017.json"
    assert coco.split_name(other) == "val2017"
    assert coco.default_images_dir(other) == tmp_path / "x"           # ROOT
    assert coco.default_images_dir(tmp_path / "y" / "gt.json") == tmp_path / "y"
    moved = tmp_path / "pics"
    (tmp_path / "val").rename(moved)
    assert get_dataset(str(path)).root == tmp_path         # no ROOT/val: ROOT
    with pytest.raises(FileNotFoundError, match="image 1: image file not found"):
        get_dataset(str(path)).load()
    with pytest.raises(FileNotFoundError, match="give --images"):
        get_dataset(str(path), images=str(tmp_path / "nope"))
    assert len(get_dataset(str(path), images=str(moved)).load(log=None)) == 2
    with pytest.raises(ValueError, match="only for a COCO"):
        get_dataset(str(tmp_path / "train"), images=str(moved))
    with pytest.raises(ValueError, match="split"):
        get_dataset(str(path), split="test")


BAD = [
    ("missing image file", dict(images=[{"id": 1, "file_name": "a.jpg", "width": 60,
                                         "height": 40},
                                        {"id": 5, "file_name": "gone.jpg", "width": 60,
                                         "height": 40}]),
     r"image 5: image file not found: .*gone\.jpg", "image"),
    ("box outside", dict(annotations=[{"id": 21, "image_id": 1, "category_id": 3,
                                       "bbox": [50, 5, 20, 10]}]),
     r"annotation 21 \(image 1\): bbox .* outside the 60x40 image", "object"),
    ("unknown category", dict(annotations=[{"id": 22, "image_id": 1, "category_id": 5,
                                            "bbox": [1, 1, 5, 5]}]),
     r"annotation 22 \(image 1\): unknown category_id 5", "object"),
    ("zero width", dict(annotations=[{"id": 23, "image_id": 1, "category_id": 3,
                                      "bbox": [1, 1, 0, 5]}]),
     r"annotation 23 \(image 1\): bbox .* w or h <= 0", "object"),
    ("negative height", dict(annotations=[{"id": 24, "image_id": 1, "category_id": 3,
                                           "bbox": [1, 1, 5, -2]}]),
     r"annotation 24 \(image 1\): bbox .* w or h <= 0", "object"),
    ("unknown image", dict(annotations=[{"id": 25, "image_id": 9, "category_id": 3,
                                         "bbox": [1, 1, 5, 5]}]),
     r"annotation 25: unknown image_id 9", "object"),
    ("duplicate image id", dict(images=[{"id": 1, "file_name": "a.jpg", "width": 60,
                                         "height": 40},
                                        {"id": 1, "file_name": "b.jpg", "width": 60,
                                         "height": 40}]),
     r"image 1: duplicate image id 1", "image"),
    ("duplicate annotation id", dict(annotations=[
        {"id": 26, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},
        {"id": 26, "image_id": 1, "category_id": 7, "bbox": [2, 2, 5, 5]}]),
     r"annotation 26: duplicate annotation id", "object"),
]


@pytest.mark.parametrize("what, entries, message, kind", BAD, ids=[b[0] for b in BAD])
def test_each_bad_entry_names_the_file_and_id_or_is_skipped(tmp_path, what, entries, message,
                                                            kind, capsys):
    if what == "missing image file":
        _image(tmp_path / "train", "a.jpg")
        path = coco_file(tmp_path, images=[entries["images"][0]], annotations=[])
        data = json.loads(path.read_text())
        data["images"] = entries["images"]
        path.write_text(json.dumps(data))
    else:
        path = coco_file(tmp_path, **entries)
    with pytest.raises((DatasetError, FileNotFoundError),
                       match=rf"instances_train\.json: {message}"):
        coco.load_coco(path)
    logged = []
    records = coco.load_coco(path, skip_bad=True, log=logged.append)
    assert f"skipped {1 if kind == 'image' else 0} image(s) and " \
           f"{1 if kind == 'object' else 0} object(s)" in logged[0]
    assert "warning: skipping" in capsys.readouterr().err
    assert records


def test_bad_categories_always_raise(tmp_path):
    path = coco_file(tmp_path, categories=[{"id": 3, "name": "cat"}, {"id": 3, "name": "x"}])
    with pytest.raises(DatasetError, match="duplicate category ids"):
        coco.load_coco(path, skip_bad=True)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="instances_train.json: not a readable JSON"):
        get_dataset(str(path))


def _comparable(records):
    keys = ("image", "width", "height", "boxes", "gt_classes", "difficult")
    return [{k: (r[k].tolist() if isinstance(r[k], np.ndarray) else r[k]) for k in keys}
            for r in records]


def test_voc_and_coco_forms_of_synth_give_the_same_roidb_and_map(synth_dir, tmp_path):
    voc = get_dataset(str(synth_dir), split="train")
    voc_records = voc.load(log=None)
    path = coco.write_coco(voc_records, voc.classes, tmp_path / "instances_train.json")
    data = json.loads(path.read_text())
    assert data["images"][0]["id"] == int(voc_records[0]["id"])
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    ds = get_dataset(str(path), images=str(synth_dir))
    assert ds.classes == voc.classes
    coco_records = ds.load(log=None)
    assert _comparable(coco_records) == _comparable(voc_records)
    for flip in (False, True):
        a = training_roidb(voc_records, voc.num_classes, flip, log=None)
        b = training_roidb(coco_records, ds.num_classes, flip, log=None)
        assert [{k: np.asarray(v).tolist() for k, v in e.items()} for e in a] == \
               [{k: np.asarray(v).tolist() for k, v in e.items()} for e in b]
    # jittered gt boxes as detections: the same VOC APs on both forms
    rng = np.random.default_rng(0)
    dets = [[np.zeros((0, 5), np.float32)] * len(voc_records) for _ in voc.classes]
    for c in range(1, voc.num_classes):
        for i, r in enumerate(voc_records):
            boxes = r["boxes"][r["gt_classes"] == c] + rng.normal(0, 3, (1, 4))
            dets[c][i] = np.hstack([boxes, rng.uniform(0.1, 1, (len(boxes), 1))]
                                   ).astype(np.float32)
    assert evaluate(dets, voc_records, voc.classes) == evaluate(dets, coco_records, ds.classes)


def test_convert_both_ways_and_synth_coco_cli(tmp_path):
    root = tmp_path / "s"
    assert cli.main(["data", "synth", "--out", str(root), "--num-train", "4", "--num-test",
                     "2", "--size", "64x80", "--min-object", "12", "--max-object", "30",
                     "--format", "coco"]) == 0
    train = root / "annotations" / "instances_train.json"
    assert (root / "annotations" / "instances_test.json").is_file()
    assert json.loads(train.read_text())["images"][0]["file_name"] == "JPEGImages/000001.jpg"
    voc_records = get_dataset(str(root), split="train").load(log=None)
    assert _comparable(get_dataset(str(train)).load(log=None)) == _comparable(voc_records)

    back = tmp_path / "voc"
    assert cli.main(["data", "convert", str(train), "--to", "voc", "--out", str(back)]) == 0
    again = get_dataset(str(back), split="train").load(log=None)
    assert [r["boxes"].tolist() for r in again] == [r["boxes"].tolist() for r in voc_records]
    out = tmp_path / "again.json"
    assert cli.main(["data", "convert", str(back), "--split", "train", "--to", "coco",
                     "--out", str(out)]) == 0
    assert json.loads(out.read_text())["annotations"] == \
        json.loads(train.read_text())["annotations"]
    assert cli.main(["data", "info", str(out)]) == 0


def test_roi_data_layer_reads_a_coco_json_from_param_str(tmp_path):
    from frcnn.testing import NumpyBlob, make_layer
    from roi_data_layer.layer import RoIDataLayer

    path = coco_file(tmp_path)
    moved = tmp_path / "pics"
    (tmp_path / "train").rename(moved)
    layer = make_layer(RoIDataLayer, f"'num_classes': 3, 'dataset': '{path}', "
                                     f"'images': '{moved}', 'flip': False",
                       phase="TRAIN", name="input-data")
    layer.setup([], [NumpyBlob() for _ in range(3)])
    assert len(layer._roidb) == 1 and layer._roidb[0]["image"] == str(moved / "a.jpg")
    assert layer._roidb[0]["gt_classes"].tolist() == [2, 1]
