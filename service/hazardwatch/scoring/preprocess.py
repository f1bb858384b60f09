"""CLIP preprocessing from BGR numpy frames, in batches, without PIL.

Equivalent to clip's own transform (shortest side to the model's resolution with bicubic
resampling, centre crop, RGB, CLIP mean/std): PIL's bicubic downscale is antialiased,
so large frames are first halved with 2×2 area averaging (OpenCV's vectorised path; two
halvings of a 1080p frame cost a quarter of one 4× area shrink and differ from it by at
most one grey level) until the shortest side is below twice the target, then resized with
bicubic interpolation (area averaging when that last step still shrinks by more than a
quarter).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from hazardwatch.records import Box, Image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
Batch = npt.NDArray[np.float32]


def check_frame(image: object) -> Image:
    """The frame as an HxWx3 uint8 array, or ValueError saying what is wrong with it."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame is a {type(image).__name__}, not a numpy array")
    if image.dtype != np.uint8:
        raise ValueError(f"frame dtype is {image.dtype}; expected uint8 BGR")
    frame: Image = image
    usable = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))
    if not usable or min(frame.shape[:2]) < 8:
        raise ValueError(f"frame shape {frame.shape}; expected HxWx3 BGR of at least 8×8")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def resize_crop(image: Image, resolution: int) -> Image:
    """Shortest side to `resolution` (antialiased), then a centre crop; still BGR uint8."""
    height, width = image.shape[:2]
    while min(height, width) >= 2 * resolution:  # exact halvings: antialiased and fast
        height, width = height // 2, width // 2
        image = cv2.resize(
            image[: 2 * height, : 2 * width], (width, height), interpolation=cv2.INTER_AREA
        )
    scale = resolution / min(height, width)
    new_w, new_h = max(resolution, round(width * scale)), max(resolution, round(height * scale))
    # Bicubic like CLIP; a remaining shrink below 0.75 would alias, so average areas there.
    interpolation = cv2.INTER_AREA if scale < 0.75 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = round((new_h - resolution) / 2), round((new_w - resolution) / 2)
    crop: Image = resized[top : top + resolution, left : left + resolution]
    return crop


def preprocess_batch(images: Sequence[Image], resolution: int) -> Batch:
    """[N, 3, R, R] float32, normalised like CLIP, from BGR uint8 frames of any sizes."""
    crops = [resize_crop(check_frame(image), resolution) for image in images]
    if not crops:
        return np.empty((0, 3, resolution, resolution), np.float32)
    batch: Batch = cv2.dnn.blobFromImagesWithParams(crops, _blob_params(resolution))
    return batch


@functools.cache
def _blob_params(resolution: int) -> Any:
    """One pass for BGR→RGB, (pixel − mean) × 1/std and NCHW: (x − 255m) · 1/(255s).

    Built once per resolution: the worker preprocesses frame by frame.
    """
    return cv2.dnn.Image2BlobParams(
        scalefactor=tuple(float(1.0 / (255.0 * s)) for s in CLIP_STD),
        size=(resolution, resolution),
        mean=tuple(float(255.0 * m) for m in CLIP_MEAN),
        swapRB=True,
        ddepth=cv2.CV_32F,
        datalayout=cv2.dnn.DNN_LAYOUT_NCHW,
    )


def crop_around(image: Image, box: Box, margin: float = 0.25, min_side: int = 64) -> Image:
    """A square-ish crop around a motion box, grown by `margin` on each side."""
    height, width = image.shape[:2]
    x, y, w, h = box
    side = max(w, h, min_side) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
    return image[y0:y1, x0:x1]
