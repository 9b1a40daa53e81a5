"""The shared mechanisms on their own: atomic writes and their temporaries, the signal handler, the output check."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.paths import output_dir
from twdeploy.signals import Interrupted, deferred_signals, stop_on_signals


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    atomic.write_bytes(tmp_path / "f.bin", b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~umask


def test_stale_temps_of_our_naming_are_cleaned_fresh_and_foreign_ones_kept(tmp_path: Path) -> None:
    stale, fresh, foreign = tmp_path / ".best.pt.abcd1234.tmp", tmp_path / ".last.pt.zzzz9999.tmp", tmp_path / "x.tmp"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    old = time.time() - 2 * atomic.STALE_AFTER_S
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    atomic.write_text(tmp_path / "new.txt", "done")
    assert not stale.exists() and fresh.exists() and foreign.exists()
    assert atomic.clean_stale_temps(tmp_path, older_than_s=0) == [fresh]


def test_failed_write_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    with pytest.raises(OSError):
        atomic.write_bytes(tmp_path / "target", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


def test_sigterm_raises_interrupted_with_exit_code_143() -> None:
    with pytest.raises(Interrupted) as info, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.exit_code == 143 and info.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_deferred_signals_hold_the_stop_until_the_block_ends() -> None:
    done = False
    with pytest.raises(Interrupted), stop_on_signals():
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done = True
        time.sleep(5)
    assert done


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_output_dir_rejects_files(tmp_path: Path, case: str) -> None:
    (tmp_path / "f").write_text("x")
    path = tmp_path / "f" if case == "file" else tmp_path / "f" / "sub"
    with pytest.raises(TwdeployError, match="pass a folder path"):
        output_dir(path)


def test_output_dir_creates_missing_parents(tmp_path: Path) -> None:
    assert output_dir(tmp_path / "a" / "b").is_dir()
