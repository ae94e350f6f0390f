"""sensor_msgs/Image and CompressedImage <-> numpy, the part of cv_bridge the node needs.

Pure functions, no node: every field of an incoming message is checked before its bytes
are read, so a malformed message becomes an `ImageConversionError` that says what is
wrong (the encoding and the supported ones, `step` against width x bytes per pixel, the
data length expected against the length received, an empty image) and never a crash or
a silent wrong image.

    array, encoding = image_to_numpy(msg)          # view on msg.data, row padding dropped
    rgb = to_rgb(array, encoding)                  # HxWx3 uint8 RGB for the network
    msg = numpy_to_image(mask, "mono8", header=msg.header)
    rgb = compressed_to_rgb(compressed_msg)        # jpeg / png
"""
from __future__ import annotations

import array as pyarray
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# encoding -> (channels, numpy dtype of one channel)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
}
SUPPORTED = ", ".join(ENCODINGS)

_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HOST_BIG_ENDIAN = sys.byteorder == "big"
# The input pixel budget (width x height) by default: 4096x4096, above every common camera.
# A frame may declare any size (a 7 kB PNG can inflate to gigabytes), so the budget is
# checked on the declared size before any pixel is read or decoded.
DEFAULT_MAX_INPUT_PIXELS = 16_777_216
# JPEG start-of-frame markers (SOF0-SOF15 without DHT C4, JPG C8, DAC CC) hold the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageConversionError(ValueError):
    """An image message that cannot be read as the encoding it declares."""


def _over_budget(kind: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageConversionError(
            f"{kind} declares {width}x{height} pixels, more than the input budget of "
            f"{max_pixels} (max_input_pixels)"
        )


def check_image(msg: Image, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
                ) -> tuple[int, np.dtype]:
    """Validate the header fields of an Image against its data; O(1), reads no pixels.

    Returns (channels, channel dtype). The node calls this on arrival so every malformed
    message is counted, even one that a newer frame would replace before decoding.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {SUPPORTED} (publish one of "
            f"these, or CompressedImage jpeg/png with input_transport:=compressed)"
        )
    channels, dtype = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty {encoding} image: height={height} width={width}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"{encoding} image step={step} is smaller than "
            f"width*bytes_per_pixel={width}*{channels * dtype.itemsize}={row_bytes}"
        )
    if step % dtype.itemsize:
        raise ImageConversionError(
            f"{encoding} image step={step} is not a multiple of the {dtype.itemsize}-byte channel "
            f"size, so rows would start mid-pixel"
        )
    expected = height * step  # Python ints: a height*step that overflows uint32 stays exact
    got = len(msg.data)
    if got < expected:
        raise ImageConversionError(
            f"{encoding} image data is truncated: height*step={height}*{step}={expected} bytes "
            f"expected, got {got}"
        )
    _over_budget(f"{encoding} image", height, width, max_pixels)
    return channels, dtype


def image_to_numpy(msg: Image) -> tuple[np.ndarray, str]:
    """(H x W [x C] array, encoding) from an Image; a view on msg.data where possible.

    Row padding (`step` > width * bytes per pixel) is dropped by slicing, and 16-bit data
    whose `is_bigendian` differs from this host is byte-swapped into a native copy.
    Bytes past height*step are ignored.
    """
    channels, dtype = check_image(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=height * step).reshape(height, step)
    rows = raw[:, : width * channels * dtype.itemsize]
    if dtype.itemsize > 1:
        order = ">" if msg.is_bigendian else "<"
        # A padded step leaves rows non-contiguous; view() needs contiguous rows.
        pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
        if bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
            pixels = pixels.astype(dtype)  # native byte order for numpy / OpenCV
    else:
        pixels = rows
    shape = (height, width) if channels == 1 else (height, width, channels)
    return pixels.reshape(shape), msg.encoding


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None, *,
                   step: int | None = None, is_bigendian: bool = _HOST_BIG_ENDIAN) -> Image:
    """An Image holding `array` as `encoding`; `step` > the packed row adds padding."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"cannot encode as {encoding!r}; supported: {SUPPORTED}")
    channels, dtype = ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    if (array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels)
            or array.dtype != dtype):
        raise ImageConversionError(
            f"{encoding} needs a {dtype} array of shape (H, "
            f"W{', ' + str(channels) if channels > 1 else ''}), got {array.dtype} {array.shape}"
        )
    height, width = array.shape[:2]
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes or step % dtype.itemsize:
        raise ImageConversionError(
            f"step={step} must be >= {row_bytes} and a multiple of {dtype.itemsize} for {encoding}"
        )
    pixels = array.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, row_bytes)
    if step > row_bytes:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = rows
        rows = padded
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.step = height, width, step
    msg.encoding = encoding
    msg.is_bigendian = int(bool(is_bigendian))
    data = pyarray.array("B")
    data.frombytes(rows.data if rows.flags.c_contiguous else rows.tobytes())
    msg.data = data
    return msg


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """H x W x 3 uint8 RGB from any supported encoding (mono16 keeps its top 8 bits)."""
    if encoding == "rgb8":
        return array
    if encoding == "mono16":
        array = (array >> 8).astype(np.uint8)
        encoding = "mono8"
    code = _TO_RGB.get(encoding)
    if code is None:
        raise ImageConversionError(f"cannot convert {encoding!r} to rgb8; supported: {SUPPORTED}")
    return cv2.cvtColor(array, code)


def check_compressed(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
                     ) -> str:
    """Reject empty data, anything that is not JPEG or PNG by its magic bytes, and a header
    that declares more than `max_pixels`; reads the header only."""
    kind = _compressed_kind(msg)
    size = compressed_size(msg)
    if size is not None:
        _over_budget(f"{kind} CompressedImage", size[0], size[1], max_pixels)
    return kind


def _compressed_kind(msg: CompressedImage) -> str:
    data = bytes(memoryview(msg.data)[:8])
    if not data:
        raise ImageConversionError(f"empty CompressedImage (format {msg.format!r}): no data")
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    raise ImageConversionError(
        f"CompressedImage (format {msg.format!r}, {len(msg.data)} bytes) is neither jpeg nor png: "
        f"starts with {data.hex()}; supported compressed formats: jpeg, png"
    )


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the first start-of-frame segment, None if there is none."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            return int.from_bytes(data[i + 5:i + 7],
                                  "big"), int.from_bytes(data[i + 7:i + 9], "big")
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def compressed_size(msg: CompressedImage) -> tuple[int, int] | None:
    """(height, width) declared by a jpeg / png header, without decoding the pixels."""
    kind = _compressed_kind(msg)
    if kind == "png":
        head = bytes(memoryview(msg.data)[:24])
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    # SOF comes after the tables (a few kB at most) in every encoder's output.
    return _jpeg_size(bytes(memoryview(msg.data)[:65536]))


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
                      ) -> np.ndarray:
    """Decode a jpeg / png CompressedImage to H x W x 3 uint8 RGB."""
    kind = _compressed_kind(msg)
    size = compressed_size(msg)
    if size is None or 0 in size:
        raise ImageConversionError(
            f"corrupt {kind} CompressedImage (format {msg.format!r}, {len(msg.data)} bytes): no "
            f"valid image size in its header"
        )
    _over_budget(f"{kind} CompressedImage", size[0], size[1], max_pixels)
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageConversionError(
            f"cannot decode {kind} CompressedImage (format {msg.format!r}): "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from None
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(
            f"cannot decode CompressedImage (format {msg.format!r}): {len(buffer)} bytes with a "
            f"{kind} signature but corrupt content"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(rgb: np.ndarray, kind: str = "jpeg", header: Header | None = None,
                      quality: int = 90) -> CompressedImage:
    """A CompressedImage (jpeg or png) from RGB; the format string follows image_transport."""
    if kind not in ("jpeg", "png"):
        raise ImageConversionError(f"cannot compress as {kind!r}; supported: jpeg, png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png",
                               cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {kind}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {kind} compressed bgr8"
    data = pyarray.array("B")
    data.frombytes(encoded.tobytes())
    msg.data = data
    return msg
