"""A deterministic stand-in for CLIP: the only fake in the tests (no weights can be had here).

Text: prompts that mention a crash point along one fixed direction, prompts of an empty
road along another, every other prompt a seeded random direction. Images: the more red
pixels, the closer to the crash direction. So a red object in a clip drives the
traffic_accident class like a crash would. Where the red sits (its mean column) turns the
embedding a little within two other directions, so two red objects at different places
are different sights (cosine about 0.8) to the normal references, as they are to CLIP.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hazardwatch.scoring.preprocess import CLIP_MEAN, CLIP_STD

DIM = 64
CRASH_WORDS = ("accident", "crash", "collision", "crashed", "overturned")
QUIET_WORDS = ("empty", "quiet", "no cars")


def _unit(seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


CRASH = _unit(1)
QUIET = _unit(2)
PLACE_A, PLACE_B = _unit(3), _unit(4)
PLACE_WEIGHT = 0.5


class FakeEncoder:
    name = "fake-crash-detector"
    resolution = 32
    logit_scale = 100.0
    device = "cpu"
    precision = "fp32"

    def __init__(self) -> None:
        self.images_seen = 0

    def encode_text(self, prompts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = []
        for prompt in prompts:
            if any(word in prompt.lower() for word in CRASH_WORDS):
                out.append(CRASH)
            elif any(word in prompt.lower() for word in QUIET_WORDS):
                out.append(QUIET)
            else:
                seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
                out.append(_unit(seed))
        return np.stack(out)

    def encode_images(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.images_seen += len(batch)
        rgb = batch.transpose(0, 2, 3, 1) * CLIP_STD + CLIP_MEAN  # back to 0..1 RGB
        red = (rgb[..., 0] > 0.6) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
        share = np.clip(red.mean(axis=(1, 2)) * 8.0, 0.0, 1.0)[:, None]
        columns = np.linspace(0.0, 1.0, red.shape[2])
        weight = red.sum(axis=1)  # [N, W] red pixels per column
        where = (weight * columns).sum(axis=1) / np.maximum(weight.sum(axis=1), 1)
        angle = (np.pi * where)[:, None]
        place = np.cos(angle) * PLACE_A + np.sin(angle) * PLACE_B
        v = share * (CRASH + PLACE_WEIGHT * place) + (1 - share) * QUIET
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


class SlowFakeEncoder(FakeEncoder):
    """The fake, plus a sleep per image standing in for the real model's compute."""

    def __init__(self, seconds_per_image: float) -> None:
        super().__init__()
        self.seconds_per_image = seconds_per_image

    def encode_images(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        time.sleep(self.seconds_per_image * len(batch))
        return super().encode_images(batch)


def write_red_square_clip(
    path: str,
    seconds: float = 10.0,
    fps: int = 10,
    on: tuple[float, float] = (2.0, 6.0),
    busy: bool = False,
    parked: dict[int, tuple[float, float]] | None = None,
) -> None:
    """Grey scene; a red square moves across it between on[0] and on[1] seconds.

    `busy` adds a dark block that never stops moving: motion in every frame, like a road.
    `parked` {x: (from, to)}: red squares standing still at column x (no moving square).
    """
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    for i in range(int(seconds * fps)):
        t = i / fps
        frame = np.full((240, 320, 3), 160, np.uint8)
        if busy:
            y = int((i * 7) % 200)
            frame[y : y + 40, 250:310] = 40
        if parked is not None:
            for x, (start, end) in parked.items():
                if start <= t < end:
                    frame[80:180, x : x + 100] = (20, 20, 230)
        elif on[0] <= t < on[1]:
            x = int(20 + (t - on[0]) * 50)
            frame[80:180, x : x + 100] = (20, 20, 230)  # BGR red, far darker in grey
        writer.write(frame)
    writer.release()
