"""MQTT alerts, in the shape home-automation users know from NVRs.

Topics under the configured prefix:
- `<prefix>/available`: "online" (retained) while connected; the broker publishes the
  last will "offline" when the connection dies.
- `<prefix>/events`: {"type": "new|update|end", "before": …, "after": …} per alert.
- `<prefix>/<camera>/<class>`: "ON" while an event of that camera and class is open, "OFF"
  once none is (retained). It follows the events (`observe`), not the alert policy: an
  event whose alert the cooldown or `min_severity` held back still turns it ON.
- `<prefix>/<camera>/<class>/snapshot`: the latest event's peak frame as JPEG (retained).

paho's network loop runs on its own thread and reconnects by itself; publishes made while
disconnected are queued (bounded) and go out on reconnect.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.alerts import Alert, event_json
from hazardwatch.records import EventUpdate
from hazardwatch.settings import is_loopback

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttTls:
    """TLS to the broker: verified against `ca_file` (None: the system's CAs), with a
    client certificate for mutual TLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def apply(self, client: mqtt.Client) -> None:
        client.tls_set(
            ca_certs=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )


class MqttPublisher:
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        prefix: str = "hazardwatch",
        username: str | None = None,
        password: str | None = None,
        media_dir: Path | None = None,
        client_id: str | None = None,
        max_queued: int = 10_000,
        metrics: Metrics | None = None,
        tls: MqttTls | None = None,
    ) -> None:
        """`tls`: connect over TLS, verifying the broker (and presenting a client
        certificate when it holds one)."""
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip("/")
        self.media_dir = media_dir
        self.metrics = metrics
        self.connected = False
        self.published = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hazardwatch-{socket.gethostname()}",
        )
        self._username, self._password = username, password
        self.tls = tls
        if username:
            self._client.username_pw_set(username, password)
        if tls is not None:
            tls.apply(self._client)
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._stopping = False
        self._open: dict[tuple[str, str], set[str]] = {}  # (camera, class) -> open event uuids
        self._snapshots: dict[tuple[str, str], str] = {}  # the last snapshot published

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def start(self) -> None:
        if self._password and self.tls is None and not is_loopback(self.host):
            log.warning(
                "MQTT %s:%d: the password goes over the network unencrypted; set "
                "alerts.mqtt.tls: true (and the broker's TLS port)",
                self.host,
                self.port,
            )
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Say "offline" (retained), disconnect, stop the network thread."""
        self._stopping = True
        info = self._client.publish(self.topic("available"), "offline", qos=1, retain=True)
        if self.connected:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        return True

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self.connected = True
        log.info("MQTT connected to %s:%d", self.host, self.port)
        client.publish(self.topic("available"), "online", qos=1, retain=True)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected and not self._stopping:
            log.warning("MQTT disconnected (%s); reconnecting", reason)
        elif self._stopping:
            log.info("MQTT disconnected from %s:%d", self.host, self.port)
        self.connected = False

    def send(self, alert: Alert) -> None:
        """An alert on `<prefix>/events` (the state topics follow `observe`)."""
        payload = {
            "type": alert.type,
            "before": event_json(alert.before) if alert.before is not None else None,
            "after": event_json(alert.after),
            "snapshot_url": alert.snapshot_url,
            "clip_url": alert.clip_url,
        }
        self._publish(self.topic("events"), json.dumps(payload), retain=False)

    def observe(self, update: EventUpdate) -> None:
        """Every stored event change, alerted or not: the retained ON/OFF state of its
        camera and class, and its snapshot (writer thread; publishes are queued)."""
        record = update.record
        key = (record.camera, record.class_name)
        if update.kind not in ("started", "updated", "ended"):
            return
        events = self._open.setdefault(key, set())
        was_on = bool(events)
        if update.kind == "ended":
            events.discard(record.uuid)
        else:
            events.add(record.uuid)
        if bool(events) != was_on:
            self._publish(self.topic(*key), "ON" if events else "OFF", retain=True)
        if not events:
            del self._open[key]
        snapshot = record.snapshot_path
        if (
            update.kind != "ended"
            and snapshot
            and self.media_dir is not None
            and self._snapshots.get(key) != snapshot
        ):
            try:
                jpeg = (self.media_dir / snapshot).read_bytes()
            except OSError as exc:
                log.warning("MQTT snapshot of event %s not sent: %s", record.uuid, exc)
            else:
                self._snapshots[key] = snapshot
                self._publish(self.topic(*key, "snapshot"), jpeg, retain=True)

    def deliver_now(self, alert: Alert, timeout_s: float) -> str | None:
        """Publish one alert to `<prefix>/events` now over a connection of its own (a
        running service's session is left alone): None once the broker acknowledged it
        (QoS 1), else why not. No state topic is touched."""
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hazardwatch-test-{uuid.uuid4().hex[:8]}"
        )
        if self._username:
            client.username_pw_set(self._username, self._password)
        if self.tls is not None:
            self.tls.apply(client)
        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=max(5, int(timeout_s)))
        except OSError as exc:
            return f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
        client.loop_start()
        try:
            if not connected.wait(timeout_s):
                return f"no answer from {self.host}:{self.port} in {timeout_s:g} s"
            if refused:
                return f"the broker refused the connection: {refused[0]}"
            payload = json.dumps(
                {"type": alert.type, "test": True, "before": None, "after": event_json(alert.after)}
            )
            info = client.publish(self.topic("events"), payload, qos=1)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                return f"publish failed: {exc}"
            if not info.is_published():
                return f"the broker did not acknowledge the message in {timeout_s:g} s"
            return None
        finally:
            client.disconnect()
            client.loop_stop()

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.published += 1  # queued by paho when not connected
            if self.metrics is not None:
                self.metrics.alerts.labels(self.name, "sent").inc()
        else:
            log.error("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            if self.metrics is not None:
                self.metrics.alerts.labels(self.name, "failed").inc()
