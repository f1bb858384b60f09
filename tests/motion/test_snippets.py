from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from hazardwatch.motion.snippets import SamplerParams, SnippetSampler
from hazardwatch.records import Frame, GatedFrame, MotionResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IMAGE = np.zeros((4, 4, 3), np.uint8)
MOVING = MotionResult(True, 0.1, (0, 0, 2, 2))
STILL = MotionResult(False, 0.0, None)


def run(params: SamplerParams, motion_at: set[int], fps: float = 10, seconds: float = 10):
    out: list[GatedFrame] = []
    sampler = SnippetSampler(params, out.append)
    for i in range(int(seconds * fps)):
        frame = Frame("cam", i, i / fps, T0 + timedelta(seconds=i / fps), IMAGE)
        sampler.update(frame, MOVING if i in motion_at else STILL)
    return out


def test_motion_is_sampled_at_the_configured_rate_with_preroll_and_postroll() -> None:
    params = SamplerParams(preroll_s=1.0, postroll_s=1.0, sample_fps=2.0, heartbeat_s=0)
    out = run(params, motion_at=set(range(50, 70)))  # motion from 5.0 s to 6.9 s
    reasons = [(g.frame.seq, g.reason) for g in out]
    pre = [s for s, r in reasons if r == "preroll"]
    during = [s for s, r in reasons if r == "motion"]
    post = [s for s, r in reasons if r == "postroll"]
    assert pre and all(40 <= s < 50 for s in pre), "pre-roll covers the second before motion"
    assert during == [50, 55, 60, 65]  # 2 frames/s
    assert post and all(70 <= s <= 79 for s in post)
    assert {g.snippet for g in out} == {1}


def test_half_the_camera_rate_samples_every_other_frame_despite_float_time() -> None:
    # Epoch seconds of 10 fps frames: some pairs 0.2 s apart differ by 0.19999999.
    params = SamplerParams(preroll_s=0, postroll_s=0, sample_fps=5.0, heartbeat_s=0)
    out = run(params, motion_at=set(range(1000)), fps=10, seconds=100)
    assert [g.frame.seq for g in out] == list(range(0, 1000, 2))


def test_heartbeat_without_motion() -> None:
    params = SamplerParams(preroll_s=0, postroll_s=0, sample_fps=2, heartbeat_s=3.0)
    out = run(params, motion_at=set(), seconds=10)
    assert [g.frame.seq for g in out] == [0, 30, 60, 90]
    assert all(g.reason == "heartbeat" and g.snippet == 0 for g in out)


def test_each_motion_episode_is_a_new_snippet() -> None:
    params = SamplerParams(preroll_s=0.5, postroll_s=0.5, sample_fps=4, heartbeat_s=0)
    out = run(params, motion_at=set(range(10, 15)) | set(range(60, 65)))
    assert sorted({g.snippet for g in out}) == [1, 2]


def test_preroll_ring_is_compact() -> None:
    params = SamplerParams(preroll_s=2.0, postroll_s=0, sample_fps=3, heartbeat_s=0)
    sampler = SnippetSampler(params, lambda g: None)
    for i in range(300):
        sampler.update(Frame("cam", i, i / 30, T0 + timedelta(seconds=i / 30), IMAGE), STILL)
    assert len(sampler._ring) <= 6  # 2 s × 3 frames/s, not 2 s × 30 frames/s


def test_every_frame_goes_out_once_and_in_capture_order() -> None:
    """Issue 29.8: a heartbeat sent during the pre-roll went out again as pre-roll, and
    pre-roll frames older than it followed it; the events side dropped them as late and
    counted them lost."""
    for fps in (5, 10, 30):
        for start in range(20, 40):
            params = SamplerParams(preroll_s=2.0, postroll_s=1.0, sample_fps=3, heartbeat_s=1.0)
            out = run(params, motion_at=set(range(start, start + 10)), fps=fps, seconds=8)
            times = [g.frame.timestamp for g in out]
            assert times == sorted(times) and len(set(times)) == len(times), (fps, start)
            seqs = [g.frame.seq for g in out]
            assert len(set(seqs)) == len(seqs)
