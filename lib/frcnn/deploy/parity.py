"""How far two backends' detections of one image are apart, pairing boxes by position.

Detections come ranked by score; where two scores are closer than the backends' float
differences (1e-6 or so) the two lists may hold the same boxes in another order, so a
row-by-row comparison would report the distance between two different objects.  Here each
detection of the reference is paired with the nearest unpaired one of the other list
(largest coordinate difference, greedily in the reference's order), per class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def paired_differences(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest |box| difference in px, largest |score| difference) over the detections of
    one class, (N, 5) and (M, 5) x1 y1 x2 y2 score, each reference row paired with the
    nearest unpaired row of ``other`` (min(N, M) pairs; (0.0, 0.0) when either is empty)."""
    a = np.asarray(reference, np.float64).reshape(-1, 5)
    b = np.asarray(other, np.float64).reshape(-1, 5)
    box = score = 0.0
    free = np.ones(len(b), bool)
    for row in a:
        if not free.any():
            break
        dist = np.abs(b[:, :4] - row[:4]).max(axis=1)
        dist[~free] = np.inf
        j = int(dist.argmin())
        free[j] = False
        box = max(box, float(dist[j]))
        score = max(score, float(abs(b[j, 4] - row[4])))
    return box, score


def compare_images(reference: Sequence[Sequence[np.ndarray]],
                   other: Sequence[Sequence[np.ndarray]]) -> dict:
    """Per-image detections (index 0 the background, skipped) of two backends.

    Returns {'images', 'images_same_counts' (every class keeps as many detections),
    'detections' (the reference's), 'max_box_diff', 'max_score_diff'}: the differences
    over the images with the same counts (``paired_differences``); an image where a
    detection has no counterpart (a score at the threshold, an NMS decision at its IoU)
    counts only in images_same_counts.
    """
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} images of reference detections but {len(other)}")
    same, count, box, score = 0, 0, 0.0, 0.0
    for a, b in zip(reference, other):
        count += sum(len(x) for x in a[1:])
        if not all(len(x) == len(y) for x, y in zip(a[1:], b[1:])):
            continue
        same += 1
        for x, y in zip(a[1:], b[1:]):
            db, ds = paired_differences(x, y)
            box, score = max(box, db), max(score, ds)
    return {"images": len(reference), "images_same_counts": int(same), "detections": count,
            "max_box_diff": box, "max_score_diff": score}
