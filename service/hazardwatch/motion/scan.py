"""`hazardwatch motion`: run the gate over a video file as fast as it decodes.

It is the tool for tuning thresholds on one's own footage: a JSON verdict per decoded
frame and an optional preview video with the boxes and scores drawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2

from hazardwatch.capture.sources import SourceSpec, open_capture
from hazardwatch.motion.gate import GateParams, MotionGate, Polygon
from hazardwatch.records import Image, MotionResult

MOTION_COLOUR = (0, 0, 255)
QUIET_COLOUR = (160, 160, 160)


def scan_video(
    path: Path,
    params: GateParams,
    masks: list[Polygon] | None = None,
    preview: Path | None = None,
) -> dict[str, Any]:
    """Gate every decoded frame of `path`; returns {"frames": [...], "summary": {...}}."""
    capture = open_capture(SourceSpec("file", str(path)), open_timeout_s=30, read_timeout_s=30)
    gate = MotionGate(params, masks)
    writer: Any = None
    frames: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        fps_in = capture.get(cv2.CAP_PROP_FPS) or 25.0
        index = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                break
            result = gate.update(image)
            frames.append(
                {
                    "index": index,
                    "motion": result.motion,
                    "score": round(result.score, 6),
                    "box": list(result.box) if result.box is not None else None,
                }
            )
            if preview is not None:
                if writer is None:
                    writer = _open_writer(preview, fps_in, image.shape[1], image.shape[0])
                writer.write(draw_result(image, result))
            index += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    elapsed = time.perf_counter() - started
    motion_frames = sum(1 for f in frames if f["motion"])
    return {
        "frames": frames,
        "summary": {
            "frames": len(frames),
            "motion_frames": motion_frames,
            "fps": round(len(frames) / elapsed, 1) if elapsed > 0 else 0.0,
        },
    }


def _open_writer(path: Path, fps: float, width: int, height: int) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write preview video {path}; check the directory is writable")
    return writer


def draw_result(image: Image, result: MotionResult) -> Image:
    """A copy of `image` with the motion box and score drawn on it."""
    out = image.copy()
    colour = MOTION_COLOUR if result.motion else QUIET_COLOUR
    if result.box is not None:
        x, y, w, h = result.box
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
    label = f"{'MOTION' if result.motion else 'quiet'} {result.score:.4f}"
    if result.lighting:
        label += " (lighting change ignored)"
    cv2.putText(out, label, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, label, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
    return out
