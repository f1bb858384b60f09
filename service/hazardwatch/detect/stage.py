"""The detector stage: scored frames in, event records and score samples out.

One `TemporalDetector` per camera over the bank's hazard classes, started from the
camera's `CameraNormal` (stored state, or the bank's prior); the state, with the current
baselines, is handed to `save_state` every `state_interval_s` per camera and at flush.
Detector events become `EventRecord`s with a growing revision (started 0, each update
+1, ended +1), so repeated or replayed writes stay idempotent. The peak frame travels
with the record so the writer can store its snapshot.

Events a previous run left open (it was killed) are `resumable`: an event the detector
starts in time continues one of them (detect/resume.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy.typing as npt

from hazardwatch.detect.detector import (
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
    channel_params,
)
from hazardwatch.detect.explain import explain_camera
from hazardwatch.detect.learning import Learning
from hazardwatch.detect.normal import CameraNormal, ReferenceSet, encode_embedding
from hazardwatch.detect.resume import LeftOpen, continuation
from hazardwatch.detect.slots import (
    NEVER,
    CameraSlot,
    last_frames,
    save_phase,
    similarity,
    snapshot,
    watched_classes,
)
from hazardwatch.records import (
    ClassNormal,
    EventRecord,
    EventUpdate,
    Frame,
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
        resumable: Sequence[EventRecord] = (),
        learning_s: float = 0.0,
        on_learning: Callable[[str, bool], None] | None = None,
        redelivered_s: float = 0.0,
    ) -> None:
        """`on_frame` sees each scored frame just before the events it decides (clips).

        `normals`: each camera's stored state; a camera without one starts from the prior.
        `scores_stored_until`: each camera's newest stored score time. Frames up to one
        sampling interval after it give no score rows: after a crash the broker delivers
        again frames whose rows were already written, and the series goes on where it
        stopped instead of gaining extra points.
        `observe_latency` gets each live frame's seconds from its receipt by the camera
        reader (not pre-roll frames, which the sampler holds back until motion starts).
        `learning_s` (> 0): a camera never calibrated learns its normal for this long, then
        calibrates itself (detect/learning.py); `on_learning(camera, learning)` hears when
        a camera starts and stops learning.
        """
        self.params = params
        self._emit_event = emit_event
        self._emit_scores = emit_scores
        self._on_frame = on_frame
        self.model_name = model_name
        self.score_interval_s = score_interval_s
        # One lock for all of it: frames come on the scoring (or intake) thread; reloads,
        # feedback and the API's reads come on others.
        self._lock = threading.RLock()
        self._cameras: dict[str, CameraSlot] = {}
        for camera, normal in (normals or {}).items():
            self._slot(camera).normal = normal
        for camera, stored in (scores_stored_until or {}).items():
            self._slot(camera).stored_until = stored
        self._revisions: dict[str, int] = {}  # by detector event id
        self._observe_latency = observe_latency
        self._bank: PromptBank | None = None
        self.events_started = 0
        self._save_state = save_state
        self.state_interval_s = state_interval_s
        self.max_references = max_references
        self._banks: dict[str, PromptBank] = {}
        self.frames_old_bank = 0  # scored with a superseded bank of other classes: dropped
        # A killed run's open events, with its cameras' last frames in their checkpoints.
        self.left_open = LeftOpen(resumable, emit_event, last_frames(resumable, normals or {}))
        self.learning_s = learning_s
        self._on_learning = on_learning
        # Frames a checkpoint saw may come again this long before it (the broker's
        # unacknowledged ones after a kill); 0: a process that reads its cameras itself.
        self.redelivered_s = redelivered_s

    def _slot(self, camera: str) -> CameraSlot:
        slot = self._cameras.get(camera)
        if slot is None:
            slot = self._cameras[camera] = CameraSlot()
        return slot

    def normal(self, camera: str) -> CameraNormal | None:
        """The camera's state (None until it is first seen and no state was stored)."""
        slot = self._cameras.get(camera)
        return slot.normal if slot is not None else None

    def calibration(self, camera: str) -> dict[str, Any]:
        """The camera's calibration as the API shows it (`CameraNormal.summary`)."""
        with self._lock:
            slot = self._cameras.get(camera) or CameraSlot()
            summary = (slot.normal or CameraNormal()).summary()
            learning = slot.learning
        summary["learning"] = learning.progress() if learning is not None else None
        return summary

    def explain(self, camera: str) -> dict[str, Any] | None:
        """What decides each class of the camera (GET /api/v1/cameras/{name}/normal): the
        rule, the calibrated band, noise, threshold and burst limit, and the statistic now.
        None: a camera this stage has neither seen nor holds a state for."""
        with self._lock:
            slot = self._cameras.get(camera)
            if slot is None or (slot.normal is None and slot.detector is None):
                return None
            learning = slot.learning.classes if slot.learning is not None else ()
            return explain_camera(slot.normal, slot.detector, learning, self.params)

    def references(self, camera: str) -> ReferenceSet | None:
        normal = self.normal(camera)
        return normal.references if normal is not None else None

    def learn_normal(self, camera: str, embedding: npt.ArrayLike) -> int:
        """A false alarm: its peak frame becomes a normal reference of the camera.

        Returns the number of references the camera now holds.
        """
        with self._lock:
            slot = self._slot(camera)
            if slot.normal is None:
                slot.normal = (
                    CameraNormal.prior(self._bank, self.max_references)
                    if self._bank is not None
                    else CameraNormal(references=ReferenceSet(self.max_references))
                )
            slot.normal.references.add(embedding)
            # Saved with the camera's next frame (or at flush), with its baselines.
            slot.save_due = True
            return len(slot.normal.references)

    def _save(self, camera: str, force: bool = False, now: float | None = None) -> None:
        slot = self._cameras.get(camera)
        if self._save_state is None or slot is None or slot.normal is None:
            return
        normal = slot.normal
        now = time.monotonic() if now is None else now
        due, slot.save_due = slot.save_due, False
        if not (force or due) and now - slot.saved_at < self.state_interval_s:
            return
        # After the first save, each camera keeps its own phase of the interval: cameras
        # that started together (a thousand, at a start) do not all save in the same second.
        first = slot.saved_at == NEVER
        slot.saved_at = now - (save_phase(camera) * self.state_interval_s if first else 0.0)
        if slot.detector is not None:
            normal.baselines = slot.detector.baselines()
            normal.checkpoint = slot.detector.checkpoint()
        try:
            self._save_state(camera, normal)
        except Exception:  # the detector must go on; the next save carries a newer state
            log.exception("camera %s: its learned normal could not be handed over", camera)

    def _detector(
        self, camera: str, slot: CameraSlot, bank: PromptBank, t: float
    ) -> TemporalDetector:
        detector = slot.detector
        if detector is not None and slot.bank_version == bank.version:
            return detector
        overrides = channel_params(bank, self.params)
        slot.bank_version = bank.version
        definitions = {c.name: c.definition for c in bank.classes if c.by_example}
        if (
            detector is not None
            and slot.hazards == frozenset(bank.hazard_classes)
            and slot.definitions == definitions
        ):
            detector.reconfigure(self.params, overrides)  # same classes: events carry on
            return detector
        slot.definitions, slot.hazards = definitions, frozenset(bank.hazard_classes)
        if detector is not None:  # classes changed: close what is open, start afresh
            self._emit_all(detector.flush(slot.last_t), None)
        normal = slot.normal
        if normal is None:
            normal = slot.normal = CameraNormal.prior(bank, self.max_references)
        elif normal.source == "prior":  # never calibrated: follow the bank's prior
            normal.classes = CameraNormal.prior(bank).classes
        watched = [c.name for c in bank.classes if c.kind == "hazard" and c.watched_on(camera)]
        # Classes the camera's calibration has not seen (all of them, never calibrated)
        # start from the bank's prior and learn this camera's normal.
        unseen = tuple(
            n
            for n in watched
            if not normal.calibrated
            or normal.band(n) is None
            or normal.definitions.get(n, "") != definitions.get(n, "")
        )
        prior = CameraNormal.prior(bank).classes
        view = replace(normal, classes={**{n: prior[n] for n in unseen if n in prior},
                                        **normal.classes})  # fmt: skip
        # A class by example with no prior (no stored keyframes) is not decided until the
        # camera has learned it: no fixed similarity stands in for its threshold.
        silent = {n for n in unseen if n in definitions and view.band(n) is None}
        decided = [n for n in bank.hazard_classes if n not in silent]
        detector = TemporalDetector(camera, self.params, decided, overrides, view)
        if slot.detector is None:  # not a change of classes: go on where the state left off
            opened = self.left_open.take(camera, decided, t) if self.left_open else {}
            detector.resume(normal.checkpoint, opened, time.time(), self.redelivered_s)
        slot.detector = detector
        learns = {n: definitions[n] for n in unseen if n in definitions}
        self._start_learning(camera, slot, unseen, len(watched), learns)
        return detector

    def _start_learning(
        self,
        camera: str,
        slot: CameraSlot,
        unseen: tuple[str, ...],
        watched: int,
        definitions: dict[str, str],
    ) -> None:
        """Learn the classes a camera's calibration lacks (a camera never calibrated: all;
        a class added since, or given other examples: that one), with their share of the
        camera's budget."""
        learning = slot.learning
        if (
            learning is not None
            and learning.classes == unseen
            and learning.definitions == definitions
        ):
            return
        was_learning = learning is not None
        slot.learning = None
        if self.learning_s > 0 and unseen:
            share = self.params.false_alarms_per_day * len(unseen) / max(watched, 1)
            slot.learning = Learning(
                camera, unseen, self.learning_s, self.params.evidence, share, definitions
            )
            calibrated = slot.normal is not None and slot.normal.calibrated
            log.info(
                "camera %s: %s; learning %s for %.0f s (meanwhile %s alert%s only on what "
                "the prompt bank's prior calls extreme)",
                camera,
                "calibrated, but not for these classes (added or changed since)"
                if calibrated
                else "not calibrated",
                ", ".join(unseen),
                self.learning_s,
                "they" if len(unseen) > 1 else "it",
                "" if len(unseen) > 1 else "s",
            )
        if self._on_learning is not None and was_learning != (slot.learning is not None):
            self._on_learning(camera, slot.learning is not None)

    def close_camera(self, camera: str) -> None:
        """A camera removed from the configuration (reload) or whose source ended: its open
        events end now at its last frame's time (reason "flushed"), its state is saved,
        and frames of it still queued are ignored until `open_camera`."""
        with self._lock:
            slot = self._slot(camera)
            slot.closed = True
            if slot.detector is None:
                return
            self._save(camera, force=True)  # with the baselines, before they go
            detector = slot.drop_detector()
            assert detector is not None
            self._emit_all(detector.flush(slot.last_t), None)

    def open_camera(self, camera: str) -> None:
        """A camera (re)added by a reload: its frames count again."""
        with self._lock:
            self._slot(camera).closed = False

    def take_cameras(
        self,
        normals: Mapping[str, CameraNormal],
        stored_until: Mapping[str, datetime],
        resumable: Sequence[EventRecord],
        handed_over: bool = False,
    ) -> None:
        """Cameras taken over from another events instance (a partition): their stored
        states, newest score times and open events, read after it let them go
        (`handed_over`: cleanly, detect/resume.py)."""
        with self._lock:
            for camera, normal in normals.items():
                self._cameras[camera] = CameraSlot(normal=normal)
            for camera, stored in stored_until.items():
                self._slot(camera).stored_until = stored
            self.left_open.add(resumable, handed_over, last_frames(resumable, normals))

    def hand_over(self, belongs: Callable[[str], bool]) -> list[str]:
        """Cameras given to another events instance (a partition it takes): each one's
        state is saved with its baselines and its slot dropped; its open events stay open
        in the database for the next owner to continue, as after a crash but with all of
        it stored. A camera still learning its normal starts learning again there."""
        with self._lock:
            cameras = [camera for camera in self._cameras if belongs(camera)]
            for camera in cameras:
                self._save(camera, force=True)
                slot = self._cameras.pop(camera)
                if slot.learning is not None and self._on_learning is not None:
                    self._on_learning(camera, False)
            self.left_open.forget(belongs)
            return cameras

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        with self._lock:
            self._on_scored(frames)

    def _on_scored(self, frames: list[ScoredFrame]) -> None:
        samples: list[ScoreSample] = []
        now = time.time()
        for scored in frames:
            frame = scored.gated.frame
            if self._observe_latency is not None and scored.gated.reason != "preroll":
                # (Pre-roll frames are held back until motion starts: old by design.)
                self._observe_latency(max(0.0, now - frame.received_at))
            slot = self._slot(frame.camera)
            if slot.closed:
                continue
            t = frame.timestamp
            bank = self._rollout_bank(slot, scored.bank, t)
            if bank is None:
                if not self.frames_old_bank:
                    log.warning(
                        "camera %s: frames scored with a superseded prompt bank of other "
                        "classes are dropped while the new bank rolls out",
                        frame.camera,
                    )
                self.frames_old_bank += 1
                continue
            detector = self._detector(frame.camera, slot, bank, t)
            self._bank = bank
            slot.last_t = t
            if self._on_frame is not None:
                self._on_frame(frame)
            # A class scoped to other cameras is not watched here (`cameras:` in the bank).
            probabilities = watched_classes(bank, frame.camera, scored.probabilities)
            events = detector.update(
                t, probabilities, ref=scored, normal_similarity=similarity(slot, scored)
            )
            self._emit_all(events, frame.received_at)
            if any(event.kind != "updated" for event in events):
                slot.save_due = True  # the checkpoint never lags an event's start or end
            if slot.learning is not None:
                self._learn(frame.camera, slot, detector, t, scored.probabilities, events)
            if self.left_open:
                self.left_open.frame(frame.camera, t)
            samples.extend(self._samples(slot, scored, detector))
            self._save(frame.camera)
        if samples and self._emit_scores is not None:
            self._emit_scores(samples)

    def _learn(
        self,
        camera: str,
        slot: CameraSlot,
        detector: TemporalDetector,
        t: float,
        probabilities: Mapping[str, float],
        events: list[DetectionEvent],
    ) -> None:
        """A learning camera's frame: learn from it, and once its calibration is done and
        no event is open, swap it in (the detector is rebuilt at the next frame) and save."""
        learning = slot.learning
        assert learning is not None
        for event in events:
            if event.kind == "started":
                learning.event_started(event.started_at)
        learning.add(t, probabilities, bool(detector.active_channels))
        if learning.start_when_ready():
            log.info(
                "camera %s: %.0f s of normal footage learned; calibrating", camera, learning.seconds
            )
        fitted = learning.result()
        if learning.failed:
            slot.learning = None
            if self._on_learning is not None:
                self._on_learning(camera, False)
            return
        if fitted is not None and not detector.active_channels:
            self._adopt(camera, slot, fitted)

    def _adopt(self, camera: str, slot: CameraSlot, fitted: dict[str, ClassNormal]) -> None:
        """A learning camera's own calibration replaces its prior (a camera calibrated
        before: the classes it learned join the rest); saved at once."""
        normal, learning, detector = slot.normal, slot.learning, slot.detector
        assert normal is not None and learning is not None
        normal.definitions = {
            k: v for k, v in normal.definitions.items() if k not in fitted
        } | learning.definitions
        if normal.calibrated:
            normal.classes.update(fitted)
            if detector is not None:  # the other classes' baselines and statistics carry on
                normal.baselines = {
                    k: v for k, v in detector.baselines().items() if k not in fitted
                }
                normal.checkpoint = {
                    k: v for k, v in detector.checkpoint().items() if k not in fitted
                }
            what = f"learned {', '.join(sorted(fitted))} on {learning.seconds:.0f} s of footage"
        else:
            normal.classes = fitted
            normal.source = "calibrated"
            normal.calibrated_s = learning.seconds
            normal.calibrated_at = time.time()
            normal.baselines, normal.checkpoint = {}, {}
            what = f"calibrated itself: {normal.describe()}"
        slot.learning = None
        slot.drop_detector()  # rebuilt from the calibration at its next frame
        self._save(camera, force=True)
        log.info("camera %s %s", camera, what)
        if self._on_learning is not None:
            self._on_learning(camera, False)

    def _rollout_bank(self, slot: CameraSlot, bank: PromptBank, t: float) -> PromptBank | None:
        """The bank to read a frame with while workers change banks (a rollout, or frames
        scored before a reload still in flight): the newest version seen for the camera in
        the last `ROLLOUT_WINDOW_S` of frame time wins. A frame of an older version is read
        with the newest when both have the same classes, and dropped (None) when not, so
        mixed versions never restart the camera's detector back and forth. A version not
        seen for the window stops counting: a rollback takes over."""
        self._banks.setdefault(bank.version, bank)
        seen = slot.versions
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

    def _samples(
        self, slot: CameraSlot, scored: ScoredFrame, detector: TemporalDetector
    ) -> list[ScoreSample]:
        frame = scored.gated.frame
        t = frame.timestamp
        # Stored times have millisecond precision: an interval counts from 1 ms early, so
        # a series resumed from a stored time samples the frames the first run would have.
        interval = self.score_interval_s - 0.001
        if slot.stored_until is not None:
            if (frame.captured_at - slot.stored_until).total_seconds() < interval:
                return []
            slot.stored_until = None
        out = []
        for name, value in scored.probabilities.items():
            if t - slot.last_sample.get(name, -1e18) >= interval:
                slot.last_sample[name] = t
                # 1.0 at the class's threshold; None for classes it does not follow.
                signal = detector.progress(name)
                out.append(ScoreSample(frame.camera, frame.captured_at, name, value, signal))
        return out

    @property
    def events_resumed(self) -> int:
        return self.left_open.resumed

    @property
    def events_interrupted(self) -> int:
        return self.left_open.interrupted

    def flush(self) -> None:
        """Close every open event (end of input, shutdown), and any a previous run left
        open that was not continued."""
        with self._lock:
            self._flush()
            self.left_open.close_all()

    def expire_resumable(self) -> None:
        """Events a previous run left open that no frame continued in time are closed as
        interrupted (a camera that never came back). The service calls this every few
        seconds."""
        if self.left_open:
            with self._lock:
                self.left_open.expire()

    def _flush(self) -> None:
        for camera, slot in self._cameras.items():
            if slot.learning is None:
                continue
            slot.learning.join(5.0)  # a calibration finishing at shutdown is kept, not lost
            fitted = slot.learning.result()
            if fitted is not None:
                if slot.detector is not None:  # shutting down: what is open ends now anyway
                    self._emit_all(slot.detector.flush(slot.last_t), None)
                self._adopt(camera, slot, fitted)
        for camera, slot in self._cameras.items():
            # Before flushing, the baselines as the incident left them; a camera taught
            # by feedback but never seen this run is saved too.
            self._save(camera, force=True)
            if slot.detector is not None:
                self._emit_all(slot.detector.flush(slot.last_t), None)

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
        continued = self.left_open.continued(event)
        if event.kind == "started" and continued is None:
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
            opened_statistic=event.statistic,
            opened_threshold=event.threshold,
        )
        if continued is None:
            return EventUpdate(event.kind, record, snapshot(peak), latency_from)
        return continuation(event, record, continued, snapshot(peak), latency_from)
