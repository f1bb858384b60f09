"""Each camera's latest frame between machines, for the review page's camera tiles.

A capture node puts every camera's latest frame (a small JPEG, `capture/latest.py`)
into the memory bucket `HAZARDWATCH_LATEST`, key = camera name: a camera's first frame
at once, then one every `LATEST_INTERVAL_S` (1,000 cameras: ~3 MB/s of 30 KB frames).
The events service reads one camera's only when a tile asks for it, and keeps the answer
`LATEST_CACHE_S`, so a page left open costs the broker little. A camera not heard of for
`LATEST_TTL_S` has no frame: the tile says so rather than show an old one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Protocol

from nats.js.errors import KeyDeletedError, KeyNotFoundError

from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.status import KvBucket
from hazardwatch.lifecycle import Periodic

log = logging.getLogger(__name__)

LATEST_BUCKET = "HAZARDWATCH_LATEST"
LATEST_INTERVAL_S = 10.0
LATEST_TTL_S = 60.0
LATEST_CACHE_S = 5.0


class Frames(Protocol):
    def cameras(self) -> list[str]: ...

    def jpeg(self, camera: str) -> bytes | None: ...


class LatestPublisher(Periodic):
    """A capture node's cameras' latest frames: a camera's first at once, then one every
    `interval_s` (each encoded only when it is put)."""

    def __init__(
        self, link: BrokerLink, frames: Frames, interval_s: float = LATEST_INTERVAL_S
    ) -> None:
        super().__init__(min(1.0, interval_s), "latest-publisher")
        self.link = link
        self.frames = frames
        self.every_s = interval_s
        self._put_at: dict[str, float] = {}
        self._bucket = KvBucket(link, LATEST_BUCKET, LATEST_TTL_S)

    def tick(self) -> None:
        now = time.monotonic()
        due = [
            camera
            for camera in self.frames.cameras()
            if now - self._put_at.get(camera, -math.inf) >= self.every_s
        ]
        frames = {c: data for c in due if (data := self.frames.jpeg(c)) is not None}
        if not frames:
            return
        try:
            self.link.call(self._put(frames), timeout=5)
        except Exception as exc:  # the broker is away: the next round tries again
            self._bucket.forget()
            log.debug("latest frames not published: %s", exc)
            return
        self._put_at.update(dict.fromkeys(frames, now))

    async def _put(self, frames: dict[str, bytes]) -> None:
        kv = await self._bucket.get()
        await asyncio.gather(*(kv.put(camera, data) for camera, data in frames.items()))


class LatestBoard:
    """The events service's reader of the capture nodes' latest frames."""

    def __init__(self, link: BrokerLink, cache_s: float = LATEST_CACHE_S) -> None:
        self.link = link
        self.cache_s = cache_s
        self._bucket = KvBucket(link, LATEST_BUCKET, LATEST_TTL_S)
        self._cache: dict[str, tuple[float, bytes]] = {}  # camera: (read at, JPEG)
        self._lock = threading.Lock()

    def jpeg(self, camera: str) -> bytes | None:
        """The camera's latest frame, None when no node put one within the TTL or the
        broker cannot be read now."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(camera)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            data = self.link.call(self._get(camera), timeout=2)
        except Exception as exc:
            self._bucket.forget()
            log.debug("latest frame of %s not read: %s", camera, exc)
            return None
        if data is not None:  # a camera without a frame yet may have one next second
            with self._lock:
                self._cache[camera] = (now, data)
        return data

    async def _get(self, camera: str) -> bytes | None:
        kv = await self._bucket.get()
        try:
            entry = await kv.get(camera)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return entry.value or None
