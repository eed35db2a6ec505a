"""frcnn.data.blobs: the scale rule at its ties, exact mean subtraction and padding, image
sizes from PNG, JPEG and BMP headers (hand-made bytes), and reading images (mirrored,
refused) with the messages."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from frcnn.data.blobs import (MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, header_size, im_list_to_blob,
                              image_scale, image_size_problem, prep_im_for_blob, read_image)


def test_image_scale_by_hand():
    assert image_scale(300, 400, 600, 1000) == 2.0          # short side 300 -> 600
    assert image_scale(400, 300, 600, 1000) == 2.0
    assert image_scale(300, 600, 600, 1000) == 1000 / 600   # long side capped: 1200 > 1000
    assert image_scale(600, 300, 600, 1000) == 1000 / 600
    assert image_scale(300, 500, 600, 1000) == 2.0          # long side 1000 exactly: no cap
    assert image_scale(500, 300, 600, 1000) == 2.0
    assert image_scale(1200, 1600, 600, 1000) == 0.5
    assert isinstance(image_scale(10, 10, 5, 5), float)


def test_prep_subtracts_per_channel_means_before_resizing():
    im = np.zeros((2, 3, 3), np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 10, 20, 30
    out, scale = prep_im_for_blob(im, (1, 2, 3), 2, 10)
    assert scale == 1.0 and out.dtype == np.float32 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1, 2], [9, 18, 27])
    out, scale = prep_im_for_blob(im, (1, 2, 3), 4, 10)
    assert scale == 2.0 and out.shape == (4, 6, 3)
    np.testing.assert_allclose(out[3, 5], [9, 18, 27])
    out, scale = prep_im_for_blob(im, (0, 0, 0), 4, 3)  # long side 3 caps: scale 1
    assert scale == 1.0 and out.shape == (2, 3, 3)


def test_blob_layout_and_padding():
    a = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    b = np.full((3, 1, 3), 7, np.float32)
    blob = im_list_to_blob([a, b])
    assert blob.shape == (2, 3, 3, 3) and blob.dtype == np.float32
    np.testing.assert_array_equal(blob[0, :, :2, :], a.transpose(2, 0, 1))
    np.testing.assert_array_equal(blob[0, :, 2, :], np.zeros((3, 3)))
    np.testing.assert_array_equal(blob[1, :, :, 0], np.full((3, 3), 7))
    np.testing.assert_array_equal(blob[1, :, :, 1:], np.zeros((3, 3, 2)))
    assert im_list_to_blob([a]).shape == (1, 3, 2, 3)
    with pytest.raises(ValueError, match="needs at least one image"):
        im_list_to_blob([])


def test_read_image_plain_and_mirrored(tmp_path):
    im = np.zeros((2, 3, 3), np.uint8)
    im[0, 0] = [255, 0, 0]
    im[1, 2] = [0, 0, 255]
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), im)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got, im)
    np.testing.assert_array_equal(read_image(str(path), flipped=True), im[:, ::-1])
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="image not found: .*dir.png"):
        read_image(folder)


# ----------------------------------------------------------------------------- sizes

PNG = b"\x89PNG\r\n\x1a\n"


def _png_header(width, height):
    return PNG + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", width, height) + b"\x08\x02\0\0\0"


def _jpeg(*segments):
    """SOI then the given (marker byte, payload) segments, each with its 2-byte length."""
    out = b"\xff\xd8"
    for kind, payload in segments:
        out += bytes([0xFF, kind]) + struct.pack(">H", len(payload) + 2) + payload
    return out


def _bmp(dib_size, width, height):
    """A BMP file header and the start of a DIB header: its size, width and height."""
    return b"BM" + b"\0" * 12 + struct.pack("<Iii", dib_size, width, height)


def _sof(height, width):
    return b"\x08" + struct.pack(">HH", height, width) + b"\x03" + b"\x00" * 9


def test_image_size_limits():
    assert MAX_IMAGE_SIDE == 1 << 20 and MAX_IMAGE_PIXELS == 1 << 28
    assert image_size_problem(1, 1) is None
    assert image_size_problem(MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS // MAX_IMAGE_SIDE) is None
    assert image_size_problem(1 << 14, 1 << 14) is None  # exactly MAX_IMAGE_PIXELS
    assert image_size_problem(0, 5) == f"0x5 pixels: each side must be 1..{MAX_IMAGE_SIDE}"
    assert image_size_problem(5, -1) == f"5x-1 pixels: each side must be 1..{MAX_IMAGE_SIDE}"
    assert image_size_problem(5, 0) == f"5x0 pixels: each side must be 1..{MAX_IMAGE_SIDE}"
    assert image_size_problem(MAX_IMAGE_SIDE + 1, 1).startswith(f"{MAX_IMAGE_SIDE + 1}x1 pixels")
    assert image_size_problem(1, MAX_IMAGE_SIDE + 1) is not None
    assert image_size_problem((1 << 14) + 1, 1 << 14) == (
        f"{(1 << 14) + 1}x{1 << 14} pixels: more than the {MAX_IMAGE_PIXELS} an image may have "
        f"(frcnn.data.blobs.MAX_IMAGE_PIXELS)")


def test_png_jpeg_and_bmp_headers_by_hand(tmp_path):
    path = tmp_path / "x"
    cases = [
        (_png_header(300, 200), (300, 200)),
        (_png_header(300, 200)[:24], (300, 200)),                # just the size
        (_png_header(300, 200)[:23], None),                      # cut inside the size
        (PNG + b"\x00\x00\x00\x0dIHDX" + b"\0" * 12, None),     # no IHDR chunk
        (_jpeg((0xE0, b"JFIF\0" + b"\0" * 9), (0xC0, _sof(480, 640))), (640, 480)),
        (_jpeg((0xC2, _sof(7, 9))), (9, 7)),                     # progressive
        (_jpeg((0xCF, _sof(7, 9))), (9, 7)),                     # the last frame kind
        (_jpeg((0xC4, b"\0" * 20), (0xC8, b"\0" * 3), (0xCC, b"\0" * 4), (0xC1, _sof(2, 3))),
         (3, 2)),                                                # DHT, JPG, DAC skipped
        (b"\xff\xd8\xff" + _jpeg((0xC0, _sof(4, 5)))[2:], (5, 4)),  # a fill byte
        (_jpeg((0xD0, b"\0" * 2), (0xC0, _sof(4, 5))), (5, 4)),  # D0 (past CF): skipped
        (_jpeg((0xE1, b""), (0xC0, _sof(4, 5))), (5, 4)),       # an empty segment (length 2)
        (_jpeg((0xDA, b"\0" * 8), (0xC0, _sof(4, 5))), None),   # scan before the frame
        (_jpeg((0xE0, b"\0" * 4)), None),                        # ends before a frame
        (_jpeg((0xC0, _sof(4, 5)))[:9], None),                   # frame cut short
        (b"\xff\xd8\xff\xe0\x00\x01", None),                     # length < 2
        (b"\xff\xd8\x00\xe0\x00\x10", None),                     # not a marker
        (_bmp(40, 7, -5), (7, 5)),                               # top-down rows
        (_bmp(124, 300, 200) + b"\0" * 30, (300, 200)),           # a V5 header
        (_bmp(40, 7, 5)[:25], None),                             # cut inside the height
        (_bmp(12, 7, 5), None),                                  # OS/2: 16-bit sizes
        (b"GIF89a" + b"\0" * 20, None),
        (b"\xff", None),
    ]
    for data, size in cases:
        path.write_bytes(data)
        assert header_size(path) == size, data


def test_headers_of_real_files(tmp_path):
    im = np.zeros((5, 7, 3), np.uint8)
    for name in ("a.png", "a.jpg", "a.bmp"):
        cv2.imwrite(str(tmp_path / name), im)
        assert header_size(tmp_path / name) == (7, 5)


def test_an_image_claiming_too_many_pixels_is_not_decoded(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(1 << 15, 1 << 15) + b"\0" * 40)
    with pytest.raises(ValueError, match=r"bomb.png: its header claims 32768x32768 pixels: "
                                         r"more than the .*; not decoded"):
        read_image(path)
    path.write_bytes(_png_header(0, 10) + b"\0" * 40)
    with pytest.raises(ValueError, match="claims 0x10 pixels: each side"):
        read_image(path)
    path.write_bytes(_png_header(2, 2) + b"\0" * 40)  # a plausible header, broken data
    with pytest.raises(ValueError, match="cannot be decoded"):
        read_image(path)
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"image .*e.jpg is an empty file"):
        read_image(empty)


# ----------------------------------------------------------------------------- prep checks

@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 4), (4, 5, 1), (0, 5, 3), (4, 0, 3),
                                   (2, 4, 5, 3)])
def test_prep_refuses_what_is_no_image(shape):
    with pytest.raises(ValueError, match=r"an image must be \(H, W, 3\) with H, W >= 1, got "
                                         rf"shape \({shape[0]}, "):
        prep_im_for_blob(np.zeros(shape, np.uint8), (0, 0, 0), 10, 20)


def test_prep_accepts_one_pixel_and_refuses_sides_scaled_under_one():
    out, scale = prep_im_for_blob(np.zeros((1, 1, 3), np.uint8), (0, 0, 0), 1, 1)
    assert out.shape == (1, 1, 3) and scale == 1.0
    # 4 x 4000: scale min(600 / 4, 1000 / 4000) = 0.25: 1 x 1000
    out, scale = prep_im_for_blob(np.zeros((4, 4000, 3), np.uint8), (0, 0, 0), 600, 1000)
    assert scale == 0.25 and out.shape == (1, 1000, 3)
    out, _ = prep_im_for_blob(np.zeros((4000, 4, 3), np.uint8), (0, 0, 0), 600, 1000)
    assert out.shape == (1000, 1, 3)
    for shape in ((1, 3000, 3), (3000, 1, 3), (2, 4000, 3)):  # 1/3 and 0.5 round to 0
        with pytest.raises(ValueError, match=rf"an image of {shape[1]}x{shape[0]} cannot be "
                                             r"scaled by "):
            prep_im_for_blob(np.zeros(shape, np.uint8), (0, 0, 0), 600, 1000)
    with pytest.raises(ValueError, match="cannot be scaled by nan"):
        prep_im_for_blob(np.zeros((4, 4, 3), np.uint8), (0, 0, 0), float("nan"), 1000)
    with pytest.raises(ValueError, match="cannot be scaled by -2"):
        prep_im_for_blob(np.zeros((4, 4, 3), np.uint8), (0, 0, 0), -8, 1000)
    # growing past the largest image: 1 x 1 scaled by 2 ** 21 would be 2 ** 21 a side
    with pytest.raises(ValueError, match=r"an image of 1x1 cannot be scaled by 2\.09715e\+06"):
        prep_im_for_blob(np.zeros((1, 1, 3), np.uint8), (0, 0, 0), 2 ** 21, 2 ** 22)
    with pytest.raises(ValueError, match="cannot be scaled by inf"):
        prep_im_for_blob(np.zeros((4, 4, 3), np.uint8), (0, 0, 0), float("inf"), float("inf"))
