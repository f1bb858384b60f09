"""The composition roots of `hazardwatch run` and `hazardwatch events` (`Service`):

- `run` = camera fleet (capture/fleet.py) + local queue + CLIP worker + events side;
- `events` = scores consumer (from NATS JetStream) + the same events side
  (events_side.py).

Components come from settings in components.py; stages start in data-flow order and
stop in reverse, draining what is in flight so no event is left open. Also here:
`calibrate` from a clip or from history, and the signal handlers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from hazardwatch import __version__
from hazardwatch.api.app import ApiState, create_app
from hazardwatch.api.server import ApiServer
from hazardwatch.capture.fleet import CameraFleet, NoCameras
from hazardwatch.capture.reader import CameraReader, ReaderState
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.components import (
    EncoderFactory,
    build_worker,
    camera_builder,
    check_exposure,
    load_encoder,
    media_signer,
    reload_cameras,
    stop_timeout_s,
)
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.normal import CameraNormal, ReferenceSet, calibrate
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.errors import ConfigError, HazardwatchError, SourceError
from hazardwatch.events_side import EventsSide, state_record
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.metrics import (
    BrokerCollector,
    Metrics,
    PipelineCollector,
    PipelineView,
)
from hazardwatch.records import (
    EventUpdate,
    GatedFrame,
)
from hazardwatch.scoring.bank import DEFAULT_BANK, BankVersions, load_bank
from hazardwatch.scoring.worker import TextIndex
from hazardwatch.settings import Location, Settings
from hazardwatch.status import LocalStatus, StatusSource
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import check_connection, create_engine
from hazardwatch.storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    cameras: int
    frames_read: int
    frames_scored: int
    events: int
    queue_dropped: int
    seconds: float


class Service:
    """The running pipeline; `run` blocks until the sources end or `stop` is called."""

    def __init__(
        self,
        settings: Settings,
        encoder_factory: EncoderFactory = load_encoder,
        event_listeners: list[Callable[[EventUpdate], None]] | None = None,
        reload_settings: Callable[[], Settings] | None = None,
        scores_from_broker: bool = False,
    ):
        """`event_listeners` hear every stored event update (embedding, benchmarks);
        `reload_settings` reads the configuration again (SIGHUP, `request_reload`);
        `scores_from_broker`: the events role — no cameras, no model, scores from NATS."""
        self._scores_from_broker = scores_from_broker
        self.settings = settings
        self._encoder_factory = encoder_factory
        self._event_listeners = list(event_listeners or [])
        self._reload_settings = reload_settings
        self._reload = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the configuration soon (from a signal handler: only sets a flag)."""
        self._reload.set()

    def run(self) -> RunSummary:
        started = time.monotonic()
        settings = self.settings
        cv2.setNumThreads(1)  # cameras are the parallelism; OpenCV's own pool only spins
        engine = create_engine(settings.storage.resolved_url())
        try:
            return self._run(engine, started)
        finally:
            engine.dispose()

    def _run(self, engine: Any, started: float) -> RunSummary:
        settings = self.settings
        check_exposure(settings)
        check_connection(engine)
        migrate.upgrade(engine)
        repository = Repository(engine)
        media_dir = settings.media_dir()
        metrics = Metrics(role="events" if self._scores_from_broker else "run")
        metrics.build_info.labels(__version__, settings.scoring.model).set(1)
        view = PipelineView()
        metrics.registry.register(PipelineCollector(view))
        with contextlib.ExitStack() as stack:
            events = EventsSide(
                settings, repository, metrics, stack, self._location_of, self._event_listeners
            )
            # The API comes up first so health checks answer while the model loads.
            api_state = ApiState(
                repository, media_dir, metrics, writer=events.writer, signer=media_signer(settings)
            )
            if settings.api.enabled:
                server = ApiServer(
                    create_app(api_state, settings.api, settings.metrics.enabled),
                    settings.api.host,
                    settings.api.port,
                    settings.api,
                )
                server.start()
                stack.callback(server.stop)
            if self._scores_from_broker:
                return self._events_only(stack, events, view, api_state, started)
            return self._pipeline(events, view, api_state, started)

    def _pipeline(
        self, events: EventsSide, view: PipelineView, api_state: ApiState, started: float
    ) -> RunSummary:
        """`hazardwatch run`: the camera fleet, the local queue, the CLIP worker and the
        events side, in one process."""
        settings, repository, metrics = self.settings, events.repository, events.metrics
        encoder = self._encoder_factory(settings)
        queue: LocalQueue[GatedFrame] = LocalQueue(
            settings.scoring.queue_size, key=lambda g: g.frame.camera
        )
        fleet = CameraFleet(
            camera_builder(settings, queue),
            stop_timeout_s(settings),
            # The stage is built next, with the fleet's readers for its clips: bound late.
            opened=lambda started: _opened(started, stage, repository),
            closed=lambda camera: stage.close_camera(camera),  # noqa: PLW0108
        )
        stage = events.build(api_state, fleet, encoder.name)
        worker = build_worker(settings, encoder, queue, stage.on_scored, metrics)
        fleet.build(settings.cameras)
        if not fleet.readers:
            if not settings.api.enabled:
                raise HazardwatchError(
                    "no camera could be started and the API is off: configure cameras: in "
                    "the config file or pass --source PATH_OR_URL"
                )
            # Events, media and scores already stored stay reachable, and /api/v1/cameras
            # and /readyz say why nothing runs; the operator adds cameras and restarts.
            log.warning(
                "no camera is running (%s): serving the API and the stored data until stopped",
                "; ".join(f"{name}: {why}" for name, why in fleet.invalid.items())
                or "none configured; add cameras: to the config file or pass --source",
            )
        repository.ensure_cameras((r.camera, r.spec.kind) for r in fleet.readers)
        view.cameras = fleet
        api_state.status = LocalStatus(fleet)
        view.queue = queue
        view.stale_by_camera = worker.stats.stale_by_camera
        view.writer = events.writer
        api_state.worker = worker
        events.start()
        worker.start()
        fleet.start()
        log.info("running %d camera(s) with %s", len(fleet.readers), encoder.name)
        ended: set[str] = set()
        try:
            # File sources end; with no camera at all only a signal ends the run.
            while not self._stop.is_set() and not fleet.done:
                self._stop.wait(0.2)
                if self._reload.is_set():
                    self._reload.clear()
                    self._apply_reload(fleet, queue)
                _close_ended_cameras(fleet.readers, queue, stage, ended)
                stage.expire_resumable()
        finally:
            fleet.stop()
            queue.close()
            worker.wait_drained()
            events.finish()
        return RunSummary(
            cameras=len(fleet.readers),
            frames_read=sum(r.stats.frames_read for r in fleet.readers),
            frames_scored=worker.stats.frames,
            events=stage.events_started,
            queue_dropped=queue.dropped,
            seconds=time.monotonic() - started,
        )

    def _events_only(
        self,
        stack: contextlib.ExitStack,
        events: EventsSide,
        view: PipelineView,
        api_state: ApiState,
        started: float,
    ) -> RunSummary:
        """`hazardwatch events`: the scores consumer and the same events side, its scores
        from the broker."""
        from hazardwatch.components import layouts_from_settings, link_from_settings
        from hazardwatch.handoff.intake import ScoresConsumer
        from hazardwatch.handoff.link import consumer_lag
        from hazardwatch.handoff.scores import ScoresSource, ensure_scores_stream
        from hazardwatch.handoff.status import StatusBoard

        settings, repository, metrics = self.settings, events.repository, events.metrics
        banks = BankVersions(settings.prompts.path or DEFAULT_BANK)
        stage = events.build(api_state, NoCameras(), settings.scoring.model)
        frames, scores = layouts_from_settings(settings)
        link = link_from_settings(settings.broker, "events")
        link.start()
        stack.callback(link.stop)
        ensure_scores_stream(link, scores)
        watched = [(frames.stream, frames.consumer), (scores.stream, scores.consumer)]
        metrics.registry.register(BrokerCollector(lambda: consumer_lag(link, watched)))
        consumer = ScoresConsumer(
            ScoresSource(
                link, scores, banks.get, metrics.broker_malformed.labels(scores.consumer).inc
            ),
            stage.on_scored,
            settings.broker.reorder_window_s,
            stored=events.writer,
        )
        board = StatusBoard(link)
        board.start()
        stack.callback(board.stop)
        api_state.status = api_state.roles = board
        view.lost_by_camera = consumer.lost_by_camera
        view.late_by_camera = consumer.late_by_camera
        view.handled_by_camera = consumer.frames_by_camera
        view.remote = board
        view.writer = events.writer
        events.start()
        consumer.start()
        log.info("events: consuming scores from %s", scores.stream)
        try:
            while not self._stop.wait(0.5):
                if self._reload.is_set():
                    self._reload.clear()
                    log.warning("the events role does not reload its configuration; restart it")
                _register_remote_cameras(repository, board)
                stage.expire_resumable()
        finally:
            if not consumer.stop(30):
                log.error("scores consumer did not stop in 30 s")
            events.finish()
            unstored = consumer.settle()
            if unstored:
                log.warning("%d scored frame(s) not stored: left to the broker", unstored)
            log.info(
                "events: %d scored frame(s) handled, %d lost, %d too late for the reorder "
                "window (as hazardwatch_frames_handled/lost/late_total)",
                consumer.frames,
                consumer.lost,
                consumer.late,
            )
        return RunSummary(
            cameras=0,
            frames_read=0,
            frames_scored=consumer.frames,
            events=stage.events_started,
            queue_dropped=consumer.late,
            seconds=time.monotonic() - started,
        )

    def _apply_reload(self, fleet: CameraFleet, queue: LocalQueue[GatedFrame]) -> None:
        self.settings = reload_cameras(fleet, self.settings, self._reload_settings, queue)

    def _location_of(self, camera: str) -> Location | None:
        """The camera's location in the running configuration (a reload may change it)."""
        for c in self.settings.cameras:
            if c.name == camera:
                return c.location
        return None


def _register_remote_cameras(repository: Repository, board: StatusSource) -> None:
    """The events role: each camera's source kind as its capture node reports it (the
    scores alone register a camera as "unknown")."""
    cameras = [(c.name, c.kind) for c in board.cameras() if c.kind]
    if not cameras:
        return
    try:
        repository.ensure_cameras(cameras)
    except Exception as exc:  # the database is down: the writer spools; kinds can wait
        log.debug("camera kinds not registered yet: %s", exc)


def _opened(started: Sequence[CameraReader], stage: DetectorStage, repository: Repository) -> None:
    """Cameras a reload started: the detector stage opens them, the cameras table has them."""
    for reader in started:
        stage.open_camera(reader.camera)
    repository.ensure_cameras((r.camera, r.spec.kind) for r in started)


def _close_ended_cameras(
    readers: Sequence[CameraReader],
    queue: LocalQueue[GatedFrame],
    stage: DetectorStage,
    closed: set[str],
) -> None:
    """A camera whose source ended (a file without `loop`) has its open events closed as
    soon as its last frame is through the detector, not when the run or a reload ends."""
    for reader in readers:
        if reader.camera in closed or reader.state != ReaderState.ENDED:
            continue
        if queue.outstanding(reader.camera) == 0:
            closed.add(reader.camera)
            stage.close_camera(reader.camera)
            log.info("camera %s: its source ended; its open events are closed", reader.camera)
    closed &= {r.camera for r in readers if r.state == ReaderState.ENDED}  # (re)started: again


def _calibrated_camera_kind(settings: Settings, camera: str, force: bool) -> str:
    """The source kind of a camera about to be calibrated; a camera not in the
    configuration is refused unless `force` (its state would never be used)."""
    configured = {c.name: c for c in settings.cameras}
    if camera not in configured and not force:
        known = ", ".join(sorted(configured)) or "none: the configuration has no cameras"
        raise ConfigError(
            f"camera {camera!r} is not in the configuration (configured: {known}); check "
            "the name, or pass --force to store a state for it all the same"
        )
    kind = "unknown"
    if camera in configured:
        with contextlib.suppress(SourceError):
            kind = SourceSpec.parse(configured[camera].url.get_secret_value()).kind
    return kind


def _store_calibration(repository: Repository, camera: str, kind: str, state: CameraNormal) -> None:
    repository.ensure_cameras([(camera, kind)])
    record = state_record(camera, state)
    repository.save_camera_state(
        camera, record.state, record.source, record.references, replace_newer=True
    )


def calibrate_camera_from_history(
    settings: Settings, camera: str, hours: float, *, force: bool = False
) -> CameraNormal:
    """Calibrate a camera from its stored score rows of the last `hours` (calibration.py)
    and store the state, keeping its normal references. No model is loaded."""
    from hazardwatch.calibration import calibrate_from_history

    kind = _calibrated_camera_kind(settings, camera, force)
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        repository = Repository(engine)
        text = repository.load_camera_states().get(camera)
        stored = None
        if text is not None:
            with contextlib.suppress(ValueError, ConfigError):  # unreadable: nothing to keep
                stored = CameraNormal.from_json(json.loads(text), settings.detector.max_references)
        bank = load_bank(settings.prompts.path)
        params = DetectorParams.from_settings(settings.detector)
        state = calibrate_from_history(
            repository,
            camera,
            hours,
            bank.hazard_classes,
            params.evidence,
            params.false_alarms_per_day,
            stored,
            score_interval_s=settings.storage.score_interval_s,
        )
        _store_calibration(repository, camera, kind, state)
        return state
    finally:
        engine.dispose()


def calibrate_camera(
    settings: Settings, camera: str, video: Path, *, force: bool = False
) -> CameraNormal:
    """Learn a camera's normal from a clip of its normal footage and store it.

    Every frame is scored with the live model and bank; each hazard class's smoothed
    probability gives its band, and evenly spaced frames become normal references. The
    camera name, the video and the database are checked first (a typo, a file that is not
    a video or a bad URL fails before the model loads). A camera that is not configured is
    refused unless `force` (its state would never be used).
    """
    from hazardwatch.capture.sources import open_capture
    from hazardwatch.evaluation.video import frame_rate, score_video

    kind = _calibrated_camera_kind(settings, camera, force)
    try:
        opened = open_capture(SourceSpec("file", str(video)), 30.0, 30.0)
        readable = opened.grab()
        opened.release()
    except SourceError as exc:
        raise ConfigError(f"calibrate: {exc}; pass a video file of normal footage") from None
    if not readable:
        raise ConfigError(
            f"calibrate: {video} holds no decodable frame; pass a video file of normal footage"
        )
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        bank = load_bank(settings.prompts.path)
        encoder = load_encoder(settings)
        index = TextIndex.build(bank, encoder)
        try:
            embeddings = score_video(
                video, encoder, bank, settings.scoring.batch_size, progress=False, embeddings=True
            )
        except ValueError as exc:  # no decodable frame
            raise ConfigError(f"calibrate: {exc}; pass a video file of normal footage") from None
        probs, _ = index.score(embeddings, encoder.logit_scale)
        fps = frame_rate(video)
        times = np.arange(len(embeddings)) / fps
        columns = {name: probs[:, i] for i, name in enumerate(bank.class_names)}
        hazards = {name: columns[name] for name in bank.hazard_classes}
        params = DetectorParams.from_settings(settings.detector)
        capacity = settings.detector.max_references
        references = ReferenceSet(capacity)
        references.extend(embeddings[:: max(1, len(embeddings) // capacity)])
        state = CameraNormal(
            classes=calibrate(
                hazards,
                times,
                params.evidence,
                settings.detector.false_alarms_per_day,
            ),
            references=references,
            source="calibrated",
            calibrated_s=float(len(embeddings) / fps),
            calibrated_at=time.time(),
        )
        _store_calibration(Repository(engine), camera, kind, state)
        log.info(
            "camera %s calibrated: %d class band(s), %d reference(s)",
            camera,
            len(state.classes),
            len(references),
        )
        return state
    finally:
        engine.dispose()


class Stoppable(Protocol):
    def stop(self) -> None: ...


def install_signal_handlers(service: Stoppable) -> None:
    """SIGINT / SIGTERM stop (drain first); SIGHUP reloads where the process can."""

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping, draining what is in flight", signum)
        service.stop()

    def reload(signum: int, _frame: Any) -> None:
        log.info("signal %d: reloading the configuration", signum)
        request = getattr(service, "request_reload", None)
        if request is None:
            log.warning("this role does not reload its configuration; restart it")
        else:
            request()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, reload)
