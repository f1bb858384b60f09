"""Benchmark: decode-only vs decode + motion gate, and memory per camera.

Clips are made with ffmpeg (H.264, real footage from ../shared scaled up when present,
else a synthetic test pattern). CPU cost is process CPU time (all threads, so FFmpeg's
decoder threads count) per frame; cameras that fit = cores / (CPU s per frame × fps).

    python bench/capture_motion.py [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hazardwatch.capture.reader import CameraReader, ReaderOptions
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.motion.gate import MotionGate
from hazardwatch.motion.snippets import SamplerParams, SnippetSampler
from hazardwatch.motion.stage import MotionStage

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO.parent / "shared" / "data" / "videos" / "car-detection.mp4"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
CAMERA_FPS = 10


def make_clip(out: Path, size: tuple[int, int], seconds: float, fps: int = 25) -> str:
    width, height = size
    if FOOTAGE.is_file():
        inputs = ["-stream_loop", "-1", "-i", str(FOOTAGE)]
        source = "real footage (car-detection.mp4, scaled)"
    else:
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
        source = "ffmpeg testsrc2 pattern"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-t",
            str(seconds),
            "-vf",
            f"scale={width}:{height},fps={fps}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-an",
            str(out),
        ],
        check=True,
    )
    return source


def cpu_s() -> float:
    return time.process_time()


def decode_pass(path: Path, gate: MotionGate | None) -> dict[str, float]:
    """Decode every frame (and gate it right after, as a reader does).

    Returns wall fps, process CPU s/frame (all threads, FFmpeg's included) and the gate's
    own CPU ms/frame, timed with the calling thread's clock so decoder threads running
    at the same time are not counted.
    """
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = 0
    gate_cpu = 0.0
    wall0, cpu0 = time.perf_counter(), cpu_s()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames += 1
        if gate is not None:
            g0 = time.thread_time()
            gate.update(image)
            gate_cpu += time.thread_time() - g0
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    capture.release()
    return {
        "frames": frames,
        "fps": frames / wall,
        "cpu_s_per_frame": cpu / frames,
        "gate_ms_per_frame": 1000 * gate_cpu / frames,
    }


def median_pass(path: Path, gated: bool, repeats: int) -> dict[str, float]:
    runs = [decode_pass(path, MotionGate() if gated else None) for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_per_camera(path: Path, cameras: int, seconds: float) -> dict[str, float]:
    """RSS growth per live camera pipeline (reader + gate + default pre-roll), paced at 10 fps."""
    gc.collect()
    before = rss_mb()
    readers: list[CameraReader] = []
    for i in range(cameras):
        sampler = SnippetSampler(SamplerParams(), lambda g: None)
        stage = MotionStage(f"cam{i}", MotionGate(), sampler)
        reader = CameraReader(
            f"cam{i}",
            SourceSpec("file", str(path)),
            stage,
            ReaderOptions(loop=True, fps_limit=CAMERA_FPS),
        )
        reader.start()
        readers.append(reader)
    time.sleep(seconds)
    after = rss_mb()
    for reader in readers:
        reader.request_stop()
    for reader in readers:
        reader.stop(10)
    return {
        "cameras": cameras,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "mb_per_camera": (after - before) / cameras,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="clip length (default 20)")
    parser.add_argument("--memory-cameras", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)  # as `hazardwatch run` does: cameras are the parallelism
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {"cores": cores, "camera_fps": CAMERA_FPS, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in SIZES.items():
            clip = Path(tmp) / f"{name}.mp4"
            results["source"] = make_clip(clip, size, args.seconds)
            decode_pass(clip, None)  # warm the page cache and codec
            decode = median_pass(clip, gated=False, repeats=3)
            gated = median_pass(clip, gated=True, repeats=3)
            gate_ms = gated["gate_ms_per_frame"]
            decode_ms = 1000 * decode["cpu_s_per_frame"]
            per_frame = gated["cpu_s_per_frame"]
            results["sizes"][name] = {
                "decode_fps": round(decode["fps"], 1),
                "decode_gate_fps": round(gated["fps"], 1),
                "decode_cpu_ms_per_frame": round(decode_ms, 2),
                "decode_gate_cpu_ms_per_frame": round(1000 * per_frame, 2),
                "gate_ms_per_frame": round(gate_ms, 3),
                "gate_overhead": round(gate_ms / decode_ms, 3),
                "cpu_share_per_camera": round(per_frame * CAMERA_FPS, 3),
                "cameras_that_fit": int(cores / (per_frame * CAMERA_FPS)),
            }
        clip = Path(tmp) / "1080p.mp4"
        results["memory_1080p"] = {
            k: round(v, 1) for k, v in memory_per_camera(clip, args.memory_cameras, 8).items()
        }
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"capture + motion gate benchmark ({cores} cores, {results['source']})")
    for name, r in results["sizes"].items():
        print(
            f"  {name}: decode {r['decode_fps']} fps, decode+gate {r['decode_gate_fps']} fps; "
            f"gate {r['gate_ms_per_frame']} ms/frame = {r['gate_overhead']:.1%} of decode; "
            f"{r['cpu_share_per_camera']:.1%} of a core per camera at {CAMERA_FPS} fps "
            f"→ {r['cameras_that_fit']} cameras fit"
        )
    m = results["memory_1080p"]
    print(f"  1080p memory: {m['mb_per_camera']} MB per camera ({m['cameras']} live pipelines)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
