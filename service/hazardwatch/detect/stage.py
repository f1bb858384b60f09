"""The detector stage: scored frames in, event records and score samples out.

One `TemporalDetector` per camera over the bank's hazard classes, started from the
camera's `CameraNormal` (stored state, or the bank's prior); the state, with the current
baselines, is handed to `save_state` every `state_interval_s` per camera and at flush.
Detector events become `EventRecord`s with a growing revision (started 0, each update
+1, ended +1), so repeated or replayed writes stay idempotent. The peak frame travels
with the record so the writer can store its snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy.typing as npt

from hazardwatch.detect.detector import (
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
    channel_params,
)
from hazardwatch.detect.normal import (
    CameraNormal,
    ReferenceSet,
    encode_embedding,
)
from hazardwatch.records import (
    EventRecord,
    EventUpdate,
    Frame,
    Image,
    ScoredFrame,
    ScoreSample,
)
from hazardwatch.scoring.bank import PromptBank

log = logging.getLogger(__name__)
ROLLOUT_WINDOW_S = 30.0


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
        normals: dict[str, CameraNormal] | None = None,
        save_state: Callable[[str, CameraNormal], None] | None = None,
        state_interval_s: float = 60.0,
        max_references: int = 32,
        scores_stored_until: dict[str, datetime] | None = None,
        observe_latency: Callable[[float], None] | None = None,
    ) -> None:
        """`on_frame` sees each scored frame just before the events it decides (clips).

        `normals`: each camera's stored state; a camera without one starts from the prior.
        `scores_stored_until`: each camera's newest stored score time. Frames up to one
        sampling interval after it give no score rows: after a crash the broker delivers
        again frames whose rows were already written, and the series goes on where it
        stopped instead of gaining extra points.
        `observe_latency` gets each live frame's seconds from its receipt by the camera
        reader (not pre-roll frames, which the sampler holds back until motion starts).
        """
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
        self._stored_until = dict(scores_stored_until or {})
        self._observe_latency = observe_latency
        self._bank: PromptBank | None = None
        self.events_started = 0
        self._normals: dict[str, CameraNormal] = dict(normals or {})
        self._save_state = save_state
        self.state_interval_s = state_interval_s
        self.max_references = max_references
        self._saved_at: dict[str, float] = {}
        self._save_due: set[str] = set()
        self._closed: set[str] = set()  # cameras removed by a reload
        # Bank versions seen per camera: version -> (first seen, last seen), frame time.
        self._versions: dict[str, dict[str, tuple[float, float]]] = {}
        self._banks: dict[str, PromptBank] = {}
        self.frames_old_bank = 0  # scored with a superseded bank of other classes: dropped
        self._frames_lock = threading.RLock()  # the scoring thread, and reloads
        self._lock = threading.Lock()  # normals are read by the worker, taught by the API

    def normal(self, camera: str) -> CameraNormal | None:
        """The camera's state (None until it is first seen and no state was stored)."""
        return self._normals.get(camera)

    def calibration(self, camera: str) -> dict[str, Any]:
        """The camera's calibration as the API shows it (`CameraNormal.summary`)."""
        with self._lock:
            normal = self._normals.get(camera)
            return (normal or CameraNormal()).summary()

    def references(self, camera: str) -> ReferenceSet | None:
        normal = self._normals.get(camera)
        return normal.references if normal is not None else None

    def learn_normal(self, camera: str, embedding: npt.ArrayLike) -> int:
        """A false alarm: its peak frame becomes a normal reference of the camera.

        Returns the number of references the camera now holds.
        """
        with self._lock:
            normal = self._normals.get(camera)
            if normal is None:
                normal = (
                    CameraNormal.prior(self._bank, self.max_references)
                    if self._bank is not None
                    else CameraNormal(references=ReferenceSet(self.max_references))
                )
                self._normals[camera] = normal
            normal.references.add(embedding)
            count = len(normal.references)
            # Saved by the scoring thread with its next frame of the camera (or at flush):
            # the detector's baselines are only ever read on the thread that writes them.
            self._save_due.add(camera)
        return count

    def _save(self, camera: str, force: bool = False, now: float | None = None) -> None:
        if self._save_state is None:
            return
        normal = self._normals.get(camera)
        if normal is None:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            due = camera in self._save_due
            self._save_due.discard(camera)
        if not (force or due) and now - self._saved_at.get(camera, -1e18) < self.state_interval_s:
            return
        self._saved_at[camera] = now
        detector = self._detectors.get(camera)
        if detector is not None:
            normal.baselines = detector.baselines()
        try:
            self._save_state(camera, normal)
        except Exception:  # the detector must go on; the next save carries a newer state
            log.exception("camera %s: its learned normal could not be handed over", camera)

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
        with self._lock:
            normal = self._normals.get(camera)
            if normal is None:
                normal = self._normals[camera] = CameraNormal.prior(bank, self.max_references)
            elif normal.source == "prior":  # never calibrated: follow the bank's prior
                normal.classes = CameraNormal.prior(bank).classes
        detector = TemporalDetector(camera, self.params, bank.hazard_classes, overrides, normal)
        self._detectors[camera] = detector
        return detector

    def close_camera(self, camera: str) -> None:
        """A camera removed from the configuration (reload) or whose source ended: its open
        events end now at its last frame's time (reason "flushed"), its state is saved,
        and frames of it still queued are ignored until `open_camera`."""
        with self._frames_lock:
            self._closed.add(camera)
            detector = self._detectors.pop(camera, None)
            self._bank_version.pop(camera, None)
            if detector is None:
                return
            self._save(camera, force=True)
            self._emit_all(detector.flush(self._last_t.get(camera, 0.0)), None)

    def open_camera(self, camera: str) -> None:
        """A camera (re)added by a reload: its frames count again."""
        with self._frames_lock:
            self._closed.discard(camera)

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        with self._frames_lock:
            self._on_scored(frames)

    def _on_scored(self, frames: list[ScoredFrame]) -> None:
        samples: list[ScoreSample] = []
        now = time.time()
        for scored in frames:
            frame = scored.gated.frame
            if self._observe_latency is not None and scored.gated.reason != "preroll":
                # (Pre-roll frames are held back until motion starts: old by design.)
                self._observe_latency(max(0.0, now - frame.received_at))
            if frame.camera in self._closed:
                continue
            t = frame.timestamp
            bank = self._rollout_bank(frame.camera, scored.bank, t)
            if bank is None:
                if not self.frames_old_bank:
                    log.warning(
                        "camera %s: frames scored with a superseded prompt bank of other "
                        "classes are dropped while the new bank rolls out",
                        frame.camera,
                    )
                self.frames_old_bank += 1
                continue
            detector = self._detector(frame.camera, bank)
            self._bank = bank
            self._last_t[frame.camera] = t
            if self._on_frame is not None:
                self._on_frame(frame)
            events = detector.update(
                t, scored.probabilities, ref=scored, normal_similarity=self._similarity(scored)
            )
            self._emit_all(events, frame.received_at)
            samples.extend(self._samples(scored, detector))
            self._save(frame.camera)
        if samples and self._emit_scores is not None:
            self._emit_scores(samples)

    def _rollout_bank(self, camera: str, bank: PromptBank, t: float) -> PromptBank | None:
        """The bank to read a frame with while workers change banks (a rollout, or frames
        scored before a reload still in flight): the newest version seen for the camera in
        the last `ROLLOUT_WINDOW_S` of frame time wins. A frame of an older version is read
        with the newest when both have the same classes, and dropped (None) when not, so
        mixed versions never restart the camera's detector back and forth. A version not
        seen for the window stops counting: a rollback takes over."""
        self._banks.setdefault(bank.version, bank)
        seen = self._versions.setdefault(camera, {})
        first, _ = seen.get(bank.version, (t, t))
        seen[bank.version] = (first, t)
        live = {v: f for v, (f, last) in seen.items() if t - last <= ROLLOUT_WINDOW_S}
        for version in [v for v in seen if v not in live]:
            del seen[version]
        newest = max(live, key=lambda v: live[v])
        if newest == bank.version:
            return bank
        current = self._banks[newest]
        same = current.class_names == bank.class_names and set(current.hazard_classes) == set(
            bank.hazard_classes
        )
        return current if same else None

    def _similarity(self, scored: ScoredFrame) -> float | None:
        """The frame's best cosine with its camera's normal references (None: it has
        none, or the frame no embedding). Here, not in the worker: the references live
        with the detector, and a worker on another machine never sees them."""
        if scored.embedding is None:
            return None
        with self._lock:  # learn_normal adds references from the API's thread
            normal = self._normals.get(scored.gated.frame.camera)
            return normal.references.similarity(scored.embedding) if normal is not None else None

    def _samples(self, scored: ScoredFrame, detector: TemporalDetector) -> list[ScoreSample]:
        frame = scored.gated.frame
        t = frame.timestamp
        # Stored times have millisecond precision: an interval counts from 1 ms early, so
        # a series resumed from a stored time samples the frames the first run would have.
        interval = self.score_interval_s - 0.001
        stored = self._stored_until.get(frame.camera)
        if stored is not None:
            if (frame.captured_at - stored).total_seconds() < interval:
                return []
            del self._stored_until[frame.camera]
        out = []
        for name, value in scored.probabilities.items():
            key = (frame.camera, name)
            if t - self._last_sample.get(key, -1e18) >= interval:
                self._last_sample[key] = t
                signal = detector.signal(name)  # None for classes it does not follow
                out.append(ScoreSample(frame.camera, frame.captured_at, name, value, signal))
        return out

    def flush(self) -> None:
        """Close every open event (end of input, shutdown)."""
        with self._frames_lock:
            self._flush()

    def _flush(self) -> None:
        for camera in self._normals.keys() - self._detectors.keys():
            self._save(camera, force=True)  # taught by feedback, never seen this run
        for camera, detector in self._detectors.items():
            self._save(camera, force=True)  # before flushing: baselines as the incident left them
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
            peak_embedding=(
                encode_embedding(peak.embedding)
                if peak is not None and peak.embedding is not None
                else None
            ),
        )
        return EventUpdate(event.kind, record, _snapshot(peak), latency_from)


def _snapshot(peak: ScoredFrame | None) -> Image | None:
    """The peak frame's pixels (a frame from a broker is decoded here, at its event only);
    an image that does not decode costs the snapshot, never the event."""
    if peak is None:
        return None
    try:
        return peak.gated.frame.image
    except ValueError as exc:
        log.warning("camera %s: no snapshot, the peak frame does not decode: %s",
                    peak.gated.frame.camera, exc)  # fmt: skip
        return None
