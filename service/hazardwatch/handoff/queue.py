"""The hand-off between capture and scoring: put / get_batch / close.

Capture never waits: when the queue is full the oldest item is dropped and counted. The
in-process implementation is here; a broker-backed one (NATS JetStream) will implement
the same protocol so the two halves can run on different machines.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class HandoffQueue(Protocol[T]):
    """What capture and the scoring worker need from a hand-off."""

    def put(self, item: T) -> None:
        """Enqueue without blocking; may drop the oldest item."""

    def get_batch(self, max_items: int, timeout_s: float, fill_wait_s: float = 0.0) -> list[T]:
        """Up to `max_items` items: wait `timeout_s` for the first, then at most
        `fill_wait_s` more for the batch to fill. Empty when timed out or closed."""
        ...

    def close(self) -> None:
        """Wake every waiter; later puts are ignored, remaining items can still be taken."""

    @property
    def closed(self) -> bool: ...

    def __len__(self) -> int: ...


class LocalQueue(Generic[T]):
    """Bounded, drop-oldest, thread-safe in-process queue."""

    def __init__(self, maxsize: int, key: Callable[[T], Hashable] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize={maxsize}: a queue must hold at least one item")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._key = key
        self.dropped = 0
        self.dropped_by_key: Counter[Hashable] = Counter()
        self.put_count = 0

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
                oldest = self._items.popleft()
                self.dropped += 1
                if self._key is not None:
                    self.dropped_by_key[self._key(oldest)] += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()

    def get_batch(self, max_items: int, timeout_s: float, fill_wait_s: float = 0.0) -> list[T]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if fill_wait_s > 0 and not self._closed:
                fill_deadline = time.monotonic() + fill_wait_s
                while len(self._items) < max_items and not self._closed:
                    remaining = fill_deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            count = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
