"""Minibatches for end-to-end Faster R-CNN training (py-faster-rcnn's get_minibatch with
cfg.TRAIN.HAS_RPN), and the shuffled order they are drawn in.

A minibatch is one image (end-to-end training takes one image a step)::

    data      (1, 3, H, W) float32: BGR minus pixel means, scaled (see frcnn.data.blobs)
    im_info   (1, 3) float32: H, W, scale
    gt_boxes  (G, 5) float32: x1 y1 x2 y2 class, boxes times scale (scaled-image pixels)

The order: a fresh permutation every epoch from a numpy Generator; with aspect grouping,
landscape (W >= H) and portrait images are permuted separately, cut into pairs, and the
pairs shuffled, so consecutive images share an orientation (py-faster-rcnn's grouping).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from frcnn.data.blobs import im_list_to_blob, prep_im_for_blob, read_image


@dataclass(frozen=True)
class BlobSettings:
    """How images become blobs: short sides to draw from, long-side cap, BGR means."""

    scales: tuple[float, ...] = (600,)
    max_size: float = 1000
    pixel_means: tuple[float, float, float] = (102.9801, 115.9465, 122.7717)

    def check(self) -> None:
        if not self.scales or any(s <= 0 for s in self.scales) or self.max_size <= 0:
            raise ValueError(f"scales {self.scales} and max_size {self.max_size} must be "
                             f"positive")
        if len(self.pixel_means) != 3:
            raise ValueError(f"pixel_means must be 3 BGR values, got {self.pixel_means}")


def get_minibatch(entries: Sequence[dict], settings: BlobSettings,
                  rng: np.random.Generator, allow_empty: bool = False) -> dict[str, np.ndarray]:
    """The blobs of one training image (see the module docstring).

    ``entries`` holds one roidb entry; its target short side is drawn from settings.scales
    with ``rng``.  Raises ValueError naming the image when the file is unreadable, its size
    differs from the entry's, or it has no gt boxes (unless ``allow_empty``: then gt_boxes
    is (0, 5), a negative image).
    """
    if len(entries) != 1:
        raise ValueError(f"end-to-end training takes one image per minibatch, got "
                         f"{len(entries)} (set TRAIN.IMS_PER_BATCH 1)")
    entry = entries[0]
    target = settings.scales[int(rng.integers(len(settings.scales)))]
    im = read_image(entry["image"], entry["flipped"])
    if (im.shape[1], im.shape[0]) != (entry["width"], entry["height"]):
        raise ValueError(f"image {entry['image']} is {im.shape[1]}x{im.shape[0]} but its "
                         f"annotation says {entry['width']}x{entry['height']}")
    im, scale = prep_im_for_blob(im, settings.pixel_means, target, settings.max_size)
    data = im_list_to_blob([im])
    classes = np.asarray(entry["gt_classes"])
    keep = np.flatnonzero(classes != 0)
    if not len(keep) and not allow_empty:
        raise ValueError(f"image {entry['image']} has no gt boxes (the roidb should have "
                         f"been filtered)")
    gt_boxes = np.empty((len(keep), 5), np.float32)
    gt_boxes[:, :4] = np.asarray(entry["boxes"], np.float32)[keep] * scale
    gt_boxes[:, 4] = classes[keep]
    im_info = np.array([[data.shape[2], data.shape[3], scale]], np.float32)
    return {"data": data, "im_info": im_info, "gt_boxes": gt_boxes}


def shuffled_order(widths: np.ndarray, heights: np.ndarray, rng: np.random.Generator,
                   aspect_grouping: bool) -> np.ndarray:
    """One epoch's order of image indices (see the module docstring)."""
    n = len(widths)
    if not aspect_grouping:
        return rng.permutation(n)
    landscape = np.asarray(widths) >= np.asarray(heights)
    pairs: list[np.ndarray] = []
    for group in (np.flatnonzero(landscape), np.flatnonzero(~landscape)):
        group = rng.permutation(group)
        pairs.extend(group[i:i + 2] for i in range(0, len(group), 2))
    order = rng.permutation(len(pairs))
    return np.concatenate([pairs[i] for i in order]) if pairs else np.zeros(0, np.int64)


Builder = Callable[[Sequence[dict], np.random.Generator], dict]


class MinibatchSource:
    """Endless minibatches from a roidb: ``next()`` -> blobs dict (see module docstring).

    Args:
        roidb: entries (frcnn.data.roidb), each with at least one gt box.
        settings: the blob settings.
        seed: seeds the one Generator used for the order, the scale draws and any sampling.
        aspect_grouping: see ``shuffled_order``.
        ims_per_batch: images per minibatch (consecutive in the order).
        build: ``build(entries, rng)`` -> blobs; default ``get_minibatch`` with
            ``settings`` (end-to-end blobs; frcnn.data.fast_rcnn has the Fast R-CNN ones).
    """

    def __init__(self, roidb: Sequence[dict], settings: BlobSettings, seed: int,
                 aspect_grouping: bool = True, ims_per_batch: int = 1,
                 build: Builder | None = None):
        settings.check()
        if not len(roidb):
            raise ValueError("the roidb is empty")
        if ims_per_batch < 1:
            raise ValueError(f"ims_per_batch must be >= 1, got {ims_per_batch}")
        self.roidb = list(roidb)
        self.settings = settings
        self.aspect_grouping = aspect_grouping
        self.ims_per_batch = ims_per_batch
        self._build: Builder = build or (lambda entries, rng: get_minibatch(entries, settings,
                                                                           rng))
        self.rng = np.random.default_rng(seed)
        self._widths = np.array([e["width"] for e in self.roidb])
        self._heights = np.array([e["height"] for e in self.roidb])
        self._order = np.zeros(0, np.int64)
        self._cursor = 0
        self.epoch = 0

    def next_index(self) -> int:
        """The roidb index of the next image; reshuffles at each epoch's end."""
        if self._cursor >= len(self._order):
            self._order = shuffled_order(self._widths, self._heights, self.rng,
                                         self.aspect_grouping)
            self._cursor = 0
            self.epoch += 1
        i = int(self._order[self._cursor])
        self._cursor += 1
        return i

    def next(self) -> dict[str, np.ndarray]:
        entries = [self.roidb[self.next_index()] for _ in range(self.ims_per_batch)]
        return self._build(entries, self.rng)

    def get_state(self) -> dict:
        """Where the source is, JSON-able: the epoch's order, the cursor in it, the epoch
        count, the Generator's state and the roidb's size.  ``set_state`` of a source on the
        same roidb continues with exactly the minibatches this one would give next."""
        from frcnn.train_state import rng_state

        return {"order": self._order.tolist(), "cursor": int(self._cursor),
                "epoch": int(self.epoch), "rng": rng_state(self.rng),
                "roidb_size": len(self.roidb)}

    def set_state(self, state: dict) -> None:
        """Continue from a ``get_state``; ValueError when it is not of a roidb this size."""
        from frcnn.train_state import set_rng_state

        try:
            order = np.asarray(state["order"], np.int64).reshape(-1)
            cursor, epoch, size = int(state["cursor"]), int(state["epoch"]), state["roidb_size"]
            rng = state["rng"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a minibatch source state: {e!r}") from None
        if size != len(self.roidb):
            raise ValueError(f"the saved data state is of a roidb of {size} entries but this "
                             f"one has {len(self.roidb)} (another dataset, split or flip "
                             f"setting than the run's)")
        if not 0 <= cursor <= len(order) or (len(order) and not
                                            (0 <= order.min() and order.max() < size)):
            raise ValueError(f"the saved data state's order or cursor ({cursor} of "
                             f"{len(order)}) does not fit a roidb of {size} entries")
        set_rng_state(self.rng, rng)
        self._order, self._cursor, self.epoch = order, cursor, epoch
