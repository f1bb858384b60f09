"""Every Prometheus metric of hazardwatch, defined once.

Histograms and event counters are observed where things happen (`Metrics`). Per-camera
counters and gauges that the pipeline already keeps (frames read, reconnects, queue depth)
are read from the live components at scrape time by `PipelineCollector`, so there is one
source of truth and nothing to keep in sync. Labels carry only configured camera names,
class names and fixed words — never a URL or a credential.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hazardwatch.capture.fleet import Cameras, NoCameras
from hazardwatch.motion.stage import MotionStage
from hazardwatch.records import CameraState, CameraStatus
from hazardwatch.status import LocalStatus, RoleStatus

if TYPE_CHECKING:
    from hazardwatch.capture.reader import CameraReader
    from hazardwatch.handoff.queue import LocalQueue
    from hazardwatch.storage.spool import Spool

PREFIX = "hazardwatch_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Fine below a second, where the reorder window and batching live.
FRAME_LATENCY_BUCKETS = (
    *(round(0.05 * i, 2) for i in range(1, 21)),
    1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


Role = Literal["run", "capture", "worker", "events"]
# Which groups of inline metrics each process exports: a series a process never changes
# is noise on its /metrics (a capture node has no spool, no model and no events).
_GROUPS: dict[Role, frozenset[str]] = {
    "run": frozenset({"scoring", "events"}),
    "capture": frozenset(),
    "worker": frozenset({"scoring", "broker"}),
    "events": frozenset({"events", "broker"}),
}


class Metrics:
    """The metrics observed inline, on a registry of their own (one per service). Every
    attribute exists in every role; those a role does not export are observed into a
    metric on no registry."""

    def __init__(self, registry: CollectorRegistry | None = None, role: Role = "run") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.role = role
        groups = _GROUPS[role]
        r = self.registry
        scoring = r if "scoring" in groups else None
        events = r if "events" in groups else None
        broker = r if "broker" in groups else None
        # process_resident_memory_bytes, process_open_fds, CPU seconds (Linux /proc).
        ProcessCollector(registry=r)
        self.threads = Gauge(PREFIX + "threads", "Python threads alive in the service.", registry=r)
        self.threads.set_function(threading.active_count)
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Version and model of the running service.",
            ["version", "model"],
            registry=r,
        )
        self.batch_size = Histogram(
            PREFIX + "inference_batch_size",
            "Frames per CLIP batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=scoring,
        )
        self.inference_seconds = Histogram(
            PREFIX + "inference_seconds",
            "Seconds per CLIP batch (preprocess + encode + score).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=scoring,
        )
        self.frames_scored = Counter(
            PREFIX + "frames_scored",
            "Frames scored by the CLIP worker.",
            ["camera"],
            registry=scoring,
        )
        self.frames_rejected = Counter(
            PREFIX + "frames_rejected", "Frames the worker skipped as unusable.", registry=scoring
        )
        self.event_latency_seconds = Histogram(
            PREFIX + "event_latency_seconds",
            "Seconds from capture of the deciding frame to the event row written.",
            buckets=LATENCY_BUCKETS,
            registry=events,
        )
        self.frame_latency_seconds = Histogram(
            PREFIX + "frame_latency_seconds",
            "Seconds from a frame's receipt by its camera reader to the detector stage "
            "(through the worker; across the broker in the distributed roles).",
            buckets=FRAME_LATENCY_BUCKETS,
            registry=events,
        )
        self.broker_malformed = Counter(
            PREFIX + "broker_malformed",
            "Messages on a hazardwatch subject that were not a well-formed envelope of a "
            "known version (terminated, never redelivered), per consumer.",
            ["consumer"],
            registry=broker,
        )
        self.events = Counter(
            PREFIX + "events",
            "Hazard events started.",
            ["camera", "class_name", "severity"],
            registry=events,
        )
        self.db_write_seconds = Histogram(
            PREFIX + "db_write_seconds",
            "Seconds per database write (event or score batch).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=events,
        )
        self.event_sink_failures = Counter(
            PREFIX + "event_sink_failures",
            "Event updates a sink (writer, clips, weather) raised on; the other sinks still "
            "heard them (outputs/fanout.py).",
            ["sink"],
            registry=events,
        )
        self.db_write_failures = Counter(
            PREFIX + "db_write_failures",
            "Database writes that failed (and were spooled).",
            registry=events,
        )
        self.alerts = Counter(
            PREFIX + "alerts",
            "Alerts by channel and outcome.",
            ["channel", "outcome"],
            registry=events,
        )
        self.alert_latency_seconds = Histogram(
            PREFIX + "alert_latency_seconds",
            "Seconds from capture of the deciding frame to the alert accepted by the receiver.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=events,
        )
        self.weather_lookups = Counter(
            PREFIX + "weather_lookups",
            "Weather lookups for events by outcome: ok, cache_hit, timeout, error (HTTP "
            "status, bad answer, connection), breaker_open (not asked).",
            ["outcome"],
            registry=events,
        )
        self.media_deleted = Counter(
            PREFIX + "media_deleted_files",
            "Snapshots and clips removed by retention.",
            ["reason"],
            registry=events,
        )
        self.media_bytes = Gauge(
            PREFIX + "media_bytes", "Bytes of snapshots and clips on disk.", registry=events
        )
        self.scores_owner = Gauge(
            PREFIX + "scores_owner",
            "Per partition of the scores (broker.partitions): 1 while this events service "
            "holds its lease and consumes it, 0 while another instance does or none; events "
            "role only.",
            ["partition"],
            registry=r if role == "events" else None,
        )
        self.camera_learning = Gauge(
            PREFIX + "camera_learning",
            "1 while a camera never calibrated learns its normal (detector.learning_s), 0 "
            "once it has calibrated itself.",
            ["camera"],
            registry=events,
        )

        self.keyframes = Gauge(
            PREFIX + "keyframes",
            "Keyframes kept for search (in the vector index), by camera.",
            ["camera"],
            registry=events,
        )
        self.keyframe_bytes = Gauge(
            PREFIX + "keyframe_bytes",
            "Bytes of keyframes by camera: thumbnails on disk and float16 vectors in the database.",
            ["camera"],
            registry=events,
        )
        self.keyframes_dropped = Counter(
            PREFIX + "keyframes_dropped",
            "Keyframes not kept: the writer's queue was full or a thumbnail could not be written.",
            registry=events,
        )
        self.search_seconds = Histogram(
            PREFIX + "search_seconds",
            "Seconds to answer a search (embedding the query, the index, the rows).",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=events,
        )

    def set_learning(self, camera: str, learning: bool) -> None:
        self.camera_learning.labels(camera).set(1.0 if learning else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WriterStatus(Protocol):
    """The event writer as the collector reads it (`outputs.writer.EventWriter`): its open
    events, its queue and the spool behind it."""

    spool: Spool | None

    @property
    def open_events(self) -> int: ...

    @property
    def backlog(self) -> int: ...

    @property
    def max_backlog(self) -> int: ...

    @property
    def dropped_scores(self) -> int: ...


@dataclass
class PipelineView:
    """What the collector reads at scrape time; filled in as the service starts."""

    cameras: Cameras = field(default_factory=NoCameras)  # readers, and cameras never run
    queue: LocalQueue[Any] | None = None
    stale_by_camera: Mapping[str, int] = field(default_factory=dict)  # too old to score
    # Distributed roles: frames handed to the broker that never reached the detector,
    # those that came too late for the reorder window, and those the detector handled.
    lost_by_camera: Mapping[str, int] = field(default_factory=dict)
    late_by_camera: Mapping[str, int] = field(default_factory=dict)
    handled_by_camera: Mapping[str, int] = field(default_factory=dict)
    remote: RoleStatus | None = None  # the events role: the roles' status bucket
    writer: WriterStatus | None = None

    def statuses(self) -> list[CameraStatus]:
        """Every camera's status: as capture nodes report them (the events role), or
        from this process's readers."""
        source = self.remote if self.remote is not None else LocalStatus(self.cameras)
        return source.cameras()


def _intake(v: PipelineView) -> Iterator[Metric]:
    """The events role's counts of what came through the broker, per camera: every camera
    a capture node reports has its series from the start (at 0), so rates and alerts work
    before the first loss."""
    reported = {c.name for c in v.remote.cameras()} if v.remote is not None else set()
    for name, text, counts in (
        (
            "frames_lost",
            "Frames a capture node handed to the broker that never reached the events "
            "service's detector, per camera: expired unscored (no worker in time), dropped "
            "by a worker as stale or malformed, or dropped from a full capture buffer; a "
            "frame still missing after 30 s counts (distributed roles).",
            v.lost_by_camera,
        ),
        (
            "frames_late",
            "Frames that reached the events service after a later frame of their camera "
            "had left the reorder window: dropped, never lost (raise broker.reorder_window_s "
            "when it grows).",
            v.late_by_camera,
        ),
        (
            "frames_handled",
            "Scored frames the events service's detector handled, per camera.",
            v.handled_by_camera,
        ),
    ):
        family = CounterMetricFamily(PREFIX + name, text, labels=["camera"])
        for camera in sorted(reported | set(counts)):
            family.add_metric([camera], float(counts.get(camera, 0)))
        yield family


class PipelineCollector(Collector):
    """Per-camera counters and live gauges straight from the running components; a
    capture node (`events=False`) has no queue, writer, spool or events to report."""

    def __init__(self, view: PipelineView, events: bool = True) -> None:
        self.view = view
        self.events = events

    def describe(self) -> Iterable[Metric]:
        return []  # values change with the cameras present; nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        v = self.view
        readers = v.cameras.readers
        yield _counter(
            "frames_read", "Frames decoded per camera.", readers, lambda r: r.stats.frames_read
        )
        yield _drops(v)
        if v.remote is not None:  # the events role
            yield from _intake(v)
        yield _counter(
            "frames_motion",
            "Frames in which the gate saw motion, per camera.",
            readers,
            lambda r: r.sink.motion_frames if isinstance(r.sink, MotionStage) else 0,
        )
        yield _counter(
            "camera_reconnects",
            "Reconnect attempts per camera.",
            readers,
            lambda r: r.stats.reconnects,
        )
        up = GaugeMetricFamily(
            PREFIX + "camera_up", "1 while the camera delivers frames.", labels=["camera"]
        )
        age = GaugeMetricFamily(
            PREFIX + "camera_last_frame_age_seconds",
            "Seconds since the camera's last frame (absent before the first).",
            labels=["camera"],
        )
        fps = GaugeMetricFamily(PREFIX + "camera_fps", "Measured frame rate.", labels=["camera"])
        recording = GaugeMetricFamily(
            PREFIX + "camera_recording",
            "1 while the camera's full-rate recorder runs, 0 while it is down (absent for "
            "cameras that are not recorded).",
            labels=["camera"],
        )
        for status in v.statuses():
            up.add_metric([status.name], 1.0 if status.delivering else 0.0)
            if status.state is CameraState.INVALID:
                continue  # never ran: no rate, no frame, no recorder
            fps.add_metric([status.name], status.fps)
            if status.last_frame_age_s is not None:
                age.add_metric([status.name], max(0.0, status.last_frame_age_s))
            if status.recording is not None:
                running = status.recording.state == "recording"
                recording.add_metric([status.name], 1.0 if running else 0.0)
        yield up
        yield age
        yield fps
        yield recording
        if v.remote is not None:
            nodes = GaugeMetricFamily(
                PREFIX + "nodes",
                "Capture nodes and scoring workers that reported in the status bucket within "
                "its TTL (the events role).",
                labels=["role"],
            )
            nodes.add_metric(["capture"], float(len(v.remote.capture_nodes())))
            nodes.add_metric(["worker"], float(len(v.remote.workers())))
            yield nodes
        if not self.events:
            return
        q = v.queue
        # `is not None`: an empty queue is falsy (it has a length), and still has a size.
        depth = len(q) if q is not None else 0
        yield _gauge("queue_depth", "Frames waiting for the CLIP worker.", depth)
        capacity = q.maxsize if q is not None else 0
        yield _gauge("queue_capacity", "Size of the hand-off queue.", capacity)
        yield from _writer(v.writer)
        yield from _spool(v.writer.spool if v.writer is not None else None)


class DropsCollector(Collector):
    """Only the per-camera drop counters: a worker role, which has no readers, queue or
    writer of its own to report."""

    def __init__(self, view: PipelineView) -> None:
        self.view = view

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield _drops(self.view)


class PublishCollector(Collector):
    """A capture node's hand-off to the broker (`JetStreamSink`'s counts)."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        """`counts()` gives published, failed, retried and dropped."""
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        for key, doc in (
            ("published", "Frames the broker acknowledged (stored once, retries included)."),
            (
                "publish_failed",
                "Frames the broker did not acknowledge within the frame age limit "
                "(scoring.max_frame_age_s): of no use to scoring any more.",
            ),
            (
                "publish_retried",
                "Publishes made again because the broker's ack did not come (an outage).",
            ),
            (
                "publish_dropped",
                "Frames dropped from the capture node's full publish buffer (the broker away "
                "for long).",
            ),
        ):
            yield CounterMetricFamily(
                PREFIX + "frames_" + key, doc, value=float(counts.get(key, 0))
            )


class BrokerCollector(Collector):
    """Consumer lag of the JetStream consumers, read from the broker at scrape time (the
    events role): messages not yet delivered, and delivered but not yet acked."""

    def __init__(self, lag: Callable[[], list[tuple[str, int, int]]]) -> None:
        """`lag()` gives (consumer, pending, ack pending) per consumer; [] when the broker
        cannot be asked (nothing is reported then, rather than a false zero)."""
        self.lag = lag

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            PREFIX + "broker_pending",
            "Messages in a JetStream consumer not yet delivered (frames waiting for a "
            "worker: consumer scoring; scores waiting for the events service: events).",
            labels=["consumer"],
        )
        ack_pending = GaugeMetricFamily(
            PREFIX + "broker_ack_pending",
            "Messages delivered to a consumer and not yet acknowledged.",
            labels=["consumer"],
        )
        for consumer, waiting, unacked in self.lag():
            pending.add_metric([consumer], float(waiting))
            ack_pending.add_metric([consumer], float(unacked))
        yield pending
        yield ack_pending


def _writer(writer: WriterStatus | None) -> Iterator[Metric]:
    yield _gauge(
        "open_events",
        "Hazard events open now.",
        writer.open_events if writer is not None else 0,
    )
    yield _gauge(
        "writer_backlog",
        "Items queued for the event writer.",
        writer.backlog if writer is not None else 0,
    )
    yield _gauge(
        "writer_capacity",
        "Most items the event writer queues (storage.writer_backlog).",
        writer.max_backlog if writer is not None else 0,
    )
    dropped = CounterMetricFamily(
        PREFIX + "writer_dropped",
        "Score samples dropped because the event writer's queue was full (a slow database); "
        "events, clips, states and weather are never dropped: they wait for room.",
        labels=["kind"],
    )
    dropped.add_metric(["scores"], float(writer.dropped_scores if writer is not None else 0))
    yield dropped


def _spool(spool: Spool | None) -> Iterator[Metric]:
    yield _gauge(
        "spool_backlog",
        "Writes waiting in the durable spool (database down).",
        len(spool) if spool is not None else 0,
    )
    yield _gauge(
        "spool_capacity",
        "Most writes the spool keeps (storage.spool_max_items).",
        spool.max_items if spool is not None else 0,
    )
    dropped = CounterMetricFamily(
        PREFIX + "spool_dropped",
        "Writes dropped from a full spool, by kind (scores go first; event or clip means "
        "lost events: raise storage.spool_max_items).",
        labels=["kind"],
    )
    for kind, count in (spool.dropped if spool is not None else {}).items():
        dropped.add_metric([kind], float(count))
    yield dropped


def _drops(view: PipelineView) -> CounterMetricFamily:
    family = CounterMetricFamily(
        PREFIX + "frames_dropped",
        "Frames dropped per camera and reason (fps_limit, bad, queue_full, stale).",
        labels=["camera", "reason"],
    )
    queue_drops = view.queue.dropped_by_key if view.queue is not None else {}
    for r in view.cameras.readers:
        family.add_metric([r.camera, "fps_limit"], float(r.stats.frames_dropped_fps))
        family.add_metric([r.camera, "bad"], float(r.stats.frames_bad))
        family.add_metric([r.camera, "queue_full"], float(queue_drops.get(r.camera, 0)))
        family.add_metric([r.camera, "stale"], float(view.stale_by_camera.get(r.camera, 0)))
    # A worker role has no readers: the cameras it dropped frames of, as it saw them.
    read = {r.camera for r in view.cameras.readers}
    for camera, count in sorted(view.stale_by_camera.items()):
        if camera not in read:
            family.add_metric([camera, "stale"], float(count))
    return family


def _counter(
    name: str, doc: str, readers: Iterable[CameraReader], value: Callable[[CameraReader], float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, doc, labels=["camera"])
    for reader in readers:
        family.add_metric([reader.camera], float(value(reader)))
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=float(value))
