"""Images to network input blobs, as py-faster-rcnn prepares them.

An image is read as BGR uint8 (H, W, 3) with OpenCV, converted to float32, the per-channel
BGR ``pixel_means`` subtracted, then resized (cv2.INTER_LINEAR) by

    scale = min(target_size / min(H, W), max_size / max(H, W))

so that the short side is ``target_size`` unless the long side would pass ``max_size``.
Blobs are (N, 3, H', W') float32, images zero-padded at the bottom and right to the largest.

Sizes are checked before OpenCV decodes: a PNG or JPEG whose header claims more than
``MAX_IMAGE_PIXELS`` (or a side over ``MAX_IMAGE_SIDE``, OpenCV's own limit) is refused
with a ValueError, since a small compressed file can decode to gigabytes; the dataset
readers refuse such sizes claimed by an annotation.
"""
from __future__ import annotations

import os
import struct
from typing import Sequence

import numpy as np

#: the longest side an image may have (OpenCV's imread reads no more)
MAX_IMAGE_SIDE = 1 << 20
#: the most pixels an image may have (1 << 28: 805 MB as BGR bytes, 3.2 GB as float32)
MAX_IMAGE_PIXELS = 1 << 28


def image_size_problem(width: float, height: float) -> str | None:
    """Why a claimed width x height is no image size (not positive, or too large), or None."""
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        return f"{width}x{height} pixels: each side must be 1..{MAX_IMAGE_SIDE}"
    if width * height > MAX_IMAGE_PIXELS:
        return (f"{width}x{height} pixels: more than the {MAX_IMAGE_PIXELS} an image may have "
                f"(frcnn.data.blobs.MAX_IMAGE_PIXELS)")
    return None


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from a PNG's, JPEG's or BMP's header without decoding it; None for
    other formats or a header that cannot be read (OpenCV then decides)."""
    with open(path, "rb") as f:
        head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM" and len(head) >= 26 and head[14:18] != b"\x0c\x00\x00\x00":
            width, height = struct.unpack("<ii", head[18:26])  # height < 0: top-down rows
            return width, abs(height)
        if head[:2] != b"\xff\xd8":
            return None
        f.seek(2)
        while True:  # JPEG segments up to the frame header (SOF0..SOF15 but C4, C8, CC)
            marker = f.read(4)
            if len(marker) < 4 or marker[0] != 0xFF:
                return None
            kind, length = marker[1], struct.unpack(">H", marker[2:])[0]
            if kind == 0xFF:  # a fill byte before the marker
                f.seek(-3, os.SEEK_CUR)
                continue
            if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
                frame = f.read(5)
                if len(frame) < 5:
                    return None
                height, width = struct.unpack(">HH", frame[1:5])
                return width, height
            if kind == 0xDA or length < 2:  # scan data before any frame header
                return None
            f.seek(length - 2, os.SEEK_CUR)


def read_image(path: str | os.PathLike, flipped: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 BGR image, mirrored left-right if ``flipped``.

    Raises FileNotFoundError (missing) or ValueError (empty, unreadable, too large for its
    header or undecodable) naming the file.
    """
    import cv2

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        if os.path.getsize(path) == 0:
            raise ValueError(f"image {path} is an empty file")
        size = header_size(path)
    except OSError as e:
        raise ValueError(f"image {path} cannot be read: {e}") from None
    problem = size and image_size_problem(*size)
    if problem:
        raise ValueError(f"image {path}: its header claims {problem}; not decoded")
    try:
        im = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. a BMP or TIFF claiming a side over OpenCV's limit
        raise ValueError(f"image {path} cannot be decoded: {str(e).strip()[:200]}") from None
    if im is None or im.size == 0:
        raise ValueError(f"image {path} cannot be decoded (not an image OpenCV reads?)")
    return im[:, ::-1] if flipped else im


def image_scale(height: int, width: int, target_size: float, max_size: float) -> float:
    """The resize factor of a (height, width) image; see the module docstring."""
    short, long = min(height, width), max(height, width)
    return float(min(target_size / short, max_size / long))


def prep_im_for_blob(im: np.ndarray, pixel_means: Sequence[float], target_size: float,
                     max_size: float) -> tuple[np.ndarray, float]:
    """(resized mean-subtracted float32 (H', W', 3) image, scale).

    Raises ValueError for an image that is not (H, W, 3) with H, W >= 1, or that the scale
    would shrink below one pixel a side (an extreme aspect ratio) or grow past
    ``image_size_problem``'s limits.
    """
    import cv2

    shape = np.shape(im)
    if len(shape) != 3 or shape[2] != 3 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"an image must be (H, W, 3) with H, W >= 1, got shape {shape}")
    scale = image_scale(shape[0], shape[1], target_size, max_size)
    # cv2.resize's own rounding of the output size
    size = (int(round(shape[1] * scale)), int(round(shape[0] * scale))) \
        if np.isfinite(scale) and scale > 0 else (0, 0)
    if min(size) < 1 or image_size_problem(*size):
        raise ValueError(f"an image of {shape[1]}x{shape[0]} cannot be scaled by {scale:g} "
                         f"(target size {target_size}, max size {max_size}): it would be "
                         f"{size[0]}x{size[1]} pixels")
    im = np.asarray(im, np.float32) - np.asarray(pixel_means, np.float32).reshape(1, 1, 3)
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
