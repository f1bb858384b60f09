"""Runs the API with uvicorn on a thread of `hazardwatch run`, and stops it.

uvicorn's HTTP/1.1 protocol waits for a request's headers as long as a client trickles
them, and accepts connections until the process runs out of file descriptors — then the
snapshots, clips, database and alerts of the whole service fail with them. So the API runs
on `GuardedH11Protocol`: a request's headers must arrive within `header_timeout_s` and the
whole request within `request_timeout_s`, open connections are capped below the
descriptor limit (with a reserve for everything else), and beyond the cap the connection
idle longest waiting for a request is closed first, so a new client (a health check, an
operator) gets in while slow ones are shed. uvicorn's own log records go through the
service's handlers (redacted, text or JSON), and a message repeated in a flood (asyncio's
accept errors) is logged at most once a minute with a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from hazardwatch.errors import HazardwatchError
from hazardwatch.settings import ApiSettings

log = logging.getLogger(__name__)
FD_RESERVE = 128  # descriptors kept for cameras, media, the database, alerts and the broker
# Connections asyncio accepts in one go before the protocol sees any (uvicorn's backlog,
# 2048 by default, lets a burst go far past the cap): kept small, and below the limit too.
ACCEPT_BURST = 32
MIN_CONNECTIONS = 8
REPEAT_LOG_S = 60.0


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit where allowed; returns the
    soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError) as exc:
            log.debug("open-file limit not raised: %s", exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(wanted: int, fd_limit: int) -> int:
    """`wanted`, kept below the limit by the reserve and one accept burst (never under 8)."""
    return max(MIN_CONNECTIONS, min(wanted, fd_limit - FD_RESERVE - ACCEPT_BURST))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with request deadlines and a connection cap (set on a
    subclass per server: `limits`, the API settings' timeouts, and `cap`)."""

    limits = ApiSettings()
    cap = 256
    shed = 0  # connections closed by the cap or a deadline (per server subclass)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = time.monotonic()
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout_s)
        # Connections being closed still count until asyncio has let them go: not again.
        live = [c for c in self.connections if not c.transport.is_closing()]
        if len(live) > self.cap:
            victim = min(
                (c for c in live if isinstance(c, GuardedH11Protocol) and c._idle()),
                key=lambda c: c._waiting_since,
                default=None,
            )
            (victim or self)._drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:  # headers in: the rest of the request has longer
            self._arm(self.limits.request_timeout_s - (time.monotonic() - self._waiting_since))
        elif state is not h11.IDLE:  # the whole request arrived (or the connection ends)
            self._disarm()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the request's body was all read (a 413 for an upload over the
            # limit): close once the answer is out rather than read the rest to the end.
            self.transport.close()
        super().on_response_complete()
        self._waiting_since = time.monotonic()
        if not self.transport.is_closing():
            self._arm(self.limits.header_timeout_s)

    def _idle(self) -> bool:
        """Waiting for a request (nothing in progress): what the cap closes first."""
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(max(0.0, seconds), self._drop)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _drop(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            type(self).shed += 1
            self.transport.abort()


def guarded_protocol(limits: ApiSettings, cap: int) -> type[GuardedH11Protocol]:
    return type("GuardedH11", (GuardedH11Protocol,), {"limits": limits, "cap": cap, "shed": 0})


class RepeatFilter(logging.Filter):
    """Lets a message (by its template) through at most once per `interval_s`; the next one
    let through says how many were held back."""

    def __init__(self, interval_s: float = REPEAT_LOG_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-self.interval_s, 0))
            if now - last < self.interval_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # distinct messages only grow so far
                self._seen = {key: (now, 0)}
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval_s:g} s)"
        return True


_REPEATS = RepeatFilter()


def route_server_logs() -> None:
    """uvicorn's records go to the service's own handlers (redacted, text or JSON), even
    where uvicorn's default logging was set up before (it stops them at "uvicorn"), and
    asyncio's and uvicorn's repeated messages (an accept loop out of descriptors logs one
    per attempt) at most once a minute each. Idempotent."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if _REPEATS not in logger.filters:
            logger.addFilter(_REPEATS)


class ApiServer:
    def __init__(
        self, app: FastAPI, host: str, port: int, limits: ApiSettings | None = None
    ) -> None:
        """`limits`: the API settings whose timeouts and connection cap apply (the host and
        port given may differ: a role's status port)."""
        self.host = host
        self.port = port
        self.limits = limits or ApiSettings()
        self.cap = connection_cap(self.limits.max_connections, raise_fd_limit())
        self.protocol = guarded_protocol(self.limits, self.cap)
        route_server_logs()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=self.protocol,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,  # uvicorn's records go through the service's own handlers
            timeout_keep_alive=5,
            backlog=ACCEPT_BURST,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self._error = exc

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raises HazardwatchError if the port cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HazardwatchError(
                    f"the API could not listen on {self.host}:{self.port} (port in use or not "
                    "allowed?); choose another with --api-port or api.port"
                )
            time.sleep(0.02)
        log.info(
            "API listening on http://%s:%d (docs at /docs), at most %d connections",
            self.host,
            self.port,
            self.cap,
        )

    def stop(self, timeout: float = 5.0) -> bool:
        self._server.should_exit = True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def shed(self) -> int:
        """Connections closed by the cap or a deadline so far."""
        return self.protocol.shed
