"""Images to network input blobs, as py-faster-rcnn prepares them.

An image is read as BGR uint8 (H, W, 3) with OpenCV, converted to float32, the per-channel
BGR ``pixel_means`` subtracted, then resized (cv2.INTER_LINEAR) by

    scale = min(target_size / min(H, W), max_size / max(H, W))

so that the short side is ``target_size`` unless the long side would pass ``max_size``.
Blobs are (N, 3, H', W') float32, images zero-padded at the bottom and right to the largest.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def read_image(path: str | os.PathLike, flipped: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 BGR image, mirrored left-right if ``flipped``.

    Raises FileNotFoundError (missing) or ValueError (empty or undecodable) naming the file.
    """
    import cv2

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"image {path} is an empty file")
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if im is None:
        raise ValueError(f"image {path} cannot be decoded (not an image OpenCV reads?)")
    return im[:, ::-1] if flipped else im


def image_scale(height: int, width: int, target_size: float, max_size: float) -> float:
    """The resize factor of a (height, width) image; see the module docstring."""
    short, long = min(height, width), max(height, width)
    return float(min(target_size / short, max_size / long))


def prep_im_for_blob(im: np.ndarray, pixel_means: Sequence[float], target_size: float,
                     max_size: float) -> tuple[np.ndarray, float]:
    """(resized mean-subtracted float32 (H', W', 3) image, scale)."""
    import cv2

    im = np.asarray(im, np.float32) - np.asarray(pixel_means, np.float32).reshape(1, 1, 3)
    scale = image_scale(im.shape[0], im.shape[1], target_size, max_size)
    if scale != 1.0:
        im = cv2.resize(im, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return im, scale


def im_list_to_blob(ims: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3, max H, max W) float32 from (H, W, 3) images, zero padded."""
    if not len(ims):
        raise ValueError("im_list_to_blob needs at least one image")
    h = max(im.shape[0] for im in ims)
    w = max(im.shape[1] for im in ims)
    blob = np.zeros((len(ims), 3, h, w), np.float32)
    for i, im in enumerate(ims):
        blob[i, :, :im.shape[0], :im.shape[1]] = np.transpose(im, (2, 0, 1))
    return blob
