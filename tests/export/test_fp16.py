"""The FP16 graph pass: hand-built graphs, the exported detector's FP32 islands, and its error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from vmaedet.errors import ExportError
from vmaedet.export.fp16 import check_fp16_structure, convert_to_fp16
from vmaedet.export.onnx import export_onnx
from vmaedet.models import create_detector
from vmaedet.models.checkpoints import load_detector

FP32, FP16 = TensorProto.FLOAT, TensorProto.FLOAT16
HW = (96, 128)
KEEP_FP32 = {"LayerNormalization", "ReduceMean", "ReduceMax", "RoiAlign"}  # and Softmax outside attention


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _tiny_graph() -> onnx.ModelProto:
    """x [2, 4] → LayerNormalization → MatMul W → Softmax → y."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], epsilon=1e-6),
        helper.make_node("MatMul", ["ln", "w"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", FP32, [2, 4])], [helper.make_tensor_value_info("y", FP32, [2, 3])],
        [numpy_helper.from_array(np.ones(4, np.float32), "g"), numpy_helper.from_array(np.zeros(4, np.float32), "b"),
         numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_casts_on_a_hand_built_graph() -> None:
    model = _tiny_graph()
    converted, report = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    ops = [(n.op_type, dict((a.name, a.i) for a in n.attribute if a.name == "to")) for n in converted.graph.node]
    # LN (fp32) → Cast to fp16 → MatMul (fp16, W converted) → Cast to fp32 → Softmax (fp32): exactly two casts.
    assert ops == [("LayerNormalization", {}), ("Cast", {"to": FP16}), ("MatMul", {}), ("Cast", {"to": FP32}), ("Softmax", {})]
    assert report.casts_inserted == 2 and report.initializers_converted == 1
    assert {t.name: t.data_type for t in converted.graph.initializer} == {"g": FP32, "b": FP32, "w__fp16": FP16}
    x = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    w = numpy_helper.to_array(model.graph.initializer[2])
    ln = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-6)
    logits = ln.astype(np.float16).astype(np.float32) @ w.astype(np.float16).astype(np.float32)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    (y,) = _run(converted, {"x": x})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=2e-3)


def _attention_graph(scale_op: str = "Mul") -> onnx.ModelProto:
    """x [1, 6, 8] → LayerNorm → Q, K, V projections → MatMul(Q, Kᵀ) → scale → Softmax → MatMul V → y."""
    rng = np.random.default_rng(2)
    w = {n: rng.normal(0, 0.7, size=(8, 8)).astype(np.float32) for n in ("wq", "wk", "wv")}
    scale = np.array(8**0.5 if scale_op == "Div" else 8**-0.5, np.float32)
    scale_inputs = ["scale", "scores"] if scale_op == "scale*Mul" else ["scores", "scale"]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], epsilon=1e-6),
        helper.make_node("MatMul", ["ln", "wq"], ["q"]),
        helper.make_node("MatMul", ["ln", "wk"], ["k"]),
        helper.make_node("MatMul", ["ln", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node(scale_op.split("*")[-1], scale_inputs, ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"]),
        helper.make_node("LayerNormalization", ["ctx", "g", "b"], ["y"], epsilon=1e-6),
    ]
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("x", FP32, [1, 6, 8])],
        [helper.make_tensor_value_info("y", FP32, [1, 6, 8])],
        [numpy_helper.from_array(np.ones(8, np.float32), "g"), numpy_helper.from_array(np.zeros(8, np.float32), "b"),
         numpy_helper.from_array(scale, "scale"), *(numpy_helper.from_array(a, n) for n, a in w.items())],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _attention_chains(model: onnx.ModelProto) -> list[list[onnx.NodeProto]]:
    """For every Softmax: the nodes from the MatMul that makes its scores to the MatMul that reads
    its probabilities, walking back and forth through anything in between (Casts included)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    chains = []
    for sm in (n for n in model.graph.node if n.op_type == "Softmax"):
        back = [producer[sm.input[0]]]
        while back[0].op_type != "MatMul":
            back.insert(0, next(producer[i] for i in back[0].input if i in producer))
        fwd = [consumers[sm.output[0]][0]]
        while fwd[-1].op_type != "MatMul":
            fwd.append(consumers[fwd[-1].output[0]][0])
        chains.append([*back, sm, *fwd])
    return chains


def _assert_unbroken_fp16_attention(model: onnx.ModelProto, expected_blocks: int) -> None:
    types = _types(model)
    chains = _attention_chains(model)
    assert len(chains) == expected_blocks
    for chain in chains:
        ops = [n.op_type for n in chain]
        # MatMul → (Mul/Div)* → Softmax → MatMul: nothing else, no Cast in between
        assert ops[0] == "MatMul" and ops[-1] == "MatMul" and ops[-2] == "Softmax", ops
        assert set(ops[1:-2]) <= {"Mul", "Div"}, ops
        for node in chain:
            floats = {types[n] for n in list(node.input) + list(node.output) if n and types.get(n) in (FP32, FP16)}
            assert floats == {FP16}, (node.op_type, node.name, floats)


def test_attention_block_stays_one_fp16_pattern_on_a_hand_built_graph() -> None:
    for scale_op in ("Mul", "Div", "scale*Mul"):
        model = _attention_graph(scale_op)
        converted, report = convert_to_fp16(model)
        onnx.checker.check_model(converted, full_check=True)
        assert report.attention_blocks == 1
        _assert_unbroken_fp16_attention(converted, 1)
        types = _types(converted)
        for ln in (n for n in converted.graph.node if n.op_type == "LayerNormalization"):
            assert {types[n] for n in list(ln.input) + list(ln.output)} == {FP32}
        # casts only at the island boundaries: LN → fp16 (once, shared by Q/K/V), ctx → fp32 for the last LN
        assert report.casts_inserted == 2
        assert check_fp16_structure(converted)["attention_blocks"] == 1
        x = np.random.default_rng(4).normal(size=(1, 6, 8)).astype(np.float32)
        (ref,) = _run(model, {"x": x})
        (y,) = _run(converted, {"x": x})
        assert y.dtype == np.float32 and float(np.abs(y - ref).max()) < 2e-2


def test_a_softmax_that_is_not_attention_stays_fp32() -> None:
    """Scores read by something else besides ·V (here also a graph output) are not an attention block."""
    model = _attention_graph()
    model.graph.output.append(helper.make_tensor_value_info("probs", FP32, [1, 6, 6]))
    converted, report = convert_to_fp16(model)
    assert report.attention_blocks == 0
    sm = next(n for n in converted.graph.node if n.op_type == "Softmax")
    types = _types(converted)
    assert {types[n] for n in list(sm.input) + list(sm.output)} == {FP32}


def test_structure_check_catches_an_attention_block_broken_by_casts() -> None:
    """The old layout (FP32 Softmax between two Casts) is type-correct but cannot be fused by TensorRT."""
    converted, _ = convert_to_fp16(_attention_graph())
    g = converted.graph
    i = next(i for i, n in enumerate(g.node) if n.op_type == "Softmax")
    sm = g.node[i]
    scores, probs = sm.input[0], sm.output[0]
    sm.input[0], sm.output[0] = f"{scores}__fp32", f"{probs}__fp32"
    g.node.insert(i, helper.make_node("Cast", [scores], [sm.input[0]], to=FP32))
    g.node.insert(i + 2, helper.make_node("Cast", [sm.output[0]], [probs], to=FP16))
    del g.value_info[:]
    onnx.checker.check_model(converted, full_check=True)
    with pytest.raises(ExportError, match="broken up by 2 Cast"):
        check_fp16_structure(converted)


def test_constants_are_clamped_with_a_count() -> None:
    const = np.array([1e5, -1e5, 1.5, 1e-9], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])], "clamp",
        [helper.make_tensor_value_info("x", FP32, [4])], [helper.make_tensor_value_info("y", FP32, [4])],
        [numpy_helper.from_array(const, "c")],
    )
    converted, report = convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert report.values_clamped == 2 and report.values_flushed == 1
    (y,) = _run(converted, {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(y, [65504.0, -65504.0, 1.5, 0.0])


def test_structure_check_catches_an_fp16_layernorm() -> None:
    """A graph that runs LayerNorm in FP16 (casts and all) is type-correct but breaks the layout."""
    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["x"], ["x16"], to=FP16), helper.make_node("LayerNormalization", ["x16", "g", "b"], ["y16"]),
         helper.make_node("Cast", ["y16"], ["y"], to=FP32)], "bad",
        [helper.make_tensor_value_info("x", FP32, [2, 4])], [helper.make_tensor_value_info("y", FP32, [2, 4])],
        [numpy_helper.from_array(np.ones(4, np.float16), "g"), numpy_helper.from_array(np.zeros(4, np.float16), "b")],
    ), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(bad, full_check=True)
    with pytest.raises(ExportError, match="LayerNormalization .*is not FP32"):
        check_fp16_structure(bad)


# -- the detector -----------------------------------------------------------------------------
def _large_init_model() -> torch.nn.Module:
    """A random-weight model with larger-scale init (std 0.1 instead of 0.02, head std 0.5): logits of order 1–5."""
    torch.manual_seed(3)
    model = create_detector("vit_tiny").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.5 if name.startswith("head") else 0.1)
            elif "bias" in name:
                p.normal_(0, 0.05)
    return model


@pytest.fixture(scope="module", params=["parity_checkpoint", "large_init"])
def fp16_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path):
    if request.param == "parity_checkpoint":
        model = load_detector(fixtures_dir / "seed-parity-tiny" / "checkpoint.pth")
    else:
        model = _large_init_model()
    out = tmp_path_factory.mktemp(request.param)
    fp32 = export_onnx(model, out / "m32.onnx", input_hw=HW, max_persons=8)
    fp16 = export_onnx(model, out / "m16.onnx", input_hw=HW, max_persons=8, precision="fp16")
    return model, fp32, fp16


def test_fp16_graph_keeps_fp32_islands(fp16_export) -> None:
    _, _, fp16 = fp16_export
    model = onnx.load(str(fp16.path))
    onnx.checker.check_model(model, full_check=True)
    types = _types(model)
    g = model.graph
    assert [types[i.name] for i in g.input] == [FP32, FP32] and [types[o.name] for o in g.output] == [FP32]
    seen = set()
    for node in g.node:
        floats = [types[n] for n in list(node.input) + list(node.output) if n and types.get(n) in (FP32, FP16)]
        if node.op_type == "Softmax":  # every Softmax of the ViT is attention: FP16 (see the next test)
            assert set(floats) == {FP16}, node.name
        if node.op_type in KEEP_FP32:
            seen.add(node.op_type)
            assert set(floats) == {FP32}, node.name
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            assert set(floats) == {FP16}, node.name
        if node.op_type != "Cast":  # every boundary goes through a Cast: no node mixes types
            assert len({types[n] for n in node.input if n and types.get(n) in (FP32, FP16)}) <= 1, node.name
    assert seen == KEEP_FP32
    roi = next(n for n in g.node if n.op_type == "RoiAlign")
    assert types[roi.input[2]] == TensorProto.INT64
    casts = [helper.get_attribute_value(a) for n in g.node if n.op_type == "Cast" for a in n.attribute]
    assert casts.count(FP16) >= 1 and casts.count(FP32) >= 1


def test_fp16_attention_blocks_are_unbroken_for_tensorrt(fp16_export) -> None:
    """Every attention block of the exported FP16 graph is MatMul → (Mul/Div)* → Softmax → MatMul, all
    FP16, no Cast in between — the pattern TensorRT fuses into one attention kernel."""
    model, _, fp16 = fp16_export
    graph = onnx.load(str(fp16.path))
    _assert_unbroken_fp16_attention(graph, model.cfg.depth)
    m = json.loads(fp16.manifest_path.read_text())
    assert m["fp16"]["pass"]["attention_blocks"] == m["fp16"]["structure"]["attention_blocks"] == model.cfg.depth


def test_fp16_scores_close_to_fp32(fp16_export) -> None:
    """Scores (sigmoid of logits) of the FP16 graph in onnxruntime vs the FP32 graph, on clips from
    uint8 frames normalised as the seed does, 7 random boxes each, 3 clips: max |Δ score| ≤ 1e-2."""
    _, fp32, fp16 = fp16_export
    s32 = ort.InferenceSession(str(fp32.path), providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(str(fp16.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    worst, spread = 0.0, 0.0
    for _ in range(3):
        frames = rng.integers(0, 256, size=(1, 3, 16, *HW)).astype(np.float32)
        clip = ((frames - np.array([122.7717, 115.9465, 102.9801], np.float32).reshape(1, 3, 1, 1, 1)) / 57.375).astype(np.float32)
        x1 = rng.uniform(0, HW[1] - 40, 7)
        y1 = rng.uniform(0, HW[0] - 40, 7)
        rois = np.stack([np.zeros(7), x1, y1, x1 + rng.uniform(20, 40, 7), y1 + rng.uniform(20, 40, 7)], 1).astype(np.float32)
        a = s32.run(None, {"clip": clip, "rois": rois})[0]
        b = s16.run(None, {"clip": clip, "rois": rois})[0]
        sig = lambda v: 1 / (1 + np.exp(-v.astype(np.float64)))  # noqa: E731
        worst = max(worst, float(np.abs(sig(a) - sig(b)).max()))
        spread = max(spread, float(a.std()))
    assert spread > 0.1  # realistic logits, not all ≈ 0
    assert worst <= 1e-2


def test_fp16_manifest_reports_error(fp16_export) -> None:
    _, _, fp16 = fp16_export
    m = json.loads(fp16.manifest_path.read_text())
    assert m["precision"] == "fp16" and m["tolerances"] == {"scores_max_abs": 1e-2, "top5_min": 0.95, "scores_mean_abs": 5e-3}
    err = m["fp16"]["error_vs_torch_fp32"]
    assert 0 < err["max_abs_score"] <= 1e-2 and 0.8 <= err["top5_agreement"] <= 1.0
    assert m["fp16"]["structure"]["fp32:RoiAlign"] == 1
