"""Show frames on screen, but only where a display exists.

`cv2.imshow` without a reachable display aborts the whole process (Qt cannot be caught from
Python), so `display_available()` checks first: the OpenCV build must have a GUI, and on
Linux a DISPLAY (X11) or WAYLAND_DISPLAY must be set and its socket must accept a connection.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import cv2
import numpy as np

_QUIT_KEYS = {ord("q"), ord("Q"), 27}  # q or Esc


def _gui_backend() -> str:
    """OpenCV's GUI backend as named in its build information ('NONE' for headless builds)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match.group(1) if match else "NONE"


def _connects(family: int, address: str | tuple[str, int]) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


def _x11_reachable(display: str) -> bool:
    """Whether an X server answers at `display` ('[host]:n[.screen]')."""
    match = re.fullmatch(r"(?:unix)?([^:]*):(\d+)(?:\.\d+)?", display)
    if match is None:
        return Path(display).exists()  # e.g. macOS launchd socket paths
    host, number = match.groups()
    if host in ("", "localhost") and hasattr(socket, "AF_UNIX"):
        path = f"/tmp/.X11-unix/X{number}"
        if _connects(socket.AF_UNIX, path) or _connects(socket.AF_UNIX, "\0" + path):
            return True
        if host == "":
            return False
    return _connects(socket.AF_INET, (host or "localhost", 6000 + int(number)))


def _wayland_reachable(name: str) -> bool:
    path = Path(name) if os.path.isabs(name) else Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / name
    return hasattr(socket, "AF_UNIX") and _connects(socket.AF_UNIX, str(path))


def display_available() -> tuple[bool, str]:
    """(True, '') when cv2.imshow can open a window here, else (False, why and what to do)."""
    if _gui_backend() == "NONE":
        return (
            False,
            "this OpenCV build has no GUI (opencv-python-headless, the default): for --show run "
            "pip uninstall -y opencv-python-headless && pip install opencv-python (needs libGL and glib)",
        )
    if not sys.platform.startswith("linux"):
        return True, ""
    display, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if not display and not wayland:
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset): run on a desktop or drop --show"
    if (display and _x11_reachable(display)) or (wayland and _wayland_reachable(wayland)):
        return True, ""
    shown = display or wayland
    return (
        False,
        f"display '{shown}' does not answer: check X forwarding / the desktop session, or drop --show",
    )


class Viewer:
    """Shows frames with cv2.imshow when a display is available, and does nothing otherwise."""

    def __init__(self, title: str = "twdeploy", enabled: bool = True) -> None:
        self.title = title
        available, reason = display_available() if enabled else (False, "display disabled")
        self.active, self.reason = available, reason
        self._opened = False

    def show(self, image: np.ndarray, delay_ms: int = 1) -> bool:
        """Show `image`; False once the user pressed q / Esc or closed the window."""
        if not self.active:
            return True
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
            self._opened = True
        cv2.imshow(self.title, image)
        key = cv2.waitKey(max(1, delay_ms)) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        return key not in _QUIT_KEYS and not closed

    def close(self) -> None:
        """Close the window if one was opened."""
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._opened = False

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
