"""Image / CompressedImage <-> numpy: round trips with row padding and both byte orders,
colour conversion, and the errors malformed messages give.

    .venv/bin/pytest test/ros/test_conversions.py -q
"""
from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from uda_seg_ros import conversions
from uda_seg_ros.conversions import (
    DEFAULT_MAX_INPUT_PIXELS,
    ENCODINGS,
    ImageConversionError,
    check_compressed,
    check_image,
    compressed_size,
    compressed_to_rgb,
    image_to_numpy,
    numpy_to_image,
    rgb_to_compressed,
    to_rgb,
)

RNG = np.random.default_rng(0)
YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")


def sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    channels, dtype = ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("padding", [0, 1, 2, 64])
@pytest.mark.parametrize("big_endian", [False, True])
def test_round_trip(encoding, padding, big_endian):
    width = 6 if encoding in YUV422 else 7  # yuv422 holds pixels in pairs
    array = sample(encoding, 5, width)
    channels, dtype = ENCODINGS[encoding]
    padding -= padding % dtype.itemsize  # a 16-bit step stays a whole number of channels
    step = width * channels * dtype.itemsize + padding
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(array, encoding, header, step=step, is_bigendian=big_endian)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, width, step, encoding)
    assert len(msg.data) == 5 * step and msg.is_bigendian == int(big_endian)
    assert msg.header == header
    back, enc = image_to_numpy(msg)
    assert enc == encoding and back.dtype == dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_mono16_byte_order_on_the_wire():
    value = np.array([[0x0102, 0xA0B0]], dtype=np.uint16)
    assert bytes(numpy_to_image(value, "mono16", is_bigendian=True).data) == b"\x01\x02\xa0\xb0"
    assert bytes(numpy_to_image(value, "mono16", is_bigendian=False).data) == b"\x02\x01\xb0\xa0"
    # A hand-made big-endian message with 2 bytes of row padding reads back right.
    msg = Image(height=2, width=1, step=4, encoding="mono16", is_bigendian=1)
    msg.data = b"\x01\x02\xff\xff\x03\x04\xff\xff"
    np.testing.assert_array_equal(image_to_numpy(msg)[0], [[0x0102], [0x0304]])


def test_8_bit_images_are_views_on_the_message_data():
    """8-bit pixels are not copied, padded rows or not (a view on msg.data, as the
    docstring promises; one copy less per frame); 16-bit ones in the other byte order are.
    Mutant: `itemsize >= 1` sends 8-bit data through the byte-order copy."""
    for step in (21, 26):
        msg = numpy_to_image(sample("rgb8"), "rgb8", step=step)
        array, _ = image_to_numpy(msg)
        assert np.shares_memory(array, np.frombuffer(msg.data, np.uint8)), step
    other = sys.byteorder != "big"
    msg = numpy_to_image(sample("mono16"), "mono16", is_bigendian=other)
    assert not np.shares_memory(image_to_numpy(msg)[0], np.frombuffer(msg.data, np.uint8))


def test_padding_bytes_and_trailing_data_are_ignored():
    msg = Image(height=2, width=2, step=8, encoding="mono8")
    msg.data = bytes([1, 2, 99, 99, 99, 99, 99, 99, 3, 4, 99, 99, 99, 99, 99, 99, 7, 7])
    np.testing.assert_array_equal(image_to_numpy(msg)[0], [[1, 2], [3, 4]])


def test_to_rgb_for_every_encoding():
    rgb = sample("rgb8")
    alpha = sample("mono8")[..., None]
    assert to_rgb(rgb, "rgb8") is rgb
    np.testing.assert_array_equal(to_rgb(rgb[..., ::-1].copy(), "bgr8"), rgb)
    np.testing.assert_array_equal(to_rgb(np.dstack([rgb, alpha]), "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb(np.dstack([rgb[..., ::-1], alpha]), "bgra8"), rgb)
    grey = rgb[..., 0].copy()
    np.testing.assert_array_equal(to_rgb(grey, "mono8"), np.dstack([grey] * 3))
    deep = grey.astype(np.uint16) * 256 + 255  # the low byte must not matter
    np.testing.assert_array_equal(to_rgb(deep, "mono16"), np.dstack([grey] * 3))


def test_to_rgb_reads_padded_rows():
    msg = numpy_to_image(sample("bgr8"), "bgr8", step=7 * 3 + 5)
    bgr, enc = image_to_numpy(msg)
    np.testing.assert_array_equal(to_rgb(bgr, enc), bgr[..., ::-1])



# -- camera encodings: bayer, yuv422, 16-bit colour -----------------------------------------
def with_garbage_padding(array: np.ndarray, encoding: str, padding: int = 6,
                         big_endian: bool = False) -> Image:
    """`array` as `encoding` with `padding` bytes of 0xAB after every row: a reader that
    ignores `step` reads them as pixels."""
    msg = numpy_to_image(array, encoding, step=None, is_bigendian=big_endian)
    row_bytes = msg.step
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, row_bytes)
    padded = np.full((msg.height, row_bytes + padding), 0xAB, np.uint8)
    padded[:, :row_bytes] = rows
    msg.step, msg.data = row_bytes + padding, padded.tobytes()
    return msg


def decoded(msg: Image) -> np.ndarray:
    return to_rgb(*image_to_numpy(msg))


def mosaic(pattern: str, rgb: tuple[int, int, int], height: int = 7, width: int = 9) -> np.ndarray:
    """A Bayer mosaic of one colour; `pattern` is the top-left 2x2 block, row by row, as
    in the ROS name (rggb: R G / G B)."""
    out = np.zeros((height, width), np.uint8)
    for letter, (dy, dx) in zip(pattern.upper(), [(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = rgb["RGB".index(letter)]
    return out


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_of_one_colour_decodes_to_that_colour(encoding):
    """A mosaic built from the ROS pattern name (not from OpenCV's names, which differ)
    of pure red, green, blue and of (10, 100, 200) decodes to that colour in every pixel,
    borders included, through odd sizes and garbage row padding. Mutants: the OpenCV code
    taken by name (ROS rggb -> OpenCV BayerRG swaps red and blue), two patterns swapped."""
    pattern = encoding[len("bayer_"):-1]
    for colour in [(200, 0, 0), (0, 200, 0), (0, 0, 200), (10, 100, 200)]:
        rgb = decoded(with_garbage_padding(mosaic(pattern, colour), encoding))
        assert rgb.shape == (7, 9, 3) and rgb.dtype == np.uint8
        got = np.unique(rgb.reshape(-1, 3), axis=0)
        assert (rgb == colour).all(), f"{encoding} {colour}: got {got}"


@pytest.mark.parametrize(("encoding", "opencv"), [
    ("bayer_rggb8", cv2.COLOR_BayerRGGB2RGB), ("bayer_bggr8", cv2.COLOR_BayerBGGR2RGB),
    ("bayer_gbrg8", cv2.COLOR_BayerGBRG2RGB), ("bayer_grbg8", cv2.COLOR_BayerGRBG2RGB),
])
def test_bayer_equals_opencv_demosaicing(encoding, opencv):
    """A random mosaic with garbage row padding decodes exactly as OpenCV demosaics the
    unpadded mosaic (its 4-letter codes follow the ROS names); a 3x3 frame is the smallest
    accepted. Mutants: `step` ignored; a `<=` size check that refuses 3x3."""
    raw = sample("mono8", 6, 10)
    np.testing.assert_array_equal(decoded(with_garbage_padding(raw, encoding, 3)),
                                  cv2.cvtColor(raw, opencv))
    small = sample("mono8", 3, 3)
    np.testing.assert_array_equal(decoded(numpy_to_image(small, encoding)),
                                  cv2.cvtColor(small, opencv))


def yuv_pairs(order: str, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """H x W x 2 yuv422 bytes built by hand: per pixel pair, uyvy is U Y0 V Y1 and yuyv
    is Y0 U Y1 V (u, v are per pair, H x W/2)."""
    h, w = y.shape
    out = np.zeros((h, w // 2, 4), np.uint8)
    slots = {"uyvy": (1, 3, 0, 2), "yuyv": (0, 2, 1, 3)}[order]
    for slot, plane in zip(slots, (y[:, 0::2], y[:, 1::2], u, v)):
        out[..., slot] = plane
    return out.reshape(h, w, 2)


@pytest.mark.parametrize(("encoding", "order"), [
    ("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv"),
])
def test_yuv422_by_construction(encoding, order):
    """BT.601 video-range red, green and blue (Y, U, V = 82, 90, 240 / 145, 54, 34 /
    41, 240, 110) decode to those colours within 2 levels, and a pair with Y0 = 50,
    Y1 = 200 and neutral chroma gives a dark left and a light right pixel. Mutants:
    yuv422 read as yuyv (ROS yuv422 is UYVY), U and V swapped, Y0 and Y1 swapped."""
    colours = {(255, 0, 0): (82, 90, 240), (0, 255, 0): (145, 54, 34), (0, 0, 255): (41, 240, 110)}
    for rgb, (y, u, v) in colours.items():
        pairs = yuv_pairs(order, np.full((3, 4), y), np.full((3, 2), u), np.full((3, 2), v))
        out = decoded(with_garbage_padding(pairs, encoding))
        assert out.shape == (3, 4, 3)
        assert np.abs(out.astype(int) - rgb).max() <= 2, f"{encoding} {rgb}: {out[0, 0]}"
    grey = yuv_pairs(order, np.tile([50, 200], (2, 2)), np.full((2, 2), 128), np.full((2, 2), 128))
    out = decoded(numpy_to_image(grey, encoding))
    assert (out[:, 0::2] < 45).all() and (out[:, 1::2] > 210).all()


@pytest.mark.parametrize(("encoding", "to_yuv", "from_yuv"), [
    ("yuv422", cv2.COLOR_RGB2YUV_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    ("uyvy", cv2.COLOR_RGB2YUV_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2, cv2.COLOR_YUV2RGB_YUY2),
    ("yuyv", cv2.COLOR_RGB2YUV_YUYV, cv2.COLOR_YUV2RGB_YUYV),
])
def test_yuv422_round_trip_against_opencv(encoding, to_yuv, from_yuv):
    """RGB encoded by OpenCV, sent with garbage row padding, decodes exactly as OpenCV
    decodes it, and close to the original (a smooth image; chroma is shared by pixel
    pairs). Mutant: `step` ignored (the 0xAB bytes shift every row after the first)."""
    yy, xx = np.indices((6, 10))
    rgb = np.dstack([20 + 20 * xx, 40 + 25 * yy, 200 - 10 * xx]).astype(np.uint8)
    yuv = cv2.cvtColor(rgb, to_yuv)
    out = decoded(with_garbage_padding(yuv, encoding, 10))
    np.testing.assert_array_equal(out, cv2.cvtColor(yuv, from_yuv))
    assert np.abs(out.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding", ["rgb16", "bgr16"])
def test_16_bit_colour_keeps_the_top_byte(encoding, big_endian):
    """rgb16 / bgr16 with a low byte unlike the high one, in both byte orders and with
    garbage row padding, decode to the high bytes (as mono16), channels in RGB order.
    Mutants: `is_bigendian` ignored, the low byte kept, bgr16 not swapped, rgb16 swapped."""
    rgb = sample("rgb8", 4, 5)
    deep = rgb.astype(np.uint16) * 256 + (255 - rgb) // 3
    wire = deep if encoding == "rgb16" else deep[..., ::-1].copy()
    msg = with_garbage_padding(wire, encoding, 4, big_endian)
    assert msg.is_bigendian == big_endian
    np.testing.assert_array_equal(decoded(msg), rgb)


def bad_image(**fields) -> Image:
    msg = Image(height=4, width=6, step=18, encoding="rgb8")
    msg.data = bytes(4 * 18)
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(("fields", "words"), [
    ({"encoding": "nv12"}, ["'nv12'", "supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, "
                                      "rgb16, bgr16, bayer_rggb8, bayer_bggr8, bayer_gbrg8, "
                                      "bayer_grbg8, yuv422, uyvy, yuv422_yuy2, yuyv"]),
    ({"encoding": ""}, ["unsupported image encoding ''"]),
    ({"encoding": "32FC1"}, ["'32FC1'"]),
    ({"step": 17}, ["step=17", "6*3=18"]),
    ({"data": bytes(50)}, ["truncated", "4*18=72", "got 50"]),
    ({"data": b""}, ["truncated", "got 0"]),
    ({"height": 0, "width": 0, "step": 0, "data": b""}, ["empty rgb8 image", "height=0 width=0"]),
    ({"width": 0}, ["empty"]),
    ({"encoding": "mono16", "width": 3, "step": 7}, ["step=7", "multiple of the 2-byte"]),
    ({"encoding": "mono16", "width": 3, "step": 4, "data": bytes(16)},
     ["mono16 image step=4 is smaller than width*bytes_per_pixel=3*2=6"]),
    ({"encoding": "rgb16", "width": 4, "step": 12, "data": bytes(96)},
     ["rgb16 image step=12 is smaller than width*bytes_per_pixel=4*6=24"]),
    ({"encoding": "yuv422", "width": 5, "step": 10}, ["yuv422 image width=5 is odd"]),
    ({"encoding": "yuyv", "width": 3, "step": 6}, ["yuyv image width=3 is odd"]),
    ({"encoding": "bayer_rggb8", "height": 2, "step": 6}, ["bayer_rggb8 image 6x2 is too small "
                                                           "to demosaic: at least 3x3"]),
    ({"encoding": "bayer_grbg8", "width": 2, "step": 6}, ["bayer_grbg8 image 2x4 is too small"]),
    ({"height": 2**32 - 1, "step": 2**32 - 1}, ["truncated", str((2**32 - 1) ** 2)]),
    ({"width": 2**32 - 1, "height": 1}, ["step=18", "smaller than width"]),
])
def test_malformed_images_name_the_problem(fields, words):
    """check_image (on arrival) and image_to_numpy (before decoding) refuse the same
    headers with the same reason. Mutants: `width * channels / itemsize` (a too-small
    mono16 / rgb16 step passes), an odd yuv422 width or a sub-3x3 bayer frame accepted (it
    would demosaic to black), a check dropped from one of the two paths. (check_image's
    budget is lifted here: it would refuse the 2**32 - 1 sizes first.)"""
    for convert in (functools.partial(check_image, max_pixels=2**80), image_to_numpy):
        with pytest.raises(ImageConversionError) as info:
            convert(bad_image(**fields))
        for word in words:
            assert word in str(info.value)


def test_numpy_to_image_rejects_arrays_that_do_not_fit():
    with pytest.raises(ImageConversionError, match="uint8"):
        numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageConversionError, match="shape"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="supported"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "8UC1")
    with pytest.raises(ImageConversionError, match="step=5"):
        numpy_to_image(np.zeros((2, 3), np.uint16), "mono16", step=5)
    with pytest.raises(ImageConversionError, match="yuyv image width=3 is odd"):
        numpy_to_image(np.zeros((2, 3, 2), np.uint8), "yuyv")
    # (H, W, 1) is accepted for single-channel encodings
    assert numpy_to_image(np.zeros((2, 3, 1), np.uint8), "mono8").step == 3


@pytest.mark.parametrize(("shape", "dtype", "encoding", "words"), [
    ((2, 3, 1), np.uint8, "rgb8", "rgb8 needs a uint8 array of shape (H, W, 3), got uint8 (2, 3"),
    ((2, 3, 2), np.uint8, "mono8", "mono8 needs a uint8 array of shape (H, W), got uint8 (2, 3"),
    ((2, 3, 4), np.uint8, "rgb8", "got uint8 (2, 3, 4)"),
    ((2, 3, 3), np.uint8, "rgba8", "got uint8 (2, 3, 3)"),
    ((2, 3, 3), np.uint8, "rgb16", "rgb16 needs a uint16 array"),
    ((2, 3), np.uint16, "mono8", "mono8 needs a uint8 array"),
    ((2, 3, 1, 1), np.uint8, "mono8", "got uint8 (2, 3, 1, 1)"),
    ((2, 4, 3), np.uint8, "yuv422", "yuv422 needs a uint8 array of shape (H, W, 2), got uint8"),
])
def test_numpy_to_image_names_the_expected_array(shape, dtype, encoding, words):
    """Only (H, W, 1) squeezes to a single-channel image; any other channel count, ndim or
    dtype is refused with the shape expected. Mutants: the squeeze applied to colour
    encodings or to (H, W, 2) (`or` for `and`), the channel-count or dtype check dropped,
    the channel count checked only above 2 (an RGB array sent as yuv422)."""
    with pytest.raises(ImageConversionError) as info:
        numpy_to_image(np.zeros(shape, dtype), encoding)
    assert words in str(info.value)


@pytest.mark.parametrize(("encoding", "width", "step"), [
    ("mono8", 3, 2), ("rgb8", 3, 8), ("mono16", 3, 5), ("rgb16", 2, 13), ("rgb16", 2, 10),
])
def test_numpy_to_image_refuses_a_step_that_does_not_hold_a_row(encoding, width, step):
    """A step under the packed row (rgb8 3 wide: 9 bytes; mono16 3 wide: 6) or not a whole
    number of 16-bit channels is refused; the packed row itself and any larger step are
    taken. Mutants: `<=` for `<`, `and` for `or`, `step % itemsize` dropped."""
    channels, dtype = ENCODINGS[encoding]
    array = np.zeros((2, width, channels)[: 2 if channels == 1 else 3], dtype)
    row_bytes = width * channels * dtype.itemsize
    with pytest.raises(ImageConversionError, match=f"step={step} must be >= {row_bytes} and a "
                                                   f"multiple of {dtype.itemsize} for {encoding}"):
        numpy_to_image(array, encoding, step=step)
    for ok in (row_bytes, row_bytes + 2 * dtype.itemsize):
        msg = numpy_to_image(array, encoding, step=ok)
        assert msg.step == ok and len(msg.data) == 2 * ok


def test_numpy_to_image_defaults():
    """No header: an empty one (frame_id '', stamp 0); no step: the packed row; the host's
    byte order by default. Mutants: the header branch inverted (setting None fails), a
    default step with padding, is_bigendian stored as something other than 0 / 1."""
    msg = numpy_to_image(np.arange(6, dtype=np.uint16).reshape(2, 3), "mono16")
    assert msg.header == Header() and msg.step == 6
    assert msg.is_bigendian == int(sys.byteorder == "big")
    assert numpy_to_image(np.zeros((1, 1), np.uint16), "mono16", is_bigendian=2).is_bigendian == 1


def test_compressed_round_trip_png_exact_jpeg_close():
    rgb = (np.indices((24, 32)).sum(0)[..., None] * [3, 5, 7] % 256).astype(np.uint8)
    png = rgb_to_compressed(rgb, "png")
    assert png.format == "rgb8; png compressed bgr8"
    assert compressed_size(png) == (24, 32)
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    jpeg = rgb_to_compressed(rgb, "jpeg", quality=95)
    assert compressed_size(jpeg) == (24, 32)
    decoded = compressed_to_rgb(jpeg)
    assert decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).mean() < 8


def test_rgb_to_compressed_is_opencv_with_the_image_transport_format():
    """The bytes are exactly OpenCV's encoding of the BGR image (png lossless, so the
    colour order shows) at the quality asked (default 90), the format string and the
    header are image_transport's. Mutants: quality ignored or not the JPEG quality flag,
    RGB sent as BGR, the wrong extension, the format string or header lost."""
    rgb = sample("rgb8", 16, 24)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    header = Header(frame_id="cam")
    for quality in (20, 90, 95):
        msg = rgb_to_compressed(rgb, "jpeg", header, quality=quality)
        want = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        assert bytes(msg.data) == want, quality
        assert msg.format == "rgb8; jpeg compressed bgr8" and msg.header == header
    assert bytes(rgb_to_compressed(rgb).data) == bytes(rgb_to_compressed(rgb, quality=90).data)
    assert len(rgb_to_compressed(rgb, quality=20).data) < len(rgb_to_compressed(rgb).data)
    png = rgb_to_compressed(rgb, "png")
    assert bytes(png.data) == cv2.imencode(".png", bgr)[1].tobytes() and png.header == Header()
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)


@pytest.mark.parametrize(("rgb", "kind", "words"), [
    (np.zeros((4, 4, 3), np.uint8), "bmp", "cannot compress as 'bmp'; supported: jpeg, png"),
    (np.zeros((4, 4), np.uint8), "png", "png compression needs a uint8 array of shape (H, W, 3), "
                                        "got uint8 (4, 4)"),
    (np.zeros((4, 4, 4), np.uint8), "jpeg", "got uint8 (4, 4, 4)"),
    (np.zeros((4, 4, 3), np.uint16), "png", "got uint16 (4, 4, 3)"),
])
def test_rgb_to_compressed_refuses_what_is_not_rgb8(rgb, kind, words):
    """Mutants: one of the ndim / channel / dtype checks dropped (OpenCV would then encode
    grey, BGRA or 16-bit PNG under an 'rgb8' format string)."""
    with pytest.raises(ImageConversionError) as info:
        rgb_to_compressed(rgb, kind)
    assert words in str(info.value)


def test_opencv_decoder_errors_become_conversion_errors():
    """With the budget lifted, OpenCV's own limit (2**30 pixels) raises cv2.error in
    imdecode; it comes out as an ImageConversionError naming the format and OpenCV's
    reason. Mutant: the except clause narrowed or dropped (a cv2.error escapes)."""
    bomb = (_PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0,
                                                            0, 0))
            + png_chunk(b"IDAT", zlib.compress(bytes(100))) + png_chunk(b"IEND", b""))
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(compressed(bomb, "png"), max_pixels=2**40)
    assert "cannot decode png CompressedImage (format 'png'): " in str(info.value)
    assert "CV_IO_MAX_IMAGE_PIXELS" in str(info.value)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


def test_corrupt_compressed_images_name_the_problem():
    good_png = bytes(rgb_to_compressed(sample("rgb8", 16, 16), "png").data)
    good_jpeg = bytes(rgb_to_compressed(sample("rgb8", 16, 16), "jpeg").data)
    bomb = (good_png[:8] + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 40000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(bytes(4096))) + png_chunk(b"IEND", b""))
    cases = {
        b"": "no data",
        b"GIF89a" + bytes(40): "is neither jpeg nor png: starts with 4749463839610000; supp",
        b"\xff\xd8": "starts with ffd8;",
        good_png[:8] + bytes(100): "no valid image size",
        b"\xff\xd8\xff" + bytes(100): "no valid image size",
        good_png[: len(good_png) // 2]: "cannot decode",
        good_jpeg[: len(good_jpeg) // 2]: "cannot decode",
        bomb: "declares 50000x40000 = 2000000000 pixels, more than the input budget of 16777216",
    }
    for data, words in cases.items():
        with pytest.raises(ImageConversionError, match=words):
            compressed_to_rgb(compressed(data))


def test_compressed_grey_png_becomes_rgb():
    grey = sample("mono8", 6, 9)
    _, encoded = cv2.imencode(".png", grey)
    rgb = compressed_to_rgb(compressed(encoded.tobytes(), "png"))
    np.testing.assert_array_equal(rgb, np.dstack([grey] * 3))


# -- jpeg / png headers: the declared size, read without decoding -------------------------
def segment(marker: int, payload: bytes) -> bytes:
    """A jpeg marker segment: ff <marker>, a 2-byte length that counts itself, the payload."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof(height: int, width: int, marker: int = 0xC0) -> bytes:
    """A frame header (8-bit precision, 3 components) declaring height x width."""
    components = b"".join(bytes([c, 0x11, 0]) for c in (1, 2, 3))
    return segment(marker, struct.pack(">BHHB", 8, height, width, 3) + components)


SOI = b"\xff\xd8"


def jpeg_size(data: bytes) -> tuple[int, int]:
    return compressed_size(compressed(data))


def exif_orientation(value: int) -> bytes:
    """An APP1 Exif segment with one tag, Orientation (0x0112) = value."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + entry + struct.pack(">I", 0)
    return segment(0xE1, b"Exif\x00\x00" + tiff)


def test_jpeg_with_large_icc_exif_and_xmp_segments_decodes():
    """Issue 14 item 7: a valid JPEG whose SOF follows a 64 KiB APP2 ICC profile (two
    chunks), two APP1 (EXIF, XMP), a COM and fill bytes must decode to the same pixels as
    the bare file. Mutants: scanning only the first 64 KiB (the old parser); fill bytes
    not skipped; the EXIF orientation applied (the 24x32 frame would come out 32x24)."""
    rgb = (np.indices((24, 32)).sum(0)[..., None] * [3, 5, 7] % 256).astype(np.uint8)
    bare = bytes(rgb_to_compressed(rgb, "jpeg", quality=95).data)
    icc = RNG.integers(0, 256, 2 * 65519, dtype=np.uint8).tobytes()  # has ff c0 in it, surely
    icc_chunks = [segment(0xE2, b"ICC_PROFILE\x00" + bytes([k + 1, 2]) + icc[k * 65519:][:65519])
                  for k in range(2)]
    assert len(icc_chunks[0]) == 2 + 0xFFFF  # the largest segment a JPEG can hold
    xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + b"<x:xmpmeta/>" * 2000)
    extra = (exif_orientation(6) + xmp + b"\xff\xff\xff" + icc_chunks[0] + icc_chunks[1]
             + segment(0xFE, b"a comment"))
    big = compressed(bare[:2] + extra + bare[2:])
    assert len(big.data) - len(bare) > 2 * 65536
    assert compressed_size(big) == (24, 32)
    assert check_compressed(big) == "jpeg"
    np.testing.assert_array_equal(compressed_to_rgb(big), compressed_to_rgb(compressed(bare)))


@pytest.mark.parametrize(("before", "why"), [
    (b"", "SOF right after SOI"),
    (b"\xff\x01\xff\xd0\xff\xd7", "standalone TEM, RST0, RST7 (no length)"),
    (b"\xff" * 5000, "fill bytes before the marker"),
    (segment(0xE0, b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10"), "a fake SOF inside an APP0"),
    (segment(0xEF, b"") + segment(0xFE, b"\xff\xc2"), "empty APP15, COM holding ff c2"),
    (segment(0xDB, bytes(65)) + segment(0xC4, bytes(29)) + segment(0xDD, b"\x00\x04")
     + segment(0xCC, b"\x00") + segment(0xDC, b"\x00\x10"), "DQT, DHT, DRI, DAC, DNL"),
])
def test_jpeg_header_walk_finds_the_frame_header(before, why):
    """The walk jumps over each segment by its length and reads height, width at offsets
    3 and 5 of the SOF payload (258 x 772 = bytes 01 02 / 03 04, so any shifted offset or
    byte order reads another size); the SOF may end exactly at the end of the data.
    Mutants: a length that does not count itself (+-1), offsets off by one, standalone
    markers read as segments with a length, a `>=` end-of-data check."""
    assert jpeg_size(SOI + before + sof(258, 772)) == (258, 772), why


def test_jpeg_frame_header_of_8_bytes_holds_the_size():
    """8 bytes (length, precision, height, width, component count) are all the size
    needs; libjpeg refuses a frame with no component when it decodes. Mutant: a minimal
    length of 9 for the frame header."""
    assert jpeg_size(SOI + b"\xff\xc0\x00\x08\x08\x01\x02\x03\x04\x00") == (258, 772)


@pytest.mark.parametrize("marker", [0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                                    0xCE, 0xCF])
def test_every_sof_marker_holds_the_size(marker):
    """Baseline, extended, progressive, lossless, ... frames all declare the size; DHT
    (c4), JPG (c8) and DAC (cc) are not frame headers. Mutant: a SOF set that misses one."""
    assert jpeg_size(SOI + sof(5, 9, marker)) == (5, 9)


@pytest.mark.parametrize(("data", "words"), [
    (SOI + segment(0xE0, bytes(4)) + b"\x12", "byte 10 is 0x12"),
    (SOI + segment(0xE0, bytes(3)), "truncated: the data ends at byte 9"),
    (SOI + b"\xff\xff", "truncated: the data ends in a marker at byte 2"),
    (SOI + b"\xff\xe1", "truncated: marker 0xffe1 at byte 2 has no length"),
    (SOI + b"\xff\xe1\x00", "truncated: marker 0xffe1 at byte 2 has no length"),
    (SOI + b"\xff\xe1\x00\x10", "segment 0xffe1 at byte 2 declares 16 bytes, 2 remain"),
    (SOI + b"\xff\xfe\x00\x02", "truncated: the data ends at byte 6, before a frame header"),
    (SOI + b"\xff\xe2\xff\xff" + bytes(100), "segment 0xffe2 at byte 2 declares 65535 bytes, 102"),
    (SOI + sof(4, 4)[:-1], "segment 0xffc0 at byte 2 declares 17 bytes, 16 remain"),
    (SOI + b"\xff\xe0\x00\x01" + sof(4, 4), "0xffe0 at byte 2 has an invalid length 1"),
    (SOI + b"\xff\xfe\x00\x00" + sof(4, 4), "0xfffe at byte 2 has an invalid length 0"),
    (SOI + b"\xff\xc0\x00\x07\x08\x00\x04\x00\x04\x01", "0xffc0 at byte 2 has an invalid length 7"),
    (SOI + b"\xff\xda\x00\x02" + sof(4, 4), "unexpected marker 0xffda at byte 2"),
    (SOI + b"\xff\xd9", "unexpected marker 0xffd9"),
    (SOI + b"\xff\xd8" + sof(4, 4), "unexpected marker 0xffd8"),
    (SOI + b"\xff\xc8\x00\x02" + sof(4, 4), "unexpected marker 0xffc8"),
    (SOI + b"\xff\x00" + sof(4, 4), "unexpected marker 0xff00"),
    (SOI + b"\xff\x02\x00\x02" + sof(4, 4), "unexpected marker 0xff02"),
    (SOI + b"\xff\xbf\x00\x02" + sof(4, 4), "unexpected marker 0xffbf"),
    (SOI + b"\xff\xf0\x00\x02" + sof(4, 4), "unexpected marker 0xfff0"),
    (SOI + sof(0, 16), "declares 16x0"),
    (SOI + sof(16, 0), "declares 0x16"),
])
def test_corrupt_jpeg_headers_name_the_problem(data, words):
    """Every way a header walk can fail gives its own reason, with the byte offset.
    Mutants: a missing end-of-data check (an IndexError instead), an off-by-one in the
    offsets or lengths reported, a marker accepted that libjpeg refuses (SOS before a
    frame, EOI, a second SOI, JPG, 0x00, reserved), a zero size accepted."""
    with pytest.raises(ImageConversionError) as info:
        jpeg_size(data)
    assert "corrupt jpeg CompressedImage (format 'jpeg'" in str(info.value)
    assert f"{len(data)} bytes): no valid image size in its header" in str(info.value)
    assert words in str(info.value)


def test_jpeg_header_walk_is_bounded():
    """At most 1024 segments are walked before the frame header: 1023 empty COMs and a SOF
    pass, 1024 are refused without reading further; fill bytes are skipped in one step
    and cost no segment. Mutants: no bound (a 100 MB file of tiny segments would cost
    25 M Python steps), a bound off by one, fill bytes counted as segments."""
    com = segment(0xFE, b"")
    assert jpeg_size(SOI + com * 1023 + sof(3, 4)) == (3, 4)
    assert jpeg_size(SOI + (b"\xff" * 3 + com) * 1023 + sof(3, 4)) == (3, 4)
    with pytest.raises(ImageConversionError, match="no frame header .SOF. in the first 1024 segm"):
        jpeg_size(SOI + com * 1024 + sof(3, 4))


def png_header(width: int, height: int, length: int = 13, kind: bytes = b"IHDR") -> bytes:
    payload = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", length) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def test_png_size_from_ihdr():
    """Width then height, big-endian, at bytes 16 and 20; 24 bytes are enough (signature,
    length, type, width, height). Mutants: width and height swapped, offsets shifted, a
    `<=` length check that refuses a 24-byte header."""
    assert jpeg_size(png_header(0x01020304, 0x05060708)) == (0x05060708, 0x01020304)
    assert jpeg_size(png_header(772, 258)[:24]) == (258, 772)


@pytest.mark.parametrize(("data", "words"), [
    (png_header(9, 5)[:23], "truncated: 23 bytes, the signature and IHDR need 24"),
    (png_header(9, 5, length=12), "the first chunk is not a 13-byte IHDR"),
    (png_header(9, 5, kind=b"IDAT"), "the first chunk is not a 13-byte IHDR"),
    (png_header(0, 5), "declares 0x5"),
    (png_header(9, 0), "declares 9x0"),
])
def test_corrupt_png_headers_name_the_problem(data, words):
    """Mutants: a short header read anyway; a chunk other than a 13-byte IHDR trusted;
    a zero width or height accepted."""
    with pytest.raises(ImageConversionError) as info:
        compressed_size(compressed(data, "png"))
    assert f"corrupt png CompressedImage (format 'png', {len(data)} bytes)" in str(info.value)
    assert words in str(info.value)


# -- the input pixel budget ----------------------------------------------------------------
def test_default_budget_is_4096_squared_and_applies_to_raw_frames():
    """A raw frame over 4096x4096 is refused by its header alone, before its data is even
    looked at (this one has none); one at the budget passes the budget and is refused only
    for its missing data. Mutants: another default, `>=` for `>`, the budget checked after
    the data length (the error would then name the truncation)."""
    assert DEFAULT_MAX_INPUT_PIXELS == 4096 * 4096
    over = Image(height=4096, width=4097, step=4097, encoding="mono8")
    with pytest.raises(ImageConversionError) as info:
        check_image(over)
    assert ("mono8 image declares 4097x4096 = 16781312 pixels, more than the input budget of "
            "16777216 pixels") in str(info.value)
    with pytest.raises(ImageConversionError, match="truncated"):
        check_image(Image(height=4096, width=4096, step=4096, encoding="mono8"))


def test_raw_budget_is_a_keyword():
    """check_image(msg, max_pixels=n) refuses n + 1 pixels and passes n (a 5x7 frame);
    image_to_numpy applies no budget (the node checked on arrival with its own).
    Mutants: max_pixels ignored, an off-by-one comparison, the budget in image_to_numpy."""
    msg = numpy_to_image(sample("rgb8"), "rgb8")
    assert check_image(msg, max_pixels=35) == (3, np.dtype(np.uint8))
    with pytest.raises(ImageConversionError, match="declares 7x5 = 35 pixels, more than the "
                                                   "input budget of 34 pixels"):
        check_image(msg, max_pixels=34)
    big = numpy_to_image(np.zeros((1, DEFAULT_MAX_INPUT_PIXELS + 1), np.uint8), "mono8")
    assert image_to_numpy(big)[0].shape == (1, DEFAULT_MAX_INPUT_PIXELS + 1)


def test_compressed_budget_is_a_keyword():
    """check_compressed and compressed_to_rgb refuse a 24x32 jpeg / png with a budget of
    767 pixels and decode it with 768. Mutants: `>=` for `>`, max_pixels not passed on
    from compressed_to_rgb to the check."""
    rgb = sample("rgb8", 24, 32)
    for kind in ("png", "jpeg"):
        msg = rgb_to_compressed(rgb, kind)
        assert check_compressed(msg, max_pixels=768) == kind
        assert compressed_to_rgb(msg, max_pixels=768).shape == (24, 32, 3)
        for check in (check_compressed, compressed_to_rgb):
            with pytest.raises(ImageConversionError, match=f"{kind} CompressedImage .format "
                               f"'rgb8; {kind} compressed bgr8'. declares 32x24 = 768 pixels, "
                               f"more than the input budget of 767"):
                check(msg, max_pixels=767)


BOMB_SCRIPT = """
import struct, zlib
from sensor_msgs.msg import CompressedImage
from uda_seg_ros.conversions import ImageConversionError, compressed_to_rgb

def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))

z = zlib.compressobj(9)  # 8000 rows of filter byte 0 + 8000 black RGB pixels, streamed
idat = b"".join(z.compress(bytes(1 + 3 * 8000)) for _ in range(8000)) + z.flush()
msg = CompressedImage(format="png")
msg.data = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 2,
            0, 0, 0)) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
def peak_mb():  # this process's peak RSS (ru_maxrss can hold the parent's, from before exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
before = peak_mb()
try:
    compressed_to_rgb(msg)
    print("DECODED")
except ImageConversionError as exc:
    print("REFUSED", exc)
refused = peak_mb()
rgb = compressed_to_rgb(msg, max_pixels=8000 * 8000)
print("GROWTH", refused - before, peak_mb() - refused, rgb.shape)
"""


def test_png_bomb_is_refused_before_any_pixel_is_allocated():
    """Issue 14 item 8: a 190 kB PNG declaring 8000x8000 (valid, all black) is refused by
    the default budget and the process's peak memory does not move; decoding it with the
    budget raised costs over 150 MB, so the measurement can see an allocation.
    Mutant: the budget checked after cv2.imdecode (same error, +190 MB)."""
    # The child imports the conversions module this test imported (a mutated copy under
    # mutmut, which also needs its environment variables).
    src = str(Path(conversions.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(BOMB_SCRIPT)], text=True,
                         capture_output=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("REFUSED png CompressedImage (format 'png') declares "
                               "8000x8000 = 64000000 pixels, more than the input budget of "
                               "16777216"), run.stdout
    growth_refused, growth_decoded = (float(v) for v in lines[1].split()[1:3])
    assert growth_refused < 16 and growth_decoded > 150, run.stdout
    assert lines[1].endswith("(8000, 8000, 3)")
