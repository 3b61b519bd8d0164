"""The ``vmaedet`` command line (Typer + rich).

Each command lives in its own module ``vmaedet/cli/<name>.py`` exposing ``register(app)``.
Errors derived from :class:`vmaedet.errors.VmaedetError` are printed without a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any, TextIO

import typer
from rich.console import Console

from vmaedet import __version__
from vmaedet.errors import VmaedetError
from vmaedet.cli import interrupt_reported

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


#: Exit codes every command follows (README, "Errors and exit codes").
EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _is_click_error(exc: BaseException) -> bool:
    """A usage error of click or of the click copy Typer bundles (``typer._click``), by duck-typing.

    Typer ≥ 0.16 raises its own ``typer._click.exceptions.UsageError`` (not a subclass of
    ``click.ClickException``), older Typer raises click's: both have ``show()`` and ``exit_code``.
    """
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _is_abort(exc: BaseException) -> bool:
    return any(cls.__name__ == "Abort" and cls.__module__.split(".")[0] in ("click", "typer")
               for cls in type(exc).__mro__)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, kind):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _interrupted() -> int:
    err_console.print("interrupted")
    return EXIT_INTERRUPTED


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None, *, default: Any = None) -> None:
    """The toolkit's own warnings as ``warning: <sentence>`` (no file, line or class name); others as Python shows them."""
    if category.__module__.split(".")[0] == "vmaedet":
        err_console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (0 ok, 1 a check failed, 2 bad input, 130 interrupted)."""
    with warnings.catch_warnings():  # restored on return (tests call main() in one process)
        default = warnings.showwarning
        warnings.showwarning = lambda *args, **kwargs: _show_warning(*args, **kwargs, default=default)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        rc = app(args=argv, prog_name="vmaedet", standalone_mode=False)
    except VmaedetError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return _interrupted()
    except typer.Exit as exc:
        interrupt_reported()  # forget the mark: the code says it all
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - click/typer usage errors and OS errors; anything else re-raised
        if _is_abort(exc):  # click turns Ctrl-C into Abort (older Typer); EOF at a prompt too
            if _caused_by(exc, KeyboardInterrupt):
                return _interrupted()
            err_console.print("aborted")
            return EXIT_BAD_INPUT
        if _is_click_error(exc):
            exc.show()  # type: ignore[attr-defined]  # "Usage: … Try '… --help' … Error: …"
            code = exc.exit_code  # type: ignore[attr-defined]
            # a usage error is 2; other click errors (a file option that cannot be opened) are bad input too
            return code if code in (EXIT_OK, EXIT_BAD_INPUT) else EXIT_BAD_INPUT
        if isinstance(exc, OSError) and exc.errno is not None:  # a file the user named cannot be read/written
            from vmaedet.safeio import os_error_reason

            name = exc.filename if exc.filename is not None else "a file"
            err_console.print(f"[bold red]error:[/] cannot access {name}: {os_error_reason(exc)}\n"
                              f"  received: {type(exc).__name__}: {exc}\n"
                              f"  fix: check the path, its permissions and the free space", highlight=False,
                              soft_wrap=True)
            return EXIT_BAD_INPUT
        raise
    if rc == EXIT_INTERRUPTED and not interrupt_reported():  # Typer ≥ 0.16 turns Ctrl-C into Exit(130)
        err_console.print("interrupted")
    return rc if isinstance(rc, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
