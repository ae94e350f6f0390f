"""Image / CompressedImage <-> numpy: round trips with row padding and both byte orders,
colour conversion, and the errors malformed messages give.

    .venv/bin/pytest test/test_conversions.py -q
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from uda_seg_ros.conversions import (
    ENCODINGS,
    ImageConversionError,
    compressed_size,
    compressed_to_rgb,
    image_to_numpy,
    numpy_to_image,
    rgb_to_compressed,
    to_rgb,
)

RNG = np.random.default_rng(0)


def sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    channels, dtype = ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("padding", [0, 1, 2, 64])
@pytest.mark.parametrize("big_endian", [False, True])
def test_round_trip(encoding, padding, big_endian):
    array = sample(encoding)
    channels, dtype = ENCODINGS[encoding]
    padding -= padding % dtype.itemsize  # a 16-bit step stays a whole number of channels
    step = 7 * channels * dtype.itemsize + padding
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(array, encoding, header, step=step, is_bigendian=big_endian)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, step, encoding)
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


def bad_image(**fields) -> Image:
    msg = Image(height=4, width=6, step=18, encoding="rgb8")
    msg.data = bytes(4 * 18)
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(("fields", "words"), [
    ({"encoding": "yuv422"}, ["'yuv422'", "supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16"]),
    ({"encoding": ""}, ["unsupported image encoding ''"]),
    ({"encoding": "32FC1"}, ["'32FC1'"]),
    ({"step": 17}, ["step=17", "6*3=18"]),
    ({"data": bytes(50)}, ["truncated", "4*18=72", "got 50"]),
    ({"data": b""}, ["truncated", "got 0"]),
    ({"height": 0, "width": 0, "step": 0, "data": b""}, ["empty rgb8 image", "height=0 width=0"]),
    ({"width": 0}, ["empty"]),
    ({"encoding": "mono16", "width": 3, "step": 7}, ["step=7", "multiple of the 2-byte"]),
    ({"height": 2**32 - 1, "step": 2**32 - 1}, ["truncated", str((2**32 - 1) ** 2)]),
    ({"width": 2**32 - 1, "height": 1}, ["step=18", "smaller than width"]),
])
def test_malformed_images_name_the_problem(fields, words):
    with pytest.raises(ImageConversionError) as info:
        image_to_numpy(bad_image(**fields))
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
    # (H, W, 1) is accepted for single-channel encodings
    assert numpy_to_image(np.zeros((2, 3, 1), np.uint8), "mono8").step == 3


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
        b"GIF89a" + bytes(40): "neither jpeg nor png",
        good_png[:8] + bytes(100): "no valid image size",
        b"\xff\xd8\xff" + bytes(100): "no valid image size",
        good_png[: len(good_png) // 2]: "cannot decode",
        good_jpeg[: len(good_jpeg) // 2]: "cannot decode",
        bomb: "declares 50000x40000 pixels",
    }
    for data, words in cases.items():
        with pytest.raises(ImageConversionError, match=words):
            compressed_to_rgb(compressed(data))


def test_compressed_grey_png_becomes_rgb():
    import cv2

    grey = sample("mono8", 6, 9)
    _, encoded = cv2.imencode(".png", grey)
    rgb = compressed_to_rgb(compressed(encoded.tobytes(), "png"))
    np.testing.assert_array_equal(rgb, np.dstack([grey] * 3))
