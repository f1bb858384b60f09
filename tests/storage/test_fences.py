"""The database's fencing tokens: each take of a partition draws a newer one, and an event
or camera-state write with an older one is refused whole (on SQLite and MariaDB)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from hazardwatch.records import EventRecord
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.fences import Fence, FencedError
from hazardwatch.storage.repository import Repository

T = datetime(2026, 12, 4, 12, tzinfo=UTC)


def event(uuid: str) -> EventRecord:
    return EventRecord(uuid, "gate", "fire_smoke", "critical", "open", T, T, 0.9, 0.8)


def test_each_take_draws_a_newer_token_per_partition(repo: Repository) -> None:
    assert repo.fences.take(0, "a").token == 1
    assert repo.fences.take(0, "b").token == 2
    assert repo.fences.take(3, "a").token == 1
    assert repo.fences.newest() == {0: (2, "b"), 3: (1, "a")}


def test_a_write_with_an_older_token_is_refused_and_leaves_nothing(repo: Repository) -> None:
    """The paused owner's writes after the takeover: refused, nothing of them stored; the
    new owner's, and writes without a token (one process, the spool), go through."""
    old = repo.fences.take(0, "a")
    new = repo.fences.take(0, "b")
    with pytest.raises(FencedError, match="partition 0 was taken over"):
        repo.upsert_event(event("late"), old)
    with pytest.raises(FencedError):
        repo.save_camera_state("gate", '{"version": 1}', "prior", 0, fence=old)
    assert repo.get_event("late") is None and repo.load_camera_states() == {}
    repo.upsert_event(event("current"), new)
    assert repo.save_camera_state("gate", '{"version": 2}', "prior", 0, fence=new)
    repo.upsert_event(event("unfenced"))
    assert {e.uuid for e in repo.list_events()} == {"current", "unfenced"}
    assert repo.load_camera_states() == {"gate": '{"version": 2}'}


@pytest.mark.mysql
def test_a_write_in_its_transaction_when_the_takeover_comes_commits_first(
    mysql_url: str,
) -> None:
    """The old owner's write has checked its token and not yet committed: the new owner's
    draw waits on the partition's row until it has, so the new owner reads that write,
    and the old owner's next write is refused."""
    engine = create_engine(mysql_url)
    migrate.upgrade(engine)
    repo = Repository(engine)
    old = repo.fences.take(0, "a")
    drawn: list[int] = []
    with engine.begin() as conn:
        repo.fences.check(conn, old)  # the row share-locked until this commits
        taker = threading.Thread(target=lambda: drawn.append(repo.fences.take(0, "b").token))
        taker.start()
        taker.join(1.0)
        assert taker.is_alive() and not drawn  # waiting on the lock
    taker.join(10)
    assert drawn == [2]
    with pytest.raises(FencedError):
        repo.upsert_event(event("late"), old)
    engine.dispose()


def test_two_first_draws_at_once_both_get_a_token(repo: Repository) -> None:
    """The partition's row did not exist for either: the one whose insert lost draws
    again, from the row the other made, and gets the next token."""
    fences, raced = repo.fences, []
    first_draw = fences._draw

    def draw(partition: int, node: str) -> Fence:
        if not raced:  # the other instance's first draw commits first, so this one's
            raced.append(first_draw(partition, "other"))  # insert fails on the key
            raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
        return first_draw(partition, node)

    fences._draw = draw  # type: ignore[method-assign]
    assert fences.take(5, "this").token == 2 and raced[0].token == 1
    assert fences.newest() == {5: (2, "this")}
