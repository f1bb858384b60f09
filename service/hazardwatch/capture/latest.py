"""Each camera's latest frame as a small JPEG: what the review page's camera tiles show.

A reader keeps a shrunk copy of a frame every `KEEP_EVERY_S` (`LatestFrame`: 390 KB a
camera, not a full frame held for each; ~1 ms of resizing every 2 s); it is encoded
only when asked for, and once per kept frame however often the page asks."""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

import cv2

from hazardwatch.images import ImageOptions, encode_jpeg
from hazardwatch.records import Frame

if TYPE_CHECKING:
    from hazardwatch.capture.fleet import Cameras

TILE_WIDTH = 480
TILE_OPTIONS = ImageOptions(jpeg_quality=75, max_width=TILE_WIDTH)  # a tile, not evidence
KEEP_EVERY_S = 2.0


class LatestFrame:
    """One reader's latest frame for its tile: a copy at most `TILE_WIDTH` wide, taken
    from a delivered frame every `KEEP_EVERY_S` (on the reader's thread)."""

    def __init__(self, every_s: float = KEEP_EVERY_S) -> None:
        self.every_s = every_s
        self.frame: Frame | None = None
        self._kept_at = float("-inf")

    def offer(self, frame: Frame, now: float) -> None:
        if now - self._kept_at < self.every_s:
            return
        self._kept_at = now
        image = frame.image
        height, width = image.shape[:2]
        if width > TILE_WIDTH:
            size = (TILE_WIDTH, max(1, round(height * TILE_WIDTH / width)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        self.frame = dataclasses.replace(frame, pixels=image)


class LatestFrames:
    """The latest frame of each of this process's cameras, as JPEG."""

    def __init__(self, cameras: Cameras, options: ImageOptions = TILE_OPTIONS) -> None:
        self._cameras = cameras
        self._options = options
        self._encoded: dict[str, tuple[int, bytes]] = {}  # camera: (frame seq, JPEG)
        self._lock = threading.Lock()

    def jpeg(self, camera: str) -> bytes | None:
        """None while the camera has delivered no frame (or is not one of these)."""
        reader = next((r for r in self._cameras.readers if r.camera == camera), None)
        frame = reader.latest.frame if reader is not None else None
        if frame is None:
            return None
        with self._lock:
            seq, data = self._encoded.get(camera, (-1, b""))
            if seq != frame.seq:
                data = encode_jpeg(frame.image, self._options)
                self._encoded[camera] = (frame.seq, data)
            return data

    def cameras(self) -> list[str]:
        """The cameras that have a frame to show."""
        return [r.camera for r in self._cameras.readers if r.latest.frame is not None]
