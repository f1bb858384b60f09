"""Grafana and Prometheus files against reality.

Every MySQL query of the dashboards, template variables and alert rules runs against a
migrated MariaDB holding sample events, with Grafana's macros expanded as Grafana does;
every metric a PromQL expression names must be in /metrics of a running service; the
Prometheus rules pass promtool.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hazardwatch.app import Service
from hazardwatch.outputs.weather import describe
from hazardwatch.records import EventRecord, ScoreSample, Weather
from hazardwatch.roles import EventsNode
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import free_port, service_settings, skip_or_fail
from tests.fakes import FakeEncoder
from tests.helpers import WebhookReceiver, wait_for

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
ALERT_RULES = ROOT / "grafana" / "provisioning" / "alerting" / "rules.yaml"
MYSQL_UID = "hazardwatch-mysql"
PROM_UID = "hazardwatch-prometheus"
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(hours=6), NOW + timedelta(minutes=1)


# ---------------------------------------------------------------------------- collecting


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARDS]


def sql_queries() -> list[tuple[str, str, dict[str, Any]]]:
    """(where, rawSql, context) for every MySQL query in dashboards and alert rules."""
    out = []
    for board in dashboards():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["uid"] == MYSQL_UID:
                    out.append((f"{board['uid']}: {panel['title']}", target["rawSql"],
                                {"panel": panel, "target": target}))  # fmt: skip
        for var in board["templating"]["list"]:
            if var.get("datasource", {}).get("uid") == MYSQL_UID:
                out.append((f"{board['uid']}: variable {var['name']}", var["query"], {}))
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for node in rule["data"]:
                if node["datasourceUid"] == MYSQL_UID:
                    out.append((f"alert rule {rule['title']}", node["model"]["rawSql"],
                                {"rule": rule, "node": node}))  # fmt: skip
    return out


def promql_expressions() -> list[tuple[str, str]]:
    out = []
    for board in dashboards():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["uid"] == PROM_UID:
                    out.append((f"{board['uid']}: {panel['title']}", target["expr"]))
        for var in board["templating"]["list"]:
            if var.get("datasource", {}).get("uid") == PROM_UID:
                out.append((f"{board['uid']}: variable {var['name']}", var["definition"]))
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for node in rule["data"]:
                if node["datasourceUid"] == PROM_UID:
                    out.append((f"alert rule {rule['title']}", node["model"]["expr"]))
    rules = yaml.safe_load((ROOT / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f"prometheus rule {rule['alert']}", rule["expr"]))
    return out


# ---------------------------------------------------------------------------- macros

VARIABLES = {"camera": ["north", "south"], "class": ["traffic_accident", "fire_smoke"]}
TEXT_VARIABLES = {"api_url": "http://localhost:8080"}
INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    interval = interval.strip().strip("'\"")
    return int(interval[:-1]) * INTERVALS[interval[-1]]


def expand(sql: str, start: datetime = FROM, end: datetime = TO, interval: str = "1m") -> str:
    """Grafana's MySQL macros and template variables, as Grafana expands them."""
    a, b = int(start.timestamp()), int(end.timestamp())
    sql = sql.replace("$__interval", f"'{interval}'")
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m[1]} BETWEEN FROM_UNIXTIME({a}) AND FROM_UNIXTIME({b})",
        sql,
    )

    def group(m: re.Match[str], alias: bool) -> str:
        column, n = m[1].strip(), _seconds(m[2])
        expr = f"cast(cast(UNIX_TIMESTAMP({column})/({n}) as signed)*{n} as signed)"
        return f'{expr} AS "time"' if alias else expr

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)", lambda m: group(m, False), sql)
    sql = sql.replace("$__timeFrom()", f"FROM_UNIXTIME({a})")
    sql = sql.replace("$__timeTo()", f"FROM_UNIXTIME({b})")
    for name, values in VARIABLES.items():
        quoted = ",".join(f"'{v}'" for v in values)
        sql = sql.replace(f"${{{name}:sqlstring}}", quoted).replace(f"${name}", quoted)
    for name, value in TEXT_VARIABLES.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


def test_expand_matches_grafana_forms() -> None:
    out = expand("SELECT $__timeGroupAlias(t, '5m') FROM x WHERE $__timeFilter(t) AND "
                 "c IN (${camera:sqlstring})",
                 datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
    assert out == (
        'SELECT cast(cast(UNIX_TIMESTAMP(t)/(300) as signed)*300 as signed) AS "time" FROM x '
        "WHERE t BETWEEN FROM_UNIXTIME(1767225600) AND FROM_UNIXTIME(1767312000) AND "
        "c IN ('north','south')"
    )


# ---------------------------------------------------------------------------- MySQL


@pytest.fixture(scope="module")
def grafana_db(mysql_server: sa.Engine) -> Iterator[sa.Engine]:
    name = "hw_grafana_test"
    with mysql_server.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine = create_engine(mysql_server.url.set(database=name).render_as_string(False))
    migrate.upgrade(engine)
    repo = Repository(engine)
    for i, (camera, cls, severity, status) in enumerate([
        ("north", "traffic_accident", "critical", "closed"),
        ("south", "fire_smoke", "critical", "open"),
        ("south", "traffic_accident", "critical", "closed"),
        ("north", "animal_on_road", "warning", "interrupted"),
    ]):  # fmt: skip
        start = NOW - timedelta(minutes=50 - 15 * i) if i < 3 else NOW - timedelta(seconds=20)
        repo.upsert_event(EventRecord(
            f"10000000-0000-4000-8000-{i:012d}", camera, cls, severity, status, start, start,
            0.6 + i / 10, 0.5, ended_at=start + timedelta(seconds=8) if status != "open" else None,
            snapshot_path=f"{camera}/{i}.jpg", clip_path=f"{camera}/{i}.mp4" if i % 2 else None,
        ))  # fmt: skip
    repo.set_verdict("10000000-0000-4000-8000-000000000000", "false_alarm", "billboard")
    repo.set_verdict("10000000-0000-4000-8000-000000000002", "confirmed", None)
    for i, code, visibility in ((0, 45, 900.0), (2, 61, None)):  # event 1: no weather
        repo.set_weather(f"10000000-0000-4000-8000-{i:012d}", Weather(
            code, describe(code), 4.5, 0.8, 12.0, visibility, NOW,
        ))  # fmt: skip
    samples = []
    for k in range(120):
        ts = NOW - timedelta(minutes=60) + timedelta(seconds=30 * k)
        for camera in ("north", "south"):
            samples.append(
                ScoreSample(camera, ts, "traffic_accident", 0.1 + (k % 10) / 20, k / 600)
            )
            samples.append(ScoreSample(camera, ts, "empty_road", 0.5, None))
    repo.add_scores(samples)
    yield engine
    engine.dispose()
    with mysql_server.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))


QUERIES = sql_queries()


def test_there_are_queries_to_check() -> None:
    assert len(DASHBOARDS) == 2
    assert len(QUERIES) >= 9 and len(promql_expressions()) >= 15


@pytest.mark.mysql
@pytest.mark.parametrize(("where", "sql", "context"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_panel_query_runs_and_returns_what_the_panel_expects(
    grafana_db: sa.Engine, where: str, sql: str, context: dict[str, Any]
) -> None:
    with grafana_db.connect() as conn:
        result = conn.execute(sa.text(expand(sql)))
        columns = list(result.keys())
        rows = result.fetchall()
    assert rows, f"{where}: no rows from the sample data"
    target = context.get("target", {})
    panel = context.get("panel", {})
    if target.get("format") == "time_series":
        assert columns[0] == "time" and "value" in columns, (where, columns)
        assert all(isinstance(r[0], int) for r in rows), "time must be epoch seconds"
        assert all(r[0] <= r2[0] for r, r2 in itertools.pairwise(rows)), "time order"
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override["matcher"]["id"] == "byName":
            assert override["matcher"]["options"] in columns, (where, columns)
    x_field = panel.get("options", {}).get("xField")
    if x_field:
        assert x_field in columns
    if panel.get("type") == "stat" or "rule" in context:
        assert len(rows) == 1 and isinstance(rows[0][-1], int)
    if "rule" in context:
        assert rows[0][0] >= 1, "the sample critical event 20 s ago must fire the rule"


@pytest.mark.mysql
def test_latest_events_table_links_media_through_the_api(grafana_db: sa.Engine) -> None:
    (sql,) = [q[1] for q in QUERIES if q[0].endswith("Latest events")]
    with grafana_db.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(expand(sql)))]
    first = rows[0]
    assert first["snapshot"] == f"http://localhost:8080/api/v1/events/{first['uuid']}/snapshot.jpg"
    assert {r["clip"] is None for r in rows} == {True, False}  # only events with a clip link
    open_row = next(r for r in rows if r["status"] == "open")
    assert open_row["duration_s"] >= 0


@pytest.mark.mysql
def test_false_alarm_panel_gives_the_share_of_judged_events(grafana_db: sa.Engine) -> None:
    (sql,) = [q[1] for q in QUERIES if "False-alarm rate" in q[0]]
    with grafana_db.connect() as conn:
        rows = {
            (r.camera, r.class_name): (r.false_alarms, r.confirmed, r.false_alarm_rate)
            for r in conn.execute(sa.text(expand(sql)))
        }
    assert rows[("north", "traffic_accident")] == (1, 0, 1)
    assert rows[("south", "traffic_accident")] == (0, 1, 0)
    assert rows[("south", "fire_smoke")] == (0, 0, None)  # nothing judged: no rate


@pytest.mark.mysql
def test_weather_panel_counts_events_per_condition(grafana_db: sa.Engine) -> None:
    (sql,) = [q[1] for q in QUERIES if q[0].endswith("Events by weather condition")]
    with grafana_db.connect() as conn:
        rows = {r.weather: (r.events, r.critical) for r in conn.execute(sa.text(expand(sql)))}
    assert rows == {"slight rain": (1, 1), "fog": (1, 1), "no weather": (1, 1)}
    (table,) = [q[1] for q in QUERIES if q[0].endswith("Latest events")]
    with grafana_db.connect() as conn:
        weather = {
            r.uuid[-1]: (r.weather, r.visibility_m) for r in conn.execute(sa.text(expand(table)))
        }
    assert weather == {"0": ("fog", 900.0), "1": (None, None), "2": ("slight rain", None)}


def test_progress_panel_draws_the_line_where_an_event_opens() -> None:
    """The scores' `signal` is each class's progress to an event (detector.progress): 1.0
    at its threshold under either rule, so one line serves every camera and class."""
    overview = json.loads((ROOT / "grafana/dashboards/hazard-overview.json").read_text())
    panel = next(p for p in overview["panels"] if "progress" in p["title"].lower())
    assert "`signal`" in panel["targets"][0]["rawSql"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert sorted(s["value"] for s in steps if s["value"] is not None) == [1.0]


# ---------------------------------------------------------------------------- PromQL

PROMQL_NAME = re.compile(r"\b(?:hazardwatch|process)_[a-z0-9_]+")


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory, red_clip: Path) -> Iterator[set[str]]:
    tmp = tmp_path_factory.mktemp("metrics")
    receiver = WebhookReceiver(free_port()).start()
    settings = service_settings(
        tmp, f"sqlite:///{tmp / 'hw.db'}", [str(red_clip)], loop=True,
        alerts={"webhook": {"url": receiver.url}},
    )  # fmt: skip
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.api.port}/metrics"
    try:
        assert wait_for(lambda: len(receiver.received) >= 1, 60, interval=0.2)
        text = httpx.get(url, timeout=5).text
    finally:
        service.stop()
        thread.join(30)
        receiver.stop()
    names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    names |= events_role_exposition(tmp)
    yield names


def events_role_exposition(tmp: Path) -> set[str]:
    """The metrics only the events role has (consumer lag), from one run against a
    private nats-server."""
    from hazardwatch.handoff.link import BrokerLink
    from hazardwatch.handoff.status import StatusPublisher
    from tests.conftest import NatsServer

    if not Path(NatsServer.BINARY).is_file():
        skip_or_fail(f"{NatsServer.BINARY} is not installed")
    nats = NatsServer(tmp / "jetstream")
    nats.start()
    settings = service_settings(
        tmp / "events", f"sqlite:///{tmp / 'events.db'}", [], broker={"url": nats.url}
    )
    service = EventsNode(settings)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    # A capture node's report of one camera: the per-camera intake counters start at 0.
    link = BrokerLink(nats.url, "test")
    link.start()
    camera = {"name": "gate", "kind": "rtsp", "state": "streaming"}
    status = StatusPublisher(link, lambda: {"camera.gate": camera}, interval_s=0.2)
    status.start()
    url = f"http://127.0.0.1:{settings.api.port}/metrics"
    text = ""

    def scraped() -> bool:
        nonlocal text
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            return False
        return "hazardwatch_broker_pending{" in text and 'frames_lost_total{camera="gate"}' in text

    try:
        assert wait_for(scraped, 30, interval=0.2)
    finally:
        status.stop(5)
        link.stop()
        service.stop()
        thread.join(30)
        nats.stop()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize(("where", "expr"), promql_expressions())
def test_every_promql_metric_exists_in_a_running_service(
    exposition: set[str], where: str, expr: str
) -> None:
    names = set(PROMQL_NAME.findall(expr))
    assert names or "up{" in expr, f"{where}: no hazardwatch metric in {expr!r}"
    missing = sorted(n for n in names if n not in exposition)
    assert not missing, f"{where}: {missing} not in /metrics"


# ---------------------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool not installed (apt-get install prometheus)")
    return path


@pytest.mark.parametrize(
    "args",
    [["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"],
     ["check", "config", "prometheus.yml"]],
)  # fmt: skip
def test_promtool(promtool: str, args: list[str]) -> None:
    done = subprocess.run(
        [promtool, *args], cwd=ROOT / "prometheus", capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_datasource_env_references_are_all_set_by_compose() -> None:
    text = (ROOT / "grafana/provisioning/datasources/hazardwatch.yaml").read_text()
    text += (ROOT / "grafana/provisioning/alerting/contact-points.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert needed <= set(compose["services"]["grafana"]["environment"]), needed
    datasources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/hazardwatch.yaml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources}
    assert uids == {MYSQL_UID, PROM_UID}
    for board in dashboards():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids


@pytest.mark.mysql
def test_the_class_variable_lists_classes_without_events_too(grafana_db: sa.Engine) -> None:
    (sql,) = [q[1] for q in QUERIES if q[0].endswith("variable class")]
    with grafana_db.connect() as conn:
        classes = [row[0] for row in conn.execute(sa.text(expand(sql)))]
    # empty_road is scored (sample data) but never had an event.
    assert "empty_road" in classes and "fire_smoke" in classes
    assert classes == sorted(classes) and len(classes) == len(set(classes))
