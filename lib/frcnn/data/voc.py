"""Reader of PASCAL VOC-format folders.

A folder holds ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt`` (one image id a line)
and ``JPEGImages/<id>.jpg`` (or the file the annotation's ``<filename>`` names), and
optionally ``classes.txt`` (one class name a line, without ``__background__``).  The class
list (``folder_class_list``): the one given, else ``classes.txt``, else for a PASCAL VOC
devkit folder VOC's 20 classes, else the names in the folder's annotations, sorted.

``load_voc`` returns one record per image id of the split::

    {'id': '000005', 'image': '/abs/JPEGImages/000005.jpg', 'annotation': '/abs/.../000005.xml',
     'width': W, 'height': H,
     'boxes': (G, 4) float32, 'gt_classes': (G,) int32 (1..K-1),
     'difficult': (G,) bool, 'truncated': (G,) bool}

Coordinates: VOC's xmin/ymin/xmax/ymax are 1-based inclusive pixels; as in py-faster-rcnn,
1 is subtracted, giving 0-based inclusive x1 y1 x2 y2.  Unlike py-faster-rcnn the boxes are
float32, not uint16 (whose underflow corrupts horizontally flipped boxes).  A box may stick
out of the image by up to ``BORDER_TOLERANCE`` pixels (rounding in some annotation tools); it
is clipped.  Farther out, x2 < x1, an unknown class, a missing or empty file, or malformed XML
is a problem (``frcnn.data.problems``): an error naming the file and object, or, in skip
mode, a warning, and the object or image is left out.  Images without objects are kept
(evaluation needs them); the training roidb filters them out.  All objects are kept with
their difficult flags; training drops the difficult ones (``frcnn.data.roidb``).
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn.data.blobs import image_size_problem, read_image
from frcnn.data.problems import DatasetError, Problems, path_is

BACKGROUND = "__background__"

#: The 20 PASCAL VOC classes, in py-faster-rcnn's order (index + 1 = class index).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

CLASSES_FILE = "classes.txt"

#: How far (pixels) a box may lie outside the image and still be clipped rather than refused.
BORDER_TOLERANCE = 1.0


# ----------------------------------------------------------------------------- classes

def read_class_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a file, one a line ('#' comments and blank lines ignored).

    A leading ``__background__`` is dropped.  Returns the names without the background.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"class list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"class list {path} cannot be read: {e}") from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [n for n in names if n]
    try:
        return check_class_names(names)
    except DatasetError as e:
        raise DatasetError(f"class list {path}: {e}") from None


def check_class_names(names: Sequence[str]) -> tuple[str, ...]:
    """Names without the background, checked: non-empty, unique, no blanks."""
    names = [str(n).strip() for n in names]
    if names and names[0] == BACKGROUND:
        names = names[1:]
    if not names:
        raise DatasetError("no class names")
    if any(not n for n in names):
        raise DatasetError(f"empty class name in {names}")
    if BACKGROUND in names:
        raise DatasetError(f"{BACKGROUND} may only come first, got {names}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetError(f"duplicate class names {dupes}")
    return tuple(names)


#: Folder names of the PASCAL VOC devkit (``VOCdevkit/VOC2007``): they keep the 20 classes.
PASCAL_VOC_FOLDERS = ("VOC2007", "VOC2012")


def is_pascal_voc_folder(root: str | os.PathLike) -> bool:
    """A PASCAL VOC devkit folder: ``VOC2007`` or ``VOC2012`` inside a ``VOCdevkit*`` folder
    (py-faster-rcnn's layout), whose class list is VOC's 20 classes."""
    root = Path(root).absolute()
    return root.name in PASCAL_VOC_FOLDERS and root.parent.name.startswith("VOCdevkit")


def annotation_names(root: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Every object ``<name>`` in ``ROOT/Annotations/*.xml``: {name: (objects, images)}.

    Reads every annotation of the folder, whatever the split, so that a folder's splits
    get one class list.  Files that are not XML are passed over (loading the split reports
    them with their file name).
    """
    folder = Path(root) / "Annotations"
    objects: dict[str, int] = {}
    images: dict[str, int] = {}
    if not path_is(folder, "dir"):
        return {}
    for xml_path in sorted(folder.glob("*.xml")):
        try:
            tree = ET.parse(xml_path).getroot()
        except (ET.ParseError, LookupError, ValueError, OSError):
            continue
        seen = set()
        for obj in tree.findall("object"):
            name = _text(obj, "name")
            if name:
                objects[name] = objects.get(name, 0) + 1
                seen.add(name)
        for name in seen:
            images[name] = images.get(name, 0) + 1
    return {name: (objects[name], images[name]) for name in sorted(objects)}


@dataclass(frozen=True)
class ClassList:
    """A folder's class list and where it came from.

    ``names``: ``__background__`` first; ``source``: 'given' (--classes), 'file' (the
    folder's classes.txt), 'pascal-voc' (a devkit folder: VOC's 20) or 'annotations' (the
    names in the folder's annotations, sorted); ``where``: that, in words.
    """

    names: tuple[str, ...]
    source: str
    where: str

    def fix(self, root: str | os.PathLike) -> str:
        """How to change the list (for error messages)."""
        if self.source == "file":
            return (f"add the missing names to {self.where} (one a line, in the model's "
                    "output order) or pass --classes a,b,c")
        return (f"to choose the list, write {Path(root) / CLASSES_FILE} (one name a line, in "
                "the model's output order) or pass --classes a,b,c")

    def hint(self, root: str | os.PathLike) -> str:
        """Where the list came from and how to change it (for error messages)."""
        return f"class list from {self.where}: {self.fix(root)}"


def folder_class_list(root: str | os.PathLike, classes: Sequence[str] | None = None,
                      pascal_voc: bool | None = None) -> ClassList:
    """The class list of a VOC-format folder, in this order: ``classes`` (names without the
    background); the folder's ``classes.txt``; for a PASCAL VOC devkit folder
    (``pascal_voc``, default ``is_pascal_voc_folder(root)``) the 20 VOC classes, as
    py-faster-rcnn; else the object names found in its annotations, sorted.

    DatasetError where none of these gives a class (no annotation names an object).
    """
    root = Path(root)
    if classes is not None:
        return ClassList((BACKGROUND, *check_class_names(classes)), "given", "--classes")
    if path_is(root / CLASSES_FILE):
        return ClassList((BACKGROUND, *read_class_file(root / CLASSES_FILE)), "file",
                         str(root.absolute() / CLASSES_FILE))
    if pascal_voc if pascal_voc is not None else is_pascal_voc_folder(root):
        return ClassList((BACKGROUND, *VOC_CLASSES), "pascal-voc",
                         "PASCAL VOC's 20 classes (a VOC devkit folder)")
    names = tuple(annotation_names(root))
    if not names:
        raise DatasetError(f"{root.absolute()}: no object in Annotations/*.xml names a "
                           "class, so the class list is unknown: pass --classes a,b,c or "
                           f"write {root.absolute() / CLASSES_FILE}")
    return ClassList((BACKGROUND, *check_class_names(names)), "annotations",
                     f"the names in {root.absolute() / 'Annotations'}, sorted")


def folder_classes(root: str | os.PathLike,
                   classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class list of a VOC-format folder, ``__background__`` first (see
    ``folder_class_list`` for the order of precedence)."""
    return folder_class_list(root, classes).names


# ----------------------------------------------------------------------------- split lists

def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Image ids of ``ImageSets/Main/<split>.txt`` (first word of each non-blank line)."""
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path_is(path):
        main = path.parent
        known = sorted(p.stem for p in main.glob("*.txt")) if path_is(main, "dir") else []
        raise FileNotFoundError(f"image list of split '{split}' not found: {path}"
                                + (f" (splits there: {', '.join(known[:20])})" if known else
                                   " (is this a VOC-format folder?)"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"image list {path} cannot be read: {e}") from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"image list {path} is empty")
    return ids


# ----------------------------------------------------------------------------- annotations

def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


_FLAG_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _flag(node: ET.Element, tag: str, label: str) -> bool:
    """<difficult> / <truncated> as a bool: absent or empty False, a number (0 / 1, as the
    devkit writes) or true/yes/false/no; anything else a DatasetError naming ``label``
    (py-faster-rcnn stops on it with int()'s error, and a guess would change the metric)."""
    text = _text(node, tag)
    if not text:
        return False
    if text.lower() in _FLAG_WORDS:
        return _FLAG_WORDS[text.lower()]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"{label}: <{tag}> is {text!r}, not 0 or 1")
    return bool(int(value))


def _image_size(node: ET.Element, where: str) -> tuple[int, int] | None:
    """(width, height) from <size>, or None when absent, not numbers or not positive.

    Raises DatasetError naming ``where`` for a size no image has (``image_size_problem``:
    over OpenCV's 1048576 pixels a side, or MAX_IMAGE_PIXELS).
    """
    size = node.find("size")
    if size is None:
        return None
    try:
        w, h = int(float(_text(size, "width") or 0)), int(float(_text(size, "height") or 0))
    except (ValueError, OverflowError):  # 'abc', 'nan', 'inf'
        return None
    if w <= 0 or h <= 0:
        return None
    problem = image_size_problem(w, h)
    if problem:
        raise DatasetError(f"{where}: <size> claims {problem}")
    return w, h


def _image_path(root: Path, image_id: str, tree: ET.Element) -> Path:
    default = root / "JPEGImages" / f"{image_id}.jpg"
    if path_is(default):
        return default
    filename = _text(tree, "filename")
    if filename:
        named = root / "JPEGImages" / filename
        if path_is(named):
            return named
    tried = str(default) + (f" or {root / 'JPEGImages' / filename}" if filename else "")
    raise FileNotFoundError(f"image of {image_id} not found: {tried}")


def _size_from_file(path: Path) -> tuple[int, int]:
    """(width, height) of an image as decoded (EXIF orientation), with read_image's checks
    (empty file, header size, decoding) as DatasetError."""
    try:
        im = read_image(path)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    return im.shape[1], im.shape[0]


def parse_object(obj: ET.Element, index: int, class_to_index: dict[str, int], width: int,
                 height: int, where: str, class_hint: str = "") -> tuple[np.ndarray, int, bool, bool]:
    """One <object>: (box 0-based float32 (4,), class index, difficult, truncated).

    Raises DatasetError naming ``where`` (the file), the object's index and class; an
    unknown class also gets ``class_hint`` (where the list came from, how to change it).
    """
    name = _text(obj, "name")
    label = f"{where}: object {index}" + (f" ('{name}')" if name else "")
    if not name:
        raise DatasetError(f"{label}: has no <name>")
    if name not in class_to_index:
        known = ", ".join(list(class_to_index)[:25]) + (", ..." if len(class_to_index) > 25
                                                         else "")
        raise DatasetError(f"{label}: unknown class '{name}' (classes: {known})"
                           + (f"; {class_hint}" if class_hint else ""))
    bb = obj.find("bndbox")
    if bb is None:
        raise DatasetError(f"{label}: has no <bndbox>")
    coords = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = _text(bb, tag)
        try:
            coords.append(float(text))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DatasetError(f"{label}: <{tag}> is {text!r}, not a number") from None
    xmin, ymin, xmax, ymax = coords
    if not np.all(np.isfinite(coords)):
        raise DatasetError(f"{label}: coordinates {coords} are not finite")
    if xmax < xmin or ymax < ymin:
        raise DatasetError(f"{label}: x2 < x1 or y2 < y1 (xmin {xmin:g}, ymin {ymin:g}, "
                           f"xmax {xmax:g}, ymax {ymax:g})")
    x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax - 1, ymax - 1  # 1-based -> 0-based
    t = BORDER_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width - 1 + t or y2 > height - 1 + t:
        raise DatasetError(f"{label}: box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, "
                           f"ymax {ymax:g}; 1-based) lies outside the {width}x{height} image")
    box = np.array([min(max(x1, 0), width - 1), min(max(y1, 0), height - 1),
                    min(max(x2, 0), width - 1), min(max(y2, 0), height - 1)], np.float32)
    return (box, class_to_index[name], _flag(obj, "difficult", label),
            _flag(obj, "truncated", label))


def read_annotation(root: str | os.PathLike, image_id: str, classes: Sequence[str],
                    problems: Problems | None = None, class_hint: str = "") -> dict | None:
    """The record of one image (see the module docstring), or None when skipped.

    ``classes`` includes ``__background__`` first.  Bad objects are reported to
    ``problems`` (default: raise) and left out in skip mode.
    """
    problems = problems or Problems()
    root = Path(root).absolute()
    xml_path = root / "Annotations" / f"{image_id}.xml"
    try:
        if not path_is(xml_path):
            raise FileNotFoundError(f"annotation of image {image_id} not found: {xml_path}")
        try:
            tree = ET.parse(xml_path).getroot()
        except (ET.ParseError, LookupError, ValueError) as e:  # LookupError: encoding="x"
            raise DatasetError(f"{xml_path}: not valid XML ({e})") from None
        except OSError as e:
            raise DatasetError(f"{xml_path}: cannot be read ({e})") from None
        image = _image_path(root, image_id, tree)
        if image.stat().st_size == 0:
            raise DatasetError(f"image {image} is an empty file")
        size = _image_size(tree, str(xml_path)) or _size_from_file(image)
    except (FileNotFoundError, DatasetError) as e:
        problems.report(e, "image")
        return None

    width, height = size
    class_to_index = {name: i for i, name in enumerate(classes) if i > 0}
    boxes, labels, difficult, truncated = [], [], [], []
    for i, obj in enumerate(tree.findall("object")):
        try:
            box, label, diff, trunc = parse_object(obj, i, class_to_index, width, height,
                                                   str(xml_path), class_hint)
        except DatasetError as e:
            problems.report(e, "object")
            continue
        boxes.append(box)
        labels.append(label)
        difficult.append(diff)
        truncated.append(trunc)
    return {
        "id": image_id,
        "image": str(image),
        "annotation": str(xml_path),
        "width": int(width),
        "height": int(height),
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "gt_classes": np.array(labels, np.int32),
        "difficult": np.array(difficult, bool),
        "truncated": np.array(truncated, bool),
    }


def load_voc(root: str | os.PathLike, split: str, classes: Sequence[str] | None = None,
             skip_bad: bool = False, log=print, class_hint: str = "") -> list[dict]:
    """Every image record of a VOC-format folder's split.

    Args:
        root: the folder (relative paths are taken from the current directory).
        split: the ImageSets/Main list, e.g. 'trainval'.
        classes: class names with or without a leading ``__background__``; default as
            ``folder_classes``.
        skip_bad: skip bad images and objects with a warning and a count instead of raising.
        log: where the summary line goes (None: nowhere).
        class_hint: added to an unknown class's error (where the class list came from and
            how to change it).
    Raises:
        FileNotFoundError / DatasetError naming the file and object (unless skip_bad; the
        split list itself and the class list must always be good).
    """
    root = Path(root).absolute()
    if not path_is(root, "dir"):
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if classes is None:
        class_list = folder_class_list(root)
        names = class_list.names
        class_hint = class_hint or class_list.hint(root)
    else:
        names = folder_classes(root, classes)
    ids = read_split(root, split)
    problems = Problems(skip=skip_bad)
    records = [r for r in (read_annotation(root, i, names, problems, class_hint) for i in ids)
               if r is not None]
    if log is not None and problems.count:
        log(f"[data] {root} {split}: {problems.summary()}")
    if not records:
        raise DatasetError(f"no usable images in {root} split '{split}'")
    return records
