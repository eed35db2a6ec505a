"""The training roidb: per-image ground truth in py-faster-rcnn's layout.

An entry (one image, or its horizontally flipped copy)::

    image         path of the image file
    width height  of the (unflipped) image, pixels
    boxes         (G, 4) float32 x1 y1 x2 y2, 0-based inclusive pixels
    gt_classes    (G,) int32, 1..K-1
    gt_overlaps   (G, K) float32, 1 at (g, gt_classes[g]) (dense; py-faster-rcnn's is sparse)
    max_classes   (G,) int32, the argmax of gt_overlaps (= gt_classes)
    max_overlaps  (G,) float32, the max of gt_overlaps (= 1)
    flipped       bool: the image is to be mirrored left-right when read
    difficult     (G,) bool, and gt_ishard (G,) int32 (py-faster-rcnn's OHEM fork's name)

Preparation (``training_roidb``) follows py-faster-rcnn: records -> entries (difficult
objects dropped unless asked for) -> flipped copies appended -> images without boxes
filtered out, with a report instead of a silent drop.  With ``keep_empty`` (cfg
TRAIN.USE_EMPTY_IMAGES) images without boxes stay in as negatives: their minibatches have
no gt boxes, so every anchor and every RoI is background.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

_REQUIRED = ("image", "width", "height", "boxes", "gt_classes", "flipped")


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes of an image of ``width`` mirrored left-right: x1' = W - x2 - 1, x2' = W - x1 - 1.

    An involution; keeps x2 >= x1.  Returns a new float32 (G, 4) array.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2] - 1
    out[:, 2] = width - boxes[:, 0] - 1
    return out


def gt_overlaps(gt_classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(G, K) float32 one-hot rows: a gt box overlaps its own class by 1."""
    gt_classes = np.asarray(gt_classes, np.int64)
    out = np.zeros((len(gt_classes), num_classes), np.float32)
    out[np.arange(len(gt_classes)), gt_classes] = 1.0
    return out


def entry_from_record(record: dict, num_classes: int, use_difficult: bool = False) -> dict:
    """A roidb entry from a ``frcnn.data.voc`` record (difficult objects dropped unless
    ``use_difficult``, as py-faster-rcnn's use_diff=False)."""
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
    classes = np.asarray(record["gt_classes"], np.int32)
    difficult = np.asarray(record.get("difficult", np.zeros(len(classes), bool)), bool)
    keep = np.ones(len(classes), bool) if use_difficult else ~difficult
    if len(classes) and (classes.min() < 1 or classes.max() >= num_classes):
        raise ValueError(f"{record.get('annotation', record['image'])}: class indices "
                         f"{sorted(set(classes.tolist()))} outside 1..{num_classes - 1}")
    boxes, classes, difficult = boxes[keep], classes[keep], difficult[keep]
    overlaps = gt_overlaps(classes, num_classes)
    return {
        "image": record["image"],
        "width": int(record["width"]),
        "height": int(record["height"]),
        "boxes": boxes,
        "gt_classes": classes,
        "gt_overlaps": overlaps,
        "max_classes": classes.copy(),
        "max_overlaps": np.ones(len(classes), np.float32),
        "flipped": False,
        "difficult": difficult,
        "gt_ishard": difficult.astype(np.int32),
    }


def flipped_entry(entry: dict) -> dict:
    """The left-right mirrored copy of an entry (flipping twice gives the entry back)."""
    out = dict(entry)
    out["boxes"] = flip_boxes(entry["boxes"], entry["width"])
    out["flipped"] = not entry["flipped"]
    return out


def append_flipped(roidb: list[dict]) -> list[dict]:
    """The entries followed by their flipped copies (py-faster-rcnn's order)."""
    return list(roidb) + [flipped_entry(e) for e in roidb]


def filter_roidb(roidb: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, removed): entries with at least one gt box, and the others."""
    kept = [e for e in roidb if len(e["gt_classes"]) > 0]
    removed = [e for e in roidb if len(e["gt_classes"]) == 0]
    return kept, removed


def training_roidb(records: Sequence[dict], num_classes: int, flip: bool,
                   use_difficult: bool = False,
                   log: Callable[[str], None] | None = print,
                   keep_empty: bool = False) -> list[dict]:
    """The roidb to train on: entries, flipped copies if ``flip``, images without usable
    boxes removed (reported to ``log``) unless ``keep_empty`` keeps them as negatives.
    Raises ValueError when no image with a box is left."""
    roidb = [entry_from_record(r, num_classes, use_difficult) for r in records]
    if flip:
        roidb = append_flipped(roidb)
    kept, removed = filter_roidb(roidb)
    if keep_empty and removed:
        if log is not None:
            log(f"[roidb] {len(records)} images{' + flipped' if flip else ''} -> "
                f"{len(roidb)} entries, {len(removed)} of them without objects (kept as "
                f"negatives)")
        if not kept:
            raise ValueError(f"no training images with usable gt boxes among "
                             f"{len(records)} images")
        return roidb
    if log is not None:
        note = ""
        if removed:
            names = sorted({e["image"] for e in removed})
            note = (f"; removed {len(removed)} without usable gt boxes (e.g. "
                    f"{', '.join(names[:3])})")
        log(f"[roidb] {len(records)} images{' + flipped' if flip else ''} -> "
            f"{len(kept)} entries{note}")
    if not kept:
        raise ValueError(f"no training images with usable gt boxes among {len(records)} "
                         f"images (difficult objects count only with use_difficult)")
    return kept


def check_roidb(roidb: Sequence[dict], num_classes: int, allow_empty: bool = False) -> None:
    """Raise ValueError naming the entry when a roidb cannot be trained on: missing keys,
    boxes not (G, 4) or not inside the image with x2 >= x1, classes outside 1..K-1, no boxes
    (unless ``allow_empty``: negatives), gt_overlaps of another width than K."""
    if not len(roidb):
        raise ValueError("the roidb is empty")
    for i, e in enumerate(roidb):
        where = f"roidb entry {i} ({e.get('image', '?')})"
        missing = [k for k in _REQUIRED if k not in e]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        boxes = np.asarray(e["boxes"])
        classes = np.asarray(e["gt_classes"])
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(classes):
            raise ValueError(f"{where}: boxes {boxes.shape} and gt_classes {classes.shape} "
                             f"must be (G, 4) and (G,)")
        if len(classes) == 0:
            if allow_empty:
                continue
            raise ValueError(f"{where}: no gt boxes (filter the roidb first, or set cfg "
                             f"TRAIN.USE_EMPTY_IMAGES to train on it as a negative)")
        if classes.min() < 1 or classes.max() >= num_classes:
            raise ValueError(f"{where}: gt_classes {sorted(set(classes.tolist()))} outside "
                             f"1..{num_classes - 1} (num_classes {num_classes})")
        b = boxes.astype(np.float64)
        w, h = e["width"], e["height"]
        if (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]) or b.min() < 0
                or np.any(b[:, 2] > w - 1) or np.any(b[:, 3] > h - 1)):
            raise ValueError(f"{where}: boxes must satisfy 0 <= x1 <= x2 <= W-1 and "
                             f"0 <= y1 <= y2 <= H-1 for the {w}x{h} image, got {b.tolist()}")
        shape = tuple(getattr(e.get("gt_overlaps"), "shape", (len(classes), num_classes)))
        if shape[1:] != (num_classes,):  # dense or scipy.sparse (py-faster-rcnn)
            raise ValueError(f"{where}: gt_overlaps has shape {shape}, expected (G, "
                             f"{num_classes}) for num_classes {num_classes}")
