from __future__ import annotations

import threading
import time

import pytest

from hazardwatch.handoff.queue import Delivery, FrameSink, FrameSource, LocalQueue


def items(deliveries: list[Delivery[int]] | list[Delivery[tuple[str, int]]] | None) -> list:
    assert deliveries is not None
    return [d.item for d in deliveries]


def test_drop_oldest_when_full_and_count_per_key() -> None:
    queue: LocalQueue[tuple[str, int]] = LocalQueue(3, key=lambda item: item[0])
    for i in range(5):
        queue.put(("a" if i < 4 else "b", i))
    assert len(queue) == 3
    assert queue.dropped == 2 and queue.dropped_by_key["a"] == 2
    assert items(queue.fetch(10, 0.1)) == [("a", 2), ("a", 3), ("b", 4)]


def test_put_never_blocks_even_when_nobody_consumes() -> None:
    queue: LocalQueue[int] = LocalQueue(10)
    started = time.perf_counter()
    for i in range(100_000):
        queue.put(i)
    assert time.perf_counter() - started < 2.0
    assert len(queue) == 10 and queue.dropped == 99_990


def test_fetch_waits_for_first_item_then_fills() -> None:
    queue: LocalQueue[int] = LocalQueue(100)

    def producer() -> None:
        time.sleep(0.05)
        for i in range(3):
            queue.put(i)
            time.sleep(0.01)

    threading.Thread(target=producer).start()
    assert items(queue.fetch(3, timeout_s=2.0, fill_wait_s=1.0)) == [0, 1, 2]


def test_fetch_times_out_empty() -> None:
    queue: LocalQueue[int] = LocalQueue(4)
    started = time.perf_counter()
    assert queue.fetch(4, timeout_s=0.05) == []
    assert 0.04 <= time.perf_counter() - started < 1.0


def test_close_wakes_waiters_drains_then_ends() -> None:
    queue: LocalQueue[int] = LocalQueue(4)
    queue.put(1)
    results: list[list[int]] = []
    waiter = threading.Thread(target=lambda: results.append(items(queue.fetch(4, 10.0, 10.0))))
    waiter.start()
    time.sleep(0.05)
    queue.close()
    waiter.join(2)
    assert not waiter.is_alive() and results == [[1]]
    queue.put(2)  # ignored once closed
    assert queue.closed and len(queue) == 0
    started = time.perf_counter()
    assert queue.fetch(4, 5.0) is None  # the end, at once
    assert time.perf_counter() - started < 1.0


def test_nak_redelivers_first_with_the_attempt_counted_then_gives_up() -> None:
    queue: LocalQueue[int] = LocalQueue(10, max_deliver=2)
    queue.put(1)
    queue.put(2)
    (first,) = queue.fetch(1, 0.1) or []
    assert (first.item, first.attempt) == (1, 1)
    first.nak()
    again = queue.fetch(5, 0.1) or []
    assert [(d.item, d.attempt) for d in again] == [(1, 2), (2, 1)]
    again[0].nak()  # out of attempts: terminated, not redelivered
    again[1].ack()
    assert queue.fetch(5, 0.05) == [] and queue.terminated == 1 and queue.redelivered == 1


def test_term_and_double_settles() -> None:
    queue: LocalQueue[int] = LocalQueue(10)
    queue.put(7)
    (delivery,) = queue.fetch(1, 0.1) or []
    delivery.term()
    delivery.nak()  # settled already: no redelivery
    assert queue.terminated == 1 and queue.fetch(1, 0.05) == []


def test_a_nak_during_drain_is_still_delivered() -> None:
    queue: LocalQueue[int] = LocalQueue(4)
    queue.put(1)
    queue.close()
    (delivery,) = queue.fetch(1, 0.1) or []
    delivery.nak()
    assert items(queue.fetch(1, 0.1)) == [1] and queue.fetch(1, 0.1) is None


def test_local_queue_satisfies_both_sides_of_the_protocol() -> None:
    queue = LocalQueue[int](1)
    sink: FrameSink[int] = queue
    source: FrameSource[int] = queue
    sink.put(1)
    assert items(source.fetch(1, 0.1)) == [1]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LocalQueue(0)
