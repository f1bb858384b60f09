"""Each camera's latest frame as a small JPEG: what the review page's camera tiles show.

A reader keeps a reference to its last frame; it is encoded only when asked for, and
once per frame however often the page asks (every tile refreshes on its own)."""

from __future__ import annotations

import threading

from hazardwatch.capture.fleet import Cameras
from hazardwatch.images import ImageOptions, encode_jpeg

TILE_OPTIONS = ImageOptions(jpeg_quality=75, max_width=480)  # a tile, not evidence


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
        frame = reader.latest if reader is not None else None
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
        return [r.camera for r in self._cameras.readers if r.latest is not None]
