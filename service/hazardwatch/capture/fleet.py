"""The cameras of one process: their readers, the cameras that could not be started, a
reload's diff, and the two-phase stop.

`run` and `hazardwatch capture` both own one `CameraFleet`. Its readers and its invalid
cameras are published as immutable snapshots (a tuple and a read-only mapping), replaced
whole on every change: the API and metrics threads iterate whatever snapshot they took,
and a reload never changes a list under them.

The fleet does not read the settings: the composition root gives it a builder (a camera's
settings in, a reader out) and, on reload, the new camera list and whether every camera
must restart (capture or motion settings changed). What else a change means (the detector
stage opening or closing a camera, the cameras table) is told through `opened` and
`closed`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from hazardwatch.capture.reader import CameraReader
from hazardwatch.errors import SourceError

log = logging.getLogger(__name__)


class CameraConfig(Protocol):
    """What the fleet reads of a camera's settings (`settings.CameraSettings`); two
    configs that compare equal need no restart."""

    @property
    def name(self) -> str: ...

    @property
    def enabled(self) -> bool: ...


Builder = Callable[[Any], CameraReader]


class Cameras(Protocol):
    """What the API and the metrics read of a process's cameras."""

    @property
    def readers(self) -> tuple[CameraReader, ...]: ...

    @property
    def invalid(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class NoCameras:
    """A process that reads no camera (the events service, a worker)."""

    readers: tuple[CameraReader, ...] = ()
    invalid: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did."""

    removed: list[str]
    started: list[CameraReader]
    running: int


class CameraFleet:
    """Builds, starts, reloads and stops the readers of the configured cameras."""

    def __init__(
        self,
        build: Builder,
        stop_timeout_s: float,
        opened: Callable[[Sequence[CameraReader]], None] | None = None,
        closed: Callable[[str], None] | None = None,
    ) -> None:
        """`build`: a camera's reader from its settings (raises SourceError for a source
        that cannot be used); `stop_timeout_s`: how long a stopping reader may take (its
        read timeout and some); `opened`/`closed`: told of readers started by a reload
        and of cameras stopped by one."""
        self._build = build
        self.stop_timeout_s = stop_timeout_s
        self._opened = opened or (lambda readers: None)
        self._closed = closed or (lambda camera: None)
        self._configs: dict[str, Any] = {}
        self._readers: tuple[CameraReader, ...] = ()
        self._invalid: Mapping[str, str] = MappingProxyType({})
        self._lock = threading.Lock()  # one change at a time (a reload against a stop)
        self._started = False

    @property
    def readers(self) -> tuple[CameraReader, ...]:
        """The running readers now: a snapshot that no later change alters."""
        return self._readers

    @property
    def invalid(self) -> Mapping[str, str]:
        """Cameras configured but not run, with the reason (a source that cannot be used)."""
        return self._invalid

    @property
    def done(self) -> bool:
        """Every camera has ended (file sources without `loop`); never with no camera."""
        readers = self._readers
        return bool(readers) and all(r.done for r in readers)

    def build(self, cameras: Iterable[CameraConfig]) -> None:
        """The readers of every enabled camera, not started yet; a camera whose source
        cannot be used is logged and listed in `invalid`, and the others run."""
        with self._lock:
            readers, invalid = self._build_all([c for c in cameras if c.enabled])
            self._readers = tuple(readers)
            self._invalid = MappingProxyType(invalid)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for reader in self._readers:
                reader.start()

    def reload(
        self,
        cameras: Iterable[CameraConfig],
        build: Builder | None = None,
        restart_all: bool = False,
    ) -> Reloaded:
        """Cameras removed or changed stop (their `closed` is told), cameras added or
        changed start (`opened` is told); the others run on untouched. `build`: the
        builder from now on (new capture or motion settings: then `restart_all`)."""
        with self._lock:
            after = {c.name: c for c in cameras if c.enabled}
            if build is not None:
                self._build = build
            running = {r.camera: r for r in self._readers}
            stopping = [
                r
                for r in self._readers
                if restart_all
                or r.camera not in after
                or self._configs.get(r.camera) != after[r.camera]
            ]
            if self._started:
                _stop(stopping, self.stop_timeout_s)
            for reader in stopping:
                self._closed(reader.camera)
                del running[reader.camera]
            started, invalid = self._build_all([c for n, c in after.items() if n not in running])
            self._opened(started)
            for reader in started if self._started else ():
                reader.start()
            self._readers = tuple(running.values()) + tuple(started)
            self._invalid = MappingProxyType(invalid)
            removed = sorted(r.camera for r in stopping if r.camera not in after)
            return Reloaded(removed, started, len(self._readers))

    def stop(self) -> list[str]:
        """Two phases, so that N cameras stop in one read timeout, not N: every reader is
        asked first, then each is waited for. Returns the cameras still blocked in a read
        (none when the fleet was never started)."""
        with self._lock:
            if not self._started:
                return []
            return _stop(list(self._readers), self.stop_timeout_s)

    def _build_all(
        self, cameras: Sequence[CameraConfig]
    ) -> tuple[list[CameraReader], dict[str, str]]:
        readers, invalid = [], {}
        for camera in cameras:
            try:
                readers.append(self._build(camera))
            except SourceError as exc:  # one bad camera must not stop the others
                log.error("camera %s skipped: %s", camera.name, exc)
                invalid[camera.name] = str(exc)
                continue
            self._configs[camera.name] = camera
        return readers, invalid


def _stop(readers: Sequence[CameraReader], timeout_s: float) -> list[str]:
    for reader in readers:
        reader.request_stop()
    blocked = []
    for reader in readers:
        if not reader.stop(timeout_s):
            log.warning("camera %s: reader still blocked in a read; leaving it", reader.camera)
            blocked.append(reader.camera)
    return blocked
