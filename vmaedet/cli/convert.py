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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DST if it exists.")] = False,
    force: Annotated[bool, typer.Option("--force", hidden=True, help="Old spelling of --overwrite.")] = False,
) -> None:
    """Convert a checkpoint to the vmaedet format (safetensors weights + JSON config), without running pickle code."""
    from vmaedet.models.checkpoints import convert_checkpoint
    from vmaedet.safeio import check_outputs

    # DST that is SRC, or exists without --overwrite: refused before anything is read or written
    check_outputs({"DST": dst}, {"SRC": src}, overwrite=overwrite or force, overwrite_hint="--overwrite")
    report = convert_checkpoint(src, dst, arch=arch)
    console.print(f"[green]wrote[/] {dst}  (layout {report.layout}, variant {report.variant}, "
                  f"{report.loaded_keys} tensors, {len(report.initialised)} left at init)")
    console.print(f"next: vmaedet info {dst}   |   vmaedet export {dst} --format onnx")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
