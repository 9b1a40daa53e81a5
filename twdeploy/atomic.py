"""Atomic file writes: a temporary file beside the target, then a rename over it.

A crash or Ctrl-C mid-write leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes, durable: bool = False) -> int:
    """Write ``data`` to ``path`` atomically; ``durable`` also fsyncs. Returns the byte count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
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
