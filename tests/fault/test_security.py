"""Credentials never leak: logs, metrics, API answers and stored rows, checked together
while a camera whose URL carries a password is unreachable."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from hazardwatch.app import Service
from hazardwatch.storage.engine import create_engine
from tests.conftest import service_settings
from tests.fakes import FakeEncoder
from tests.helpers import wait_for

pytestmark = pytest.mark.fault
PASSWORD = "Sup3rS3cretPw"
TOKEN = "t0ken-N0t-F0r-L0gs"


def test_no_secret_in_logs_metrics_api_or_rows(
    tmp_path: Path,
    red_clip: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    settings = service_settings(
        tmp_path, url, [str(red_clip), f"rtsp://admin:{PASSWORD}@127.0.0.1:9/stream"], loop=True,
        api={"token": TOKEN}, capture={"open_timeout_s": 1, "backoff_initial_s": 0.2},
    )  # fmt: skip
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    caplog.set_level(logging.DEBUG)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[str] = []
    try:

        def events_and_reconnects() -> bool:
            try:
                cams = httpx.get(base + "/api/v1/cameras", headers=auth, timeout=2).json()
                events = httpx.get(base + "/api/v1/events", headers=auth, timeout=2).json()
            except httpx.HTTPError:
                return False
            down = [c for c in cams["items"] if c["kind"] == "rtsp"]
            return bool(events["items"]) and bool(down) and down[0]["reconnects"] >= 2

        assert wait_for(events_and_reconnects, 60, interval=0.3)
        for path in ("/api/v1/cameras", "/api/v1/events", "/metrics", "/readyz", "/healthz",
                     "/openapi.json", "/api/v1/events?camera=nope"):  # fmt: skip
            answers.append(httpx.get(base + path, headers=auth, timeout=5).text)
        answers.append(httpx.get(base + "/api/v1/events", timeout=5).text)  # 401
    finally:
        service.stop()
        thread.join(30)
    cams = answers[0]
    assert "rtsp" in cams and "last_error" in cams  # the failing camera is reported
    with create_engine(url).connect() as conn:
        rows = [
            str(tuple(row))
            for table in ("cameras", "events", "scores")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
        ]
    logs = [record.getMessage() for record in caplog.records]
    assert any("rtsp://" in line for line in logs), "the camera's failures must be logged"
    for where, texts in (("logs", logs), ("API answers", answers), ("stored rows", rows)):
        for text in texts:
            assert PASSWORD not in text, f"password in {where}: {text[:200]}"
            assert TOKEN not in text, f"API token in {where}: {text[:200]}"
