"""`hazardwatch alert test`: a real HTTP receiver, the real Mosquitto, and dead targets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from hazardwatch.cli import main
from hazardwatch.outputs.alerts import TEST_CLASS, make_test_alert
from hazardwatch.outputs.mqtt import MqttPublisher
from hazardwatch.outputs.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    verify_signature,
)
from tests.conftest import free_port, skip_or_fail
from tests.helpers import WebhookReceiver, wait_for
from tests.outputs.test_mqtt import (
    HOST,
    PORT,
    Listener,
    broker,  # noqa: F401 - its autouse check: Mosquitto is up
)


def config(tmp_path: Path, webhook: str | None, mqtt_port: int | None, prefix: str) -> Path:
    lines = ["cameras:", "  - {name: gate, url: /dev/null}"]
    if webhook or mqtt_port:
        lines.append("alerts:")
    if webhook:
        lines.append(f"  webhook: {{url: '{webhook}', secret: s3cret, retries: 3}}")
    if mqtt_port:
        lines.append(f"  mqtt: {{host: {HOST}, port: {mqtt_port}, topic_prefix: {prefix}}}")
    path = tmp_path / "hw.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_test_alert_reaches_every_channel_marked_as_a_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = WebhookReceiver(free_port()).start()
    prefix = f"hwtest{free_port()}"
    listener = Listener(f"{prefix}/#")
    try:
        path = config(tmp_path, receiver.url, PORT, prefix)
        assert main(["alert", "test", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert f"webhook http://127.0.0.1:{receiver.port}/***: delivered" in out
        assert f"mqtt {HOST}:{PORT} topic {prefix}/events: delivered" in out
        (hook,) = receiver.received
        body = hook.json()
        assert body["type"] == "test" and body["test"] is True
        assert body["class_name"] == TEST_CLASS and body["camera"] == "gate"
        assert body["event"]["uuid"].startswith("test-")
        assert verify_signature("s3cret", hook.headers[TIMESTAMP_HEADER], hook.body,
                                hook.headers[SIGNATURE_HEADER])  # fmt: skip
        # The broker hands the message on asynchronously: wait for it, do not race it.
        assert wait_for(lambda: len(listener.on(f"{prefix}/events")) >= 1, 5)
        (message,) = listener.on(f"{prefix}/events")
        payload = json.loads(message.payload)
        assert payload["type"] == "test" and payload["test"] is True
        assert payload["after"]["class_name"] == TEST_CLASS
        # No state topic was switched on by a test.
        assert [m.topic for m in listener.messages] == [f"{prefix}/events"]
    finally:
        listener.close()
        receiver.stop()


def test_each_channel_says_why_it_was_not_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = WebhookReceiver(free_port(), status=500).start()
    dead_port = free_port()  # nothing listens there
    try:
        path = config(tmp_path, failing.url, dead_port, "hwdead")
        assert main(["alert", "test", "--config", str(path), "--timeout", "3"]) == 1
        out = capsys.readouterr().out
        assert f"webhook http://127.0.0.1:{failing.port}/***: NOT delivered: HTTP 500" in out
        assert f"mqtt {HOST}:{dead_port} topic hwdead/events: NOT delivered: cannot connect" in out
        assert failing.received == []  # one attempt, no retries: a test does not wait
    finally:
        failing.stop()


def test_an_unreachable_webhook_names_the_error(tmp_path: Path) -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hook")
    reason = sender.deliver_now(make_test_alert("gate"), 2.0)
    assert reason is not None and reason.startswith("ConnectError")


def test_a_broker_that_refuses_the_login_is_reported(tmp_path: Path) -> None:
    """Mosquitto without auth accepts anyone; a refusal needs a broker of its own."""
    import shutil
    import subprocess
    import time

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        skip_or_fail("mosquitto binary not found (apt-get install mosquitto)")
    port = free_port()
    conf = tmp_path / "m.conf"
    passwords = tmp_path / "passwords"
    passwords.write_text("")  # no user at all: every login is refused
    passwords.chmod(0o600)
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        "user root\n"  # as root it would switch to a user that cannot read tmp_path
    )
    process = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        publisher = MqttPublisher("127.0.0.1", port, username="nobody", password="wrong")
        reason = publisher.deliver_now(make_test_alert("gate"), 5.0)
        assert reason is not None and "refused the connection" in reason
        assert "wrong" not in reason
    finally:
        process.terminate()
        process.wait(10)


def test_no_channel_configured_is_exit_1_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, None, None, "x")
    assert main(["alert", "test", "--config", str(path)]) == 1
    assert "alerts.webhook.url" in capsys.readouterr().err


def test_an_unknown_camera_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, "http://127.0.0.1:1/hook", None, "x")
    assert main(["alert", "test", "--config", str(path), "--camera", "nope"]) == 2
    assert "'nope' is not configured; cameras: gate" in capsys.readouterr().err
