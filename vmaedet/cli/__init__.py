"""Command line interface: ``vmaedet --help``."""

from __future__ import annotations

import typer

#: Exit code of an interrupted command (Ctrl-C).
EXIT_INTERRUPTED = 130


class InterruptReported(typer.Exit):
    """Exit 130 from a command that has already told the user about the interruption (no second line)."""

    def __init__(self) -> None:
        super().__init__(EXIT_INTERRUPTED)
        _state["reported"] = True


_state = {"reported": False}


def interrupt_reported() -> bool:
    """Whether a command reported its own interruption in this process (and forget it)."""
    reported, _state["reported"] = _state["reported"], False
    return reported
