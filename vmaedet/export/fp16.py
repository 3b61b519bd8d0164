"""Mixed-precision graph pass: an FP16 body with FP32 islands, for strongly typed TensorRT.

TensorRT 10.12+ strongly typed networks (mandatory in 11) take every tensor's type from the
ONNX graph, so the graph itself must say which parts run in FP16.  This pass rewrites an FP32
graph so that

* the body (Conv, MatMul, Gemm, Add, Mul, Div, Erf, …) runs in FP16, its float initializers
  converted to FP16 (clamped to ±65504, with counts of clamped / flushed values);
* LayerNormalization, reductions (ReduceMean over time, ReduceMax over the RoI grid), RoiAlign
  — features, boxes and indices — and any Softmax outside an attention block stay FP32;
* every attention block — ``MatMul`` (Q·Kᵀ) → optional scale by a constant (``Mul``/``Div``) →
  ``Softmax`` → ``MatMul`` (·V) — is one unbroken FP16 pattern with no ``Cast`` inside, so that
  TensorRT recognises it and runs it as one fused (flash) attention kernel, which keeps the
  softmax statistics in FP32 internally.  Breaking it with FP32 casts around the Softmax makes
  TensorRT run three kernels and write the [heads, N, N] scores to memory twice per layer
  (~660 MB per layer for ViT-B at 256×464).  onnxruntime on the CPU computes an FP16 Softmax in
  FP32 too (it casts around kernels it has no FP16 implementation for); the export's parity gate
  checks the result either way;
* data-movement ops (Reshape, Transpose, Gather, …) keep the precision of what they move, so a
  FP32 tensor is not rounded to FP16 on its way between two FP32 islands;
* graph inputs and outputs stay FP32;
* an explicit ``Cast`` sits at every FP32↔FP16 boundary (one per tensor and direction).

Written with the plain ``onnx`` API (no modelopt); :func:`check_fp16_structure` verifies the
result structurally (including that no attention block is broken up), the export verifies it
numerically in onnxruntime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vmaedet.errors import ExportError

FP32, FP16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
FP16_TINY = 2.0**-24  # smallest positive subnormal

#: Ops that run in FP32 (numerically sensitive, or with float inputs that must stay FP32) — except
#: a Softmax inside an attention block (see :func:`find_attention_blocks`), which runs in FP16.
KEEP_FP32_OPS = frozenset({
    "LayerNormalization", "Softmax", "LogSoftmax", "RoiAlign",
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "Resize", "Upsample",  # their float scales/roi inputs must stay FP32
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike",
})
#: Ops that only move data: they keep the precision of their (non-constant) float inputs.
FOLLOW_OPS = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Gather",
    "GatherElements", "Concat", "Split", "Expand", "Tile",
})
#: Ops whose float output type comes from an attribute, not from their inputs; left as they are.
TYPE_FROM_ATTR_OPS = frozenset({"Cast", "CastLike", "Shape", "Size"})


@dataclass
class Fp16Report:
    """What the pass did."""

    fp16_nodes: int = 0
    fp32_nodes: dict[str, int] = field(default_factory=dict)  # op type → count kept in FP32
    casts_inserted: int = 0
    attention_blocks: int = 0  # MatMul→(scale)→Softmax→MatMul patterns kept in FP16, unbroken
    initializers_converted: int = 0
    values_clamped: int = 0  # |x| > 65504 in a converted constant
    values_flushed: int = 0  # 0 < |x| < 2^-24 in a converted constant (became 0)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor (inputs, initializers, node outputs) by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def _hoist_float_constants(graph: onnx.GraphProto) -> None:
    """Turn float ``Constant`` nodes and ``Identity`` copies of initializers into initializers.

    The TorchScript exporter shares equal weights (e.g. LayerNorm scales of ones) through
    ``Identity`` nodes; as initializers they get the precision of their consumer directly.
    """
    inits = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        source: onnx.TensorProto | None = None
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value" \
                and node.attribute[0].t.data_type == FP32:
            source = node.attribute[0].t
        elif node.op_type == "Identity" and node.input[0] in inits and inits[node.input[0]].data_type == FP32:
            source = inits[node.input[0]]
        if source is None:
            keep.append(node)
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(source)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        inits[tensor.name] = tensor
    del graph.node[:]
    graph.node.extend(keep)


@dataclass(frozen=True)
class AttentionBlock:
    """One attention pattern, as the nodes that form it (in graph order)."""

    qk: onnx.NodeProto  # MatMul Q·Kᵀ → scores
    between: tuple[onnx.NodeProto, ...]  # scale nodes (Mul/Div by a constant) and, when looked for, Casts
    softmax: onnx.NodeProto
    after: tuple[onnx.NodeProto, ...]  # Casts, when looked for, between the Softmax and ·V
    av: tuple[onnx.NodeProto, ...]  # the MatMul(s) probabilities · V

    @property
    def nodes(self) -> tuple[onnx.NodeProto, ...]:
        return (self.qk, *self.between, self.softmax, *self.after, *self.av)

    @property
    def casts(self) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type == "Cast"]


def find_attention_blocks(graph: onnx.GraphProto, through_casts: bool = False) -> list[AttentionBlock]:
    """Every ``MatMul → (Mul|Div by a constant)* → Softmax(last axis) → MatMul`` pattern of ``graph``.

    The scores and probabilities must feed nothing else (no graph output, no other consumer), and
    the probabilities must be the left operand of every ``MatMul`` that reads them.  With
    ``through_casts`` ``Cast`` nodes inside the pattern are stepped over (and listed), which is how
    :func:`check_fp16_structure` finds blocks that a pass broke up.
    """
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {t.name for t in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    outputs = {o.name for o in graph.output}

    def only_consumer(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    blocks = []
    for sm in graph.node:
        if sm.op_type != "Softmax" or any(a.name == "axis" and a.i != -1 for a in sm.attribute):
            continue
        between: list[onnx.NodeProto] = []
        node = producer.get(sm.input[0])
        while node is not None and only_consumer(node.output[0]) is not None:
            ins = list(node.input)
            if node.op_type == "Mul" and len(ins) == 2 and (ins[0] in constants) != (ins[1] in constants):
                upstream = ins[1] if ins[0] in constants else ins[0]  # scores × scale, either order
            elif node.op_type == "Div" and len(ins) == 2 and ins[1] in constants and ins[0] not in constants:
                upstream = ins[0]  # scores / scale
            elif node.op_type == "Cast" and through_casts:
                upstream = ins[0]
            else:
                break
            between.insert(0, node)
            node = producer.get(upstream)
        if node is None or node.op_type != "MatMul" or only_consumer(node.output[0]) is None:
            continue
        after: list[onnx.NodeProto] = []
        probs = [sm.output[0]]
        av: list[onnx.NodeProto] = []
        ok = sm.output[0] not in outputs
        while probs and ok:
            name = probs.pop()
            users = consumers.get(name, [])
            ok = bool(users) and name not in outputs
            for user in users:
                if user.op_type == "MatMul" and user.input[0] == name and user.input[1] != name:
                    av.append(user)
                elif user.op_type == "Cast" and through_casts:
                    after.append(user)
                    probs.append(user.output[0])
                else:
                    ok = False
        if ok and av:
            blocks.append(AttentionBlock(node, tuple(between), sm, tuple(after), tuple(av)))
    return blocks


def _to_fp16_array(arr: np.ndarray, report: Fp16Report) -> np.ndarray:
    """FP32 → FP16 with clamping to ±65504; counts clamped and flushed values."""
    finite = np.isfinite(arr)
    report.values_clamped += int(np.count_nonzero(finite & (np.abs(arr) > FP16_MAX)))
    report.values_flushed += int(np.count_nonzero((arr != 0) & (np.abs(arr) < FP16_TINY / 2)))
    return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


class _Rewriter:
    """Holds the state of one pass over a graph (converted constants, inserted casts)."""

    def __init__(self, graph: onnx.GraphProto, types: dict[str, int], report: Fp16Report,
                 fp16_softmax: frozenset[str] = frozenset()) -> None:
        self.graph = graph
        self.fp16_softmax = fp16_softmax  # outputs of the Softmax nodes of attention blocks
        self.types = types
        self.report = report
        self.inits = {t.name: t for t in graph.initializer}
        self.prec: dict[str, int] = {name: FP32 for name, t in types.items() if t == FP32}
        self.converted: dict[tuple[str, int], str] = {}
        self.new_nodes: list[onnx.NodeProto] = []

    def is_float(self, name: str) -> bool:
        return bool(name) and self.types.get(name) == FP32

    def as_type(self, name: str, dtype: int) -> str:
        """Name of ``name`` in ``dtype``: itself, a converted initializer, or a Cast output."""
        if self.prec.get(name, FP32) == dtype:
            return name
        key = (name, dtype)
        if key in self.converted:
            return self.converted[key]
        suffix = "fp16" if dtype == FP16 else "fp32"
        new = f"{name}__{suffix}"
        if name in self.inits and dtype == FP16:
            arr = numpy_helper.to_array(self.inits[name])
            self.graph.initializer.append(numpy_helper.from_array(_to_fp16_array(arr, self.report), new))
            self.report.initializers_converted += 1
        else:
            self.new_nodes.append(helper.make_node("Cast", [name], [new], to=dtype, name=f"cast_{suffix}/{name}"))
            self.report.casts_inserted += 1
        self.prec[new] = dtype
        self.converted[key] = new
        return new

    def target(self, node: onnx.NodeProto) -> int | None:
        """Precision the node runs in, or None for ops left as they are."""
        if node.op_type in TYPE_FROM_ATTR_OPS or node.op_type == "Constant":
            return None
        if node.op_type == "Softmax" and node.output[0] in self.fp16_softmax:
            return FP16  # inside an attention block: the whole block stays one FP16 pattern
        if node.op_type in KEEP_FP32_OPS:
            return FP32
        if node.op_type in FOLLOW_OPS:
            moving = [i for i in node.input if self.is_float(i) and i not in self.inits]
            if moving and all(self.prec.get(i) == FP32 for i in moving):
                return FP32
        return FP16

    def rewrite(self, node: onnx.NodeProto) -> None:
        target = self.target(node)
        if target is None:
            self.new_nodes.append(node)
            return
        for idx, name in enumerate(node.input):
            if self.is_float(name):
                node.input[idx] = self.as_type(name, target)
        if target == FP16 and node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FP32:
                    attr.t.CopyFrom(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(attr.t), self.report)))
        for out in node.output:
            if self.is_float(out):
                self.prec[out] = target
        if target == FP16:
            self.report.fp16_nodes += 1
        else:
            self.report.fp32_nodes[node.op_type] = self.report.fp32_nodes.get(node.op_type, 0) + 1
        self.new_nodes.append(node)


def _rename(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    for node in nodes:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name == old:
                    seq[i] = new


def convert_to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Fp16Report]:
    """Rewrite an FP32 model into the mixed-precision form described in the module docstring.

    Returns:
        (new model, report).  The input model is not modified.

    Raises:
        ExportError: the graph has no FP32 tensors to convert, or the result is not type-consistent.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    _hoist_float_constants(graph)
    types = _float_types(out)
    if not any(t == FP32 for t in types.values()):
        raise ExportError("the graph has no FP32 tensors to convert", expected="an FP32 ONNX graph")
    report = Fp16Report()
    blocks = find_attention_blocks(graph)
    report.attention_blocks = len(blocks)
    rw = _Rewriter(graph, types, report, frozenset(b.softmax.output[0] for b in blocks))
    for node in list(graph.node):
        rw.rewrite(node)
    for gout in graph.output:
        if rw.prec.get(gout.name) == FP16:  # outputs stay FP32: rename the FP16 tensor, cast back
            internal = f"{gout.name}__fp16"
            _rename(rw.new_nodes, gout.name, internal)
            rw.new_nodes.append(helper.make_node("Cast", [internal], [gout.name], to=FP32, name=f"cast_fp32/{gout.name}"))
            report.casts_inserted += 1
    del graph.node[:]
    graph.node.extend(rw.new_nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(out, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ExportError("the FP16 graph is not type-consistent (a Cast is missing)", received=str(exc)[:500]) from exc
    return out, report


def check_fp16_structure(model: onnx.ModelProto) -> dict[str, Any]:
    """Verify the mixed-precision layout of a converted graph; returns counts for the manifest.

    Checks: graph inputs/outputs are FP32; every node of :data:`KEEP_FP32_OPS` (but the Softmax of
    an attention block) has only FP32 float inputs and outputs; every Conv/MatMul/Gemm runs in
    FP16; every attention block (:func:`find_attention_blocks`, Casts stepped over) is all FP16
    with no Cast inside; every node's float inputs share one type (so each boundary has its Cast).

    Raises:
        ExportError: listing every violation.
    """
    types = _float_types(model)
    g = model.graph
    problems: list[str] = []
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type not in (FP32, TensorProto.INT64):
            problems.append(f"graph I/O {vi.name} is {TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}")
    counts: Counter[str] = Counter()
    blocks = find_attention_blocks(g, through_casts=True)
    attention_softmax = {b.softmax.output[0] for b in blocks}
    for block in blocks:
        where = f"the attention block around Softmax {block.softmax.name or block.softmax.output[0]}"
        if block.casts:
            problems.append(f"{where} is broken up by {len(block.casts)} Cast(s), so TensorRT cannot fuse it")
        names = [n for node in block.nodes if node.op_type != "Cast" for n in list(node.input) + list(node.output)]
        if {types.get(n) for n in names if n and types.get(n) in (FP32, FP16)} != {FP16}:
            problems.append(f"{where} is not all FP16")
    counts["attention_blocks"] = len(blocks)
    for node in g.node:
        floats = {types.get(n) for n in list(node.input) + list(node.output) if n and types.get(n) in (FP32, FP16)}
        if node.op_type in KEEP_FP32_OPS and node.output[0] not in attention_softmax and floats - {FP32}:
            problems.append(f"{node.op_type} {node.name} is not FP32")
        if node.op_type in ("Conv", "MatMul", "Gemm") and floats != {FP16}:
            problems.append(f"{node.op_type} {node.name} is not FP16")
        ins = {types.get(n) for n in node.input if n and types.get(n) in (FP32, FP16)}
        if node.op_type not in TYPE_FROM_ATTR_OPS and len(ins) > 1:
            problems.append(f"{node.op_type} {node.name} mixes FP32 and FP16 inputs")
        if node.op_type == "Cast":
            counts["casts"] += 1
        elif floats == {FP16}:
            counts["fp16_nodes"] += 1
        elif floats == {FP32}:
            counts[f"fp32:{node.op_type}"] += 1
    if problems:
        raise ExportError("the FP16 graph breaks the mixed-precision layout", received="; ".join(problems[:10]),
                          expected="FP16 body and unbroken FP16 attention blocks; LayerNorm, reductions, RoiAlign, "
                                   "Softmax outside attention and graph I/O in FP32")
    return dict(counts)
