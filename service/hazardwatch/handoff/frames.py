"""Gated frames over NATS JetStream, capture → the scoring workers.

Layout (created idempotently by `ensure_frames_stream`):

- stream `HAZARDWATCH_FRAMES`, subjects `hazardwatch.frames.<camera>`, work-queue
  retention (a frame is gone once one worker acked it), file storage, `max_age` equal to
  `scoring.max_frame_age_s` — a frame nobody scored in time expires instead of being
  scored late;
- durable pull consumer `scoring`, explicit acks, `ack_wait` well below that age (a dead
  worker's frames come back while still fresh), `max_ack_pending` bounding what the
  workers hold, `max_deliver` attempts.

Capture never waits: `JetStreamSink.put` hands the encoded frame to the link's loop and
returns; when the outgoing buffer is full the oldest frame is dropped and counted, as the
local queue does.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from hazardwatch.handoff.codec import decode_gated, encode_gated
from hazardwatch.handoff.consumer import PullConsumer
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.queue import Delivery
from hazardwatch.images import ImageOptions
from hazardwatch.records import GatedFrame

log = logging.getLogger(__name__)

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
        options: ImageOptions | None = None,
        buffer: int = 256,
    ) -> None:
        self.link = link
        self.layout = layout
        self.options = options or ImageOptions()
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


def message_id(frame: GatedFrame) -> str:
    """The same hand-off gives the same id on every worker that scores it. (The sampler
    may hand one frame on twice — a heartbeat that becomes pre-roll — and both count.)"""
    f = frame.frame
    return f"{f.camera}:{f.received_at:.6f}:{f.seq}:{frame.handoff_seq}"
