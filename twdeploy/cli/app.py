"""The ``twdeploy`` command: a Typer app; each command lives in its own thin module."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from twdeploy.cli import benchmark, evaluate, export, info, segment, train
from twdeploy.errors import TwdeployError

app = typer.Typer(
    name="twdeploy",
    help="Turn an image classifier into a segmentation model through its own LRP explanation, and ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("info")(info.main)
app.command("train", help=train.HELP)(train.main)
app.command("eval")(evaluate.main)
app.command("export")(export.main)
app.command("segment", epilog=segment.EXAMPLES)(segment.main)
app.command("benchmark", epilog=benchmark.EXAMPLES)(benchmark.main)


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
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
