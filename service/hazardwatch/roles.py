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
from hazardwatch.capture.fleet import CameraFleet, Cameras
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
from hazardwatch.events_intake import EventsIntake
from hazardwatch.events_side import hosted
from hazardwatch.handoff.embedding import BrokerEmbedder, EmbeddingResponder
from hazardwatch.handoff.frames import JetStreamSink, JetStreamSource, ensure_frames_stream
from hazardwatch.handoff.intake import ScoresConsumer
from hazardwatch.handoff.latest import LatestBoard, LatestPublisher
from hazardwatch.handoff.link import BrokerLink, consumer_lag
from hazardwatch.handoff.partitions import Partitions
from hazardwatch.handoff.scores import ScoresLayout, ScoresPublisher, ensure_scores_stream
from hazardwatch.handoff.status import StatusBoard, StatusPublisher, node_id
from hazardwatch.handoff.verdicts import VerdictRouter
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
from hazardwatch.search.service import KeyframeSearch
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
            intake = EventsIntake(settings, events, api, view, link, scores, banks)
            partitions = _partitions(link, scores, board, intake)
            node = partitions.node
            status = StatusPublisher(link, lambda: _events_status(node, link, partitions.held))
            status.start()
            stack.callback(status.stop)
            # A verdict posted here reaches the camera's detector in whichever instance
            # owns it; the cameras view says which one.
            verdicts = VerdictRouter(link, partitions.owns, intake.learn_normal)
            verdicts.start()
            stack.callback(verdicts.stop)
            api.learn_normal = intake.route_verdicts = verdicts.learn
            api.owner_of = functools.partial(_owner_of, scores, board, node, partitions)

            def watched() -> list[tuple[str, str]]:
                held = [(scores.stream, scores.consumer_of(k)) for k in partitions.held]
                return [(frames.stream, frames.consumer), *held]

            metrics.registry.register(BrokerCollector(lambda: consumer_lag(link, watched())))
            partitions.start()
            log.info("events: taking a share of the scores' %d partition(s)", scores.partitions)
            try:
                rounds = 0
                while not self._stop.wait(0.5):
                    rounds += 1
                    if intake.stage is not None:
                        _register_remote_cameras(events.repository, board)
                        intake.stage.expire_resumable()
                    if scores.partitions > 1 and rounds % 20 == 0:  # every 10 s
                        _catch_up_search(events.search)
            finally:
                partitions.stop(60)  # nothing more taken or given back
                if partitions.hand_over_all():  # their open events go on elsewhere
                    log.info("events: stopping; the partitions went to the instances up")
                intake.finish(partitions.running)
                if intake.unstored:
                    log.warning(
                        "%d scored frame(s) not stored: left to the broker", intake.unstored
                    )
                partitions.release_all()  # others take over now, not after the lease's TTL
                log.info(
                    "events: %d scored frame(s) handled, %d lost, %d too late for the "
                    "reorder window (as hazardwatch_frames_handled/lost/late_total)",
                    intake.frames,
                    intake.lost,
                    intake.late,
                )
            stage = intake.stage
            return RoleSummary(
                "events",
                frames_scored=intake.frames,
                events=stage.events_started if stage is not None else 0,
                frames_late=intake.late,
                seconds=time.monotonic() - started,
            )


def _owner_of(
    layout: ScoresLayout,
    board: StatusBoard,
    node: str,
    partitions: Partitions[Any],
    camera: str,
) -> dict[str, Any]:
    """Which partition a camera is in, and which events instance holds it (None: none
    does now)."""
    k = layout.partition_of(camera)
    if k in partitions.held:
        return {"partition": k, "events_node": node}
    held_by = (n for n, held in board.events_nodes().items() if k in held and n != node)
    return {"partition": k, "events_node": next(held_by, None)}


def _events_status(node: str, link: BrokerLink, held: list[int]) -> dict[str, dict[str, Any]]:
    """This events instance in the status bucket: the partitions it holds (the others
    count it when they share the partitions out)."""
    value = {"role": "events", "node": node, "connected": link.connected, "partitions": held}
    return {f"node.events.{node}": value}


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


def _partitions(
    link: BrokerLink, scores: ScoresLayout, board: StatusBoard, intake: EventsIntake
) -> Partitions[ScoresConsumer]:
    """This instance's share of the scores' partitions; its writer stores only while
    every lease it holds is current, and it exits once one is lost (`_fenced`)."""
    partitions = Partitions(
        link, scores, node_id(), lambda: list(board.events_nodes()),
        intake.start, intake.stop, _fenced,
    )  # fmt: skip
    intake.events.writer.may_write = partitions.current
    return partitions


def _fenced(why: str) -> None:
    """This instance's lease is lost (it was paused or cut off past the lease's TTL, and
    another instance may own the scores now): stop at once, writing nothing more, like a
    crash — what it had not acknowledged goes to the new owner. Its supervisor restarts it,
    as a standby."""
    log.critical("events: the scores' lease is lost (%s); exiting without another write", why)
    logging.shutdown()
    os._exit(EXIT_FENCED)


def _catch_up_search(search: KeyframeSearch | None) -> None:
    """The other partitions' keyframes into this instance's search index: any instance's
    API searches every camera."""
    if search is None:
        return
    try:
        search.catch_up()
    except Exception as exc:  # the database away: the next round reads them
        log.debug("search: keyframes of the other instances not read yet: %s", exc)


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
