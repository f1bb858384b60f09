"""`hazardwatch cameras --probe`: open each camera once and say what it serves, or why not.

For RTSP the probe first speaks RTSP itself (DESCRIBE, with Basic or Digest credentials
from the URL when the camera asks for them), because OpenCV reports every failure alike:
a refused connection, silence, an unknown path and a wrong password read differently
here ("authentication failed" for a 401 after credentials). The SDP answer names the
codec; OpenCV then opens the stream as the service would and reads one frame for the
resolution and frame rate. Nothing said here carries a password.
"""

from __future__ import annotations

import cv2

from hazardwatch.capture.rtsp import ProbeResult, describe
from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.errors import SourceError
from hazardwatch.redact import redact_text

__all__ = ["ProbeResult", "describe", "probe"]


def probe(spec: SourceSpec, timeout_s: float = 10.0) -> ProbeResult:
    """Open `spec` once; never raises for a bad camera."""
    codec = None
    if spec.kind == "rtsp" and not spec.target.lower().startswith("rtsps"):
        outcome = describe(spec.target, timeout_s)
        if not outcome.ok:
            return outcome
        codec = outcome.codec
    try:
        capture = open_capture(spec, timeout_s, timeout_s)
    except SourceError as exc:
        return ProbeResult(False, redact_text(str(exc)))
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            return ProbeResult(False, f"opened, but no frame arrived within {timeout_s:g} s")
        height, width = frame.shape[:2]
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or None
        codec = codec or _fourcc(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    rate = f"{fps:.2f} fps" if fps else "frame rate unknown"
    detail = f"{codec or 'codec unknown'}, {width}x{height}, {rate}"
    return ProbeResult(True, detail, codec, int(width), int(height), fps)


def _fourcc(value: float) -> str | None:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text.lower() if text.isprintable() and text else None
