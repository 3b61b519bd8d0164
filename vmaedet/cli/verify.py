"""`vmaedet verify`: the parity ladder (float64 reference → torch → exported artifacts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
#: Width of the table when the output is not a terminal (logs, pipes): every column on one line.
TABLE_WIDTH = 170


#: Rungs --engines adds for the given artifacts (engine → its precisions), besides the torch ones.
ARTIFACT_RUNGS = {"openvino": ("fp32", "bf16")}


def _parse_rungs(engines: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``"torch-bf16,openvino,openvino-bf16"`` → (["bf16"], [("openvino", "fp32"), ("openvino", "bf16")]).

    ``torch`` / ``openvino`` alone = fp32.  Torch rungs run the checkpoint; the others run each
    artifact given as an argument on that engine.
    """
    from vmaedet.constants import PRECISIONS
    from vmaedet.errors import ConfigError

    known = {"torch": PRECISIONS, **ARTIFACT_RUNGS}
    torch_precs: list[str] = []
    artifact_rungs: list[tuple[str, str]] = []
    for spec in filter(None, (s.strip() for s in engines.split(","))):
        name, _, prec = spec.partition("-")
        if name not in known or prec not in ("", *known[name]):
            expected = [f"{n}{'-' + p if p != 'fp32' else ''}" for n, precs in known.items() for p in precs]
            raise ConfigError(f"unknown engine rung {spec!r}", received=engines,
                              expected=", ".join(expected) + " (artifacts are given as arguments)")
        if name == "torch":
            torch_precs.append(prec or "fp32")
        elif (name, prec or "fp32") not in artifact_rungs:
            artifact_rungs.append((name, prec or "fp32"))
    return torch_precs, artifact_rungs


def verify(
    artifacts: Annotated[Optional[list[Path]], typer.Argument(help="Exported artifacts (each with its <artifact>.json manifest).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint to compare with; default: the one recorded in the manifests (sha256-checked).")] = None,
    engines: Annotated[str, typer.Option(help="Extra rungs: torch-bf16, torch-fp16 (the checkpoint); openvino, openvino-bf16 (each .onnx artifact given, on OpenVINO; needs the openvino extra). fp32 rungs are gated at max |Δ logit| ≤ 1e-4; bf16, fp16 and int8 rungs at top-5 agreement ≥ 0.95 and mean |Δ score| ≤ 5e-3.")] = "",
    input_size: Annotated[Optional[str], typer.Option(help="Clip geometry HxW when no artifact fixes it (default 256x464).")] = None,
    persons: Annotated[str, typer.Option(help="Person counts, one random clip each (capped at the artifacts' max persons).")] = "1,7",
    seed: Annotated[int, typer.Option(help="Seed of the random clips and boxes.")] = 0,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per clip (after one warm-up).")] = 1,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON here.", dir_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --json file.")] = False,
) -> None:
    """Run the same inputs through the float64 reference, torch fp32 and each engine; print the error table.

    Gates: fp32 rungs max |Δ logit| ≤ 1e-4 (an artifact: the tolerance recorded in its manifest); bf16, fp16
    and int8 rungs top-5 agreement ≥ 0.95 and mean |Δ score| ≤ 5e-3 (max |Δ score| reported).
    Exits with status 1 when a rung misses a gate, naming the figures.
    """
    from vmaedet.errors import ConfigError
    from vmaedet.cli.export import parse_size
    from vmaedet.export.onnx import resolve_geometry
    from vmaedet.models.checkpoints import load_detector
    from vmaedet.tools.verify import checkpoint_from_manifests, run_ladder

    from vmaedet.artifacts import manifest_path
    from vmaedet.safeio import check_outputs

    artifacts = list(artifacts or [])
    inputs: dict[str, Optional[Path]] = {"--checkpoint": checkpoint}
    for i, a in enumerate(artifacts, 1):
        inputs[f"artifact #{i}"] = a
        inputs[f"the manifest of artifact #{i}"] = manifest_path(a)
    check_outputs({"--json": json_out}, inputs, overwrite=overwrite, overwrite_hint="--overwrite")
    if checkpoint is None:
        if not artifacts:
            raise ConfigError("nothing to verify against", fix="pass --checkpoint CKPT (and artifacts or --engines)")
        checkpoint = checkpoint_from_manifests(artifacts)
    input_hw = resolve_geometry(None, parse_size(input_size, "--input-size"))[0] if input_size else None
    if input_hw is None and not artifacts:
        input_hw = resolve_geometry()[0]
    try:
        ks = [int(k) for k in persons.split(",") if k.strip()]
    except ValueError as exc:
        raise ConfigError("cannot read --persons", received=persons, expected="comma-separated integers like 1,7") from exc
    if not ks or min(ks) < 0:
        raise ConfigError("--persons needs counts ≥ 0", received=persons, expected="comma-separated integers like 1,7",
                          fix="pass --persons 1,7")
    torch_precs, artifact_rungs = _parse_rungs(engines)
    if artifact_rungs and not artifacts:
        raise ConfigError(f"the {artifact_rungs[0][0]} rung runs an exported artifact, and none was given",
                          received=f"--engines {engines}", expected="an .onnx artifact as an argument",
                          fix=f"vmaedet export CKPT --format onnx --out exports/, then "
                              f"vmaedet verify exports/MODEL.onnx --engines {engines}")
    model = load_detector(checkpoint)
    from vmaedet.progress import progress

    with progress(None, "rungs", "verify", console=console, transient=True):
        rungs = run_ladder(model, artifacts, ["fp32", *torch_precs], input_hw=input_hw, ks=ks,
                           seed=seed, repeats=repeats, artifact_engines=artifact_rungs)
    if not console.is_terminal:  # logs and pipes: do not squeeze the table to 80 columns
        console.width = max(console.width, TABLE_WIDTH)
    for i, path in enumerate(artifacts, 1):
        console.print(f"#{i}: {path}")
    console.print(_table(rungs, checkpoint.name))
    console.print("top-5 (agreement of each person's 5 highest-scoring actions with the reference's) and mean |Δ score|:\n"
                  "pooled over every person; max figures: the worst clip.  Gated: the figures the gates column lists "
                  "(bold; red when missed).")
    if json_out is not None:
        from vmaedet.safeio import atomic_write

        with atomic_write(json_out, what="the --json table") as fh:
            fh.write(json.dumps({"checkpoint": str(checkpoint), "rungs": [r.to_dict() for r in rungs]}, indent=2) + "\n")
    from vmaedet.export.parity import describe_gates

    failed = [r for r in rungs if not r.ok]
    for r in failed:
        s = r.stats
        console.print(f"[red]regression[/] {r.engine} {r.precision}: {'; '.join(r.failures)} "
                      f"(top-5 {s['top5_agreement']:.3f}, mean |Δ score| {s.get('mean_abs_score', float('nan')):.3g}, "
                      f"max |Δ score| {s['max_abs_score']:.3g}, max |Δ logit| {s['max_abs_logit']:.3g}; "
                      f"gates: {describe_gates(r.tolerances)})", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _cell(stats: dict, tolerances: dict, gate: str, text: str) -> str:
    """``text``, in red when the figure misses its gate, bold when gated and met; plain when not gated."""
    if gate not in tolerances:
        return text
    from vmaedet.export.parity import within

    return f"[red]{text}[/]" if within(stats, {gate: tolerances[gate]}) else f"[bold]{text}[/]"


def _table(rungs: list, checkpoint_name: str) -> Table:
    """The ladder's table: figures, gates (fp32: max |Δ logit| ≤ 1e-4; lower precisions: top-5 ≥ 0.95 and
    mean |Δ score| ≤ 5e-3, max |Δ score| reported) and the verdict; a gated figure is bold, a missed one red."""
    from vmaedet.export.parity import describe_gates

    table = Table(title=f"parity vs float64 reference ({checkpoint_name})")
    cols = ("engine", "prec", "max |Δ logit|", "mean |Δ logit|", "top-5", "mean |Δ score|", "max |Δ score|", "ms",
            "gates", "ok")
    for col in cols:
        table.add_column(col, justify="left" if col in ("engine", "gates") else "right", no_wrap=True)
    table.add_row("torch (ref)", "fp64", "0", "0", "1.000", "0", "0", "-", "-", "")
    for r in rungs:
        s, tol = r.stats, r.tolerances
        nan = float("nan")
        table.add_row(
            r.engine, r.precision,
            _cell(s, tol, "logits_max_abs", f"{s['max_abs_logit']:.2e}"),
            f"{s['mean_abs_logit']:.2e}",
            _cell(s, tol, "top5_min", f"{s['top5_agreement']:.3f}"),
            _cell(s, tol, "scores_mean_abs", f"{s.get('mean_abs_score', nan):.2e}"),
            _cell(s, tol, "scores_max_abs", f"{s['max_abs_score']:.2e}"),
            f"{r.latency_ms:.1f}", describe_gates(tol) or "-", "[green]yes[/]" if r.ok else "[red]NO[/]")
    return table


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
