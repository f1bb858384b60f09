"""Benchmark: the review page at scale. Seeds N events (default 100,000) over 20 cameras
in MariaDB, some reviewed and judged, then measures on the real API server:

- the API's answer to the first page (`GET /api/v1/events?limit=25`) and to filtered
  pages (one camera; one camera not yet reviewed; false alarms), and to pages deep in by
  offset and by keyset (`before`/`after`, what the page's Older/Newer use), median and
  p95 of repeated requests;
- in Debian's chromium (Playwright), the time from navigating to `/` (logged in) to the
  rendered list, and from a filter submitted to the filtered list;
- the query plans MariaDB chooses for those lists (EXPLAIN), so a missing index shows.

Targets (issue 25): under 300 ms for the API answer, under 1 s to a rendered list.

    python bench/review_page.py [--events 100000] [--repeat 20] [--json]

MariaDB is the local one (`HAZARDWATCH_TEST_MYSQL_URL`, default root@127.0.0.1:3306); the
bench creates and drops its own database (score_rows.database).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import serve_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hazardwatch.api.accounts import hash_password
from hazardwatch.api.app import ApiState, create_app
from hazardwatch.metrics import Metrics
from hazardwatch.settings import ApiSettings
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.migrate import upgrade
from hazardwatch.storage.models import Camera, Event, EventReview
from hazardwatch.storage.repository import Repository
from procs import cpu_flags
from score_rows import database

CAMERAS = [f"cam-{i:02d}" for i in range(20)]
CLASSES = ["traffic_accident", "fire_smoke", "person_down", "debris_on_road", "stalled_vehicle"]
PASSWORD = "bench password"


def seed(engine: sa.Engine, events: int) -> None:
    """`events` events over 20 cameras, one every 6 s back from now; every 10th judged,
    the older half reviewed by alice."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Camera.__table__),
            [{"name": c, "source_kind": "rtsp", "created_at": now} for c in CAMERAS],
        )
        for first in range(0, events, 5000):
            rows = []
            reviews = []
            for i in range(first, min(events, first + 5000)):
                start = now - timedelta(seconds=6 * i)
                event_uuid = str(uuid.UUID(int=i + 1))
                rows.append({
                    "uuid": event_uuid, "camera": CAMERAS[i % 20],
                    "class_name": CLASSES[i % 5], "severity": "critical", "status": "closed",
                    "started_at": start, "ended_at": start + timedelta(seconds=5),
                    "peak_at": start, "peak_score": 0.6, "mean_score": 0.5,
                    "snapshot_path": f"{CAMERAS[i % 20]}/{i}.jpg", "model_name": "ViT-B/32",
                    "prompt_bank_version": "bench", "revision": 1, "created_at": now,
                    "updated_at": now,
                    "verdict": ("false_alarm" if i % 20 == 0 else "confirmed") if i % 10 == 0
                    else None,
                })  # fmt: skip
                if i >= events // 2:
                    reviews.append({"reviewer": "alice", "event_uuid": event_uuid,
                                    "reviewed_at": now})  # fmt: skip
            conn.execute(sa.insert(Event.__table__), rows)
            if reviews:
                conn.execute(sa.insert(EventReview.__table__), reviews)


def queries(engine: sa.Engine, events: int) -> dict[str, dict[str, str]]:
    """The lists measured; the deep pages start halfway down the list."""
    half = events // 2
    with engine.connect() as conn:
        middle = conn.execute(
            sa.select(Event.uuid)
            .order_by(Event.started_at.desc(), Event.id.desc())
            .offset(half - 1)
            .limit(1)
        ).scalar_one()
    return {
        "first page": {},
        "one camera": {"camera": "cam-07"},
        "one camera, not reviewed": {"camera": "cam-07", "reviewed": "false"},
        "false alarms": {"verdict": "false_alarm"},
        "page 200 by offset": {"offset": "5000"},
        f"page {half // 25 + 1} by offset": {"offset": str(half)},
        f"page {half // 25 + 1} by keyset (Older)": {"before": middle},
        f"page {half // 25} by keyset (Newer)": {"after": middle},
    }


def time_api(
    base: str, cookies: httpx.Cookies, repeat: int, lists: dict[str, dict[str, str]]
) -> dict[str, dict[str, float]]:
    out = {}
    with httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
        for name, params in lists.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get("/api/v1/events", params={"limit": "25", **params})
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
            times.sort()
            out[name] = {
                "median_ms": 1000 * statistics.median(times),
                "p95_ms": 1000 * times[max(0, int(0.95 * len(times)) - 1)],
                "items": float(len(answer.json()["items"])),
            }
    return out


def explain(
    engine: sa.Engine, repository: Repository, lists: dict[str, dict[str, str]]
) -> dict[str, list[str]]:
    """MariaDB's plan for each list query, as the repository builds it."""
    plans = {}
    captured: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM events" in statement:
            captured.append(cursor.mogrify(statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    for name, params in lists.items():
        captured.clear()
        reviewed = {"true": True, "false": False}.get(params.get("reviewed", ""))
        repository.list_events(
            camera=params.get("camera"), verdict=params.get("verdict"),  # type: ignore[arg-type]
            reviewed_by="alice", reviewed=reviewed, limit=25,
            offset=int(params.get("offset", 0)), before=params.get("before"),
            after=params.get("after"),
        )  # fmt: skip
        with engine.connect() as conn:  # the list itself (a keyset page looks its key up first)
            rows = conn.exec_driver_sql("EXPLAIN " + captured[-1]).mappings().all()
        plans[name] = [
            f"{r['table']}: type={r['type']} key={r['key']} rows={r['rows']} extra={r['Extra']}"
            for r in rows
        ]
    sa.event.remove(engine, "before_cursor_execute", capture)
    return plans


def time_browser(base: str, repeat: int) -> dict[str, float] | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    first, filtered = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")
        page.get_by_label("Name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#events tbody tr")
        for _ in range(repeat):
            started = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_selector("#events tbody tr:nth-child(25)")
            first.append(time.perf_counter() - started)
            page.get_by_label("Camera").fill("cam-11")
            started = time.perf_counter()
            page.get_by_role("button", name="Filter").click()
            page.wait_for_selector("#events tbody tr:nth-child(25) >> text=cam-11")
            filtered.append(time.perf_counter() - started)
        browser.close()
    return {
        "to_rendered_list_median_ms": 1000 * statistics.median(first),
        "to_rendered_list_max_ms": 1000 * max(first),
        "filter_to_list_median_ms": 1000 * statistics.median(filtered),
        "filter_to_list_max_ms": 1000 * max(filtered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with database("mysql") as url, tempfile.TemporaryDirectory() as media:
        engine = create_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        seed(engine, args.events)
        seeded_s = time.perf_counter() - started
        repository = Repository(engine)
        users = [{"name": "alice", "role": "operator",
                  "password_hash": hash_password(PASSWORD, n=2**14)}]  # fmt: skip
        state = ApiState(repository, Path(media), Metrics())
        with serve_app(create_app(state, ApiSettings(users=users))) as base:  # type: ignore[arg-type]
            login = httpx.post(
                base + "/api/v1/session", json={"name": "alice", "password": PASSWORD}
            )
            lists = queries(engine, args.events)
            api = time_api(base, login.cookies, args.repeat, lists)
            browser = time_browser(base, max(3, args.repeat // 4))
        plans = explain(engine, repository, lists)
        engine.dispose()
    report = {
        "events": args.events, "cameras": len(CAMERAS), "seeded_s": seeded_s,
        "cpu_flags": cpu_flags(), "api": api, "browser": browser, "plans": plans,
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.events} events over {len(CAMERAS)} cameras in MariaDB (seeded in "
          f"{seeded_s:.0f} s); CPU flags: {report['cpu_flags']}")  # fmt: skip
    print(f"{'API GET /api/v1/events?limit=25':<44} {'median':>8} {'p95':>8}")
    for name, m in api.items():
        print(f"  {name:<42} {m['median_ms']:>6.0f} ms {m['p95_ms']:>5.0f} ms")
    if browser is None:
        print("browser: no chromium (apt-get install chromium)")
    else:
        print(f"browser: / to a rendered list {browser['to_rendered_list_median_ms']:.0f} ms "
              f"(max {browser['to_rendered_list_max_ms']:.0f}), a filter to its list "
              f"{browser['filter_to_list_median_ms']:.0f} ms "
              f"(max {browser['filter_to_list_max_ms']:.0f})")  # fmt: skip
    print("query plans:")
    for name, lines in plans.items():
        print(f"  {name}:")
        for line in lines:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
