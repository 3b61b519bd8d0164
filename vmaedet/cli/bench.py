"""`vmaedet bench`: latency / throughput / %-of-peak table per engine, precision and person count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from vmaedet.cli.export import FLOAT_GROUPS_HELP, CalibMethod, int8_options

console = Console()


def _int8_options(calib: Optional[Path], method: CalibMethod, attention: bool, float_groups: str) -> object:
    """The int8 options --calib-method / --int8-attention / --int8-float-groups ask for (None without --calib)."""
    if calib is None:
        return None
    return int8_options(method, attention, float_groups)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _hw(value: str) -> tuple[int, int]:
    from vmaedet.cli.export import parse_size

    return parse_size(value, "--input-size")


def bench(
    engines: Annotated[str, typer.Option(help="Comma-separated engines: torch, onnxruntime, tensorrt, openvino (CPU; needs the openvino extra), auto (the engine --backend auto picks for the exported artifact; its row says which and why).")] = "torch,onnxruntime",
    precision: Annotated[str, typer.Option(help="Comma-separated precisions: fp32, bf16, fp16, int8 (onnxruntime, openvino, auto; needs --calib). A precision an engine refuses here (e.g. openvino bf16 without native bf16) gives a 'refused: <reason>' line.")] = "fp32,bf16",
    variant: Annotated[str, typer.Option(help="Model variant (random weights) when no --checkpoint is given.")] = "vit_small_patch16_224",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Benchmark these weights instead of a random model.")] = None,
    persons: Annotated[str, typer.Option(help="Comma-separated person counts per clip.")] = "1,8,32",
    input_size: Annotated[str, typer.Option(help="Padded clip size HxW (multiples of 16).")] = "256x464",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per case.")] = 2,
    iters: Annotated[int, typer.Option(min=1, help="Timed runs per case (p50/p95 over these).")] = 5,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    calib: Annotated[Optional[Path], typer.Option("--calib", help="--precision int8: calibration data, an AVA-format dataset root (`vmaedet synth OUT` writes one); the int8 artifact is exported, calibrated and gated as by `vmaedet export --precision int8`, inside bench's working folder.")] = None,
    calib_clips: Annotated[int, typer.Option("--calib-clips", min=1, help="--precision int8: keyframe clips to calibrate on (one at a time).")] = 32,
    gate_clips: Annotated[int, typer.Option("--gate-clips", min=1, help="--precision int8: held-back keyframe clips the export's accuracy gates run on.")] = 16,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method", help="--precision int8: activation ranges from the abs-max, or the 99.99th percentile of |x|.")] = CalibMethod.absmax,
    int8_attention: Annotated[bool, typer.Option("--int8-attention", help="--precision int8: also quantize the attention products (activation × activation MatMuls).")] = False,
    int8_float_groups: Annotated[str, typer.Option("--int8-float-groups", help=FLOAT_GROUPS_HELP)] = "fc2",
    out: Annotated[Optional[Path], typer.Option(help="Write the JSON result here (schema: docs/bench_schema.json).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="PNG plot of latency vs persons (default: next to --out).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out JSON and --plot PNG.")] = False,
) -> None:
    """Measure p50/p95 latency, clips/s, FLOPs, %-of-measured-peak and accuracy vs torch fp32 per engine.

    Accuracy per row: top-5 agreement, mean and max |Δ score| against torch fp32 on the same inputs; each
    engine and precision is held to its gates (fp32: max |Δ logit| ≤ 1e-4; bf16, fp16, int8: top-5 ≥ 0.95 and
    mean |Δ score| ≤ 5e-3 over all its persons) and the gate column says pass or FAIL (the exit status stays 0).
    """
    from vmaedet.tools.bench import BenchConfig, plot_latency, run_benchmark
    from vmaedet.errors import VmaedetError

    try:
        counts = [int(p) for p in _csv(persons)]
    except ValueError:
        raise VmaedetError("--persons must be comma-separated integers", received=persons, expected="e.g. 1,8,32") from None
    if not counts or min(counts) < 1:
        raise VmaedetError("--persons needs at least one count ≥ 1", received=persons)
    from vmaedet.tools.bench import AUTO, BENCH_PRECISIONS

    precs = _csv(precision)
    bad = [p for p in precs if p not in BENCH_PRECISIONS]
    if bad:
        raise VmaedetError("unknown precision", received=bad, expected=", ".join(BENCH_PRECISIONS))
    from vmaedet.engines.base import list_engines

    known = [*list_engines(), AUTO]
    unknown = [e for e in _csv(engines) if e not in known]
    if unknown:
        raise VmaedetError("unknown engine", received=unknown, expected=", ".join(known))
    _check_calib(precs, calib, engines)
    from vmaedet.safeio import check_outputs

    plot = plot or (out.with_suffix(".png") if out is not None else None)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise VmaedetError("--plot must name an image file", received=str(plot), expected="a .png (or .svg, .pdf) path",
                           fix=f"use --plot {plot.with_suffix('.png')}")
    # before the (long) run: an output that is an input, or exists without --overwrite, is refused
    check_outputs({"--out": out, "--plot": plot}, {"--checkpoint": checkpoint, "--calib": calib}, overwrite=overwrite,
                  overwrite_hint="--overwrite")
    cfg = BenchConfig(engines=_csv(engines), precisions=precs, variant=variant,
                      checkpoint=str(checkpoint) if checkpoint else None, persons=counts,
                      input_hw=_hw(input_size), warmup=warmup, iters=iters, device=device,
                      calib=str(calib) if calib else None, calib_clips=calib_clips, gate_clips=gate_clips,
                      int8=_int8_options(calib, calib_method, int8_attention, int8_float_groups))
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


def _check_calib(precisions: list[str], calib: Optional[Path], engines: str) -> None:
    """--calib goes with --precision int8, and int8 needs it; the folder must be an AVA-format dataset."""
    from vmaedet.errors import ConfigError

    if "int8" in precisions and calib is None:
        raise ConfigError("--precision int8 needs calibration data", received="no --calib",
                          expected="--calib DATA, an AVA-format dataset root",
                          fix=f"add --calib DATA (e.g. a folder written by `vmaedet synth DATA`): "
                              f"vmaedet bench --engines {engines} --precision {','.join(precisions)} --calib DATA")
    if calib is not None and "int8" not in precisions:
        raise ConfigError("--calib is only used with --precision int8", received=f"--calib {calib}",
                          fix="add int8 to --precision, or leave --calib out")
    if calib is not None:
        from vmaedet.export.int8 import check_dataset_root

        check_dataset_root(calib)


def _gate_cell(r: dict) -> str:
    gate = r.get("gate")
    if not gate:
        return "–"
    return "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]"


def _print_table(result: dict) -> None:
    cfg = result["config"]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True, title=f"{cfg['variant']}  clip 1×3×16×{cfg['input_hw'][0]}×{cfg['input_hw'][1]}  on {cfg['device']}")
    for col in ("engine", "prec", "K", "p50 ms", "p95 ms", "clip/s", "GFLOP", "GFLOP/s", "%peak", "top-5",
                "mean|Δs|", "max|Δs|", "gate"):
        table.add_column(col, justify="right" if col not in ("engine", "prec", "gate") else "left", no_wrap=True)
    skipped = [r for r in result["results"] if r["status"] != "ok"]
    ok = [r for r in result["results"] if r["status"] == "ok"]
    for r in ok:
        frac = r["fraction_of_peak"]
        engine = f"auto→{r['backend']}" if r.get("backend") else r["engine"]
        table.add_row(engine, r["precision"], str(r["persons"]), f"{r['latency_ms']['p50']:.0f}",
                      f"{r['latency_ms']['p95']:.0f}", f"{r['clips_per_s']:.2f}", f"{r['flops_per_clip'] / 1e9:.0f}",
                      f"{r['achieved_flops_per_s'] / 1e9:.0f}", f"{100 * frac:.0f}" if frac else "–",
                      f"{r['top5_agreement']:.3f}", f"{r['mean_abs_score_diff']:.1e}", f"{r['max_abs_score_diff']:.1e}",
                      _gate_cell(r))
    if not console.is_terminal:  # logs and pipes: every column on one line
        console.width = max(console.width, 150)
    console.print(table)
    console.print("K = persons per clip; GFLOP counted per clip; %peak = achieved ÷ a same-dtype matmul measured in this run;\n"
                  "top-5 / mean|Δs| / max|Δs| = top-5 agreement per person, mean and max |Δ score| vs torch fp32 on the same "
                  "inputs;\ngate = pooled over the engine's rows: fp32 max |Δ logit| ≤ 1e-4; bf16, fp16, int8 top-5 ≥ 0.95 and "
                  "mean |Δ score| ≤ 5e-3 (max reported)")
    seen: set[tuple[str, str]] = set()
    for r in ok:
        key = (r["engine"], r["precision"])
        if key in seen:
            continue
        seen.add(key)
        gate = r.get("gate") or {}
        if gate and not gate["passed"]:
            console.print(f"[red]gate failed[/] {r['engine']} {r['precision']}: {'; '.join(gate['failures'])} "
                          f"(over {gate['persons']} persons)", soft_wrap=True)
        if r.get("backend"):
            console.print(f"auto {r['precision']}: {r['backend']} — {r['backend_reason']}", soft_wrap=True)
    int8 = [r for r in ok if (r.get("artifact") or {}).get("calibration_s") is not None]
    if int8:  # one artifact, shared by every engine that ran it
        art = int8[0]["artifact"]
        g = art.get("export_gates") or {}
        nan = float("nan")
        console.print(f"int8 artifact ({', '.join(dict.fromkeys(r['engine'] for r in int8))}): calibrated on "
                      f"{art.get('calibration_clips')} clip(s) of {cfg.get('calib')} in {art['calibration_s']:.1f} s; "
                      f"export with its gates {art['export_s']:.1f} s")
        if g:
            console.print(f"  export gates on {g.get('clips')} held-back clip(s), {g.get('persons')} persons: top-5 "
                          f"{g.get('top5_agreement', nan):.3f}, mean |Δ score| {g.get('mean_abs_score', nan):.1e}, "
                          f"max |Δ score| {g.get('max_abs_score', nan):.1e}"
                          + (f", frame-mAP fp32 {g['map_fp32']:.4f} vs int8 {g['map_int8']:.4f}"
                             if g.get("map_fp32") is not None else ""))
    for r in skipped:
        reason = r["reason"]
        tag = "[red]refused[/]" if reason.startswith("refused: ") else "[yellow]skipped[/]"
        console.print(f"{tag} {r['engine']} {r['precision']}: {reason.removeprefix('refused: ')}", soft_wrap=True)
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in result["peak_flops_per_s"].items())
    console.print(f"measured matmul peak: {peaks}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
