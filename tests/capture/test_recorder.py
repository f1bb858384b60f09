"""The full-rate recorder against a real RTSP server (gst-rtsp-server) and real ffmpeg."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from hazardwatch.capture.recorder import (
    RecorderOptions,
    SegmentRecorder,
    recording_unsupported,
)
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.outputs.clips import list_segments
from tests.conftest import RtspServer, free_port
from tests.helpers import wait_for


def probe(path: Path) -> dict[str, object]:
    """Codec, size, frame rate, frame count of the first video stream and the file's
    duration (ffprobe)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,width,height,r_frame_rate,nb_read_frames"
         ":format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    parsed = json.loads(out.stdout)
    stream: dict[str, object] = parsed["streams"][0]
    stream["duration"] = float(parsed["format"]["duration"])
    return stream


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("rtsp://cam/stream", None),
        ("clip.mp4", "file sources are not recorded"),
        ("webcam:0", "webcam sources are not recorded"),
        ("http://cam/mjpeg", "http sources are not recorded"),
    ],
)
def test_only_rtsp_streams_are_recorded(url: str, why: str | None) -> None:
    got = recording_unsupported(SourceSpec.parse(url))
    assert (got is None) if why is None else (got is not None and got.startswith(why))


def test_records_the_stream_at_full_rate_without_reencoding(
    rtsp_server: RtspServer, rtsp_clip: Path, tmp_path: Path
) -> None:
    recorder = SegmentRecorder(
        "cam", SourceSpec.parse(rtsp_server.url), tmp_path / "seg", RecorderOptions(segment_s=1)
    )
    started = time.time()
    recorder.start()
    try:
        assert wait_for(lambda: len(list_segments(tmp_path / "seg")) >= 4, 20)
        assert recorder.stats.state == "recording" and recorder.stats.last_error is None
    finally:
        assert recorder.stop(10)
    stopped = time.time()
    assert recorder.stats.state == "stopped"
    segments = list_segments(tmp_path / "seg")
    # Named by their UTC start second, within the time the recorder ran.
    assert all(int(started) - 1 <= t <= stopped for t, _ in segments)
    source = probe(rtsp_clip)
    frames, seconds = 0, 0.0
    for _, path in segments:  # every one playable, the last one too (closed on SIGTERM)
        info = probe(path)
        assert info["codec_name"] == "h264"
        assert (info["width"], info["height"]) == (source["width"], source["height"])
        frames += int(str(info["nb_read_frames"]))
        seconds += float(str(info["duration"]))
    # Every frame at the camera's rate (10 fps), and no gap from the first segment on (the
    # connect before it takes what the machine's load makes it take).
    num, den = str(source["r_frame_rate"]).split("/")
    assert frames / seconds == pytest.approx(int(num) / int(den), rel=0.1)
    assert seconds >= 0.7 * (stopped - segments[0][0] - 1.0)


def test_ffmpeg_errors_land_in_last_error_redacted(
    rtsp_clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RtspServer(rtsp_clip, free_port(), ["--user", "op", "--password", "right"])
    server.start()
    url = server.url.replace("rtsp://", "rtsp://op:wr0ngpass@")
    recorder = SegmentRecorder(
        "door",
        SourceSpec.parse(url),
        tmp_path / "seg",
        RecorderOptions(backoff_initial_s=0.2, backoff_max_s=0.5),
    )
    caplog.set_level(logging.DEBUG, logger="hazardwatch.capture.recorder")
    try:
        recorder.start()
        assert wait_for(lambda: recorder.stats.restarts >= 2, 20)
        error = recorder.stats.last_error
    finally:
        recorder.stop(10)
        server.stop()
    assert error is not None and "401" in error and "ffmpeg exited" in error
    assert "wr0ngpass" not in error and "wr0ngpass" not in caplog.text
    assert "restarting in" in caplog.text  # the supervisor's own line, once per failure
    assert not list_segments(tmp_path / "seg")


def test_missing_ffmpeg_is_reported_not_raised(tmp_path: Path) -> None:
    recorder = SegmentRecorder(
        "cam",
        SourceSpec.parse("rtsp://127.0.0.1:9/cam"),
        tmp_path / "seg",
        RecorderOptions(ffmpeg=str(tmp_path / "no-ffmpeg"), backoff_initial_s=5),
    )
    recorder.start()
    try:
        assert wait_for(lambda: recorder.stats.restarts >= 1, 5)
        assert recorder.stats.last_error is not None
        assert recorder.stats.last_error.startswith("cannot start ffmpeg")
    finally:
        assert recorder.stop(5)
