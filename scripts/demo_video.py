"""Write a short synthetic fixed-camera clip (a road, cars crossing) for the quick start.

python scripts/demo_video.py data/demo.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def main(out: str) -> int:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps, seconds, width, height = 10, 20, 640, 360
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    rng = np.random.default_rng(0)
    road = np.full((height, width, 3), (70, 75, 80), np.uint8)
    road[: height // 3] = (200, 170, 120)  # sky
    cv2.line(road, (0, 2 * height // 3), (width, 2 * height // 3), (230, 230, 230), 3)
    for i in range(fps * seconds):
        frame = road.copy()
        t = i / fps
        for start, lane, colour in (
            (2, 190, (40, 40, 200)),
            (9, 260, (200, 80, 30)),
            (14, 210, (30, 160, 60)),
        ):
            if start <= t < start + 5:
                x = int((t - start) / 5 * (width + 160)) - 160
                cv2.rectangle(frame, (x, lane), (x + 150, lane + 60), colour, -1)
        noise = rng.normal(0, 2, frame.shape)
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
    writer.release()
    print(f"wrote {path} ({seconds} s at {fps} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "data/demo.mp4"))
