"""Scored frames over NATS JetStream, the scoring workers → the events service.

Layout (created idempotently by `ensure_scores_stream`): stream `HAZARDWATCH_SCORES`,
limits retention (kept for a restarting events service to resume from), de-duplicated by
message id. With one partition (`broker.partitions`, the default) the subjects are
`hazardwatch.scores.<camera>` and one durable consumer `events` reads them all. With N,
each camera belongs to partition k = crc32(name) mod N: its scores are published on
`hazardwatch.scores.p<k>.<camera>`, and partition k has its own durable consumer
`events-p<k>` filtered on `hazardwatch.scores.p<k>.>` (filtered durable consumers:
nats-server 2.2 and later), read by whichever events instance holds its lease.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

from hazardwatch.handoff.codec import decode_scored, encode_scored
from hazardwatch.handoff.consumer import PullConsumer
from hazardwatch.handoff.frames import message_id
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.queue import Delivery, Retry
from hazardwatch.images import ImageOptions
from hazardwatch.records import ScoredFrame

if TYPE_CHECKING:  # the bank only names a type here: scoring comes after the hand-off
    from hazardwatch.scoring.bank import PromptBank

log = logging.getLogger(__name__)

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
    partitions: int = 1

    def partition_of(self, camera: str) -> int:
        """The camera's partition: a stable hash of its name (the same in every process
        and every run, unlike Python's `hash`)."""
        return zlib.crc32(camera.encode()) % self.partitions

    def subject_for(self, camera: str) -> str:
        if self.partitions == 1:
            return f"{self.subject}.{camera}"
        return f"{self.subject}.p{self.partition_of(camera)}.{camera}"

    def filter_of(self, partition: int) -> str:
        """The subjects of one partition (all of them, with one partition)."""
        if self.partitions == 1:
            return f"{self.subject}.>"
        return f"{self.subject}.p{partition}.>"

    def consumer_of(self, partition: int) -> str:
        """The durable consumer of one partition (`events` with one partition, as before
        partitions existed)."""
        return self.consumer if self.partitions == 1 else f"{self.consumer}-p{partition}"

    def lease_key(self, partition: int) -> str:
        """The partition's key in the lease bucket (handoff/lease.py)."""
        return f"{self.stream}.{self.consumer_of(partition)}"


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
        self, link: BrokerLink, layout: ScoresLayout, options: ImageOptions | None = None
    ) -> None:
        self.link = link
        self.layout = layout
        self.options = options or ImageOptions()
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
    """The events service's side: the durable consumer of one partition's scores (every
    camera's, with one partition)."""

    def __init__(
        self,
        link: BrokerLink,
        layout: ScoresLayout,
        bank_of: Callable[[str], PromptBank],
        on_malformed: Callable[[], None] | None = None,
        partition: int = 0,
    ) -> None:
        self.partition = partition
        config = ConsumerConfig(
            durable_name=layout.consumer_of(partition),
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
            layout.filter_of(partition),
            config,
            lambda data: decode_scored(data, bank_of),
            "a scored frame",
            on_malformed,
        )

    def fetch(self, max_items: int, timeout_s: float) -> list[Delivery[ScoredFrame]]:
        return self.fetch_deliveries(max_items, timeout_s)
