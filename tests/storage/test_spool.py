from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from hazardwatch.records import (
    CameraStateRecord,
    ClipLink,
    EventRecord,
    KeyframeBatch,
    KeyframeRecord,
    ScoreSample,
    Weather,
    WeatherLink,
)
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
    spool.push(record("b"))
    spool.push(ClipLink("a", "cam/a.mp4"))
    spool.close()
    again = Spool(tmp_path / "spool.db")
    assert len(again) == 4
    items = [item for _, item in again.peek(10)]
    assert items == [record("a"), scores, record("b"), ClipLink("a", "cam/a.mp4")]
    again.remove([row_id for row_id, _ in again.peek(3)])
    assert len(again) == 1 and again.peek(10)[0][1] == ClipLink("a", "cam/a.mp4")


def test_weather_round_trips_on_events_and_as_late_links(tmp_path: Path) -> None:
    rain = Weather(61, "slight rain", 3.5, 0.4, 18.0, None, T)
    spool = Spool(tmp_path / "spool.db")
    with_weather = dataclasses.replace(record("a"), weather=rain)
    spool.push(with_weather)
    spool.push(WeatherLink("b", rain))
    spool.close()
    items = [item for _, item in Spool(tmp_path / "spool.db").peek(10)]
    assert items == [with_weather, WeatherLink("b", rain)]


def test_a_newer_state_of_an_event_replaces_the_spooled_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.push(record("a"))
    spool.push(record("b"))
    spool.push(record("a", 1))
    spool.push(record("a", 2))
    items = [item for _, item in spool.peek(10)]
    assert items == [record("b"), record("a", 2)]
    assert (len(spool), spool.superseded) == (2, 2)
    assert sum(spool.dropped.values()) == 0  # nothing lost: the last state holds it all


def test_a_spool_from_before_the_event_column_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "spool.db")
    old.execute(
        "CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " payload TEXT NOT NULL)"
    )
    old.execute("INSERT INTO spool (kind, payload) VALUES ('clip', ?)",
                ('{"uuid": "a", "clip_path": "cam/a.mp4"}',))  # fmt: skip
    old.commit()
    old.close()
    spool = Spool(tmp_path / "spool.db")
    spool.push(record("a"))
    assert [item for _, item in spool.peek(10)] == [ClipLink("a", "cam/a.mp4"), record("a")]


def test_bounded_dropping_scores_then_keyframes_before_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_items=3)
    keyframes = KeyframeBatch(
        (KeyframeRecord("cam", T, b"\x00\x3c" * 4, "cam/keyframes/k.jpg", 9, "m", "a"),)
    )
    spool.push(keyframes)
    spool.push([ScoreSample("cam", T, "x", 0.1)])
    spool.push(record("a"))
    spool.push([ScoreSample("cam", T, "x", 0.2)])  # full: the score batch goes, not keyframes
    assert [type(i).__name__ for _, i in spool.peek(10)] == ["KeyframeBatch", "EventRecord",
                                                              "list"]  # fmt: skip
    assert spool.peek(1)[0][1] == keyframes  # round-trips, embedding bytes and all
    spool.push(record("b"))  # full: the other score batch goes
    spool.push(record("c"))  # full: then the keyframes
    assert [type(i).__name__ for _, i in spool.peek(10)] == ["EventRecord"] * 3
    spool.push(record("d"))  # only events left: the oldest event goes, and is counted
    assert [i.uuid for _, i in spool.peek(10)] == ["b", "c", "d"]  # type: ignore[union-attr]
    assert spool.dropped == {
        "scores": 2, "keyframes": 1, "event": 1, "clip": 0, "state": 0, "weather": 0,
    }  # fmt: skip
    assert len(spool) == 3


def test_an_unreadable_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.push(record("a"))
    spool._db.execute("INSERT INTO spool (kind, payload) VALUES ('event', '{broken')")
    spool._count += 1
    spool.push(record("b"))
    assert [i.uuid for _, i in spool.peek(10)] == ["a", "b"]  # type: ignore[union-attr]
    assert len(spool) == 2


def test_a_camera_state_round_trips_and_the_newest_per_camera_wins(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.push(CameraStateRecord("gate", '{"v": 1}', "prior", 0))
    spool.push(CameraStateRecord("yard", '{"v": 1}', "prior", 0))
    spool.push(record("gate"))  # an event whose uuid happens to equal a camera's name
    spool.push(CameraStateRecord("gate", '{"v": 2}', "calibrated", 4))
    items = [item for _, item in spool.peek(10)]
    assert items == [
        CameraStateRecord("yard", '{"v": 1}', "prior", 0),
        record("gate"),
        CameraStateRecord("gate", '{"v": 2}', "calibrated", 4),
    ]
