"""SIGTERM handled like Ctrl-C: both raise :class:`Interrupted`, a ``KeyboardInterrupt``.

``docker stop``, Slurm, Kubernetes and ``kill`` send SIGTERM; with :func:`stop_on_signals`
active, a training run saves ``last.pt`` and a segment run closes its outputs exactly as on
Ctrl-C. :func:`deferred_signals` holds a stop back while a step runs or a checkpoint is written (a flag
checked by the handler: blocking the signal would not work once other threads exist).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop request by signal; ``exit_code`` is the shell convention 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def signal_name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class _State:
    """Whether stops are being held back, and the signal that arrived meanwhile."""

    deferring = 0
    pending: int | None = None


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    if _State.deferring:
        _State.pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def handling_stops(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM inside the block; the previous handlers after it."""
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with handling_stops(_raise_interrupted):
        yield


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold a stop back inside the block; one that arrived is raised when the block ends without error."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring and _State.pending is not None:
        signum, _State.pending = _State.pending, None
        raise Interrupted(signum)
