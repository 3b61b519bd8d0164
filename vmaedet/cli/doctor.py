"""`vmaedet doctor`: a truthful report of what runs on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report torch, CUDA/GPU, onnxruntime providers, TensorRT (importable or not, and why), Triton, PyAV codecs."""
    from vmaedet.tools.doctor import collect

    rows = collect()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title="vmaedet doctor")
    table.add_column("component", style="bold")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    colour = {"ok": "green", "missing": "red", "warn": "yellow"}
    for r in rows:
        table.add_row(r["component"], f"[{colour[r['status']]}]{r['status']}[/]", r["detail"])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
