"""Snippet sampling: which gated frames go to scoring, and when.

A compact ring buffer keeps the pre-roll at the sampling rate (only frames that could be
sent are kept, so a 1080p camera holds a handful of frames, not seconds of video). Every
camera's frames go out once each and in capture order: a pre-roll never repeats or
precedes a heartbeat already sent. While
motion lasts, and for a post-roll after it, frames are sampled at `sample_fps`; without
motion a heartbeat frame goes out every `heartbeat_s` so stationary hazards (a stalled
car, a person lying still) are still scored. Time is the frames' own timestamps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from hazardwatch.records import Frame, GatedFrame, MotionResult

Emit = Callable[[GatedFrame], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplerParams:
    preroll_s: float = 2.0
    postroll_s: float = 2.0
    sample_fps: float = 3.0
    heartbeat_s: float = 10.0


class SnippetSampler:
    """Per-camera sampler; `update` is called for every frame after the motion gate."""

    def __init__(self, params: SamplerParams, emit: Emit) -> None:
        self.params = params
        self._emit_to = emit
        self._period = 1.0 / params.sample_fps
        size = max(1, math.ceil(params.preroll_s * params.sample_fps))
        self._ring: deque[tuple[Frame, MotionResult]] = deque(maxlen=size)
        self._snippet = 0
        self._active = False
        self._last_motion_t = -math.inf
        self._last_sample_t = -math.inf
        self._last_ring_t = -math.inf
        self._last_emit_t = -math.inf
        self.emitted = 0

    def _due(self, t: float, last: float) -> bool:
        # A millisecond of slack: at 10 fps, frames 0.2 s apart can differ by 0.19999999
        # in float seconds since the epoch, and a strict >= would sample 3.3 fps, not 5.
        return t - last >= self._period - 1e-3

    @property
    def in_motion(self) -> bool:
        return self._active

    def _emit(
        self,
        frame: Frame,
        motion: MotionResult,
        reason: Literal["motion", "preroll", "postroll", "heartbeat"],
        snippet: int,
    ) -> None:
        self._last_emit_t = frame.timestamp
        self.emitted += 1
        self._emit_to(GatedFrame(frame, motion, reason, snippet))

    def update(self, frame: Frame, motion: MotionResult) -> None:
        t = frame.timestamp
        if motion.motion:
            if not self._active:
                self._active = True
                self._snippet += 1
                # Only frames after the last one sent: a heartbeat already went out (it is
                # in the ring too), and an older frame would reach the detector after a
                # newer one, where its clock cannot go back.
                sent_until = self._last_emit_t
                for old, old_motion in self._ring:
                    if t - old.timestamp <= self.params.preroll_s and old.timestamp > sent_until:
                        self._emit(old, old_motion, "preroll", self._snippet)
                self._ring.clear()
            self._last_motion_t = t
            if self._due(t, self._last_sample_t):
                self._last_sample_t = t
                self._emit(frame, motion, "motion", self._snippet)
            return
        if self._active and t - self._last_motion_t <= self.params.postroll_s:
            if self._due(t, self._last_sample_t):
                self._last_sample_t = t
                self._emit(frame, motion, "postroll", self._snippet)
            return
        self._active = False
        if self.params.preroll_s > 0 and self._due(t, self._last_ring_t):
            self._last_ring_t = t
            self._ring.append((frame, motion))
        heartbeat = self.params.heartbeat_s
        if heartbeat > 0 and t - self._last_emit_t >= heartbeat:
            self._emit(frame, motion, "heartbeat", 0)
