from __future__ import annotations

import threading
import time

import pytest

from hazardwatch.handoff.queue import HandoffQueue, LocalQueue


def test_drop_oldest_when_full_and_count_per_key() -> None:
    queue: LocalQueue[tuple[str, int]] = LocalQueue(3, key=lambda item: item[0])
    for i in range(5):
        queue.put(("a" if i < 4 else "b", i))
    assert len(queue) == 3
    assert queue.dropped == 2 and queue.dropped_by_key["a"] == 2
    assert queue.get_batch(10, 0.1) == [("a", 2), ("a", 3), ("b", 4)]


def test_put_never_blocks_even_when_nobody_consumes() -> None:
    queue: LocalQueue[int] = LocalQueue(10)
    started = time.perf_counter()
    for i in range(100_000):
        queue.put(i)
    assert time.perf_counter() - started < 2.0
    assert len(queue) == 10 and queue.dropped == 99_990


def test_get_batch_waits_for_first_item_then_fills() -> None:
    queue: LocalQueue[int] = LocalQueue(100)

    def producer() -> None:
        time.sleep(0.05)
        for i in range(3):
            queue.put(i)
            time.sleep(0.01)

    threading.Thread(target=producer).start()
    batch = queue.get_batch(3, timeout_s=2.0, fill_wait_s=1.0)
    assert batch == [0, 1, 2]


def test_get_batch_times_out_empty() -> None:
    queue: LocalQueue[int] = LocalQueue(4)
    started = time.perf_counter()
    assert queue.get_batch(4, timeout_s=0.05) == []
    assert 0.04 <= time.perf_counter() - started < 1.0


def test_close_wakes_waiters_and_ignores_later_puts() -> None:
    queue: LocalQueue[int] = LocalQueue(4)
    queue.put(1)
    results: list[list[int]] = []
    waiter = threading.Thread(target=lambda: results.append(queue.get_batch(4, 10.0, 10.0)))
    waiter.start()
    time.sleep(0.05)
    queue.close()
    waiter.join(2)
    assert not waiter.is_alive() and results == [[1]]
    queue.put(2)
    assert queue.closed and len(queue) == 0
    assert queue.get_batch(4, 5.0) == []  # returns at once when closed


def test_local_queue_satisfies_the_protocol() -> None:
    queue: HandoffQueue[int] = LocalQueue(1)
    queue.put(1)
    assert len(queue) == 1


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LocalQueue(0)
