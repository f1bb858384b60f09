from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.cli import main
from hazardwatch.motion.gate import GateParams, MotionGate, rasterise_masks

H, W = 360, 640
rng = np.random.default_rng(7)
BACKGROUND = np.clip(rng.normal(110, 25, (H, W, 3)), 0, 255).astype(np.uint8)


def scene(
    square_at: tuple[int, int] | None = None, brightness: int = 0, noise: float = 0.0, seed: int = 0
) -> np.ndarray:
    frame = BACKGROUND.astype(np.int16) + brightness
    if square_at is not None:
        x, y = square_at
        frame[y : y + 60, x : x + 60] = (20, 220, 240)
    if noise:
        frame = frame + np.random.default_rng(seed).normal(0, noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_first_frame_is_never_motion() -> None:
    assert not MotionGate().update(scene((100, 100))).motion


def test_moving_square_is_motion_with_box_in_full_frame_coordinates() -> None:
    gate = MotionGate()
    gate.update(scene((100, 100)))
    result = gate.update(scene((160, 120)))
    assert result.motion
    assert result.box is not None
    x, y, w, h = result.box
    # The union of the old and new square positions, give or take blur and dilation.
    assert 70 <= x <= 110 and 70 <= y <= 110
    assert 200 <= x + w <= 250 and 160 <= y + h <= 210
    assert result.score > GateParams().min_area


def test_global_brightness_jump_is_not_motion() -> None:
    gate = MotionGate()
    gate.update(scene((100, 100)))
    result = gate.update(scene((100, 100), brightness=60))
    assert not result.motion
    assert result.lighting
    assert result.changed > 0.6


def test_masked_region_is_ignored() -> None:
    mask = [[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]]  # left half
    masked = MotionGate(masks=mask)
    unmasked = MotionGate()
    for gate in (masked, unmasked):
        gate.update(scene((100, 100)))
    assert unmasked.update(scene((160, 120))).motion
    assert not masked.update(scene((160, 120))).motion
    # Motion in the right half still counts.
    masked.update(scene((400, 100)))
    assert masked.update(scene((460, 120))).motion


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sigma=st.floats(1.0, 8.0))
def test_sensor_noise_is_not_motion(seed: int, sigma: float) -> None:
    gate = MotionGate()
    gate.update(scene(noise=sigma, seed=seed))
    result = gate.update(scene(noise=sigma, seed=seed + 1))
    assert not result.motion


@settings(max_examples=40, deadline=None)
@given(
    x=st.integers(0, W - 61),
    y=st.integers(0, H - 61),
    dx=st.integers(-40, 40),
    dy=st.integers(-40, 40),
)
def test_box_always_inside_frame_and_big_moves_are_found(x: int, y: int, dx: int, dy: int) -> None:
    nx, ny = min(max(x + dx, 0), W - 61), min(max(y + dy, 0), H - 61)
    gate = MotionGate()
    gate.update(scene((x, y)))
    result = gate.update(scene((nx, ny)))
    if (nx, ny) == (x, y):
        assert not result.motion and result.box is None
        return
    if result.box is not None:
        bx, by, bw, bh = result.box
        assert bx >= 0 and by >= 0 and bx + bw <= W and by + bh <= H
    if max(abs(nx - x), abs(ny - y)) >= 20:
        assert result.motion and result.box is not None
        bx, by, bw, bh = result.box
        # The box overlaps the square's new position.
        assert bx < nx + 60 and nx < bx + bw and by < ny + 60 and ny < by + bh


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((5,), np.uint8)],
)
def test_bad_frames_are_rejected_with_a_reason(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="8-bit grey, BGR or BGRA"):
        MotionGate().update(bad)


def test_resolution_change_restarts_the_reference() -> None:
    gate = MotionGate()
    gate.update(scene((100, 100)))
    small = np.ascontiguousarray(scene((100, 100))[::2, ::2])
    assert not gate.update(small).motion


def test_rasterise_masks_marks_polygon_inside() -> None:
    keep = rasterise_masks([[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]], 100, 100)
    assert keep is not None
    assert keep[50, 50] == 0 and keep[5, 5] == 255
    assert rasterise_masks([], 10, 10) is None


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


@pytest.mark.shared
@pytest.mark.parametrize(
    ("video", "quiet", "busy"),
    [
        # Empty road until a car enters near frame 55; empty again around 115-175.
        ("car-detection.mp4", [(0, 50), (115, 175)], [(60, 100), (185, 235)]),
        # Empty room until someone walks in near frame 60; empty again 95-170.
        ("one-by-one-person-detection.mp4", [(0, 55), (95, 170)], [(62, 80), (182, 200)]),
    ],
)
def test_gate_on_real_footage(
    shared_dir: Path,
    tmp_path: Path,
    video: str,
    quiet: list[tuple[int, int]],
    busy: list[tuple[int, int]],
) -> None:
    out = tmp_path / "motion.json"
    preview = tmp_path / "preview.mp4"
    assert (
        main(
            [
                "motion",
                str(shared_dir / "data/videos" / video),
                "--json",
                str(out),
                "--preview",
                str(preview),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    frames = report["frames"]
    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert report["summary"]["frames"] == len(frames)
    assert report["summary"]["motion_frames"] == sum(f["motion"] for f in frames)
    assert preview.stat().st_size > 10_000
    for start, end in quiet:
        assert not any(f["motion"] for f in frames[start : end + 1]), f"motion in {start}-{end}"
    for start, end in busy:
        window = frames[start : end + 1]
        assert sum(f["motion"] for f in window) >= 0.8 * len(window), f"quiet in {start}-{end}"
        assert all(f["box"] is not None for f in window if f["motion"])
