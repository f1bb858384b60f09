from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.errors import SourceError

no_error = contextlib.nullcontext()


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("rtsp://admin:pw@cam.local:554/stream1", "rtsp", "rtsp://admin:pw@cam.local:554/stream1"),
        ("rtsps://cam.local/s", "rtsp", "rtsps://cam.local/s"),
        ("http://cam.local/mjpg/video.mjpg", "http", "http://cam.local/mjpg/video.mjpg"),
        ("https://cam.local/mjpg", "http", "https://cam.local/mjpg"),
        ("/videos/lot.mp4", "file", "/videos/lot.mp4"),
        ("file:///videos/a%20b.mp4", "file", "/videos/a b.mp4"),
        ("webcam:0", "webcam", "0"),
        ("2", "webcam", "2"),
    ],
)
def test_parse_kinds(url: str, kind: str, target: str) -> None:
    spec = SourceSpec.parse(url)
    assert (spec.kind, spec.target) == (kind, target)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty source"),
        ("rtsp://", "has no host"),
        ("rtsp://admin:secret@cam:notaport/x", "not a valid URL"),
        ("ftp://cam/x", "unsupported scheme 'ftp'"),
        ("webcam:front", "webcam:N"),
        # Issue 29.5: raw '@', '/', '#', '?' in a password read as a host named "ss" before.
        ("rtsp://viewer:p@ss/w#rd?x@127.0.0.1:18554/yard", "percent-encode"),
        ("rtsp://viewer:secret@ss@cam/x", "percent-encode"),
        ("rtsp://viewer:secret/w@cam/x", "not a valid URL|percent-encode"),
        ("http://viewer:se#cret@cam/mjpg", "percent-encode"),
    ],
)
def test_malformed_urls_are_clear_errors(url: str, fragment: str) -> None:
    with pytest.raises(SourceError, match=fragment) as caught:
        SourceSpec.parse(url)
    for piece in ("secret", "ss/w", "rd?x", "ss@", "se#"):
        assert piece not in str(caught.value)


def test_a_percent_encoded_password_is_fine() -> None:
    spec = SourceSpec.parse("rtsp://viewer:p%40ss%2Fw%23rd%3Fx@127.0.0.1:18554/yard")
    assert spec.kind == "rtsp" and spec.display == "rtsp://viewer:***@127.0.0.1:18554/yard"


def test_display_masks_credentials() -> None:
    spec = SourceSpec.parse("rtsp://admin:hunter2@cam/s")
    assert spec.display == "rtsp://admin:***@cam/s"
    assert "hunter2" not in repr(spec.display)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_capture(SourceSpec("file", str(tmp_path / "nope.mp4")), 1, 1)


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    with pytest.raises(SourceError, match="cannot open file source"):
        open_capture(SourceSpec("file", str(bad)), 2, 2)


def test_closed_port_fails_fast_with_masked_url(free_tcp_port: Any) -> None:
    spec = SourceSpec.parse(f"rtsp://admin:hunter2@127.0.0.1:{free_tcp_port}/cam")
    with pytest.raises(SourceError) as caught:
        open_capture(spec, 3, 3)
    message = str(caught.value)
    assert "cannot open rtsp source" in message and "hunter2" not in message
