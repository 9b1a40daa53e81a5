"""Atomic file writes: a temporary file beside the target, then a rename over it.

A crash, a signal or ``kill -9`` mid-write leaves the previous file (or none), never a
truncated one. Finished files get the usual permissions (0666 minus the umask), not the
0600 of a temporary file. Temporaries that a killed process left behind are removed by
:func:`clean_stale_temps`, which every write runs once per folder.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 3600.0
"""A temporary of ours this old belongs to a dead writer (no write of ours takes an hour)."""
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp's ".<target>.<8 chars>.tmp"
_cleaned: set[Path] = set()


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def is_our_temp(path: Path) -> bool:
    """Whether ``path`` is named like a temporary that :func:`write_bytes` creates."""
    return bool(_TEMP_NAME.match(path.name))


def clean_stale_temps(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete our temporaries in ``folder`` older than ``older_than_s``; returns what was removed."""
    removed = []
    now = time.time()
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        try:
            if is_our_temp(path) and path.is_file() and now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # another process removed or renamed it meanwhile
    return removed


def write_bytes(path: Path, data: bytes, durable: bool = False) -> int:
    """Write ``data`` to ``path`` atomically; ``durable`` also fsyncs. Returns the byte count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    if folder not in _cleaned:
        _cleaned.add(folder)
        clean_stale_temps(folder)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def write_text(path: Path, text: str, durable: bool = False) -> int:
    """UTF-8 text version of :func:`write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), durable)
