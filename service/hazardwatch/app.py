"""The composition root of `hazardwatch run` (`Service`): the camera fleet
(capture/fleet.py) + a local queue + the CLIP worker + the events side (events_side.py),
in one process. The distributed roles are in roles.py.

Components come from settings in components.py; stages start in data-flow order and
stop in reverse, draining what is in flight so no event is left open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2

from hazardwatch.capture.fleet import CameraFleet
from hazardwatch.capture.latest import LatestFrames
from hazardwatch.capture.reader import CameraReader, ReaderState
from hazardwatch.components import (
    EncoderFactory,
    build_worker,
    camera_builder,
    file_bank,
    load_encoder,
    location_of,
    reload_cameras,
    stop_timeout_s,
)
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.errors import HazardwatchError
from hazardwatch.events_side import Host, hosted
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.records import (
    EventUpdate,
    GatedFrame,
)
from hazardwatch.scoring.bank_source import DatabaseBank
from hazardwatch.search.embedder import WorkerEmbedder
from hazardwatch.settings import Location, Settings
from hazardwatch.status import LocalStatus
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
    """`hazardwatch run`; `run` blocks until the sources end or `stop` is called."""

    def __init__(
        self,
        settings: Settings,
        encoder_factory: EncoderFactory = load_encoder,
        event_listeners: list[Callable[[EventUpdate], None]] | None = None,
        reload_settings: Callable[[], Settings] | None = None,
    ):
        """`event_listeners` hear every stored event update (embedding, benchmarks);
        `reload_settings` reads the configuration again (SIGHUP, `request_reload`)."""
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
        with hosted(settings, "run", self._location_of, self._event_listeners) as host:
            return self._pipeline(host, started)

    def _pipeline(self, host: Host, started: float) -> RunSummary:
        """The camera fleet, the local queue, the CLIP worker and the events side, in one
        process."""
        settings, events, view, api_state = self.settings, host.events, host.view, host.api
        repository, metrics = events.repository, events.metrics
        encoder = self._encoder_factory(settings)
        # The bank an admin edited through the API, else the file (scoring/bank_source.py).
        banks = api_state.banks = DatabaseBank(repository.banks, file_bank(settings))
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
        worker = build_worker(settings, encoder, queue, events.on_scored, metrics, banks)
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
        api_state.latest_frame = LatestFrames(fleet).jpeg
        view.queue = queue
        view.stale_by_camera = worker.stats.stale_by_camera
        view.writer = events.writer
        api_state.worker = worker
        api_state.embedder = WorkerEmbedder(worker)
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

    def _apply_reload(self, fleet: CameraFleet, queue: LocalQueue[GatedFrame]) -> None:
        self.settings = reload_cameras(fleet, self.settings, self._reload_settings, queue)

    def _location_of(self, camera: str) -> Location | None:
        """The camera's location in the running configuration (a reload may change it)."""
        return location_of(self.settings, camera)


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
