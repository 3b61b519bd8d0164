"""ONNX graph surgery for TensorRT: the head's ``RoiAlign → ReduceMax`` as one plugin node.

The exported graph pools persons with the standard ``RoiAlign`` (legacy ``output_half_pixel``,
``sampling_ratio=0``, scale 1/16) fed by a split of the ``[K, 5]`` rois input, followed by a
``ReduceMax`` over axes 2, 3 (with ``keepdims=0``, or ``keepdims=1`` and a Squeeze/Reshape/Flatten).

* ``roi_align="plugin"`` replaces that subgraph by one ``vmaedet::RoIAlignMax`` node
  (features **channels-last** ``[B, h, w, C]``, rois ``[K, 5]`` float32 → ``[K, C]``) that
  TensorRT's ONNX parser maps to our ``tensorrt.plugin`` definition
  (``plugin_namespace``/``plugin_version``/``aot``).  The channels-last map is taken from before
  the backbone's transpose where the graph has one (``Transpose(0,3,1,2)``, or the time mean of
  ``Transpose(0,4,1,2,3)`` of the ``[B, T, h, w, C]`` tokens, rewritten as a mean over axis 1);
  otherwise a ``Transpose(0,2,3,1)`` is inserted.
* ``roi_align="builtin"`` keeps the standard op (TensorRT maps it to ``ROIAlign_TRT``) and only
  makes the attributes TensorRT's importer defaults differently explicit (``sampling_ratio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vmaedet.errors import ExportError
from vmaedet.constants import PLUGIN_NAMESPACE, PLUGIN_VERSION, ROI_ALIGN_MAX_OP

RoiAlignMode = Literal["plugin", "builtin"]
ROI_ALIGN_MODES: tuple[str, ...] = ("plugin", "builtin")

#: Ops the rois pass through between the ``[K, 5]`` tensor and RoiAlign's rois/batch_indices.
_PASS_THROUGH = {"Slice", "Split", "Gather", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Identity", "Flatten"}
#: Ops that may turn ReduceMax(keepdims=1)'s ``[K, C, 1, 1]`` into ``[K, C]``.
_SQUEEZERS = {"Squeeze", "Reshape", "Flatten"}


@dataclass(frozen=True)
class RoiAlignMatch:
    """One ``RoiAlign → ReduceMax [→ squeeze]`` head found in a graph."""

    roi_align: onnx.NodeProto
    reduce_max: onnx.NodeProto
    squeeze: onnx.NodeProto | None
    features: str  # RoiAlign's X, [B, C, h, w]
    rois: str  # the [K, 5] tensor both rois and batch_indices come from
    output: str  # tensor that holds [K, C] after the match
    keeps_4d: bool  # ReduceMax keepdims=1 with nothing squeezing it: output is [K, C, 1, 1]
    spatial_scale: float
    pooled_size: int
    sampling_ratio: int
    aligned: int


# -- graph helpers --------------------------------------------------------------------------------
def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _constant_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(_attr(node, "value", None))  # type: ignore[arg-type]
    return None


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in graph.node for name in node.output}


def _ancestry(name: str, producers: dict[str, onnx.NodeProto]) -> list[str]:
    """``name`` and the tensors it derives from through pass-through ops (data input 0)."""
    chain = [name]
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        chain.append(node.input[0])
        node = producers.get(node.input[0])
    return chain


def _reduce_axes(graph: onnx.GraphProto, node: onnx.NodeProto, rank: int = 4) -> list[int] | None:
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = _constant_value(graph, node.input[1])
        axes = None if value is None else value.reshape(-1).tolist()
    return None if axes is None else sorted(int(a) % rank for a in axes)  # type: ignore[union-attr]


def _perm(node: onnx.NodeProto | None) -> list[int] | None:
    if node is None or node.op_type != "Transpose":
        return None
    perm = _attr(node, "perm", None)
    return None if perm is None else [int(p) for p in perm]  # type: ignore[union-attr]


def _channels_last(graph: onnx.GraphProto, features: str, opset: int, i: int) -> tuple[str, list[onnx.NodeProto]]:
    """A tensor holding ``features`` ``[B, C, h, w]`` as ``[B, h, w, C]``, and the nodes that make it.

    * ``features = Transpose(x, perm=[0, 3, 1, 2])``: ``x`` itself, no node;
    * ``features = ReduceMean(Transpose(t, perm=[0, 4, 1, 2, 3]), axes=[2], keepdims=0)`` (the
      backbone's time mean of ``[B, T, h, w, C]`` tokens): ``ReduceMean(t, axes=[1], keepdims=0)``;
    * anything else: ``Transpose(features, perm=[0, 2, 3, 1])``.
    """
    producers = _producers(graph)
    node = producers.get(features)
    if _perm(node) == [0, 3, 1, 2]:
        return node.input[0], []  # type: ignore[union-attr]
    if node is not None and node.op_type == "ReduceMean" and int(_attr(node, "keepdims", 1)) == 0:  # type: ignore[arg-type]
        src = producers.get(node.input[0])
        if _perm(src) == [0, 4, 1, 2, 3] and _reduce_axes(graph, node, rank=5) == [2]:
            name = f"roi_align_max_{i}_features_nhwc"
            if opset >= 18:
                axes = f"roi_align_max_{i}_mean_axes"
                graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axes))
                mean = helper.make_node("ReduceMean", [src.input[0], axes], [name], keepdims=0,  # type: ignore[union-attr]
                                        name=f"roi_align_max_{i}_time_mean")
            else:
                mean = helper.make_node("ReduceMean", [src.input[0]], [name], axes=[1], keepdims=0,  # type: ignore[union-attr]
                                        name=f"roi_align_max_{i}_time_mean")
            return name, [mean]
    name = f"roi_align_max_{i}_features_nhwc"
    return name, [helper.make_node("Transpose", [features], [name], perm=[0, 2, 3, 1], name=f"roi_align_max_{i}_to_nhwc")]


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


# -- matching -------------------------------------------------------------------------------------
def find_roi_align_max(model: onnx.ModelProto) -> list[RoiAlignMatch]:
    """Every ``RoiAlign(avg) → ReduceMax(axes 2,3)`` head in ``model``, with its attributes."""
    graph = model.graph
    consumers, producers = _consumers(graph), _producers(graph)
    legacy_default = _opset(model) < 16  # opset 10: no coordinate mode attribute = output_half_pixel
    matches = []
    for node in graph.node:
        if node.op_type != "RoiAlign" or node.domain not in ("", "ai.onnx"):
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "ReduceMax" or _reduce_axes(graph, users[0]) != [2, 3]:
            continue
        reduce_max = users[0]
        if _attr(node, "mode", b"avg") not in (b"avg", "avg"):
            continue
        out_h, out_w = int(_attr(node, "output_height", 1)), int(_attr(node, "output_width", 1))  # type: ignore[arg-type]
        if out_h != out_w:
            continue
        mode = _attr(node, "coordinate_transformation_mode", b"output_half_pixel" if legacy_default else b"half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        rois_chain = _ancestry(node.input[1], producers)
        idx_chain = set(_ancestry(node.input[2], producers))
        commons = [t for t in rois_chain if t in idx_chain]  # nearest first; the root is the [K, 5] input
        if not commons:
            continue
        common = commons[-1]  # before any cast to the features' dtype (FP16 rois lose ~0.1 px)
        squeeze, output, keeps_4d = None, reduce_max.output[0], False
        if int(_attr(reduce_max, "keepdims", 1)) == 1:  # type: ignore[arg-type]
            after = consumers.get(reduce_max.output[0], [])
            if len(after) == 1 and after[0].op_type in _SQUEEZERS:
                squeeze, output = after[0], after[0].output[0]
            else:
                keeps_4d = True
        matches.append(RoiAlignMatch(
            roi_align=node, reduce_max=reduce_max, squeeze=squeeze, features=node.input[0], rois=common,
            output=output, keeps_4d=keeps_4d, spatial_scale=float(_attr(node, "spatial_scale", 1.0)),  # type: ignore[arg-type]
            pooled_size=out_h, sampling_ratio=int(_attr(node, "sampling_ratio", 0)),  # type: ignore[arg-type]
            aligned=int(mode == "half_pixel"),
        ))
    return matches


def _require_matches(model: onnx.ModelProto) -> list[RoiAlignMatch]:
    matches = find_roi_align_max(model)
    if not matches:
        ops = sorted({n.op_type for n in model.graph.node})
        raise ExportError(
            "no RoiAlign → ReduceMax(axes 2,3) head found in the ONNX graph",
            received=f"ops: {', '.join(ops)}",
            expected="a graph exported by `vmaedet export` (RoiAlign avg fed by a split of the [K, 5] rois, then ReduceMax)",
            fix="export the ONNX with vmaedet export (opset 17), not a graph that was already rewritten",
        )
    return matches


# -- rewriting ------------------------------------------------------------------------------------
def _remove_dead(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nobody uses, and initializers/value_info no longer referenced."""
    keep = {o.name for o in graph.output}
    while True:
        used = keep | {name for node in graph.node for name in node.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = keep | {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    produced = {name for node in graph.node for name in node.output}
    for vi in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(vi)


def to_plugin_graph(model: onnx.ModelProto, *, aot: bool = True) -> onnx.ModelProto:
    """Copy of ``model`` with each RoIAlign+max head replaced by a ``vmaedet::RoIAlignMax`` node.

    Args:
        model: exported detector graph (FP32 or the FP16 TensorRT graph).
        aot: set the node's ``aot`` attribute: 1 = TensorRT uses the AOT (PTX) implementation,
            the engine runs without Python; 0 = the JIT implementation (Python callback).

    Raises:
        ExportError: when no head is found.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    matches = _require_matches(out)
    types = _elem_types(out)
    for i, m in enumerate(matches):
        position = list(graph.node).index(m.roi_align)
        rois = m.rois
        features, new_nodes = _channels_last(graph, m.features, _opset(out), i)  # [B, h, w, C]
        if types.get(rois, TensorProto.FLOAT) != TensorProto.FLOAT:
            rois = f"{m.rois}_fp32_{i}"
            new_nodes.append(helper.make_node("Cast", [m.rois], [rois], to=TensorProto.FLOAT, name=f"roi_align_max_{i}_rois_fp32"))
        pooled = f"{m.output}_kc" if m.keeps_4d else m.output
        new_nodes.append(helper.make_node(
            ROI_ALIGN_MAX_OP, [features, rois], [pooled], name=f"roi_align_max_{i}", domain=PLUGIN_NAMESPACE,
            plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION, spatial_scale=m.spatial_scale,
            pooled_size=m.pooled_size, sampling_ratio=m.sampling_ratio, aligned=m.aligned, aot=int(aot),
        ))
        if m.keeps_4d:
            axes = f"roi_align_max_{i}_axes"
            graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), axes))
            new_nodes.append(helper.make_node("Unsqueeze", [pooled, axes], [m.output], name=f"roi_align_max_{i}_4d"))
        for node in [m.roi_align, m.reduce_max, *([m.squeeze] if m.squeeze is not None else [])]:
            graph.node.remove(node)
        for offset, node in enumerate(new_nodes):
            graph.node.insert(position + offset, node)
    _remove_dead(graph)
    if not any(o.domain == PLUGIN_NAMESPACE for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(PLUGIN_NAMESPACE, 1))
    onnx.checker.check_model(out)
    return out


def to_builtin_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` keeping the standard RoiAlign, with every attribute TensorRT reads made explicit.

    TensorRT's importer defaults ``sampling_ratio`` to 1 where ONNX says 0, so the attribute is
    written out; the coordinate mode is written for opset ≥ 16.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for m in _require_matches(out):
        names = {a.name for a in m.roi_align.attribute}
        if "sampling_ratio" not in names:
            m.roi_align.attribute.append(helper.make_attribute("sampling_ratio", m.sampling_ratio))
        if "coordinate_transformation_mode" not in names and _opset(out) >= 16:
            mode = "half_pixel" if m.aligned else "output_half_pixel"
            m.roi_align.attribute.append(helper.make_attribute("coordinate_transformation_mode", mode))
    onnx.checker.check_model(out)
    return out


def prepare_roi_align(model: onnx.ModelProto, roi_align: str = "plugin", *, aot: bool = True) -> onnx.ModelProto:
    """The graph TensorRT should parse for ``--roi-align plugin|builtin``."""
    if roi_align not in ROI_ALIGN_MODES:
        raise ExportError(f"unknown RoIAlign mode {roi_align!r}", received=roi_align,
                          expected=" or ".join(ROI_ALIGN_MODES), fix="roi_align='plugin' (the default) or 'builtin'")
    return to_plugin_graph(model, aot=aot) if roi_align == "plugin" else to_builtin_graph(model)


def rewrite_file(onnx_in: str | Path, onnx_out: str | Path, roi_align: str = "plugin", *, aot: bool = True) -> Path:
    """Load ``onnx_in``, apply :func:`prepare_roi_align`, save to ``onnx_out`` (a new file)."""
    src, dst = Path(onnx_in), Path(onnx_out)
    if src.resolve() == dst.resolve():
        raise ExportError("graph surgery would overwrite its input", received=str(src),
                          expected="a different output path", fix="write the rewritten graph to a new file")
    if not src.is_file():
        raise ExportError("ONNX file not found", received=str(src), expected="an exported .onnx file",
                          fix="run `vmaedet export CKPT` first")
    onnx.save(prepare_roi_align(onnx.load(str(src)), roi_align, aot=aot), str(dst))
    return dst
