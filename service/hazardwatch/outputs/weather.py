"""Weather at each event (seed 003): the conditions at the camera's location when it started.

`WeatherClient` asks an Open-Meteo forecast endpoint for the current conditions
(temperature, precipitation, wind, visibility where the model gives it, the WMO weather
code), with a timeout, a per-location cache and a circuit breaker that stops asking after
repeated failures and tries again after `open_s`.

`WeatherEnricher` keeps all of it off the hot path. On the scoring thread it only looks
things up: an event of a camera with a location gets the conditions already known for
that event or still fresh in the cache, attached to its record before it is stored and
alerted. Otherwise the start queues a lookup for the enricher's own thread; when that
answers, the stored event is updated (`WeatherLink`, through the writer and its spool) and
the event's later writes and alerts carry it. When the weather never comes, the event
stays without it. No event waits for the weather, ever.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from hazardwatch.metrics import Metrics
from hazardwatch.records import EventUpdate, Weather, WeatherLink
from hazardwatch.settings import Location, WeatherSettings

log = logging.getLogger(__name__)

# WMO weather interpretation codes as Open-Meteo documents them.
WMO_CODES: dict[int, str] = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "moderate drizzle",
    55: "dense drizzle",
    56: "light freezing drizzle",
    57: "dense freezing drizzle",
    61: "slight rain",
    63: "moderate rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "heavy freezing rain",
    71: "slight snow fall",
    73: "moderate snow fall",
    75: "heavy snow fall",
    77: "snow grains",
    80: "slight rain showers",
    81: "moderate rain showers",
    82: "violent rain showers",
    85: "slight snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with slight hail",
    99: "thunderstorm with heavy hail",
}
CURRENT = "temperature_2m,precipitation,wind_speed_10m,visibility,weather_code"


def describe(code: int) -> str:
    return WMO_CODES.get(code, f"unknown weather (WMO code {code})")


class WeatherUnavailable(Exception):  # noqa: N818 - reads as what happened
    """No weather now; the message says why (timeout, HTTP status, bad answer, breaker)."""


def parse_current(payload: Any) -> Weather:
    """Open-Meteo's `current` block as a Weather; WeatherUnavailable names what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("current"), dict):
        raise WeatherUnavailable("the answer has no 'current' object")
    current = payload["current"]
    code = current.get("weather_code")
    if isinstance(code, bool) or not isinstance(code, int | float) or code != int(code):
        raise WeatherUnavailable(f"'current.weather_code' is {code!r}, not a WMO code")
    try:
        # Times are GMT unless a timezone was asked for (it is not).
        observed = datetime.fromisoformat(str(current["time"])).replace(tzinfo=UTC)
    except (KeyError, ValueError) as exc:
        raise WeatherUnavailable(f"'current.time' is missing or not a time: {exc}") from None
    return Weather(
        code=int(code),
        text=describe(int(code)),
        temperature_c=_number(current, "temperature_2m"),
        precipitation_mm=_number(current, "precipitation"),
        wind_speed_kmh=_number(current, "wind_speed_10m"),
        visibility_m=_number(current, "visibility"),
        observed_at=observed,
    )


def _number(current: dict[str, Any], key: str) -> float | None:
    value = current.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WeatherUnavailable(f"'current.{key}' is {value!r}, not a number")
    return float(value)


class CircuitBreaker:
    """Closed: requests go out. After `failures_to_open` failures in a row: open, nothing
    goes out for `open_s`. Then one trial request: success closes it, failure reopens it."""

    def __init__(
        self, failures_to_open: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._clock() - self._opened_at >= self.open_s else "open"

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at >= self.open_s:
                self._opened_at = self._clock()  # one trial per wait
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failure(self) -> bool:
        """Count a failure; True when this one opened the breaker."""
        with self._lock:
            self._failures += 1
            if self._failures >= self.failures_to_open:
                opened = self._opened_at is None
                self._opened_at = self._clock()
                return opened
            return False


class WeatherClient:
    """Current conditions per location: cached, with a timeout and a circuit breaker."""

    def __init__(
        self,
        settings: WeatherSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._clock = clock
        self.breaker = CircuitBreaker(settings.failures_to_open, settings.open_s, clock)
        self._cache: OrderedDict[tuple[float, float], tuple[float, Weather]] = OrderedDict()
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=settings.timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def cached(self, location: Location) -> Weather | None:
        """Fresh conditions for `location` from the cache (no I/O), or None."""
        key = _key(location)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or self._clock() - hit[0] > self.settings.cache_s:
            return None
        self._count("cache_hit")
        return hit[1]

    def current(self, location: Location) -> Weather:
        """The conditions now: from the cache, else one request. Raises WeatherUnavailable."""
        cached = self.cached(location)
        if cached is not None:
            return cached
        if not self.breaker.allow():
            self._count("breaker_open")
            raise WeatherUnavailable(
                f"circuit breaker open after {self.settings.failures_to_open} failures in a "
                f"row; next try within {self.settings.open_s:g} s"
            )
        try:
            weather = self._fetch(location)
        except WeatherUnavailable as exc:
            if self.breaker.failure():
                log.warning("weather: circuit breaker opened (%s)", exc)
            raise
        self.breaker.success()
        self._count("ok")
        with self._lock:
            self._cache[_key(location)] = (self._clock(), weather)
            while len(self._cache) > 1024:
                self._cache.popitem(last=False)
        return weather

    def _fetch(self, location: Location) -> Weather:
        params: dict[str, str | float] = {
            "latitude": location.lat,
            "longitude": location.lon,
            "current": CURRENT,
        }
        try:
            response = self._http.get(self.settings.base_url, params=params)
        except httpx.TimeoutException:
            self._count("timeout")
            raise WeatherUnavailable(
                f"no answer within {self.settings.timeout_s:g} s (weather.timeout_s)"
            ) from None
        except httpx.HTTPError as exc:
            self._count("error")
            raise WeatherUnavailable(f"request failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            self._count("error")
            raise WeatherUnavailable(f"the weather service answered HTTP {response.status_code}")
        try:
            return parse_current(response.json())
        except ValueError:
            self._count("error")
            raise WeatherUnavailable("the answer is not JSON") from None
        except WeatherUnavailable:
            self._count("error")
            raise

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.weather_lookups.labels(outcome).inc()


def _key(location: Location) -> tuple[float, float]:
    return round(location.lat, 2), round(location.lon, 2)  # ~1 km: one forecast cell


class WeatherEnricher:
    """Attaches weather to events without ever holding one up (see the module docstring)."""

    def __init__(
        self,
        client: WeatherClient,
        location_of: Callable[[str], Location | None],
        on_late: Callable[[WeatherLink], None],
        *,
        queue_size: int = 256,
    ) -> None:
        """`location_of(camera)`: its location, None for none; `on_late`: store weather
        that arrived after the event's first write (the writer's `put_weather`)."""
        self.client = client
        self.location_of = location_of
        self.on_late = on_late
        self._queue: queue.Queue[tuple[str, Location] | None] = queue.Queue(maxsize=queue_size)
        self._known: dict[str, Weather] = {}  # open events' weather, by uuid
        self._open: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="weather", daemon=True)
        self.dropped = 0
        self.attached_late = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the lookup in progress (queued ones are abandoned: their events stay
        without weather, as when the service is down)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)
        self.client.close()
        return not self._thread.is_alive()

    # Called on the scoring thread: dictionary lookups and a non-blocking put, nothing more.
    def enrich(self, update: EventUpdate) -> EventUpdate:
        record = update.record
        location = self.location_of(record.camera)
        if location is None:
            return update
        with self._lock:
            weather = self._known.get(record.uuid)
            if update.kind == "ended":
                self._known.pop(record.uuid, None)
                self._open.discard(record.uuid)
            elif update.kind == "started":
                self._open.add(record.uuid)
        if weather is None and update.kind == "started":
            weather = self.client.cached(location)
            if weather is None:
                try:
                    self._queue.put_nowait((record.uuid, location))
                except queue.Full:
                    self.dropped += 1
            else:
                with self._lock:
                    self._known[record.uuid] = weather
        if weather is None:
            return update
        return dataclasses.replace(update, record=dataclasses.replace(record, weather=weather))

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            uuid, location = item
            try:
                weather = self.client.current(location)
            except WeatherUnavailable as exc:
                log.info("event %s: no weather (%s)", uuid, exc)
                continue
            except Exception:
                log.exception("event %s: weather lookup failed", uuid)
                continue
            with self._lock:
                if uuid in self._open:
                    self._known[uuid] = weather  # the event's later writes carry it
            self.attached_late += 1
            self.on_late(WeatherLink(uuid, weather))


def build_enricher(
    settings: WeatherSettings,
    location_of: Callable[[str], Location | None],
    on_late: Callable[[WeatherLink], None],
    metrics: Metrics | None = None,
) -> WeatherEnricher | None:
    """None when weather is off (then events simply carry none)."""
    if not settings.enabled:
        return None
    return WeatherEnricher(WeatherClient(settings, metrics=metrics), location_of, on_late)
