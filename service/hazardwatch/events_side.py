"""The events side: what turns scored frames into stored, alerted events, the same in
`hazardwatch run` and in `hazardwatch events`.

One `EventsSide` per process, with one lifecycle:

1. constructed: the durable spool and the event writer, the spool an earlier run left
   replayed first (the API may start now: it reads the writer);
2. `build`: alert channels and their dispatcher, the clip recorder, weather, the event
   fan-out and the detector stage (camera states loaded, events an earlier run left open
   to continue), wired into the API's state;
3. `start`: the media janitor, the writer and the clip recorder;
4. `finish`: every open event closed, clips cut, writes drained (or left in the spool).

Everything it starts is stopped through the caller's exit stack, after `finish`.

`hosted` opens what both roots put around it — the database (migrated), the metrics,
the API's state and server — and hands them over as a `Host`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hazardwatch import __version__
from hazardwatch.api.app import create_app
from hazardwatch.api.server import ApiServer
from hazardwatch.api.state import ApiState
from hazardwatch.capture.fleet import Cameras
from hazardwatch.capture.reader import CameraReader
from hazardwatch.components import (
    build_alert_channels,
    build_clip_recorder,
    check_exposure,
    media_signer,
)
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.normal import CameraNormal
from hazardwatch.detect.resume import RESUME_WINDOW_S
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.errors import ConfigError
from hazardwatch.metrics import Metrics, PipelineCollector, PipelineView, Role
from hazardwatch.outputs.alerts import AlertDispatcher, AlertPolicy
from hazardwatch.outputs.clips import ClipRecorder
from hazardwatch.outputs.fanout import FanOut, Sink
from hazardwatch.outputs.mqtt import MqttPublisher
from hazardwatch.outputs.retention import MediaJanitor
from hazardwatch.outputs.weather import build_enricher
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import CameraStateRecord, EventRecord, EventUpdate, ScoredFrame
from hazardwatch.search.keyframes import KeyframeSampler
from hazardwatch.search.service import KeyframeSearch
from hazardwatch.settings import Location, Settings
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import check_connection, create_engine
from hazardwatch.storage.repository import MAX_PAGE, Repository
from hazardwatch.storage.spool import Spool

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Host:
    """The events side as a composition root receives it, with what surrounds it."""

    events: EventsSide
    view: PipelineView  # what the metrics collector reads; the root fills it in
    api: ApiState  # what the API reads; the root fills it in
    stack: contextlib.ExitStack  # stops what the root starts, in reverse


@contextlib.contextmanager
def hosted(
    settings: Settings,
    role: Role,
    location_of: Callable[[str], Location | None],
    event_listeners: Sequence[Callable[[EventUpdate], None]] = (),
) -> Iterator[Host]:
    """The database reachable and migrated, the metrics, the events side, and the API
    serving (so health checks answer while the rest comes up); all closed on exit."""
    check_exposure(settings)
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        repository = Repository(engine)
        metrics = Metrics(role=role)
        metrics.build_info.labels(__version__, settings.scoring.model).set(1)
        view = PipelineView()
        metrics.registry.register(PipelineCollector(view))
        with contextlib.ExitStack() as stack:
            events = EventsSide(settings, repository, metrics, stack, location_of, event_listeners)
            api = ApiState(
                repository,
                settings.media_dir(),
                metrics,
                writer=events.writer,
                signer=media_signer(settings),
            )
            if settings.api.enabled:
                api_settings = settings.api
                server = ApiServer(
                    create_app(api, api_settings, settings.metrics.enabled),
                    api_settings.host,
                    api_settings.port,
                    api_settings,
                )
                server.start()
                stack.callback(server.stop)
            yield Host(events, view, api, stack)
    finally:
        engine.dispose()


class EventsSide:
    """The writer, alerts, clips, weather, detector stage and janitor of one process."""

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        metrics: Metrics,
        stack: contextlib.ExitStack,
        location_of: Callable[[str], Location | None],
        event_listeners: Sequence[Callable[[EventUpdate], None]] = (),
    ) -> None:
        """`location_of`: a camera's location in the running configuration (weather);
        `event_listeners` hear every stored event update."""
        self.settings = settings
        self.repository = repository
        self.metrics = metrics
        self._stack = stack
        self._location_of = location_of
        self._event_listeners = list(event_listeners)
        storage = settings.storage
        self.spool = Spool(storage.data_dir / "spool.db", storage.spool_max_items)
        stack.callback(self.spool.close)
        self.writer = EventWriter(
            repository,
            settings.media_dir(),
            settings.media.snapshot_quality,
            spool=self.spool,
            metrics=metrics,
            max_backlog=storage.writer_backlog,
        )
        if len(self.spool):
            log.info("replaying %d write(s) spooled by an earlier run", len(self.spool))
            self.writer.replay()
        self.clips: ClipRecorder | None = None
        self.keyframes: KeyframeSampler | None = None
        self.search: KeyframeSearch | None = None

    def build(
        self,
        api_state: ApiState,
        cameras: Cameras,
        model_name: str,
        owns: Callable[[str], bool] | None = None,
        handed_over: bool = False,
        redelivered_s: float = 0.0,
    ) -> DetectorStage:
        """Alerts, clips, weather and the detector stage, wired to the writer and the API.
        `cameras`: this process's readers (full-rate segments for clips), if any. `owns`:
        the cameras whose states and open events this process takes (the events role's
        partitions; all of them by default); `handed_over`: another instance gave them
        over cleanly (detect/resume.py). `redelivered_s`: the frames come from a broker,
        which delivers again after a kill those not acknowledged (detect/detector.py)."""
        settings, writer, metrics = self.settings, self.writer, self.metrics
        channels = build_alert_channels(settings, metrics)
        for channel in channels:
            channel.start()
            self._stack.callback(channel.stop)  # after the writer: its last alerts go out
        a = settings.alerts
        dispatcher = AlertDispatcher(
            AlertPolicy(
                min_severity=a.min_severity,
                cooldown_s=a.cooldown_s,
                update_interval_s=a.update_interval_s,
            ),
            list(channels),
            public_url=settings.api.public_url,
            signer=api_state.signer,
            metrics=metrics,
        )
        writer.listeners.append(dispatcher)
        # MQTT's retained state follows every event, whatever the alert policy held back.
        writer.listeners.extend(c.observe for c in channels if isinstance(c, MqttPublisher))
        writer.listeners.extend(self._event_listeners)
        clips = build_clip_recorder(
            settings, writer, lambda cam: _segments_of(cameras.readers, cam)
        )
        self.clips = clips
        self._build_search(api_state, model_name)
        dispatcher.clips = clips is not None
        writer.clip_listeners.append(dispatcher.clip_ready)
        if clips is not None:
            writer.clip_listeners.append(clips.clip_stored)
            api_state.clip_pending = clips.pending
        self.stage = DetectorStage(
            DetectorParams.from_settings(settings.detector),
            self._fan_out(),
            writer.put_scores if settings.storage.write_scores else None,
            model_name=model_name,
            score_interval_s=settings.storage.score_interval_s,
            on_frame=clips.on_frame if clips else None,
            normals=load_camera_states(
                self.repository,
                settings.detector.max_references,
                # The events role has no cameras of its own: every stored state is logged.
                [c.name for c in settings.cameras if c.enabled] or None,
                owns,
            ),
            save_state=lambda camera, normal: writer.put_state(state_record(camera, normal)),
            max_references=settings.detector.max_references,
            scores_stored_until=_only(self.repository.scores_stored_until(), owns),
            observe_latency=metrics.frame_latency_seconds.observe,
            # One process (or the events role) owns every camera's events: what an earlier
            # run left open is continued by this one, or closed as interrupted.
            resumable=[] if handed_over else left_open(self.repository, owns),
            learning_s=settings.detector.learning_s,
            on_learning=metrics.set_learning,
            redelivered_s=redelivered_s,
        )
        if handed_over:
            self.stage.left_open.add(left_open(self.repository, owns), handed_over=True)
        api_state.learn_normal = self.stage.learn_normal
        api_state.calibration = self.stage.calibration
        api_state.explain = self.stage.explain
        return self.stage

    def take_cameras(self, belongs: Callable[[str], bool], handed_over: bool = False) -> None:
        """Cameras another events instance let go (a partition; `handed_over`: cleanly,
        not by dying): their states, newest score times and open events as it left them,
        into the running stage."""
        repository = self.repository
        max_references = self.settings.detector.max_references
        self.stage.take_cameras(
            load_camera_states(repository, max_references, None, belongs),
            _only(repository.scores_stored_until(), belongs),
            left_open(repository, belongs),
            handed_over,
        )

    def stored(self, timeout_s: float) -> bool:
        """Wait until everything put to the writer so far is in the database, not only
        spooled: another instance is about to read it (a partition handed over). False
        after `timeout_s` (the database away: the spool stores it once it is back)."""
        writer, mark = self.writer, self.writer.mark()
        deadline = time.monotonic() + timeout_s
        while not writer.durable(mark) or writer.spooled:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _build_search(self, api_state: ApiState, model_name: str) -> None:
        """Keyframes sampled from scored frames and event ends, stored by the writer,
        indexed for the API (search.enabled)."""
        s = self.settings.search
        if not s.enabled:
            return
        self.keyframes = KeyframeSampler(
            self.writer.put_keyframes,
            model_name,
            interval_s=s.keyframe_interval_s,
            width=s.thumbnail_width,
            quality=s.thumbnail_quality,
        )
        self.search = KeyframeSearch(
            self.repository.keyframes,
            model_name,
            self.metrics,
            directory=self.settings.storage.data_dir / "search",
        )
        self.writer.keyframe_listeners.append(self.search.stored)
        api_state.search = self.search

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        """Scored frames: to the detector stage, then to the keyframe sampler (whose
        failure is logged and never costs a detection)."""
        self.stage.on_scored(frames)
        if self.keyframes is not None:
            try:
                self.keyframes.on_scored(frames)
            except Exception:
                log.exception("keyframes of %d scored frame(s) not kept", len(frames))

    def start(self) -> None:
        settings = self.settings
        janitor = MediaJanitor(
            settings.media_dir(),
            settings.media.retention_days,
            settings.media.max_size_gb,
            interval_s=settings.media.retention_interval_s,
            metrics=self.metrics,
            on_deleted=self._media_deleted,
            segment_keep_s=settings.recording.keep_s,
        )
        janitor.start()
        self._stack.callback(janitor.stop)
        if self.search is not None:
            self.search.start()
            self._stack.callback(self.search.stop)
        self.writer.start()
        if self.clips is not None:
            self.clips.start()

    def _media_deleted(self, paths: list[str]) -> None:
        """Retention removed these files: links to them cleared, their keyframes deleted."""
        self.repository.forget_media(paths)
        if self.search is not None:
            self.search.forget(paths)

    def finish(self) -> None:
        """Close every open event, finish clips and writes (spooling what cannot go)."""
        self.stage.flush()
        if self.clips is not None and not self.clips.stop(30):
            log.error("clip recorder did not finish in 30 s")
        writer = self.writer
        if not writer.stop(60):
            log.error("event writer did not drain in 60 s; %d item(s) left", writer.backlog)
        if writer.spooled:
            log.warning(
                "%d write(s) remain in the spool; they are stored on the next start",
                writer.spooled,
            )

    def _fan_out(self) -> FanOut:
        """Where the detector's event updates go (outputs/fanout.py): weather attached
        (when it is on), then the writer and the clip recorder, each isolated."""
        sinks: list[tuple[str, Sink]] = [("writer", self.writer.put_event)]
        if self.clips is not None:
            sinks.append(("clips", self.clips.on_event))
        if self.keyframes is not None:
            sinks.append(("keyframes", self.keyframes.on_event))
        weather = build_enricher(
            self.settings.weather, self._location_of, self.writer.put_weather, metrics=self.metrics
        )
        if weather is not None:
            weather.start()
            self._stack.callback(weather.stop)
        enrich = ("weather", weather.enrich) if weather is not None else None
        return FanOut(sinks, enrich, self.metrics)


def _segments_of(readers: Sequence[CameraReader], camera: str) -> Path | None:
    """The segment directory of `camera` while it is recorded at full rate."""
    for reader in readers:
        if reader.camera == camera and reader.recorder is not None:
            return reader.recorder.directory
    return None


def _only(by_camera: dict[str, T], owns: Callable[[str], bool] | None) -> dict[str, T]:
    return by_camera if owns is None else {c: v for c, v in by_camera.items() if owns(c)}


def left_open(
    repository: Repository, owns: Callable[[str], bool] | None = None
) -> list[EventRecord]:
    """Events an earlier run (or the instance that had these cameras) left open: this run
    continues or closes them. `owns`: only those of these cameras."""
    found: list[EventRecord] = []
    offset = 0
    while True:
        page = repository.list_events(status="open", limit=MAX_PAGE, offset=offset)
        offset += len(page)
        found.extend(r for r in page if owns is None or owns(r.camera))
        if len(page) < MAX_PAGE:
            break
    if found:
        log.warning(
            "%d event(s) left open by %s: each goes on if its hazard is seen again within "
            "%.0f s, else it is closed as interrupted",
            len(found),
            "an earlier run" if owns is None else "the instance that had these cameras",
            RESUME_WINDOW_S,
        )
    return found


def load_camera_states(
    repository: Repository,
    max_references: int = 32,
    configured: Iterable[str] | None = None,
    owns: Callable[[str], bool] | None = None,
) -> dict[str, CameraNormal]:
    """Every camera's stored normal (of the cameras `owns` names, if given); a state that
    cannot be read is logged and skipped (the camera then starts from the prior), never
    fatal. Each `configured` camera's state is logged (calibrated when, on how much
    footage; or not); stored states of other cameras are kept and only counted."""
    out = {}
    for camera, text in _only(repository.load_camera_states(), owns).items():
        try:
            out[camera] = CameraNormal.from_json(json.loads(text), max_references)
        except (ValueError, ConfigError) as exc:
            log.warning("camera %s: stored normal state ignored (%s); recalibrate it", camera, exc)
    names = sorted(out) if configured is None else sorted(set(configured))
    for camera in names:
        normal = out.get(camera)
        log.info(
            "camera %s: %s",
            camera,
            normal.describe() if normal is not None else CameraNormal().describe(),
        )
    others = sorted(out.keys() - set(names))
    if others:
        log.info(
            "stored normal state of %d camera(s) not in the configuration kept: %s",
            len(others),
            ", ".join(others),
        )
    return out


def state_record(camera: str, normal: CameraNormal) -> CameraStateRecord:
    return CameraStateRecord(
        camera,
        json.dumps(normal.to_json()),
        normal.source,
        len(normal.references),
        normal.calibrated_at,
    )
