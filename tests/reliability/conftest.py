"""The fault suite's runner and ledger: every case records its outcome; the totals print at the end.

``cli`` runs the real entry point (``twdeploy.cli.app:main``) in this process, so each case
sees exactly what a user sees: exit code, stdout and stderr. Anything but a clean exit counts
as a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.inference.tiny_model import build_run
from twdeploy.cli.app import main


@dataclass
class Outcome:
    """What one command did."""

    code: int
    out: str
    err: str

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.err or "Traceback" in self.out


@dataclass
class Ledger:
    """Totals over the suite: cases, clean errors, tracebacks, data lost."""

    cases: int = 0
    clean_errors: int = 0
    tracebacks: int = 0
    data_lost: int = 0
    names: list[str] = field(default_factory=list)

    def record(self, name: str, outcome: Outcome | None = None, lost: bool = False) -> None:
        self.cases += 1
        self.names.append(name)
        if outcome is not None:
            self.tracebacks += outcome.traceback
            self.clean_errors += outcome.code != 0 and not outcome.traceback
        self.data_lost += lost


LEDGER = Ledger()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEDGER.cases:
        terminalreporter.write_line(
            f"reliability suite: {LEDGER.cases} cases, {LEDGER.clean_errors} clean errors, "
            f"{LEDGER.tracebacks} tracebacks, {LEDGER.data_lost} data lost"
        )


@pytest.fixture
def ledger() -> Ledger:
    return LEDGER


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outcome]:
    """Run ``twdeploy ARGS`` in-process; an exception escaping the entry point becomes a traceback outcome."""

    def run(*args: str | Path) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["twdeploy", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # what a user would see as a traceback
            captured = capsys.readouterr()
            return Outcome(99, captured.out, f"{captured.err}\nTraceback: {type(exc).__name__}: {exc}")
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def spawn(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``python -m twdeploy ARGS`` as a real child process (for the kill tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "twdeploy", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, model.onnx) of a freshly built tiny segmenter."""
    return build_run(tmp_path_factory.mktemp("reliability-model"))
