"""One lifecycle for every component that owns a thread: `start()`, then `stop(timeout)`,
which returns True once the component's threads have ended.

A composition root (`app.py` for `hazardwatch run`) starts its components in data-flow
order and stops them in reverse, so nothing is stopped while something upstream still
feeds it. Components that stop in two phases (many readers at once) also offer a
non-blocking `request_stop()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float) -> bool:
        """Stop within `timeout` seconds; True when every thread it owns has ended."""
        ...


if TYPE_CHECKING:  # mypy checks that every thread-owning class keeps the lifecycle
    from hazardwatch.api.server import ApiServer
    from hazardwatch.capture.native_log import NativeStderr
    from hazardwatch.capture.reader import CameraReader
    from hazardwatch.capture.recorder import SegmentRecorder
    from hazardwatch.handoff.jetstream import BrokerLink
    from hazardwatch.outputs.clips import ClipRecorder
    from hazardwatch.outputs.mqtt import MqttPublisher
    from hazardwatch.outputs.retention import MediaJanitor
    from hazardwatch.outputs.weather import WeatherEnricher
    from hazardwatch.outputs.webhook import WebhookSender
    from hazardwatch.outputs.writer import EventWriter
    from hazardwatch.scoring.worker import ScoringWorker

    COMPONENTS: tuple[type[Component], ...] = (
        ApiServer,
        NativeStderr,
        CameraReader,
        SegmentRecorder,
        BrokerLink,
        ClipRecorder,
        MqttPublisher,
        MediaJanitor,
        WeatherEnricher,
        WebhookSender,
        EventWriter,
        ScoringWorker,
    )
