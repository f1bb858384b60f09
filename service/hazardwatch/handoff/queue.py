"""The hand-off between capture and scoring, in a broker's shape.

Producers `put` without ever blocking. Consumers `fetch` batches of deliveries and settle
each one: `ack` (done), `nak` (give it back for another try, here or on another worker),
or `term` (never again: a poison item). A fetch answers None once the source has ended
(closed and drained) — a broker-backed source never ends by itself; its consumer stops
when told to. The in-process `LocalQueue` is here; NATS JetStream implements the same
protocol across machines.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
DEFAULT_MAX_DELIVER = 3


class Retry(Exception):  # noqa: N818 - reads as the request it is
    """Raised by a consumer's handler when the items should be delivered again (the next
    hop was unavailable: e.g. the broker did not take the scores)."""


class Delivery(Protocol[T_co]):
    """One received item; settle it exactly once."""

    @property
    def item(self) -> T_co: ...

    @property
    def attempt(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, …"""
        ...

    def ack(self) -> None: ...

    def nak(self) -> None:
        """Deliver it again (up to the source's limit)."""

    def term(self) -> None:
        """Never deliver it again."""


class FrameSink(Protocol[T_contra]):
    """What capture needs: a put that never blocks (it may drop the oldest)."""

    def put(self, item: T_contra) -> None: ...


class FrameSource(Protocol[T]):
    """What the scoring worker needs."""

    def fetch(
        self, max_items: int, timeout_s: float, fill_wait_s: float = 0.0
    ) -> list[Delivery[T]] | None:
        """Up to `max_items` deliveries: wait `timeout_s` for the first, then at most
        `fill_wait_s` more for the batch to fill. [] when timed out; None once the source
        has ended and nothing is left."""
        ...


@dataclass(eq=False)
class LocalDelivery(Generic[T]):
    item: T
    attempt: int
    _queue: LocalQueue[T] = field(repr=False)
    settled: str | None = None

    def ack(self) -> None:
        self._settle("ack")

    def nak(self) -> None:
        if self._settle("nak"):
            self._queue.redeliver(self)

    def term(self) -> None:
        if self._settle("term"):
            self._queue.terminated += 1

    def _settle(self, how: str) -> bool:
        if self.settled is not None:
            return False  # settled once: a second settle is a no-op, as on a broker
        self.settled = how
        if how != "nak":
            self._queue.finished(self.item)
        return True


class LocalQueue(Generic[T]):
    """Bounded, drop-oldest, thread-safe in-process queue (put / fetch / close)."""

    def __init__(
        self,
        maxsize: int,
        key: Callable[[T], Hashable] | None = None,
        max_deliver: int = DEFAULT_MAX_DELIVER,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize={maxsize}: a queue must hold at least one item")
        self.maxsize = maxsize
        self.max_deliver = max_deliver
        self._items: deque[tuple[T, int]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._key = key
        self.dropped = 0
        self.dropped_by_key: Counter[Hashable] = Counter()
        self.put_count = 0
        self.redelivered = 0
        self.terminated = 0  # termed by a consumer, or out of delivery attempts
        # Per key: items put and not yet acked, termed or dropped (queued or in flight).
        self._outstanding: Counter[Hashable] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                oldest, _ = self._items.popleft()
                self.dropped += 1
                if self._key is not None:
                    self.dropped_by_key[self._key(oldest)] += 1
                    self._done_with(oldest)
            self._items.append((item, 1))
            self.put_count += 1
            if self._key is not None:
                self._outstanding[self._key(item)] += 1
            self._cond.notify()

    def outstanding(self, key: Hashable) -> int:
        """Items of `key` not yet done with: queued, or taken and not acked or termed. Zero
        after a camera's last put means every frame of it has been handled."""
        with self._cond:
            return self._outstanding[key]

    def finished(self, item: T) -> None:
        """An item acked or termed (its delivery calls this)."""
        with self._cond:
            self._done_with(item)

    def _done_with(self, item: T) -> None:
        if self._key is not None:
            key = self._key(item)
            self._outstanding[key] -= 1
            if self._outstanding[key] <= 0:
                del self._outstanding[key]

    def fetch(
        self, max_items: int, timeout_s: float, fill_wait_s: float = 0.0
    ) -> list[Delivery[T]] | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if not self._items:
                return None  # closed and drained: the end
            if fill_wait_s > 0 and not self._closed:
                fill_deadline = time.monotonic() + fill_wait_s
                while len(self._items) < max_items and not self._closed:
                    remaining = fill_deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            count = min(max_items, len(self._items))
            taken = [self._items.popleft() for _ in range(count)]
        return [LocalDelivery(item, attempt, self) for item, attempt in taken]

    def redeliver(self, delivery: LocalDelivery[T]) -> None:
        """A nak: first in line again, unless it has had all its attempts."""
        with self._cond:
            if delivery.attempt >= self.max_deliver:
                self.terminated += 1
                self._done_with(delivery.item)
                return
            self._items.appendleft((delivery.item, delivery.attempt + 1))
            self.redelivered += 1
            self._cond.notify()

    def close(self) -> None:
        """No more puts; consumers drain what is left, then fetch answers None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
