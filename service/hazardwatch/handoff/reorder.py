"""Capture order again after competing workers: a short per-camera reorder window.

Workers finish batches in any order, so one camera's scored frames reach the events
service shuffled by up to a batch or two. The temporal detector needs them in capture
order. Each camera's frames wait here `window_s` after they arrive and leave in capture
order (capture time, then sequence number). A frame that arrives after a later frame of
its camera has already left is too late: it is dropped and counted (`late`), because the
detector's clock never runs backwards. One process needs no window (0 passes frames
straight through, in the order given).

The window is only waited where something may be missing. Capture numbers the frames it
hands on per camera (1, 2, 3 … in capture order), so a frame whose number follows the one
that left last has nothing left to wait for: it leaves at once, and so do the frames that
follow it. A gap (a frame still on its way, or lost for good) holds the later frames for
their window as before. Frames leave in the same order as with the window alone, never
later; the only frame counted late that the window alone would have kept is one that came
a full window after a later frame of its camera, too late by the window's own terms (the
window alone kept it only because another late frame happened to hold that one back;
`tests/handoff/test_reorder.py`).
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
        number_of: Callable[[T], int] | None = None,
    ) -> None:
        """`number_of`: the frame's hand-off number (0: none), for leaving at once."""
        self.window_s = window_s
        self._camera_of = camera_of
        self._order_of = order_of
        self._number_of = number_of
        self._numbers: dict[Hashable, int] = {}  # per camera: the number that left last
        self._pushed: dict[Hashable, None] = {}  # cameras pushed since the last `due`
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
        self._pushed[camera] = None
        return True

    def due(self, now: float) -> list[T]:
        """Every camera's frames that have waited their window or follow the last one
        that left, in capture order; a frame still waiting holds back the later frames
        of its camera."""
        out: list[T] = []
        arrivals, cameras = self._arrivals, self._pushed
        self._pushed = {}
        while arrivals and arrivals[0][0] + self.window_s <= now:
            cameras[arrivals.popleft()[1]] = None  # ordered, once each
        for camera in cameras:
            heap = self._heaps[camera]
            while heap and (heap[0][1] + self.window_s <= now or self._follows(camera, heap[0][3])):
                order, _, _, item = heapq.heappop(heap)
                self._released[camera] = order
                self._leaves(camera, item)
                out.append(item)
        return out

    def _follows(self, camera: Hashable, item: T) -> bool:
        if self._number_of is None:
            return False
        last = self._numbers.get(camera)
        return last is not None and self._number_of(item) == last + 1

    def _leaves(self, camera: Hashable, item: T) -> None:
        if self._number_of is None:
            return
        number = self._number_of(item)
        if number > 0:
            self._numbers[camera] = number
        else:  # no number: the next one cannot be known to follow
            self._numbers.pop(camera, None)

    def drain(self) -> list[T]:
        """Everything held, in each camera's capture order (shutdown)."""
        return self.due(float("inf"))
