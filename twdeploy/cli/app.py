"""The ``twdeploy`` command: a Typer app; each command lives in its own thin module."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from twdeploy.cli import benchmark, evaluate, export, info, segment, train
from twdeploy.errors import TwdeployError
from twdeploy.runtime.allocator import configure as configure_allocator
from twdeploy.signals import Interrupted, stop_on_signals

app = typer.Typer(
    name="twdeploy",
    help="Turn an image classifier into a segmentation model through its own LRP explanation, and ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def interruptible(command: Callable[..., Any]) -> Callable[..., Any]:
    """Ctrl-C / SIGTERM inside ``command``: one "interrupted" line and exit code 130 / 143, no traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, Interrupted) else Interrupted()
            detail = f": {escape(stop.message)}" if stop.message else ""
            err.print(f"[yellow]interrupted[/yellow] ({stop.signal_name}){detail}", highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None

    return run


app.command("info")(info.main)
app.command("train", help=train.HELP)(interruptible(train.main))
app.command("eval")(interruptible(evaluate.main))
app.command("export")(interruptible(export.main))
app.command("segment", epilog=segment.EXAMPLES)(interruptible(segment.main))
app.command("benchmark", epilog=benchmark.EXAMPLES)(interruptible(benchmark.main))


@app.callback()
def root() -> None:
    """train -> export -> segment: heatmap segmentation models, from training to deployment."""

def main() -> None:
    """Console-script entry point: user errors become one red line and exit 1; SIGTERM acts as Ctrl-C."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    configure_allocator()
    try:
        with stop_on_signals():
            app()
    except TwdeployError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:  # outside a command (argument parsing)
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        err.print(f"[yellow]interrupted[/yellow] ({stop.signal_name})")
        sys.exit(stop.exit_code)
