"""``vmaedet data check``: validate an AVA-format dataset (annotations, proposals, frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from vmaedet.data.validate import Report, check_dataset, load_config

console = Console()


def _print_report(report: Report, max_rows: int) -> None:
    if report.issues:
        table = Table(title=f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
        for col in ("severity", "file:line", "problem"):
            table.add_column(col, overflow="fold")
        for issue in report.issues[:max_rows]:
            style = "red" if issue.severity == "error" else "yellow"
            table.add_row(f"[{style}]{issue.severity}[/]", issue.where, issue.message)
        console.print(table)
        if len(report.issues) > max_rows:
            console.print(f"… {len(report.issues) - max_rows} more (raise --max-rows to see them)")
    summary = Table(title="summary")
    for col in ("split", "videos", "keyframes", "boxes", "rows", "proposals", "excluded", "class histogram (id: rows)"):
        summary.add_column(col, overflow="fold")
    for split, s in report.summary.items():
        hist = " ".join(f"{k}:{v}" for k, v in s.get("class_histogram", {}).items())
        summary.add_row(split, *(str(s.get(k, 0)) for k in ("videos", "keyframes", "boxes", "rows", "proposals",
                                                            "excluded")), hist)
    console.print(summary)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group."""
    data_app = typer.Typer(help="Inspect and validate AVA-format datasets.", no_args_is_help=True)

    @data_app.command("check")
    def check(
        root: Annotated[Path, typer.Argument(help="Dataset root (the `vmaedet synth` layout by default).")],
        split: Annotated[str, typer.Option(help="train | val | all (or a split named in --config).")] = "all",
        frame_source: Annotated[Optional[str], typer.Option(help="video | clips | frames (default video).")] = None,
        frames_root: Annotated[Optional[Path], typer.Option(help="Frames root relative to ROOT.")] = None,
        fps: Annotated[Optional[float], typer.Option(help="Frame rate of a frames folder (default 30).")] = None,
        timestamp_start: Annotated[Optional[int], typer.Option(help="First timestamp of frame folders (AVA 900).")] = None,
        config: Annotated[Optional[Path], typer.Option(help="YAML with the same fields plus labelmap and splits.")] = None,
        max_rows: Annotated[int, typer.Option(min=0, help="Issues shown in the table.")] = 200,
    ) -> None:
        """Check annotations, proposals and frames of ROOT; exit code 1 when any error is found.

        Reports malformed rows, boxes outside [0, 1] or inverted, unknown action ids, missing or
        unreadable videos/frames and keyframes without enough temporal context, each with file:line,
        then a summary (videos, keyframes, boxes, class histogram).
        """
        from vmaedet.errors import DataError, UsageError

        if not root.is_dir():  # bad input (exit 2), not a failed check (exit 1)
            raise DataError("dataset root not found" if not root.exists() else "the dataset root is a file, not a folder",
                            received=str(root), expected="a folder in the AVA layout (annotations/, videos/)",
                            fix="check the path, or create a dataset with `vmaedet synth DIR`")
        if fps is not None and not fps > 0:
            raise UsageError("--fps must be positive", received=fps, expected="frames per second > 0, e.g. 30",
                             fix="pass --fps 30")
        if config is not None and not config.is_file():
            raise DataError("--config file not found", received=str(config), expected="a YAML file", fix="check the path")
        cfg = load_config(root, config, frame_source=frame_source,
                          frames_root=str(frames_root) if frames_root else None, fps=fps,
                          timestamp_start=timestamp_start)
        report = check_dataset(root, split, cfg)
        _print_report(report, max_rows)
        if report.errors:
            console.print(f"[red]{len(report.errors)} error(s)[/] — fix them and run `vmaedet data check {root}` again")
            raise typer.Exit(1)
        console.print(f"[green]OK[/] — next: `vmaedet train --data {root}`")

    app.add_typer(data_app, name="data")
