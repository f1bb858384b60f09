"""The roles' status in a JetStream key-value bucket, read by the events service.

In one process `/api/v1/cameras`, `/readyz` and the metrics read the readers and the
worker directly. Distributed, those live on other machines, so each role publishes what
it knows into the bucket `HAZARDWATCH_STATUS` every `PUBLISH_INTERVAL_S`:

- a capture node: `camera.<name>` per camera (`CameraStatus` with its node, as in
  `/api/v1/cameras`) and `node.capture.<node>` (`NodeStatus`);
- a worker: `node.worker.<node>` (`NodeStatus`: encoder, frames scored, whether it runs);
- an events instance: `node.events.<node>` with the scores' partitions it holds
  (handoff/partitions.py shares them out among the instances up).

Each value is JSON with `updated_at` (UTC epoch seconds). The bucket keeps values
`STATUS_TTL_S` (memory storage: status, not data); a role stopped cleanly deletes its keys
at once, and a dead one's age out — readers also ignore a value older than the TTL, so a
node that died seconds ago does not count as alive. The events service follows the
bucket with one long-lived watch (`StatusBoard`); requests and scrapes read its copy and
never wait on the broker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
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
WATCH_INACTIVE_S = 5.0  # the server drops a stopped watch's consumer this soon after

Entries = dict[str, dict[str, Any]]


def _apply(entries: Entries, entry: Any) -> None:
    """One watched update: a put sets the key, a delete or purge (a role stopped
    cleanly) removes it; a value that is not a JSON object is ignored."""
    if entry.operation in ("DEL", "PURGE") or not entry.value:
        entries.pop(entry.key, None)
        return
    try:
        value = json.loads(entry.value)
    except ValueError:
        return
    if isinstance(value, dict):
        entries[entry.key] = value


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
    """The events service's copy of every role's status, kept by one long-lived watch.

    One ordered consumer follows the bucket for the life of the service and applies each
    put and delete as it comes (polling by a listing, or by a watch per round, made a
    consumer every round: 124 were on the bucket after four minutes of one events
    service). Every interval a tick checks, with a stream-info request (no consumer), that
    the bucket is the one watched: a bucket lost (a restarted nats-server's memory
    storage) or made again, or a watch that ended, starts a new watch. Values of roles
    gone silent are dropped once older than the TTL."""

    def __init__(self, link: BrokerLink, interval_s: float = PUBLISH_INTERVAL_S) -> None:
        super().__init__(interval_s, "status-board")
        self.link = link
        self._entries: Entries = {}
        self._lock = threading.Lock()
        self.read_ok = False
        self._bucket = KvBucket(link)
        self._watch: concurrent.futures.Future[None] | None = None
        self._watched: str | None = None  # the watched bucket stream's creation time
        self._synced = threading.Event()  # the watch has delivered every value held

    def tick(self) -> None:
        self.refresh()

    def finish(self) -> None:
        self._stop_watch()

    def refresh(self) -> None:
        """Check the watch (start it, or again); at its first start, wait for the values
        the bucket holds."""
        try:
            created = self.link.call(self._bucket_created(), timeout=5)
        except Exception as exc:
            self.read_ok = False
            self._bucket.forget()
            self._stop_watch()
            log.debug("status not read: %s", exc)
            return
        if self._watch is None or self._watch.done() or created != self._watched:
            self._stop_watch()
            self._watched = created
            self._synced = threading.Event()
            self._watch = asyncio.run_coroutine_threadsafe(
                self._follow(self._synced), self.link.loop
            )
            self._synced.wait(5.0)
        self.read_ok = self._synced.is_set() and not self._watch.done()
        oldest = time.time() - STATUS_TTL_S
        with self._lock:  # roles that died: their keys age out without a delete to see
            for key in [k for k, v in self._entries.items()
                        if float(v.get("updated_at", 0)) < oldest]:  # fmt: skip
                del self._entries[key]

    async def _bucket_created(self) -> str:
        await self._bucket.get()  # made again when lost
        js = self.link.js
        assert js is not None
        info = await js.stream_info(f"KV_{self._bucket.name}")
        return str(info.created)

    async def _follow(self, synced: threading.Event) -> None:
        """Apply every update of the bucket until cancelled (or the watch fails)."""
        kv = await self._bucket.get()
        watcher = await kv.watchall(inactive_threshold=WATCH_INACTIVE_S)
        held: Entries = {}  # the values before the first marker: swapped in at once
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=3600.0)  # type: ignore[no-untyped-call]
                except NatsTimeoutError:
                    continue  # nothing changed for an hour
                if entry is None:  # every value the bucket held has come
                    with self._lock:
                        self._entries = held
                    synced.set()
                    continue
                target = self._entries if synced.is_set() else held
                with self._lock:
                    _apply(target, entry)
        finally:
            with contextlib.suppress(Exception):  # the broker is away: it ages out
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done():
            watch.cancel()
            with contextlib.suppress(Exception):
                watch.result(5.0)

    def _fresh(self, prefix: str) -> list[dict[str, Any]]:
        oldest = time.time() - STATUS_TTL_S
        with self._lock:
            entries = sorted(self._entries.items())
        return [
            value
            for key, value in entries
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

    def events_nodes(self) -> dict[str, list[int]]:
        """Every events instance up (reported within the TTL): the partitions it holds."""
        out: dict[str, list[int]] = {}
        for value in self._fresh("node.events."):
            held = value.get("partitions")
            if isinstance(held, list):
                out[str(value.get("node"))] = [k for k in held if isinstance(k, int)]
        return out
