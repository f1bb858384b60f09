from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.records import Frame, GatedFrame, MotionResult, ScoredFrame
from hazardwatch.scoring.bank import load_bank
from hazardwatch.scoring.bank_source import FileBank
from hazardwatch.scoring.worker import ScoringWorker
from tests.fakes import FakeEncoder

MOTION = MotionResult(True, 0.1, (10, 10, 50, 50))


def gated(camera: str, seq: int, image: object) -> GatedFrame:
    frame = Frame(camera, seq, time.time(), datetime.now(UTC), image)  # type: ignore[arg-type]
    return GatedFrame(frame, MOTION, "motion", 1)


def red_frame() -> np.ndarray:
    image = np.full((120, 160, 3), 110, np.uint8)
    image[20:100, 30:130] = (30, 30, 220)
    return image


def test_batches_across_cameras_and_skips_bad_frames() -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100)
    scored: list[list[ScoredFrame]] = []
    worker = ScoringWorker(
        FakeEncoder(), load_bank(None), queue, scored.append, batch_size=8, max_batch_wait_s=0.2
    )
    for i in range(3):
        queue.put(gated("a", i, red_frame()))
        queue.put(gated("b", i, np.full((120, 160, 3), 110, np.uint8)))
    queue.put(gated("b", 99, np.zeros((3, 3), np.float64)))  # bad frame
    worker.start()
    queue.close()
    assert worker.wait_drained(10)
    frames = [s for batch in scored for s in batch]
    assert len(frames) == 6 and worker.stats.bad_frames == 1
    assert {s.gated.frame.camera for s in scored[0]} == {"a", "b"}  # one batch, two cameras
    red = next(s for s in frames if s.gated.frame.camera == "a")
    grey = next(s for s in frames if s.gated.frame.camera == "b")
    assert red.probabilities["traffic_accident"] > 0.9 > grey.probabilities["traffic_accident"]
    assert abs(sum(red.probabilities.values()) - 1) < 1e-6
    assert red.top_prompts(1)[0][0] in load_bank(None).get("traffic_accident").prompts
    assert worker.stats.batch_sizes[0] == 6
    assert queue.terminated == 1  # the bad frame: never delivered again


class FlakyEncoder(FakeEncoder):
    """Fails its first `failures` batches (a GPU out of memory, say)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("transient failure")
        return super().encode_images(batch)


def test_a_failed_batch_is_given_back_and_scored_on_the_next_try() -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100)
    scored: list[list[ScoredFrame]] = []
    worker = ScoringWorker(FlakyEncoder(1), load_bank(None), queue, scored.append, batch_size=8)
    for i in range(3):
        queue.put(gated("a", i, red_frame()))
    worker.start()
    queue.close()
    assert worker.wait_drained(10)
    assert [s.gated.frame.seq for batch in scored for s in batch] == [0, 1, 2]
    assert worker.stats.failed_batches == 1 and queue.redelivered == 3
    assert queue.terminated == 0


def test_a_batch_that_always_fails_is_dropped_after_its_attempts() -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100, max_deliver=3)
    scored: list[list[ScoredFrame]] = []
    worker = ScoringWorker(FlakyEncoder(99), load_bank(None), queue, scored.append)
    queue.put(gated("a", 1, red_frame()))
    worker.start()
    queue.close()
    assert worker.wait_drained(10)
    assert scored == [] and worker.stats.failed_batches == 3 and queue.terminated == 1


def test_stop_leaves_what_was_not_fetched_in_the_source() -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100)
    worker = ScoringWorker(FakeEncoder(), load_bank(None), queue, lambda _: None)
    worker.start()
    assert worker.stop(5)  # an open, empty source: the worker still stops at once
    queue.put(gated("a", 1, red_frame()))
    assert len(queue) == 1


def test_frames_older_than_max_frame_age_are_counted_stale_not_scored() -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(100)
    scored: list[list[ScoredFrame]] = []
    worker = ScoringWorker(FakeEncoder(), load_bank(None), queue, scored.append,
                           batch_size=8, max_frame_age_s=5.0)  # fmt: skip
    old = gated("a", 1, red_frame())
    queue.put(
        dataclasses.replace(
            old, frame=dataclasses.replace(old.frame, received_at=old.frame.received_at - 6)
        )
    )
    queue.put(gated("a", 2, red_frame()))
    queue.put(gated("b", 3, red_frame()))
    worker.start()
    queue.close()
    assert worker.wait_drained(10)
    assert [s.gated.frame.seq for batch in scored for s in batch] == [2, 3]
    assert worker.stats.stale_by_camera == {"a": 1}


def test_bank_reload_on_change_and_bad_edit_keeps_old(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(
        "classes:\n  crash: {kind: hazard, prompts: [a crash]}\n"
        "  road: {kind: normal, prompts: [a road]}\n"
    )
    queue: LocalQueue[GatedFrame] = LocalQueue(10)
    worker = ScoringWorker(
        FakeEncoder(), load_bank(path), queue, lambda s: None, bank_source=FileBank(path)
    )
    first = worker.bank.version
    path.write_text(
        "classes:\n  crash: {kind: hazard, prompts: [a crash, a collision]}\n"
        "  road: {kind: normal, prompts: [a road]}\n"
    )
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert worker.maybe_reload_bank(force=True)
    second = worker.bank.version
    assert second != first and worker.stats.bank_reloads == 1
    path.write_text("classes: [broken")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert not worker.maybe_reload_bank(force=True)
    assert worker.bank.version == second and worker.stats.bank_errors == 1


def test_a_frame_from_a_broker_is_decoded_only_as_large_as_the_model_needs() -> None:
    """A 1280×720 JPEG for a 224-pixel model is decoded at half size (the motion box
    scaled with it), never in full, and scores as the full-size frame does."""
    from hazardwatch.handoff.codec import decode_gated, encode_gated

    image = np.full((720, 1280, 3), 110, np.uint8)
    image[200:560, 300:900] = (30, 30, 220)
    moving = MotionResult(True, 0.2, (300, 200, 600, 360))
    direct = GatedFrame(Frame("a", 1, time.time(), datetime.now(UTC), image), moving, "motion", 1)
    received = decode_gated(encode_gated(direct))
    queue: LocalQueue[GatedFrame] = LocalQueue(10)
    scored: list[list[ScoredFrame]] = []
    worker = ScoringWorker(
        FakeEncoder(), load_bank(None), queue, scored.append, batch_size=2,
        max_batch_wait_s=0.2, motion_crop=True,
    )  # fmt: skip
    queue.put(direct)
    queue.put(received)
    worker.start()
    queue.close()
    assert worker.wait_drained(10)
    frames = [s for batch in scored for s in batch]
    assert [s.gated is received for s in frames] == [False, True]
    assert not received.frame.decoded  # passed on to the events side as it came
    full, half = (s.probabilities for s in frames)
    assert all(abs(full[name] - half[name]) < 0.02 for name in full), (full, half)
