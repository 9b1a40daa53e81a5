"""Decode and pre-process ahead of inference in a background thread, and group items into batches."""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from twdeploy.inference.sources import Skipped

T = TypeVar("T")

_END = object()
_POLL_S = 0.05


class _Failure:
    """Carries an exception raised in the worker over to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher(Generic[T]):
    """Iterate `fn(item)` for the items of `iterable`, computed up to `depth` items ahead in a thread.

    An exception in the worker is re-raised in the consumer. Stopping early (break, close(),
    leaving a `with` block or dropping the object) stops the worker, closes the source
    iterator in the worker thread and joins it, so no thread outlives the prefetcher.
    """

    def __init__(self, iterable: Iterable[Any], fn: Callable[[Any], T] | None = None, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=_work,
            args=(iter(iterable), fn, self._queue, self._stop),
            name="twdeploy-prefetch",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._thread)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return self.get()

    def get(self, timeout: float | None = None) -> T:
        """The next item; TimeoutError if none is ready within `timeout` s, StopIteration at the end."""
        if self._done:
            raise StopIteration
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _POLL_S if deadline is None else min(_POLL_S, max(0.0, deadline - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
                break
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no item ready") from None
        if item is _END or isinstance(item, _Failure):
            self.close()
            if isinstance(item, _Failure):
                raise item.exc
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the worker and wait for it to finish (idempotent)."""
        self._done = True
        self._finalizer()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prefetch(iterable: Iterable[Any], fn: Callable[[Any], T] | None = None, depth: int = 4) -> Prefetcher[T]:
    """Run `fn` (identity if None) over `iterable` up to `depth` items ahead in a background thread."""
    return Prefetcher(iterable, fn, depth)


def _work(it: Iterator[Any], fn: Callable[[Any], Any] | None, out: queue.Queue[Any], stop: threading.Event) -> None:
    """Worker loop; it holds no reference to the Prefetcher, so dropping that shuts it down."""
    try:
        for item in it:
            if stop.is_set() or not _put(out, item if fn is None else fn(item), stop):
                return
        _put(out, _END, stop)
    except BaseException as exc:  # re-raised in the consumer thread
        _put(out, _Failure(exc), stop)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _put(out: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put unless stopped; False when the consumer has gone."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _shutdown(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    if thread is not threading.current_thread():
        thread.join()


@dataclass
class Batch(Generic[T]):
    """Up to `size` consecutive items, plus the Skipped items met while collecting them."""

    items: list[T] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def batched(items: Iterable[Any], size: int, max_wait_s: float | None = None) -> Iterator[Batch[Any]]:
    """Group items into batches of `size`; Skipped items ride along and never count toward `size`.

    The last partial batch is flushed at the end. With `max_wait_s` (for live streams) a
    partial batch is also flushed once its first item has waited that long, so a slow
    source never stalls results; the items are then pulled through a Prefetcher.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    if max_wait_s is None:
        yield from _batched_blocking(items, size)
        return
    pf = items if isinstance(items, Prefetcher) else Prefetcher(items, depth=size)
    batch: Batch[Any] = Batch()
    deadline: float | None = None
    try:
        while True:
            try:
                item = pf.get(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                yield batch
                batch, deadline = Batch(), None
                continue
            except StopIteration:
                break
            if isinstance(item, Skipped):
                batch.skipped.append(item)
                continue
            batch.items.append(item)
            if deadline is None:
                deadline = time.monotonic() + max_wait_s
            if len(batch.items) == size:
                yield batch
                batch, deadline = Batch(), None
    finally:
        pf.close()
    if batch.items or batch.skipped:
        yield batch


def _batched_blocking(items: Iterable[Any], size: int) -> Iterator[Batch[Any]]:
    batch: Batch[Any] = Batch()
    for item in items:
        if isinstance(item, Skipped):
            batch.skipped.append(item)
            continue
        batch.items.append(item)
        if len(batch.items) == size:
            yield batch
            batch = Batch()
    if batch.items or batch.skipped:
        yield batch
