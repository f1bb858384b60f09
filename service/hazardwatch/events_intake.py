"""The events role's intake of the partitions it holds: a scores consumer per partition,
all feeding one events side (events_side.py).

The events side is built when the first partition is taken (a standby builds nothing:
its API serves from the database), with the states and open events of that partition's
cameras; each partition taken later brings its cameras' states, score times and open
events, read from the database after the instance that had them let them go. A
partition given back stops its consumer, hands its cameras over (states saved, open
events left open for the next owner) and is released only once all of that is stored.

Before anything of a partition is read, its next fencing token is drawn from the database
(storage/fences.py): the event writer's event and camera-state writes of its cameras carry
it (`fence_of`), so a previous owner paused past its lease writes nothing behind this one.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy.typing as npt

from hazardwatch.api.state import ApiState
from hazardwatch.capture.fleet import NoCameras
from hazardwatch.detect.detector import REDELIVERED_S
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.events_side import EventsSide
from hazardwatch.handoff.intake import ScoresConsumer
from hazardwatch.handoff.lease import Lease
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.scores import ScoresLayout, ScoresSource
from hazardwatch.metrics import PipelineView
from hazardwatch.scoring.bank import BankVersions
from hazardwatch.settings import Settings
from hazardwatch.storage.fences import Fence

log = logging.getLogger(__name__)
HAND_OVER_S = 30.0  # a partition given back waits this long for its frames to be stored


class EventsIntake:
    """`start(k, lease)` / `stop(k, consumer)` for `Partitions`, and `finish` at the end."""

    def __init__(
        self,
        settings: Settings,
        events: EventsSide,
        api: ApiState,
        view: PipelineView,
        link: BrokerLink,
        layout: ScoresLayout,
        banks: BankVersions,
    ) -> None:
        self.settings = settings
        self.events = events
        self.api = api
        self.view = view
        self.link = link
        self.layout = layout
        self.banks = banks
        self.stage: DetectorStage | None = None
        self._lock = threading.Lock()  # one partition starts or stops at a time
        # Shared by every partition's consumer (their cameras are apart): the metrics.
        self.lost_by_camera: collections.Counter[str] = collections.Counter()
        self.late_by_camera: collections.Counter[str] = collections.Counter()
        self.frames_by_camera: collections.Counter[str] = collections.Counter()
        self.unstored = 0
        # What the API teaches a camera through once the stage is built (the verdict
        # router: the owner's detector, here or in another instance).
        self.route_verdicts: Callable[[str, npt.NDArray[Any]], int] | None = None
        metrics = events.metrics
        for k in range(layout.partitions):
            metrics.scores_owner.labels(str(k)).set(0)
        self._fences: dict[int, Fence] = {}  # the newest token drawn, per partition taken
        events.writer.fence_of = self.fence_of

    def fence_of(self, camera: str) -> Fence | None:
        return self._fences.get(self.layout.partition_of(camera))

    def _belongs(self, k: int) -> Callable[[str], bool]:
        return lambda camera: self.layout.partition_of(camera) == k

    def _owns_first(self, k: int) -> Callable[[str], bool] | None:
        """The cameras of the first partition taken (None: one partition, all of them)."""
        return None if self.layout.partitions == 1 else self._belongs(k)

    def start(self, k: int, lease: Lease) -> ScoresConsumer:
        with self._lock:
            events = self.events
            # Drawn before its states are read: a write of the last owner's still in its
            # transaction commits first (and is read), any later one is refused.
            self._fences[k] = events.repository.fences.take(k, lease.holder)
            if self.stage is None:
                model = self.settings.scoring.model
                self.stage = events.build(
                    self.api, NoCameras(), model, self._owns_first(k), lease.handed_over,
                    REDELIVERED_S,
                )  # fmt: skip
                if self.route_verdicts is not None:  # build pointed the API at the stage
                    self.api.learn_normal = self.route_verdicts
                self.view.writer = events.writer
                self.view.lost_by_camera = self.lost_by_camera
                self.view.late_by_camera = self.late_by_camera
                self.view.handled_by_camera = self.frames_by_camera
                events.start()
            else:
                events.take_cameras(self._belongs(k), lease.handed_over)
            metrics = events.metrics
            try:
                source = ScoresSource(
                    self.link,
                    self.layout,
                    self.banks.get,
                    metrics.broker_malformed.labels(self.layout.consumer_of(k)).inc,
                    partition=k,
                )
            except Exception:  # the broker away: its cameras let go again, its lease too
                self.stage.hand_over(self._belongs(k))
                raise
            consumer = ScoresConsumer(
                source,
                events.on_scored,
                self.settings.broker.reorder_window_s,
                stored=events.writer,
                may_consume=lease.current,
            )
            consumer.lost_by_camera = self.lost_by_camera
            consumer.late_by_camera = self.late_by_camera
            consumer.frames_by_camera = self.frames_by_camera
            consumer.start()
            metrics.scores_owner.labels(str(k)).set(1)
            return consumer

    def stop(self, k: int, consumer: ScoresConsumer) -> None:
        """Partition k given back: consumed up to here, handed over, stored, acked."""
        with self._lock:
            if not consumer.stop(HAND_OVER_S):
                log.error("partition %d: its consumer did not stop in %.0f s", k, HAND_OVER_S)
            assert self.stage is not None
            cameras = self.stage.hand_over(self._belongs(k))
            if not self.events.stored(HAND_OVER_S):
                log.error(
                    "partition %d: not all of it in the database after %.0f s (%d write(s) "
                    "spooled); handed over anyway: the next owner may read older camera "
                    "states until the spool is stored",
                    k,
                    HAND_OVER_S,
                    self.events.writer.spooled,
                )
            unstored = consumer.settle()
            self.unstored += unstored
            self.events.metrics.scores_owner.labels(str(k)).set(0)
            log.info(
                "partition %d handed over: %d camera(s), %d frame(s) left to the broker",
                k,
                len(cameras),
                unstored,
            )

    def finish(self, consumers: Mapping[int, ScoresConsumer]) -> None:
        """The end: the consumers of the partitions still held stopped, what is open
        closed, what is stored acked."""
        with self._lock:
            for k, consumer in consumers.items():
                if not consumer.stop(30):
                    log.error("partition %d: its consumer did not stop in 30 s", k)
            if self.stage is not None:
                self.events.finish()
            for consumer in consumers.values():
                self.unstored += consumer.settle()

    def learn_normal(self) -> Callable[[str, npt.NDArray[Any]], int] | None:
        """This instance's detector's way to learn a sight (None before it has one)."""
        return self.stage.learn_normal if self.stage is not None else None

    @property
    def frames(self) -> int:
        return sum(self.frames_by_camera.values())

    @property
    def lost(self) -> int:
        return sum(self.lost_by_camera.values())

    @property
    def late(self) -> int:
        return sum(self.late_by_camera.values())
