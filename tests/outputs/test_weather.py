"""Weather at events: a real local HTTP server answering in Open-Meteo's format."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hazardwatch.cli import main
from hazardwatch.metrics import Metrics
from hazardwatch.outputs.weather import (
    CircuitBreaker,
    WeatherClient,
    WeatherEnricher,
    WeatherUnavailable,
    describe,
    parse_current,
)
from hazardwatch.records import EventRecord, EventUpdate, Weather, WeatherLink
from hazardwatch.settings import Location, WeatherSettings
from tests.helpers import wait_for

T = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
HERE = Location(lat=52.52, lon=13.41)
RAIN = {
    "latitude": 52.52, "longitude": 13.419998, "timezone": "GMT",
    "current_units": {"time": "iso8601", "temperature_2m": "°C", "weather_code": "wmo code"},
    "current": {"time": "2026-11-22T17:45", "interval": 900, "temperature_2m": 3.4,
                "precipitation": 0.6, "wind_speed_10m": 17.3, "visibility": 8400.0,
                "weather_code": 61},
}  # fmt: skip


class OpenMeteo:
    """A local forecast endpoint; `mode` picks the answer: ok, slow, 500, malformed, odd."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 3.0
        self.requests: list[dict[str, list[str]]] = []
        self.payload: dict[str, Any] = RAIN
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(parse_qs(urlsplit(self.path).query))
                if owner.mode == "slow":
                    time.sleep(owner.delay_s)
                if owner.mode == "500":
                    self._send(500, b'{"error": true, "reason": "boom"}')
                elif owner.mode == "malformed":
                    self._send(200, b'{"current": {"time": "2026-11-22T17:45", "weather_')
                elif owner.mode == "odd":
                    self._send(200, json.dumps({"current": {"time": "x"}}).encode())
                else:
                    self._send(200, json.dumps(owner.payload).encode())

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/forecast"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def meteo() -> Iterator[OpenMeteo]:
    server = OpenMeteo()
    yield server
    server.stop()


def settings(url: str, **extra: Any) -> WeatherSettings:
    return WeatherSettings(**{"base_url": url, "timeout_s": 1.0, **extra})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "clear sky"), (45, "fog"), (61, "slight rain"), (75, "heavy snow fall"),
     (99, "thunderstorm with heavy hail"), (42, "unknown weather (WMO code 42)")],
)  # fmt: skip
def test_wmo_codes_read_as_text(code: int, text: str) -> None:
    assert describe(code) == text


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ([], "no 'current' object"),
        ({"current": {"time": "2026-11-22T17:45"}}, "weather_code' is None"),
        ({"current": {"time": "2026-11-22T17:45", "weather_code": 61.5}}, "not a WMO code"),
        ({"current": {"weather_code": 3}}, "'current.time' is missing"),
        ({"current": {"time": "soon", "weather_code": 3}}, "not a time"),
        ({"current": {"time": "2026-11-22T17:45", "weather_code": 3, "precipitation": "x"}},
         "'current.precipitation' is 'x'"),
    ],
)  # fmt: skip
def test_bad_answers_name_the_problem(payload: Any, error: str) -> None:
    with pytest.raises(WeatherUnavailable, match=error.replace("(", r"\(")):
        parse_current(payload)


def test_a_good_answer_is_read_and_cached(meteo: OpenMeteo) -> None:
    metrics, clock = Metrics(), Clock()
    client = WeatherClient(settings(meteo.url, cache_s=600), metrics=metrics, clock=clock)
    first = client.current(HERE)
    assert first == Weather(61, "slight rain", 3.4, 0.6, 17.3, 8400.0,
                            datetime(2026, 11, 22, 17, 45, tzinfo=UTC))  # fmt: skip
    asked = meteo.requests[0]
    assert asked["latitude"] == ["52.52"] and asked["longitude"] == ["13.41"]
    assert "weather_code" in asked["current"][0] and "visibility" in asked["current"][0]
    clock.now += 599
    assert client.current(Location(lat=52.521, lon=13.409)) == first  # same ~1 km cell
    assert len(meteo.requests) == 1
    clock.now += 2
    client.current(HERE)
    assert len(meteo.requests) == 2  # the cache expired
    counts = {s.labels["outcome"]: s.value for s in metrics.weather_lookups.collect()[0].samples
              if s.name.endswith("_total")}  # fmt: skip
    assert counts == {"ok": 2.0, "cache_hit": 1.0}
    client.close()


def test_visibility_is_optional(meteo: OpenMeteo) -> None:
    meteo.payload = {"current": {k: v for k, v in RAIN["current"].items() if k != "visibility"}}
    weather = WeatherClient(settings(meteo.url)).current(HERE)
    assert weather.visibility_m is None and weather.text == "slight rain"


@pytest.mark.parametrize(
    ("mode", "error", "outcome"),
    [("slow", "no answer within 1 s", "timeout"),
     ("500", "answered HTTP 500", "error"),
     ("malformed", "not JSON", "error"),
     ("odd", "weather_code", "error")],
)  # fmt: skip
def test_failures_are_errors_with_reasons_and_counted(
    meteo: OpenMeteo, mode: str, error: str, outcome: str
) -> None:
    meteo.mode, metrics = mode, Metrics()
    client = WeatherClient(settings(meteo.url), metrics=metrics)
    started = time.monotonic()
    with pytest.raises(WeatherUnavailable, match=error):
        client.current(HERE)
    assert time.monotonic() - started < 2.5  # the timeout holds
    assert metrics.weather_lookups.labels(outcome)._value.get() == 1


def test_no_server_at_all_is_an_error_not_a_crash() -> None:
    client = WeatherClient(settings("http://127.0.0.1:9/v1/forecast"))
    with pytest.raises(WeatherUnavailable, match="request failed: ConnectError"):
        client.current(HERE)


def test_the_breaker_opens_after_repeated_failures_and_recovers(meteo: OpenMeteo) -> None:
    meteo.mode, clock, metrics = "500", Clock(), Metrics()
    client = WeatherClient(
        settings(meteo.url, failures_to_open=3, open_s=60), metrics=metrics, clock=clock
    )
    for _ in range(3):
        with pytest.raises(WeatherUnavailable, match="HTTP 500"):
            client.current(HERE)
    assert client.breaker.state == "open"
    with pytest.raises(WeatherUnavailable, match="circuit breaker open"):
        client.current(HERE)
    assert len(meteo.requests) == 3  # not asked while open
    clock.now += 61
    assert client.breaker.state == "half_open"
    with pytest.raises(WeatherUnavailable, match="HTTP 500"):  # the one trial fails
        client.current(HERE)
    with pytest.raises(WeatherUnavailable, match="circuit breaker open"):
        client.current(HERE)
    clock.now += 61
    meteo.mode = "ok"
    assert client.current(HERE).code == 61  # the trial succeeds: closed again
    assert client.breaker.state == "closed" and len(meteo.requests) == 5
    assert metrics.weather_lookups.labels("breaker_open")._value.get() == 2


def test_breaker_counts_failures_in_a_row_only() -> None:
    breaker = CircuitBreaker(2, 10, clock=Clock())
    assert not breaker.failure()
    breaker.success()
    assert not breaker.failure()  # the success reset the count
    assert breaker.failure() and breaker.state == "open" and not breaker.allow()


# ---------------------------------------------------------------------------- enricher


def update(kind: str, uuid: str = "e1", camera: str = "gate") -> EventUpdate:
    record = EventRecord(uuid, camera, "traffic_accident", "critical",
                         "closed" if kind == "ended" else "open", T, T, 0.9, 0.8,
                         ended_at=T if kind == "ended" else None)  # fmt: skip
    return EventUpdate(kind, record, None, None)


def enricher(url: str, **extra: Any) -> tuple[WeatherEnricher, list[WeatherLink]]:
    late: list[WeatherLink] = []
    client = WeatherClient(settings(url, **extra))
    located = {"gate": HERE}
    weather = WeatherEnricher(client, located.get, late.append)
    weather.start()
    return weather, late


def test_weather_arriving_late_updates_the_event_and_rides_on_its_later_writes(
    meteo: OpenMeteo,
) -> None:
    weather, late = enricher(meteo.url)
    try:
        started = weather.enrich(update("started"))
        assert started.record.weather is None  # nothing known yet: the event goes on without
        assert wait_for(lambda: len(late) == 1, 5)
        assert late[0].uuid == "e1" and late[0].weather.text == "slight rain"
        assert weather.enrich(update("updated")).record.weather == late[0].weather
        assert weather.enrich(update("ended")).record.weather == late[0].weather
        # The next event there starts with it at once, from the cache.
        assert weather.enrich(update("started", "e2")).record.weather == late[0].weather
        assert len(meteo.requests) == 1 and len(late) == 1
    finally:
        assert weather.stop()


def test_cameras_without_a_location_get_none(meteo: OpenMeteo) -> None:
    weather, late = enricher(meteo.url)
    try:
        assert weather.enrich(update("started", camera="yard")).record.weather is None
        time.sleep(0.3)
        assert meteo.requests == [] and late == []
    finally:
        weather.stop()


def test_weather_that_never_comes_leaves_the_event_without_it(meteo: OpenMeteo) -> None:
    meteo.mode = "500"
    weather, late = enricher(meteo.url)
    try:
        weather.enrich(update("started"))
        assert wait_for(lambda: len(meteo.requests) == 1, 5)
        time.sleep(0.2)
        assert late == [] and weather.enrich(update("ended")).record.weather is None
    finally:
        weather.stop()


def test_an_outage_never_slows_events(meteo: OpenMeteo) -> None:
    """The weather server hangs (each request runs into the 1 s timeout): 200 event updates
    of 50 events still pass the enricher in microseconds each."""
    meteo.mode, meteo.delay_s = "slow", 5.0
    weather, late = enricher(meteo.url)
    try:
        durations = []
        for i in range(50):
            for kind in ("started", "updated", "updated", "ended"):
                begun = time.perf_counter()
                weather.enrich(update(kind, uuid=f"e{i}"))
                durations.append(time.perf_counter() - begun)
        durations.sort()
        assert durations[-1] < 0.05 and durations[len(durations) // 2] < 0.001
        assert late == []
    finally:
        began = time.monotonic()
        weather.stop()
        assert time.monotonic() - began < 2.5  # shutdown waits at most for one timeout


# ---------------------------------------------------------------------------- command


def weather_config(tmp_path: Path, url: str, location: bool = True) -> Path:
    where = "\n    location: {lat: 52.52, lon: 13.41}" if location else ""
    path = tmp_path / "hw.yaml"
    path.write_text(
        f"cameras:\n  - name: gate\n    url: /dev/null{where}\n"
        f"weather:\n  base_url: {url}\n  timeout_s: 1\n"
    )
    return path


def test_weather_command_prints_what_an_event_would_get(
    meteo: OpenMeteo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = weather_config(tmp_path, meteo.url)
    assert main(["weather", "--camera", "gate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "camera gate at 52.52, 13.41: slight rain (WMO 61)" in out
    assert "temperature: 3.4 °C" in out and "visibility: 8400 m" in out
    assert "observed at: 2026-11-22T17:45:00Z" in out


@pytest.mark.parametrize(
    ("mode", "location", "camera", "code", "says"),
    [("500", True, "gate", 1, "no weather for camera gate from http://127.0.0.1"),
     ("slow", True, "gate", 1, "no answer within 1 s"),
     ("ok", False, "gate", 1, "camera gate has no location: add `location: {lat: …, lon: …}`"),
     ("ok", True, "door", 2, "--camera 'door' is not configured; cameras: gate")],
)  # fmt: skip
def test_weather_command_says_why_not(
    meteo: OpenMeteo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mode: str, location: bool, camera: str, code: int, says: str,
) -> None:  # fmt: skip
    meteo.mode = mode
    path = weather_config(tmp_path, meteo.url, location)
    assert main(["weather", "--camera", camera, "--config", str(path)]) == code
    assert says in capsys.readouterr().err
