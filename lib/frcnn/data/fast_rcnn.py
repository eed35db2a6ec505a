"""Fast R-CNN training from precomputed proposals (py-faster-rcnn with TRAIN.HAS_RPN False).

This is the data side of py-faster-rcnn's Fast R-CNN nets and of the Fast R-CNN stages of
its alternating optimisation: the RoIDataLayer with six tops samples RoIs from proposals
stored in the roidb, instead of an RPN producing them in the net.

The roidb, py-faster-rcnn's layout (``with_proposals`` builds it from a plain roidb)::

    boxes         (G + P, 4) float32: the G gt boxes, then the P proposals (inclusive pixels)
    gt_classes    (G + P,) int32: classes of the gt boxes, 0 for the proposals
    gt_overlaps   (G + P, K) float32: a proposal's IoU with its best gt box, in that box's
                  class column (0 when it overlaps none); one-hot for gt boxes
    max_overlaps  (G + P,) float32, max_classes (G + P,) int32: max and argmax of gt_overlaps
    bbox_targets  (G + P, 5) float32: [class, dx, dy, dw, dh] towards the best gt box for
                  boxes with max_overlap >= TRAIN.BBOX_THRESH (class 0 and zeros otherwise),
                  normalised per class ((t - mean) / std)

A minibatch of N images (TRAIN.IMS_PER_BATCH; py-faster-rcnn's Fast R-CNN stages use 2)::

    data                  (N, 3, H, W) float32, each image scaled by its own drawn scale
    rois                  (R, 5) float32 [image index, x1, y1, x2, y2], scaled-image pixels
    labels                (R,) float32, 0 for background
    bbox_targets          (R, 4K) float32, in the 4 columns of the RoI's class
    bbox_inside_weights   (R, 4K) float32, TRAIN.BBOX_INSIDE_WEIGHTS in those columns
    bbox_outside_weights  (R, 4K) float32, 1 where the inside weights are > 0

Per image, BATCH_SIZE / N RoIs: at most round(FG_FRACTION * BATCH_SIZE / N) foreground
(max_overlap >= FG_THRESH), the rest background (max_overlap in [BG_THRESH_LO,
BG_THRESH_HI)), drawn without replacement.  BATCH_SIZE -1 keeps every foreground and
background RoI (what OHEMDataLayer then mines from, as abhi2610/ohem's all-RoIs minibatch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from frcnn.boxes import bbox_overlaps, bbox_transform
from frcnn.data.blobs import im_list_to_blob, prep_im_for_blob, read_image
from frcnn.data.minibatch import BlobSettings
from frcnn.data.roidb import append_flipped, entry_from_record


@dataclass(frozen=True)
class FastRCNNParams:
    """Settings of the Fast R-CNN RoI minibatch (cfg TRAIN.* keys)."""
    batch_size: int = 128              # RoIs per minibatch (all images); -1 keeps all
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh_hi: float = 0.5
    bg_thresh_lo: float = 0.1          # py-faster-rcnn's default; its alt-opt cfg says 0.0
    bbox_thresh: float = 0.5
    inside_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    ims_per_batch: int = 1

    def check(self) -> None:
        if self.ims_per_batch < 1:
            raise ValueError(f"TRAIN.IMS_PER_BATCH must be >= 1, got {self.ims_per_batch}")
        if self.batch_size != -1 and (self.batch_size < 1
                                      or self.batch_size % self.ims_per_batch):
            raise ValueError(f"TRAIN.BATCH_SIZE ({self.batch_size}) must be -1 or a positive "
                             f"multiple of TRAIN.IMS_PER_BATCH ({self.ims_per_batch})")
        if not 0 <= self.bg_thresh_lo <= self.bg_thresh_hi:
            raise ValueError(f"TRAIN.BG_THRESH_LO ({self.bg_thresh_lo}) must be in [0, "
                             f"BG_THRESH_HI ({self.bg_thresh_hi})]")


def fast_rcnn_params(cfg) -> FastRCNNParams:
    """FastRCNNParams from the cfg (read at the edges only)."""
    t = cfg.TRAIN
    return FastRCNNParams(batch_size=int(t.BATCH_SIZE), fg_fraction=float(t.FG_FRACTION),
                          fg_thresh=float(t.FG_THRESH), bg_thresh_hi=float(t.BG_THRESH_HI),
                          bg_thresh_lo=float(t.BG_THRESH_LO), bbox_thresh=float(t.BBOX_THRESH),
                          inside_weights=tuple(t.BBOX_INSIDE_WEIGHTS),
                          ims_per_batch=int(t.IMS_PER_BATCH))


# ----------------------------------------------------------------------------- the roidb

def add_proposals(entry: dict, proposals: np.ndarray, num_classes: int) -> dict:
    """A copy of a plain roidb entry (gt boxes only) with ``proposals`` (P, 4) appended, in
    py-faster-rcnn's merged layout (see the module docstring)."""
    gt_boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
    gt_classes = np.asarray(entry["gt_classes"], np.int32)
    props = np.asarray(proposals, np.float32).reshape(-1, 4)
    overlaps = np.zeros((len(props), num_classes), np.float32)
    if len(props) and len(gt_boxes):
        iou = bbox_overlaps(props, gt_boxes)
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(len(props)), best]
        hit = best_iou > 0
        overlaps[np.flatnonzero(hit), gt_classes[best[hit]]] = best_iou[hit]
    gt_overlaps = np.zeros((len(gt_boxes), num_classes), np.float32)
    gt_overlaps[np.arange(len(gt_boxes)), gt_classes] = 1.0
    all_overlaps = np.vstack([gt_overlaps, overlaps])
    out = dict(entry)
    out["boxes"] = np.vstack([gt_boxes, props])
    out["gt_classes"] = np.concatenate([gt_classes, np.zeros(len(props), np.int32)])
    out["gt_overlaps"] = all_overlaps
    out["max_overlaps"] = all_overlaps.max(axis=1) if len(all_overlaps) else np.zeros(0,
                                                                                      np.float32)
    out["max_classes"] = (all_overlaps.argmax(axis=1).astype(np.int32) if len(all_overlaps)
                          else np.zeros(0, np.int32))
    for key in ("difficult", "gt_ishard"):
        if key in entry:
            value = np.asarray(entry[key])
            out[key] = np.concatenate([value, np.zeros(len(props), value.dtype)])
    return out


def regression_targets(entry: dict, bbox_thresh: float) -> np.ndarray:
    """(B, 5) [class, dx, dy, dw, dh] of an entry's boxes towards their best gt box, for the
    boxes with max_overlap >= bbox_thresh (rows of zeros for the others)."""
    boxes = np.asarray(entry["boxes"], np.float64).reshape(-1, 4)
    classes = np.asarray(entry["gt_classes"])
    max_overlaps = np.asarray(entry["max_overlaps"])
    targets = np.zeros((len(boxes), 5), np.float32)
    gt = np.flatnonzero(classes > 0)
    ex = np.flatnonzero(max_overlaps >= bbox_thresh)
    if not len(gt) or not len(ex):
        return targets
    best = bbox_overlaps(boxes[ex], boxes[gt]).argmax(axis=1)
    targets[ex, 0] = np.asarray(entry["max_classes"])[ex]
    targets[ex, 1:] = bbox_transform(boxes[ex], boxes[gt[best]])
    return targets


def target_statistics(roidb: Sequence[dict], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means and standard deviations (K, 4) of the unnormalised bbox_targets over
    a roidb (py-faster-rcnn with BBOX_NORMALIZE_TARGETS_PRECOMPUTED False; row 0, the
    background, is 0 and 1).  A class without examples gets 0 and 1."""
    sums = np.zeros((num_classes, 4))
    squares = np.zeros((num_classes, 4))
    counts = np.zeros((num_classes, 1))
    for e in roidb:
        t = np.asarray(e["bbox_targets"], np.float64)
        for c in range(1, num_classes):
            rows = t[t[:, 0] == c, 1:]
            counts[c] += len(rows)
            sums[c] += rows.sum(axis=0)
            squares[c] += (rows ** 2).sum(axis=0)
    means = np.zeros((num_classes, 4))
    stds = np.ones((num_classes, 4))
    seen = counts[:, 0] > 0
    means[seen] = sums[seen] / counts[seen]
    var = squares[seen] / counts[seen] - means[seen] ** 2
    stds[seen] = np.sqrt(np.maximum(var, 0.0))
    stds[stds < 1e-8] = 1.0  # a constant target: leave it unscaled rather than divide by 0
    return means.astype(np.float32), stds.astype(np.float32)


def normalize_targets(roidb: Sequence[dict], means: np.ndarray, stds: np.ndarray) -> None:
    """Normalise every entry's bbox_targets in place: (t - means[c]) / stds[c] per class
    (means and stds (K, 4), or 4 values for all classes)."""
    m = np.asarray(means, np.float32).reshape(-1, 4)
    s = np.asarray(stds, np.float32).reshape(-1, 4)
    for e in roidb:
        t = e["bbox_targets"]
        fg = np.flatnonzero(t[:, 0] > 0)
        cls = t[fg, 0].astype(np.int64) if len(m) > 1 else np.zeros(len(fg), np.int64)
        t[fg, 1:] = (t[fg, 1:] - m[cls]) / s[cls]


def fast_rcnn_roidb(records: Sequence[dict], proposals: Sequence[np.ndarray], num_classes: int,
                    flip: bool, params: FastRCNNParams, use_difficult: bool = False,
                    normalize: bool = True,
                    stats: tuple[Sequence[float], Sequence[float]] | None = None,
                    log: Callable[[str], None] | None = print
                    ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """The Fast R-CNN training roidb, py-faster-rcnn's way: gt boxes and proposals merged
    (dataset order), flipped copies appended, entries without a foreground or background
    RoI removed (reported), regression targets computed and normalised.

    Args:
        records: the dataset's image records (frcnn.data.voc), in dataset order.
        proposals: one (P_i, 4) array per record, original-image pixels.
        stats: (means, stds) of 4 values (TRAIN.BBOX_NORMALIZE_MEANS / STDS, the
            precomputed case) or None to compute them per class from the data.
        normalize: TRAIN.BBOX_NORMALIZE_TARGETS.
    Returns:
        (roidb, means (K, 4), stds (K, 4)): what the snapshots fold into bbox_pred.
    """
    if len(proposals) != len(records):
        raise ValueError(f"{len(proposals)} proposal sets for {len(records)} images: the "
                         f"proposals must list every image of the dataset, in its order")
    roidb = [add_proposals(entry_from_record(r, num_classes, use_difficult), p, num_classes)
             for r, p in zip(records, proposals)]
    if flip:
        roidb = append_flipped(roidb)  # flips gt boxes and proposals alike
    kept = [e for e in roidb if has_training_rois(e, params)]
    if log is not None:
        note = f"; removed {len(roidb) - len(kept)} without a usable RoI" if len(kept) < len(
            roidb) else ""
        log(f"[roidb] {len(records)} images{' + flipped' if flip else ''} with "
            f"{sum(len(p) for p in proposals)} proposals -> {len(kept)} entries{note}")
    if not kept:
        raise ValueError(f"no image among {len(records)} has a foreground or background RoI "
                         f"(check the proposals file and TRAIN.FG_THRESH / BG_THRESH_*)")
    for e in kept:
        e["bbox_targets"] = regression_targets(e, params.bbox_thresh)
    if stats is None:
        means, stds = target_statistics(kept, num_classes)
    else:
        means = np.tile(np.asarray(stats[0], np.float32).reshape(1, 4), (num_classes, 1))
        stds = np.tile(np.asarray(stats[1], np.float32).reshape(1, 4), (num_classes, 1))
    if normalize:
        normalize_targets(kept, means, stds)
    return kept, means, stds


def has_training_rois(entry: dict, params: FastRCNNParams) -> bool:
    """Whether an entry has a foreground or a background RoI (py-faster-rcnn's filter)."""
    o = np.asarray(entry["max_overlaps"])
    return bool(np.any(o >= params.fg_thresh)
                or np.any((o < params.bg_thresh_hi) & (o >= params.bg_thresh_lo)))


def check_fast_rcnn_roidb(roidb: Sequence[dict], num_classes: int) -> None:
    """Raise ValueError naming the entry when a roidb lacks what Fast R-CNN minibatches
    read (boxes, max_overlaps, max_classes, bbox_targets (B, 5), image, flipped)."""
    if not len(roidb):
        raise ValueError("the roidb is empty")
    for i, e in enumerate(roidb):
        where = f"roidb entry {i} ({e.get('image', '?')})"
        missing = [k for k in ("image", "boxes", "max_overlaps", "max_classes",
                               "bbox_targets", "flipped") if k not in e]
        if missing:
            raise ValueError(f"{where}: missing keys {missing} (a Fast R-CNN roidb holds the "
                             f"proposals and their targets: frcnn.data.fast_rcnn)")
        n = len(np.asarray(e["boxes"]).reshape(-1, 4))
        t = np.asarray(e["bbox_targets"])
        if t.shape != (n, 5) or len(np.asarray(e["max_overlaps"])) != n:
            raise ValueError(f"{where}: boxes ({n}), max_overlaps and bbox_targets {t.shape} "
                             f"must have one row per box (bbox_targets (B, 5))")
        classes = np.asarray(e["max_classes"])
        if n and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"{where}: max_classes outside 0..{num_classes - 1}")


# ----------------------------------------------------------------------------- minibatches

def sample_image_rois(entry: dict, fg_per_image: int, rois_per_image: int, num_classes: int,
                      params: FastRCNNParams, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's RoIs: (boxes (B, 4) in image pixels, labels (B,), bbox_targets (B, 4K),
    inside weights (B, 4K)); foreground first.  rois_per_image -1 keeps every fg and bg RoI."""
    overlaps = np.asarray(entry["max_overlaps"])
    fg = np.flatnonzero(overlaps >= params.fg_thresh)
    bg = np.flatnonzero((overlaps < params.bg_thresh_hi) & (overlaps >= params.bg_thresh_lo))
    if rois_per_image > 0:
        num_fg = min(fg_per_image, len(fg))
        fg = rng.choice(fg, size=num_fg, replace=False) if num_fg else fg[:0]
        num_bg = min(rois_per_image - num_fg, len(bg))
        bg = rng.choice(bg, size=num_bg, replace=False) if num_bg else bg[:0]
    keep = np.concatenate([fg, bg]).astype(np.int64)
    labels = np.asarray(entry["max_classes"])[keep].astype(np.float32)
    labels[len(fg):] = 0
    boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)[keep]
    data = np.asarray(entry["bbox_targets"], np.float32)[keep]
    targets = np.zeros((len(keep), 4 * num_classes), np.float32)
    inside = np.zeros_like(targets)
    rows = np.flatnonzero(data[:, 0] > 0)
    cols = 4 * data[rows, 0].astype(np.int64)[:, None] + np.arange(4)
    targets[rows[:, None], cols] = data[rows, 1:]
    inside[rows[:, None], cols] = params.inside_weights
    return boxes, labels, targets, inside


def get_fast_rcnn_minibatch(entries: Sequence[dict], settings: BlobSettings, num_classes: int,
                            params: FastRCNNParams, rng: np.random.Generator
                            ) -> dict[str, np.ndarray]:
    """The six blobs of a Fast R-CNN minibatch of ``entries`` (see the module docstring)."""
    n = len(entries)
    if n < 1:
        raise ValueError("a minibatch needs at least one image")
    rois_per_image = params.batch_size // n if params.batch_size > 0 else -1
    fg_per_image = int(np.round(params.fg_fraction * rois_per_image)) if rois_per_image > 0 else 0
    ims, parts = [], []
    for i, entry in enumerate(entries):
        target = settings.scales[int(rng.integers(len(settings.scales)))]
        im = read_image(entry["image"], entry["flipped"])
        if "width" in entry and (im.shape[1], im.shape[0]) != (entry["width"], entry["height"]):
            raise ValueError(f"image {entry['image']} is {im.shape[1]}x{im.shape[0]} but its "
                             f"annotation says {entry['width']}x{entry['height']}")
        im, scale = prep_im_for_blob(im, settings.pixel_means, target, settings.max_size)
        ims.append(im)
        boxes, labels, targets, inside = sample_image_rois(entry, fg_per_image, rois_per_image,
                                                           num_classes, params, rng)
        rois = np.hstack([np.full((len(boxes), 1), i, np.float32), boxes * scale])
        parts.append((rois, labels, targets, inside))
    rois, labels, targets, inside = (np.concatenate([p[j] for p in parts]) for j in range(4))
    if not len(rois):
        raise ValueError(f"no RoI in the minibatch of {[e['image'] for e in entries]} "
                         f"(the roidb should have been filtered)")
    return {"data": im_list_to_blob(ims), "rois": rois.astype(np.float32),
            "labels": labels.astype(np.float32), "bbox_targets": targets,
            "bbox_inside_weights": inside,
            "bbox_outside_weights": (inside > 0).astype(np.float32)}
