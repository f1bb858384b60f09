"""Who consumes the scores: a lease in a JetStream key-value bucket.

The events service is the one consumer of the scores stream. A second `hazardwatch
events` on the same broker — started by mistake, or on purpose as a hot standby — must
not take the durable consumer from a live one (it would recreate it and the two would
split every camera's frames). Ownership is a key in the bucket `HAZARDWATCH_LEASES`
named after the stream and its durable consumer (`HAZARDWATCH_SCORES.events`; file
storage, kept `ttl_s` after its last write):

- the owner creates it (a create succeeds only where no live value is), renews it every
  `renew_s` by a compare-and-set on the revision it last wrote — the revision is its
  fencing token — and deletes it at a clean stop;
- another instance finds the key held and **stands by** (its API serves from the
  database), trying again every `retry_s`; when the owner dies its key ages out within
  `ttl_s` and the standby takes the scores over: the durable consumer from the owner's ack
  floor, the camera states and the events it left open from the database;
- an owner that could not renew within `ttl_s` (paused, cut off from the broker) may have
  been replaced: it stops handling scores at once and exits rather than write behind the
  new owner (`LeaseKeeper.on_lost`). What it had not acknowledged is delivered to the new
  owner.

There is one such key per partition of the scores (handoff/partitions.py); with one
partition, the one above.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.status import node_id
from hazardwatch.lifecycle import Periodic

log = logging.getLogger(__name__)

LEASE_BUCKET = "HAZARDWATCH_LEASES"
LEASE_TTL_S = 6.0
RENEW_S = 1.5
RETRY_S = 1.0


class Lease:
    """One key of the lease bucket: acquired, renewed with the revision as a token,
    released (every call waits on the broker link, at most `timeout_s`)."""

    def __init__(
        self,
        link: BrokerLink,
        key: str,
        holder: str | None = None,
        ttl_s: float = LEASE_TTL_S,
        timeout_s: float = 3.0,
    ) -> None:
        self.link = link
        self.key = key
        self.holder = holder or node_id()
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.revision: int | None = None  # the fencing token while held
        self.renewed_at = 0.0  # monotonic, of the last successful create or renew
        self._kv: KeyValue | None = None
        # Its keeper renews it while its partition is given back and released.
        self.lock = threading.RLock()
        # Set when acquired: its last holder gave it back cleanly (`mark_handed`).
        self.handed_over = False

    @property
    def held(self) -> bool:
        return self.revision is not None

    def current(self) -> bool:
        """Held, and renewed within the TTL: nobody else can have taken it yet. (A process
        paused past the TTL finds this False the moment it runs again, before its keeper
        has tried to renew.)"""
        return self.held and time.monotonic() - self.renewed_at < self.ttl_s

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; False when a live value is there."""
        started = time.monotonic()
        with self.lock:
            try:
                revision = self.link.call(self._create(), timeout=self.timeout_s)
            except KeyWrongLastSequenceError:
                return False
            self.revision, self.renewed_at = revision, started
            return True

    def renew(self) -> bool:
        """Write the lease again over the revision last written; False when another
        revision is there (someone took it: the token is lost for good)."""
        with self.lock:
            if self.revision is None:
                return False
            started = time.monotonic()
            try:
                self.revision = self.link.call(self._update(self.revision), timeout=self.timeout_s)
            except KeyWrongLastSequenceError:
                self.revision = None
                return False
            self.renewed_at = started
            return True

    def release(self) -> None:
        """Delete the key if it is still ours (a clean stop: a standby takes over at once)."""
        with self.lock:
            revision, self.revision = self.revision, None
        if revision is None:
            return
        try:
            self.link.call(self._delete(revision), timeout=self.timeout_s)
        except Exception as exc:  # it ages out within the TTL instead
            log.debug("lease %s not released: %s", self.key, exc)

    def owner(self) -> str | None:
        """Who holds the lease now, as its value says (None: nobody, or unknown)."""
        try:
            return self.read_owner()
        except Exception:
            return None

    def mark_handed(self) -> None:
        """Say, before releasing it, that everything of the lease's work is stored and
        handed over (a give-back, not a death): the key `<key>.handed`, which ages out
        with the bucket's TTL — the next owner reads it within a second or so."""
        self.link.call(self._put(f"{self.key}.handed"), timeout=self.timeout_s)

    def was_handed(self) -> bool:
        """The last holder gave the lease back cleanly, within the TTL (`mark_handed`)."""
        try:
            return self.link.call(self._get(f"{self.key}.handed"), timeout=self.timeout_s)
        except Exception:  # unknown: treated as a death (open events end as interrupted)
            return False

    def read_owner(self) -> str | None:
        """Who holds the lease now (None: nobody); raises when the broker cannot say."""
        return self.link.call(self._owner(), timeout=self.timeout_s)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            js = self.link.js
            assert js is not None
            try:
                self._kv = await js.key_value(LEASE_BUCKET)
            except BucketNotFoundError:
                config = KeyValueConfig(
                    bucket=LEASE_BUCKET, ttl=self.ttl_s, history=1, storage=StorageType.FILE
                )
                try:
                    self._kv = await js.create_key_value(config)
                except Exception:  # another instance created it meanwhile
                    self._kv = await js.key_value(LEASE_BUCKET)
        return self._kv

    async def _create(self) -> int:
        kv = await self._bucket()
        return int(await kv.create(self.key, self.holder.encode()))

    async def _update(self, revision: int) -> int:
        kv = await self._bucket()
        return int(await kv.update(self.key, self.holder.encode(), last=revision))

    async def _delete(self, revision: int) -> None:
        kv = await self._bucket()
        await kv.delete(self.key, last=revision)

    async def _put(self, key: str) -> None:
        kv = await self._bucket()
        await kv.put(key, self.holder.encode())

    async def _get(self, key: str) -> bool:
        kv = await self._bucket()
        try:
            await kv.get(key)
        except NotFoundError:
            return False
        return True

    async def _owner(self) -> str | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(self.key)
        except NotFoundError:  # no key, deleted or aged out
            return None
        return entry.value.decode() if entry.value else None


class LeaseKeeper(Periodic):
    """Renews held leases every `renew_s` (one, or those `leases` returns each round);
    calls `on_lost` once when a renew finds another revision, or when none succeeded for
    the lease's TTL (the broker away that long: the key may have aged out and been
    taken)."""

    def __init__(
        self,
        leases: Lease | Callable[[], Iterable[Lease]],
        on_lost: Callable[[str], None],
        renew_s: float = RENEW_S,
    ) -> None:
        super().__init__(renew_s, "lease-keeper")
        self.leases = (lambda: [leases]) if isinstance(leases, Lease) else leases
        self.on_lost = on_lost
        self.lost = False

    def tick(self) -> None:
        for lease in self.leases():
            if self.lost:
                return
            with lease.lock:
                if lease.held:  # else released meanwhile (its partition given back)
                    self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        if not lease.current():
            why = f"{lease.key} not renewed for {time.monotonic() - lease.renewed_at:.1f} s"
        else:
            try:
                if lease.renew():
                    return
                why = f"another instance holds {lease.key} now"
            except Exception as exc:  # the broker away: lost once the TTL has passed
                log.warning("lease %s not renewed (%s); trying again", lease.key, exc)
                return
        self.lost = True
        self.on_lost(why)
