"""Benchmark: bytes per gated frame on the wire, and broker bandwidth per camera.

Encodes frames of the shared fixed-camera footage (or a synthetic street scene when
../shared is absent) with the service's own codec (`handoff/codec.py`) at the default
wire options, and reports the message size per frame and the bandwidth per camera at
the sampler's `motion.sample_fps` while motion lasts.

    python bench/wire_size.py [--video PATH] [--frames 60] [--fps 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import SHARED_DIR

from hazardwatch.handoff.codec import encode_gated
from hazardwatch.images import ImageOptions
from hazardwatch.records import Frame, GatedFrame, MotionResult


def frames(video: Path | None, count: int) -> list[np.ndarray]:
    if video is not None and video.is_file():
        capture = cv2.VideoCapture(str(video))
        out = []
        while len(out) < count:
            ok, image = capture.read()
            if not ok:
                break
            out.append(image)
        capture.release()
        if out:
            return out
    rng = np.random.default_rng(0)
    return [rng.integers(60, 200, (720, 1280, 3), dtype=np.uint8) for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = SHARED_DIR / "data" / "videos" / "car-detection.mp4"
    parser.add_argument("--video", type=Path, default=default)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--fps", type=float, default=3.0, help="motion.sample_fps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images = frames(args.video, args.frames)
    rows = []
    for name, options in (
        ("jpeg q85 (default)", ImageOptions()),
        ("jpeg q70, 640 px", ImageOptions(jpeg_quality=70, max_width=640)),
        ("png (lossless)", ImageOptions(image_format="png")),
    ):
        sizes, seconds = [], 0.0
        for i, image in enumerate(images):
            gated = GatedFrame(
                Frame("cam", i, time.time(), datetime.now(UTC), image),
                MotionResult(True, 0.05, (10, 10, 200, 200)),
                "motion",
                1,
            )
            began = time.perf_counter()
            sizes.append(len(encode_gated(gated, options)))
            seconds += time.perf_counter() - began
        mean = float(np.mean(sizes))
        rows.append({
            "wire": name,
            "bytes_per_frame": round(mean),
            "kbit_per_s_per_camera": round(mean * 8 * args.fps / 1000, 1),
            "encode_ms_per_frame": round(1000 * seconds / len(images), 2),
        })  # fmt: skip
    source = f"{images[0].shape[1]}x{images[0].shape[0]}"
    result = {"frames": len(images), "source": source, "sample_fps": args.fps, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(images)} frames of {source}, {args.fps:g} sampled frames/s per camera")
        for row in rows:
            print(f"  {row['wire']:<20} {row['bytes_per_frame']:>9} B/frame  "
                  f"{row['kbit_per_s_per_camera']:>8} kbit/s/camera  "
                  f"{row['encode_ms_per_frame']} ms/frame")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
