"""The wire format of the records that cross process boundaries: gated frames (capture →
scoring) and scored frames (scoring → events). Event records travel as JSON
(`event_to_dict`, the spool's format); event updates never leave the events process.

One envelope for all, versioned so a newer reader can refuse an unknown layout cleanly:

    b"HW" | version (1 byte) | kind (1 byte) | header length (4 bytes, big-endian)
    | header (UTF-8 JSON) | payload (a JPEG of the frame or snapshot, or nothing)

Pixels travel as JPEG at `WireOptions.jpeg_quality`, scaled down to `max_width` — the
only lossy part; every other field round-trips exactly (times as ISO 8601 strings and
epoch floats, embeddings as float16, as the database stores them). Anything that is not
a well-formed envelope of a known version and kind raises `CodecError`, which a consumer
counts, logs and terminates.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
import simplejpeg

from hazardwatch.records import (
    EventRecord,
    Frame,
    GatedFrame,
    Image,
    MotionResult,
    ScoredFrame,
    Weather,
)

if TYPE_CHECKING:  # the bank only names a type here: scoring comes after the hand-off
    from hazardwatch.scoring.bank import PromptBank

MAGIC = b"HW"
VERSION = 1
KINDS = {"gated": 1, "scored": 2}  # 3 was event updates, never sent: not to be reused
_NAMES = {code: name for name, code in KINDS.items()}
_HEAD = struct.Struct(">2sBBI")
_DATETIMES = ("started_at", "peak_at", "ended_at", "verdict_at")


class CodecError(ValueError):
    """Not a message this version can read; the text says what is wrong with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WireOptions:
    jpeg_quality: int = 85
    max_width: int = 1280
    image_format: str = "jpeg"  # or "png": lossless (the equivalence test), larger


# ---------------------------------------------------------------------------- envelope


def pack(kind: str, header: dict[str, Any], payload: bytes = b"") -> bytes:
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return _HEAD.pack(MAGIC, VERSION, KINDS[kind], len(body)) + body + payload


def unpack(data: bytes) -> tuple[str, dict[str, Any], bytes]:
    """(kind, header, payload) of an envelope; CodecError for anything else."""
    if len(data) < _HEAD.size:
        raise CodecError(f"{len(data)} bytes is too short for a hazardwatch message")
    magic, version, code, length = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a hazardwatch message (starts with {data[:8]!r})")
    if version != VERSION:
        raise CodecError(f"message version {version}; this build reads version {VERSION}")
    if code not in _NAMES:
        raise CodecError(f"unknown message kind {code}")
    end = _HEAD.size + length
    if end > len(data):
        raise CodecError(f"header of {length} bytes runs past the {len(data)}-byte message")
    try:
        header = json.loads(data[_HEAD.size : end])
    except ValueError as exc:
        raise CodecError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CodecError("header is not a JSON object")
    return _NAMES[code], header, data[end:]


def _expect(data: bytes, kind: str) -> tuple[dict[str, Any], bytes]:
    got, header, payload = unpack(data)
    if got != kind:
        raise CodecError(f"expected a {kind} message, got {got}")
    return header, payload


# ---------------------------------------------------------------------------- pixels


def encode_jpeg(image: Image, options: WireOptions) -> bytes:
    return encode_image(image, options)[0]


def encode_image(image: Image, options: WireOptions) -> tuple[bytes, float]:
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
        raise CodecError(f"the frame could not be encoded as {options.image_format}")
    return bytes(data.tobytes()), scale


_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, extended, progressive, lossless…): they carry the size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NOT_AN_IMAGE = "the payload is not a JPEG (or PNG) image"


def check_image(data: bytes) -> bytes:
    """The payload if it starts like a JPEG or a PNG, else CodecError (before any decode)."""
    if not data.startswith((_JPEG, _PNG)):
        raise CodecError(_NOT_AN_IMAGE)
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
            raise CodecError(f"{_NOT_AN_IMAGE}: {exc}") from None
        return jpeg
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CodecError(_NOT_AN_IMAGE)
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


def _f16(values: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.asarray(values, np.float16).tobytes()).decode()


def _from_f16(text: str) -> npt.NDArray[np.float32]:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise CodecError(f"bad float16 array: {exc}") from None
    if len(raw) % 2:
        raise CodecError("bad float16 array: odd number of bytes")
    return np.frombuffer(raw, np.float16).astype(np.float32)


# ---------------------------------------------------------------------------- gated frames


def _frame_header(gated: GatedFrame) -> dict[str, Any]:
    f, m = gated.frame, gated.motion
    return {
        "camera": f.camera,
        "seq": f.seq,
        "received_at": f.received_at,
        "captured_at": f.captured_at.isoformat(),
        "motion": {
            "motion": m.motion,
            "score": m.score,
            "box": list(m.box) if m.box is not None else None,
            "changed": m.changed,
            "lighting": m.lighting,
        },
        "reason": gated.reason,
        "snippet": gated.snippet,
        "handoff_seq": gated.handoff_seq,
    }


def _gated_from(header: dict[str, Any], payload: bytes) -> GatedFrame:
    try:
        m = header["motion"]
        box = m["box"]
        motion = MotionResult(
            bool(m["motion"]),
            float(m["score"]),
            (int(box[0]), int(box[1]), int(box[2]), int(box[3])) if box is not None else None,
            float(m["changed"]),
            bool(m["lighting"]),
        )
        frame = Frame(
            str(header["camera"]),
            int(header["seq"]),
            float(header["received_at"]),
            datetime.fromisoformat(header["captured_at"]),
            functools.partial(decode_jpeg, check_image(payload)),  # decoded where needed
        )
        return GatedFrame(
            frame,
            motion,
            header["reason"],
            int(header["snippet"]),
            handoff_seq=int(header.get("handoff_seq", 0)),
            wire_image=payload,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"bad frame header: {type(exc).__name__}: {exc}") from None


def encode_gated(gated: GatedFrame, options: WireOptions | None = None) -> bytes:
    header = _frame_header(gated)
    return pack("gated", header, _image_of(gated, options, header))


def _image_of(gated: GatedFrame, options: WireOptions | None, header: dict[str, Any]) -> bytes:
    """The frame's wire image: the one it arrived as, or the pixels encoded now. A frame
    shrunk to `max_width` gets its motion box shrunk with it: the box is in the pixels of
    the image that travels."""
    if gated.wire_image is not None:
        return gated.wire_image
    data, scale = encode_image(gated.frame.image, options or WireOptions())
    box = header["motion"]["box"]
    if scale != 1.0 and box is not None:
        header["motion"]["box"] = [round(v * scale) for v in box]
    return data


def decode_gated(data: bytes) -> GatedFrame:
    header, payload = _expect(data, "gated")
    return _gated_from(header, payload)


# ---------------------------------------------------------------------------- scored frames


def encode_scored(scored: ScoredFrame, options: WireOptions | None = None) -> bytes:
    """The scores, the bank version they were computed with, the embedding, and the
    frame itself (the events side makes snapshots and clips from it)."""
    header = _frame_header(scored.gated)
    header.update(
        probabilities=scored.probabilities,
        bank_version=scored.bank.version,
        prompt_similarities=_f16(scored.prompt_similarities),
        embedding=_f16(scored.embedding) if scored.embedding is not None else None,
    )
    image = _image_of(scored.gated, options, header)
    return pack("scored", header, image)


def decode_scored(data: bytes, bank_of: Callable[[str], PromptBank]) -> ScoredFrame:
    """`bank_of(version)` gives the prompt bank the worker scored with (the events side
    keeps the versions it knows); a KeyError from it is a CodecError naming the version."""
    header, payload = _expect(data, "scored")
    gated = _gated_from(header, payload)
    try:
        bank = bank_of(str(header["bank_version"]))
    except KeyError:
        raise CodecError(f"unknown prompt bank version {header.get('bank_version')!r}") from None
    try:
        probabilities = {str(k): float(v) for k, v in header["probabilities"].items()}
        embedding = header.get("embedding")
        return ScoredFrame(
            gated,
            probabilities,
            _from_f16(header["prompt_similarities"]),
            bank,
            _from_f16(embedding) if embedding is not None else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"bad scores header: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------- events


def event_to_dict(record: EventRecord) -> dict[str, Any]:
    """Every field of the record, times as ISO 8601 (the spool stores events so)."""
    data = asdict(record)
    for key in _DATETIMES:
        if data[key] is not None:
            data[key] = data[key].isoformat()
    data["weather"] = record.weather.to_json() if record.weather is not None else None
    return data


def event_from_dict(data: dict[str, Any]) -> EventRecord:
    data = dict(data)
    for key in _DATETIMES:
        if data.get(key) is not None:
            data[key] = datetime.fromisoformat(data[key])
    if data.get("weather") is not None:
        data["weather"] = Weather.from_json(data["weather"])
    return EventRecord(**data)
