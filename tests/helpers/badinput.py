"""Harness for the bad-input suite: ``(argv, expected exit code, expected words)`` cases.

Each case runs the real CLI entry point (:func:`vmaedet.cli.main.main`) in this process and asserts

* no traceback in stdout or stderr,
* the exit code,
* every expected word in the combined output (case-insensitive),
* every file that existed under the watched folders before is byte-identical after (sha256),
* no temporary or partial file was left behind (``.tmp`` names) unless the case allows new files.

Use :func:`run_case` from a parametrised test; build argv with paths under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence


@dataclass(frozen=True)
class Case:
    """One bad input: the argv (``{tmp}`` is replaced by the test's folder), exit code, words."""

    id: str
    argv: Sequence[str]
    code: int
    words: Sequence[str] = ()
    #: files that may appear (relative to tmp), e.g. a log; anything else new fails the case.
    may_create: Sequence[str] = field(default_factory=tuple)


def snapshot(folders: Iterable[Path]) -> dict[Path, str]:
    """sha256 of every file below ``folders``."""
    out: dict[Path, str] = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[p] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: Sequence[str]) -> tuple[int, str]:
    """Run ``vmaedet`` in-process; return (exit code, stdout + stderr). A raised exception fails."""
    from rich.console import Console

    from vmaedet.cli import main as cli_main

    buf_out, buf_err = io.StringIO(), io.StringIO()
    saved = cli_main.err_console
    cli_main.err_console = Console(file=buf_err, width=200, highlight=False)
    try:
        with redirect_stdout(buf_out), redirect_stderr(buf_err):
            code = cli_main.main(list(argv))
    except SystemExit as exc:  # a raw sys.exit inside a command is a bug, but report it usefully
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        cli_main.err_console = saved
    return code, buf_out.getvalue() + buf_err.getvalue()


def run_case(case: Case, tmp: Path, watch: Sequence[Path] = (), runner: Callable[[Sequence[str]], tuple[int, str]] = run_cli
             ) -> str:
    """Run one case and assert its contract; returns the output for further checks."""
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    folders = [tmp, *watch]
    before = snapshot(folders)
    code, text = runner(argv)
    after = snapshot(folders)
    assert "Traceback" not in text, f"{case.id}: traceback in output:\n{text}"
    assert code == case.code, f"{case.id}: exit {code}, expected {case.code}; output:\n{text}"
    low = text.lower()
    for word in case.words:
        assert word.lower() in low, f"{case.id}: {word!r} not in output:\n{text}"
    for path, digest in before.items():
        assert path in after, f"{case.id}: {path} was deleted"
        assert after[path] == digest, f"{case.id}: {path} was modified"
    allowed = {(tmp / m).resolve() for m in case.may_create}
    new = [p for p in after if p not in before and p.resolve() not in allowed]
    assert not new, f"{case.id}: files left behind: {[os.fspath(p) for p in new]}"
    return text
