"""Against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hazardwatch.outputs.alerts import Alert
from hazardwatch.outputs.mqtt import MqttPublisher
from hazardwatch.records import EventRecord, EventUpdate
from tests.conftest import skip_or_fail
from tests.helpers import wait_for

HOST, PORT = "127.0.0.1", 1883


@pytest.fixture(scope="module", autouse=True)
def broker() -> None:
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError:
        skip_or_fail(f"no MQTT broker on {HOST}:{PORT} (start mosquitto)")


class Listener:
    def __init__(self, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self._add(m)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(HOST, PORT)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _add(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def record(kind: str, snapshot: str | None, uuid: str = "e1") -> EventRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    status = "closed" if kind in ("end", "ended") else "open"
    return EventRecord(uuid, "gate-1", "fire_smoke", "critical", status, now, now, 0.8, 0.7,
                       snapshot_path=snapshot)  # fmt: skip


def alert(kind: str, before: EventRecord | None, snapshot: str | None) -> Alert:
    return Alert(kind, before, record(kind, snapshot), None, None, None)  # type: ignore[arg-type]


def update(kind: str, uuid: str, snapshot: str | None = None) -> EventUpdate:
    return EventUpdate(kind, record(kind, snapshot, uuid), None, None)


def test_events_state_snapshot_and_availability(tmp_path: Path) -> None:
    prefix = f"hwtest-{uuid.uuid4().hex[:8]}"
    (tmp_path / "gate-1").mkdir()
    (tmp_path / "gate-1" / "e1.jpg").write_bytes(b"\xff\xd8\xff-jpeg")
    listener = Listener(f"{prefix}/#")
    publisher = MqttPublisher(HOST, PORT, prefix=prefix, media_dir=tmp_path)
    publisher.start()
    try:
        assert wait_for(lambda: publisher.connected, 10)
        assert wait_for(lambda: listener.on(f"{prefix}/available"), 5)
        assert listener.on(f"{prefix}/available")[-1].payload == b"online"
        new = alert("new", None, "gate-1/e1.jpg")
        publisher.send(new)
        publisher.observe(update("started", "e1", "gate-1/e1.jpg"))
        publisher.send(alert("end", new.after, "gate-1/e1.jpg"))
        publisher.observe(update("ended", "e1", "gate-1/e1.jpg"))
        assert wait_for(lambda: len(listener.on(f"{prefix}/events")) == 2, 5)
        events = [json.loads(m.payload) for m in listener.on(f"{prefix}/events")]
        assert [e["type"] for e in events] == ["new", "end"]
        assert events[0]["before"] is None and events[1]["before"]["status"] == "open"
        assert events[1]["after"]["status"] == "closed"

        # Topics are not ordered with each other: the state may arrive after the events.
        def states() -> list[bytes]:
            return [m.payload for m in listener.on(f"{prefix}/gate-1/fire_smoke")]

        assert wait_for(lambda: len(states()) == 2, 5)
        assert states() == [b"ON", b"OFF"]
        assert wait_for(lambda: listener.on(f"{prefix}/gate-1/fire_smoke/snapshot"), 5)
        snapshot = listener.on(f"{prefix}/gate-1/fire_smoke/snapshot")
        assert snapshot[0].payload == b"\xff\xd8\xff-jpeg"
    finally:
        publisher.stop()
        listener.close()
    # Retained: a late subscriber sees the last state and the clean "offline".
    late = Listener(f"{prefix}/#")
    try:
        assert wait_for(lambda: late.on(f"{prefix}/gate-1/fire_smoke"), 5)
        assert late.on(f"{prefix}/gate-1/fire_smoke")[-1].payload == b"OFF"
        assert wait_for(lambda: late.on(f"{prefix}/available"), 5)
        assert late.on(f"{prefix}/available")[-1].payload == b"offline"
    finally:
        late.close()


def test_last_will_says_offline_when_the_connection_dies() -> None:
    prefix = f"hwtest-{uuid.uuid4().hex[:8]}"
    publisher = MqttPublisher(HOST, PORT, prefix=prefix, client_id=f"hw-{prefix}")
    publisher.start()
    listener = Listener(f"{prefix}/available")
    try:
        assert wait_for(lambda: publisher.connected, 10)
        assert wait_for(lambda: [m.payload for m in listener.on(f"{prefix}/available")][-1:]
                        == [b"online"], 5)  # fmt: skip
        publisher._client.loop_stop()
        sock = publisher._client.socket()
        assert sock is not None
        sock.close()  # dies without DISCONNECT: the broker must publish the will
        assert wait_for(
            lambda: [m.payload for m in listener.on(f"{prefix}/available")][-1:] == [b"offline"],
            10,
        )
    finally:
        listener.close()
        time.sleep(0.1)


def test_publishes_while_the_broker_is_unreachable_are_queued_not_raised() -> None:
    port = 1  # nothing listens there
    publisher = MqttPublisher(HOST, port, prefix="hwtest-nobroker")
    publisher.start()
    try:
        publisher.send(alert("new", None, None))
        publisher.observe(update("started", "e1"))
        assert publisher.published == 2 and not publisher.connected
    finally:
        publisher.stop(timeout=0.5)


def test_the_state_follows_the_events_not_the_alert_cooldown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 29.4: one event ends; two later ones overlap, and the cooldown holds back
    their alerts. The retained state is ON while either is open and OFF after both. A
    clean stop logs no "disconnected; reconnecting" warning."""
    from hazardwatch.outputs.alerts import AlertDispatcher, AlertPolicy

    prefix = f"hwtest-{uuid.uuid4().hex[:8]}"
    listener = Listener(f"{prefix}/#")
    publisher = MqttPublisher(HOST, PORT, prefix=prefix, media_dir=tmp_path)
    dispatcher = AlertDispatcher(AlertPolicy(cooldown_s=3600), [publisher])
    hear = [dispatcher, publisher.observe]  # as the service wires them
    publisher.start()
    try:
        assert wait_for(lambda: publisher.connected, 10)
        for step in [("started", "a"), ("ended", "a"), ("started", "b"), ("started", "c"),
                     ("ended", "b")]:  # fmt: skip
            for listen in hear:
                listen(update(*step))
        topic = f"{prefix}/gate-1/fire_smoke"
        assert wait_for(lambda: len(listener.on(topic)) == 3, 5)
        assert [m.payload for m in listener.on(topic)] == [b"ON", b"OFF", b"ON"]
        assert dispatcher.suppressed == 2  # b and c were not alerted
        for listen in hear:
            listen(update("ended", "c"))
        assert wait_for(lambda: len(listener.on(topic)) == 4, 5)
        assert listener.on(topic)[-1].payload == b"OFF"
        events = [json.loads(m.payload)["type"] for m in listener.on(f"{prefix}/events")]
        assert events == ["new", "end"]
    finally:
        with caplog.at_level("INFO", logger="hazardwatch.outputs.mqtt"):
            publisher.stop()
            time.sleep(0.2)
        listener.close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl."""
    import subprocess

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hw-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "hazardwatch")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.crt",
            *(["-extfile", "san.ext"] if name == "server" else []))  # fmt: skip
    return {n: directory / n for n in ("ca.crt", "server.crt", "server.key", "client.crt",
                                       "client.key")}  # fmt: skip


def test_alerts_go_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """Issue 30.7: MQTT had no TLS option. A private Mosquitto that wants TLS and a client
    certificate gets the alert; without TLS the same publisher never connects."""
    import getpass
    import shutil
    import subprocess

    from hazardwatch.outputs.mqtt import MqttTls
    from tests.conftest import free_port

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).is_file():
        skip_or_fail("mosquitto is not installed (apt-get install mosquitto)")
    certs = _certificates(tmp_path)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"user {getpass.getuser()}\n"  # as root it would drop to a user who cannot read the keys
        f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\nkeyfile {certs['server.key']}\n"
        "require_certificate true\n"
    )
    server = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
    tls = MqttTls(certs["ca.crt"], certs["client.crt"], certs["client.key"])
    try:
        assert wait_for(lambda: _port_open(port), 10)
        publisher = MqttPublisher(HOST, port, prefix="hwtls", tls=tls)
        publisher.start()
        try:
            assert wait_for(lambda: publisher.connected, 10)
            assert publisher.deliver_now(alert("new", None, None), 10) is None
        finally:
            publisher.stop()
        plain = MqttPublisher(HOST, port, prefix="hwtls")
        plain.start()
        time.sleep(1.5)
        assert not plain.connected
        plain.stop(timeout=0.5)
    finally:
        server.terminate()
        server.wait(10)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False
