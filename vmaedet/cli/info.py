"""`vmaedet info`: what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def info(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Checkpoint (.safetensors or official .pth). Omit to list variants.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Variant name; inferred from the weight shapes by default.")] = None,
) -> None:
    """Show a checkpoint's variant, parameter count, layout and classes (or list the variants)."""
    from vmaedet.labels import AVA_ACTIONS
    from vmaedet.models.checkpoints import load_detector_with_report
    from vmaedet.models.detector import OFFICIAL_VARIANTS, list_models, variant_config
    from vmaedet.models.videomae import count_params

    if checkpoint is None:
        table = Table(title="registered variants")
        for col in ("name", "D", "depth", "heads", "head dim", "params (80-way head)", "kind"):
            table.add_column(col)
        for name in list_models():
            c = variant_config(name)
            kind = "official size" if name in OFFICIAL_VARIANTS else "test/demo"
            table.add_row(name, str(c.embed_dim), str(c.depth), str(c.num_heads), str(c.head_dim),
                          f"{count_params(c.depth, c.embed_dim):,}", kind)
        console.print(table)
        return
    model, report = load_detector_with_report(checkpoint, arch=arch)
    n_params = sum(p.numel() for p in model.parameters())
    c = model.cfg
    table = Table(title=str(checkpoint), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("layout", report.layout),
        ("variant", report.variant),
        ("embed dim / depth / heads", f"{c.embed_dim} / {c.depth} / {c.num_heads} (head dim {c.head_dim})"),
        ("parameters", f"{n_params:,}"),
        ("classes", f"{model.num_classes} (AVA v2.2: {AVA_ACTIONS[0]!r} … {AVA_ACTIONS[-1]!r})"),
        ("keys loaded", str(report.loaded_keys)),
        ("left at init", ", ".join(sorted({k.split('.')[0] for k in report.initialised})) or "none"),
        ("ignored", f"{len(report.ignored)} key(s)" + (f" ({report.ignored[0]} …)" if report.ignored else "")),
    ]
    if report.epoch is not None:
        rows.append(("epoch", str(report.epoch)))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if report.initialised:
        console.print("[yellow]note:[/] some weights are not in this file and stay at their initial values "
                      "(expected for pretrain/Kinetics checkpoints: fine-tune with `vmaedet train`).")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
