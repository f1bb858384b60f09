"""Composition roots of the distributed roles, joined by NATS JetStream.

- `CaptureNode` (`hazardwatch capture`): the cameras' readers, motion gates and samplers,
  handing gated frames to the frames stream instead of the local queue;
- `WorkerNode` (`hazardwatch worker`): a `ScoringWorker` fetching frames from the shared
  durable consumer and publishing scores, acked only once the broker holds them;
- `EventsNode` (`hazardwatch events`): the scores consumer (capture order restored, acks
  once stored) and the same events side as the single process (events_side.py):
  detector stage, writer, alerts, media and the whole API, with the other roles' status
  read from the status bucket.

Each starts its components in data-flow order and stops them in reverse. Capture and
worker serve `/healthz`, `/readyz` and `/metrics` on their own port (0: a free one,
logged); the events node serves the API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from hazardwatch.api.server import ApiServer
from hazardwatch.api.state import ApiState
from hazardwatch.capture.fleet import CameraFleet, Cameras, NoCameras
from hazardwatch.capture.latest import LatestFrames
from hazardwatch.components import (
    EncoderFactory,
    build_worker,
    camera_builder,
    file_bank,
    layouts_from_settings,
    link_from_settings,
    load_encoder,
    location_of,
    reload_cameras,
    stop_timeout_s,
    wire_options,
)
from hazardwatch.events_side import hosted
from hazardwatch.handoff.embedding import BrokerEmbedder, EmbeddingResponder
from hazardwatch.handoff.frames import JetStreamSink, JetStreamSource, ensure_frames_stream
from hazardwatch.handoff.intake import ScoresConsumer
from hazardwatch.handoff.latest import LatestBoard, LatestPublisher
from hazardwatch.handoff.lease import RETRY_S, Lease, LeaseKeeper
from hazardwatch.handoff.link import BrokerLink, consumer_lag
from hazardwatch.handoff.scores import ScoresPublisher, ScoresSource, ensure_scores_stream
from hazardwatch.handoff.status import StatusBoard, StatusPublisher, node_id
from hazardwatch.metrics import (
    CONTENT_TYPE,
    BrokerCollector,
    DropsCollector,
    Metrics,
    PipelineCollector,
    PipelineView,
    PublishCollector,
)
from hazardwatch.records import NodeStatus
from hazardwatch.scoring.bank import DEFAULT_BANK, BankVersions
from hazardwatch.scoring.bank_source import BankPublisher, BrokerBank, DatabaseBank
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import Settings
from hazardwatch.status import LocalStatus, StatusSource, camera_problems
from hazardwatch.storage.repository import Repository

log = logging.getLogger(__name__)
# The exit status of an events instance that lost its lease (EX_TEMPFAIL: run it again).
EXIT_FENCED = 75


def status_app(
    name: str, metrics: Metrics, reasons: Callable[[], list[str]], serve_metrics: bool = True
) -> FastAPI:
    """/healthz, /readyz (503 with reasons) and /metrics of a role (unless
    `metrics.enabled` is off: `serve_metrics`)."""
    app = FastAPI(title=f"hazardwatch {name}", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "role": name}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        why = reasons()
        body = {"status": "degraded" if why else "ready", "role": name, "reasons": why}
        return JSONResponse(body, status_code=503 if why else 200)

    if serve_metrics:

        @app.get("/metrics")
        def metrics_endpoint() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_status(
    name: str,
    settings: Settings,
    port: int | None,
    metrics: Metrics,
    reasons: Callable[[], list[str]],
) -> ApiServer:
    host = settings.api.host
    chosen = settings.api.port if port is None else (port or free_port(host))
    app = status_app(name, metrics, reasons, settings.metrics.enabled)
    server = ApiServer(app, host, chosen, settings.api)
    server.start()
    served = "/healthz, /readyz and /metrics" if settings.metrics.enabled else "/healthz, /readyz"
    log.info("%s: %s on http://%s:%d", name, served, host, chosen)
    return server


@dataclass
class RoleSummary:
    role: str
    cameras: int = 0
    frames_read: int = 0
    frames_published: int = 0
    frames_scored: int = 0
    events: int = 0  # the events role: events started
    frames_late: int = 0  # the events role: too late for the reorder window
    seconds: float = 0.0


class CaptureNode:
    """Reads this node's cameras and publishes their gated frames. File sources without
    `loop` end the run (exit 0) once every frame is published; otherwise SIGTERM does."""

    def __init__(
        self,
        settings: Settings,
        api_port: int | None = None,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        """`reload_settings`: what SIGHUP re-reads (cameras added, removed or changed)."""
        self.settings = settings
        self.api_port = api_port
        self._reload_settings = reload_settings
        self._stop = threading.Event()
        self._reload = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the configuration soon (from a signal handler: only sets a flag)."""
        self._reload.set()

    def run(self) -> RoleSummary:
        started = time.monotonic()
        settings = self.settings
        cv2.setNumThreads(1)  # as in one process: cameras are the parallelism, the pool spins
        frames, _ = layouts_from_settings(settings)
        link = link_from_settings(settings.broker, "capture")
        link.start()
        try:
            ensure_frames_stream(link, frames)
            sink = JetStreamSink(link, frames, wire_options(settings.broker))
            fleet = CameraFleet(camera_builder(settings, sink), stop_timeout_s(settings))
            fleet.build(settings.cameras)
            metrics = Metrics(role="capture")
            metrics.registry.register(PipelineCollector(PipelineView(cameras=fleet), events=False))
            metrics.registry.register(
                PublishCollector(
                    lambda: {
                        "published": sink.published,
                        "publish_failed": sink.failed,
                        "publish_retried": sink.retried,
                        "publish_dropped": sink.dropped,
                    }
                )
            )
            server = start_status(
                "capture",
                settings,
                self.api_port,
                metrics,
                lambda: _capture_reasons(link, fleet),
            )
            node = node_id()
            status = StatusPublisher(link, lambda: _capture_status(node, link, fleet))
            latest = LatestPublisher(link, LatestFrames(fleet))
            try:
                fleet.start()
                status.start()
                latest.start()
                log.info(
                    "capture: %d camera(s) publishing to %s", len(fleet.readers), frames.stream
                )
                while not self._stop.is_set() and not fleet.done:
                    self._stop.wait(0.2)
                    if self._reload.is_set():
                        self._reload.clear()
                        self.settings = reload_cameras(
                            fleet, self.settings, self._reload_settings, sink
                        )
                fleet.stop()
                if not sink.flush(30):
                    log.error("capture: frames still unpublished after 30 s")
            finally:
                latest.stop()
                status.stop()
                server.stop()
            return RoleSummary(
                "capture",
                cameras=len(fleet.readers),
                frames_read=sum(r.stats.frames_read for r in fleet.readers),
                frames_published=sink.published,
                seconds=time.monotonic() - started,
            )
        finally:
            link.stop()


def _capture_status(node: str, link: BrokerLink, fleet: Cameras) -> dict[str, dict[str, Any]]:
    """This node's entries in the status bucket: each camera (invalid ones too), and the
    node itself."""
    cameras = LocalStatus(fleet).cameras()
    entries = {f"camera.{c.name}": dataclasses.replace(c, node=node).to_json() for c in cameras}
    capture = NodeStatus("capture", node, link.connected, tuple(c.name for c in cameras))
    entries[f"node.capture.{node}"] = capture.to_json()
    return entries


def _link_reasons(link: BrokerLink) -> list[str]:
    return [] if link.connected else ["not connected to NATS"]


def _capture_reasons(link: BrokerLink, fleet: Cameras) -> list[str]:
    return _link_reasons(link) + camera_problems(LocalStatus(fleet).cameras())


class WorkerNode:
    """Scores frames from the shared consumer until stopped (SIGTERM), then finishes the
    batch in hand; what it never fetched stays with the broker for the other workers."""

    def __init__(
        self,
        settings: Settings,
        encoder_factory: EncoderFactory = load_encoder,
        api_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.encoder_factory = encoder_factory
        self.api_port = api_port
        self._stop = threading.Event()
        self.worker: ScoringWorker | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> RoleSummary:
        started = time.monotonic()
        settings = self.settings
        cv2.setNumThreads(1)  # frames are decoded one by one; OpenCV's own pool only spins
        frames, scores = layouts_from_settings(settings)
        link = link_from_settings(settings.broker, "worker")
        link.start()
        try:
            ensure_frames_stream(link, frames)
            ensure_scores_stream(link, scores)
            metrics = Metrics(role="worker")
            encoder = self.encoder_factory(settings)
            publisher = ScoresPublisher(link, scores, wire_options(settings.broker))
            source = JetStreamSource(
                link, frames, metrics.broker_malformed.labels(frames.consumer).inc
            )
            # The bank an admin edited, as the events service publishes it; else the file.
            banks = BrokerBank(link, file_bank(settings))
            worker = self.worker = build_worker(
                settings, encoder, source, publisher.publish, metrics, banks,
                settings.scoring.model,  # as the events service names it
            )  # fmt: skip
            # The frames this worker dropped as stale, per camera (hazardwatch_frames_dropped).
            view = PipelineView(stale_by_camera=worker.stats.stale_by_camera)
            metrics.registry.register(DropsCollector(view))
            server = start_status(
                "worker", settings, self.api_port, metrics, lambda: _link_reasons(link)
            )
            node = node_id()
            status = StatusPublisher(
                link,
                lambda: {
                    f"node.worker.{node}": NodeStatus(
                        "worker",
                        node,
                        link.connected,
                        encoder=encoder.name,
                        frames_scored=worker.stats.frames,
                        running=worker.is_alive(),
                    ).to_json()
                },
            )
            # Search queries in words, from the events service, embedded with this model.
            embedder = EmbeddingResponder(link, worker, settings.scoring.model)
            try:
                worker.start()
                status.start()
                embedder.start()
                log.info("worker: scoring with %s", encoder.name)
                self._stop.wait()
                embedder.stop()
                status.stop()  # no longer offered as a worker, then the batch in hand
                if not worker.stop(30):
                    log.error("worker: the batch in hand did not finish in 30 s")
            finally:
                server.stop()
            return RoleSummary(
                "worker",
                frames_scored=worker.stats.frames,
                frames_published=publisher.published,
                seconds=time.monotonic() - started,
            )
        finally:
            link.stop()


class EventsNode:
    """Detects, stores and alerts on the scores every worker publishes, and serves the
    API, until stopped (SIGTERM); then closes what is open and acks what is stored. It
    has no cameras to reload: a new camera's scores simply start to arrive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> RoleSummary:
        started = time.monotonic()
        settings = self.settings
        where = functools.partial(location_of, settings)  # as the events node's file says
        with hosted(settings, "events", where) as host:
            events, view, api, stack = host.events, host.view, host.api, host.stack
            metrics = events.metrics
            live = api.banks = DatabaseBank(events.repository.banks, file_bank(settings))
            banks = BankVersions(settings.prompts.path or DEFAULT_BANK, stored=live.get)
            frames, scores = layouts_from_settings(settings)
            link = link_from_settings(settings.broker, "events")
            link.start()
            stack.callback(link.stop)
            ensure_scores_stream(link, scores)
            board = _broker_views(settings, link, api, view, live, stack)
            lease = Lease(link, key=f"{scores.stream}.{scores.consumer}")
            if not self._own(lease, metrics):  # stopped while standing by
                return RoleSummary("events", seconds=time.monotonic() - started)
            keeper = LeaseKeeper(lease, _fenced)
            keeper.start()
            stack.callback(keeper.stop)
            # Built once the scores are ours: the camera states and the events a previous
            # owner left open are read now, not when this instance started to stand by.
            stage = events.build(api, NoCameras(), settings.scoring.model)
            watched = [(frames.stream, frames.consumer), (scores.stream, scores.consumer)]
            metrics.registry.register(BrokerCollector(lambda: consumer_lag(link, watched)))
            source = ScoresSource(
                link, scores, banks.get, metrics.broker_malformed.labels(scores.consumer).inc
            )
            consumer = ScoresConsumer(
                source,
                events.on_scored,
                settings.broker.reorder_window_s,
                stored=events.writer,
                may_consume=lease.current,
            )
            view.writer = events.writer
            view.lost_by_camera = consumer.lost_by_camera
            view.late_by_camera = consumer.late_by_camera
            view.handled_by_camera = consumer.frames_by_camera
            events.start()
            consumer.start()
            log.info("events: consuming scores from %s", scores.stream)
            try:
                while not self._stop.wait(0.5):
                    _register_remote_cameras(events.repository, board)
                    stage.expire_resumable()
            finally:
                if not consumer.stop(30):
                    log.error("scores consumer did not stop in 30 s")
                events.finish()
                unstored = consumer.settle()
                if unstored:
                    log.warning("%d scored frame(s) not stored: left to the broker", unstored)
                keeper.stop()
                lease.release()  # a standby takes over now, not after the lease's TTL
                log.info(
                    "events: %d scored frame(s) handled, %d lost, %d too late for the "
                    "reorder window (as hazardwatch_frames_handled/lost/late_total)",
                    consumer.frames,
                    consumer.lost,
                    consumer.late,
                )
            return RoleSummary(
                "events",
                frames_scored=consumer.frames,
                events=stage.events_started,
                frames_late=consumer.late,
                seconds=time.monotonic() - started,
            )

    def _own(self, lease: Lease, metrics: Metrics) -> bool:
        """The scores' lease, at once or after standing by while another instance holds
        it (handoff/lease.py); False when stopped first."""
        if self._try(lease):
            metrics.scores_owner.set(1)
            return True
        metrics.scores_owner.set(0)
        log.warning(
            "events: %s consumes the scores; this instance stands by (its API serves from "
            "the database) and takes over when that one stops",
            lease.owner() or "another instance",
        )
        while not self._stop.wait(RETRY_S):
            if self._try(lease):
                log.warning("events: this instance took the scores over")
                metrics.scores_owner.set(1)
                return True
        return False

    @staticmethod
    def _try(lease: Lease) -> bool:
        try:
            return lease.acquire()
        except Exception as exc:  # the broker away: try again
            log.debug("scores lease not acquired: %s", exc)
            return False


def _broker_views(
    settings: Settings,
    link: BrokerLink,
    api: ApiState,
    view: PipelineView,
    bank: DatabaseBank,
    stack: contextlib.ExitStack,
) -> StatusBoard:
    """What the events role's API reads from the broker, owner or standby alike: the
    roles' status board, the latest frames, embeddings by a worker, and the bank's
    versions published for the workers."""
    board = StatusBoard(link)
    board.start()
    stack.callback(board.stop)
    api.status = api.roles = view.remote = board
    api.latest_frame = LatestBoard(link).jpeg
    api.embedder = BrokerEmbedder(link, settings.scoring.model)
    bank_publisher = BankPublisher(link, bank)
    bank_publisher.start()
    stack.callback(bank_publisher.stop)
    api.bank_changed = bank_publisher.publish
    return board


def _fenced(why: str) -> None:
    """This instance's lease is lost (it was paused or cut off past the lease's TTL, and
    another instance may own the scores now): stop at once, writing nothing more, like a
    crash — what it had not acknowledged goes to the new owner. Its supervisor restarts it,
    as a standby."""
    log.critical("events: the scores' lease is lost (%s); exiting without another write", why)
    logging.shutdown()
    os._exit(EXIT_FENCED)


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
