"""FFmpeg and OpenCV write their messages straight to file descriptor 2, not through Python.

Inside OpenCV's FFmpeg backend a camera that fails to open prints lines such as
`[rtsp @ 0x55…] method DESCRIBE failed: 401 Unauthorized` raw into the service's stderr,
between its own log records, unattributed, and sometimes with the camera URL in them.

`NativeStderr` takes descriptor 2 over with a pipe and reads it on a thread:
- what native code writes while a camera is being opened (`collect()`; opens are
  serialised in `capture/sources.py`) is returned to that opener, which puts it in the
  camera's `last_error`;
- other FFmpeg and OpenCV lines become records of the `hazardwatch.native` logger
  (redacted, each distinct message at most once a minute);
- anything else (a C library's own message) is passed through unchanged.

Python's own output (`sys.stderr`, the log handler) is moved to a copy of the original
descriptor first, so it never goes through the pipe. The pipe's write end is
non-blocking: should the reading thread ever stop, native messages are lost, and no
thread of the service blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from hazardwatch.redact import redact_text

log = logging.getLogger("hazardwatch.native")

NATIVE_LINE = re.compile(r"^\[(?:\w+ @ 0x[0-9a-f]+|\s*(?:WARN|ERROR|INFO|DEBUG):[^\]]*)\]\s*")
_MARK = "\x1ehazardwatch-mark:"
REPEAT_S = 60.0
WAIT_S = 1.0  # for the reader thread to reach an opener's end mark


class NativeStderr:
    """Owns file descriptor 2 between `start` and `stop`; one per process."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None
        self._read_fd: int | None = None
        self._lock = threading.Lock()
        self._collecting: dict[int, list[str]] = {}
        self._reached: dict[int, threading.Event] = {}
        self._active: int | None = None
        self._next_mark = 0
        self._last_logged: dict[str, float] = {}
        self._previous_stderr: TextIO | None = None

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        """Take descriptor 2 over (idempotent)."""
        if self.installed:
            return
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd
        # Python's writes go to the original stderr directly, not through the pipe.
        self._previous_stderr = sys.stderr
        sys.stderr = open(  # noqa: SIM115 - lives until stop
            self._saved, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False
        )
        _repoint_handlers(self._previous_stderr, sys.stderr)
        self._thread = threading.Thread(target=self._read, name="native-stderr", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Give descriptor 2 back and end the reading thread."""
        if self._saved is None:
            return True
        own = sys.stderr
        os.dup2(self._saved, 2)  # closes the pipe's only write end: the reader sees EOF
        if self._thread is not None:
            self._thread.join(timeout)
        if self._previous_stderr is not None:
            sys.stderr = self._previous_stderr
            _repoint_handlers(own, sys.stderr)
        own.close()
        os.close(self._saved)
        self._saved = None
        return self._thread is None or not self._thread.is_alive()

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[str]]:
        """Native lines written inside the block are collected into the yielded list (and
        not logged); callers serialise their blocks."""
        lines: list[str] = []
        if not self.installed:
            yield lines
            return
        with self._lock:
            self._next_mark += 1
            mark = self._next_mark
            self._collecting[mark] = lines
            self._reached[mark] = threading.Event()
        self._write_mark(f"{mark}:begin")
        try:
            yield lines
        finally:
            self._write_mark(f"{mark}:end")
            self._reached[mark].wait(WAIT_S)
            with self._lock:
                self._collecting.pop(mark, None)
                self._reached.pop(mark, None)
            lines[:] = [redact_text(line) for line in lines]

    def _write_mark(self, text: str) -> None:
        with contextlib.suppress(OSError):  # a full pipe: lines are attributed less precisely
            os.write(2, f"{_MARK}{text}\n".encode())

    # ------------------------------------------------------------------ thread

    def _read(self) -> None:
        assert self._read_fd is not None
        buffer = b""
        try:
            while True:
                try:
                    chunk = os.read(self._read_fd, 65536)
                except OSError:
                    return
                if not chunk:
                    if buffer:
                        self._line(buffer.decode(errors="replace"))
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    try:
                        self._line(raw.decode(errors="replace").rstrip("\r"))
                    except Exception:  # this thread must outlive any odd line
                        log.exception("native stderr line not handled")
        finally:
            os.close(self._read_fd)

    def _line(self, line: str) -> None:
        if line.startswith(_MARK):
            mark, _, what = line.removeprefix(_MARK).partition(":")
            with self._lock:
                number = int(mark)
                if what == "begin":
                    self._active = number
                else:
                    self._active = None
                    event = self._reached.get(number)
                    if event is not None:
                        event.set()
            return
        with self._lock:
            target = self._collecting.get(self._active) if self._active is not None else None
        if target is not None:
            if line.strip():
                target.append(NATIVE_LINE.sub("", line).strip())
            return
        if NATIVE_LINE.match(line):
            self._log(line)
        elif self._saved is not None:
            with contextlib.suppress(OSError):
                os.write(self._saved, (line + "\n").encode())

    def _log(self, line: str) -> None:
        message = redact_text(NATIVE_LINE.sub("", line).strip())
        if not message:
            return
        key = re.sub(r"0x[0-9a-f]+|\d+", "#", message)
        now = time.monotonic()
        if now - self._last_logged.get(key, -REPEAT_S) < REPEAT_S:
            return
        self._last_logged[key] = now
        log.warning("ffmpeg/opencv: %s", message)


def _repoint_handlers(old: object, new: object) -> None:
    """Log handlers writing to the old stderr object write to the new one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            handler.setStream(new)


NATIVE_STDERR = NativeStderr()
