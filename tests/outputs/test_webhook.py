from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.alerts import Alert
from hazardwatch.outputs.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)
from hazardwatch.records import EventRecord
from tests.conftest import free_port
from tests.helpers import WebhookReceiver, wait_for

SECRET = "s3cret-key"


def alert(uuid: str = "e1", kind: str = "new") -> Alert:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = EventRecord(uuid, "cam", "traffic_accident", "critical", "open", now, now, 0.9, 0.8)
    return Alert(kind, None, record, time.monotonic(), None, None)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(free_port()).start()
    yield r
    r.stop()


def test_signed_delivery_a_receiver_can_verify(receiver: WebhookReceiver) -> None:
    metrics = Metrics()
    sender = WebhookSender(receiver.url, SECRET, metrics=metrics)
    sender.start()
    sender.send(alert())
    assert wait_for(lambda: len(receiver.received) == 1, 10)
    sender.stop()
    got = receiver.received[0]
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert verify_signature(
        SECRET, headers[TIMESTAMP_HEADER.lower()], got.body, headers[SIGNATURE_HEADER.lower()]
    )
    assert not verify_signature("wrong", headers[TIMESTAMP_HEADER.lower()], got.body,
                                headers[SIGNATURE_HEADER.lower()])  # fmt: skip
    assert not verify_signature(SECRET, headers[TIMESTAMP_HEADER.lower()], got.body + b" ",
                                headers[SIGNATURE_HEADER.lower()])  # fmt: skip
    assert headers[DELIVERY_HEADER.lower()] == "e1:0:new"
    body = got.json()
    assert body["type"] == "new" and body["camera"] == "cam" and body["score"] == 0.9
    assert sender.sent == 1
    text = metrics.render().decode()
    assert 'hazardwatch_alerts_total{channel="webhook",outcome="sent"} 1.0' in text
    assert "hazardwatch_alert_latency_seconds_count" in text


def test_stale_or_malformed_timestamps_fail_verification() -> None:
    body = b"{}"
    ts = str(int(time.time()) - 3600)
    assert not verify_signature(SECRET, ts, body, sign(SECRET, ts, body))
    assert verify_signature(SECRET, ts, body, sign(SECRET, ts, body), tolerance_s=7200)
    assert not verify_signature(SECRET, "soon", body, sign(SECRET, "soon", body))


def test_receiver_down_then_back_loses_nothing_within_the_retry_window() -> None:
    port = free_port()
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", SECRET, retries=8, backoff_s=0.2,
                           backoff_max_s=1.0, timeout_s=1.0)  # fmt: skip
    sender.start()
    for i in range(5):
        sender.send(alert(f"e{i}"))
    time.sleep(1.5)  # nobody listens: connection refused, retried with backoff
    receiver = WebhookReceiver(port).start()
    try:
        assert wait_for(lambda: len(receiver.received) == 5, 15)
        # In order, each exactly once.
        assert [r.json()["event"]["uuid"] for r in receiver.received] == [f"e{i}" for i in range(5)]
        assert sender.failed == 0
    finally:
        sender.stop()
        receiver.stop()


def test_5xx_is_retried_4xx_is_not(receiver: WebhookReceiver) -> None:
    receiver.status = 503
    sender = WebhookSender(receiver.url, retries=3, backoff_s=0.05)
    sender.start()
    sender.send(alert("a"))
    assert wait_for(lambda: sender.failed == 1, 10)
    receiver.status = 400
    sender.send(alert("b"))
    assert wait_for(lambda: sender.failed == 2, 10)
    sender.stop()
    assert sender.sent == 0


def test_a_slow_receiver_never_blocks_send(receiver: WebhookReceiver) -> None:
    receiver.delay_s = 2.0
    sender = WebhookSender(receiver.url, timeout_s=5.0, max_queued=3)
    sender.start()
    started = time.monotonic()
    for i in range(10):
        sender.send(alert(f"e{i}"))
    assert time.monotonic() - started < 0.1
    assert sender.dropped >= 6  # bounded queue: the oldest waiting alerts were dropped
    sender.stop(timeout=1.0)


def test_a_secret_in_the_hook_path_reaches_no_log_and_no_config_print(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Chat hooks carry their secret in the path; httpx would log it at INFO per POST."""
    from hazardwatch.cli import main
    from hazardwatch.outputs.alerts import make_test_alert
    from hazardwatch.redact import configure_logging, redact_hook_url
    from tests.conftest import free_port
    from tests.helpers import WebhookReceiver

    configure_logging("INFO")
    receiver = WebhookReceiver(free_port()).start()
    secret_url = receiver.url.replace("/hook", "/hooks/T0SECRET/B0SECRET")
    try:
        with caplog.at_level(logging.DEBUG):
            sender = WebhookSender(secret_url)
            assert sender.deliver_now(make_test_alert("gate"), 5.0) is None
            sender.start()
            sender.send(make_test_alert("gate"))
            assert sender.stop(10)
        assert len(receiver.received) == 2
        assert "T0SECRET" not in caplog.text
    finally:
        receiver.stop()
    assert redact_hook_url(secret_url) == f"http://127.0.0.1:{receiver.port}/***"
    assert redact_hook_url("https://u:pw@hooks.example.com") == "https://u:***@hooks.example.com"
    config = tmp_path / "hw.yaml"
    config.write_text(f"alerts: {{webhook: {{url: '{secret_url}'}}}}\n")
    assert main(["config", "check", "--config", str(config)]) == 0
    assert "T0SECRET" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        (None, "sha256=00"),
        ("1", None),
        ("1", "sha256=é"),
        ("ñ", "sha256=00"),
        ("nan", "x"),
        ("1e999", "x"),
        ("", ""),
    ],
)
def test_a_malformed_or_missing_header_is_false_never_an_exception(
    timestamp: str | None, signature: str | None
) -> None:
    """Issue 30.7: a non-ASCII signature or a missing header raised TypeError."""
    assert verify_signature(SECRET, timestamp, b"{}", signature) is False


def test_the_replay_cache_refuses_a_delivery_sent_again_within_the_window() -> None:
    from hazardwatch.outputs.webhook import ReplayCache

    seen = ReplayCache(max_entries=3)
    body = b'{"type": "new"}'
    now = time.time()
    ts = str(int(now))
    signature = sign(SECRET, ts, body)
    assert verify_signature(SECRET, ts, body, signature, seen=seen, now=now)
    assert not verify_signature(SECRET, ts, body, signature, seen=seen, now=now + 10)
    # Other deliveries fill the bounded cache; one past its window may come again.
    for i in range(5):
        other = str(int(now) + i + 1)
        assert verify_signature(SECRET, other, body, sign(SECRET, other, body), seen=seen, now=now)
    late = now + 301
    assert not verify_signature(SECRET, ts, body, signature, seen=seen, now=late)  # stale


def test_a_webhook_without_a_secret_or_over_plain_http_is_warned_about_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 30.7: accepted without a word before."""
    with caplog.at_level("WARNING", logger="hazardwatch.outputs.webhook"):
        for url, secret in (("http://hooks.example.org/T0/B0/XXXX", None),
                            ("http://127.0.0.1:9/hook", "k"),
                            ("https://hooks.example.org/T0/B0/XXXX", "k")):  # fmt: skip
            sender = WebhookSender(url, secret)
            sender.start()
            sender.stop(1)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "no alerts.webhook.secret" in warnings[0] and "plain http://" in warnings[1]
    assert all("XXXX" not in w for w in warnings)  # the hook's secret path stays masked
