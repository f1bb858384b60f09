from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from hazardwatch.scoring.preprocess import check_frame, crop_around, preprocess_batch


def natural_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth shapes plus fine texture and noise: what a camera frame looks like to a resizer."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [
            128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0),
            128 + 50 * np.cos((x + y) / 51.0),
            100 + 0.1 * x % 80,
        ],
        axis=-1,
    )
    for _ in range(20):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, height // 5)
        cv2.circle(frame, (int(cx), int(cy)), int(r), rng.integers(0, 255, 3).tolist(), -1)
    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width"), [(1080, 1920), (720, 1280), (432, 768), (300, 200), (224, 224)]
)
def test_matches_clips_own_preprocess(height: int, width: int) -> None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from clip.clip import _transform

    frame = natural_frame(height, width)
    expected = _transform(224)(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))).numpy()
    ours = preprocess_batch([frame], 224)[0]
    assert ours.shape == expected.shape == (3, 224, 224)
    diff = np.abs(ours - expected)
    # Normalised units (1 grey level ≈ 0.015): on average within about one grey level.
    assert diff.mean() < 0.02, diff.mean()
    assert np.percentile(diff, 99) < 0.2


def test_batch_of_mixed_sizes() -> None:
    batch = preprocess_batch([natural_frame(480, 640), natural_frame(1080, 1920, 1)], 224)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((100, 100, 3), np.float32), "dtype"),
        (np.zeros((4, 4, 3), np.uint8), "at least 8"),
        (np.zeros((100, 100, 5), np.uint8), "expected HxWx3"),
        ("not an image", "not a numpy array"),
    ],
)
def test_bad_frames_are_rejected(frame: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_frame(frame)


def test_grey_and_bgra_frames_are_accepted() -> None:
    assert check_frame(np.zeros((20, 20), np.uint8)).shape == (20, 20, 3)
    assert check_frame(np.zeros((20, 20, 4), np.uint8)).shape == (20, 20, 3)


def test_crop_around_motion_box_stays_inside() -> None:
    frame = natural_frame(400, 600)
    crop = crop_around(frame, (550, 350, 40, 40))
    assert crop.shape[0] > 0 and crop.shape[1] > 0
    assert crop.shape[0] <= 400 and crop.shape[1] <= 600
