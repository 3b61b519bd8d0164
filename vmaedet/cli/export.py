"""`vmaedet export`: a checkpoint → a verified ONNX graph (fp32, FP16 or int8 QDQ) or a TensorRT engine."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from vmaedet.constants import EXPORT_PRECISIONS

console = Console()


def parse_size(text: str, what: str) -> tuple[int, int]:
    """``"1920x1080"`` → (1920, 1080): the CLI's ``WxH`` / ``HxW`` sizes; ConfigError naming the flag ``what``."""
    from vmaedet.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"cannot read {what}", received=text, expected="two integers like 1920x1080")
    return int(m.group(1)), int(m.group(2))


class Format(str, Enum):
    onnx = "onnx"
    engine = "engine"


#: The export precisions (:data:`vmaedet.constants.EXPORT_PRECISIONS`) as a choice of the CLI.
Precision = Enum("Precision", {p: p for p in EXPORT_PRECISIONS}, type=str)  # type: ignore[misc]


class CalibMethod(str, Enum):
    absmax = "absmax"
    percentile = "percentile"


#: ``--int8-float-groups``: the linear-layer groups an int8 export keeps in float ("none": quantize all four).
FLOAT_GROUPS_HELP = ("--precision int8: linear-layer groups kept in float in every block, comma-separated from "
                     "qkv, proj, fc1, fc2; 'none' quantizes all four (ViT-B then misses the mean |Δ score| gate).")


def int8_options(method: CalibMethod, attention: bool, float_groups: str) -> object:
    """The :class:`~vmaedet.export.int8.Int8Options` that --calib-method, --int8-attention and --int8-float-groups ask for."""
    from vmaedet.errors import ConfigError
    from vmaedet.export.int8 import LAYER_GROUPS, Int8Options

    text = float_groups.strip().lower()
    groups = () if text == "none" else tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = [g for g in groups if g not in LAYER_GROUPS]
    if unknown or (not groups and text != "none"):
        raise ConfigError("--int8-float-groups names an unknown linear-layer group", received=float_groups,
                          expected=f"a comma-separated list of {', '.join(LAYER_GROUPS)}, or none",
                          fix="e.g. --int8-float-groups fc2 (the default) or --int8-float-groups none")
    return Int8Options(include_attention=attention, method=method.value, float_groups=groups)


class RoiAlignMode(str, Enum):
    plugin = "plugin"
    builtin = "builtin"


def _tensorrt_builder() -> Callable[..., Any]:
    """``vmaedet.export.tensorrt.build_engine``, or a clear error naming what is missing."""
    from vmaedet.errors import BackendUnavailable, VmaedetError

    try:
        from vmaedet.export import tensorrt as trt_export
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT export is not available: vmaedet.export.tensorrt cannot be imported",
            received=f"{type(exc).__name__}: {exc}",
            fix="install TensorRT from NVIDIA's index on a machine with a CUDA GPU (see README), "
                "or export ONNX with --format onnx",
        ) from exc
    status_fn = getattr(trt_export, "tensorrt_status", None)
    if status_fn is not None:
        try:
            status = status_fn()
        except VmaedetError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing probe means "not usable", never a traceback
            raise BackendUnavailable("TensorRT is not usable here", received=f"{type(exc).__name__}: {exc}",
                                     fix="run on a machine with a CUDA GPU and TensorRT installed") from exc
        usable = status.get("available", status.get("usable")) if isinstance(status, dict) else \
            getattr(status, "available", getattr(status, "usable", None))
        if usable is False:
            reason = status.get("reason") if isinstance(status, dict) else getattr(status, "reason", None)
            raise BackendUnavailable("TensorRT is not usable here", received=reason or status,
                                     fix="run on a machine with a CUDA GPU and TensorRT installed, "
                                         "or export ONNX with --format onnx")
    build = getattr(trt_export, "build_engine", None)
    if build is None:
        raise BackendUnavailable("vmaedet.export.tensorrt has no build_engine()", fix="update vmaedet")
    return build


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Detector checkpoint (.safetensors or an official .pth).")],
    format: Annotated[Format, typer.Option("--format", help="onnx, or engine (TensorRT, built from the FP16 ONNX).")] = Format.onnx,
    source_size: Annotated[Optional[str], typer.Option(help="Source video size WxH; the clip geometry follows the seed's resize (default 1920x1080 → 256x464).")] = None,
    input_size: Annotated[Optional[str], typer.Option(help="Clip geometry HxW directly (multiples of 16).")] = None,
    max_persons: Annotated[int, typer.Option(min=1, help="Largest number of persons per call the artifact is verified for (with --max-batch > 1: over all clips of the call).")] = 64,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest number of clips per call (several cameras batched into one engine call). 1: one clip, the graph as before; > 1: a dynamic batch axis on the clip, verified at 1 and N clips; the TensorRT profile covers 1 … N clips.")] = 1,
    opset: Annotated[int, typer.Option(help="ONNX opset (17: single LayerNormalization node).")] = 17,
    precision: Annotated[Optional[Precision], typer.Option(help="fp32, fp16 (mixed-precision graph for strongly typed TensorRT) or int8 (QDQ graph: int8 linear layers calibrated on --calib; gated on top-5 agreement, mean |Δ score| and frame-mAP vs fp32). Default: fp32 for onnx, fp16 for engine.")] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="--precision int8: calibration data, an AVA-format dataset root (`vmaedet synth OUT` writes one): calibration on its train split, the accuracy gates on val keyframes calibration did not see.")] = None,
    calib_clips: Annotated[int, typer.Option("--calib-clips", min=1, help="--precision int8: keyframe clips to calibrate on (one at a time).")] = 32,
    gate_clips: Annotated[int, typer.Option("--gate-clips", min=1, help="--precision int8: held-back keyframe clips the accuracy gates run on.")] = 16,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method", help="--precision int8: activation ranges from the abs-max, or the 99.99th percentile of |x|.")] = CalibMethod.absmax,
    int8_attention: Annotated[bool, typer.Option("--int8-attention", help="--precision int8: also quantize the attention products (activation × activation MatMuls).")] = False,
    int8_float_groups: Annotated[str, typer.Option("--int8-float-groups", help=FLOAT_GROUPS_HELP)] = "fc2",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("exports"),
    arch: Annotated[Optional[str], typer.Option(help="Variant name; inferred from the weight shapes by default.")] = None,
    trt: Annotated[bool, typer.Option("--trt", help="Shorthand for --format engine --precision fp16.")] = False,
    roi_align: Annotated[RoiAlignMode, typer.Option(help="TensorRT RoIAlign: our fused plugin, or the built-in ROIAlign_TRT.")] = RoiAlignMode.plugin,
    opt_persons: Annotated[int, typer.Option(min=1, help="TensorRT: person count the engine is tuned for.")] = 8,
    workspace_gb: Annotated[float, typer.Option(min=0.1, help="TensorRT: builder workspace in GiB.")] = 4.0,
    timing_cache: Annotated[Optional[Path], typer.Option(help="TensorRT: timing cache base path; the file used is keyed by GPU and TensorRT version (read if usable, then updated).")] = None,
    aot: Annotated[bool, typer.Option("--aot/--jit", help="TensorRT, --roi-align plugin: AOT (default; PTX inside the engine, runs without Python) or JIT (a Python callback: running needs torch, Triton and the full tensorrt; no CUDA graphs).")] = True,
    version_compatible: Annotated[bool, typer.Option("--version-compatible", help="TensorRT: a version-compatible plan (runs on later TensorRT and on the runtime-only tensorrt_lean/tensorrt_dispatch packages; can be slower).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace artifacts (and manifests) of the same name in --out.")] = False,
) -> None:
    """Export a checkpoint to ONNX (verified against PyTorch in onnxruntime) or to a TensorRT engine.

    The graph takes the normalised clip [1, 3, 16, H, W] (with --max-batch N: [B, 3, 16, H, W],
    1 ≤ B ≤ N) and rois [K, 5] (K dynamic; column 0 is the roi's clip) and returns logits [K, 80];
    a sidecar manifest <artifact>.json records geometry, batch and person capacity, precision and
    the tolerances the artifact was verified to.
    """
    from vmaedet.artifacts import manifest_path
    from vmaedet.export.onnx import export_onnx, external_data_path, resolve_geometry
    from vmaedet.models.checkpoints import load_detector
    from vmaedet.progress import progress
    from vmaedet.safeio import check_outputs

    if trt:
        format, precision = Format.engine, Precision("fp16")
    prec = (precision or Precision("fp16" if format is Format.engine else "fp32")).value
    _check_calib(prec, calib)
    int8 = int8_options(calib_method, int8_attention, int8_float_groups) if prec == "int8" else None  # refused early
    source_wh = parse_size(source_size, "--source-size") if source_size else None
    input_hw = parse_size(input_size, "--input-size") if input_size else None
    resolve_geometry(source_wh, input_hw)  # fail on a bad size before loading anything
    if out.exists() and not out.is_dir():
        from vmaedet.errors import OutputError

        raise OutputError("--out must be a folder", received=f"{out} (a file)", expected="a folder (created if missing)",
                          fix="choose another --out")
    build = _tensorrt_builder() if format is Format.engine else None  # fail before the slow part
    model = load_detector(checkpoint, arch=arch)
    (h, w), source_wh = resolve_geometry(source_wh, input_hw, short_side=model.preprocess.short_side)
    batch = f"_b{max_batch}" if max_batch > 1 else ""
    onnx_path = out / f"{checkpoint.stem}_{h}x{w}_{prec}{batch}.onnx"
    engine_path = onnx_path.with_suffix(".engine")
    outputs = {"the ONNX file": onnx_path, "its manifest": manifest_path(onnx_path)}
    if external_data_path(onnx_path).exists():
        outputs["its external data"] = external_data_path(onnx_path)
    if build is not None:
        outputs.update({"the engine": engine_path, "the engine's manifest": manifest_path(engine_path)})
    # before anything is written: an output that is an input, or exists without --overwrite, is refused
    check_outputs(outputs, {"the checkpoint": checkpoint, "--timing-cache": timing_cache},
                  overwrite=overwrite, overwrite_hint="--overwrite")
    steps = 1 if build is None else 2
    with progress(steps, "steps", "export", console=console, transient=True) as bar:
        clips = f", ≤ {max_batch} clips" if max_batch > 1 else ""
        bar.update(0, detail=f"{checkpoint.name} → {onnx_path} ({prec}, {h}x{w}, ≤ {max_persons} persons{clips}): "
                             "export and verify in onnxruntime")
        int8_args: dict[str, Any] = {}
        if prec == "int8":
            int8_args = {"calib": calib, "calib_clips": calib_clips, "gate_clips": gate_clips,
                         "int8": int8}
        result = export_onnx(model, onnx_path, input_hw=None if source_wh else (h, w), source_wh=source_wh,
                             max_persons=max_persons, max_batch=max_batch,
                             opset=opset, precision=prec, checkpoint=checkpoint, **int8_args)
        bar.update(1, detail="verified")
        ver = result.manifest.verification
        quant = result.manifest.quantization
        if quant is not None:
            g, cal = quant.gates, quant.calibration
            mp = f", frame-mAP fp32 {g['map_fp32']:.4f} → int8 {g['map_int8']:.4f}" if g.get("map_fp32") is not None else ""
            bar.message(f"int8: {len(quant.quantized)} layers quantized ({', '.join(quant.quantized_op_types)}), "
                        f"{len(quant.excluded)} left in float; calibrated on {cal.get('clips')} clips in "
                        f"{cal.get('seconds')} s (peak RSS {cal.get('peak_rss_mib')} MiB); gates on {g.get('clips')} "
                        f"held-back clips: top-5 agreement {g['top5_agreement']:.3f}, mean |Δ score| "
                        f"{g['mean_abs_score']:.2e}, max |Δ score| {g['max_abs_score']:.2e}{mp}")
        bar.message(f"[green]wrote[/] {result.path} (+ {result.manifest_path.name}); verified in onnxruntime: "
                    f"max |Δ logit| {ver.max_abs_logit:.2e}, max |Δ score| {ver.max_abs_score:.2e}, "
                    f"top-5 agreement {ver.top5_agreement:.3f} (tolerance {dict(result.manifest.tolerances)})")
        if build is None:
            bar.message(f"next: vmaedet verify {result.path}")
            return
        bar.update(detail="building the TensorRT engine")
        build(result.path, engine_path, max_persons=max_persons, opt_persons=min(opt_persons, max_persons),
              workspace_gb=workspace_gb, timing_cache=timing_cache, roi_align=roi_align.value,
              aot=aot, version_compatible=version_compatible, progress=lambda msg: bar.message(f"  {msg}"))
        bar.update(2)
        bar.message(f"[green]wrote[/] {engine_path}")
        bar.message(f"next: vmaedet verify {engine_path}")


def _check_calib(precision: str, calib: Path | None) -> None:
    """--calib goes with --precision int8 (and int8 needs it); the folder must exist."""
    from vmaedet.errors import ConfigError

    if precision == "int8" and calib is None:
        raise ConfigError("--precision int8 needs calibration data", received="no --calib",
                          expected="--calib DATA, an AVA-format dataset root",
                          fix="add --calib DATA (e.g. a folder written by `vmaedet synth DATA`)")
    if precision != "int8" and calib is not None:
        raise ConfigError(f"--calib is only used with --precision int8, not {precision}", received=f"--calib {calib}",
                          fix="add --precision int8, or leave --calib out")
    if calib is not None and not calib.is_dir():
        raise ConfigError("--calib is not a folder", received=str(calib),
                          expected="an AVA-format dataset root (annotations/, videos/)",
                          fix="check the path, or write a dataset with `vmaedet synth DATA`")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
