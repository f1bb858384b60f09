from __future__ import annotations

import heapq

from hypothesis import example, given, settings
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
    assert b.push(("a", 1.5, 1), 1.1) is False and b.late == 1
    assert b.push(("a", 2.0, 3), 1.1)  # same time, later seq: in order
    assert b.push(("a", 2.0, 2), 1.1)  # the one that left, again: no later one has left
    assert b.late == 1 and b.drain() == [("a", 2.0, 2), ("a", 2.0, 3)]


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


Numbered = tuple[str, float, int]  # camera, capture time, hand-off number (0: none)


def numbered(window_s: float = 0.5) -> ReorderBuffer[Numbered]:
    return ReorderBuffer(window_s, lambda i: i[0], lambda i: (i[1], i[2]), lambda i: i[2])


def test_a_frame_that_follows_the_last_one_out_leaves_at_once() -> None:
    b = numbered()
    b.push(("a", 1.0, 1), 0.0)
    assert b.due(0.1) == []  # the first: nothing is known to come before it
    assert b.due(0.5) == [("a", 1.0, 1)]
    b.push(("a", 1.1, 2), 0.6)
    b.push(("a", 1.2, 3), 0.6)
    assert b.due(0.6) == [("a", 1.1, 2), ("a", 1.2, 3)]  # no wait: 2 and 3 follow 1


def test_a_gap_holds_the_frames_after_it_for_their_window() -> None:
    b = numbered()
    b.push(("a", 1.0, 1), 0.0)
    assert b.due(0.5) == [("a", 1.0, 1)]
    b.push(("a", 1.3, 4), 1.0)  # 2 and 3 still on their way
    b.push(("a", 1.1, 2), 1.1)
    assert b.due(1.1) == [("a", 1.1, 2)]  # 2 follows 1; 4 waits for 3
    b.push(("a", 1.2, 3), 1.2)
    assert b.due(1.2) == [("a", 1.2, 3), ("a", 1.3, 4)]  # 3 came: 4 follows it
    b.push(("a", 1.5, 6), 2.0)  # 5 never comes
    assert b.due(2.4) == []
    assert b.due(2.5) == [("a", 1.5, 6)] and b.late == 0


def test_numbers_from_1_again_after_a_capture_restart_wait_the_window_once() -> None:
    b = numbered()
    b.push(("a", 1.0, 7), 0.0)
    assert b.due(0.5) == [("a", 1.0, 7)]
    b.push(("a", 9.0, 1), 1.0)
    b.push(("a", 9.1, 2), 1.0)
    assert b.due(1.0) == []
    assert b.due(1.5) == [("a", 9.0, 1), ("a", 9.1, 2)]
    b.push(("a", 9.2, 3), 1.6)
    assert b.due(1.6) == [("a", 9.2, 3)]


def test_frames_without_a_number_wait_the_window() -> None:
    b = numbered()
    b.push(("a", 1.0, 1), 0.0)
    assert b.due(0.5) == [("a", 1.0, 1)]
    b.push(("a", 1.1, 0), 0.6)
    assert b.due(0.6) == [] and b.due(1.1) == [("a", 1.1, 0)]
    b.push(("a", 1.2, 2), 1.2)  # after an unnumbered frame nothing is known to follow
    assert b.due(1.2) == [] and b.due(1.7) == [("a", 1.2, 2)]
    b.push(("a", 1.3, 0), 1.8)
    assert b.due(2.3) == [("a", 1.3, 0)]
    b.push(("a", 1.4, 1), 2.4)  # not even a 1 (numbers from 1 again)
    assert b.due(2.4) == [] and b.due(2.9) == [("a", 1.4, 1)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(0, 1.5), st.booleans(), st.booleans()),
        max_size=80,
    ),
    st.floats(0.05, 1.0),
)
@example(  # 4 waited its window behind 2, which came late and leaves at once after 1
    [("a", delay, False, False) for delay in (0.0, 1.5, 1.5, 0.0)], 1.0
)
def test_numbers_only_make_frames_leave_sooner(
    frames: list[tuple[str, float, bool, bool]], window_s: float
) -> None:
    """Four cameras, each numbering its frames in capture order; some frames never come,
    the rest arrive delayed at random, `due` called at random moments. With the numbers,
    none leaves later than with the window alone, one leaves before its window only right
    after the frame numbered before it, and the frames leave in the same order. A frame
    dropped as late that the window alone would have kept came at least a window after a
    later frame of its camera: too late by the window's own terms (the window alone kept
    it only because another frame, late too, happened to hold that one back)."""
    plain = ReorderBuffer[Numbered](window_s, lambda i: i[0], lambda i: (i[1], i[2]))
    fast = numbered(window_s)
    counts: dict[str, int] = {}
    arrivals: list[tuple[float, Numbered, bool]] = []
    for index, (camera, delay, lost, call) in enumerate(frames):
        counts[camera] = number = counts.get(camera, 0) + 1
        if not lost:
            arrivals.append((index * 0.1 + delay, (camera, index * 0.1, number), call))
    arrivals.sort(key=lambda a: a[0])
    arrived = {frame: at for at, frame, _ in arrivals}
    left_plain: dict[Numbered, float] = {}
    left_fast: dict[Numbered, float] = {}
    out_plain: list[Numbered] = []
    out_fast: list[Numbered] = []
    late_plain: set[Numbered] = set()
    late_fast: set[Numbered] = set()
    last_out: dict[str, int] = {}
    for i, (now, frame, call) in enumerate(arrivals):
        if not plain.push(frame, now):
            late_plain.add(frame)
        if not fast.push(frame, now):
            late_fast.add(frame)
        following = arrivals[i + 1][0] if i + 1 < len(arrivals) else float("inf")
        for now_ in (now, min(now + window_s / 2, following)) if call else (now,):
            for f in plain.due(now_):
                left_plain[f] = now_
                out_plain.append(f)
            for f in fast.due(now_):
                left_fast[f] = now_
                out_fast.append(f)
                if now_ < arrived[f] + window_s:  # early: only right after its predecessor
                    assert last_out.get(f[0]) == f[2] - 1
                last_out[f[0]] = f[2]
    out_plain += plain.drain()
    out_fast += fast.drain()
    assert late_plain <= late_fast and fast.late == len(late_fast)
    for f in late_fast - late_plain:
        assert any(
            g[0] == f[0] and g[2] > f[2] and arrived[f] >= at + window_s
            for g, at in arrived.items()
        ), f
    assert _by_camera(out_fast) == _by_camera([f for f in out_plain if f not in late_fast])
    assert all(
        left_fast.get(f, float("inf")) <= at for f, at in left_plain.items() if f not in late_fast
    )
