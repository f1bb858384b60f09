"""MQTT alerts, in the shape home-automation users know from NVRs.

Topics under the configured prefix:
- `<prefix>/available`: "online" (retained) while connected; the broker publishes the
  last will "offline" when the connection dies.
- `<prefix>/events`: {"type": "new|update|end", "before": …, "after": …} per alert.
- `<prefix>/<camera>/<class>`: "ON" while an alerted event is open, "OFF" after (retained).
- `<prefix>/<camera>/<class>/snapshot`: the latest alerted peak frame as JPEG (retained).

paho's network loop runs on its own thread and reconnects by itself; publishes made while
disconnected are queued (bounded) and go out on reconnect.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.alerts import Alert, event_json

log = logging.getLogger(__name__)


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
    ) -> None:
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
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Say "offline" (retained), disconnect, stop the network thread."""
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
        if self.connected:
            log.warning("MQTT disconnected (%s); reconnecting", reason)
        self.connected = False

    def send(self, alert: Alert) -> None:
        after = alert.after
        payload = {
            "type": alert.type,
            "before": event_json(alert.before) if alert.before is not None else None,
            "after": event_json(after),
            "snapshot_url": alert.snapshot_url,
            "clip_url": alert.clip_url,
        }
        self._publish(self.topic("events"), json.dumps(payload), retain=False)
        state = "OFF" if alert.type == "end" else "ON"
        self._publish(self.topic(after.camera, after.class_name), state, retain=True)
        if alert.type != "end" and after.snapshot_path and self.media_dir is not None:
            try:
                jpeg = (self.media_dir / after.snapshot_path).read_bytes()
            except OSError as exc:
                log.warning("MQTT snapshot of event %s not sent: %s", after.uuid, exc)
            else:
                self._publish(
                    self.topic(after.camera, after.class_name, "snapshot"), jpeg, retain=True
                )

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
