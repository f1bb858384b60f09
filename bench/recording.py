"""Benchmark: CPU per recorded camera (full-rate segments, ffmpeg -c copy).

Each camera is a real RTSP stream (gst-rtsp-server, tests/rtsp_server.py) of an H.264
clip at 1280x720 and 25 frames/s — the shared fixed-camera footage when ../shared is
there, a test pattern otherwise. Per camera count, it runs that many `SegmentRecorder`s
(the service's own class and command line) for --seconds and reads each ffmpeg's CPU time
from /proc. For scale it also measures what *decoding* one such stream costs (ffmpeg to
the null muxer, single-threaded as the readers decode) — the work recording avoids.

    python bench/recording.py [--cameras 1 4] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.conftest

from tests.conftest import SHARED_DIR, RtspServer, free_port, make_h264_clip

from hazardwatch.capture.recorder import RecorderOptions, SegmentRecorder
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.outputs.clips import list_segments
from procs import cpu_flags, cpu_seconds


def measure_recording(url: str, cameras: int, seconds: float, root: Path) -> dict[str, Any]:
    recorders = [
        SegmentRecorder(
            f"cam{i}", SourceSpec.parse(url), root / f"n{cameras}" / f"cam{i}", RecorderOptions()
        )
        for i in range(cameras)
    ]
    for recorder in recorders:
        recorder.start()
    try:
        time.sleep(3.0)  # connect and reach the steady state
        pids = [r.stats.pid for r in recorders]
        if any(pid is None for pid in pids):
            errors = [r.stats.last_error for r in recorders]
            raise RuntimeError(f"a recorder is not running: {errors}")
        before = [cpu_seconds(pid) for pid in pids if pid is not None]
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        after = [cpu_seconds(pid) for pid in pids if pid is not None]
    finally:
        for recorder in recorders:
            recorder.stop(10)
    per_camera = [(a - b) / elapsed for a, b in zip(after, before, strict=True)]
    written = sum(p.stat().st_size for r in recorders for _, p in list_segments(r.directory))
    return {
        "cameras": cameras,
        "cpu_percent_per_camera": round(100 * sum(per_camera) / cameras, 2),
        "cpu_percent_max_camera": round(100 * max(per_camera), 2),
        "megabits_per_s_per_camera": round(written * 8 / (elapsed + 3.0) / cameras / 1e6, 2),
    }


def measure_decoding(url: str, seconds: float) -> float:
    """CPU % of one core to decode the stream (the readers' cost; recording avoids it)."""
    process = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-rtsp_transport", "tcp",
         "-i", url, "-f", "null", "-"],
    )  # fmt: skip
    try:
        time.sleep(3.0)
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds(process.pid) - before
        return round(100 * used / (time.monotonic() - started), 2)
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        footage = SHARED_DIR / "data" / "videos" / "car-detection.mp4"
        clip = make_h264_clip(
            root / "cam.mp4", 90, size="1280x720", fps=25,
            source=footage if footage.is_file() else None,
        )  # fmt: skip
        server = RtspServer(clip, free_port())
        server.start()
        try:
            rows = [measure_recording(server.url, n, args.seconds, root) for n in args.cameras]
            decode = measure_decoding(server.url, args.seconds)
        finally:
            server.stop()
    result = {
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "stream": "H.264 1280x720 25 fps over RTSP/TCP (gst-rtsp-server on the same host)",
        "recording": rows,
        "decoding_cpu_percent_one_stream": decode,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"CPU flags: {result['cpu_flags']}; {result['cores']} cores; {result['stream']}")
        print("cameras  CPU %/camera  max %  Mbit/s/camera")
        for row in rows:
            print(
                f"{row['cameras']:7d}  {row['cpu_percent_per_camera']:12.2f}  "
                f"{row['cpu_percent_max_camera']:5.2f}  {row['megabits_per_s_per_camera']:13.2f}"
            )
        print(f"decoding the same stream (for scale): {decode:.1f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
