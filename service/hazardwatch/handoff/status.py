"""The roles' status in a JetStream key-value bucket, read by the events service.

In one process `/api/v1/cameras`, `/readyz` and the metrics read the readers and the
worker directly. Distributed, those live on other machines, so each role publishes what
it knows into the bucket `HAZARDWATCH_STATUS` every `PUBLISH_INTERVAL_S`:

- a capture node: `camera.<name>` per camera (`CameraStatus` with its node, as in
  `/api/v1/cameras`) and `node.capture.<node>` (`NodeStatus`);
- a worker: `node.worker.<node>` (`NodeStatus`: encoder, frames scored, whether it runs).

Each value is JSON with `updated_at` (UTC epoch seconds). The bucket keeps values
`STATUS_TTL_S` (memory storage: status, not data); a role stopped cleanly deletes its keys
at once, and a dead one's age out — readers also ignore a value older than the TTL, so a
node that died seconds ago does not count as alive. The events service polls the bucket
on its own thread (`StatusBoard`); requests and scrapes read that copy and never wait
on the broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from hazardwatch.handoff.link import BrokerLink
from hazardwatch.lifecycle import Periodic
from hazardwatch.records import CameraState, CameraStatus, NodeStatus

log = logging.getLogger(__name__)

STATUS_BUCKET = "HAZARDWATCH_STATUS"
STATUS_TTL_S = 15.0
PUBLISH_INTERVAL_S = 2.0
WATCH_INACTIVE_S = 5.0  # the server drops a finished read's consumer this soon after

Entries = dict[str, dict[str, Any]]


def node_id() -> str:
    """This process among the roles: host and pid (key-safe)."""
    host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())
    return f"{host or 'host'}-{os.getpid()}"


class KvBucket:
    """A memory key-value bucket's handle, looked up (or created) once rather than every
    round, and again after a round failed: a restarted nats-server has lost it."""

    def __init__(self, link: BrokerLink, name: str = STATUS_BUCKET, ttl_s: float = STATUS_TTL_S):
        self.link = link
        self.name = name
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None

    async def get(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._open()
        return self._kv

    def forget(self) -> None:
        self._kv = None

    async def _open(self) -> KeyValue:
        js = self.link.js
        assert js is not None
        try:
            return await js.key_value(self.name)
        except BucketNotFoundError:
            config = KeyValueConfig(
                bucket=self.name, ttl=self.ttl_s, history=1, storage=StorageType.MEMORY
            )
            try:
                return await js.create_key_value(config)
            except Exception:  # another role created it meanwhile
                return await js.key_value(self.name)


class StatusPublisher(Periodic):
    """Puts this role's entries every interval (start, stop(timeout) deletes them)."""

    def __init__(
        self,
        link: BrokerLink,
        entries: Callable[[], Entries],
        interval_s: float = PUBLISH_INTERVAL_S,
    ) -> None:
        super().__init__(interval_s, "status-publisher")
        self.link = link
        self.entries = entries
        self._keys: set[str] = set()
        self._bucket = KvBucket(link)

    def tick(self) -> None:
        try:
            self.publish()
        except Exception as exc:  # the broker is away: the next round tries again
            self._bucket.forget()
            log.debug("status not published: %s", exc)

    def publish(self) -> None:
        entries = self.entries()
        now = time.time()
        data = {key: json.dumps({**v, "updated_at": now}).encode() for key, v in entries.items()}
        gone = self._keys - set(data)
        self._keys = set(data)
        self.link.call(self._put(data, gone), timeout=5)

    async def _put(self, data: dict[str, bytes], gone: set[str]) -> None:
        kv = await self._bucket.get()
        await asyncio.gather(
            *(kv.put(key, value) for key, value in data.items()),
            *(kv.delete(key) for key in gone),
        )

    def finish(self) -> None:
        try:  # stopped cleanly: gone at once, not after the TTL
            self.link.call(self._put({}, self._keys), timeout=5)
        except Exception as exc:
            log.debug("status keys not deleted (they age out): %s", exc)


class StatusBoard(Periodic):
    """The events service's copy of every role's status, polled on its own thread."""

    def __init__(self, link: BrokerLink, interval_s: float = PUBLISH_INTERVAL_S) -> None:
        super().__init__(interval_s, "status-board")
        self.link = link
        self._entries: Entries = {}
        self.read_ok = False
        self._bucket = KvBucket(link)

    def tick(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        try:
            self._entries = self.link.call(self._read(), timeout=5)
            self.read_ok = True
        except Exception as exc:
            self.read_ok = False
            self._bucket.forget()
            log.debug("status not read: %s", exc)

    async def _read(self) -> Entries:
        """Every key's latest value, in one pass of one watcher. (Listing the keys and
        getting each left a consumer behind per listing for its 5-minute inactivity
        threshold: 124 on the bucket after four minutes of one events service.) The
        watcher's consumer goes `WATCH_INACTIVE_S` after it stops."""
        kv = await self._bucket.get()
        watcher = await kv.watchall(inactive_threshold=WATCH_INACTIVE_S)
        out: Entries = {}
        try:
            while (entry := await watcher.updates(timeout=5.0)) is not None:  # type: ignore[no-untyped-call]
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    out.pop(entry.key, None)  # deleted (a role stopped cleanly)
                    continue
                try:
                    value = json.loads(entry.value)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    out[entry.key] = value
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    def _fresh(self, prefix: str) -> list[dict[str, Any]]:
        oldest = time.time() - STATUS_TTL_S
        return [
            value
            for key, value in sorted(self._entries.items())
            if key.startswith(prefix) and float(value.get("updated_at", 0)) >= oldest
        ]

    @property
    def current(self) -> bool:
        """Whether this copy is being kept up to date (connected, and the last read
        worked): while not, what it holds is old news."""
        return self.read_ok and self.link.connected

    def cameras(self) -> list[CameraStatus]:
        """Every camera a capture node reported within the TTL, by name. Its frame age
        grows with the age of the report; while the broker cannot be read its state is
        "unknown", never the "streaming" it last had."""
        now = time.time()
        current = self.current
        out = []
        for value in self._fresh("camera."):
            status = CameraStatus.from_json(value)
            reported_s = max(0.0, now - float(value.get("updated_at", now)))
            age = status.last_frame_age_s
            status = dataclasses.replace(
                status,
                status_age_s=round(reported_s, 3),
                last_frame_age_s=round(age + reported_s, 3) if age is not None else None,
            )
            if not current:
                status = dataclasses.replace(
                    status,
                    state=CameraState.UNKNOWN,
                    last_error="no current status: the events service cannot read it from NATS",
                )
            out.append(status)
        return out

    def workers(self) -> list[NodeStatus]:
        return [NodeStatus.from_json(value) for value in self._fresh("node.worker.")]

    def capture_nodes(self) -> list[NodeStatus]:
        return [NodeStatus.from_json(value) for value in self._fresh("node.capture.")]
