"""``vmaedet train``: train or fine-tune a detector (single process, or one process per GPU under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the Typer app."""

    @app.command("train")
    def train_cmd(
        config: Annotated[str, typer.Option("--config", "-c", help="YAML config, or a built-in name (tiny, vit_b_pretrain, …).")] = "tiny",
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set optim.lr=1e-3 (repeatable).")] = None,
        data: Annotated[Optional[Path], typer.Option("--data", help="Dataset root (same as --set data.root=PATH).")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (same as --set train.out_dir=PATH).")] = None,
        resume: Annotated[Optional[str], typer.Option("--resume", help="'auto' (latest checkpoint in the output directory) or a .pth path.")] = None,
    ) -> None:
        """Train as the seed does (AdamW + layer decay, warm-up + cosine, BCE × K), with resumable checkpoints.

        Several processes: ``torchrun --nproc_per_node=N -m vmaedet.cli.main train --config …``
        (NCCL on GPUs, gloo on the CPU).  Writes ``last.pth``, ``checkpoint-<epoch>.pth``, ``best.pth``,
        ``final.safetensors``, ``metrics.jsonl`` and ``eval/`` CSVs into the output directory.
        """
        from ..config import load_config
        from ..train.loop import train

        overrides = list(set_ or [])
        if data is not None:
            overrides.append(f"data.root={data}")
        if out is not None:
            overrides.append(f"train.out_dir={out}")
        cfg = load_config(config, overrides)
        result = train(cfg, resume=resume)
        if result.final_checkpoint is not None:
            console = Console()
            last = result.history[-1] if result.history else {}
            msg = f"trained {result.steps} iterations in {result.wall_s:.0f} s"
            if "mAP" in last:
                msg += f"; frame-mAP {last['mAP']:.4f}"
            console.print(msg)
            console.print(f"final weights: {result.final_checkpoint}")
            console.print(f"next: vmaedet eval --checkpoint {result.final_checkpoint} --data {cfg.data.root}")
