"""Export the detector to ONNX with a parity gate.

The graph takes the normalised clip ``clip [1, 3, 16, H, W]`` (fixed geometry) and ``rois [K, 5]``
(K dynamic) and returns ``logits [K, 80]``.  The positional embedding is folded to a constant
(no ``Resize`` node), RoIAlign is the standard ``RoiAlign`` (``output_half_pixel``,
``sampling_ratio=0``, ``spatial_scale=1/16``) followed by a ``ReduceMax``; its batch indices are
column 0 of ``rois`` (checked).

With ``max_batch`` > 1 the clip input has a dynamic batch axis (``clip [batch, 3, 16, H, W]``,
1 ≤ batch ≤ max_batch): several cameras' keyframes in one call, each roi naming its clip in
column 0.  The default ``max_batch=1`` exports exactly the graph it always did (byte for byte).

``precision="int8"`` writes the QDQ graph of :mod:`vmaedet.export.int8` (int8 linear layers,
calibrated on an AVA-format dataset one clip at a time) and gates it on the task instead of the
logits: top-5 agreement per person, mean |Δ score| and, with labels, the frame-mAP@0.5 difference
vs PyTorch fp32 on keyframes calibration did not see (:data:`~vmaedet.export.parity.EXPORT_GATES`).

Every export is checked before it is reported done: the onnx checker, the graph structure, then
onnxruntime vs PyTorch on random clips for K ∈ {0, 1, 7, max_persons} (one clip), and with
``max_batch`` > 1 one call of ``max_batch`` clips with rois spread over them against PyTorch run
one clip at a time.  A mismatch beyond the tolerance raises :class:`~vmaedet.errors.ExportError`
with the error statistics and leaves no artifact behind (an existing file of the same name is only
replaced by a verified one).
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch

from vmaedet.artifacts import (MANIFEST_FORMAT, ArtifactManifest, library_versions, manifest_path, sha256_file,
                               write_manifest)
from vmaedet.constants import CLIP_LEN, EXPORT_PRECISIONS, FRAME_STRIDE, PATCH_SIZE, SHORT_SIDE
from vmaedet.data.transforms import MEAN_RGB, STD_RGB, input_geometry
from vmaedet.engines.onnxruntime_engine import SessionLoadError, create_session, session_kwargs
from vmaedet.errors import ConfigError, ExportError, VmaedetError
from vmaedet.export.fp16 import check_fp16_structure, convert_to_fp16
from vmaedet.export.parity import EXPORT_GATES, error_stats, merge_stats, random_clip, random_rois, within
from vmaedet.labels import AVA_ACTIONS
from vmaedet.models.detector import ActionDetector
from vmaedet.ops.roi_align import POOLED_SIZE, SPATIAL_SCALE

if TYPE_CHECKING:
    from vmaedet.export.int8 import DatasetClips, Int8Options

#: Opsets the exporter accepts: ≥ 17 for a single LayerNormalization node (and RoiAlign-16 modes).
SUPPORTED_OPSETS = (17, 18, 19, 20)
MIN_SIDE = 32  # two tokens: anything smaller is not a meaningful clip
PROTOBUF_LIMIT = 2**31 - 1
ROI_ALIGN_ATTRS = {
    "coordinate_transformation_mode": "output_half_pixel",
    "sampling_ratio": 0,
    "spatial_scale": SPATIAL_SCALE,
    "output_height": POOLED_SIZE,
    "output_width": POOLED_SIZE,
    "mode": "avg",
}
INPUT_NAMES = ("clip", "rois")
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"  #: name of the clip's dynamic batch axis (max_batch > 1)
#: Ops between the ``rois`` input and RoiAlign's batch indices (column 0 sliced out, cast to int64).
_INDEX_PATH_OPS = {"Gather", "Slice", "Cast", "Squeeze", "Reshape", "Identity", "Flatten", "Unsqueeze"}


@dataclass
class ExportResult:
    """Where the artifact and its manifest were written, and the manifest itself."""

    path: Path
    manifest_path: Path
    manifest: ArtifactManifest


# -- arguments --------------------------------------------------------------------------------
def check_input_hw(input_hw: tuple[int, int]) -> tuple[int, int]:
    """Validate a clip geometry (H, W): multiples of 16 and at least :data:`MIN_SIDE`."""
    h, w = (int(v) for v in input_hw)
    p = PATCH_SIZE
    if h % p or w % p:
        raise ConfigError(
            f"the clip geometry must be multiples of {p} (the patch size)",
            received=f"{h}x{w}", expected=f"e.g. {-(-h // p) * p}x{-(-w // p) * p}",
            fix="give the source video size (source_wh) to derive the geometry from, or round the clip "
                f"geometry (input_hw) up to multiples of {p}",
        )
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ConfigError("the clip geometry is too small", received=f"{h}x{w}",
                          expected=f"both sides ≥ {MIN_SIDE} (the seed uses a short side of 256)")
    return h, w


def resolve_geometry(source_wh: tuple[int, int] | None = None, input_hw: tuple[int, int] | None = None,
                     short_side: int = SHORT_SIDE) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Clip (H, W) from a source size (the seed's resize + pad) or an explicit input size.

    Returns:
        ((H, W), source (W, H) or None).  Default source: 1920×1080 → 256×464 (short side 256).
    """
    if source_wh is not None and input_hw is not None:
        raise ConfigError("give either a source size or an input size, not both",
                          received=f"source {source_wh}, input {input_hw}")
    if input_hw is not None:
        return check_input_hw(input_hw), None
    source_wh = source_wh or (1920, 1080)
    if min(source_wh) <= 0:
        raise ConfigError("the source size must be positive", received=source_wh)
    _, (pw, ph) = input_geometry(tuple(source_wh), short_side=short_side)  # type: ignore[arg-type]
    return check_input_hw((ph, pw)), tuple(source_wh)  # type: ignore[return-value]


def _check_int8_args(precision: str, calib: str | Path | None, max_batch: int) -> None:
    if precision == "int8" and calib is None:
        raise ConfigError("an int8 export needs calibration data", received="no calibration data (calib=None)",
                          expected="an AVA-format dataset root (e.g. `vmaedet synth OUT` writes one)",
                          fix="pass calib=DATA, e.g. `vmaedet export CKPT --precision int8 --calib DATA`")
    if precision != "int8" and calib is not None:
        raise ConfigError(f"calibration data is only used by the int8 precision, not {precision}",
                          received=str(calib), expected="precision='int8', or no calibration data",
                          fix="export with precision='int8', or leave the calibration data out")
    if precision == "int8" and max_batch != 1:
        raise ConfigError("an int8 export takes one clip per call", received=f"max_batch {max_batch}", expected="1",
                          fix="export int8 with max_batch=1")


def _check_args(model: Any, opset: int, precision: str, max_persons: int, max_batch: int = 1) -> None:
    if not isinstance(model, ActionDetector):
        raise ExportError("only an ActionDetector can be exported", received=type(model).__name__,
                          fix="load the model with vmaedet.models.checkpoints.load_detector(path)")
    if opset not in SUPPORTED_OPSETS:
        raise ConfigError(f"unsupported opset {opset}", received=opset, expected=f"one of {SUPPORTED_OPSETS}",
                          fix="export with opset 17 (single LayerNormalization node; RoiAlign with output_half_pixel)")
    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f"unsupported precision {precision!r}", received=precision,
                          expected=" or ".join(EXPORT_PRECISIONS))
    if max_persons < 1:
        raise ConfigError("max persons must be at least 1", received=max_persons)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError("the largest batch (max_batch) must be an integer of at least 1 clip", received=max_batch,
                          expected="1 (one clip per call) or more (several cameras per call)")


# -- export -----------------------------------------------------------------------------------
def _torch_export(model: ActionDetector, input_hw: tuple[int, int], opset: int, path: Path, *,
                  max_batch: int = 1) -> None:
    """TorchScript exporter (honours the opset; dynamo would silently use 18).

    ``max_batch`` 1: one clip, the graph as it always was.  > 1: traced with two clips (a traced
    size of 1 could be specialised away) and a dynamic batch axis on ``clip``.
    """
    gen = torch.Generator().manual_seed(0)
    dynamic_axes: dict[str, dict[int, str]] = {"rois": {0: "num_rois"}, OUTPUT_NAME: {0: "num_rois"}}
    if max_batch == 1:
        args = (random_clip(input_hw, gen), random_rois(2, input_hw, gen))
    else:
        clip = torch.cat([random_clip(input_hw, gen), random_clip(input_hw, gen)])  # [2, 3, 16, H, W]
        rois = random_rois(2, input_hw, gen)  # [2, 5]
        rois[1, 0] = 1.0  # one roi in each clip
        args = (clip, rois)
        dynamic_axes = {"clip": {0: BATCH_AXIS}, **dynamic_axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the model's shape checks
        torch.onnx.export(
            model, args, str(path), dynamo=False, opset_version=opset,
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def check_graph(model: onnx.ModelProto, max_batch: int | None = None) -> dict[str, Any]:
    """Structural checks of an exported graph: no Resize, exactly one RoiAlign with our attributes,
    whose batch indices come from column 0 of the ``rois`` input.

    ``max_batch`` (when given): > 1 needs a dynamic batch axis on ``clip``, 1 a clip of one.
    """
    ops = [n.op_type for n in model.graph.node]
    if "Resize" in ops:
        raise ExportError("the exported graph still has a Resize node (the positional embedding was not folded)",
                          fix="call model.freeze_pos_embed(h, w) before export (export_onnx does)")
    roi = [n for n in model.graph.node if n.op_type == "RoiAlign"]
    if len(roi) != 1:
        raise ExportError("the exported graph must have exactly one RoiAlign node", received=len(roi))
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in roi[0].attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    for key, want in ROI_ALIGN_ATTRS.items():
        got = attrs.get(key, "avg" if key == "mode" else None)  # mode defaults to avg
        if got != want and not (isinstance(want, float) and got is not None and abs(got - want) < 1e-12):
            raise ExportError(f"RoiAlign attribute {key} is wrong", received=got, expected=want,
                              fix="export with opset ≥ 17 from torchvision roi_align(aligned=False)")
    source = _index_source(model, roi[0])
    if source != INPUT_NAMES[1]:
        raise ExportError("RoiAlign's batch indices do not come from the rois input (column 0)",
                          received=f"they come from {source!r}", expected=f"a Gather/Cast chain from {INPUT_NAMES[1]!r}",
                          fix="export from ActionDetector.forward (torchvision roi_align with [K, 5] rois)")
    if max_batch is not None:
        clip = next((i for i in model.graph.input if i.name == INPUT_NAMES[0]), None)
        dim = clip.type.tensor_type.shape.dim[0] if clip is not None and clip.type.tensor_type.shape.dim else None
        dynamic = dim is not None and not dim.HasField("dim_value")
        if dynamic != (max_batch > 1) or (not dynamic and dim is not None and dim.dim_value != 1):
            raise ExportError("the clip input's batch axis is not what max_batch asks for",
                              received="dynamic" if dynamic else f"fixed ({dim.dim_value if dim is not None else '?'})",
                              expected="dynamic" if max_batch > 1 else "fixed at 1",
                              fix="report this as a bug (the exporter sets the batch axis from max_batch)")
    return {"op": "RoiAlign", **{k: attrs.get(k, v) for k, v in ROI_ALIGN_ATTRS.items()}, "then": "ReduceMax over 7x7"}


def _index_source(model: onnx.ModelProto, roi_align: onnx.NodeProto) -> str | None:
    """The graph input RoiAlign's batch indices (its third input) are computed from, through
    :data:`_INDEX_PATH_OPS` only; None when they come from anything else (a constant, another op)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    inputs = {i.name for i in model.graph.input}
    name = roi_align.input[2] if len(roi_align.input) > 2 else ""
    for _ in range(32):  # a short chain; a longer one is not ours
        if name in inputs:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in _INDEX_PATH_OPS:
            return None
        name = node.input[0]
    return None


def _save(model: onnx.ModelProto, path: Path) -> str | None:
    """Save as one file, or with one external-data file when over 2 GB; returns its name."""
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(model, str(path))
        return None
    data_name = path.name + ".data"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    return data_name


def _ort_session(path: Path, precision: str = "fp32") -> Any:
    """A CPU onnxruntime session of the staged graph, set up as the engine sets up one of ``precision``
    (BackendUnavailable naming the extra when missing)."""
    try:
        return create_session(path, device="cpu", **session_kwargs(precision))
    except SessionLoadError as exc:
        raise ExportError(
            "onnxruntime cannot load the exported graph, so it cannot be verified",
            received=exc.reason,
            expected=f"a graph onnxruntime {exc.ort_version} (CPU) can run",
            fix="nothing was written; try the fp32 precision or another opset, or upgrade onnxruntime",
        ) from exc


def one_clip_at_a_time(model: ActionDetector, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """The reference of a batched call: ``model`` on each clip of ``clip [B, 3, 16, H, W]`` with its own
    rois (column 0 of ``rois [K, 5]`` picks the clip), the logits put back in the rois' order: ``[K, C]``."""
    index = rois[:, 0].long()  # [K]
    out = torch.zeros((rois.shape[0], model.num_classes), dtype=torch.float32)  # [K, C]
    for b in range(clip.shape[0]):
        mask = index == b  # [K]
        if bool(mask.any()):
            own = rois[mask].clone()  # [Kb, 5]
            own[:, 0] = 0.0
            out[mask] = model(clip[b:b + 1], own).float()  # [Kb, C]
    return out


def parity_check(model: ActionDetector, onnx_path: Path, input_hw: tuple[int, int], max_persons: int,
                 ks: tuple[int, ...] | None = None, seed: int = 0, max_batch: int = 1) -> dict[str, Any]:
    """onnxruntime vs PyTorch fp32 on random clips, one per K; returns per-K and worst-case stats.

    With ``max_batch`` > 1 one more case: ``max_batch`` clips in one call, min(max_persons,
    2·max_batch) rois spread over them (roi j in clip j mod B), against PyTorch one clip at a time.
    """
    session = _ort_session(onnx_path)
    ks = ks or tuple(sorted({0, 1, min(7, max_persons), max_persons}))
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for k in ks:
        clip, rois = random_clip(input_hw, gen), random_rois(k, input_hw, gen)
        with torch.no_grad():
            ref = model(clip, rois)  # [K, 80]
        out = session.run([OUTPUT_NAME], {"clip": clip.numpy(), "rois": rois.numpy()})[0]
        if out.shape != (k, model.num_classes):
            raise ExportError(f"onnxruntime returned the wrong shape for K={k}", received=out.shape,
                              expected=(k, model.num_classes))
        cases.append({"k": k, **error_stats(ref, torch.from_numpy(np.asarray(out, dtype=np.float32)))})
    if max_batch > 1:
        k = min(max_persons, 2 * max_batch)
        clip = torch.cat([random_clip(input_hw, gen) for _ in range(max_batch)])  # [B, 3, 16, H, W]
        rois = random_rois(k, input_hw, gen)  # [K, 5]
        rois[:, 0] = (torch.arange(k) % max_batch).float()  # roi j in clip j mod B
        with torch.no_grad():
            ref = one_clip_at_a_time(model, clip, rois)  # [K, 80]
        out = session.run([OUTPUT_NAME], {"clip": clip.numpy(), "rois": rois.numpy()})[0]
        if out.shape != (k, model.num_classes):
            raise ExportError(f"onnxruntime returned the wrong shape for {max_batch} clips and K={k}",
                              received=out.shape, expected=(k, model.num_classes))
        cases.append({"k": k, "batch": max_batch,
                      **error_stats(ref, torch.from_numpy(np.asarray(out, dtype=np.float32)))})
    return {"cases": cases, **merge_stats(cases)}


def _manifest(model: ActionDetector, *, artifact: Path, data_file: str | None, input_hw: tuple[int, int],
              source_wh: tuple[int, int] | None, max_persons: int, max_batch: int, opset: int, precision: str,
              roi_align: dict[str, Any], verification: dict[str, Any], fp16: dict[str, Any] | None,
              checkpoint: Path | None, quantization: dict[str, Any] | None = None) -> ArtifactManifest:
    h, w = input_hw
    short_side = model.preprocess.short_side
    resized = list(input_geometry(source_wh, short_side=short_side)[0]) if source_wh else None
    return ArtifactManifest.from_dict({
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifact": {"file": artifact.name, "format": "onnx", "sha256": sha256_file(artifact),
                     "bytes": artifact.stat().st_size,
                     "external_data": ({"file": data_file, "sha256": sha256_file(artifact.parent / data_file)}
                                       if data_file else None)},
        "model": {"variant": model.variant, "embed_dim": model.cfg.embed_dim, "depth": model.cfg.depth,
                  "num_heads": model.cfg.num_heads, "num_classes": model.num_classes},
        "checkpoint": ({"path": str(checkpoint.resolve()), "sha256": sha256_file(checkpoint)} if checkpoint else None),
        "input": {
            "names": {"clip": "clip", "rois": "rois", "output": OUTPUT_NAME},
            "clip_shape": [1, 3, CLIP_LEN, h, w], "clip_hw": [h, w],
            "clip_len": CLIP_LEN, "frame_stride": FRAME_STRIDE,
            "source_wh": list(source_wh) if source_wh else None, "resized_wh": resized,
            "max_persons": max_persons, "max_batch": max_batch, "short_side": short_side,
            "rois": "[K, 5] float32: batch index, x1, y1, x2, y2 in clip pixels, already extended",
        },
        "normalization": {"color": "RGB", "mean": list(MEAN_RGB), "std": list(STD_RGB),
                          "resize": f"short side {short_side}, cv2 INTER_LINEAR", "pad": "zeros bottom/right to multiples of 16"},
        "labels": {"ids": list(range(1, len(AVA_ACTIONS) + 1)), "names": list(AVA_ACTIONS),
                   "output": "logits; score = sigmoid(logit) (× person score)"},
        "opset": opset,
        "roi_align": roi_align,
        "precision": precision,
        "fp16": fp16,
        "tolerances": EXPORT_GATES[precision],
        "verification": verification,
        "versions": library_versions(),
        **({"quantization": quantization} if quantization is not None else {}),
    }, source=f"for {artifact.name}")


def _verify_staged(model: ActionDetector, staged: Path, input_hw: tuple[int, int], max_persons: int,
                   precision: str, seed: int, max_batch: int = 1) -> dict[str, Any]:
    """onnx checker, then onnxruntime vs PyTorch; raises ExportError with the statistics on a mismatch."""
    try:
        onnx.checker.check_model(str(staged), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError("the exported graph fails the onnx checker", received=str(exc)[:500]) from exc
    with torch.no_grad():
        parity = parity_check(model, staged, input_hw, max_persons, seed=seed, max_batch=max_batch)
    failures = within(parity, EXPORT_GATES[precision])
    if failures:
        worst = max(parity["cases"], key=lambda c: c["max_abs_logit"])
        where = f"K={worst['k']}" + (f", {worst['batch']} clips" if "batch" in worst else "")
        raise ExportError(
            f"the {precision} ONNX graph does not match PyTorch (onnxruntime, CPU)",
            received="; ".join(failures) + f" (worst {where}: max |Δ logit| {worst['max_abs_logit']:.3g}, "
            f"mean {worst['mean_abs_logit']:.3g}, max |Δ score| {worst['max_abs_score']:.3g})",
            expected=f"within {EXPORT_GATES[precision]}",
            fix="nothing was written; check the weights for extreme values, or report the statistics above as a bug",
        )
    return {"reference": "PyTorch fp32, CPU", "runtime": "onnxruntime CPUExecutionProvider",
            "inputs": "random uint8 frames normalised as the seed; random boxes ≥ 16 px", **parity}


def _gate_failure(figures: dict[str, Any], failures: list[str], tolerances: dict[str, float], what: str) -> ExportError:
    mp = (f", frame-mAP@0.5 fp32 {figures['map_fp32']:.4f} vs {figures['map_int8']:.4f}"
          if figures.get("map_fp32") is not None else "")
    return ExportError(
        f"the {what} fails its accuracy gates against PyTorch fp32 on {figures.get('clips', '?')} held-back clips "
        f"({figures.get('persons', '?')} persons)",
        received="; ".join(failures) + f" (top-5 agreement {figures['top5_agreement']:.3f}, mean |Δ score| "
        f"{figures['mean_abs_score']:.3g}, max |Δ score| {figures['max_abs_score']:.3g}, max |Δ logit| "
        f"{figures['max_abs_logit']:.3g}{mp})",
        expected=f"within {tolerances}",
        fix=_gate_fix(failures, figures),
    )


def _gate_fix(failures: list[str], figures: dict[str, Any]) -> str:
    """The fix for a gate failure: a frame-mAP miss alone, on few clips, is mostly sampling noise."""
    only_map = bool(failures) and all("mAP" in f for f in failures)
    if only_map:
        clips = figures.get("clips", "?")
        return (f"nothing was written; only the frame-mAP gate failed, while the score gates passed: a frame-mAP over "
                f"{clips} held-back keyframes moves by more than the gate for small score changes — measure it on more "
                f"held-back clips (gate_clips, e.g. `vmaedet export CKPT --precision int8 --calib DATA --gate-clips 64`), "
                f"or calibrate on more representative clips")
    return ("nothing was written; calibrate on more or more representative clips (calib_clips, the calibration data), "
            "try the percentile calibration, or leave the failing layers in float (Int8Options.exclude, float_groups)")


def _verify_int8(model: ActionDetector, staged: Path, max_persons: int, held: "DatasetClips", input_hw: tuple[int, int],
                 seed: int) -> dict[str, Any]:
    """onnx checker, the graph runs for K = 0 and max_persons, then the task gates on the held-back clips."""
    from vmaedet.export.int8 import task_gate

    try:
        onnx.checker.check_model(str(staged), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError("the int8 graph fails the onnx checker", received=str(exc)[:500]) from exc
    session = _ort_session(staged, "int8")  # as the engine runs it: int8 MatMuls (MatMulIntegerToFloat)
    gen = torch.Generator().manual_seed(seed)
    for k in sorted({0, max_persons}):
        out = session.run([OUTPUT_NAME], {"clip": random_clip(input_hw, gen).numpy(),
                                          "rois": random_rois(k, input_hw, gen).numpy()})[0]
        if out.shape != (k, model.num_classes):
            raise ExportError(f"onnxruntime returned the wrong shape for K={k}", received=out.shape,
                              expected=(k, model.num_classes))
    figures = task_gate(model, lambda c, r: session.run([OUTPUT_NAME], {"clip": c, "rois": r})[0], held,
                        num_classes=model.num_classes)
    failures = within(figures, EXPORT_GATES["int8"])
    if failures:
        raise _gate_failure(figures, failures, EXPORT_GATES["int8"], "int8 ONNX graph")
    return {"reference": "PyTorch fp32, CPU", "runtime": "onnxruntime CPUExecutionProvider",
            "inputs": f"{figures['clips']} keyframes of {held.root} ({held.split}) held back from calibration; "
                      "statistics pooled over their persons", **figures}


def export_onnx(model: ActionDetector, out_path: str | Path, *, input_hw: tuple[int, int] | None = None,
                source_wh: tuple[int, int] | None = None, max_persons: int = 64, opset: int = 17,
                precision: str = "fp32", checkpoint: str | Path | None = None, seed: int = 0,
                max_batch: int = 1, calib: str | Path | None = None, calib_clips: int = 32, gate_clips: int = 16,
                int8: "Int8Options | None" = None) -> ExportResult:
    """Export ``model`` to ONNX, verify it, and write the artifact and its manifest.

    Args:
        model: the detector (not modified; a frozen fp32 CPU copy is exported).
        out_path: the ``.onnx`` file to write.
        input_hw / source_wh: clip geometry, or the source video size it is derived from
            (default 1920×1080 → 256×464).
        max_persons: the largest K of one call the artifact is verified for (and engines accept); with
            batches, the total over the call's clips.
        opset: ONNX opset (17 by default).
        precision: "fp32", "fp16" for the mixed-precision graph of strongly typed TensorRT, or "int8"
            for the QDQ graph (int8 linear layers; needs ``calib``).
        checkpoint: the checkpoint file the weights came from (path + sha256 go to the manifest).
        max_batch: the largest number of clips B of one call.  1 (default): a clip of one, the graph
            as before; > 1: a dynamic batch axis on ``clip`` (rois' column 0 picks the clip),
            verified at B = 1 and B = max_batch; recorded in the manifest for engines.
        calib: int8 only: an AVA-format dataset root (``vmaedet synth`` writes one); calibration
            uses ``calib_clips`` keyframes of its train split (or of its only split), the gates
            ``gate_clips`` keyframes calibration did not see (its val split, or the rest).
        int8: an :class:`~vmaedet.export.int8.Int8Options` (what to quantize, calibration method).

    Raises:
        ConfigError: bad geometry, opset, precision, person count or batch size.
        OutputError: the export folder cannot be written (or an output would replace an input).
        ExportError: not a detector, or verification failed (with statistics).
    """
    from vmaedet.safeio import check_outputs, check_writable_dir, find_os_error, output_error

    _check_args(model, opset, precision, max_persons, max_batch)
    _check_int8_args(precision, calib, max_batch)
    input_hw, source_wh = resolve_geometry(source_wh, input_hw, short_side=model.preprocess.short_side)
    int8_plan = None
    if precision == "int8":  # the data is checked before anything is exported
        from vmaedet.export.int8 import Int8Options, plan_clips

        options = int8 if int8 is not None else Int8Options()
        options.check()
        int8_plan = (options, *plan_clips(calib, calib_clips=calib_clips, gate_clips=gate_clips,  # type: ignore[arg-type]
                                          input_hw=input_hw, short_side=model.preprocess.short_side,
                                          max_persons=max_persons))
    out_path = Path(out_path)
    json_path = manifest_path(out_path)
    check_outputs({"the ONNX file": out_path, "its manifest": json_path, "its external data": external_data_path(out_path)},
                  {"the checkpoint": checkpoint}, overwrite=True)
    check_writable_dir(out_path.parent, what="the export folder")
    frozen = copy.deepcopy(model).float().eval().cpu()
    frozen.freeze_pos_embed(input_hw[0] // 16, input_hw[1] // 16)
    # Everything is staged in a hidden folder beside the target and moved into place only once the
    # graph is verified and its manifest written: a failure (gate, full disk, Ctrl-C) leaves the
    # previous artifact, if any, untouched and nothing new behind.
    try:
        staging = tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".vmaedet-export-")
    except OSError as exc:
        raise output_error(out_path, exc, what="the ONNX export") from exc
    with staging as tmp:
        staged = Path(tmp) / out_path.name
        try:
            raw = Path(tmp) / "fp32.onnx"
            if max_batch == 1:
                _torch_export(frozen, input_hw, opset, raw)  # the one-clip graph, exactly as before batching
            else:
                _torch_export(frozen, input_hw, opset, raw, max_batch=max_batch)
            graph = onnx.load(str(raw))
            roi_align = check_graph(graph, max_batch=max_batch)
            fp16_info: dict[str, Any] | None = None
            if precision == "fp16":
                graph, report = convert_to_fp16(graph)
                fp16_info = {"pass": report.to_dict(), "structure": check_fp16_structure(graph),
                             "fp32_islands": ["LayerNormalization", "Softmax outside attention blocks", "ReduceMean",
                                              "ReduceMax", "RoiAlign", "graph I/O"],
                             "attention": "FP16 MatMul→(scale)→Softmax→MatMul, no Cast inside (TensorRT fused attention)"}
            quant_info: dict[str, Any] | None = None
            if int8_plan is not None:
                from vmaedet.export.int8 import calibrate, check_qdq_structure, describe, quantize_qdq, select_targets

                options, calib_set, held = int8_plan
                selection = select_targets(graph, options)
                calibration = calibrate(graph, selection.activation_tensors(), calib_set, method=options.method,
                                        percentile=options.percentile, bins=options.bins)
                graph = quantize_qdq(graph, selection, calibration.ranges, options)
                structure = check_qdq_structure(graph)
                quant_info = describe(selection, calibration, root=calib, calib_split=calib_set.split,  # type: ignore[arg-type]
                                      held_split=held.split, options=options)
                quant_info["structure"] = structure
            data_file = _save(graph, staged)
            if int8_plan is not None:
                verification = _verify_int8(frozen, staged, max_persons, int8_plan[2], input_hw, seed)
                gates = {k: verification[k] for k in ("clips", "persons", "top5_agreement", "mean_abs_score",
                                                      "max_abs_score", "max_abs_logit") if k in verification}
                gates.update({k: verification[k] for k in ("map_fp32", "map_int8", "map_delta") if k in verification})
                quant_info["gates"] = {"reference": "PyTorch fp32", **gates,  # type: ignore[index]
                                       "tolerances": EXPORT_GATES[precision], "passed": True}
                verification = {k: v for k, v in verification.items()
                                if k not in ("clips", "persons", "map_fp32", "map_int8", "map_delta")}
            else:
                verification = _verify_staged(frozen, staged, input_hw, max_persons, precision, seed, max_batch)
            if fp16_info is not None:
                fp16_info["error_vs_torch_fp32"] = {k: verification[k] for k in ("max_abs_score", "top5_agreement", "max_abs_logit")}
            manifest = _manifest(frozen, artifact=staged, data_file=data_file, input_hw=input_hw, source_wh=source_wh,
                                 max_persons=max_persons, max_batch=max_batch, opset=opset, precision=precision,
                                 roi_align=roi_align,
                                 verification=verification, fp16=fp16_info,
                                 checkpoint=Path(checkpoint) if checkpoint else None, quantization=quant_info)
            staged_json = write_manifest(staged, manifest, Path(tmp) / json_path.name)
            if data_file:
                os.replace(Path(tmp) / data_file, out_path.parent / data_file)
            os.replace(staged, out_path)
            os.replace(staged_json, json_path)
        except VmaedetError:
            raise
        except Exception as exc:
            if find_os_error(exc) is not None or "unexpected pos" in str(exc) or "No space" in str(exc):
                raise output_error(out_path, exc, what="the ONNX export") from exc
            raise
    return ExportResult(out_path, json_path, manifest)


def external_data_path(artifact: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.data`` (written only past the 2 GB protobuf limit)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".data")
