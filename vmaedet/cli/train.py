"""``vmaedet train``: train or fine-tune a detector (single process, or one process per GPU under torchrun)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from vmaedet.cli import InterruptReported

#: How this command's user says "resume" and "overwrite" (passed into the library's messages).
HINTS = {"resume": "--resume auto", "overwrite": "--overwrite"}


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the Typer app."""

    @app.command("train")
    def train_cmd(
        config: Annotated[str, typer.Option("--config", "-c", help="YAML config, or a built-in name (tiny, vit_b_pretrain, …).")] = "tiny",
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set optim.lr=1e-3 (repeatable).")] = None,
        data: Annotated[Optional[Path], typer.Option("--data", help="Dataset root (same as --set data.root=PATH).")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (same as --set train.out_dir=PATH).")] = None,
        resume: Annotated[Optional[str], typer.Option("--resume", help="'auto' (latest checkpoint in the output directory) or a .pth path. The run's config must match the checkpoint's.")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete an earlier run's files in the output directory first (only the files train writes).")] = False,
    ) -> None:
        """Train as the seed does (AdamW + layer decay, warm-up + cosine, BCE × K), with resumable checkpoints.

        Several processes: ``torchrun --nproc_per_node=N -m vmaedet.cli.main train --config …``
        (NCCL on GPUs, gloo on the CPU).  Writes ``last.pth``, ``checkpoint-<epoch>.pth``, ``best.pth``,
        ``final.safetensors``, ``metrics.jsonl`` and ``eval/`` CSVs into the output directory.
        An output directory that holds an earlier run is refused unless ``--resume`` continues it or
        ``--overwrite`` deletes it. Ctrl-C finishes the current iteration, saves ``last.pth`` and exits
        with code 130; ``--resume auto`` continues from there.
        """
        from vmaedet.config import load_config
        from vmaedet.train.loop import TrainingInterrupted, train

        overrides = list(set_ or [])
        if data is not None:
            overrides.append(f"data.root={data}")
        if out is not None:
            overrides.append(f"train.out_dir={out}")
        cfg = load_config(config, overrides)
        err = Console(stderr=True)
        try:
            result = train(cfg, resume=resume, overwrite=overwrite, hints=HINTS)
        except TrainingInterrupted as exc:
            err.print(f"interrupted (Ctrl-C): training stopped at iteration {exc.step} of {exc.total}.", highlight=False)
            if exc.checkpoint is not None:
                how = "saved now" if exc.saved_now else "the last complete one; the iteration in progress was dropped"
                err.print(f"last checkpoint: {exc.checkpoint} ({how})", highlight=False, markup=False, soft_wrap=True)
                again = ["vmaedet", "train", "--config", config]
                for o in set_ or []:
                    again += ["--set", o]
                if data is not None:
                    again += ["--data", str(data)]
                if out is not None:
                    again += ["--out", str(out)]
                err.print("continue with: " + shlex.join([*again, "--resume", "auto"]), highlight=False,
                          markup=False, soft_wrap=True)
            else:
                err.print("no checkpoint was written yet; nothing to resume.", highlight=False)
            raise InterruptReported() from None
        if result.final_checkpoint is not None:
            console = Console()
            last = result.history[-1] if result.history else {}
            msg = f"trained {result.steps} iterations in {result.wall_s:.0f} s"
            if "mAP" in last:
                msg += f"; frame-mAP {last['mAP']:.4f}"
            console.print(msg)
            console.print(f"final weights: {result.final_checkpoint}")
            console.print(f"next: vmaedet eval --checkpoint {result.final_checkpoint} --data {cfg.data.root}")
