"""The event fan-out (outputs/fanout.py): one failing sink costs the others nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.fanout import FanOut
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import EventUpdate, Weather
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.outputs.test_writer import T, update

RAIN = Weather(61, "slight rain", 8.0, 0.4, 12.0, None, T)


def broken(update: EventUpdate) -> None:
    raise RuntimeError("clip cutting bug")


def test_a_sink_that_raises_costs_the_writer_nothing(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Clips first and broken: the event row is still stored, the failure logged with the
    event and the sink, and counted (before, the first raising sink stopped the rest and
    the exception reached the detector stage)."""
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    metrics = Metrics()
    writer = EventWriter(Repository(engine), tmp_path / "media", metrics=metrics)
    writer.start()
    fan_out = FanOut([("clips", broken), ("writer", writer.put_event)], metrics=metrics)
    fan_out(update("a", "started", 0))
    fan_out(update("a", "ended", 1))
    assert writer.stop(10)
    stored = Repository(engine).get_event("a")
    assert stored is not None and stored.status == "closed"
    assert fan_out.failures == {"clips": 2, "writer": 0}
    assert 'hazardwatch_event_sink_failures_total{sink="clips"} 2.0' in metrics.render().decode()
    assert "event a (fire_smoke on cam, started): the clips sink failed" in caplog.text
    engine.dispose()


def test_a_failing_enrichment_passes_the_update_on_as_it_came() -> None:
    heard: list[EventUpdate] = []

    def weather(update: EventUpdate) -> EventUpdate:
        if update.kind == "ended":
            raise TimeoutError("weather service")
        return dataclasses.replace(update, record=dataclasses.replace(update.record, weather=RAIN))

    fan_out = FanOut([("writer", heard.append)], enrich=("weather", weather))
    fan_out(update("b", "started", 0))
    fan_out(update("b", "ended", 1))
    assert [u.kind for u in heard] == ["started", "ended"]
    assert heard[0].record.weather == RAIN and heard[1].record.weather is None
    assert fan_out.failures == {"writer": 0, "weather": 1}
