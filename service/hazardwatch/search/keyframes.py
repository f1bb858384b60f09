"""Which scored frames are kept for search, as keyframes: at most one per camera every
`search.keyframe_interval_s` while it has motion (the gate's motion, pre- and post-roll
frames; never a heartbeat of an empty scene), and every event's peak when it ends.

Each keyframe is its CLIP image embedding (float16) and a small thumbnail JPEG; the event
writer puts the thumbnail in the media dir and the row in the database (spooled in an
outage, dropped and counted when its queue is full), then hands the ids to the index.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import cv2
import numpy as np

from hazardwatch.detect.normal import decode_embedding
from hazardwatch.images import ImageError, decode_at_least, jpeg_size
from hazardwatch.records import (
    EventUpdate,
    GatedFrame,
    Image,
    KeyframeRecord,
    KeyframeShot,
    ScoredFrame,
)

log = logging.getLogger(__name__)
KEYFRAMES_DIR = "keyframes"
MOTION_REASONS = ("motion", "preroll", "postroll")


def thumbnail_path(camera: str, ts: datetime) -> str:
    """Where a keyframe's thumbnail lies, relative to the media dir: by camera and day,
    named by its time (one frame time per camera, so one file)."""
    ts = ts.astimezone(UTC)
    return f"{camera}/{KEYFRAMES_DIR}/{ts:%Y-%m-%d}/{ts:%H%M%S}{ts.microsecond // 1000:03d}.jpg"


def to_f16(embedding: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.asarray(embedding, np.float32).reshape(-1), np.float16).tobytes()


class KeyframeSampler:
    """Picks keyframes from scored frames and event ends; `emit` takes each batch (the
    writer's `put_keyframes`). Called on the scoring thread: a thumbnail costs a
    DCT-reduced decode (or a resize) and a small JPEG encode, a few milliseconds once per
    camera and keyframe interval."""

    def __init__(
        self,
        emit: Callable[[list[KeyframeShot]], None],
        model_name: str,
        *,
        interval_s: float = 10.0,
        width: int = 320,
        quality: int = 70,
    ) -> None:
        self._emit = emit
        self.model_name = model_name
        self.interval_s = interval_s
        self.width = width
        self.quality = quality
        self._last: dict[str, float] = {}  # camera -> frame time of its last keyframe
        self._lock = threading.Lock()
        self.failed = 0

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        shots = []
        for scored in frames:
            gated = scored.gated
            if scored.embedding is None or gated.reason not in MOTION_REASONS:
                continue
            frame = gated.frame
            t = frame.timestamp
            with self._lock:
                last = self._last.get(frame.camera)
                # A frame from before the last keyframe (a broker's late delivery, a file
                # looped back) starts the interval again rather than waiting for it.
                if last is not None and 0 <= t - last < self.interval_s:
                    continue
                self._last[frame.camera] = t
            embedding = to_f16(scored.embedding)
            source = functools.partial(_source_of, gated)
            shot = self._shot(frame.camera, frame.captured_at, embedding, source)
            if shot is not None:
                shots.append(shot)
        if shots:
            self._emit(shots)

    def on_event(self, update: EventUpdate) -> None:
        """An ended event's peak frame, kept with the event's uuid (a fan-out sink)."""
        record = update.record
        if update.kind != "ended" or update.snapshot is None or record.peak_embedding is None:
            return
        try:
            embedding = to_f16(decode_embedding(record.peak_embedding))
        except ValueError:
            return
        snapshot = update.snapshot
        shot = self._shot(
            record.camera, record.peak_at, embedding, lambda: snapshot, event_uuid=record.uuid
        )
        if shot is not None:
            self._emit([shot])

    def _shot(
        self,
        camera: str,
        ts: datetime,
        embedding: bytes,
        pixels: Callable[[], Image | bytes],
        event_uuid: str | None = None,
    ) -> KeyframeShot | None:
        try:
            jpeg = thumbnail(pixels(), self.width, self.quality)
        except (ImageError, cv2.error) as exc:
            self.failed += 1
            log.debug("camera %s: no keyframe at %s: %s", camera, ts.isoformat(), exc)
            return None
        record = KeyframeRecord(
            camera=camera,
            ts=ts,
            embedding=embedding,
            thumbnail_path=thumbnail_path(camera, ts),
            thumbnail_bytes=len(jpeg),
            model_name=self.model_name,
            event_uuid=event_uuid,
        )
        return KeyframeShot(record, jpeg)


def _source_of(gated: GatedFrame) -> Image | bytes:
    """The image a frame crossed a broker as (decoded at a reduced scale), else its pixels."""
    return gated.wire_image if gated.wire_image is not None else gated.frame.image


def thumbnail(source: Image | bytes, width: int, quality: int) -> bytes:
    """A JPEG `width` pixels wide (never wider than the source) of pixels or of an encoded
    image, which is decoded at the smallest DCT scale still wider than the thumbnail."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        dims = jpeg_size(data)
        # decode_at_least bounds the shorter side: the one a `width`-wide thumbnail has.
        side = width if dims is None else -(-width * min(dims) // dims[0])
        image, _ = decode_at_least(data, side)
    else:
        image = source
    height, full = image.shape[:2]
    if full > width:
        size = (width, max(1, round(height * width / full)))
        # Less than halved (what is left after the DCT scaling): bilinear samples every
        # source pixel at a fifth of an area average's cost; further, the area average.
        shrink = cv2.INTER_AREA if full >= 2 * width else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=shrink)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("the thumbnail could not be encoded")
    return bytes(encoded.tobytes())
