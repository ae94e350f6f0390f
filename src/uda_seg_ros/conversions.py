"""sensor_msgs/Image and CompressedImage <-> numpy, the part of cv_bridge the node needs.

Pure functions, no node: every field of an incoming message is checked before its bytes
are read, so a malformed message becomes an `ImageConversionError` that says what is
wrong (the encoding and the supported ones, `step` against width x bytes per pixel, the
data length expected against the length received, an empty image, a size over the input
pixel budget) and never a crash or a silent wrong image.

    check_image(msg, max_pixels=...)               # on arrival: header fields + budget
    array, encoding = image_to_numpy(msg)          # view on msg.data, row padding dropped
    rgb = to_rgb(array, encoding)                  # HxWx3 uint8 RGB for the network
    msg = numpy_to_image(mask, "mono8", header=msg.header)
    rgb = compressed_to_rgb(compressed_msg, max_pixels=...)   # jpeg / png
"""
from __future__ import annotations

import array as pyarray
import re
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
# encoding -> (channels, numpy dtype of one channel), as the bytes lie in `data`.
# yuv422 / uyvy and yuv422_yuy2 / yuyv are 2 bytes a pixel (one pair of pixels shares U, V).
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, _U8), "bgr8": (3, _U8), "rgba8": (4, _U8), "bgra8": (4, _U8),
    "mono8": (1, _U8), "mono16": (1, _U16), "rgb16": (3, _U16), "bgr16": (3, _U16),
    "bayer_rggb8": (1, _U8), "bayer_bggr8": (1, _U8),
    "bayer_gbrg8": (1, _U8), "bayer_grbg8": (1, _U8),
    "yuv422": (2, _U8), "uyvy": (2, _U8), "yuv422_yuy2": (2, _U8), "yuyv": (2, _U8),
}
SUPPORTED = ", ".join(ENCODINGS)

# OpenCV names a Bayer pattern after the 2nd and 3rd pixels of its second row, ROS after
# the top-left 2x2 block: ROS rggb (R G / G B) is OpenCV's BayerBG (checked in the tests
# with a mosaic of a known colour).
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,  # ROS yuv422 is U Y0 V Y1 (its newer name: uyvy)
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,  # Y0 U Y1 V (newer name: yuyv)
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
# 16-bit encodings keep their top 8 bits, then convert as the 8-bit one.
_EIGHT_BIT = {"mono16": "mono8", "rgb16": "rgb8", "bgr16": "bgr8"}
_YUV422 = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})
_BAYER = frozenset(e for e in ENCODINGS if e.startswith("bayer_"))
# OpenCV's demosaicing returns black for an image under 3x3.
_BAYER_MIN_SIDE = 3
_HOST_BIG_ENDIAN = sys.byteorder == "big"

# The input pixel budget: a frame declaring more pixels (raw, or in a jpeg / png header,
# where a few kB can declare gigapixels) is refused before anything is allocated for it.
DEFAULT_MAX_INPUT_PIXELS = 16_777_216  # 4096 x 4096

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = (13).to_bytes(4, "big") + b"IHDR"  # the first chunk: length 13, type IHDR
# JPEG start-of-frame markers (SOF0-SOF15 without DHT C4, JPG C8, DAC CC) hold the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Before the frame header libjpeg accepts these segments (2-byte length, then skipped):
# DHT, DAC, DQT, DNL, DRI, APP0-APP15, COM; and these markers without a length: TEM, RST0-7.
_JPEG_SKIPPED = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# A marker is 0xFF then a code; any number of extra 0xFF (fill bytes) may come first.
_JPEG_MARKER = re.compile(rb"\xff+")
# Bounded header walk: an ICC profile of 1 MB is 17 APP2 segments, a real file has a few
# dozen segments at most before its frame header.
_JPEG_MAX_SEGMENTS = 1024


class ImageConversionError(ValueError):
    """An image message that cannot be read as the encoding it declares."""


class _HeaderError(ValueError):
    """A jpeg / png header that does not hold a valid image size (wrapped by the caller)."""


def _check_budget(what: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageConversionError(
            f"{what} declares {width}x{height} = {height * width} pixels, more than the input "
            f"budget of {max_pixels} pixels; refused before decoding (send smaller frames or "
            f"raise the node's max_input_pixels)"
        )


def _check_layout(encoding: str, width: int) -> None:
    """Sizes an encoding cannot hold: yuv422 stores pixels in pairs."""
    if encoding in _YUV422 and width % 2:
        raise ImageConversionError(
            f"{encoding} image width={width} is odd: yuv422 stores pixels in pairs (4 bytes "
            f"for 2 pixels), so the width must be even"
        )


def _check_fields(msg: Image) -> tuple[int, np.dtype]:
    """check_image without the budget: the fields must describe the data."""
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {SUPPORTED} (publish one of "
            f"these, or CompressedImage jpeg/png with image_transport:=compressed)"
        )
    channels, dtype = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty {encoding} image: height={height} width={width}")
    _check_layout(encoding, width)
    if encoding in _BAYER and min(height, width) < _BAYER_MIN_SIDE:
        raise ImageConversionError(
            f"{encoding} image {width}x{height} is too small to demosaic: at least "
            f"{_BAYER_MIN_SIDE}x{_BAYER_MIN_SIDE} pixels are needed"
        )
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
    return channels, dtype


def check_image(msg: Image, *,
                max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> tuple[int, np.dtype]:
    """Validate the header fields of an Image against its data; O(1), reads no pixels.

    Returns (channels, channel dtype). The node calls this on arrival so every malformed
    message is counted, even one that a newer frame would replace before decoding. A frame
    of more than `max_pixels` pixels is refused (the budget is checked first).
    """
    if msg.encoding in ENCODINGS:
        _check_budget(f"{msg.encoding} image", int(msg.height), int(msg.width), max_pixels)
    return _check_fields(msg)


def image_to_numpy(msg: Image) -> tuple[np.ndarray, str]:
    """(H x W [x C] array, encoding) from an Image; a view on msg.data where possible.

    The fields are checked as in `check_image`, but not the pixel budget (the caller has
    applied its own on arrival; a view allocates nothing). Row padding (`step` > width *
    bytes per pixel) is dropped by slicing, and 16-bit data whose `is_bigendian` differs
    from this host is byte-swapped into a native copy. Bytes past height*step are ignored.
    yuv422 comes out as H x W x 2 (the byte pairs OpenCV's YUV422 conversions read).
    """
    channels, dtype = _check_fields(msg)
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
    """An Image holding `array` as `encoding`; `step` > the packed row adds padding.

    The array has the wire layout: (H, W) for mono and bayer, (H, W, 2) byte pairs for
    yuv422 (even W), (H, W, C) otherwise.
    """
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
    _check_layout(encoding, width)
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
    data.frombytes(rows.data)  # contiguous: ascontiguousarray above, or the padded copy
    msg.data = data
    return msg


def probability_to_mono8(probability: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 0-255 (rounded): a mono8 confidence image."""
    scaled = np.rint(np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0) * 255.0)
    return scaled.astype(np.uint8)


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """H x W x 3 uint8 RGB from any supported encoding, with OpenCV's conversions.

    16-bit encodings (mono16, rgb16, bgr16) keep their top 8 bits; bayer is demosaiced
    bilinearly; yuv422 uses OpenCV's (BT.601) YUV422 conversion, as cv_bridge does.
    """
    if encoding in _EIGHT_BIT:
        array = (array >> 8).astype(np.uint8)
        encoding = _EIGHT_BIT[encoding]
    if encoding == "rgb8":
        return array
    code = _TO_RGB.get(encoding)
    if code is None:
        raise ImageConversionError(f"cannot convert {encoding!r} to rgb8; supported: {SUPPORTED}")
    return cv2.cvtColor(array, code)


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


def _jpeg_size(data: memoryview) -> tuple[int, int]:
    """(height, width) from the frame header (SOFn), walking the segments before it.

    The walk follows libjpeg: after SOI, each marker is 0xFF (fill 0xFF allowed before
    it) and a code; standalone markers have no length; every other segment has a 2-byte
    big-endian length that counts itself, so APP / COM segments of any size are jumped
    over, never read. At most `_JPEG_MAX_SEGMENTS` markers are visited.
    """
    i, n = 2, len(data)  # after SOI (ff d8)
    for _ in range(_JPEG_MAX_SEGMENTS):
        if i == n:
            raise _HeaderError(f"truncated: the data ends at byte {n}, before a frame header")
        fill = _JPEG_MARKER.match(data, i)
        if fill is None:
            raise _HeaderError(f"byte {i} is 0x{data[i]:02x}, not the 0xff of a marker")
        start, i = i, fill.end()
        if i == n:
            raise _HeaderError(f"truncated: the data ends in a marker at byte {start}")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker not in _JPEG_SOF and marker not in _JPEG_SKIPPED:
            raise _HeaderError(
                f"unexpected marker 0xff{marker:02x} at byte {start} before the frame header")
        if i + 2 > n:
            raise _HeaderError(f"truncated: marker 0xff{marker:02x} at byte {start} has no length")
        length = int.from_bytes(data[i:i + 2], "big")
        # A frame header is at least 8 bytes: length, precision, height, width, components.
        if length < (8 if marker in _JPEG_SOF else 2):
            raise _HeaderError(
                f"segment 0xff{marker:02x} at byte {start} has an invalid length {length}")
        if i + length > n:
            raise _HeaderError(
                f"truncated: segment 0xff{marker:02x} at byte {start} declares {length} bytes, "
                f"{n - i} remain")
        if marker in _JPEG_SOF:
            return (int.from_bytes(data[i + 3:i + 5], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        i += length
    raise _HeaderError(f"no frame header (SOF) in the first {_JPEG_MAX_SEGMENTS} segments")


def _png_size(data: memoryview) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, which a PNG must begin with."""
    if len(data) < 24:
        raise _HeaderError(f"truncated: {len(data)} bytes, the signature and IHDR need 24")
    if bytes(data[8:16]) != _PNG_IHDR:
        raise _HeaderError("the first chunk is not a 13-byte IHDR")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def compressed_size(msg: CompressedImage) -> tuple[int, int]:
    """(height, width) declared by a jpeg / png header, without decoding the pixels.

    Raises ImageConversionError when the data is not jpeg / png or its header holds no
    valid (non-zero) size.
    """
    kind = _compressed_kind(msg)
    data = memoryview(msg.data).cast("B")
    try:
        size = _jpeg_size(data) if kind == "jpeg" else _png_size(data)
    except _HeaderError as exc:
        raise ImageConversionError(
            f"corrupt {kind} CompressedImage (format {msg.format!r}, {len(data)} bytes): no "
            f"valid image size in its header: {exc}"
        ) from None
    if 0 in size:
        raise ImageConversionError(
            f"corrupt {kind} CompressedImage (format {msg.format!r}, {len(data)} bytes): no "
            f"valid image size in its header: it declares {size[1]}x{size[0]}"
        )
    return size


def check_compressed(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> str:
    """'jpeg' or 'png' after checking the magic bytes, the declared size and the budget.

    Reads the header only (the jpeg segments before the frame header, bounded), never the
    pixels: empty data, another format, a corrupt or truncated header, a zero size and a
    size over `max_pixels` raise ImageConversionError.
    """
    kind = _compressed_kind(msg)
    height, width = compressed_size(msg)
    _check_budget(f"{kind} CompressedImage (format {msg.format!r})", height, width, max_pixels)
    return kind


def compressed_to_rgb(msg: CompressedImage, *,
                      max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a jpeg / png CompressedImage to H x W x 3 uint8 RGB (the header's H x W).

    The header is checked (and `max_pixels` enforced) before anything is decoded. An EXIF
    orientation is not applied: the pixels keep the sensor's layout, as the camera's
    CameraInfo and the message's declared size describe them.
    """
    kind = check_compressed(msg, max_pixels=max_pixels)
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise ImageConversionError(
            f"cannot decode {kind} CompressedImage (format {msg.format!r}): "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from None
    if bgr is None:  # imdecode's answer to content it cannot decode
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
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(
            f"{kind} compression needs a uint8 array of shape (H, W, 3), got {rgb.dtype} "
            f"{rgb.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png",
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
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
