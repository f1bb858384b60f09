"""Scored frames over NATS JetStream, the scoring workers → the events service.

Layout (created idempotently by `ensure_scores_stream`): stream `HAZARDWATCH_SCORES`,
limits retention (kept for a restarting events service to resume from), de-duplicated by
message id. With one partition (`broker.partitions`, the default) the subjects are
`hazardwatch.scores.<camera>` and one durable consumer `events` reads them all. With N,
each camera belongs to partition k = crc32(name) mod N: its scores are published on
`hazardwatch.scores.p<k>.<camera>`, and partition k has its own durable consumer
`events-p<k>` filtered on `hazardwatch.scores.p<k>.>` (filtered durable consumers:
nats-server 2.2 and later), read by whichever events instance holds its lease.

The stream's description names the partition count it was written with. A role started
with another count is refused while an events instance still holds a partition of the
old count, or while any frame of it is not yet stored (its consumers' pending or unacked
messages): its frames would be published where no owner of their camera reads them, or
read by two. Once drained, the first role with the new count repartitions: the stream is
purged (everything in it is stored) and the consumers only the old count used are
deleted, so the new consumers start from what comes next, not from frames of the old
layout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
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

from hazardwatch.errors import ConfigError
from hazardwatch.handoff.codec import decode_scored, encode_scored
from hazardwatch.handoff.consumer import PullConsumer
from hazardwatch.handoff.frames import message_id
from hazardwatch.handoff.lease import Lease
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


def _label(partitions: int) -> str:
    return f"hazardwatch scored frames; partitions={partitions}"


def labelled_partitions(description: str | None) -> int | None:
    """The partition count a scores stream was written with (None: a stream from before
    the count was recorded)."""
    found = re.search(r"partitions=(\d+)", description or "")
    return int(found.group(1)) if found else None


async def _ensure_scores(js: JetStreamContext, layout: ScoresLayout) -> None:
    config = StreamConfig(
        name=layout.stream,
        description=_label(layout.partitions),
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


async def _partitions_now(js: JetStreamContext, layout: ScoresLayout) -> tuple[int | None, int]:
    """The stream's partition count (None: no stream, or one from before it was recorded)
    and its last sequence number."""
    try:
        info = await js.stream_info(layout.stream)
    except NotFoundError:
        return None, 0
    return labelled_partitions(info.config.description), int(info.state.last_seq or 0)


async def _waiting(js: JetStreamContext, layout: ScoresLayout) -> dict[str, int]:
    """Per consumer of `layout`: the frames it has not yet had acknowledged."""
    names = {layout.consumer_of(k) for k in range(layout.partitions)}
    return {
        c.name: int(c.num_pending or 0) + int(c.num_ack_pending or 0)
        for c in await js.consumers_info(layout.stream)
        if c.name in names
    }


async def _repartition(
    js: JetStreamContext, old: ScoresLayout, new: ScoresLayout, last_seq: int
) -> list[str]:
    """The old layout's consumers that the new one does not use deleted, and the stream
    purged up to `last_seq`, what was seen drained (frames a role of the new count
    published since stay; the consumers both use skip what is purged); the names
    deleted."""
    names = {old.consumer_of(k) for k in range(old.partitions)}
    names -= {new.consumer_of(k) for k in range(new.partitions)}
    deleted = [c.name for c in await js.consumers_info(old.stream) if c.name in names]
    for name in deleted:
        await js.delete_consumer(old.stream, name)
    if last_seq:
        await js.purge_stream(old.stream, seq=last_seq + 1)
    return sorted(deleted)


def ensure_scores_stream(link: BrokerLink, layout: ScoresLayout) -> None:
    """Create or update the scores stream (idempotent). With another partition count
    than the stream's (see the module): ConfigError while an events instance still holds
    a partition of that count or its consumers hold frames not yet stored; else
    repartitioned."""
    assert link.js is not None
    before, last_seq = link.call(_partitions_now(link.js, layout), timeout=10)
    if before is not None and before != layout.partitions:
        old = dataclasses.replace(layout, partitions=before)
        _repartition_drained(link, old, layout, last_seq)
    link.call(_ensure_scores(link.js, layout), timeout=10)


def _repartition_drained(
    link: BrokerLink, old: ScoresLayout, new: ScoresLayout, last_seq: int
) -> None:
    assert link.js is not None
    fix = (
        f"Set broker.partitions: {old.partitions} as in the rest of the deployment; to "
        "change it, stop the capture nodes and workers, let the events instances store what "
        "is left and stop them, then start every role with the new count"
    )
    where = f"broker.partitions is {new.partitions} here, but the scores stream {old.stream} "
    where += f"is partitioned {old.partitions} way(s)"
    owners = {k: Lease(link, old.lease_key(k)).read_owner() for k in range(old.partitions)}
    if held := {k: owner for k, owner in owners.items() if owner is not None}:
        running = ", ".join(f"partition {k} by {owner}" for k, owner in sorted(held.items()))
        raise ConfigError(f"{where} and events instances still consume it ({running}). {fix}")
    waiting = link.call(_waiting(link.js, old), timeout=10)
    if any(waiting.values()):
        detail = ", ".join(f"{name} {n}" for name, n in sorted(waiting.items()) if n)
        raise ConfigError(f"{where} and holds frames not yet stored ({detail}). {fix}")
    deleted = link.call(_repartition(link.js, old, new, last_seq), timeout=30)
    log.warning(
        "scores stream %s repartitioned from %d to %d partition(s): every frame in it was "
        "stored; the stream purged, the consumers it no longer uses (%s) deleted",
        old.stream,
        old.partitions,
        new.partitions,
        ", ".join(deleted) or "none",
    )


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
