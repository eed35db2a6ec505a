"""Fuzz: image files and arrays before they reach OpenCV (frcnn.data.blobs).

Contract: ``read_image`` returns a (H, W, 3) uint8 image or raises FileNotFoundError
(missing) or ValueError naming the file (empty, unreadable, undecodable, or a header
claiming more pixels than an image may have, refused before decoding);
``prep_im_for_blob`` returns a float32 (H', W', 3) image with H', W' >= 1 and its scale, or
raises ValueError; ``im_list_to_blob`` stacks them.  No cv2.error, no crash, no gigabytes.
"""
from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from frcnn.data import blobs
from tests.fuzz._fuzz import FUZZ, count, mutated_bytes, outcome


def encoded(image: np.ndarray, ext: str) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@st.composite
def small_images(draw) -> np.ndarray:
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    shape = (h, w) if channels is None else (h, w, channels)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int, rows: int) -> bytes:
    """A valid PNG header claiming width x height, with ``rows`` rows of zero pixels (a
    few kilobytes that would decode to width * height * 3 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00" * min(rows * (3 * width + 1), 1 << 18), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw)
            + _png_chunk(b"IEND", b""))


def jpeg_claiming(valid: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF) claims width x height."""
    data = bytearray(valid)
    for i in range(2, len(data) - 9):
        if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xC2:
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            break
    return bytes(data)


def check_read(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(raw)
        result = outcome(blobs.read_image, (ValueError, FileNotFoundError), path,
                         flipped=bool(len(raw) % 2))
    if not isinstance(result, BaseException):
        assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
        assert result.shape[0] >= 1 and result.shape[1] >= 1
        assert result.shape[0] * result.shape[1] <= blobs.MAX_IMAGE_PIXELS
    else:
        assert str(path) in str(result), result
    return result


@FUZZ
@given(image=small_images(), ext=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".webp"]),
       data=st.data())
def test_mutated_image_files(image, ext, data):
    count()
    raw = encoded(image, ext)
    if data.draw(st.integers(0, 4)):
        raw = data.draw(mutated_bytes(raw))
    check_read(raw)


_SIDES = st.one_of(st.integers(0, 70000), st.sampled_from(
    [0, 1, 20000, 65535, 1 << 20, (1 << 20) + 1, 1 << 24, 2 ** 31 - 1, 2 ** 32 - 1]))


@FUZZ
@given(width=_SIDES, height=_SIDES, rows=st.integers(0, 64), kind=st.sampled_from(["png", "jpg"]))
def test_headers_claiming_huge_sizes(width, height, rows, kind):
    """A few kilobytes that claim gigapixels are refused before OpenCV decodes them."""
    count()
    if kind == "png":
        raw = png_claiming(width, height, rows)
    else:
        raw = jpeg_claiming(encoded(np.zeros((8, 8, 3), np.uint8), ".jpg"),
                            min(width, 65535), min(height, 65535))
    result = check_read(raw)
    w, h = (width, height) if kind == "png" else (min(width, 65535), min(height, 65535))
    if w * h > blobs.MAX_IMAGE_PIXELS or w > blobs.MAX_IMAGE_SIDE or h > blobs.MAX_IMAGE_SIDE:
        assert isinstance(result, ValueError) and "claims" in str(result), result


@FUZZ
@given(h=st.integers(0, 3000), w=st.integers(0, 3000),
       channels=st.sampled_from([None, 0, 1, 3, 4]),
       target=st.one_of(st.integers(-5, 2000), st.floats(-1, 2000),
                        st.sampled_from([0.0, float("nan"), float("inf"), 1e-300, 1e300])),
       max_size=st.one_of(st.integers(-5, 3000), st.floats(-1, 3000),
                          st.sampled_from([0.0, float("nan"), float("inf"), 1e-300, 1e300])),
       dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int16]))
def test_prep_im_for_blob(h, w, channels, target, max_size, dtype):
    count()
    if h * w > 4_000_000:
        h = w = 2000
    shape = (h, w) if channels is None else (h, w, channels)
    if h and w and target == target and max_size == max_size:  # not nan
        scale = min(target / min(h, w), max_size / max(h, w))
        # allowed but slow (a 1 GB resize): a legitimate case, not one to repeat thousands
        # of times; sizes past the limit (refused) stay in
        assume(not (scale > 0 and 1 << 22 < h * w * scale * scale
                    <= blobs.MAX_IMAGE_PIXELS * 1.01))
    im = np.full(shape, 100, dtype)
    result = outcome(blobs.prep_im_for_blob, (ValueError,), im, (102.9, 115.9, 122.7),
                     target, max_size)
    if not isinstance(result, BaseException):
        out, scale = result
        assert out.dtype == np.float32 and out.ndim == 3 and out.shape[2] == 3
        assert out.shape[0] >= 1 and out.shape[1] >= 1
        assert np.isfinite(scale) and scale > 0
        blob = blobs.im_list_to_blob([out])
        assert blob.shape == (1, 3, out.shape[0], out.shape[1])
