from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hazardwatch.records import EventRecord, ScoreSample
from hazardwatch.storage.spool import Spool

T = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def record(uuid: str, revision: int = 0) -> EventRecord:
    return EventRecord(uuid, "cam", "fire_smoke", "critical", "open", T, T, 0.9, 0.8,
                       snapshot_path="cam/x.jpg", revision=revision)  # fmt: skip


def test_items_survive_a_reopen_in_order_and_round_trip(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    scores = [ScoreSample("cam", T, "fire_smoke", 0.25)]
    spool.push(record("a"))
    spool.push(scores)
    spool.push(record("a", 1))
    spool.close()
    again = Spool(tmp_path / "spool.db")
    assert len(again) == 3
    items = [item for _, item in again.peek(10)]
    assert items == [record("a"), scores, record("a", 1)]
    again.remove([row_id for row_id, _ in again.peek(2)])
    assert len(again) == 1 and again.peek(10)[0][1] == record("a", 1)


def test_bounded_dropping_scores_before_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_items=3)
    spool.push([ScoreSample("cam", T, "x", 0.1)])
    spool.push(record("a"))
    spool.push([ScoreSample("cam", T, "x", 0.2)])
    spool.push(record("b"))  # full: the oldest score batch goes
    spool.push(record("c"))  # full: the other score batch goes
    assert [type(i).__name__ for _, i in spool.peek(10)] == ["EventRecord"] * 3
    spool.push(record("d"))  # only events left: the oldest event goes, and is counted
    assert [i.uuid for _, i in spool.peek(10)] == ["b", "c", "d"]  # type: ignore[union-attr]
    assert (spool.dropped_scores, spool.dropped_events, len(spool)) == (2, 1, 3)


def test_an_unreadable_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.push(record("a"))
    spool._db.execute("INSERT INTO spool (kind, payload) VALUES ('event', '{broken')")
    spool._count += 1
    spool.push(record("b"))
    assert [i.uuid for _, i in spool.peek(10)] == ["a", "b"]  # type: ignore[union-attr]
    assert len(spool) == 2
