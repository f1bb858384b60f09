"""One reader thread per camera: an explicit state machine, reconnect with capped backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import cv2

from hazardwatch.capture.latest import LatestFrame
from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.errors import SourceError
from hazardwatch.records import CameraState, CameraStatus, Frame, RecordingStatus
from hazardwatch.redact import redact_text

if TYPE_CHECKING:
    from hazardwatch.capture.recorder import SegmentRecorder

log = logging.getLogger(__name__)

FrameSink = Callable[[Frame], None]
Opener = Callable[[SourceSpec, float, float], Any]


class ReaderState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKING_OFF = "backing_off"
    ENDED = "ended"  # a file without looping reached its end
    STOPPED = "stopped"  # asked to stop


_TRANSITIONS: dict[ReaderState, frozenset[ReaderState]] = {
    ReaderState.CONNECTING: frozenset(
        {ReaderState.STREAMING, ReaderState.BACKING_OFF, ReaderState.ENDED, ReaderState.STOPPED}
    ),
    ReaderState.STREAMING: frozenset(
        {ReaderState.CONNECTING, ReaderState.BACKING_OFF, ReaderState.ENDED, ReaderState.STOPPED}
    ),
    ReaderState.BACKING_OFF: frozenset({ReaderState.CONNECTING, ReaderState.STOPPED}),
    ReaderState.ENDED: frozenset({ReaderState.STOPPED}),
    ReaderState.STOPPED: frozenset(),
}


class Backoff:
    """Exponential backoff with jitter, capped: delays of initial·2ⁿ scaled by 0.5-1.0."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._initial = initial_s
        self._max = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self._max, self._initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0


@dataclass
class ReaderStats:
    """Counters written by the reader thread and read by anyone (metrics, API)."""

    frames_read: int = 0
    frames_dropped_fps: int = 0  # surplus frames over the camera's fps limit
    frames_bad: int = 0  # decoded but not retrievable
    sink_errors: int = 0
    reconnects: int = 0
    last_frame_monotonic: float | None = None
    last_error: str | None = None
    fps: float = 0.0  # measured rate of kept frames (exponential average)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderOptions:
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    stall_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    fps_limit: float | None = None
    loop: bool = False  # files only: start again at the end, paced at the file's frame rate


class CameraReader:
    """Reads one camera on its own thread and hands every kept frame to `sink`.

    The sink runs on the reader thread and must not block (the motion gate plus a
    non-blocking queue put). Nothing a source does — failing to open, stalling, ending,
    delivering garbage — escapes this thread: it is logged, counted and retried.
    """

    def __init__(
        self,
        camera: str,
        spec: SourceSpec,
        sink: FrameSink,
        options: ReaderOptions | None = None,
        *,
        opener: Opener = open_capture,
        clock: Callable[[], float] = time.monotonic,
        recorder: SegmentRecorder | None = None,
    ) -> None:
        """`recorder` records the same camera at full rate; it runs while the reader does."""
        self.recorder = recorder
        self.camera = camera
        self.spec = spec
        self.options = options or ReaderOptions()
        self.stats = ReaderStats()
        self._sink = sink
        self._opener = opener
        self._clock = clock
        self._state = ReaderState.CONNECTING
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self.latest = LatestFrame()  # what the camera's tile shows
        self._media_offset_s = 0.0  # media time already played by earlier loops of a file
        self._mean_interval: float | None = None  # of delivered frames (the fps gauge)
        self._started_at = datetime.now(UTC)
        self._backoff = Backoff(self.options.backoff_initial_s, self.options.backoff_max_s)
        self._thread = threading.Thread(target=self._run, name=f"reader-{camera}", daemon=True)

    # ------------------------------------------------------------------ control

    @property
    def state(self) -> ReaderState:
        return self._state

    @property
    def sink(self) -> FrameSink:
        return self._sink

    @property
    def done(self) -> bool:
        return self._state in (ReaderState.ENDED, ReaderState.STOPPED)

    def frame_age_s(self) -> float | None:
        """Seconds since the last frame, None before the first one."""
        last = self.stats.last_frame_monotonic
        return None if last is None else self._clock() - last

    @property
    def stalled(self) -> bool:
        age = self.frame_age_s()
        return self._state == ReaderState.STREAMING and (
            age is not None and age > self.options.stall_timeout_s
        )

    def status(self) -> CameraStatus:
        """What `/api/v1/cameras` shows of this camera (credentials redacted)."""
        stats = self.stats
        age = self.frame_age_s()
        recording = None
        if self.recorder is not None:
            r = self.recorder.stats
            error = redact_text(r.last_error) if r.last_error else None
            recording = RecordingStatus(r.state, r.restarts, error)
        return CameraStatus(
            name=self.camera,
            kind=self.spec.kind,
            state=CameraState.STALLED if self.stalled else CameraState(self._state.value),
            fps=round(stats.fps, 2),
            last_frame_age_s=round(age, 3) if age is not None else None,
            frames_read=stats.frames_read,
            reconnects=stats.reconnects,
            last_error=redact_text(stats.last_error) if stats.last_error else None,
            recording=recording,
        )

    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop and return at once (to stop many readers together)."""
        self._stop.set()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop and wait for the thread (a read in progress ends within its timeout);
        True once it has finished."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _set_state(self, new: ReaderState) -> None:
        with self._state_lock:
            old = self._state
            if new == old:
                return
            if new not in _TRANSITIONS[old]:
                raise RuntimeError(f"reader {self.camera}: illegal transition {old} -> {new}")
            self._state = new
        log.info("camera %s: %s -> %s", self.camera, old.value, new.value)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            outcome = ""
            while not self._stop.is_set():
                if outcome != "restart":  # a loop's restart is no change a person follows
                    self._set_state(ReaderState.CONNECTING)
                outcome = self._connect_and_stream()
                if outcome == "ended":
                    self._set_state(ReaderState.ENDED)
                    return
                if outcome == "restart":  # a looping file: start again at once
                    continue
                if self._stop.is_set():
                    break
                self.stats.reconnects += 1
                self._set_state(ReaderState.BACKING_OFF)
                delay = self._backoff.next_delay()
                log.warning(
                    "camera %s: %s; reconnecting in %.1f s",
                    self.camera,
                    self.stats.last_error,
                    delay,
                )
                self._stop.wait(delay)
        except Exception:  # the reader must never die silently
            log.exception("camera %s: reader crashed", self.camera)
            self.stats.last_error = "reader crashed; see the log"
        finally:
            if self.recorder is not None and not self.recorder.stop(10.0):
                log.warning("camera %s: recorder did not stop in 10 s", self.camera)
            with self._state_lock:
                if self._state != ReaderState.ENDED:
                    self._state = ReaderState.STOPPED

    def _connect_and_stream(self) -> str:
        """Open and read until the source ends or fails: 'ended', 'restart' or 'lost'."""
        try:
            capture = self._opener(
                self.spec, self.options.open_timeout_s, self.options.read_timeout_s
            )
        except SourceError as exc:
            self.stats.last_error = str(exc)
            if self.spec.kind == "file" and not self.options.loop:
                # A missing or corrupt file will not fix itself: report and end.
                log.error("camera %s: %s", self.camera, exc)
                return "ended"
            return "lost"
        except Exception as exc:  # OpenCV can raise cv2.error on odd inputs
            self.stats.last_error = redact_text(f"cannot open {self.spec.display}: {exc}")
            return "lost"
        try:
            return self._stream(capture)
        finally:
            capture.release()

    def _stream(self, capture: Any) -> str:
        is_file = self.spec.kind == "file"
        pace = is_file and self._paced(capture)
        period = 1.0 / self.options.fps_limit if self.options.fps_limit else 0.0
        next_due = float("-inf")
        opened = self._clock()
        last_good = opened
        media_t = 0.0
        source_interval: float | None = None  # between the source's frames, kept or not
        last_t: float | None = None
        while not self._stop.is_set():
            grabbed = capture.grab()
            now = self._clock()
            if not grabbed:
                if is_file:
                    self._media_offset_s += media_t + _frame_period(capture)
                    if self.options.loop and self._seq > 0:
                        return "restart"
                    if self._seq == 0:
                        self.stats.last_error = (
                            f"file {self.spec.display!r} holds no decodable frame"
                        )
                        log.error("camera %s: %s", self.camera, self.stats.last_error)
                    return "ended"
                self.stats.last_error = (
                    f"no frame from {self.spec.display} within {self.options.read_timeout_s:g} s"
                )
                return "lost"
            media_t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if is_file else now - opened
            if last_t is not None and media_t > last_t:
                source_interval = mean_interval(source_interval, media_t - last_t)
            last_t = media_t
            if period:
                # A frame may come up to half a source interval early: a live stream's
                # arrival jitters, and a limit equal to the source's rate keeps every frame.
                early = 0.5 * source_interval if source_interval else 0.001
                if media_t < next_due - early:
                    self.stats.frames_dropped_fps += 1
                    continue
                # Keep a steady rate; after a gap longer than a period, start afresh.
                next_due = next_due + period if media_t - next_due < period else media_t + period
            ok, image = capture.retrieve()
            if not ok or image is None or image.size == 0:
                self.stats.frames_bad += 1
                if now - last_good > self.options.stall_timeout_s:
                    self.stats.last_error = (
                        f"stream {self.spec.display} delivered no usable frame for "
                        f"{self.options.stall_timeout_s:g} s"
                    )
                    return "lost"
                continue
            if pace:
                ahead = (media_t - (now - opened)) if media_t > 0 else 0.0
                if ahead > 0 and self._stop.wait(ahead):
                    break
            last_good = now
            self._deliver(image, now, media_t if is_file else None)
        return "stopped"

    def _paced(self, capture: Any) -> bool:
        """Whether a file plays at its own frame rate (a looping one does). Read as fast as
        it decodes, a file is footage already recorded: its frames are stamped so that its
        last one is the moment it was opened, never ahead of the clock; one whose length
        is unknown plays at its own rate instead."""
        if self.options.loop:
            return True
        if self._seq == 0:
            length = _file_length_s(capture)
            if length is None:
                return True
            self._started_at = datetime.now(UTC) - timedelta(seconds=length)
        return False

    def _deliver(self, image: Any, now: float, media_t: float | None) -> None:
        if self._state != ReaderState.STREAMING:
            self._set_state(ReaderState.STREAMING)
            self._backoff.reset()
            self.stats.last_error = None
        if media_t is None:
            captured_at = datetime.now(UTC)
        else:
            captured_at = self._started_at + timedelta(seconds=self._media_offset_s + media_t)
            captured_at = min(captured_at, datetime.now(UTC))  # a frame count read a bit short
        last = self.stats.last_frame_monotonic
        if last is not None and now > last:
            self._mean_interval = mean_interval(self._mean_interval, now - last)
            self.stats.fps = 1.0 / self._mean_interval
        self.stats.last_frame_monotonic = now
        self.stats.frames_read += 1
        self._seq += 1
        frame = Frame(self.camera, self._seq, time.time(), captured_at, image)
        self.latest.offer(frame, now)
        try:
            self._sink(frame)
        except Exception:
            self.stats.sink_errors += 1
            log.exception("camera %s: frame %d could not be processed", self.camera, self._seq)


def mean_interval(mean: float | None, dt: float, weight: float = 0.1) -> float:
    """Exponential average of frame intervals; the rate is its reciprocal. (An average of
    instantaneous rates 1/dt reads high whenever frames jitter: 11.2 at a steady 10.)"""
    return dt if mean is None else mean + weight * (dt - mean)


def _file_length_s(capture: Any) -> float | None:
    """A file's playing time from its frame count and rate; None when either is unknown."""
    frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not frames or frames <= 0 or not fps or fps <= 0:
        return None
    return float(frames) / float(fps)


def _frame_period(capture: Any) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return 1.0 / fps if fps and fps > 0 else 0.0
