"""One lifecycle for every component that owns a thread: `start()`, then `stop(timeout)`,
which returns True once the component's threads have ended.

A composition root (`app.py` for `hazardwatch run`, `roles.py` for the others) starts
its components in data-flow order and stops them in reverse, so nothing is stopped while
something upstream still feeds it. Components that stop in two phases (many readers at
once) also offer a non-blocking `request_stop()`. The roots themselves stop on SIGINT /
SIGTERM and reload on SIGHUP where they can (`install_signal_handlers`).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any, Protocol

log = logging.getLogger(__name__)
FAILED_TICK_PAUSE_S = 1.0


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float) -> bool:
        """Stop within `timeout` seconds; True when every thread it owns has ended."""
        ...


class Periodic:
    """A component that runs `tick()` on its own thread at once and then every
    `interval_s` (0: back to back, for a tick that waits on its own), and `finish()` once
    when stopped. A tick that raises is logged and the next one runs on time, or after
    `FAILED_TICK_PAUSE_S` when that is later."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def tick(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last tick (stopped)."""

    def _run(self) -> None:
        while True:
            wait = self.interval_s
            try:
                self.tick()
            except Exception:
                wait = max(wait, FAILED_TICK_PAUSE_S)  # a tick that keeps failing: no log flood
                log.exception("%s: periodic work failed; trying again in %g s",
                              self._thread.name, wait)  # fmt: skip
            if self._stop.wait(wait):
                break
        self.finish()


if TYPE_CHECKING:  # mypy checks that every thread-owning class keeps the lifecycle
    from hazardwatch.api.server import ApiServer
    from hazardwatch.capture.native_log import NativeStderr
    from hazardwatch.capture.reader import CameraReader
    from hazardwatch.capture.recorder import SegmentRecorder
    from hazardwatch.handoff.embedding import EmbeddingResponder
    from hazardwatch.handoff.intake import ScoresConsumer
    from hazardwatch.handoff.lease import LeaseKeeper
    from hazardwatch.handoff.link import BrokerLink
    from hazardwatch.handoff.partitions import Partitions
    from hazardwatch.handoff.status import StatusBoard, StatusPublisher
    from hazardwatch.handoff.verdicts import VerdictRouter
    from hazardwatch.outputs.clips import ClipRecorder
    from hazardwatch.outputs.mqtt import MqttPublisher
    from hazardwatch.outputs.retention import MediaJanitor
    from hazardwatch.outputs.weather import WeatherEnricher
    from hazardwatch.outputs.webhook import WebhookSender
    from hazardwatch.outputs.writer import EventWriter
    from hazardwatch.scoring.bank_source import BankPublisher
    from hazardwatch.scoring.worker import ScoringWorker
    from hazardwatch.search.service import KeyframeSearch

    COMPONENTS: tuple[type[Component], ...] = (
        ApiServer,
        NativeStderr,
        CameraReader,
        SegmentRecorder,
        BrokerLink,
        ScoresConsumer,
        LeaseKeeper,
        EmbeddingResponder,
        VerdictRouter,
        Partitions,
        StatusBoard,
        StatusPublisher,
        ClipRecorder,
        MqttPublisher,
        MediaJanitor,
        WeatherEnricher,
        WebhookSender,
        EventWriter,
        ScoringWorker,
        KeyframeSearch,
        BankPublisher,
    )


class Stoppable(Protocol):
    """A composition root: `stop` drains and ends its `run`."""

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
