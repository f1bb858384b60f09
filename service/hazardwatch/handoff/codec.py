"""The wire format of the records that cross process boundaries: gated frames (capture →
scoring) and scored frames (scoring → events). Event records travel as JSON
(`EventRecord.to_json`, the spool's format); event updates never leave the events
process.

One envelope for all, versioned so a newer reader can refuse an unknown layout cleanly:

    b"HW" | version (1 byte) | kind (1 byte) | header length (4 bytes, big-endian)
    | header (UTF-8 JSON) | payload (a JPEG of the frame or snapshot, or nothing)

Pixels travel as JPEG at `ImageOptions.jpeg_quality`, scaled down to `max_width` — the
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
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from hazardwatch.images import ImageError, ImageOptions, check_image, decode_jpeg, encode_image
from hazardwatch.records import (
    Frame,
    GatedFrame,
    MotionResult,
    ScoredFrame,
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
            functools.partial(decode_jpeg, _image(payload)),  # decoded where needed
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


def _image(payload: bytes) -> bytes:
    try:
        return check_image(payload)
    except ImageError as exc:
        raise CodecError(str(exc)) from None


def encode_gated(gated: GatedFrame, options: ImageOptions | None = None) -> bytes:
    header = _frame_header(gated)
    return pack("gated", header, _image_of(gated, options, header))


def _image_of(gated: GatedFrame, options: ImageOptions | None, header: dict[str, Any]) -> bytes:
    """The frame's wire image: the one it arrived as, or the pixels encoded now. A frame
    shrunk to `max_width` gets its motion box shrunk with it: the box is in the pixels of
    the image that travels."""
    if gated.wire_image is not None:
        return gated.wire_image
    try:
        data, scale = encode_image(gated.frame.image, options or ImageOptions())
    except ImageError as exc:
        raise CodecError(str(exc)) from None
    box = header["motion"]["box"]
    if scale != 1.0 and box is not None:
        header["motion"]["box"] = [round(v * scale) for v in box]
    return data


def decode_gated(data: bytes) -> GatedFrame:
    header, payload = _expect(data, "gated")
    return _gated_from(header, payload)


# ---------------------------------------------------------------------------- scored frames


def encode_scored(scored: ScoredFrame, options: ImageOptions | None = None) -> bytes:
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
