"""The built-in synthetic detection dataset: coloured circles, squares and triangles.

``write_synth_dataset(out, SynthOptions(...))`` writes a real PASCAL VOC-format folder::

    out/Annotations/000001.xml ...      VOC XML, 1-based inclusive coordinates
    out/ImageSets/Main/train.txt        the first num_train ids
    out/ImageSets/Main/trainval.txt     the same ids (there is no val split)
    out/ImageSets/Main/test.txt         the next num_test ids
    out/JPEGImages/000001.jpg ...
    out/classes.txt                     circle, square, triangle (num_classes 4 with background)
    out/synth.json                      the options it was made with, and counts

so that ``frcnn.data.voc`` reads it like any VOC folder.  Each image has a textured, noisy
background of a random colour and 0..max_objects shapes (about 1 image in 10 has none) of
random class, colour (contrasting with the background), size and position; shapes may
overlap a little but never hide most of an earlier one.  Boxes are the tight extent of the
drawn pixels.  The output depends only on the options (image i is drawn from a generator
seeded with (seed, i)).
"""
from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SYNTH_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class SynthOptions:
    """What ``write_synth_dataset`` makes.  Sizes in pixels; objects are squares of side
    ``min_object..max_object`` around their shape."""

    num_train: int = 300
    num_test: int = 100
    height: int = 240
    width: int = 320
    min_object: int = 24
    max_object: int = 96
    max_objects: int = 4
    seed: int = 3
    jpeg_quality: int = 92

    def check(self) -> None:
        problems = []
        if self.num_train < 0 or self.num_test < 0 or self.num_train + self.num_test < 1:
            problems.append(f"need at least one image (num_train {self.num_train}, "
                            f"num_test {self.num_test})")
        if min(self.height, self.width) < 32:
            problems.append(f"image size {self.height}x{self.width} is below 32 pixels")
        if not 8 <= self.min_object <= self.max_object:
            problems.append(f"object sizes must satisfy 8 <= min_object <= max_object, got "
                            f"{self.min_object}..{self.max_object}")
        if self.max_object > min(self.height, self.width) - 4:
            problems.append(f"max_object {self.max_object} does not fit a "
                            f"{self.height}x{self.width} image")
        if self.max_objects < 1:
            problems.append(f"max_objects must be >= 1, got {self.max_objects}")
        if not 10 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 10..100, got {self.jpeg_quality}")
        if problems:
            raise ValueError("synthetic dataset options: " + "; ".join(problems))


# ----------------------------------------------------------------------------- drawing

def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured background: a random colour, smooth blotches, a few faint lines. float32."""
    import cv2

    base = rng.uniform(40, 215, size=3)
    coarse = rng.normal(0, 28, size=(max(2, height // 24), max(2, width // 24), 3))
    texture = cv2.resize(coarse.astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    im = np.clip(base + texture, 0, 255).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(float(c) for c in np.clip(base + rng.normal(0, 40, 3), 0, 255))
        cv2.line(im, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return im


def _shape_mask(rng: np.random.Generator, kind: str, side: int, cx: float, cy: float,
                height: int, width: int) -> np.ndarray:
    """A uint8 (H, W) mask of one filled shape whose bounding square has the given side."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    r = (side - 1) / 2.0
    if kind == "circle":
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 255, -1, cv2.LINE_8)
    elif kind == "square":
        x1, y1 = int(round(cx - r)), int(round(cy - r))
        cv2.rectangle(mask, (x1, y1), (x1 + side - 1, y1 + side - 1), 255, -1, cv2.LINE_8)
    elif kind == "triangle":
        # an equilateral triangle inscribed in the circle of radius r, randomly turned
        turn = rng.uniform(0, 2 * np.pi)
        angles = turn + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return mask


def _extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if not len(xs):
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def _area(b: tuple[int, int, int, int]) -> float:
    return float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))


def _intersection(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return float(max(w, 0) * max(h, 0))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - background) > 110:
            return colour
    return 255.0 - background  # the opposite colour always contrasts


def render_image(rng: np.random.Generator, opts: SynthOptions
                 ) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One image: (H, W, 3) uint8 BGR and its objects [(class name, (x1, y1, x2, y2))],
    0-based inclusive pixel boxes."""
    import cv2

    h, w = opts.height, opts.width
    im = _background(rng, h, w)
    counts = np.arange(opts.max_objects + 1)
    probs = np.where(counts == 0, 0.1, 0.9 / opts.max_objects)
    n = int(rng.choice(counts, p=probs))
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    for _ in range(n):
        for _attempt in range(30):
            kind = SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))]
            side = int(rng.integers(opts.min_object, opts.max_object + 1))
            cx = rng.uniform(side / 2 + 1, w - side / 2 - 2)
            cy = rng.uniform(side / 2 + 1, h - side / 2 - 2)
            mask = _shape_mask(rng, kind, side, cx, cy, h, w)
            box = _extent(mask)
            if box is None or min(box[2] - box[0], box[3] - box[1]) < 6:
                continue
            # overlaps are allowed, but an earlier shape stays mostly visible and no two
            # boxes are near-duplicates
            if all(_intersection(box, b) / _area(b) < 0.4
                   and _intersection(box, b) / (_area(box) + _area(b) - _intersection(box, b))
                   < 0.3 for _, b in objects):
                break
        else:
            continue
        local = im[box[1]:box[3] + 1, box[0]:box[2] + 1].reshape(-1, 3).mean(axis=0)
        colour = _contrasting_colour(rng, local)
        shade = rng.normal(0, 10, size=3)
        inside = mask > 0
        im[inside] = np.clip(colour + shade, 0, 255)
        objects.append((kind, box))
    im = cv2.GaussianBlur(im, (3, 3), 0.7)
    im += 6.0 * rng.standard_normal(size=im.shape, dtype=np.float32)
    return np.clip(im, 0, 255, out=im).astype(np.uint8), objects


# ----------------------------------------------------------------------------- writing

def annotation_xml(filename: str, width: int, height: int,
                   objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """VOC XML of one image; boxes 0-based inclusive in, 1-based written."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "synth"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, (x1, y1, x2, y2) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(int(value) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_synth_dataset(out: str | os.PathLike, opts: SynthOptions = SynthOptions(),
                        log=print, every: int = 100) -> dict:
    """Write the dataset (see the module docstring) into ``out``; returns a summary dict
    (images, objects per class, empty images, seconds).  ``log`` gets a progress line every
    ``every`` images (None: silent)."""
    import cv2

    opts.check()
    out = Path(out)
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    total = opts.num_train + opts.num_test
    ids = [f"{i + 1:06d}" for i in range(total)]
    counts = {name: 0 for name in SYNTH_CLASSES}
    empty = 0
    start = time.time()
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng((opts.seed, i))
        im, objects = render_image(rng, opts)
        filename = f"{image_id}.jpg"
        if not cv2.imwrite(str(out / "JPEGImages" / filename), im,
                           [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality]):
            raise OSError(f"cannot write {out / 'JPEGImages' / filename}")
        (out / "Annotations" / f"{image_id}.xml").write_text(
            annotation_xml(filename, opts.width, opts.height, objects))
        for name, _ in objects:
            counts[name] += 1
        empty += not objects
        if log is not None and ((i + 1) % every == 0 or i + 1 == total):
            log(f"[synth] {i + 1}/{total} images ({time.time() - start:.1f}s)")
    train, test = ids[:opts.num_train], ids[opts.num_train:]
    for split, members in (("train", train), ("trainval", train), ("test", test)):
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{m}\n" for m in members))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in SYNTH_CLASSES))
    summary = {"images": total, "train": len(train), "test": len(test),
               "objects": counts, "empty_images": empty}
    (out / "synth.json").write_text(json.dumps({"options": asdict(opts), **summary},
                                               indent=2) + "\n")
    return {**summary, "seconds": round(time.time() - start, 2)}
