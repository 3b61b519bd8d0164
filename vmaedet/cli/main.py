"""The ``vmaedet`` command line (Typer + rich).

Each command lives in its own module ``vmaedet/cli/<name>.py`` exposing ``register(app)``.
Errors derived from :class:`vmaedet.errors.VmaedetError` are printed without a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from .. import __version__
from ..errors import VmaedetError

app = typer.Typer(
    name="vmaedet",
    help="VideoMAE spatio-temporal action detection (AVA): train, evaluate, export, stream, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

#: Command modules in help order; each defines register(app).
COMMAND_MODULES = (
    "info", "convert", "doctor", "synth", "data", "train", "eval", "export",
    "verify", "stream", "bench", "demo",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vmaedet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """VideoMAE AVA action detection toolkit."""


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"vmaedet.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a command not built yet is simply absent
        if _exc.name != f"vmaedet.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except VmaedetError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors and friends
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("aborted")
            return 1
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
