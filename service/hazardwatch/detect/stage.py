"""The detector stage: scored frames in, event records and score samples out.

One `TemporalDetector` per camera over the bank's hazard classes. Detector events become
`EventRecord`s with a growing revision (started 0, each update +1, ended +1), so
repeated or replayed writes stay idempotent. The peak frame travels with the record so
the writer can store its snapshot.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hazardwatch.detect.detector import (
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
    channel_params,
)
from hazardwatch.records import EventRecord, Frame, Image, ScoreSample
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.scoring.worker import ScoredFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class EventUpdate:
    """An event record to store, with the kind of change and the peak frame's image."""

    kind: str  # started | updated | ended
    record: EventRecord
    snapshot: Image | None
    latency_from: float | None  # monotonic capture time of the frame that decided it


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class DetectorStage:
    def __init__(
        self,
        params: DetectorParams,
        emit_event: Callable[[EventUpdate], None],
        emit_scores: Callable[[list[ScoreSample]], None] | None = None,
        *,
        model_name: str = "",
        score_interval_s: float = 1.0,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        """`on_frame` sees each scored frame just before the events it decides (clips)."""
        self.params = params
        self._emit_event = emit_event
        self._emit_scores = emit_scores
        self._on_frame = on_frame
        self.model_name = model_name
        self.score_interval_s = score_interval_s
        self._detectors: dict[str, TemporalDetector] = {}
        self._bank_version: dict[str, str] = {}
        self._revisions: dict[str, int] = {}
        self._last_sample: dict[tuple[str, str], float] = {}
        self._last_t: dict[str, float] = {}
        self._bank: PromptBank | None = None
        self.events_started = 0

    def _detector(self, camera: str, bank: PromptBank) -> TemporalDetector:
        detector = self._detectors.get(camera)
        if detector is not None and self._bank_version.get(camera) == bank.version:
            return detector
        overrides = channel_params(bank, self.params)
        self._bank_version[camera] = bank.version
        if detector is not None and detector.channels == frozenset(bank.hazard_classes):
            detector.reconfigure(self.params, overrides)  # same classes: events carry on
            return detector
        if detector is not None:  # classes changed: close what is open, start afresh
            self._emit_all(detector.flush(self._last_t.get(camera, 0.0)), None)
        detector = TemporalDetector(camera, self.params, bank.hazard_classes, overrides)
        self._detectors[camera] = detector
        return detector

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        samples: list[ScoreSample] = []
        for scored in frames:
            frame = scored.gated.frame
            detector = self._detector(frame.camera, scored.bank)
            self._bank = scored.bank
            t = frame.timestamp
            self._last_t[frame.camera] = t
            if self._on_frame is not None:
                self._on_frame(frame)
            events = detector.update(t, scored.probabilities, ref=scored)
            self._emit_all(events, frame.monotonic)
            samples.extend(self._samples(scored, detector))
        if samples and self._emit_scores is not None:
            self._emit_scores(samples)

    def _samples(self, scored: ScoredFrame, detector: TemporalDetector) -> list[ScoreSample]:
        frame = scored.gated.frame
        t = frame.timestamp
        out = []
        for name, value in scored.probabilities.items():
            key = (frame.camera, name)
            if t - self._last_sample.get(key, -1e18) >= self.score_interval_s:
                self._last_sample[key] = t
                signal = detector.signal(name)  # None for classes it does not follow
                out.append(ScoreSample(frame.camera, frame.captured_at, name, value, signal))
        return out

    def flush(self) -> None:
        """Close every open event (end of input, shutdown)."""
        for camera, detector in self._detectors.items():
            self._emit_all(detector.flush(self._last_t.get(camera, 0.0)), None)

    def _emit_all(self, events: list[DetectionEvent], latency_from: float | None) -> None:
        for event in events:
            try:
                self._emit_event(self._to_update(event, latency_from))
            except Exception:
                log.exception("event %s could not be handed to the writer", event.event_id)

    def _to_update(self, event: DetectionEvent, latency_from: float | None) -> EventUpdate:
        peak: ScoredFrame | None = event.peak_ref
        bank = peak.bank if peak is not None else self._bank
        severity = "warning"
        version = ""
        if bank is not None:
            version = bank.version
            with contextlib.suppress(KeyError):
                severity = bank.get(event.channel).severity
        revision = self._revisions.get(event.event_id, -1) + 1
        self._revisions[event.event_id] = revision
        if event.kind == "started":
            self.events_started += 1
        if event.kind == "ended":
            self._revisions.pop(event.event_id, None)
        record = EventRecord(
            uuid=event.event_id,
            camera=event.camera,
            class_name=event.channel,
            severity=severity,  # type: ignore[arg-type]
            status="closed" if event.kind == "ended" else "open",
            started_at=utc(event.started_at),
            ended_at=utc(event.ended_at) if event.ended_at is not None else None,
            peak_at=utc(event.peak_at),
            peak_score=event.peak_score,
            mean_score=event.mean_score,
            model_name=self.model_name,
            prompt_bank_version=version,
            revision=revision,
        )
        snapshot = peak.gated.frame.image if peak is not None else None
        return EventUpdate(event.kind, record, snapshot, latency_from)
