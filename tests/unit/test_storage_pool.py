"""The shared storage pool (adapters/storage_pool.py): one bounded set of threads for every submission."""

from __future__ import annotations

import threading
import time

import pytest

from arc_reactor.adapters.storage_pool import STORAGE_WORKERS, storage_map


def test_answers_come_back_in_order_from_at_most_the_pools_threads() -> None:
    threads: set[str] = set()

    def work(i: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.001 * (5 - i % 5))  # later items finish first
        return i * i

    assert storage_map(work, range(40)) == [i * i for i in range(40)]
    assert 1 <= len(threads) <= STORAGE_WORKERS


def test_a_failure_is_raised_after_every_call_has_finished() -> None:
    finished: list[int] = []

    def work(i: int) -> int:
        if i == 0:
            raise ValueError("first one fails")
        time.sleep(0.01)
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="first one fails"):
        storage_map(work, range(6))
    assert sorted(finished) == [1, 2, 3, 4, 5]  # none left running behind the error


def test_a_nested_call_runs_inline_instead_of_waiting_on_its_own_threads() -> None:
    def outer(i: int) -> list[int]:
        return storage_map(lambda j: i + j, range(3))

    assert storage_map(outer, range(STORAGE_WORKERS * 2)) == [
        [i, i + 1, i + 2] for i in range(STORAGE_WORKERS * 2)
    ]
