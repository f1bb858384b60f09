"""Where the detector's event updates go: every sink hears every update, whatever another
sink does.

The detector stage decides events on the scoring (or broker-consuming) thread and hands
each update to one `FanOut`. Weather, when it is on, is attached first; then the writer
(the database, and through its listeners the alerts) and the clip recorder each hear it in
turn. One that raises is logged with its traceback and counted
(`hazardwatch_event_sink_failures_total{sink}`) and the others still hear the update: a bug
in clip cutting must not cost an event row, nor a weather bug the event itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from hazardwatch.metrics import Metrics
from hazardwatch.records import EventUpdate

log = logging.getLogger(__name__)

Sink = Callable[[EventUpdate], None]
Enrich = Callable[[EventUpdate], EventUpdate]


class FanOut:
    """Calls each named sink with every update, isolated from one another."""

    def __init__(
        self,
        sinks: Sequence[tuple[str, Sink]],
        enrich: tuple[str, Enrich] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`enrich`: a step that returns the update with more attached (weather); if it
        raises, the update goes on as it came."""
        self.sinks = list(sinks)
        self.enrich = enrich
        self.metrics = metrics
        self.failures: dict[str, int] = {name: 0 for name, _ in self.sinks}
        if enrich is not None:
            self.failures[enrich[0]] = 0

    def __call__(self, update: EventUpdate) -> None:
        if self.enrich is not None:
            name, step = self.enrich
            try:
                update = step(update)
            except Exception:
                self._failed(name, update)
        for name, sink in self.sinks:
            try:
                sink(update)
            except Exception:
                self._failed(name, update)

    def _failed(self, sink: str, update: EventUpdate) -> None:
        record = update.record
        log.exception(
            "event %s (%s on %s, %s): the %s sink failed; the others still hear it",
            record.uuid,
            record.class_name,
            record.camera,
            update.kind,
            sink,
        )
        self.failures[sink] = self.failures.get(sink, 0) + 1
        if self.metrics is not None:
            self.metrics.event_sink_failures.labels(sink).inc()
