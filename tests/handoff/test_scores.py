"""The scores stream records its partition count: a role started with another count is
refused while the old one still has an owner or frames not yet stored, and a drained
stream is repartitioned (on a private nats-server)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from hazardwatch.errors import ConfigError
from hazardwatch.handoff.lease import Lease
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.scores import ScoresLayout, ensure_scores_stream, labelled_partitions

FOUR = ScoresLayout(partitions=4)
TWO = dataclasses.replace(FOUR, partitions=2)
ONE = dataclasses.replace(FOUR, partitions=1)


def label(link: BrokerLink) -> int | None:
    async def read() -> str | None:
        assert link.js is not None
        return (await link.js.stream_info(FOUR.stream)).config.description

    return labelled_partitions(link.call(read(), timeout=5))


def messages(link: BrokerLink) -> int:
    async def read() -> int:
        assert link.js is not None
        return int((await link.js.stream_info(FOUR.stream)).state.messages)

    return link.call(read(), timeout=5)


def consumers(link: BrokerLink) -> set[str]:
    async def read() -> set[str]:
        assert link.js is not None
        return {c.name for c in await link.js.consumers_info(FOUR.stream)}

    return link.call(read(), timeout=5)


def publish(link: BrokerLink, layout: ScoresLayout, camera: str, count: int = 1) -> None:
    async def send() -> None:
        assert link.js is not None
        for _ in range(count):
            await link.js.publish(layout.subject_for(camera), b"frame")

    link.call(send(), timeout=5)


def consume(link: BrokerLink, layout: ScoresLayout, partition: int, ack: int) -> None:
    """The partition's durable consumer, created as the events service's is; `ack` of
    what it delivers acknowledged, the rest left pending."""

    async def run() -> None:
        assert link.js is not None
        subscription = await link.js.pull_subscribe(
            layout.filter_of(partition),
            durable=layout.consumer_of(partition),
            stream=layout.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
        if ack:
            for message in await subscription.fetch(ack, timeout=2):
                await message.ack_sync()

    link.call(run(), timeout=10)


def test_the_stream_records_its_partition_count(link: BrokerLink) -> None:
    ensure_scores_stream(link, FOUR)
    assert label(link) == 4
    ensure_scores_stream(link, FOUR)  # the same count: started again as often as wanted
    assert label(link) == 4


def test_a_stream_from_before_the_count_was_recorded_takes_it_without_question(
    link: BrokerLink,
) -> None:
    async def old_stream() -> None:
        assert link.js is not None
        await link.js.add_stream(StreamConfig(name=ONE.stream, subjects=[f"{ONE.subject}.>"]))

    link.call(old_stream(), timeout=5)
    publish(link, ONE, "gate")
    consume(link, ONE, 0, ack=0)  # a frame waiting: nothing to compare it with
    ensure_scores_stream(link, ONE)
    assert label(link) == 1 and messages(link) == 1


def test_another_count_is_refused_while_frames_of_the_old_one_are_not_stored(
    link: BrokerLink,
) -> None:
    ensure_scores_stream(link, FOUR)
    camera = next(c for c in (f"cam{i}" for i in range(100)) if FOUR.partition_of(c) == 1)
    consume(link, FOUR, 1, ack=0)
    publish(link, FOUR, camera, 3)
    with pytest.raises(ConfigError) as refused:
        ensure_scores_stream(link, TWO)
    message = str(refused.value)
    assert "broker.partitions is 2 here" in message and "partitioned 4 way(s)" in message
    assert "events-p1 3" in message and "broker.partitions: 4" in message
    assert label(link) == 4 and messages(link) == 3 and "events-p1" in consumers(link)


def test_another_count_is_refused_while_an_events_instance_holds_a_partition(
    link: BrokerLink,
) -> None:
    ensure_scores_stream(link, FOUR)
    lease = Lease(link, FOUR.lease_key(3), "node-a")
    assert lease.acquire()
    with pytest.raises(ConfigError, match="partition 3 by node-a"):
        ensure_scores_stream(link, TWO)
    assert label(link) == 4
    lease.release()
    ensure_scores_stream(link, TWO)  # nothing waits and nobody holds it now
    assert label(link) == 2


def test_a_drained_stream_is_repartitioned_and_the_new_consumers_start_afresh(
    link: BrokerLink, caplog: pytest.LogCaptureFixture
) -> None:
    """One partition to four: everything stored, so the stream is purged (a new consumer
    would otherwise deliver the old frames again) and `events`, which only one partition
    used, deleted; the consumers of a later count find only what comes after."""
    ensure_scores_stream(link, ONE)
    publish(link, ONE, "gate", 5)
    consume(link, ONE, 0, ack=5)
    with caplog.at_level(logging.WARNING):
        ensure_scores_stream(link, FOUR)
    assert label(link) == 4 and messages(link) == 0 and consumers(link) == set()
    assert "repartitioned from 1 to 4" in caplog.text and "(events)" in caplog.text
    publish(link, FOUR, "gate", 2)
    ensure_scores_stream(link, FOUR)
    assert messages(link) == 2  # the same count again: nothing purged


def test_a_consumer_both_counts_use_is_kept(link: BrokerLink) -> None:
    """Four partitions to two, drained: `events-p0` and `events-p1` go on (the new count
    uses them), `events-p2` and `events-p3` are deleted."""
    ensure_scores_stream(link, FOUR)
    for k in range(4):
        consume(link, FOUR, k, ack=0)
    ensure_scores_stream(link, TWO)
    assert consumers(link) == {"events-p0", "events-p1"}
