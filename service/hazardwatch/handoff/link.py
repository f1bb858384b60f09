"""One NATS connection and the event loop it lives on. nats-py is asyncio; `BrokerLink`
runs one loop on its own thread and the rest of the service calls into it from plain
threads (`call`), and settles messages through it in batches (`settle`)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from hazardwatch.redact import redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")

# A broker that stops answering (a cut link, no RST) is noticed after a few missed pings,
# not after the client's default two minutes: the connection is dropped and re-dialled.
PING_INTERVAL_S = 2
MAX_OUTSTANDING_PINGS = 3


class BrokerLink:
    """One NATS connection and the event loop it lives on (start, stop(timeout))."""

    def __init__(
        self,
        url: str,
        name: str = "hazardwatch",
        connect_timeout_s: float = 5.0,
        *,
        creds_file: str | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.creds_file = creds_file
        self.tls = tls
        self.url = url
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.reconnects = 0
        self.connected = False
        # Acks, naks and terms from the service's threads, run on the loop in one wake-up
        # for all that came together (a hop to the loop costs about 0.14 ms of CPU; a
        # batch of frames settled one hop each cost that per frame).
        self._settles: list[tuple[str, Coroutine[Any, Any, None]]] = []
        self._settles_lock = threading.Lock()
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def nc(self) -> Client:
        """The connection, for requests and subscriptions run through `call`."""
        if self._nc is None:
            raise ConnectionError("the broker link is not started")
        return self._nc

    def start(self) -> None:
        """Connect (reconnecting for ever afterwards); raises when the first connect fails."""
        self._thread.start()
        try:
            self.call(self._connect(), timeout=self.connect_timeout_s + 5)
        except Exception as exc:
            self.stop(2)
            raise ConnectionError(
                f"cannot reach NATS at {redact_url(self.url)}: {type(exc).__name__}: {exc}"
            ) from None

    def stop(self, timeout: float = 5.0) -> bool:
        """Close the connection (what was published is with the broker), end every task
        on the loop, stop it."""
        if self.loop.is_running():
            try:
                self.call(self._shutdown(), timeout=timeout)
            except Exception as exc:  # closing anyway
                log.debug("NATS shutdown: %s", exc)
                try:  # the close hung (a server gone): still end every task
                    self.call(_end_tasks(), timeout=2)
                except Exception as again:
                    log.debug("NATS tasks not ended: %s", again)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if stopped and not self.loop.is_closed():
            self.loop.close()
        return stopped

    async def _shutdown(self) -> None:
        self.connected = False  # closing on purpose: no "disconnected; reconnecting" line
        self._run_settles()  # what was settled before stop goes out before the close
        await asyncio.gather(*self._settling, return_exceptions=True)
        try:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()  # raises when the server went away meanwhile
        finally:
            await _end_tasks()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the link's loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def subscribe(self, subject: str, cb: Callable[[Any], Awaitable[None]], queue: str = "") -> Any:
        """A core NATS subscription (request-reply responders), `cb` run on the loop."""
        return self.call(self.nc.subscribe(subject, queue=queue, cb=cb), timeout=10)

    def unsubscribe(self, subscription: Any, what: str, timeout: float = 5.0) -> None:
        """End a subscription; with the broker already gone there is nothing to end."""
        if subscription is None or not self.connected:
            return
        try:
            self.call(subscription.unsubscribe(), timeout)
        except Exception as exc:
            log.debug("%s: unsubscribe failed: %s", what, exc)

    def settle(self, how: str, coro: Coroutine[Any, Any, None]) -> None:
        """Send an ack, nak or term without waiting for it: the client only buffers it,
        and what fails is logged (the broker then redelivers after `ack_wait`: nothing is
        lost). Settles that come together share one wake-up of the loop."""
        with self._settles_lock:
            self._settles.append((how, coro))
            first = len(self._settles) == 1
        if first:
            try:
                self.loop.call_soon_threadsafe(self._run_settles)
            except RuntimeError:  # the loop is closed: stopped, nothing to send on
                with self._settles_lock:
                    dropped, self._settles = self._settles, []
                for _, pending in dropped:
                    pending.close()

    def _run_settles(self) -> None:
        with self._settles_lock:
            settles, self._settles = self._settles, []
        if settles:
            task = self.loop.create_task(_send_settles(settles))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _connect(self) -> None:
        async def disconnected() -> None:
            if self.connected:
                log.warning("NATS %s: disconnected; reconnecting", redact_url(self.url))
            self.connected = False

        async def reconnected() -> None:
            self.reconnects += 1
            self.connected = True
            log.info("NATS %s: reconnected", redact_url(self.url))

        async def error(exc: Exception) -> None:
            log.debug("NATS %s: %s", redact_url(self.url), exc)

        self._nc = await nats.connect(
            self.url,
            name=self.name,
            connect_timeout=self.connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            ping_interval=PING_INTERVAL_S,
            max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            user_credentials=self.creds_file,
            tls=self.tls,
        )
        self.connected = True
        self.js = self._nc.jetstream()


async def _send_settles(settles: list[tuple[str, Coroutine[Any, Any, None]]]) -> None:
    for how, coro in settles:
        try:
            await coro
        except Exception as exc:  # the broker redelivers after ack_wait: nothing is lost
            log.warning("could not %s a message: %s", how, exc)


def consumer_lag(link: BrokerLink, consumers: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """(consumer, pending, ack pending) of each (stream, consumer); [] when the broker
    does not answer within 2 s (a scrape must not hang on it)."""
    assert link.js is not None
    js = link.js

    async def ask() -> list[tuple[str, int, int]]:
        out = []
        for stream, consumer in consumers:
            try:
                info = await js.consumer_info(stream, consumer)
            except NotFoundError:
                continue  # not created yet: no worker (or events service) has subscribed
            out.append((consumer, int(info.num_pending or 0), int(info.num_ack_pending or 0)))
        return out

    try:
        return link.call(ask(), timeout=2)
    except Exception as exc:
        log.debug("consumer lag not read: %s", exc)
        return []


async def _end_tasks() -> None:
    """Cancel every other task on this loop and wait for them: a task left pending when
    the loop closes is destroyed at some later garbage collection, with an error."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
