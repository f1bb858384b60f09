"""The scores' partitions shared out among events instances: the fair share, and
coordinators on a private nats-server taking, giving back and taking over partitions."""

from __future__ import annotations

import time
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from hazardwatch.handoff.lease import Lease
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.partitions import Partitions, fair_share, preferred
from hazardwatch.handoff.scores import ScoresLayout
from tests.helpers import wait_for

LAYOUT = ScoresLayout(partitions=4)


@given(
    st.sets(st.text("abcdef0123456789-", min_size=1, max_size=12), min_size=1, max_size=9),
    st.integers(1, 64),
)
def test_the_shares_add_up_and_differ_by_one_at_most(members: set[str], partitions: int) -> None:
    shares = [fair_share(m, list(members), partitions) for m in members]
    assert sum(shares) == partitions
    assert max(shares) - min(shares) <= 1
    for member in members:  # each reaches first for partitions the others do not
        order = preferred(member, list(members), partitions)
        assert sorted(order) == list(range(partitions))
    firsts = [set(preferred(m, list(members), partitions)[:1]) for m in members]
    if partitions >= len(members):
        assert len(set().union(*firsts)) == len(members)


class Instance:
    """A coordinator whose partitions start and stop as records (no consumers)."""

    def __init__(self, link: BrokerLink, node: str, members: list[str]) -> None:
        self.node = node
        self.started: list[int] = []
        self.handed: list[bool] = []  # each start: whether its last holder gave it back
        self.stopped: list[int] = []
        self.lost: list[str] = []
        self.partitions: Partitions[int] = Partitions(
            link,
            LAYOUT,
            node,
            lambda: list(members),
            self._start,
            lambda k, running: self.stopped.append(k),
            self.lost.append,
            interval_s=0.2,
        )
        self.partitions.leases = [
            Lease(link, LAYOUT.lease_key(k), node, ttl_s=2.0) for k in range(4)
        ]
        self.partitions.member = Lease(link, f"members.{node}", node, ttl_s=2.0)
        self.partitions.keeper.leases = self.partitions._held_leases
        self.partitions.keeper.interval_s = 0.3  # renewed well within the 2 s TTL

    def _start(self, k: int, lease: Lease) -> int:
        self.started.append(k)
        self.handed.append(lease.handed_over)
        return k

    @property
    def held(self) -> list[int]:
        return self.partitions.held


def holders(link: BrokerLink) -> list[str | None]:
    return [Lease(link, LAYOUT.lease_key(k)).owner() for k in range(4)]


def test_instances_share_the_partitions_and_one_that_stops_hands_its_share_on(
    link: BrokerLink,
) -> None:
    """One instance takes all four; a second joins and gets two, given back one at a time
    by the first (stopped before released); the first stops cleanly and the second holds
    all four at once, not after the leases' TTL."""
    members: list[str] = ["a"]
    a = Instance(link, "a", members)
    a.partitions.start()
    b = Instance(link, "b", members)
    try:
        assert wait_for(lambda: a.held == [0, 1, 2, 3], 10)
        members.append("b")
        b.partitions.start()
        assert wait_for(lambda: Counter(holders(link)) == {"a": 2, "b": 2}, 10), holders(link)
        assert sorted(a.stopped) == sorted(b.started) and len(b.started) == 2
        assert b.handed == [True, True] and a.handed == [False] * 4  # given, not orphaned
        assert set(a.held) == {0, 2} and set(b.held) == {1, 3}  # k mod 2 = rank
        a.partitions.stop()
        a.partitions.release_all()
        members.remove("a")
        assert wait_for(lambda: holders(link) == ["b"] * 4, 3), holders(link)
        assert not a.lost and not b.lost
    finally:
        for instance in (a, b):
            instance.partitions.stop()
            instance.partitions.release_all()


def test_a_dead_instances_partitions_are_taken_once_its_leases_age_out(
    link: BrokerLink,
) -> None:
    """An instance that stops renewing (killed): its member key and leases age out
    together, and the other takes its partitions, though the status still counts it."""
    members = ["a", "b"]
    a, b = Instance(link, "a", members), Instance(link, "b", members)
    a.partitions.start()
    b.partitions.start()
    try:
        assert wait_for(lambda: Counter(holders(link)) == {"a": 2, "b": 2}, 10), holders(link)
        a.partitions.stop()  # no more rounds
        a.partitions.keeper.stop()  # no more renewals: as if killed
        assert wait_for(lambda: holders(link) == ["b"] * 4, 6), holders(link)
        assert b.handed[-2:] == [False, False] and not b.lost  # a death, not a hand-over
    finally:
        b.partitions.stop()
        b.partitions.release_all()


def test_a_partition_slow_to_start_keeps_its_lease(link: BrokerLink) -> None:
    """Taking a partition reads its cameras' states (seconds at 1,000 cameras): its lease
    is renewed meanwhile, not lost to its TTL (2 s here) before the start returns."""
    slow = Instance(link, "a", ["a"])
    started = slow._start

    def start(k: int, lease: Lease) -> int:
        time.sleep(3.0)
        return started(k, lease)

    slow.partitions._start = start
    slow.partitions.start()
    try:
        assert wait_for(lambda: 0 in slow.held, 10)
        time.sleep(1.0)
        assert not slow.lost and holders(link)[0] == "a"
    finally:
        slow.partitions.stop()
        slow.partitions.release_all()


def test_current_only_while_every_lease_held_is_renewed_within_its_ttl(
    link: BrokerLink,
) -> None:
    """What the event writer asks before each write: a held lease not renewed within its
    TTL (the process paused) makes it False at once, before the keeper notices."""
    a = Instance(link, "a", ["a"])
    a.partitions.start()
    try:
        assert wait_for(lambda: a.held == [0, 1, 2, 3], 10)
        assert a.partitions.current()
        a.partitions.keeper.stop()  # paused: nothing renews
        a.partitions.stop()
        a.partitions.leases[2].renewed_at -= 2.0  # one lease past its 2 s TTL
        assert not a.partitions.current()
    finally:
        a.partitions.stop()
        a.partitions.release_all()
