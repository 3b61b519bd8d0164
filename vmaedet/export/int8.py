"""INT8 post-training quantization of the exported graph: QDQ, calibrated one clip at a time.

The fp32 export's graph is rewritten in the QDQ form that onnxruntime, OpenVINO and TensorRT's
explicit quantization (strongly typed networks) all read:

* **what is quantized** (:func:`select_targets`): the linear layers — ``MatMul`` / ``Gemm`` whose
  weight is a constant initializer (qkv, attention projection, MLP fc1; fc2 too when
  ``float_groups`` does not name it).  Left in float by default: the MLP's fc2 in every block
  (:data:`DEFAULT_FLOAT_GROUPS`, the measurements there), the attention products (activation ×
  activation ``MatMul``: ``include_attention`` quantizes both inputs per tensor), the classification
  head (``include_head``), the patch-embedding ``Conv``, LayerNorm, Softmax, GELU, RoIAlign and
  every other op.
* **weights**: int8 initializers, per output channel, symmetric (zero point 0, range ±127), each
  followed by a ``DequantizeLinear`` with ``axis`` = the output channel.
* **activations**: a ``QuantizeLinear → DequantizeLinear`` pair on each selected input, per tensor,
  symmetric int8 (zero point 0), scale = calibrated range / 127.
* **calibration** (:func:`calibrate`): the fp32 graph runs in onnxruntime one clip at a time with
  one extra scalar output per selected tensor (``Abs → ReduceMax`` inside the graph), so what is
  kept per clip is one float per tensor — never the activations of all clips.  ``method=
  "percentile"`` adds a second pass that fetches one clip's selected tensors at a time into a
  fixed-bin histogram of |x| over [0, abs-max] per tensor and takes the given percentile.

Calibration clips come from an AVA-format dataset (:class:`DatasetClips`: the model's test
transform, then fitted into the artifact's fixed geometry); the export's task gates run on clips
of the same data that calibration did not see (:func:`plan_clips`).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from vmaedet.errors import ConfigError, DataError, ExportError

#: The graph form written (QuantizeLinear/DequantizeLinear pairs; int8 weights + DequantizeLinear).
SCHEME = "QDQ"
#: Symmetric int8 range: ±127 (−128 is never used, so the scheme is symmetric as TensorRT requires).
QMAX = 127
#: Op types whose constant-weight instances are the linear layers.
LINEAR_OPS = ("MatMul", "Gemm")
#: Calibration methods: running abs-max, or a percentile of |x| from a fixed-bin histogram.
METHODS = ("absmax", "percentile")
#: The linear layers of a transformer block (:func:`layer_group` finds them by their exported names:
#: ``/blocks.N/attn/MatMul`` is qkv, ``…/attn/proj/…``, ``…/mlp/fc1/…``, ``…/mlp/fc2/…``).
LAYER_GROUPS = ("qkv", "proj", "fc1", "fc2")
#: Groups left in float by default: the MLP's second linear (fc2).  Measured on ViT-B (random weights,
#: a head of realistic logit scale; benchmarks/README.md, "INT8"): every group quantized, the held-back
#: mean |Δ score| is 5.5e-3 (16×256×464), over the 5e-3 gate; per group alone (16×128×224 proxy)
#: proj 3.2e-3, fc1 2.8e-3, fc2 2.7e-3, qkv 2.0e-3 — no single outlier group, the errors add up;
#: all but fc2 4.7e-3 (proxy) and passes at 16×256×464 (benchmarks/results/int8.json).  Percentile
#: ranges (99.99, 99.999) were worse than abs-max on every variant tried.
DEFAULT_FLOAT_GROUPS: tuple[str, ...] = ("fc2",)
#: Op types that always stay in float (recorded in the manifest).
FLOAT_OPS = ("Conv", "LayerNormalization", "Softmax", "Erf", "Add", "Mul", "Div", "ReduceMean", "ReduceMax",
             "RoiAlign")
_CALIB_SUFFIX = "__vmaedet_absmax"


# -- options and selection -------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Options:
    """What to quantize and how to calibrate.

    Args:
        include_attention: also quantize the attention products (both activation inputs of the
            activation × activation MatMuls, per tensor).
        include_head: also quantize the classification head (the linear layer producing the logits).
        exclude: node names to leave in float.
        float_groups: linear-layer groups (:data:`LAYER_GROUPS`: "qkv", "proj", "fc1", "fc2") left in
            float in every block (default :data:`DEFAULT_FLOAT_GROUPS`: fc2; ``()`` quantizes all four).
        method: "absmax" (running abs-max over the clips) or "percentile".
        percentile: with method "percentile": the percentile of |x| taken as the range (e.g. 99.99).
        bins: histogram bins per tensor (method "percentile").
        range_scale: node name → factor applied to the calibrated ranges of its activation inputs.
            A diagnostic (what a gate catches when a range is wrong); empty in normal use.
    """

    include_attention: bool = False
    include_head: bool = False
    exclude: tuple[str, ...] = ()
    float_groups: tuple[str, ...] = DEFAULT_FLOAT_GROUPS
    method: str = "absmax"
    percentile: float = 99.99
    bins: int = 2048
    range_scale: Mapping[str, float] = field(default_factory=dict)

    def check(self) -> None:
        """ConfigError for an unknown method, a percentile outside (0, 100] or too few bins."""
        if self.method not in METHODS:
            raise ConfigError("unknown int8 calibration method", received=self.method, expected=" or ".join(METHODS))
        if not 0.0 < float(self.percentile) <= 100.0:
            raise ConfigError("the calibration percentile must be in (0, 100]", received=self.percentile,
                              expected="e.g. 99.99")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 16:
            raise ConfigError("the calibration histogram needs at least 16 bins", received=self.bins, expected="e.g. 2048")
        unknown = [g for g in self.float_groups if g not in LAYER_GROUPS]
        if isinstance(self.float_groups, str) or unknown:
            raise ConfigError("unknown linear-layer group to keep in float", received=self.float_groups,
                              expected=f"a tuple of {', '.join(LAYER_GROUPS)}")


@dataclass(frozen=True)
class QuantTarget:
    """One node to quantize: its activation inputs (per tensor) and its weight (per channel)."""

    node: str
    op_type: str
    kind: str  #: "linear", "attention" or "head"
    activations: tuple[str, ...]
    weight: str | None = None
    weight_axis: int | None = None  #: the weight's output-channel axis


@dataclass
class Selection:
    """The nodes to quantize and the linear-type nodes left in float (name → reason)."""

    targets: list[QuantTarget]
    excluded: dict[str, str]

    def activation_tensors(self) -> list[str]:
        """The activation tensors to calibrate, each once, in graph order."""
        return list(dict.fromkeys(t for target in self.targets for t in target.activations))


def _group_reason(group: str) -> str:
    return f"linear-layer group {group} kept in float"


def layer_group(node_name: str) -> str | None:
    """The group (:data:`LAYER_GROUPS`) of a block's linear node (a constant-weight MatMul/Gemm) by its
    exported name; None outside the blocks' linears.

    ``fc1`` / ``fc2`` / ``proj`` are named by their module (``/blocks.N/mlp/fc1/MatMul``); the qkv
    projection is a functional ``linear`` with the q/v biases, so its node sits in the attention
    module's own scope (``/blocks.N/attn/MatMul``) — the one constant-weight linear there.
    """
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    if parts[-2] in LAYER_GROUPS:
        return parts[-2]
    return "qkv" if parts[-2] == "attn" and any(p.startswith("blocks") for p in parts) else None


def _head_nodes(graph: onnx.GraphProto) -> set[str]:
    """Names of the linear nodes whose output reaches a graph output through Add/Identity only."""
    outputs = {o.name for o in graph.output}
    producers = {out: n for n in graph.node for out in n.output}
    heads: set[str] = set()
    for name in outputs:
        node = producers.get(name)
        for _ in range(8):
            if node is None:
                break
            if node.op_type in LINEAR_OPS:
                heads.add(node.name)
                break
            if node.op_type not in ("Add", "Identity"):
                break
            node = next((producers[i] for i in node.input if i in producers), None)
    return heads


def select_targets(model: onnx.ModelProto, options: Int8Options | None = None) -> Selection:
    """The QDQ targets of an exported fp32 graph (see the module docstring for the defaults)."""
    options = options or Int8Options()
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    heads = _head_nodes(graph)
    targets: list[QuantTarget] = []
    excluded: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "Conv":
            excluded[node.name] = "the patch-embedding Conv (kept in float)"
            continue
        if node.op_type not in LINEAR_OPS:
            continue
        a, b = node.input[0], node.input[1]
        attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        if node.name in options.exclude:
            excluded[node.name] = "named in exclude"
            continue
        if a in inits:
            excluded[node.name] = "constant first input"
            continue
        if b not in inits:
            if options.include_attention:
                targets.append(QuantTarget(node.name, node.op_type, "attention", (a, b)))
            else:
                excluded[node.name] = "attention (activation × activation MatMul)"
            continue
        dims = list(inits[b].dims)
        if inits[b].data_type != TensorProto.FLOAT or len(dims) != 2 or attrs.get("transA", 0):
            excluded[node.name] = "weight is not a float [in, out] / [out, in] matrix"
            continue
        axis = (0 if attrs.get("transB", 0) else 1) if node.op_type == "Gemm" else 1
        kind = "head" if node.name in heads else "linear"
        if kind == "head" and not options.include_head:
            excluded[node.name] = "the classification head (its output is the logits)"
            continue
        group = layer_group(node.name)  # a constant-weight linear here: the attn-scope one is qkv
        if group is not None and group in options.float_groups:
            excluded[node.name] = _group_reason(group)
            continue
        targets.append(QuantTarget(node.name, node.op_type, kind, (a,), b, axis))
    if not targets:
        raise ExportError("the graph has no layer to quantize to int8", received=f"excluded: {excluded}",
                          expected="MatMul/Gemm nodes with constant weights (the transformer's linear layers)",
                          fix="export the fp32 graph of an ActionDetector (vmaedet.export.onnx.export_onnx)")
    return Selection(targets, excluded)


# -- calibration -----------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Calibrated ranges (tensor → |x| bound) and what calibrating cost."""

    ranges: dict[str, float]
    method: str
    clips: int
    seconds: float
    kept_bytes_per_clip: int  #: the most bytes of calibration outputs held for one clip
    peak_rss_mib: float  #: the process's peak resident memory after calibration (VmHWM)
    percentile: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """For the manifest (without the per-tensor ranges)."""
        return {"method": self.method, "percentile": self.percentile, "clips": self.clips,
                "seconds": round(self.seconds, 2), "tensors": len(self.ranges),
                "kept_bytes_per_clip": self.kept_bytes_per_clip, "peak_rss_mib": round(self.peak_rss_mib, 1)}


def peak_rss_mib() -> float:
    """The process's peak resident set size in MiB (VmHWM of /proc/self/status, else getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _with_outputs(model: onnx.ModelProto, outputs: Sequence[tuple[str, list[int] | None]],
                  nodes: Sequence[onnx.NodeProto] = ()) -> bytes:
    """``model`` with extra nodes and graph outputs (name, shape or None), serialised."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.node.extend(nodes)
    for name, shape in outputs:
        extended.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return extended.SerializeToString()


def _session(data: bytes, threads: int | None) -> Any:
    from vmaedet.engines.onnxruntime_engine import SessionLoadError, create_session

    try:
        return create_session(data, device="cpu", threads=threads)
    except SessionLoadError as exc:
        raise ExportError("onnxruntime cannot load the calibration graph", received=exc.reason,
                          fix="nothing was written; report this as a bug") from exc


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], clips: Iterable[tuple[np.ndarray, np.ndarray]], *,
              method: str = "absmax", percentile: float = 99.99, bins: int = 2048,
              threads: int | None = None) -> Calibration:
    """Ranges of ``tensors`` over ``clips`` (re-iterable; each ``(clip [1, 3, 16, H, W], rois [K, 5])``).

    abs-max: one pass; the graph computes ``ReduceMax(Abs(t))`` for each tensor, so one float per
    tensor comes back per clip.  percentile: a second pass fetches one clip's tensors at a time and
    adds |t| to a fixed histogram over [0, abs-max]; the range is the percentile's bin edge.

    Raises:
        ExportError: no clip, or a range that is not finite (NaN/inf activations).
    """
    t0 = time.perf_counter()
    names = [f"{t}{_CALIB_SUFFIX}" for t in tensors]
    extra: list[onnx.NodeProto] = []
    for t, out in zip(tensors, names):
        extra.append(helper.make_node("Abs", [t], [f"{out}_abs"], name=f"{out}_Abs"))
        extra.append(helper.make_node("ReduceMax", [f"{out}_abs"], [out], name=f"{out}_ReduceMax", keepdims=0))
    session = _session(_with_outputs(model, [(n, []) for n in names], extra), threads)
    absmax = np.zeros(len(tensors), dtype=np.float64)
    count, kept = 0, 0
    for clip, rois in clips:
        values = session.run(names, {"clip": clip, "rois": rois})  # one scalar per tensor
        kept = max(kept, sum(np.asarray(v).nbytes for v in values))
        absmax = np.maximum(absmax, [float(np.asarray(v)) for v in values])
        count += 1
    del session
    if count == 0:
        raise ExportError("no calibration clip", expected="at least one clip with one person",
                          fix="give an AVA-format dataset with keyframes (calibration data)")
    bad = [t for t, v in zip(tensors, absmax) if not np.isfinite(v)]
    if bad:
        raise ExportError("a calibrated activation range is not finite", received=bad[:3],
                          fix="check the weights and the calibration clips for NaN/inf")
    ranges = {t: float(v) for t, v in zip(tensors, absmax)}
    if method == "percentile":
        hist = {t: np.zeros(bins, dtype=np.int64) for t in tensors}
        session = _session(_with_outputs(model, [(t, None) for t in tensors]), threads)
        for clip, rois in clips:
            values = session.run(list(tensors), {"clip": clip, "rois": rois})  # one clip's tensors only
            kept = max(kept, sum(np.asarray(v).nbytes for v in values))
            for t, v in zip(tensors, values):
                top = ranges[t] if ranges[t] > 0 else 1.0
                hist[t] += np.histogram(np.abs(v), bins=bins, range=(0.0, top))[0]
            del values
        del session
        for t in tensors:
            cum = np.cumsum(hist[t])
            if cum[-1] == 0 or ranges[t] == 0:
                continue
            idx = int(np.searchsorted(cum, percentile / 100.0 * cum[-1]))
            ranges[t] = min(ranges[t], (idx + 1) * ranges[t] / bins)
    return Calibration(ranges, method, count, time.perf_counter() - t0, kept, peak_rss_mib(),
                       percentile if method == "percentile" else None)


# -- the QDQ rewrite -------------------------------------------------------------------------------
def _weight_int8(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8: (``q`` int8 like ``weight``, ``scale [out]`` float32)."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.abs(weight).max(axis=reduce)  # [out]
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)  # [out]
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.rint(weight / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def quantize_qdq(model: onnx.ModelProto, selection: Selection, ranges: Mapping[str, float],
                 options: Int8Options | None = None) -> onnx.ModelProto:
    """The QDQ graph: int8 per-channel weights + DequantizeLinear, Q→DQ on the selected activations.

    Only the selected nodes read the dequantized tensors; other consumers (residual adds) keep the
    float tensor.  Returns a new model; ``model`` is not changed.
    """
    options = options or Int8Options()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    new_inits: list[onnx.TensorProto] = []
    weight_nodes: list[onnx.NodeProto] = []
    replaced_weights: dict[str, str] = {}
    for target in selection.targets:
        if target.weight is None or target.weight in replaced_weights:
            continue
        w = numpy_helper.to_array(inits[target.weight]).astype(np.float32)
        q, scale = _weight_int8(w, int(target.weight_axis))  # type: ignore[arg-type]
        base = target.weight
        new_inits += [numpy_helper.from_array(q, f"{base}_int8"), numpy_helper.from_array(scale, f"{base}_scale"),
                      numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}_zero_point")]
        weight_nodes.append(helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero_point"],
                                             [f"{base}_dequantized"], name=f"{base}_DequantizeLinear",
                                             axis=int(target.weight_axis)))  # type: ignore[arg-type]
        replaced_weights[base] = f"{base}_dequantized"
    act_scale: dict[str, float] = {}
    for target in selection.targets:
        factor = float(options.range_scale.get(target.node, 1.0))
        for t in target.activations:
            bound = float(ranges[t]) * factor
            act_scale[t] = max(bound, 1e-12) / QMAX if np.isfinite(bound) else 1.0
    by_node = {t.node: t for t in selection.targets}
    emitted: set[str] = set()
    nodes: list[onnx.NodeProto] = list(weight_nodes)
    for node in graph.node:
        target = by_node.get(node.name)
        if target is not None:
            for i, name in enumerate(node.input):
                if name in replaced_weights and name == target.weight:
                    node.input[i] = replaced_weights[name]
                elif name in target.activations:
                    if name not in emitted:
                        s, zp = f"{name}_scale", f"{name}_zero_point"
                        new_inits += [numpy_helper.from_array(np.array(act_scale[name], np.float32), s),
                                      numpy_helper.from_array(np.array(0, np.int8), zp)]
                        nodes.append(helper.make_node("QuantizeLinear", [name, s, zp], [f"{name}_quantized"],
                                                      name=f"{name}_QuantizeLinear"))
                        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_quantized", s, zp],
                                                      [f"{name}_dequantized"], name=f"{name}_DequantizeLinear"))
                        emitted.add(name)
                    node.input[i] = f"{name}_dequantized"
        nodes.append(node)
    still_used = {i for n in nodes for i in n.input}
    keep = [i for i in graph.initializer if i.name not in replaced_weights or i.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    return out


def check_qdq_structure(model: onnx.ModelProto) -> dict[str, Any]:
    """What TensorRT's explicit quantization needs: every Q/DQ zero point int8 and 0, scales constant and
    positive; per-axis only on weights.  Returns counts; raises ExportError naming the first offender."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = dq = per_channel = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        q += node.op_type == "QuantizeLinear"
        dq += node.op_type == "DequantizeLinear"
        scale = inits.get(node.input[1])
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None or not np.all(scale > 0) or zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            raise ExportError(f"{node.name} is not symmetric int8 with a constant scale",
                              expected="a constant positive scale and an int8 zero point of 0",
                              fix="report this as a bug (the int8 pass writes symmetric QDQ)")
        per_channel += scale.ndim == 1 and scale.size > 1
    return {"QuantizeLinear": q, "DequantizeLinear": dq, "per_channel_weights": per_channel}


# -- calibration data ------------------------------------------------------------------------------
def fit_clip(clip: torch.Tensor, boxes: torch.Tensor, input_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                          tuple[int, int]]:
    """A normalised clip ``[3, 16, h, w]`` fitted into ``input_hw``: scaled down (bilinear) when larger,
    zero-padded bottom/right.  Returns (clip ``[1, 3, 16, H, W]``, boxes ``[N, 4]`` scaled, (w', h'))."""
    h, w = clip.shape[-2:]
    big_h, big_w = input_hw
    scale = min(1.0, big_h / h, big_w / w)
    if scale < 1.0:
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        frames = torch.nn.functional.interpolate(clip.permute(1, 0, 2, 3), size=(nh, nw), mode="bilinear",
                                                 align_corners=False)  # [16, 3, h', w']
        clip = frames.permute(1, 0, 2, 3)  # [3, 16, h', w']
        boxes = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h])
        h, w = nh, nw
    out = torch.zeros((1, clip.shape[0], clip.shape[1], big_h, big_w), dtype=torch.float32)  # [1, 3, 16, H, W]
    out[0, :, :, :h, :w] = clip
    return out, boxes, (int(w), int(h))


class DatasetClips:
    """Keyframe clips of one split of an AVA-format dataset, fitted to a fixed geometry, decoded one at a time.

    Iterating yields ``(clip [1, 3, 16, H, W] float32, rois [K, 5] float32)`` numpy pairs (K ≤
    ``max_persons``, the boxes extended as the model's test rois); :meth:`items` also yields the
    dataset sample (boxes, scores, size) for detection rows.
    """

    def __init__(self, root: str | Path, split: str, indices: Sequence[int], input_hw: tuple[int, int],
                 short_side: int, max_persons: int) -> None:
        from vmaedet.data.ava import build_dataset

        self.root, self.split = Path(root), split
        self.dataset = build_dataset(root, split, train=False, short_side=short_side)
        self.indices = list(indices)
        self.input_hw, self.max_persons = tuple(input_hw), int(max_persons)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def keys(self) -> list[tuple[str, int]]:
        """(video id, timestamp) of the clips, in order."""
        return [self.dataset.keys[i] for i in self.indices]

    def items(self) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
        """``(clip, rois, sample)`` per keyframe; ``sample`` holds the kept boxes and scores."""
        from vmaedet.ops.boxes import make_rois

        for i in self.indices:
            sample = self.dataset[i]
            boxes = sample["boxes"][: self.max_persons]  # [N, 4] resized-clip pixels
            clip, fitted, size = fit_clip(sample["clip"], boxes, self.input_hw)  # type: ignore[arg-type]
            rois = make_rois(fitted, size)  # [N, 5]
            sample = {**sample, "boxes": boxes, "scores": sample["scores"][: self.max_persons]}
            yield clip.numpy(), rois.numpy().astype(np.float32), sample

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for clip, rois, _ in self.items():
            yield clip, rois


def _evenly(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k ≥ n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def check_dataset_root(root: str | Path) -> dict[str, Path]:
    """The annotation CSVs of an AVA-format dataset root (``{split: csv}``); DataError when it is not one."""
    root = Path(root)
    ann = root / "annotations"
    splits = {s: ann / f"{s}.csv" for s in ("train", "val") if (ann / f"{s}.csv").is_file()}
    if not root.is_dir() or not splits:
        raise DataError("the calibration data is not an AVA-format dataset", received=str(root),
                        expected="a folder with annotations/train.csv or annotations/val.csv and its videos "
                                 "(the layout `vmaedet synth OUT` writes)",
                        fix="point the calibration data at an AVA-format dataset root, e.g. one made by `vmaedet synth OUT`")
    return splits


def plan_clips(root: str | Path, *, calib_clips: int, gate_clips: int, input_hw: tuple[int, int], short_side: int,
               max_persons: int) -> tuple[DatasetClips, DatasetClips]:
    """(calibration clips, held-back clips) of a dataset: calibration from ``train`` (evenly spread
    keyframes), the gate on ``val``; with one split only, its keyframes are divided between the two
    (never shared).

    Raises:
        ConfigError: a clip count below 1.  DataError: not a dataset, or too few keyframes.
    """
    for name, value in (("calib_clips", calib_clips), ("gate_clips", gate_clips)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"the number of {'calibration' if name == 'calib_clips' else 'held-back'} clips "
                              f"({name}) must be at least 1", received=value, expected="e.g. 32 (calibration), 16 (gate)")
    splits = check_dataset_root(root)
    args = dict(input_hw=input_hw, short_side=short_side, max_persons=max_persons)
    if len(splits) == 2:
        train = DatasetClips(root, "train", [], **args)  # type: ignore[arg-type]
        val = DatasetClips(root, "val", [], **args)  # type: ignore[arg-type]
        train.indices = _evenly(len(train.dataset), calib_clips)
        val.indices = _evenly(len(val.dataset), gate_clips)
        calib, held = train, val
    else:
        (split,) = splits
        calib = DatasetClips(root, split, [], **args)  # type: ignore[arg-type]
        held = DatasetClips(root, split, [], **args)  # type: ignore[arg-type]
        n = len(calib.dataset)
        if n < 2:
            raise DataError("the calibration data has too few keyframes to calibrate and hold clips back",
                            received=f"{n} keyframe(s) in {split}", expected="at least 2",
                            fix="use a dataset with more keyframes (or both a train and a val split)")
        calib.indices = _evenly(n, min(calib_clips, n - 1))
        rest = [i for i in range(n) if i not in set(calib.indices)]
        held.indices = [rest[j] for j in _evenly(len(rest), gate_clips)]
    for clips, what in ((calib, "calibration"), (held, "held-back")):
        if not clips.indices:
            raise DataError(f"no keyframe for the {what} clips in the {clips.split} split", received=str(root),
                            expected="keyframes with person boxes", fix="use a dataset with keyframes in both splits")
    return calib, held


# -- the task gate ---------------------------------------------------------------------------------
def task_gate(model: torch.nn.Module, run: Any, clips: DatasetClips, *, num_classes: int) -> dict[str, Any]:
    """The quantized graph (``run(clip, rois) → logits`` numpy) vs the fp32 PyTorch ``model`` on
    ``clips``: pooled errors over every person, per-clip cases, and — when the split has labels —
    frame-mAP@0.5 (official protocol) of both on those keyframes and their difference."""
    from vmaedet.data.annotations import read_exclusions
    from vmaedet.data.detections import detections_to_rows, rows_to_ava
    from vmaedet.evaluation.ava import evaluate_frame_map
    from vmaedet.export.parity import error_stats, pooled_stats
    from vmaedet.labels import AVA_EVAL_IDS

    refs, outs, cases = [], [], []
    rows_ref: list[Any] = []
    rows_q: list[Any] = []
    for clip, rois, sample in clips.items():
        with torch.no_grad():
            ref = model(torch.from_numpy(clip), torch.from_numpy(rois)).float()  # [K, C]
        out = torch.from_numpy(np.asarray(run(clip, rois), dtype=np.float32))  # [K, C]
        if tuple(out.shape) != (rois.shape[0], num_classes):
            raise ExportError("the int8 graph returned the wrong shape", received=tuple(out.shape),
                              expected=(rois.shape[0], num_classes))
        refs.append(ref)
        outs.append(out)
        cases.append({"k": int(rois.shape[0]), **error_stats(ref, out)})
        person = sample["scores"].float()[:, None]  # [K, 1]
        for logits, rows in ((ref, rows_ref), (out, rows_q)):
            rows.extend(detections_to_rows(sample["boxes"], logits.sigmoid() * person, sample["video_id"],
                                           sample["timestamp"], tuple(sample["size"]), tuple(sample["orig_size"])))
    stats = pooled_stats(refs, outs)
    result: dict[str, Any] = {"clips": len(cases), "persons": int(sum(c["k"] for c in cases)), "cases": cases, **stats}
    gt = clips.root / "annotations" / f"{clips.split}.csv"
    if gt.is_file() and rows_ref:
        from vmaedet.data.annotations import read_ava_csv

        gt_rows = read_ava_csv(gt, with_scores=False)
        held = set(clips.keys)
        all_keys = {(gt_rows.videos[v], int(t)) for v, t in zip(gt_rows.video_index, gt_rows.timestamps)}
        excl_path = clips.root / "annotations" / f"excluded_{clips.split}.csv"
        excluded = (all_keys - held) | (read_exclusions(excl_path) if excl_path.is_file() else set())
        labelmap: Any = clips.dataset.labelmap or list(AVA_EVAL_IDS)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # detections beside GT frames etc.: the same for both
            try:
                m_ref = evaluate_frame_map(gt_rows, rows_to_ava(rows_ref), labelmap, excluded).mAP
                m_q = evaluate_frame_map(gt_rows, rows_to_ava(rows_q), labelmap, excluded).mAP
            except DataError:
                m_ref = m_q = None  # no labelled box among the held-back keyframes
        if m_ref is not None:
            result.update({"map_fp32": m_ref, "map_int8": m_q, "map_delta": m_q - m_ref})
    return result


def describe(selection: Selection, calibration: Calibration, *, root: str | Path, calib_split: str,
             held_split: str, options: Int8Options) -> dict[str, Any]:
    """The manifest's ``quantization`` section (gates added by the exporter)."""
    from vmaedet.envinfo import module_version

    ops = sorted({t.op_type for t in selection.targets})
    return {
        "scheme": SCHEME, "library": "vmaedet",
        "weights": "int8, per output channel (DequantizeLinear axis = output channel), symmetric (zero point 0, ±127)",
        "activations": "int8, per tensor, symmetric (zero point 0, ±127), QuantizeLinear → DequantizeLinear",
        "quantized": [t.node for t in selection.targets], "quantized_op_types": ops,
        "excluded": dict(selection.excluded),
        "calibration": {**calibration.to_dict(), "data_root": str(Path(root).resolve()), "split": calib_split,
                        "held_back_split": held_split, "clips_one_at_a_time": True},
        "versions": {"onnx": onnx.__version__, "onnxruntime": module_version("onnxruntime")},
        "layer_groups": {g: {"int8": sum(t.kind == "linear" and layer_group(t.node) == g for t in selection.targets),
                             "float": sum(r == _group_reason(g) for r in selection.excluded.values())}
                         for g in LAYER_GROUPS},
        "options": {"include_attention": options.include_attention, "include_head": options.include_head,
                    "exclude": list(options.exclude), "float_groups": list(options.float_groups),
                    "float_op_types": list(FLOAT_OPS),
                    **({"range_scale": dict(options.range_scale)} if options.range_scale else {})},
    }


__all__ = ["DEFAULT_FLOAT_GROUPS", "LAYER_GROUPS", "Calibration", "DatasetClips", "Int8Options", "QuantTarget",
           "Selection", "calibrate", "check_qdq_structure", "describe", "fit_clip", "layer_group", "plan_clips",
           "quantize_qdq", "select_targets", "task_gate"]
