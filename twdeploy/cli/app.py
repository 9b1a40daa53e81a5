"""The ``twdeploy`` command: a Typer app; each command lives in its own thin module."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from twdeploy.cli import info
from twdeploy.errors import TwdeployError

app = typer.Typer(
    name="twdeploy",
    help="Turn an image classifier into a segmentation model through its own LRP explanation, and ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("info")(info.main)


@app.callback()
def root() -> None:
    """train -> export -> segment: heatmap segmentation models, from training to deployment."""

err = Console(stderr=True)


def main() -> None:
    """Console-script entry point: user errors become one red line and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except TwdeployError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
