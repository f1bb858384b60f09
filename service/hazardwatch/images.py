"""Frame pixels and image bytes: encoding for the wire (JPEG or PNG, scaled down to a
width cap), and decoding, in full or, for a consumer that shrinks the image anyway, at a
DCT-reduced size (libjpeg-turbo). Bytes that are not an image raise `ImageError`, in the
decoder's own words."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from hazardwatch.records import Image


class ImageError(ValueError):
    """Bytes that are not an image this service decodes, or pixels it cannot encode."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageOptions:
    """How frames are encoded for the wire (`broker.jpeg_quality`, `max_width`,
    `image_format`)."""

    jpeg_quality: int = 85
    max_width: int = 1280
    image_format: str = "jpeg"  # or "png": lossless (the equivalence test), larger


def encode_jpeg(image: Image, options: ImageOptions) -> bytes:
    return encode_image(image, options)[0]


def encode_image(image: Image, options: ImageOptions) -> tuple[bytes, float]:
    """The wire image and the scale it was resized by (1.0: full size)."""
    height, width = image.shape[:2]
    scale = 1.0
    if width > options.max_width:
        size = (options.max_width, max(1, round(height * options.max_width / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        scale = options.max_width / width
    if options.image_format == "png":
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality])
    if not ok:
        raise ImageError(f"the frame could not be encoded as {options.image_format}")
    return bytes(data.tobytes()), scale


_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, extended, progressive, lossless…): they carry the size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NOT_AN_IMAGE = "the payload is not a JPEG (or PNG) image"


def check_image(data: bytes) -> bytes:
    """The bytes if they start like a JPEG or a PNG, else ImageError (before any decode)."""
    if not data.startswith((_JPEG, _PNG)):
        raise ImageError(_NOT_AN_IMAGE)
    return data


def decode_jpeg(data: bytes) -> Image:
    return _decode(data, 1, None)


def _decode(data: bytes, factor: int, size: tuple[int, int] | None) -> Image:
    """A JPEG through libjpeg-turbo (simplejpeg), at 1/`factor` of `size` (libjpeg's DCT
    scaling); a PNG, or anything else, through OpenCV.

    The same library and settings as OpenCV's JPEG reader — the pixels are identical —, but
    OpenCV's `imdecode` can map its output and a working buffer in afresh on every call,
    by what the process allocated before (in a bare process about 450 minor faults for a
    768×432 frame: 1.7 ms against 0.6–0.8 here); simplejpeg's decode takes none.
    `bench/scale_out.py` times both in fresh processes."""
    if data.startswith(_JPEG):
        scaled = {} if size is None or factor == 1 else {
            "min_factor": factor,
            "min_width": -(-size[0] // factor),
            "min_height": -(-size[1] // factor),
        }  # fmt: skip
        try:
            jpeg: Image = simplejpeg.decode_jpeg(data, colorspace="BGR", **scaled)
        except ValueError as exc:  # damaged or cut short: libjpeg's own words
            raise ImageError(f"{_NOT_AN_IMAGE}: {exc}") from None
        return jpeg
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(_NOT_AN_IMAGE)
    decoded: Image = image
    return decoded


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, without decoding it; None
    for anything else (a PNG, a damaged header)."""
    if not data.startswith(_JPEG):
        return None
    i, end = 2, len(data)
    while i + 9 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _SOF:
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def decode_at_least(data: bytes, min_side: int) -> tuple[Image, float]:
    """The image decoded at the smallest of 1/8, 1/4, 1/2 or full size whose shorter side
    is still at least `min_side`, and that scale.

    For a worker that shrinks the frame to the model's resolution anyway: libjpeg scales
    in the DCT domain while decoding, which costs a fraction of a full decode and does the
    exact halvings `scoring/preprocess.resize_crop` would do next (an area average, up to
    a grey level or two apart). A PNG, or a JPEG too small to shrink, is decoded in full.
    """
    size = jpeg_size(data)
    factor = 1
    if size is not None:
        factor = next((k for k in (8, 4, 2) if min(size) // k >= min_side), 1)
    decoded = _decode(data, factor, size)
    return decoded, (decoded.shape[1] / size[0] if size is not None and factor > 1 else 1.0)
