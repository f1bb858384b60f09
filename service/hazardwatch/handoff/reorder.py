"""Capture order again after competing workers: a short per-camera reorder window.

Workers finish batches in any order, so one camera's scored frames reach the events
service shuffled by up to a batch or two. The temporal detector needs them in capture
order. Each camera's frames wait here `window_s` after they arrive and leave in capture
order (capture time, then sequence number). A frame that arrives after a later frame of
its camera has already left is too late: it is dropped and counted (`late`), because the
detector's clock never runs backwards. One process needs no window (0 passes frames
straight through, in the order given).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Order = tuple[float, int]


class ReorderBuffer(Generic[T]):
    def __init__(
        self,
        window_s: float,
        camera_of: Callable[[T], Hashable],
        order_of: Callable[[T], Order],
    ) -> None:
        self.window_s = window_s
        self._camera_of = camera_of
        self._order_of = order_of
        self._heaps: dict[Hashable, list[tuple[Order, float, int, T]]] = {}
        self._released: dict[Hashable, Order] = {}
        self._tie = itertools.count()
        # Every push's arrival, in arrival order (every frame waits the same window, so
        # they come due in this order): `due` looks only at the cameras of those that came
        # due, not at every camera, on each of the many calls a second.
        self._arrivals: deque[tuple[float, Hashable]] = deque()
        self.late = 0

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._heaps.values())

    def push(self, item: T, now: float) -> bool:
        """Hold `item`; False (and counted) when it is too late to be used."""
        camera, order = self._camera_of(item), self._order_of(item)
        released = self._released.get(camera)
        if released is not None and order < released:
            self.late += 1
            return False
        heap = self._heaps.setdefault(camera, [])
        heapq.heappush(heap, (order, now, next(self._tie), item))
        self._arrivals.append((now, camera))
        return True

    def due(self, now: float) -> list[T]:
        """Every camera's frames that have waited their window, in capture order; a
        frame still waiting holds back the later frames of its camera."""
        out: list[T] = []
        arrivals, cameras = self._arrivals, dict[Hashable, None]()
        while arrivals and arrivals[0][0] + self.window_s <= now:
            cameras[arrivals.popleft()[1]] = None  # ordered, once each
        for camera in cameras:
            heap = self._heaps[camera]
            while heap and heap[0][1] + self.window_s <= now:
                order, _, _, item = heapq.heappop(heap)
                self._released[camera] = order
                out.append(item)
        return out

    def drain(self) -> list[T]:
        """Everything held, in each camera's capture order (shutdown)."""
        return self.due(float("inf"))
