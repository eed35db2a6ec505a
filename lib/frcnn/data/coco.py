"""Reader and writer of COCO-format detection datasets (``instances_<split>.json``).

``load_coco(json_path, images)`` returns the same records as ``frcnn.data.voc.load_voc``,
so the roidb, training and VOC evaluation work unchanged, plus COCO's own keys::

    {'id': '42', 'coco_id': 42, 'image': '/abs/train/000042.jpg',
     'annotation': '/abs/annotations/instances_train.json', 'width': W, 'height': H,
     'boxes': (G, 4) float32, 'gt_classes': (G,) int32 (1..K-1),
     'difficult': (G,) bool (= crowd), 'truncated': (G,) bool (all False),
     'crowd': (G,) bool, 'areas': (G,) float32, 'ann_ids': (G,) int64}

Boxes: COCO's ``bbox`` [x, y, w, h] becomes the 0-based inclusive corners
x1 = x, y1 = y, x2 = x + w - 1, y2 = y + h - 1 (so w = x2 - x1 + 1 going back; a box
narrower than one pixel becomes one pixel wide).  Classes: the categories sorted by id are
the labels 1..K-1 (names from the file), their ids kept in ``coco_categories``.  Crowd
objects (``iscrowd`` 1) are marked difficult, so training and the VOC evaluation ignore them
as they ignore VOC's difficult objects.  Images without annotations are kept (the training
roidb drops them).  ``areas`` is the annotation's ``area``, else w * h.

The image folder (``default_images_dir``): the one given, else, for COCO's own layout
``ROOT/annotations/instances_<split>.json``, ``ROOT/<split>/`` when it exists, else ROOT when
the file sits in a folder named ``annotations``, else the file's folder.  ``file_name`` is
taken relative to it (it may hold subfolders, e.g. ``JPEGImages/000001.jpg``).

Bad entries (a missing image file, a box outside the image or with w or h <= 0, an unknown
category or image, duplicate image or annotation ids) are problems (``frcnn.data.problems``):
an error naming the file and the annotation (or image) id, or with ``skip_bad`` a warning,
and the entry is left out.  The categories themselves must always be good.
"""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from frcnn.data.blobs import image_size_problem
from frcnn.data.problems import DatasetError, Problems, path_is
from frcnn.data.voc import BACKGROUND, BORDER_TOLERANCE, CLASSES_FILE, check_class_names

ANNOTATIONS_FOLDER = "annotations"


# ----------------------------------------------------------------------------- locations

def is_coco_path(name: str | os.PathLike) -> bool:
    """A dataset name that is a COCO file: it ends with ``.json``."""
    return str(name).lower().endswith(".json")


def split_name(json_path: str | os.PathLike) -> str:
    """The split a file holds: ``instances_train2017.json`` -> ``train2017``; else the stem."""
    stem = Path(json_path).stem
    return stem[len("instances_"):] if stem.startswith("instances_") and \
        len(stem) > len("instances_") else stem


def default_images_dir(json_path: str | os.PathLike) -> Path:
    """Where the images of a COCO file are by default (see the module docstring)."""
    path = Path(json_path).absolute()
    parent = path.parent
    if parent.name == ANNOTATIONS_FOLDER:
        by_split = parent.parent / split_name(path)
        return by_split if path_is(by_split, "dir") else parent.parent
    return parent


# ----------------------------------------------------------------------------- the file

def read_coco_file(json_path: str | os.PathLike) -> dict[str, Any]:
    """The parsed file, checked to hold lists 'images', 'annotations' and 'categories'."""
    path = Path(json_path)
    if not path_is(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8 or JSON, 5000 digits
        raise DatasetError(f"{path}: not a readable JSON file ({str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with images, annotations and "
                           f"categories")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: no '{key}' list (is this a COCO instances file?)")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{path}: 'annotations' is not a list")
    data.setdefault("annotations", [])
    return data


def coco_categories(data: dict, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(class names with ``__background__`` first, category ids) from the categories sorted
    by id: label k (1..K-1) is the k-th smallest id.  Raises DatasetError naming ``where``."""
    cats = []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) \
                or not isinstance(cat.get("name"), str) or not cat["name"].strip():
            raise DatasetError(f"{where}: category entry {i} ({cat!r}) needs an integer 'id' "
                               f"and a 'name'")
        cats.append((cat["id"], str(cat["name"]).strip()))
    ids = [c for c, _ in cats]
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise DatasetError(f"{where}: duplicate category ids {dupes}")
    cats.sort()
    try:
        names = check_class_names([n for _, n in cats])
    except DatasetError as e:
        raise DatasetError(f"{where}: categories: {e}") from None
    return (BACKGROUND, *names), tuple(c for c, _ in cats)


def _number(value: Any) -> float | None:
    """A JSON number as a finite float, else None (10 ** 400 too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if np.isfinite(value) else None


def _is_id(value: Any) -> bool:
    """An integer id (not a bool, a string or a float)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _image_entries(data: dict, where: str, images_dir: Path, problems: Problems
                   ) -> dict[int, dict]:
    """Usable image entries by id, in file order: {'id', 'file', 'width', 'height'}."""
    out: dict[int, dict] = {}
    seen: set = set()
    for i, im in enumerate(data["images"]):
        image_id = im.get("id") if isinstance(im, dict) else None
        label = f"{where}: image {image_id if image_id is not None else f'entry {i}'}"
        try:
            if not _is_id(image_id):
                raise DatasetError(f"{label}: needs an integer 'id'")
            if image_id in seen:
                raise DatasetError(f"{label}: duplicate image id {image_id}")
            seen.add(image_id)
            name = im.get("file_name")
            w, h = _number(im.get("width")), _number(im.get("height"))
            if not isinstance(name, str) or not name or not w or not h or w <= 0 or h <= 0:
                raise DatasetError(f"{label}: needs 'file_name' and positive 'width' and "
                                   f"'height', got {name!r} {im.get('width')!r}x"
                                   f"{im.get('height')!r}")
            problem = image_size_problem(int(w), int(h))
            if problem:
                raise DatasetError(f"{label}: claims {problem}")
            file = images_dir / name
            if not path_is(file):
                raise FileNotFoundError(f"{label}: image file not found: {file}")
            if file.stat().st_size == 0:
                raise DatasetError(f"{label}: image {file} is an empty file")
        except (DatasetError, FileNotFoundError) as e:
            problems.report(e, "image")
            continue
        out[image_id] = {"id": image_id, "file": file, "width": int(w), "height": int(h)}
    return out


def parse_annotation(ann: Any, index: int, images: dict[int, dict], all_image_ids: set,
                     cat_to_label: dict[int, int], where: str
                     ) -> tuple[int, np.ndarray, int, bool, float] | None:
    """One annotation: (image id, box (4,) float32 inclusive, label, crowd, area), or None
    when its image was left out (a bad image, already reported).  Raises DatasetError
    naming ``where`` and the annotation id."""
    ann_id = ann.get("id") if isinstance(ann, dict) else None
    label = f"{where}: annotation {ann_id if ann_id is not None else f'entry {index}'}"
    if not isinstance(ann, dict):
        raise DatasetError(f"{label}: not an object")
    image_id = ann.get("image_id")
    if not _is_id(image_id) or image_id not in all_image_ids:
        raise DatasetError(f"{label}: unknown image_id {image_id!r}")
    if image_id not in images:
        return None
    im = images[image_id]
    label += f" (image {image_id})"
    cat = ann.get("category_id")
    if not _is_id(cat) or cat not in cat_to_label:
        raise DatasetError(f"{label}: unknown category_id {cat!r} (categories: "
                           f"{sorted(cat_to_label)[:25]})")
    bbox = ann.get("bbox")
    coords = [_number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(coords) != 4 or any(v is None for v in coords):
        raise DatasetError(f"{label}: bbox {bbox!r} is not [x, y, w, h] numbers")
    x, y, w, h = coords  # type: ignore[misc]
    if w <= 0 or h <= 0:
        raise DatasetError(f"{label}: bbox {bbox} has w or h <= 0")
    x1, y1 = x, y
    x2, y2 = max(x + w - 1, x1), max(y + h - 1, y1)
    width, height, t = im["width"], im["height"], BORDER_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width - 1 + t or y2 > height - 1 + t:
        raise DatasetError(f"{label}: bbox {bbox} ([x, y, w, h]) lies outside the "
                           f"{width}x{height} image")
    box = np.array([min(max(x1, 0), width - 1), min(max(y1, 0), height - 1),
                    min(max(x2, 0), width - 1), min(max(y2, 0), height - 1)], np.float32)
    area = _number(ann.get("area"))
    if area is not None and abs(area) > float(np.finfo(np.float32).max):  # 1e308: inf as float32
        area = None
    if ann.get("area") is not None and area is None:
        raise DatasetError(f"{label}: area {ann.get('area')!r} is not a (float32) number")
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, float):  # 0, 1, false, true
        raise DatasetError(f"{label}: iscrowd {crowd!r} is not 0 or 1")
    return image_id, box, cat_to_label[cat], bool(crowd), float(area if area else w * h)


def load_coco(json_path: str | os.PathLike, images: str | os.PathLike | None = None,
              skip_bad: bool = False, log=print) -> list[dict]:
    """Every image record of a COCO file, in its images' order (see the module docstring).

    Args:
        json_path: the instances file.
        images: the image folder (default ``default_images_dir``).
        skip_bad: skip bad images and annotations with a warning and a count.
        log: where the summary line goes (None: nowhere).
    """
    path = Path(json_path).absolute()
    data = read_coco_file(path)
    classes, cat_ids = coco_categories(data, str(path))
    folder = Path(images).expanduser().absolute() if images else default_images_dir(path)
    if not path_is(folder, "dir"):
        raise FileNotFoundError(f"image folder of {path} not found: {folder} (give --images)")
    problems = Problems(skip=skip_bad)
    entries = _image_entries(data, str(path), folder, problems)
    all_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)
               and _is_id(im.get("id"))}
    cat_to_label = {c: k + 1 for k, c in enumerate(cat_ids)}
    objects: dict[int, list] = {i: [] for i in entries}
    seen: set = set()
    for i, ann in enumerate(data["annotations"]):
        try:
            ann_id = ann.get("id") if isinstance(ann, dict) else None
            if ann_id is not None and not _is_id(ann_id):
                raise DatasetError(f"{path}: annotation {ann_id!r} (entry {i}): the id is not "
                                   f"an integer")
            if ann_id is not None and not -2 ** 63 <= ann_id < 2 ** 63:
                raise DatasetError(f"{path}: annotation {ann_id}: the id is not a 64-bit "
                                   f"integer")
            if ann_id is not None and ann_id in seen:
                raise DatasetError(f"{path}: annotation {ann_id}: duplicate annotation id")
            seen.add(ann_id)
            parsed = parse_annotation(ann, i, entries, all_ids, cat_to_label, str(path))
        except DatasetError as e:
            problems.report(e, "object")
            continue
        if parsed is not None:
            objects[parsed[0]].append((ann_id, *parsed[1:]))
    records = [_record(entries[i], objects[i], path) for i in entries]
    if log is not None and problems.count:
        log(f"[data] {path}: {problems.summary()}")
    if not records:
        raise DatasetError(f"no usable images in {path}")
    return records


def _record(im: dict, objs: list, json_path: Path) -> dict:
    crowd = np.array([o[3] for o in objs], bool)
    return {
        "id": str(im["id"]),
        "coco_id": int(im["id"]),
        "image": str(im["file"]),
        "annotation": str(json_path),
        "width": im["width"],
        "height": im["height"],
        "boxes": np.array([o[1] for o in objs], np.float32).reshape(-1, 4),
        "gt_classes": np.array([o[2] for o in objs], np.int32),
        "difficult": crowd.copy(),
        "truncated": np.zeros(len(objs), bool),
        "crowd": crowd,
        "areas": np.array([o[4] for o in objs], np.float32),
        "ann_ids": np.array([-1 if o[0] is None else o[0] for o in objs], np.int64),
    }


# ----------------------------------------------------------------------------- writing

def coco_box(box: Sequence[float]) -> list[float]:
    """Inclusive corners x1 y1 x2 y2 -> COCO [x, y, w, h] with w = x2 - x1 + 1."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def _image_ids(records: Sequence[dict]) -> list[int]:
    """COCO ids of records: their coco_id, else int(id) when all ids are distinct digit
    strings (VOC's 000005 -> 5), else 1..N in order."""
    if all("coco_id" in r for r in records):
        return [int(r["coco_id"]) for r in records]
    ids = [str(r["id"]) for r in records]
    if all(i.isdigit() for i in ids) and len({int(i) for i in ids}) == len(ids):
        return [int(i) for i in ids]
    return list(range(1, len(records) + 1))


def records_to_coco(records: Sequence[dict], classes: Sequence[str], images_dir: Path,
                    category_ids: Sequence[int] | None = None) -> dict:
    """A COCO instances dict of records (``load_voc`` or ``load_coco``'s).

    ``file_name`` is relative to ``images_dir`` when the image lies under it, else absolute.
    Difficult (or crowd) objects are written with ``iscrowd`` 1.  Category ids default to
    1..K-1.
    """
    names = list(classes[1:]) if classes and classes[0] == BACKGROUND else list(classes)
    cat_ids = list(category_ids) if category_ids else list(range(1, len(names) + 1))
    if len(cat_ids) != len(names):
        raise ValueError(f"{len(names)} classes but {len(cat_ids)} category ids")
    images, annotations = [], []
    folder = Path(images_dir).absolute()
    for r, image_id in zip(records, _image_ids(records)):
        file = Path(r["image"]).absolute()
        try:
            name = str(file.relative_to(folder))
        except ValueError:
            name = str(file)
        images.append({"id": image_id, "file_name": name, "width": int(r["width"]),
                       "height": int(r["height"])})
        crowd = np.asarray(r.get("crowd", r.get("difficult", [])), bool)
        for g, (box, label) in enumerate(zip(r["boxes"], r["gt_classes"])):
            x, y, w, h = coco_box(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cat_ids[int(label) - 1], "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": int(crowd[g]) if len(crowd) else 0})
    categories = [{"id": c, "name": n, "supercategory": "none"}
                  for c, n in zip(cat_ids, names)]
    return {"info": {"description": "written by frcnn"}, "images": images,
            "annotations": annotations, "categories": categories}


def write_coco(records: Sequence[dict], classes: Sequence[str], json_path: str | os.PathLike,
               category_ids: Sequence[int] | None = None) -> Path:
    """Write records as a COCO file (image paths relative to its default image folder)."""
    path = Path(json_path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = records_to_coco(records, classes, default_images_dir(path), category_ids)
    path.write_text(json.dumps(data) + "\n")
    return path


def _voc_xml(filename: str, record: dict, classes: Sequence[str]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", record["width"]), ("height", record["height"]),
                       ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    difficult = np.asarray(record.get("difficult", np.zeros(len(record["boxes"]))), bool)
    for box, label, diff in zip(record["boxes"], record["gt_classes"], difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(diff))
        bb = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, tag).text = f"{float(value) + 1:g}"  # 0-based -> 1-based
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(records: Sequence[dict], classes: Sequence[str], dest: str | os.PathLike,
              split: str) -> Path:
    """Write records as a VOC-format folder: Annotations/, JPEGImages/ (copies),
    ImageSets/Main/<split>.txt, classes.txt.  Image ids are the files' stems; crowd objects
    become difficult.  The COCO category ids are not kept."""
    dest = Path(dest).absolute()
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for r in records:
        src = Path(r["image"])
        image_id = src.stem
        if image_id in ids:
            raise DatasetError(f"two images named {image_id} ({src}): VOC ids are file stems")
        ids.append(image_id)
        target = dest / "JPEGImages" / src.name
        if src.absolute() != target:
            shutil.copyfile(src, target)
        (dest / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(src.name, r, classes))
    (dest / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (dest / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes[1:]))
    return dest
