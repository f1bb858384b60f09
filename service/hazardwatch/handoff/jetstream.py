"""The hand-off over NATS JetStream: the same put / fetch → ack · nak · term protocol as
`LocalQueue`, across machines.

Layout (created idempotently by `ensure_frames_stream`):

- stream `HAZARDWATCH_FRAMES`, subjects `hazardwatch.frames.<camera>`, work-queue
  retention (a frame is gone once one worker acked it), file storage, `max_age` equal to
  `scoring.max_frame_age_s` — a frame nobody scored in time expires instead of being
  scored late;
- durable pull consumer `scoring`, explicit acks, `ack_wait` well below that age (a dead
  worker's frames come back while still fresh), `max_ack_pending` bounding what the
  workers hold, `max_deliver` attempts.

nats-py is asyncio; `BrokerLink` runs one event loop on its own thread and the rest of
the service calls into it from plain threads. Capture never waits: `JetStreamSink.put`
hands the encoded frame to the loop and returns; when the loop's outgoing buffer is full
the oldest frame is dropped and counted, as the local queue does. A message that is not a
well-formed frame is counted, logged once and terminated, so it never blocks the consumer.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from hazardwatch.errors import ConfigError
from hazardwatch.handoff.codec import (
    CodecError,
    WireOptions,
    decode_gated,
    decode_scored,
    encode_gated,
    encode_scored,
)
from hazardwatch.handoff.queue import Delivery, Retry
from hazardwatch.records import GatedFrame, ScoredFrame
from hazardwatch.redact import redact_url
from hazardwatch.settings import BrokerSettings, Settings

if TYPE_CHECKING:  # the bank only names a type here: scoring comes after the hand-off
    from hazardwatch.scoring.bank import PromptBank

log = logging.getLogger(__name__)
T = TypeVar("T")

# A broker that stops answering (a cut link, no RST) is noticed after a few missed pings,
# not after the client's default two minutes: the connection is dropped and re-dialled.
PING_INTERVAL_S = 2
MAX_OUTSTANDING_PINGS = 3
# Frames the capture side has in flight to the broker at once (awaiting their acks).
PUBLISH_WINDOW = 32
RETRY_PAUSE_S = 0.5  # between publishing again frames the broker did not acknowledge
RETRY_LIMIT_S = 60.0  # how long to publish a frame again when frames have no age limit

FRAMES_STREAM = "HAZARDWATCH_FRAMES"
FRAMES_SUBJECT = "hazardwatch.frames"
SCORING_CONSUMER = "scoring"


@dataclass(frozen=True, slots=True)
class FramesLayout:
    """The frames stream and its consumer, from the settings."""

    max_age_s: float = 10.0  # scoring.max_frame_age_s
    ack_wait_s: float = 2.0
    max_ack_pending: int = 256
    max_deliver: int = 3
    stream: str = FRAMES_STREAM
    subject: str = FRAMES_SUBJECT
    consumer: str = SCORING_CONSUMER

    def subject_for(self, camera: str) -> str:
        return f"{self.subject}.{camera}"


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
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the link's loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

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


def link_from_settings(settings: BrokerSettings, name: str) -> BrokerLink:
    """A link with the configured credentials and TLS (raises ConfigError when unset)."""
    if settings.url is None:
        raise ConfigError(
            "broker.url is not set: the roles need NATS JetStream "
            "(broker.url: nats://host:4222 in the config file, or HAZARDWATCH_BROKER__URL)"
        )
    tls = None
    if settings.tls_ca_file or settings.tls_cert_file:
        tls = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file:
            tls.load_cert_chain(
                str(settings.tls_cert_file),
                str(settings.tls_key_file) if settings.tls_key_file else None,
            )
    return BrokerLink(
        settings.url.get_secret_value(),
        name,
        creds_file=str(settings.creds_file) if settings.creds_file else None,
        tls=tls,
    )


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


def layouts_from_settings(settings: Settings) -> tuple[FramesLayout, ScoresLayout]:
    b = settings.broker
    frames = FramesLayout(
        max_age_s=settings.scoring.max_frame_age_s,
        ack_wait_s=b.ack_wait_s,
        max_ack_pending=b.max_ack_pending,
        max_deliver=b.max_deliver,
    )
    return frames, ScoresLayout(max_age_s=b.scores_max_age_s)


def wire_options(settings: BrokerSettings) -> WireOptions:
    return WireOptions(
        jpeg_quality=settings.jpeg_quality,
        max_width=settings.max_width,
        image_format=settings.image_format,
    )


def scoring_consumer(layout: FramesLayout) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=layout.consumer,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=layout.ack_wait_s,
        max_ack_pending=layout.max_ack_pending,
        max_deliver=layout.max_deliver,
    )


async def _ensure_stream(js: JetStreamContext, layout: FramesLayout) -> None:
    config = StreamConfig(
        name=layout.stream,
        subjects=[f"{layout.subject}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=layout.max_age_s,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with other limits: bring them in line
        await js.update_stream(config)
    # The workers' consumer too, so its backlog is visible (and alerts) before, or
    # without, any worker.
    try:
        await js.add_consumer(layout.stream, scoring_consumer(layout))
    except BadRequestError as exc:  # exists with other settings: the workers' own wins
        log.debug("consumer %s kept as it is: %s", layout.consumer, exc)


def ensure_frames_stream(link: BrokerLink, layout: FramesLayout) -> None:
    """Create or update the frames stream (idempotent)."""
    assert link.js is not None
    link.call(_ensure_stream(link.js, layout), timeout=10)


class JetStreamSink:
    """Capture's side: put never blocks; the loop publishes and awaits the broker's acks,
    up to `PUBLISH_WINDOW` frames in flight at once (in order: one connection keeps it).

    Each frame carries a message id, so a publish whose ack did not come (the broker went
    away; the client may have sent it all the same once reconnected) is published again
    and stored once: it counts as published when the broker acknowledges either copy, and
    as failed only when no ack came within the frame age limit (`max_age_s`), after which
    the frame is of no use to scoring.
    """

    def __init__(
        self,
        link: BrokerLink,
        layout: FramesLayout,
        options: WireOptions | None = None,
        buffer: int = 256,
    ) -> None:
        self.link = link
        self.layout = layout
        self.options = options or WireOptions()
        self._pending: collections.deque[_Outgoing] = collections.deque()
        self._buffer = buffer
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._woken = False  # a wake-up is due: puts until then need not send another
        self._run_id = uuid.uuid4().hex[:12]  # hand-off numbers restart with the process
        self.dropped = 0  # from a full buffer (the broker away for long)
        self.published = 0
        self.failed = 0
        self.retried = 0
        self.bytes_published = 0
        self._busy = False
        self._unacked_since: float | None = None  # the outage being waited out, if any
        self._numbers: dict[str, int] = {}  # per camera: the last hand-off number given
        self._task = asyncio.run_coroutine_threadsafe(self._publisher(), link.loop)

    def put(self, item: GatedFrame) -> None:
        camera = item.frame.camera
        with self._lock:  # one reader thread per camera, but cameras share the sink
            self._numbers[camera] = number = self._numbers.get(camera, 0) + 1
        data = encode_gated(dataclasses.replace(item, handoff_seq=number), self.options)
        outgoing = _Outgoing(
            self.layout.subject_for(camera), data, f"{self._run_id}.{camera}.{number}",
            time.monotonic(),
        )  # fmt: skip
        with self._lock:
            if len(self._pending) >= self._buffer:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(outgoing)
            wake, self._woken = not self._woken, True
        if wake:
            self.link.loop.call_soon_threadsafe(self._wake.set)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything put so far is published (file sources at their end)."""
        done = threading.Event()

        async def wait() -> None:
            while self._pending or self._busy:
                await asyncio.sleep(0.01)
            done.set()

        asyncio.run_coroutine_threadsafe(wait(), self.link.loop)
        return done.wait(timeout)

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    take = min(len(self._pending), PUBLISH_WINDOW)
                    batch = [self._pending.popleft() for _ in range(take)]
                    self._busy = bool(batch)
                    if not batch:
                        self._woken = False
                        break
                try:
                    retry = await self._publish(batch)
                finally:
                    self._busy = False
                if retry:
                    with self._lock:  # first in line again, in their order
                        self._pending.extendleft(reversed(retry))
                    await asyncio.sleep(RETRY_PAUSE_S)

    async def _publish(self, batch: list[_Outgoing]) -> list[_Outgoing]:
        """Publish a batch; returns the frames to try again."""
        assert self.link.js is not None
        js = self.link.js
        results = await asyncio.gather(
            *(
                js.publish(o.subject, o.data, timeout=5, headers={"Nats-Msg-Id": o.msg_id})
                for o in batch
            ),
            return_exceptions=True,
        )
        retry: list[_Outgoing] = []
        given_up: list[tuple[_Outgoing, BaseException]] = []
        now = time.monotonic()
        limit = self.layout.max_age_s or RETRY_LIMIT_S
        for outgoing, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                self.published += 1
                self.bytes_published += len(outgoing.data)
            elif now - outgoing.put_at < limit:
                retry.append(outgoing)
            else:
                given_up.append((outgoing, result))
        if retry:
            self.retried += len(retry)
            if self._unacked_since is None:
                self._unacked_since = now
                first = next(r for r in results if isinstance(r, BaseException))
                log.warning(
                    "the broker did not acknowledge %d frame(s) (%s: %s); publishing them "
                    "again until it does or they are %g s old",
                    len(retry),
                    type(first).__name__,
                    first,
                    limit,
                )
        elif self._unacked_since is not None and not given_up:
            log.info("the broker acknowledges frames again after %.1f s", now - self._unacked_since)
            self._unacked_since = None
        if given_up:  # older than the frame age limit: no use to scoring any more
            self.failed += len(given_up)
            outgoing, exc = given_up[0]
            log.warning(
                "%d frame(s) not published within the %g s frame age limit (first to %s: "
                "%s); see hazardwatch_frames_publish_failed_total",
                len(given_up),
                limit,
                outgoing.subject,
                type(exc).__name__,
            )
        return retry


@dataclass(frozen=True, slots=True)
class _Outgoing:
    subject: str
    data: bytes
    msg_id: str  # the broker stores a frame published twice (a retry) once
    put_at: float  # monotonic


@dataclass(eq=False)
class JetStreamDelivery(Generic[T]):
    item: T
    attempt: int
    msg: Msg = field(repr=False)
    link: BrokerLink = field(repr=False)
    settled: str | None = None

    def ack(self) -> None:
        self._settle("ack", self.msg.ack())

    def nak(self) -> None:
        self._settle("nak", self.msg.nak())

    def term(self) -> None:
        self._settle("term", self.msg.term())

    def in_progress(self) -> None:
        """Extend the ack wait (a long batch)."""
        self.link.call(self.msg.in_progress(), timeout=5)

    def _settle(self, how: str, coro: Coroutine[Any, Any, None]) -> None:
        if self.settled is not None:
            coro.close()
            return
        self.settled = how
        self.link.settle(how, coro)


class PullConsumer(Generic[T]):
    """A durable pull consumer decoding each message with `decode`; a message it cannot
    decode is counted, logged once and terminated, so it never blocks the consumer."""

    def __init__(
        self,
        link: BrokerLink,
        stream: str,
        subject: str,
        config: ConsumerConfig,
        decode: Callable[[bytes], T],
        what: str,
        on_malformed: Callable[[], None] | None = None,
    ) -> None:
        self.link = link
        self.decode = decode
        self.what = what
        self.on_malformed = on_malformed
        self.malformed = 0
        self._warned = False
        assert config.durable_name is not None
        self._sub = link.call(self._subscribe(stream, subject, config), timeout=10)

    async def _subscribe(
        self, stream: str, subject: str, config: ConsumerConfig
    ) -> JetStreamContext.PullSubscription:
        assert self.link.js is not None
        return await self.link.js.pull_subscribe(
            subject, durable=config.durable_name, stream=stream, config=config
        )

    def fetch_deliveries(self, max_items: int, timeout_s: float) -> list[Delivery[T]]:
        try:
            messages = self.link.call(
                self._sub.fetch(batch=max_items, timeout=max(timeout_s, 0.05)),
                timeout=timeout_s + 10,
            )
        except (NatsTimeout, TimeoutError):
            return []
        except (NotFoundError, ConnectionError) as exc:
            log.warning("fetching %s failed (%s); retrying", self.what, exc)
            return []
        out: list[Delivery[T]] = []
        for msg in messages:
            try:
                item = self.decode(msg.data)
            except CodecError as exc:
                self._malformed(msg, str(exc))
                continue
            out.append(JetStreamDelivery(item, msg.metadata.num_delivered, msg, self.link))
        return out

    def _malformed(self, msg: Msg, why: str) -> None:
        self.malformed += 1
        if self.on_malformed is not None:
            self.on_malformed()
        if not self._warned:
            self._warned = True
            log.error(
                "message on %s is not %s (%s); terminated (logged once)",
                msg.subject,
                self.what,
                why,
            )
        self.link.settle("term", msg.term())


class JetStreamSource(PullConsumer[GatedFrame]):
    """The worker's side: a durable pull consumer shared by every worker (competing)."""

    def __init__(
        self,
        link: BrokerLink,
        layout: FramesLayout,
        on_malformed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            link,
            layout.stream,
            f"{layout.subject}.>",
            scoring_consumer(layout),
            decode_gated,
            "a frame",
            on_malformed,
        )

    def fetch(
        self, max_items: int, timeout_s: float, fill_wait_s: float = 0.0
    ) -> list[Delivery[GatedFrame]] | None:
        """Never None: a broker source does not end; its worker is stopped instead."""
        return self.fetch_deliveries(max_items, timeout_s)


# ---------------------------------------------------------------------------- scores

SCORES_STREAM = "HAZARDWATCH_SCORES"
SCORES_SUBJECT = "hazardwatch.scores"
EVENTS_CONSUMER = "events"


@dataclass(frozen=True, slots=True)
class ScoresLayout:
    """Scored frames, workers → the events service: limits retention (kept `max_age_s`
    for a restarting events service to resume from), de-duplicated by message id within
    `duplicate_window_s` (a frame redelivered to a second worker is published twice)."""

    max_age_s: float = 3600.0
    duplicate_window_s: float = 120.0
    ack_wait_s: float = 30.0
    max_ack_pending: int = 4096
    stream: str = SCORES_STREAM
    subject: str = SCORES_SUBJECT
    consumer: str = EVENTS_CONSUMER

    def subject_for(self, camera: str) -> str:
        return f"{self.subject}.{camera}"


def message_id(frame: GatedFrame) -> str:
    """The same hand-off gives the same id on every worker that scores it. (The sampler
    may hand one frame on twice — a heartbeat that becomes pre-roll — and both count.)"""
    f = frame.frame
    return f"{f.camera}:{f.received_at:.6f}:{f.seq}:{frame.handoff_seq}"


async def _ensure_scores(js: JetStreamContext, layout: ScoresLayout) -> None:
    config = StreamConfig(
        name=layout.stream,
        subjects=[f"{layout.subject}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=layout.max_age_s,
        duplicate_window=layout.duplicate_window_s,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


def ensure_scores_stream(link: BrokerLink, layout: ScoresLayout) -> None:
    """Create or update the scores stream (idempotent)."""
    assert link.js is not None
    link.call(_ensure_scores(link.js, layout), timeout=10)


class ScoresPublisher:
    """The worker's output: each scored frame published and acknowledged by the broker
    before the worker acks the frame it came from, so a crash in between loses nothing
    (the frame is scored again and the duplicate dropped by its message id)."""

    def __init__(
        self, link: BrokerLink, layout: ScoresLayout, options: WireOptions | None = None
    ) -> None:
        self.link = link
        self.layout = layout
        self.options = options or WireOptions()
        self.published = 0
        self.duplicates = 0
        self.bytes_published = 0

    def publish(self, frames: list[ScoredFrame]) -> None:
        """Publish a batch at once (one round trip, not one per frame) and wait for the
        broker's acks. Raises Retry when it did not take them all (the worker naks the
        frames; the ones published already come again with the same id and are dropped)."""
        encoded = [(scored, encode_scored(scored, self.options)) for scored in frames]
        try:
            acks = self.link.call(self._publish_all(encoded), timeout=15)
        except Exception as exc:
            raise Retry(f"scores not published: {type(exc).__name__}: {exc}") from None
        for (_, data), ack in zip(encoded, acks, strict=True):
            self.published += 1
            self.bytes_published += len(data)
            self.duplicates += bool(ack.duplicate)

    async def _publish_all(self, encoded: list[tuple[ScoredFrame, bytes]]) -> list[Any]:
        assert self.link.js is not None
        js = self.link.js
        return list(
            await asyncio.gather(
                *(
                    js.publish(
                        self.layout.subject_for(scored.gated.frame.camera),
                        data,
                        timeout=5,
                        headers={"Nats-Msg-Id": message_id(scored.gated)},
                    )
                    for scored, data in encoded
                )
            )
        )


async def _take_over(link: BrokerLink, stream: str, config: ConsumerConfig) -> int:
    """The events service is one instance: at start it takes over its durable consumer.
    What an instance that died held unacked would come back only after `ack_wait`, behind
    newer frames, and the reorder window would drop it as late. So a consumer with
    unacked messages is recreated at its ack floor: everything after the floor is
    delivered again at once, in stream order (what was stored already is stored once).
    Returns how many messages were held."""
    assert link.js is not None and config.durable_name is not None
    try:
        info = await link.js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        return 0
    held = int(info.num_ack_pending or 0)
    if not held:
        return 0
    floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    await link.js.delete_consumer(stream, config.durable_name)
    config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
    config.opt_start_seq = floor + 1
    return held


class ScoresSource(PullConsumer[ScoredFrame]):
    """The events service's side: one durable consumer for the scores of every camera."""

    def __init__(
        self,
        link: BrokerLink,
        layout: ScoresLayout,
        bank_of: Callable[[str], PromptBank],
        on_malformed: Callable[[], None] | None = None,
    ) -> None:
        config = ConsumerConfig(
            durable_name=layout.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=layout.ack_wait_s,
            max_ack_pending=layout.max_ack_pending,
        )
        taken = link.call(_take_over(link, layout.stream, config), timeout=10)
        if taken:
            log.warning(
                "%d scored frame(s) a previous events service held unacknowledged are "
                "delivered again, in order",
                taken,
            )
        super().__init__(
            link,
            layout.stream,
            f"{layout.subject}.>",
            config,
            lambda data: decode_scored(data, bank_of),
            "a scored frame",
            on_malformed,
        )

    def fetch(self, max_items: int, timeout_s: float) -> list[Delivery[ScoredFrame]]:
        return self.fetch_deliveries(max_items, timeout_s)
