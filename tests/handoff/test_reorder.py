from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.handoff.reorder import ReorderBuffer

Item = tuple[str, float, int]  # camera, capture time, seq


def buffer(window_s: float = 0.5) -> ReorderBuffer[Item]:
    return ReorderBuffer(window_s, lambda i: i[0], lambda i: (i[1], i[2]))


def test_frames_leave_in_capture_order_after_the_window() -> None:
    b = buffer()
    for item, at in ((("a", 2.0, 2), 0.0), (("a", 1.0, 1), 0.1), (("a", 3.0, 3), 0.2)):
        b.push(item, at)
    assert b.due(0.45) == []  # nothing has waited its window yet
    assert b.due(0.65) == [("a", 1.0, 1), ("a", 2.0, 2)]  # 3 arrived at 0.2: waits to 0.7
    assert b.due(0.75) == [("a", 3.0, 3)]
    assert len(b) == 0 and b.late == 0


def test_a_frame_still_waiting_holds_back_later_ones_of_its_camera_only() -> None:
    b = buffer()
    b.push(("a", 2.0, 2), 0.0)
    b.push(("b", 5.0, 1), 0.0)
    b.push(("a", 1.0, 1), 0.4)  # earlier capture, arrived later
    assert b.due(0.6) == [("b", 5.0, 1)]  # a's head waits until 0.9
    assert b.due(0.95) == [("a", 1.0, 1), ("a", 2.0, 2)]


def test_a_frame_later_than_what_left_is_dropped_and_counted() -> None:
    b = buffer()
    b.push(("a", 2.0, 2), 0.0)
    assert b.due(1.0) == [("a", 2.0, 2)]
    assert not b.push(("a", 1.5, 1), 1.1) and b.late == 1
    assert b.push(("a", 2.0, 3), 1.1)  # same time, later seq: in order
    assert b.drain() == [("a", 2.0, 3)]


def test_a_zero_window_passes_frames_through() -> None:
    b = buffer(0.0)
    b.push(("a", 1.0, 1), 5.0)
    assert b.due(5.0) == [("a", 1.0, 1)]


class EveryCamera(ReorderBuffer[Item]):
    """The window as it was first written: each call looks at every camera's heap."""

    def due(self, now: float) -> list[Item]:
        out = []
        for camera, heap in self._heaps.items():
            while heap and heap[0][1] + self.window_s <= now:
                order, _, _, item = heapq.heappop(heap)
                self._released[camera] = order
                out.append(item)
        self._arrivals.clear()
        return out


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.floats(0, 5), st.floats(0, 0.4), st.booleans()),
        max_size=80,
    )
)
def test_looking_only_at_cameras_that_came_due_releases_what_looking_at_all_does(
    steps: list[tuple[str, float, float, bool]],
) -> None:
    """Frames of eight cameras arriving shuffled, `due` called at random moments: each call
    releases the same frames, in the same order per camera, as scanning every camera."""

    fast, every = buffer(), EveryCamera(0.5, lambda f: f[0], lambda f: (f[1], f[2]))
    now = 0.0
    for seq, (camera, captured, wait, call) in enumerate(steps):
        now += wait
        frame = (camera, captured, seq)
        assert fast.push(frame, now) == every.push(frame, now)
        if call:
            assert _by_camera(fast.due(now)) == _by_camera(every.due(now))
    assert _by_camera(fast.drain()) == _by_camera(every.drain())
    assert fast.late == every.late


def _by_camera(frames: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for frame in frames:
        out.setdefault(frame[0], []).append(frame)
    return out
