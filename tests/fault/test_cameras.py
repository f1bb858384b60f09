"""Camera faults: every way a source goes wrong, at once, beside a healthy camera.

Real sources throughout: gst-rtsp-server processes that are killed -9 and restarted or
frozen with SIGSTOP, files that end or are garbage, a host that is never reachable, a URL
that cannot be parsed. Then 50 reconnects of real RTSP sessions, counting threads and
file descriptors.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hazardwatch.app import RunSummary, Service
from hazardwatch.capture.reader import CameraReader, ReaderOptions
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.records import Frame
from hazardwatch.settings import load_settings
from tests.conftest import RtspServer, free_port, make_h264_clip
from tests.fakes import FakeEncoder
from tests.helpers import scrape, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.rtsp, pytest.mark.slow]

HEALTHY_FPS = 10  # the red clip's rate; a looping file is paced in real time


def _cameras(port: int) -> dict[str, dict[str, Any]]:
    items = httpx.get(f"http://127.0.0.1:{port}/api/v1/cameras", timeout=10).json()["items"]
    return {c["name"]: c for c in items}


def _states(port: int) -> dict[str, str]:
    return {name: c["state"] for name, c in _cameras(port).items()}


def test_six_camera_faults_each_recover_or_report_and_the_healthy_camera_keeps_10_fps(
    tmp_path: Path, red_clip: Path, rtsp_server: RtspServer, rtsp_clip: Path
) -> None:
    frozen = RtspServer(rtsp_clip, free_port())
    frozen.start()
    ends = make_h264_clip(tmp_path / "ends.mp4", 2, fps=10)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(50_000))
    settings = load_settings(
        None,
        cameras=[
            {"name": "healthy", "url": str(red_clip), "loop": True},
            {"name": "killed", "url": rtsp_server.url},
            {"name": "frozen", "url": frozen.url},
            {"name": "ends", "url": str(ends)},
            {"name": "corrupt", "url": str(corrupt)},
            {"name": "unreachable", "url": "rtsp://admin:s3cret@192.0.2.1:554/cam"},
            {"name": "malformed", "url": "rtsp://admin:pa/ss@cam:554/s"},
        ],
        capture={"open_timeout_s": 2, "read_timeout_s": 2, "stall_timeout_s": 4,
                 "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
        storage={"data_dir": str(tmp_path / "data")},
        detector={"cooldown_s": 2.0},
        api={"port": free_port()},
    )  # fmt: skip
    port = settings.api.port
    service = Service(settings, lambda s: FakeEncoder())
    summary: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summary.append(service.run()), daemon=True)
    thread.start()
    try:
        expected = {"healthy": "streaming", "killed": "streaming", "frozen": "streaming",
                    "ends": "ended", "corrupt": "ended", "malformed": "invalid"}  # fmt: skip

        def settled() -> bool:
            try:
                states = _states(port)
            except httpx.HTTPError:
                return False
            return all(states.get(k) == v for k, v in expected.items()) and states.get(
                "unreachable"
            ) in ("connecting", "backing_off")

        assert wait_for(settled, 60, interval=0.5), _cameras(port)
        cams = _cameras(port)
        assert cams["ends"]["frames_read"] == 20 and cams["ends"]["last_error"] is None
        assert "corrupt" in cams["corrupt"]["last_error"]
        assert "cannot open rtsp source" in cams["unreachable"]["last_error"]
        assert "percent-encode" in cams["malformed"]["last_error"]
        healthy_frames, t0 = cams["healthy"]["frames_read"], time.monotonic()

        rtsp_server.stop()  # kill -9
        frozen.pause()
        lost = ("connecting", "backing_off")
        assert wait_for(
            lambda: _states(port)["killed"] in lost and _states(port)["frozen"] in lost, 20, 0.25
        ), _cameras(port)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503
        reasons = " ".join(ready.json()["reasons"])
        for name in ("killed", "frozen", "unreachable", "malformed"):
            assert f"camera {name}" in reasons
        time.sleep(5)

        rtsp_server.start()
        frozen.resume()
        assert wait_for(
            lambda: _states(port)["killed"] == "streaming" == _states(port)["frozen"], 30, 0.25
        ), _cameras(port)
        cams = _cameras(port)
        elapsed = time.monotonic() - t0
        healthy_fps = (cams["healthy"]["frames_read"] - healthy_frames) / elapsed
        metrics = scrape(port)
    finally:
        frozen.stop()
        stop_at = time.monotonic()
        service.stop()
        thread.join(60)
    stop_s = time.monotonic() - stop_at
    print(
        f"\nhealthy camera {healthy_fps:.1f} fps through {elapsed:.0f} s of faults; "
        f"reconnects killed {cams['killed']['reconnects']}, frozen {cams['frozen']['reconnects']}"
        f", unreachable {cams['unreachable']['reconnects']}; stopped in {stop_s:.1f} s"
    )
    assert healthy_fps >= 0.9 * HEALTHY_FPS
    assert cams["killed"]["reconnects"] >= 1 and cams["frozen"]["reconnects"] >= 1
    assert cams["unreachable"]["reconnects"] >= 3
    assert "s3cret" not in str(cams) and "pa/ss" not in str(cams)
    assert metrics['hazardwatch_camera_up{camera="healthy"}'] == 1
    assert metrics['hazardwatch_camera_up{camera="malformed"}'] == 0
    assert metrics['hazardwatch_camera_up{camera="unreachable"}'] == 0
    assert not thread.is_alive() and summary and summary[0].cameras == 6
    assert summary[0].events >= 2, "the healthy camera kept producing events"
    assert stop_s < settings.capture.read_timeout_s + 5


def _fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _threads() -> int:
    """Native threads of this process (FFmpeg's decoder threads included)."""
    return sum(1 for _ in Path("/proc/self/task").iterdir())


def test_50_reconnects_leak_no_thread_or_file_descriptor(tmp_path: Path) -> None:
    """Each RTSP session plays a 1 s clip and ends; the reader reconnects 50 times."""
    one_second = make_h264_clip(tmp_path / "one.mp4", 1, fps=10)
    server = RtspServer(one_second, free_port())
    server.start()
    frames = [0]

    def sink(frame: Frame) -> None:
        frames[0] += 1

    options = ReaderOptions(
        open_timeout_s=3, read_timeout_s=1, backoff_initial_s=0.05, backoff_max_s=0.1
    )
    reader = CameraReader("cycling", SourceSpec.parse(server.url), sink, options)
    closed_port = f"rtsp://127.0.0.1:{free_port()}/cam"  # refused at once, every time
    refused = CameraReader("refused", SourceSpec.parse(closed_port), sink, options)
    try:
        reader.start()
        refused.start()
        assert wait_for(lambda: reader.stats.reconnects >= 5, 60, 0.05)
        base_fds, base_threads, base_py = _quiet_counts()
        assert wait_for(lambda: reader.stats.reconnects >= 55, 180, 0.05), reader.stats
        fds, threads, py_threads = _quiet_counts()
    finally:
        reader.request_stop()
        refused.request_stop()
        assert reader.stop(10) and refused.stop(10)
        server.stop()
    print(
        f"\n50 reconnects ({frames[0]} frames; {refused.stats.reconnects} refused opens beside): "
        f"fds {base_fds} -> {fds}, native threads {base_threads} -> {threads}, "
        f"python threads {base_py} -> {py_threads}"
    )
    assert frames[0] >= 50 * 5
    assert refused.stats.reconnects >= 50
    # One of slack for a socket caught mid-open; a leak would add 50.
    assert fds <= base_fds + 1 and threads <= base_threads + 1 and py_threads <= base_py


def _quiet_counts() -> tuple[int, int, int]:
    """The lowest counts over 1.5 s (two sessions): the level between sessions."""
    samples = []
    for _ in range(30):
        samples.append((_fds(), _threads(), threading.active_count()))
        time.sleep(0.05)
    return min(s[0] for s in samples), min(s[1] for s in samples), min(s[2] for s in samples)
