"""The per-camera motion stage: a reader's frame sink that gates and samples frames."""

from __future__ import annotations

import logging

from hazardwatch.motion.gate import MotionGate
from hazardwatch.motion.snippets import SnippetSampler
from hazardwatch.records import Frame

log = logging.getLogger(__name__)


class MotionStage:
    """Gate every frame, sample the interesting ones; counts what it saw."""

    def __init__(self, camera: str, gate: MotionGate, sampler: SnippetSampler) -> None:
        self.camera = camera
        self.gate = gate
        self.sampler = sampler
        self.frames_seen = 0
        self.motion_frames = 0
        self.bad_frames = 0

    def __call__(self, frame: Frame) -> None:
        self.frames_seen += 1
        try:
            result = self.gate.update(frame.image)
        except ValueError as exc:
            self.bad_frames += 1
            log.warning("camera %s: frame %d skipped: %s", self.camera, frame.seq, exc)
            return
        if result.motion:
            self.motion_frames += 1
        self.sampler.update(frame, result)
