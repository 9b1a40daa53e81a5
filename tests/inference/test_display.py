"""display_available() never lets cv2.imshow abort the process; probed against real sockets."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from twdeploy.inference import display
from twdeploy.inference.display import Viewer, display_available

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY checks are Linux-only")
needs_gui = pytest.mark.skipif(display._gui_backend() == "NONE", reason="headless OpenCV build")


@pytest.fixture
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture
def fake_x_server() -> Iterator[str]:
    """A listening abstract unix socket where an X server for display :<n> would be."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        for number in range(4000, 4100):
            try:
                server.bind(f"\0/tmp/.X11-unix/X{number}")
                break
            except OSError:
                continue
        server.listen(1)
        yield f":{number}"


@linux_only
@needs_gui
def test_no_display_variables(no_display: None) -> None:
    ok, reason = display_available()
    assert not ok and "DISPLAY" in reason and "\n" not in reason


@linux_only
@needs_gui
def test_display_that_does_not_answer(no_display: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":3987")
    ok, reason = display_available()
    assert not ok and ":3987" in reason


@linux_only
@needs_gui
def test_reachable_x_and_wayland_sockets(
    no_display: None, fake_x_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DISPLAY", fake_x_server)
    assert display_available() == (True, "")
    monkeypatch.delenv("DISPLAY")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(tmp_path / "wayland-0"))
        server.listen(1)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
        assert display_available() == (True, "")


def test_headless_opencv_build_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(display, "_gui_backend", lambda: "NONE")
    ok, reason = display_available()
    assert not ok and "opencv-python-headless" in reason


@linux_only
def test_viewer_without_display_is_a_no_op(no_display: None) -> None:
    with Viewer() as viewer:
        assert not viewer.active and viewer.reason
        assert viewer.show(np.zeros((10, 10, 3), np.uint8)) is True
    assert not Viewer(enabled=False).active
