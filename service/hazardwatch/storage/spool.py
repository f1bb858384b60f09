"""The durable spool: writes that could not reach the database wait here, in order.

A small SQLite file (WAL, synchronous=FULL) next to the data, so a database outage or a
crash of this process loses nothing that was accepted. Items are replayed oldest first;
event upserts are idempotent by uuid and guarded by revision, so a replay that is
interrupted and repeated stores each event exactly once. An event's newer state replaces
its older one in the spool (each record carries the whole event), so a long outage costs
one item per event, not one per update. The spool is bounded: when full, the oldest score
samples go first (dashboard detail), events and clip links only when nothing else is left.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

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

log = logging.getLogger(__name__)
Kind = Literal["event", "scores", "clip", "state", "weather", "keyframes"]
Item = EventRecord | list[ScoreSample] | ClipLink | CameraStateRecord | WeatherLink | KeyframeBatch


def encode(item: Item) -> tuple[Kind, str]:
    if isinstance(item, EventRecord):
        return "event", json.dumps(item.to_json())
    if isinstance(item, ClipLink):
        return "clip", json.dumps(asdict(item))
    if isinstance(item, CameraStateRecord):
        return "state", json.dumps(asdict(item))
    if isinstance(item, WeatherLink):
        return "weather", json.dumps({"uuid": item.uuid, "weather": item.weather.to_json()})
    if isinstance(item, KeyframeBatch):
        return "keyframes", json.dumps([r.to_json() for r in item.records])
    return "scores", json.dumps([asdict(s) for s in item], default=_iso)


def decode(kind: str, payload: str) -> Item:
    data: Any = json.loads(payload)
    if kind == "event":
        return EventRecord.from_json(data)
    if kind == "clip":
        return ClipLink(**data)
    if kind == "state":
        return CameraStateRecord(**data)
    if kind == "weather":
        return WeatherLink(data["uuid"], Weather.from_json(data["weather"]))
    if kind == "keyframes":
        return KeyframeBatch(tuple(KeyframeRecord.from_json(r) for r in data))
    if kind == "scores":
        return [
            ScoreSample(
                s["camera"],
                datetime.fromisoformat(s["ts"]),
                s["class_name"],
                s["score"],
                s.get("signal"),
            )
            for s in data
        ]
    raise ValueError(f"unknown spool item kind {kind!r}")


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


class Spool:
    """A bounded, durable FIFO of pending database writes."""

    def __init__(self, path: Path, max_items: int = 200_000) -> None:
        self.path = path
        self.max_items = max_items
        self.dropped: dict[Kind, int] = {
            "event": 0,
            "scores": 0,
            "clip": 0,
            "state": 0,
            "weather": 0,
            "keyframes": 0,
        }
        self.superseded = 0  # older states of an event replaced by a newer one (no loss)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL,"
            " event_uuid TEXT)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(spool)")}
        if "event_uuid" not in columns:  # a spool left by version 0.1
            self._db.execute("ALTER TABLE spool ADD COLUMN event_uuid TEXT")
        self._db.execute("CREATE INDEX IF NOT EXISTS spool_event ON spool (event_uuid)")
        self._count = self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def __len__(self) -> int:
        return int(self._count)

    def push(self, item: Item) -> None:
        kind, payload = encode(item)
        # The key of what a newer item replaces: an event's older state, a camera's state.
        uuid = (
            item.uuid
            if isinstance(item, EventRecord)
            else item.camera
            if isinstance(item, CameraStateRecord)
            else None
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if uuid is not None:
                    gone = self._db.execute(
                        "DELETE FROM spool WHERE kind = ? AND event_uuid = ?", (kind, uuid)
                    ).rowcount
                    self.superseded += gone
                    self._count -= gone
                if self._count >= self.max_items:
                    self._make_room()
                self._db.execute(
                    "INSERT INTO spool (kind, payload, event_uuid) VALUES (?, ?, ?)",
                    (kind, payload, uuid),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._count = self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
                raise
            self._count += 1

    def _make_room(self) -> None:
        # What is worth least goes first: a dashboard's samples, then search's keyframes.
        row = None
        for kind in ("scores", "keyframes"):
            row = (
                row
                or self._db.execute(
                    "SELECT id, kind FROM spool WHERE kind = ? ORDER BY id LIMIT 1", (kind,)
                ).fetchone()
            )
        if row is None:
            row = self._db.execute("SELECT id, kind FROM spool ORDER BY id LIMIT 1").fetchone()
            log.error(
                "spool full (%d items): dropping the oldest %s; raise storage.spool_max_items",
                self.max_items,
                row[1],
            )
        self.dropped[row[1]] += 1
        self._db.execute("DELETE FROM spool WHERE id = ?", (row[0],))
        self._count -= 1

    def peek(self, limit: int = 100) -> list[tuple[int, Item]]:
        """The oldest items, without removing them; unreadable rows are dropped with a log."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, payload FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        out: list[tuple[int, Item]] = []
        for row_id, kind, payload in rows:
            try:
                out.append((row_id, decode(kind, payload)))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("spool item %d unreadable, dropped: %s", row_id, exc)
                self.remove([row_id])
        return out

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            cursor = self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])
            self._count -= max(cursor.rowcount, 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
