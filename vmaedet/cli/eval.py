"""``vmaedet eval``: AVA frame-mAP@0.5 of a detection CSV, or of a checkpoint run over a dataset."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from vmaedet.errors import ConfigError, VmaedetError
from vmaedet.evaluation import PROTOCOLS, EvalResult, evaluate_frame_map
from vmaedet.evaluation.ava import EvalWarning

console = Console()

_ExistingFile = dict(exists=True, dir_okay=False, readable=True)


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)


def eval_command(
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Ground-truth CSV (video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]).", **_ExistingFile)] = None,
    detections: Annotated[Optional[Path], typer.Option("--detections", help="Detection CSV (video_id,timestamp,x1,y1,x2,y2,action_id,score).", **_ExistingFile)] = None,
    labelmap: Annotated[Optional[Path], typer.Option("--labelmap", help="Label map .pbtxt (v2.1 'item { id }' or v2.2 'label { label_id }'); its ids are the evaluated classes.", **_ExistingFile)] = None,
    exclusions: Annotated[Optional[Path], typer.Option("--exclusions", help="Excluded keyframes CSV (video_id,timestamp).", **_ExistingFile)] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="official: ActivityNet AVA evaluator (top 50 rows per frame); seed: no cap, as VideoMAE's published numbers.")] = "official",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write {mAP, per_class_ap} as JSON here.", dir_okay=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Evaluate this checkpoint instead of a detection CSV (needs --data).", **_ExistingFile)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Dataset root for --checkpoint (AVA layout, as written by 'vmaedet synth').", exists=True, file_okay=False)] = None,
    split: Annotated[str, typer.Option("--split", help="Split evaluated in checkpoint mode.")] = "val",
    frame_source: Annotated[Optional[str], typer.Option("--frame-source", help="Checkpoint mode: video, clips or frames (default: the dataset's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Checkpoint mode: clips per forward.")] = 8,
    device: Annotated[str, typer.Option("--device", help="Checkpoint mode: auto, cpu or cuda.")] = "auto",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Checkpoint mode: where detections.csv goes (default: next to the checkpoint).", file_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --json file (and, in checkpoint mode, detections.csv).")] = False,
) -> None:
    """Compute AVA frame-mAP@0.5 and print mAP with a per-class AP table.

    CSV mode: ``vmaedet eval --gt GT.csv --detections DET.csv --labelmap LABELMAP.pbtxt
    [--exclusions EXCL.csv] [--protocol official|seed] [--json OUT.json]``.
    Checkpoint mode: ``vmaedet eval --checkpoint CKPT --data ROOT`` runs the model on the dataset's
    validation split first and writes its detections CSV.
    """
    from vmaedet.safeio import check_outputs

    if protocol not in PROTOCOLS:
        raise ConfigError("unknown --protocol", received=protocol, expected=" or ".join(PROTOCOLS),
                          fix="use --protocol official or --protocol seed")
    checkpoint_mode = checkpoint is not None or data is not None
    outputs: dict[str, Optional[Path]] = {"--json": json_out}
    if checkpoint_mode and checkpoint is not None:
        outputs["detections.csv"] = (out_dir if out_dir is not None else checkpoint.parent) / "detections.csv"
    check_outputs(outputs, {"--gt": gt, "--detections": detections, "--labelmap": labelmap,
                            "--exclusions": exclusions, "--checkpoint": checkpoint},
                  overwrite=overwrite, overwrite_hint="--overwrite")
    start = time.perf_counter()
    if checkpoint_mode:
        result = _evaluate_checkpoint(checkpoint, data, protocol, split=split, frame_source=frame_source,
                                      batch_size=batch_size, device=device, out_dir=out_dir)
    else:
        missing = [name for name, value in (("--gt", gt), ("--detections", detections), ("--labelmap", labelmap))
                   if value is None]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)}", received="vmaedet eval without " + " ".join(missing),
                              expected="--gt GT.csv --detections DET.csv --labelmap LABELMAP.pbtxt "
                                       "(or --checkpoint CKPT --data ROOT)",
                              fix="pass the three files")
        import warnings

        with warnings.catch_warnings():  # the input warnings are printed below, once, in words
            warnings.simplefilter("ignore", EvalWarning)
            result = evaluate_frame_map(gt, detections, labelmap, exclusions, protocol=protocol)  # type: ignore[arg-type]
        for message in result.warnings:
            Console(stderr=True).print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    elapsed = time.perf_counter() - start
    console.print(_table(result))
    console.print(f"[bold]frame-mAP@0.5[/] ({result.protocol} protocol): [bold green]{result.mAP:.5f}[/]"
                  f"  ({sum(v is not None for v in result.per_class_ap.values())} classes with ground truth,"
                  f" {elapsed:.2f} s)")
    if json_out is not None:
        _write_json(json_out, result)
        console.print(f"wrote {json_out}")


def _evaluate_checkpoint(checkpoint: Path | None, data: Path | None, protocol: str, **options: object) -> EvalResult:
    """Checkpoint mode: run the model over ``data`` and evaluate it."""
    if checkpoint is None or data is None:
        raise ConfigError("--checkpoint and --data go together",
                          received=f"--checkpoint {checkpoint} --data {data}",
                          expected="both, or neither (then --gt/--detections/--labelmap)",
                          fix="pass both options")
    from vmaedet.train.evaluate import evaluate_checkpoint

    from vmaedet.progress import progress

    with progress(None, f"{checkpoint.name} on {data}", "eval", console=console, transient=True):
        out = evaluate_checkpoint(checkpoint, data, protocol=protocol, **options)  # type: ignore[arg-type]
    if "detections_csv" in out:
        console.print(f"detections written to {out['detections_csv']}")
    return EvalResult(
        mAP=float(out["mAP"]),
        per_class_ap={int(k): v for k, v in out["per_class_ap"].items()},
        protocol=str(out.get("protocol", protocol)),
        labelmap={int(k): v for k, v in out.get("labelmap", {}).items()},
        num_gt={int(k): v for k, v in out.get("num_gt", {}).items()},
        num_detections={int(k): v for k, v in out.get("num_detections", {}).items()},
    )


def _table(result: EvalResult) -> Table:
    table = Table(title=f"AVA frame AP@0.5 per class ({result.protocol})")
    table.add_column("id", justify="right")
    table.add_column("action")
    table.add_column("AP", justify="right")
    table.add_column("GT", justify="right")
    table.add_column("detections", justify="right")
    for cid, ap in result.per_class_ap.items():
        table.add_row(str(cid), result.labelmap.get(cid, ""), "–" if ap is None else f"{ap:.4f}",
                      str(result.num_gt.get(cid, 0)), str(result.num_detections.get(cid, 0)))
    return table


def _write_json(path: Path, result: EvalResult) -> None:
    payload = result.to_json()
    if not math.isfinite(payload["mAP"]):
        raise VmaedetError("mAP is not a finite number", received=payload["mAP"], expected="a float",
                           fix="check the inputs")
    from vmaedet.safeio import atomic_write

    with atomic_write(path, what="the --json result") as fh:
        fh.write(json.dumps(payload, indent=1) + "\n")
