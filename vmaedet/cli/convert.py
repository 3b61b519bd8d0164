"""`vmaedet convert`: any supported checkpoint layout → a vmaedet checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def convert(
    src: Annotated[Path, typer.Argument(help="Source checkpoint: official AVA/pretrain/Kinetics .pth or vmaedet .safetensors.")],
    dst: Annotated[Path, typer.Argument(help="Output vmaedet checkpoint (.safetensors).")],
    arch: Annotated[Optional[str], typer.Option(help="Variant name; inferred from the weight shapes by default.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite DST if it exists.")] = False,
) -> None:
    """Convert a checkpoint to the vmaedet format (safetensors weights + JSON config), without running pickle code."""
    from ..errors import CheckpointError
    from ..models.checkpoints import convert_checkpoint

    if dst.exists() and not force:
        raise CheckpointError(f"{dst} exists", fix="pass --force to overwrite it, or choose another name")
    report = convert_checkpoint(src, dst, arch=arch)
    console.print(f"[green]wrote[/] {dst}  (layout {report.layout}, variant {report.variant}, "
                  f"{report.loaded_keys} tensors, {len(report.initialised)} left at init)")
    console.print(f"next: vmaedet info {dst}   |   vmaedet export {dst} --format onnx")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
