from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.cli import main
from hazardwatch.motion.gate import GateParams, MotionGate, rasterise_masks
from hazardwatch.records import MotionResult

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


# ---------------------------------------------------------------------------- exact behaviour
# Small grey frames with the blur off (kernel 1) and no downscaling, so every number is known.

EXACT = GateParams(threshold=25, min_area=0.0, downscale_width=100, blur_kernel=1,
                   dilate_iterations=0, lighting_guard=0.6)  # fmt: skip


def blocks(*rects: tuple[int, int, int, int], value: int = 255, size: int = 100) -> np.ndarray:
    frame = np.zeros((size, size), np.uint8)
    for x, y, w, h in rects:
        frame[y : y + h, x : x + w] = value
    return frame


def step(params: GateParams, before: np.ndarray, after: np.ndarray) -> MotionResult:
    gate = MotionGate(params)
    gate.update(before)
    return gate.update(after)


def test_exact_score_box_and_changed_share_without_dilation() -> None:
    result = step(EXACT, blocks(), blocks((10, 20, 4, 4)))
    assert result.motion
    assert result.changed == pytest.approx(16 / 10_000)
    assert result.score == pytest.approx(9 / 10_000)  # contour area of a 4×4 block is 3×3
    assert result.box == (10, 20, 4, 4)
    assert not result.lighting


def test_dilation_grows_and_merges_changed_regions() -> None:
    apart = blocks((10, 20, 4, 4), (16, 20, 4, 4))  # two blocks 2 px apart
    plain = step(EXACT, blocks(), apart)
    assert plain.score == pytest.approx(9 / 10_000) and plain.box is not None
    assert plain.box[2] == 4  # each block is its own contour
    dilated = step(replace(EXACT, dilate_iterations=1), blocks(), apart)
    # One 3×3 dilation: the blocks grow by 1 px a side and touch: one 12×6 region.
    assert dilated.box == (9, 19, 12, 6)
    assert dilated.score == pytest.approx(11 * 5 / 10_000)
    assert dilated.changed == plain.changed  # the share is measured before dilation
    three = step(replace(EXACT, dilate_iterations=3), blocks(), blocks((10, 20, 4, 4)))
    assert three.box == (7, 17, 10, 10)  # 3 iterations = one 7×7 dilation


def test_min_area_is_inclusive() -> None:
    at = replace(EXACT, min_area=9 / 10_000)
    assert step(at, blocks(), blocks((10, 20, 4, 4))).motion
    above = replace(EXACT, min_area=9 / 10_000 + 1e-9)
    result = step(above, blocks(), blocks((10, 20, 4, 4)))
    assert not result.motion and result.score == pytest.approx(9 / 10_000)
    assert result.box == (10, 20, 4, 4)  # reported even below min_area


def test_a_difference_must_exceed_the_threshold() -> None:
    assert not step(EXACT, blocks(), blocks((10, 20, 4, 4), value=25)).motion
    assert step(EXACT, blocks(), blocks((10, 20, 4, 4), value=26)).motion


def test_no_change_is_exactly_no_motion() -> None:
    result = step(EXACT, blocks((10, 20, 4, 4)), blocks((10, 20, 4, 4)))
    assert result == MotionResult(False, 0.0, None, 0.0)


def test_the_lighting_guard_is_exclusive() -> None:
    sixty = blocks((0, 0, 100, 60))  # exactly 60 % of the pixels change
    at = step(EXACT, blocks(), sixty)
    assert at.motion and not at.lighting
    over = step(EXACT, blocks(), blocks((0, 0, 100, 61)))
    assert over == MotionResult(False, 0.0, None, 0.61, lighting=True)


def test_grey_bgr_and_bgra_frames_agree() -> None:
    grey = (blocks(), blocks((10, 20, 4, 4), value=200))
    bgr = tuple(np.dstack([g, g, g]) for g in grey)
    bgra = tuple(np.dstack([g, g, g, np.full_like(g, 255)]) for g in grey)
    results = [step(EXACT, *pair) for pair in (grey, bgr, bgra)]
    assert results[0] == results[1] == results[2]
    assert results[0].motion


def test_grey_conversion_weighs_channels_as_opencv_does() -> None:
    # Pure blue 255 is grey 29 (0.114 × 255): a change of 29 > threshold 25 counts.
    blue = np.zeros((100, 100, 3), np.uint8)
    blue[20:24, 10:14] = (255, 0, 0)
    assert step(EXACT, np.zeros((100, 100, 3), np.uint8), blue).motion
    assert not step(replace(EXACT, threshold=29), np.zeros((100, 100, 3), np.uint8), blue).motion


def test_downscaled_boxes_are_mapped_back_to_full_frame_pixels() -> None:
    params = replace(EXACT, downscale_width=50)
    result = step(params, blocks(), blocks((20, 40, 8, 8)))  # 4×4 at (10, 20) when small
    assert result.box == (20, 40, 8, 8)
    assert result.score == pytest.approx(9 / 2_500)  # measured on the 50×50 copy


def test_frames_narrower_than_the_downscale_width_keep_their_size() -> None:
    params = replace(EXACT, downscale_width=400)
    result = step(params, blocks(), blocks((10, 20, 4, 4)))
    assert result.box == (10, 20, 4, 4) and result.score == pytest.approx(9 / 10_000)


def test_reset_forgets_the_previous_frame() -> None:
    gate = MotionGate(EXACT)
    gate.update(blocks())
    gate.reset()
    assert gate.update(blocks((10, 20, 4, 4))) == MotionResult(False, 0.0, None)
    assert gate.update(blocks()).motion  # and compares again from there


def test_blur_spreads_a_change_below_the_threshold() -> None:
    point = blocks((50, 50, 1, 1), value=60)
    assert step(EXACT, blocks(), point).motion
    assert not step(replace(EXACT, blur_kernel=5), blocks(), point).motion


def test_masks_map_their_corners_onto_the_last_pixel() -> None:
    keep = rasterise_masks([[(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)]], 11, 11)
    assert keep is not None and keep.shape == (11, 11)
    assert (keep[:5, :] == 0).all() and keep[5, 10] == 0 and (keep[6:, :] == 255).all()


def test_shipped_gate_defaults() -> None:
    p = GateParams()
    assert (p.threshold, p.min_area, p.downscale_width) == (25, 0.002, 320)
    assert (p.blur_kernel, p.dilate_iterations, p.lighting_guard) == (5, 3, 0.6)


def test_a_new_resolution_is_a_first_frame_whatever_it_shows() -> None:
    gate = MotionGate(replace(EXACT, downscale_width=400))
    gate.update(blocks((10, 20, 4, 4), size=100))
    # Same small size would compare; a new resolution must not, even with a change in view.
    moved = np.zeros((100, 120), np.uint8)
    moved[60:70, 60:70] = 255
    assert gate.update(moved) == MotionResult(False, 0.0, None)
    assert not gate.update(moved).motion  # and the new frame is the reference now


def test_gate_params_are_an_immutable_record() -> None:
    import dataclasses

    params = GateParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.threshold = 10  # type: ignore[misc]
    assert not hasattr(params, "__dict__")


def test_the_blur_is_opencvs_5_tap_binomial_kernel() -> None:
    # Kernel 5 with sigma from its size is [1, 4, 6, 4, 1] / 16: a point keeps 0.1406 of
    # itself. 170 → 23.9, under the threshold of 25 (a sigma of 1 would keep 27.6: motion).
    params = replace(EXACT, blur_kernel=5)
    assert not step(params, blocks(), blocks((50, 50, 1, 1), value=170)).motion
    assert step(params, blocks(), blocks((50, 50, 1, 1), value=185)).motion  # 26.0


def test_the_smallest_frames() -> None:
    tiny = np.zeros((2, 2), np.uint8)
    assert MotionGate().update(tiny) == MotionResult(False, 0.0, None)  # 2×2 is enough
    for bad in (np.zeros((1, 100), np.uint8), np.zeros((100, 1, 3), np.uint8)):
        with pytest.raises(ValueError, match="at least 2×2"):
            MotionGate().update(bad)
    wide = MotionGate()  # 2 px tall at 320 px wide would round to 0 rows: kept at 1
    wide.update(np.zeros((2, 2000), np.uint8))
    assert wide.update(np.full((2, 2000), 255, np.uint8)).lighting


def test_mask_columns_map_onto_the_last_pixel_too() -> None:
    keep = rasterise_masks([[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]], 11, 11)
    assert keep is not None
    assert (keep[:, :6] == 0).all() and (keep[:, 6:] == 255).all()
