"""`vmaedet bench`: latency / throughput / %-of-peak table per engine, precision and person count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

console = Console()


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _hw(value: str) -> tuple[int, int]:
    from vmaedet.cli.export import parse_size

    return parse_size(value, "--input-size")


def bench(
    engines: Annotated[str, typer.Option(help="Comma-separated engines: torch, onnxruntime, tensorrt, openvino (CPU; needs vmaedet[openvino]).")] = "torch,onnxruntime",
    precision: Annotated[str, typer.Option(help="Comma-separated precisions: fp32, bf16, fp16.")] = "fp32,bf16",
    variant: Annotated[str, typer.Option(help="Model variant (random weights) when no --checkpoint is given.")] = "vit_small_patch16_224",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Benchmark these weights instead of a random model.")] = None,
    persons: Annotated[str, typer.Option(help="Comma-separated person counts per clip.")] = "1,8,32",
    input_size: Annotated[str, typer.Option(help="Padded clip size HxW (multiples of 16).")] = "256x464",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per case.")] = 2,
    iters: Annotated[int, typer.Option(min=1, help="Timed runs per case (p50/p95 over these).")] = 5,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    out: Annotated[Optional[Path], typer.Option(help="Write the JSON result here (schema: docs/bench_schema.json).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="PNG plot of latency vs persons (default: next to --out).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out JSON and --plot PNG.")] = False,
) -> None:
    """Measure p50/p95 latency, clips/s, FLOPs, %-of-measured-peak and score error per engine."""
    from vmaedet.tools.bench import BenchConfig, plot_latency, run_benchmark
    from vmaedet.errors import VmaedetError

    try:
        counts = [int(p) for p in _csv(persons)]
    except ValueError:
        raise VmaedetError("--persons must be comma-separated integers", received=persons, expected="e.g. 1,8,32") from None
    if not counts or min(counts) < 1:
        raise VmaedetError("--persons needs at least one count ≥ 1", received=persons)
    from vmaedet.constants import PRECISIONS

    precs = _csv(precision)
    bad = [p for p in precs if p not in PRECISIONS]
    if bad:
        raise VmaedetError("unknown precision", received=bad, expected=", ".join(PRECISIONS))
    from vmaedet.engines.base import list_engines

    unknown = [e for e in _csv(engines) if e not in list_engines()]
    if unknown:
        raise VmaedetError("unknown engine", received=unknown, expected=", ".join(list_engines()))
    from vmaedet.safeio import check_outputs

    plot = plot or (out.with_suffix(".png") if out is not None else None)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise VmaedetError("--plot must name an image file", received=str(plot), expected="a .png (or .svg, .pdf) path",
                           fix=f"use --plot {plot.with_suffix('.png')}")
    # before the (long) run: an output that is an input, or exists without --overwrite, is refused
    check_outputs({"--out": out, "--plot": plot}, {"--checkpoint": checkpoint}, overwrite=overwrite,
                  overwrite_hint="--overwrite")
    cfg = BenchConfig(engines=_csv(engines), precisions=precs, variant=variant,
                      checkpoint=str(checkpoint) if checkpoint else None, persons=counts,
                      input_hw=_hw(input_size), warmup=warmup, iters=iters, device=device)
    from vmaedet.progress import progress

    with progress(None, "cases", "bench", console=console, transient=True) as bar:
        result = run_benchmark(cfg, progress=lambda msg: bar.update(detail=msg))
    _print_table(result)
    from vmaedet.safeio import atomic_path, atomic_write

    if out is not None:
        with atomic_write(out, what="the --out JSON") as fh:
            fh.write(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {out}")
    if plot is not None:
        with atomic_path(plot, what="the --plot image") as tmp:
            plot_latency(result, tmp)
        console.print(f"wrote {plot}")


def _print_table(result: dict) -> None:
    cfg = result["config"]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True, title=f"{cfg['variant']}  clip 1×3×16×{cfg['input_hw'][0]}×{cfg['input_hw'][1]}  on {cfg['device']}")
    for col in ("engine", "prec", "K", "p50 ms", "p95 ms", "clip/s", "GFLOP", "GFLOP/s", "%peak", "max|Δs|"):
        table.add_column(col, justify="right" if col not in ("engine", "prec") else "left", no_wrap=True)
    skipped = [r for r in result["results"] if r["status"] != "ok"]
    for r in result["results"]:
        if r["status"] != "ok":
            continue
        frac = r["fraction_of_peak"]
        table.add_row(r["engine"], r["precision"], str(r["persons"]), f"{r['latency_ms']['p50']:.0f}",
                      f"{r['latency_ms']['p95']:.0f}", f"{r['clips_per_s']:.2f}", f"{r['flops_per_clip'] / 1e9:.0f}",
                      f"{r['achieved_flops_per_s'] / 1e9:.0f}", f"{100 * frac:.0f}" if frac else "–",
                      f"{r['max_abs_score_diff']:.1e}")
    console.print(table)
    console.print("K = persons per clip; GFLOP counted per clip; %peak = achieved ÷ a same-dtype matmul measured in this run")
    for r in skipped:
        console.print(f"[yellow]skipped[/] {r['engine']} {r['precision']}: {r['reason']}")
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in result["peak_flops_per_s"].items())
    console.print(f"measured matmul peak: {peaks}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
