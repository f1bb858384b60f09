"""The scores' partitions among the events instances: each instance takes its fair share
by itself, and the partitions of one that died or stopped go to the others.

Each camera belongs to one of `broker.partitions` partitions (handoff/scores.py); each
partition has a lease (handoff/lease.py) and a durable consumer of its own. Every
`hazardwatch events` started with the same settings runs a `Partitions` coordinator that,
every `interval_s`:

- reads who is up: the events instances that reported to the status bucket within its
  TTL and whose member key in the lease bucket (`members.<node>`, renewed with their
  leases) is alive, this one included. A dead instance's member key ages out with its
  leases, not after the status bucket's longer TTL. Ranked by node id, instance r of M
  has the fair share N // M, plus one when r < N mod M (the shares add up to N), and
  prefers the partitions k with k mod M = r (two instances started together reach for
  different ones);
- holds more than its share (an instance joined): gives back one partition, the one
  least meant for it. Its consumer is stopped, every frame it handed on stored and
  acked, its cameras' states saved and their open events left open for the next owner
  to continue; only then is the lease released, so the next owner reads everything the
  last one wrote;
- holds less (it started, or one left): takes free partitions, preferred ones first;
- a partition left free for `ORPHAN_S` (its owner died) is taken by any instance, over
  its share if need be: a dead owner's partitions move once its lease ages out
  (`LEASE_TTL_S`), whatever the shares say; the shares even out afterwards. A partition
  this instance gave back within `REGIVE_S` is not taken again that way: it was given
  to the instance that joined.

A lease's revision is its fencing token: one `LeaseKeeper` renews every held lease, and
a lease that could not be renewed within its TTL stops this instance (`on_lost`).
Needs nats-server 2.9 (key-value TTL and compare-and-set; filtered durable consumers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from hazardwatch.handoff.lease import Lease, LeaseKeeper
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.scores import ScoresLayout
from hazardwatch.lifecycle import Periodic

log = logging.getLogger(__name__)
T = TypeVar("T")

INTERVAL_S = 1.0
ORPHAN_S = 1.0  # a partition free this long (two rounds) is anybody's
REGIVE_S = 10.0  # one given back is left this long to the instance it was given to


def member_key(node: str) -> str:
    return f"members.{node}"


def fair_share(node: str, members: list[str], partitions: int) -> int:
    """How many partitions `node` should hold among `members` (ranked by id)."""
    ranked = sorted(set(members) | {node})
    rank, count = ranked.index(node), len(ranked)
    return partitions // count + (1 if rank < partitions % count else 0)


def preferred(node: str, members: list[str], partitions: int) -> list[int]:
    """Every partition, those meant for `node` (k mod M = its rank) first."""
    ranked = sorted(set(members) | {node})
    rank, count = ranked.index(node), len(ranked)
    return sorted(range(partitions), key=lambda k: (k % count != rank, k))


class Partitions(Periodic, Generic[T]):
    """Takes and gives back partitions as above. `start(k, lease)` begins consuming
    partition k (its lease held) and returns what runs it; `stop(k, running)` ends that,
    everything handed on stored and acked, before the lease is released."""

    def __init__(
        self,
        link: BrokerLink,
        layout: ScoresLayout,
        node: str,
        members: Callable[[], list[str]],
        start: Callable[[int, Lease], T],
        stop: Callable[[int, T], None],
        on_lost: Callable[[str], None],
        interval_s: float = INTERVAL_S,
    ) -> None:
        super().__init__(interval_s, "partitions")
        self.layout = layout
        self.node = node
        self._members = members
        self._start, self._stop_partition = start, stop
        self.link = link
        self.leases = [Lease(link, layout.lease_key(k), node) for k in range(layout.partitions)]
        self.member = Lease(link, member_key(node), node)
        self._peers: dict[str, Lease] = {}  # the other instances' member keys
        self.running: dict[int, T] = {}
        self._lock = threading.Lock()  # `running` is read by the API's and metrics' threads
        # Acquired and starting (reading its cameras' states can take seconds): renewed.
        self._taking: set[int] = set()
        self._free_since: dict[int, float] = {}
        self._given_at: dict[int, float] = {}
        self._stood_by = False
        self.keeper = LeaseKeeper(self._held_leases, on_lost)

    def _held_leases(self) -> list[Lease]:
        with self._lock:
            held = [*self.running, *self._taking]
        return [self.member, *(self.leases[k] for k in held)]

    def current(self) -> bool:
        """Every lease this instance holds is current: nobody else can have taken any of
        its partitions (what the event writer asks before each write)."""
        return all(lease.current() for lease in self._held_leases() if lease.held)

    @property
    def held(self) -> list[int]:
        with self._lock:
            return sorted(self.running)

    def owns(self, camera: str) -> bool:
        return self.layout.partition_of(camera) in self.held

    def start(self) -> None:
        self.keeper.start()
        super().start()

    def tick(self) -> None:
        if not self.member.held:  # at the start, or a restart's old key not yet aged out
            try:
                self.member.acquire()
            except Exception as exc:
                log.debug("member key not written: %s", exc)
        members = [n for n in self._members() if n != self.node and self._alive(n)]
        share = fair_share(self.node, members, self.layout.partitions)
        held = self.held
        order = preferred(self.node, members, self.layout.partitions)
        if len(held) > share:  # one at a time, the one meant least for this instance
            excess = max(held, key=order.index)
            self._give_back(excess, f"{len(held)} held, a fair share is {share}")
            return
        now = time.monotonic()
        for k in order:
            if k in held:
                continue
            owner = self._owner(k)
            if owner is not None:
                self._free_since.pop(k, None)
                continue
            free_s = now - self._free_since.setdefault(k, now)
            orphan = free_s >= ORPHAN_S and now - self._given_at.get(k, -REGIVE_S) >= REGIVE_S
            if len(self.held) < share or orphan:
                self._take(k)
        if not self.held and not self._stood_by:
            self._stood_by = True
            log.warning(
                "events: other instances consume the scores' %d partition(s); this one "
                "stands by (its API serves from the database) and takes a share when one "
                "stops, or one joins",
                self.layout.partitions,
            )

    def _alive(self, node: str) -> bool:
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = Lease(self.link, member_key(node))
        try:
            return peer.read_owner() is not None
        except Exception:  # the broker away: counted, as its status says
            return True

    def _owner(self, k: int) -> str | None:
        try:
            return self.leases[k].read_owner()
        except Exception as exc:  # the broker away: nothing is taken this round
            log.debug("lease of partition %d not read: %s", k, exc)
            return "unknown"

    def _take(self, k: int) -> None:
        lease = self.leases[k]
        try:
            if not lease.acquire():
                return
        except Exception as exc:  # the broker away: the next round tries again
            log.debug("lease of partition %d not acquired: %s", k, exc)
            return
        lease.handed_over = lease.was_handed()
        with self._lock:
            self._taking.add(k)
        try:
            running = self._start(k, lease)
        except Exception:
            log.exception("partition %d could not be started; its lease is given back", k)
            with self._lock:
                self._taking.discard(k)
            lease.release()
            return
        with self._lock:
            self.running[k] = running
            self._taking.discard(k)
        self._free_since.pop(k, None)
        stood_by, self._stood_by = self._stood_by, False
        log.warning(
            "events: this instance took the scores over%s: partition %d of %d (holds %s)",
            " after standing by" if stood_by else "",
            k,
            self.layout.partitions,
            ", ".join(map(str, self.held)),
        )

    def _give_back(self, k: int, why: str) -> None:
        """Stopped and stored while still held (its keeper renews the lease meanwhile,
        so nobody takes it half handed over), then released."""
        log.info("events: giving partition %d back (%s)", k, why)
        lease = self.leases[k]
        try:
            self._stop_partition(k, self.running[k])
            lease.mark_handed()  # the next owner continues its open events as handed over
        finally:
            with self._lock:
                del self.running[k]
            lease.release()
            self._given_at[k] = time.monotonic()

    def stop(self, timeout: float = 5.0) -> bool:
        """No more taking or giving back; the held partitions stay held, their leases
        renewed, until `release_all` (once what they consumed is stored)."""
        return super().stop(timeout)

    def hand_over_all(self) -> bool:
        """A clean stop (after `stop`): with another instance up, every partition is given
        back as on a rebalance — its open events go on there instead of being closed here
        and opened again. False when no other instance is up: the caller closes what is
        open, as a single instance does."""
        self.member.release()  # the others stop counting this one at once
        others = [n for n in self._members() if n != self.node and self._alive(n)]
        if not others:
            return False
        for k in self.held:
            self._give_back(k, f"stopping; {len(others)} other instance(s) up")
        return True

    def release_all(self) -> None:
        """A clean stop: every lease released now, so others take over at once."""
        self.keeper.stop()
        for k in self.held:
            self.leases[k].release()
        with self._lock:
            self.running.clear()
        self.member.release()
