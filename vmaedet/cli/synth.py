"""`vmaedet synth`: write a synthetic AVA-format dataset (stick figures acting, H.264 videos, CSVs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def synth(
    out: Annotated[Path, typer.Argument(help="Dataset root to create (must be new or empty unless --overwrite).")],
    videos: Annotated[int, typer.Option(help="Number of videos; the last ~val-fraction of them form the val split.")] = 8,
    seconds: Annotated[int, typer.Option(help="Length of each video in seconds (>= 5); keyframes at t = 2 .. S-2.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same CSVs and pixels.")] = 0,
    width: Annotated[int, typer.Option(help="Frame width in pixels (even).")] = 320,
    height: Annotated[int, typer.Option(help="Frame height in pixels (even).")] = 240,
    fps: Annotated[int, typer.Option(help="Frames per second (AVA convention: 25).")] = 25,
    max_persons: Annotated[int, typer.Option(help="At most this many figures per video (1..8).")] = 4,
    val_fraction: Annotated[float, typer.Option(help="Fraction of videos in the val split, in [0, 1).")] = 0.2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace meta.json, videos/ and annotations/ in a non-empty OUT.")] = False,
) -> None:
    """Render a synthetic AVA-format dataset: stick figures whose actions show in motion and pose.

    Writes OUT/meta.json, OUT/videos/synth_XXX.mp4 (H.264) and OUT/annotations/ (1 Hz keyframe labels, label map, proposals, exclusions).
    """
    from vmaedet.data.synthetic import generate
    from vmaedet.labels import action_name

    from vmaedet.progress import progress

    with progress(videos if videos > 0 else None, "videos", "synth", console=console, transient=True) as bar:
        summary = generate(out, videos=videos, seconds=seconds, seed=seed, width=width, height=height, fps=fps,
                           max_persons=max_persons, val_fraction=val_fraction, overwrite=overwrite,
                           progress=lambda done, total: bar.update(done), option_names=_FLAGS)

    table = Table(title=f"synthetic dataset: {summary.out_dir}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("videos", f"{summary.videos} ({len(summary.train_videos)} train, {len(summary.val_videos)} val), "
                            f"{seconds} s at {fps} fps, {width}x{height}")
    table.add_row("keyframes / boxes / label rows", f"{summary.keyframes} / {summary.boxes} / {summary.rows}")
    table.add_row("throughput", f"{summary.throughput:.1f} video-s per CPU-s "
                                f"({summary.cpu_seconds:.1f} CPU-s, {summary.wall_seconds:.1f} s wall)")
    console.print(table)
    hist = Table(title="labels per action")
    for col in ("id", "action", "rows"):
        hist.add_column(col)
    for a, n in summary.class_histogram.items():
        hist.add_row(str(a), action_name(a), str(n))
    console.print(hist)
    console.print(f"next: [bold]vmaedet data check {out}[/]  then  "
                  f"[bold]vmaedet train --config tiny --data {out}[/]")


#: The flag of each :func:`vmaedet.data.synthetic.generate` option, for its error messages.
_FLAGS = {"videos": "--videos", "seconds": "--seconds", "width": "--width", "height": "--height", "fps": "--fps",
          "max_persons": "--max-persons", "val_fraction": "--val-fraction", "overwrite": "--overwrite"}


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""
    app.command("synth")(synth)
