"""Benchmark: CPU per frame of storing the score series (`Repository.add_scores`).

Each scored frame becomes one row per class; the event writer stores them in batches
across cameras, and the same frame delivered again after a crash must be stored once
(INSERT … IGNORE / ON CONFLICT DO NOTHING on the unique key). Two ways of writing one
batch, measured back to back in one run (the machine is noisy; the ratio is the figure):

- **executemany** (what the repository does): one compiled statement, cached, run with
  the list of rows; `cameras.last_seen_at` moved by one UPDATE run with a row per camera;
- **values** (what it did before): an INSERT with a VALUES clause of every row, compiled
  again for each batch, and one UPDATE statement built per camera.

    python bench/score_rows.py [--database sqlite|mysql|both] [--batches 200] [--json]

MySQL is the local MariaDB (`HAZARDWATCH_TEST_MYSQL_URL`, default root@127.0.0.1:3306);
the bench creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hazardwatch.records import ScoreSample
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.migrate import upgrade
from hazardwatch.storage.models import Camera, ScoreRow
from hazardwatch.storage.repository import Repository

CLASSES = ["normal", "crash", "fire", "smoke", "person_down", "animal", "debris", "stalled"]
MYSQL = os.environ.get("HAZARDWATCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hw-rows-") as tmp:
            yield f"sqlite:///{tmp}/rows.db"
        return
    server = sa.create_engine(MYSQL)
    name = f"hw_bench_{uuid.uuid4().hex[:8]}"
    with server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield server.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        server.dispose()


class Batches:
    """Batches of `frames` scored frames spread over `cameras` cameras, never repeated."""

    def __init__(self, frames: int, cameras: int) -> None:
        self.frames, self.cameras, self.n = frames, cameras, 0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def next(self) -> list[ScoreSample]:
        out = []
        for i in range(self.frames):
            self.n += 1
            ts = self.t0 + timedelta(milliseconds=100 * self.n)
            camera = f"cam{i % self.cameras}"
            out += [ScoreSample(camera, ts, c, 0.125, 0.25) for c in CLASSES]
        return out


def values_way(repo: Repository, samples: list[ScoreSample]) -> None:
    """The previous write: every row in a VALUES clause, compiled per batch."""
    rows = [
        {"camera": s.camera, "ts": s.ts, "class_name": s.class_name, "score": s.score,
         "signal": s.signal}
        for s in samples
    ]  # fmt: skip
    latest: dict[str, datetime] = {}
    for s in samples:
        latest[s.camera] = max(s.ts, latest.get(s.camera, s.ts))
    with repo.engine.begin() as conn:
        stmt = repo._insert(ScoreRow.__table__).values(rows)  # type: ignore[arg-type]
        if repo.engine.dialect.name in ("mysql", "mariadb"):
            stmt = stmt.prefix_with("IGNORE")
        else:
            stmt = stmt.on_conflict_do_nothing()
        conn.execute(stmt)
        for camera, ts in latest.items():
            conn.execute(
                sa.update(Camera)
                .where(
                    Camera.name == camera,
                    sa.or_(Camera.last_seen_at.is_(None), Camera.last_seen_at < ts),
                )
                .values(last_seen_at=ts)
            )


def ms_per_frame(write: Callable[[list[ScoreSample]], None], batches: Batches, n: int) -> float:
    work = [batches.next() for _ in range(n)]
    started = time.process_time()
    for samples in work:
        write(samples)
    return 1000 * (time.process_time() - started) / (n * batches.frames)


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with database(kind) as url:
        engine = create_engine(url)
        upgrade(engine)
        repo = Repository(engine)
        batches = Batches(args.frames, args.cameras)
        repo.add_scores(batches.next())  # cameras registered, connections warm
        out: dict[str, list[float]] = {"executemany": [], "values": []}
        for _ in range(args.rounds):  # interleaved: drifts of the machine hit both
            out["executemany"].append(ms_per_frame(repo.add_scores, batches, args.batches))
            out["values"].append(ms_per_frame(lambda s: values_way(repo, s), batches, args.batches))
        engine.dispose()
    best = {way: min(times) for way, times in out.items()}
    return {**best, "speedup": best["values"] / best["executemany"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "mysql", "both"], default="both")
    parser.add_argument("--batches", type=int, default=100, help="batches per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8, help="scored frames per batch")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = ["sqlite", "mysql"] if args.database == "both" else [args.database]
    report = {
        "frames_per_batch": args.frames,
        "classes": len(CLASSES),
        "cameras": args.cameras,
        "cpu_ms_per_frame": {kind: measure(kind, args) for kind in kinds},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for kind, row in report["cpu_ms_per_frame"].items():
            print(
                f"{kind}: {row['executemany']:.3f} ms CPU per frame with executemany, "
                f"{row['values']:.3f} with a VALUES clause per batch ({row['speedup']:.1f}×)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
