"""`hazardwatch run`: wire settings → cameras → motion gate → hand-off → CLIP worker →
detector → event writer. Stages start in data-flow order and stop in reverse, draining
what is in flight so no event is left open.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from hazardwatch.capture.reader import CameraReader, ReaderOptions
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.errors import HazardwatchError, SourceError
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.motion.gate import GateParams, MotionGate
from hazardwatch.motion.snippets import SamplerParams, SnippetSampler
from hazardwatch.motion.stage import MotionStage
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import GatedFrame
from hazardwatch.scoring.bank import DEFAULT_BANK, load_bank
from hazardwatch.scoring.model import Encoder, load_clip
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import CameraSettings, Settings
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import check_connection, create_engine
from hazardwatch.storage.repository import Repository

log = logging.getLogger(__name__)
EncoderFactory = Callable[[Settings], Encoder]


def load_encoder(settings: Settings) -> Encoder:
    s = settings.scoring
    return load_clip(s.model, s.device, s.precision, s.download_dir)


@dataclass
class RunSummary:
    cameras: int
    frames_read: int
    frames_scored: int
    events: int
    queue_dropped: int
    seconds: float


def build_camera(
    camera: CameraSettings, settings: Settings, queue: LocalQueue[GatedFrame]
) -> CameraReader:
    m = settings.motion
    gate = MotionGate(
        GateParams(
            m.threshold,
            m.min_area,
            m.downscale_width,
            m.blur_kernel,
            m.dilate_iterations,
            m.lighting_guard,
        ),
        camera.masks,
    )
    sampler = SnippetSampler(
        SamplerParams(m.preroll_s, m.postroll_s, m.sample_fps, m.heartbeat_s), queue.put
    )
    c = settings.capture
    options = ReaderOptions(
        c.open_timeout_s,
        c.read_timeout_s,
        c.stall_timeout_s,
        c.backoff_initial_s,
        c.backoff_max_s,
        camera.fps_limit,
        camera.loop,
    )
    spec = SourceSpec.parse(camera.url.get_secret_value(), camera.rtsp_transport)
    return CameraReader(camera.name, spec, MotionStage(camera.name, gate, sampler), options)


class Service:
    """The running pipeline; `run` blocks until the sources end or `stop` is called."""

    def __init__(self, settings: Settings, encoder_factory: EncoderFactory = load_encoder):
        self.settings = settings
        self._encoder_factory = encoder_factory
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

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
        check_connection(engine)
        migrate.upgrade(engine)
        repository = Repository(engine)
        interrupted = repository.close_open_events(datetime.now(UTC))
        if interrupted:
            log.warning(
                "%d event(s) left open by an earlier run were closed as interrupted", interrupted
            )

        bank_path = settings.prompts.path or DEFAULT_BANK
        bank = load_bank(bank_path)
        encoder = self._encoder_factory(settings)
        queue: LocalQueue[GatedFrame] = LocalQueue(
            settings.scoring.queue_size, key=lambda g: g.frame.camera
        )
        writer = EventWriter(repository, settings.media_dir(), settings.media.snapshot_quality)
        stage = DetectorStage(
            DetectorParams.from_settings(settings.detector),
            writer.put_event,
            writer.put_scores if settings.storage.write_scores else None,
            model_name=encoder.name,
            score_interval_s=settings.storage.score_interval_s,
        )
        worker = ScoringWorker(
            encoder,
            bank,
            queue,
            stage.on_scored,
            batch_size=settings.scoring.batch_size,
            max_batch_wait_s=settings.scoring.max_batch_wait_ms / 1000,
            motion_crop=settings.scoring.motion_crop,
            bank_path=bank_path if settings.prompts.reload else None,
        )
        readers = self._readers(queue)
        if not readers:
            raise HazardwatchError(
                "no camera could be started: configure cameras: in the config file or pass "
                "--source PATH_OR_URL"
            )
        repository.ensure_cameras((r.camera, r.spec.kind) for r in readers)

        writer.start()
        worker.start()
        for reader in readers:
            reader.start()
        log.info("running %d camera(s) with %s", len(readers), encoder.name)
        try:
            while not self._stop.is_set() and not all(r.done for r in readers):
                self._stop.wait(0.2)
        finally:
            for reader in readers:
                reader.stop()
            for reader in readers:
                if not reader.join(settings.capture.read_timeout_s + 5):
                    log.warning(
                        "camera %s: reader still blocked in a read; leaving it", reader.camera
                    )
            queue.close()
            worker.join()
            stage.flush()
            if not writer.close(60):
                log.error("event writer did not drain in 60 s; %d item(s) left", writer.backlog)
        return RunSummary(
            cameras=len(readers),
            frames_read=sum(r.stats.frames_read for r in readers),
            frames_scored=worker.stats.frames,
            events=stage.events_started,
            queue_dropped=queue.dropped,
            seconds=time.monotonic() - started,
        )

    def _readers(self, queue: LocalQueue[GatedFrame]) -> list[CameraReader]:
        readers = []
        for camera in self.settings.cameras:
            if not camera.enabled:
                continue
            try:
                readers.append(build_camera(camera, self.settings, queue))
            except SourceError as exc:  # one bad camera must not stop the others
                log.error("camera %s skipped: %s", camera.name, exc)
        return readers


def cameras_from_sources(sources: list[str], loop: bool) -> list[dict[str, Any]]:
    """--source arguments as camera entries, named after the file or host."""
    cameras = []
    used: set[str] = set()
    for i, source in enumerate(sources, start=1):
        stem = Path(source.split("?")[0].rstrip("/")).stem if "://" not in source else ""
        base = "".join(ch if ch.isalnum() or ch in "_-." else "-" for ch in stem)[:48] or f"cam{i}"
        name = base
        while name in used:
            name = f"{base}-{i}"
        used.add(name)
        cameras.append({"name": name, "url": source, "loop": loop})
    return cameras


def install_signal_handlers(service: Service) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping capture, draining, closing open events", signum)
        service.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
