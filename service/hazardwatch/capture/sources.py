"""Camera sources: parse a configured URL, open it with OpenCV's FFmpeg backend and timeouts."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import cv2

from hazardwatch.capture.native_log import NATIVE_STDERR
from hazardwatch.capture.rtsp import describe
from hazardwatch.errors import SourceError
from hazardwatch.redact import ambiguous_credentials, redact_text, redact_url

SourceKind = Literal["rtsp", "http", "file", "webcam"]

# OpenCV reads FFmpeg options from this process-wide variable when a capture opens,
# so opening is serialised to give each camera its own RTSP transport.
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_open_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What to open: the kind of source and the target OpenCV understands."""

    kind: SourceKind
    target: str  # URL, file path, or webcam index as text; may hold credentials
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    @property
    def display(self) -> str:
        """The target with credentials masked: safe for logs, metrics and the API."""
        return redact_url(self.target)

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    @classmethod
    def parse(cls, url: str, rtsp_transport: Literal["tcp", "udp"] = "tcp") -> SourceSpec:
        """Classify a configured source; a malformed one raises SourceError naming the fix."""
        raw = url.strip()
        if not raw:
            raise SourceError("empty source; give rtsp://…, http(s)://…, a file path or webcam:N")
        if raw.startswith("webcam:") or raw.isdigit():
            index = raw.removeprefix("webcam:")
            if not index.isdigit():
                raise SourceError(f"webcam source {raw!r} must be webcam:N with N a device index")
            return cls("webcam", index)
        if "://" not in raw:
            return cls("file", raw)
        problem = ambiguous_credentials(raw)
        if problem is not None:
            raise SourceError(f"source {redact_url(raw)!r} is not usable: {problem}")
        try:
            parts = urlsplit(raw)
            port = parts.port  # raises ValueError on a non-numeric port
        except ValueError:
            # Not the parser's message: it quotes the "port", often a piece of a password.
            raise SourceError(
                f"source {redact_url(raw)!r} is not a valid URL: its host:port cannot be read; "
                "percent-encode '/', '@', ':', '#' and '?' in the user name and password "
                "(e.g. '/' as %2F)"
            ) from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            return cls("file", unquote(parts.path))
        if scheme not in ("rtsp", "rtsps", "http", "https"):
            raise SourceError(
                f"source {redact_url(raw)!r} has unsupported scheme {scheme!r}; "
                "use rtsp://, rtsps://, http(s):// (MJPEG), a file path or webcam:N"
            )
        if not parts.hostname:
            raise SourceError(
                f"source {redact_url(raw)!r} has no host; write it as {scheme}://host[:port]/path"
            )
        del port
        kind: SourceKind = "rtsp" if scheme.startswith("rtsp") else "http"
        return cls(kind, raw, rtsp_transport)


def open_capture(spec: SourceSpec, open_timeout_s: float, read_timeout_s: float) -> Any:
    """Open `spec` with timeouts so a dead source fails instead of blocking the thread.

    Returns an opened cv2.VideoCapture; raises SourceError (credentials masked) otherwise.
    """
    if spec.kind == "file" and not Path(spec.target).is_file():
        raise SourceError(f"video file {spec.target!r} does not exist")
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]
    if spec.kind == "webcam":
        capture = cv2.VideoCapture(int(spec.target), cv2.CAP_ANY, params)
    else:
        options = f"rtsp_transport;{spec.rtsp_transport}" if spec.kind == "rtsp" else ""
        with _open_lock, NATIVE_STDERR.collect() as said:
            previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
            _set_env(_FFMPEG_OPTIONS_ENV, options or None)
            try:
                capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
            finally:
                _set_env(_FFMPEG_OPTIONS_ENV, previous)
    if not capture.isOpened():
        capture.release()
        raise SourceError(open_failure(spec, said, _rtsp_diagnosis(spec, open_timeout_s)))
    return capture


def _rtsp_diagnosis(spec: SourceSpec, timeout_s: float) -> str | None:
    """What an RTSP DESCRIBE of its own says of a camera OpenCV could not open (the
    probe's words: "stream path '/x' not found on host:port", "connection refused by …");
    None when it answers well or is not plain RTSP."""
    if spec.kind != "rtsp" or spec.target.lower().startswith("rtsps"):
        return None
    outcome = describe(spec.target, min(timeout_s, 5.0))
    return None if outcome.ok else outcome.detail


def open_failure(spec: SourceSpec, said: list[str], diagnosis: str | None = None) -> str:
    """Why `spec` did not open, with what FFmpeg said about it (when it was captured) and,
    for RTSP, what the camera answered a DESCRIBE (`diagnosis`)."""
    ffmpeg = [line for line in said if "VIDEOIO" not in line and "cap.cpp" not in line]
    detail = f" (ffmpeg: {'; '.join(ffmpeg[-3:])})" if ffmpeg else ""
    if diagnosis is not None:
        hint = diagnosis
    elif any(re.search(r"\b401\b|Unauthorized", line) for line in ffmpeg):
        hint = "authentication failed: check the user name and password in the URL"
    else:
        hint = {
            "rtsp": "check the host, port, path and credentials, and that the camera is up",
            "http": "check the URL serves an MJPEG stream",
            "file": "the file may be corrupt or in a format FFmpeg cannot decode",
            "webcam": "check the device exists and is not used by another program",
        }[spec.kind]
    return redact_text(f"cannot open {spec.kind} source {spec.display!r}: {hint}{detail}")


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
