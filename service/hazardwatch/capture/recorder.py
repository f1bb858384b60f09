"""Full-rate recording: one ffmpeg per recorded camera copies its stream into short segments.

As an NVR does it: a second RTSP session, no decoding, no re-encoding (`-c copy`), the
segment muxer writing MP4 files named by their UTC start second,
`<media>/segments/<camera>/<epoch>.ts`. Event clips are cut from them
(`outputs/clips.py`); retention deletes them by age (`recording.keep_s`).

The ffmpeg process is supervised like a camera reader: restarted with capped backoff when
it exits, its stderr read line by line into `last_error` (credentials masked) instead of
the service's own stderr, and stopped with `q` then SIGTERM then SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from hazardwatch.capture.reader import Backoff
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.redact import redact_text

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".mp4"
SEGMENTS_DIR = "segments"
RECORDABLE = ("rtsp",)  # what `-c copy` takes from a camera as it comes
# MP4 rather than MPEG-TS: the TS muxer refuses RTSP streams with B-frames ("first pts and
# dts value must be set"). The price: the segment being written is unreadable until it
# closes, so a crash loses at most one segment.
# A recorder running at least this long had a working session: its next failure starts
# the backoff from the beginning again.
HEALTHY_RUN_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderOptions:
    segment_s: float = 2.0
    open_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ffmpeg: str = "ffmpeg"


@dataclass
class RecorderStats:
    """Written by the supervisor thread, read by anyone (API, metrics)."""

    state: str = "starting"  # starting, recording, backing_off, stopped, unavailable
    restarts: int = 0
    last_error: str | None = None
    pid: int | None = None


def segment_dir(media_dir: Path, camera: str) -> Path:
    return media_dir / SEGMENTS_DIR / camera


def recording_unsupported(spec: SourceSpec) -> str | None:
    """Why `spec` cannot be recorded, or None when it can."""
    if spec.kind in RECORDABLE:
        return None
    return (
        f"{spec.kind} sources are not recorded (only RTSP streams are copied into segments); "
        "its clips are made from the scored frames"
    )


class SegmentRecorder:
    """Records one camera on its own supervisor thread (start, stop(deadline))."""

    def __init__(
        self,
        camera: str,
        spec: SourceSpec,
        directory: Path,
        options: RecorderOptions | None = None,
    ) -> None:
        self.camera = camera
        self.spec = spec
        self.directory = directory
        self.options = options or RecorderOptions()
        self.stats = RecorderStats()
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._backoff = Backoff(self.options.backoff_initial_s, self.options.backoff_max_s)
        self._thread = threading.Thread(target=self._run, name=f"recorder-{camera}", daemon=True)

    def command(self) -> list[str]:
        """The ffmpeg command line; it holds the camera's credentials (never log it)."""
        o = self.options
        timeout_us = str(int(o.open_timeout_s * 1_000_000))
        return [
            o.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-rtsp_transport", self.spec.rtsp_transport, "-timeout", timeout_us,
            "-i", self.spec.target,
            "-map", "0:v:0", "-c", "copy", "-an",
            "-f", "segment", "-segment_time", f"{o.segment_s:g}",
            "-segment_format", "mp4", "-reset_timestamps", "1", "-strftime", "1",
            str(self.directory / f"%s{SEGMENT_SUFFIX}"),
        ]  # fmt: skip

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop ffmpeg (the segment being written stays readable) and the thread."""
        self._stop.set()
        self._terminate(timeout / 2)
        self._thread.join(timeout / 2)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._record_once()
                if self._stop.is_set():
                    break
                if time.monotonic() - started > HEALTHY_RUN_S:
                    self._backoff.reset()
                self.stats.restarts += 1
                self.stats.state = "backing_off"
                delay = self._backoff.next_delay()
                log.warning(
                    "camera %s: recorder stopped (%s); restarting in %.1f s",
                    self.camera,
                    self.stats.last_error or "ffmpeg exited",
                    delay,
                )
                self._stop.wait(delay)
        except Exception:  # the supervisor must never die silently
            log.exception("camera %s: recorder crashed", self.camera)
            self.stats.last_error = "recorder crashed; see the log"
        finally:
            self.stats.state = "stopped"
            self.stats.pid = None

    def _record_once(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "TZ": "UTC"},
            )
        except OSError as exc:
            self.stats.last_error = f"cannot start ffmpeg: {exc}"
            return
        self._process = process
        self.stats.pid = process.pid
        self.stats.state = "recording"
        tail: deque[str] = deque(maxlen=5)
        assert process.stderr is not None
        for raw in process.stderr:  # ends when ffmpeg exits
            line = redact_text(raw.decode(errors="replace").strip())
            if line:
                tail.append(line)
                self.stats.last_error = line
                log.debug("camera %s: ffmpeg: %s", self.camera, line)
        code = process.wait()
        self._process = None
        if not self._stop.is_set():
            reason = tail[-1] if tail else "no message"
            self.stats.last_error = f"ffmpeg exited with code {code}: {reason}"

    def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        # SIGTERM lets ffmpeg finish the segment it writes; SIGKILL if it hangs.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            process.send_signal(sig)
            try:
                process.wait(timeout / 2)
                return
            except subprocess.TimeoutExpired:
                continue
