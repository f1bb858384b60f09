"""The scores' lease against a private nats-server: one holder at a time, the revision as
a fencing token, a lapsed holder told so before it can renew."""

from __future__ import annotations

import threading
import time

from hazardwatch.handoff.lease import Lease, LeaseKeeper
from hazardwatch.handoff.link import BrokerLink
from tests.helpers import wait_for

KEY = "HAZARDWATCH_SCORES.events"


def test_one_holder_at_a_time_and_a_clean_release_hands_it_on_at_once(link: BrokerLink) -> None:
    first, second = Lease(link, KEY, "a"), Lease(link, KEY, "b")
    assert first.acquire() and first.current()
    assert not second.acquire() and not second.held
    assert second.owner() == "a"
    assert first.renew() and first.renew()  # each renew moves the token on
    first.release()
    assert not first.held and not first.current()
    assert second.acquire() and second.owner() == "b"


def test_a_lapsed_holder_loses_its_token_to_the_next_and_cannot_renew(link: BrokerLink) -> None:
    """The holder stops renewing (paused): its key ages out after the TTL, another takes
    it, and the first finds its lease not current at once, and its renew refused."""
    first, second = Lease(link, KEY, "a", ttl_s=1.0), Lease(link, KEY, "b", ttl_s=1.0)
    assert first.acquire()
    token = first.revision
    assert not second.acquire()
    assert wait_for(second.acquire, 5, interval=0.1)  # aged out: taken
    assert not first.current() and first.revision == token
    assert not first.renew() and not first.held
    assert second.renew() and second.owner() == "b"


def test_the_keeper_renews_while_it_can_and_reports_the_loss_once(link: BrokerLink) -> None:
    lease = Lease(link, KEY, "a", ttl_s=2.0)
    assert lease.acquire()
    lost: list[str] = []
    keeper = LeaseKeeper(lease, lost.append, renew_s=0.2)
    keeper.start()
    try:
        time.sleep(3.0)  # past the TTL: kept alive by the renewals
        assert lease.current() and not lost
        # Another writer takes the key over (as if the TTL had passed unseen).
        thief = Lease(link, KEY, "b", ttl_s=2.0)
        assert lease.revision is not None
        link.call(_steal(thief, lease.revision))
        assert wait_for(lambda: bool(lost), 5)
        time.sleep(0.5)
        assert lost == [f"another instance holds {KEY} now"]
    finally:
        keeper.stop()


def test_a_keeper_that_ran_late_past_the_ttl_gives_up_without_renewing(link: BrokerLink) -> None:
    """A process paused past the TTL: on waking, its lease is no longer current and the
    keeper reports the loss before trying to renew — even though nobody took the key."""
    lease = Lease(link, KEY, "a", ttl_s=0.5)
    assert lease.acquire()
    lost: list[str] = []
    done = threading.Event()

    def on_lost(why: str) -> None:
        lost.append(why)
        done.set()

    time.sleep(0.6)  # the pause
    keeper = LeaseKeeper(lease, on_lost, renew_s=10.0)
    keeper.start()
    try:
        assert done.wait(2)
        assert lost[0].startswith(f"{KEY} not renewed for")
    finally:
        keeper.stop()


async def _steal(thief: Lease, revision: int) -> None:
    kv = await thief._bucket()
    await kv.update(thief.key, b"b", last=revision)


def test_instances_started_at_once_on_a_fresh_broker_get_one_owner(link: BrokerLink) -> None:
    """Eight instances try for the lease at the same moment, before its bucket exists:
    exactly one holds it."""
    leases = [Lease(link, KEY, f"i{i}") for i in range(8)]
    start = threading.Barrier(len(leases))
    won: list[bool] = [False] * len(leases)

    def attempt(i: int) -> None:
        start.wait()
        won[i] = leases[i].acquire()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(won) == 1
    assert leases[0].owner() == f"i{won.index(True)}"
