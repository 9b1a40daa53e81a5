"""The one check for output folders: usable before any work starts, or a one-line error."""

from __future__ import annotations

import tempfile
from pathlib import Path

from twdeploy.errors import TwdeployError


def output_dir(path: str | Path, option: str = "--out") -> Path:
    """Create ``path`` (and its parents) if needed; a one-line error when it cannot hold outputs."""
    path = Path(path).expanduser()
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"lies under the file {parent}"
            raise TwdeployError(f"{option} {path}: {where}; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TwdeployError(f"{option} {path}: cannot create the folder ({exc.strerror}); pass another path") from None
    try:
        with tempfile.TemporaryFile(dir=path):  # proves writability where permission bits do not tell
            pass
    except OSError as exc:
        raise TwdeployError(
            f"{option} {path}: folder is not writable ({exc.strerror}); fix its permissions or pass another path"
        ) from None
    return path
