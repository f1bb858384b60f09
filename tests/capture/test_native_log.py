"""FFmpeg's and OpenCV's native stderr: attributed to the camera that was opening, never raw.

Descriptor 2 belongs to the whole process, so each test runs its own Python process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.conftest import RtspServer, free_port
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip


def test_router_collects_logs_once_and_passes_the_rest_through() -> None:
    done = _python(
        """
        import logging, os, sys
        from hazardwatch.capture.native_log import NATIVE_STDERR
        from hazardwatch.redact import configure_logging
        configure_logging("INFO")
        NATIVE_STDERR.start()
        with NATIVE_STDERR.collect() as said:
            os.write(2, b"[rtsp @ 0x55aa] method DESCRIBE failed: 401 Unauthorized\\n")
            os.write(2, b"[ WARN:0@0.021] global cap.cpp:212 open VIDEOIO(FFMPEG): no\\n")
        print("collected", said, flush=True)
        for _ in range(3):  # the same message from a running stream: logged once
            os.write(2, b"[h264 @ 0x55bb] error while decoding MB 3 4 rtsp://u:pw@cam/s\\n")
        os.write(2, b"a C library's own message\\n")
        logging.getLogger("hazardwatch.test").warning("python's own record")
        NATIVE_STDERR.stop()
        os.write(2, b"after uninstall\\n")
        """
    )
    assert done.returncode == 0, done.stderr
    said = "collected ['method DESCRIBE failed: 401 Unauthorized', 'global cap.cpp:212"
    assert said in done.stdout
    err = done.stderr
    assert "[rtsp @" not in err and "DESCRIBE" not in err  # the opener's, not the log's
    assert err.count("error while decoding MB") == 1  # logged once, as a record
    assert "hazardwatch.native: ffmpeg/opencv: error while decoding MB" in err
    assert "pw@" not in err and "[h264 @" not in err
    assert "a C library's own message" in err
    assert "python's own record" in err and "after uninstall" in err


def test_a_camera_refused_for_its_password_says_so_in_last_error(
    rtsp_clip: Path, tmp_path: Path
) -> None:
    """`hazardwatch run` as its own process, a camera with a wrong password: /cameras says
    authentication failed with FFmpeg's own words, and stderr holds no raw FFmpeg line."""
    server = RtspServer(rtsp_clip, free_port(), ["--user", "op", "--password", "right"])
    server.start()
    url = server.url.replace("rtsp://", "rtsp://op:wr0ng@")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fault.run_fake", str(tmp_path), str(port), url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        cameras: list[dict[str, object]] = []

        def reported() -> bool:
            try:
                got = httpx.get(f"http://127.0.0.1:{port}/api/v1/cameras", timeout=2)
            except httpx.HTTPError:
                return False
            cameras[:] = got.json()["items"]
            return bool(cameras) and bool(cameras[0]["last_error"])

        assert wait_for(reported, 30, interval=0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        server.stop()
    error = str(cameras[0]["last_error"])
    assert "authentication failed" in error and "401" in error and "wr0ng" not in error
    assert "[rtsp @" not in err and "VIDEOIO" not in err and "wr0ng" not in err
    assert process.returncode == 0
