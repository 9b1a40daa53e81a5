"""The prefetcher runs ahead in a real thread, propagates errors and shuts down cleanly; batching."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from twdeploy.inference.prefetch import Batch, batched, prefetch
from twdeploy.inference.sources import Skipped


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "twdeploy-prefetch"]


class Counting:
    """A source that counts how far it was pulled and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at, self.produced, self.closed = n, fail_at, 0, False

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ValueError(f"bad item {i}")
                self.produced += 1
                yield i
        finally:
            self.closed = True


def test_order_and_fn_are_kept() -> None:
    assert list(prefetch(range(20), fn=lambda x: x * x, depth=3)) == [x * x for x in range(20)]
    assert not _prefetch_threads()


def test_runs_ahead_but_only_depth_items() -> None:
    src = Counting(100)
    pf = prefetch(src, depth=4)
    assert next(pf) == 0
    time.sleep(0.3)
    assert 1 + 4 <= src.produced <= 1 + 4 + 1  # queue full, plus one item the worker holds
    pf.close()
    assert src.closed and not _prefetch_threads()


@pytest.mark.parametrize("where", ["source", "fn"])
def test_worker_exceptions_reach_the_consumer(where: str) -> None:
    def fn(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    src = Counting(10, fail_at=3 if where == "source" else None)
    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        for item in prefetch(src, fn=fn if where == "fn" else None):
            got.append(item)
    assert got == [0, 1, 2]
    assert src.closed and not _prefetch_threads()


def test_early_stop_closes_the_source_and_joins_the_thread() -> None:
    src = Counting(1000)
    with prefetch(src, depth=2) as pf:
        for item in pf:
            if item == 5:
                break
    assert src.closed and src.produced < 20
    assert not _prefetch_threads()


def test_dropping_the_prefetcher_stops_the_worker() -> None:
    src = Counting(1000)
    pf = prefetch(src, depth=2)
    next(pf)
    del pf
    gc.collect()
    assert src.closed and not _prefetch_threads()


def test_timeout_then_item() -> None:
    def slow() -> Iterator[int]:
        time.sleep(0.3)
        yield 1

    pf = prefetch(slow())
    with pytest.raises(TimeoutError):
        pf.get(timeout=0.05)
    assert pf.get(timeout=5) == 1
    with pytest.raises(StopIteration):
        pf.get(timeout=5)


def test_batched_sizes_and_skipped_ride_along() -> None:
    items = [0, 1, Skipped("bad", "corrupt"), 2, 3, 4, 5, 6]
    batches = list(batched(items, 3))
    assert [b.items for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [s.name for s in batches[0].skipped] == ["bad"]
    assert list(batched([Skipped("only", "x")], 4)) == [Batch([], [Skipped("only", "x")])]
    with pytest.raises(ValueError):
        list(batched([1], 0))


def test_batched_with_max_wait_flushes_partial_batches_of_a_slow_source() -> None:
    def slow() -> Iterator[int]:
        yield 0
        time.sleep(0.6)
        yield 1
        yield 2

    start = time.monotonic()
    stamps = []
    batches = []
    for batch in batched(slow(), 4, max_wait_s=0.1):
        stamps.append(time.monotonic() - start)
        batches.append(batch.items)
    assert batches == [[0], [1, 2]]
    assert stamps[0] < 0.4  # not held back until the slow source delivers more
    assert not _prefetch_threads()
