"""INT8 export: the QDQ graph, calibration one clip at a time, the task gates, the manifest, engines and CLI.

Real onnxruntime and OpenVINO; vit_micro with a head of realistic logit scale (std ≈ 3, like
``benchmarks/gpu_check.py::realistic_head``); a tiny synthetic AVA-format dataset (2 videos of 6 s:
3 train keyframes for calibration, 3 val keyframes held back for the gates).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from vmaedet.artifacts import manifest_path, read_manifest, write_manifest
from vmaedet.cli.main import main
from vmaedet.data.synthetic import generate
from vmaedet.errors import ConfigError, DataError, EngineError, ExportError
from vmaedet.export.int8 import (LAYER_GROUPS, Int8Options, calibrate, check_qdq_structure, layer_group, plan_clips,
                                 quantize_qdq, select_targets)
from vmaedet.export.onnx import export_onnx
from vmaedet.export.parity import EXPORT_GATES, random_clip, random_rois, within
from vmaedet.models import create_detector
from vmaedet.models.checkpoints import save_detector

HW = (96, 128)
MAX_PERSONS = 4
HEAD = "/head/Gemm"
FC1 = "/blocks.1/mlp/fc1/MatMul"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, videos=2, seconds=6, seed=3)
    return root


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """vit_micro whose head gives logits of std ≈ 3 with a N(0, 1) bias (realistic scale, not ≈ 0)."""
    torch.manual_seed(0)
    det = create_detector("vit_micro").eval()
    g = torch.Generator().manual_seed(1)
    clip, rois = random_clip(HW, g), random_rois(6, HW, g)
    with torch.no_grad():
        d = det.head.in_features
        det.head.weight.copy_(torch.randn(det.head.weight.shape, generator=g) / math.sqrt(d))
        det.head.bias.zero_()
        std = float(det(clip, rois).std())
        det.head.weight.mul_(3.0 / std)
        det.head.bias.copy_(torch.randn(det.head.bias.shape, generator=g))
    return det


@pytest.fixture(scope="module")
def fp32_graph(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    path = export_onnx(model, tmp_path_factory.mktemp("fp32") / "m.onnx", input_hw=HW, max_persons=MAX_PERSONS).path
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def int8_export(model: torch.nn.Module, data: Path, tmp_path_factory: pytest.TempPathFactory):
    return export_onnx(model, tmp_path_factory.mktemp("int8") / "m.onnx", input_hw=HW, max_persons=MAX_PERSONS,
                       precision="int8", calib=data)


def _producers(graph: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.graph.node for o in n.output}


def _quantized_inputs(graph: onnx.ModelProto, node: onnx.NodeProto) -> list[bool]:
    """For each input of ``node``: does it come from a DequantizeLinear?"""
    prod = _producers(graph)
    return [name in prod and prod[name].op_type == "DequantizeLinear" for name in node.input]


# -- the graph ---------------------------------------------------------------------------------------
def test_qdq_graph_structure_by_default(int8_export) -> None:
    graph = onnx.load(str(int8_export.path))
    onnx.checker.check_model(graph, full_check=True)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    prod = _producers(graph)
    nodes = {n.name: n for n in graph.graph.node}
    quant = read_manifest(int8_export.path).quantization
    assert quant is not None and len(quant.quantized) == 6  # 2 blocks × (qkv, proj, fc1); fc2 in float by default
    assert quant.extra["options"]["float_groups"] == ["fc2"]
    assert quant.extra["layer_groups"] == {"qkv": {"int8": 2, "float": 0}, "proj": {"int8": 2, "float": 0},
                                           "fc1": {"int8": 2, "float": 0}, "fc2": {"int8": 0, "float": 2}}
    for name in quant.quantized:
        node = nodes[name]
        assert node.op_type == "MatMul" and _quantized_inputs(graph, node) == [True, True]
        act_dq, w_dq = prod[node.input[0]], prod[node.input[1]]
        assert prod[act_dq.input[0]].op_type == "QuantizeLinear"  # Q → DQ on the activation
        assert inits[act_dq.input[1]].shape == () and inits[act_dq.input[2]].dtype == np.int8
        assert inits[act_dq.input[2]] == 0  # symmetric: zero point 0
        w = inits[w_dq.input[0]]
        axis = {a.name: a.i for a in w_dq.attribute}["axis"]
        assert w.dtype == np.int8 and axis == 1 and inits[w_dq.input[1]].shape == (w.shape[1],)  # per output channel
        assert np.all(inits[w_dq.input[2]] == 0) and np.abs(w).max() == 127
    # left in float: attention products, the head, the patch-embedding Conv
    for name in ("/blocks.0/attn/MatMul_1", "/blocks.0/attn/MatMul_2", "/blocks.1/attn/MatMul_1", HEAD,
                 "/blocks.0/mlp/fc2/MatMul", "/blocks.1/mlp/fc2/MatMul"):
        assert not any(_quantized_inputs(graph, nodes[name])) and name in quant.excluded
    conv = next(n for n in graph.graph.node if n.op_type == "Conv")
    assert not any(_quantized_inputs(graph, conv))
    assert check_qdq_structure(graph) == {"QuantizeLinear": 6, "DequantizeLinear": 12, "per_channel_weights": 6}


def test_residual_consumers_keep_the_float_tensor(int8_export) -> None:
    """Only the quantized MatMul reads the dequantized tensor; others (e.g. a residual Add) read the float one."""
    graph = onnx.load(str(int8_export.path))
    q_inputs = {n.input[0] for n in graph.graph.node if n.op_type == "QuantizeLinear"}
    readers = [n for n in graph.graph.node if n.op_type != "QuantizeLinear" and set(n.input) & q_inputs]
    assert readers == []  # a float tensor that is quantized feeds its QuantizeLinear only here (LayerNorm outputs…)
    dq_out = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    assert {n.op_type for n in graph.graph.node if set(n.input) & dq_out} == {"MatMul"}


def test_attention_and_head_are_quantized_when_asked(fp32_graph, model, data: Path) -> None:
    options = Int8Options(include_attention=True, include_head=True)
    selection = select_targets(fp32_graph, options)
    kinds = {t.node: t.kind for t in selection.targets}
    assert kinds["/blocks.0/attn/MatMul_1"] == kinds["/blocks.1/attn/MatMul_2"] == "attention"
    assert kinds[HEAD] == "head" and "/patch_embed/proj/Conv" in selection.excluded
    calib, _ = plan_clips(data, calib_clips=2, gate_clips=1, input_hw=HW, short_side=256, max_persons=MAX_PERSONS)
    cal = calibrate(fp32_graph, selection.activation_tensors(), calib)
    graph = quantize_qdq(fp32_graph, selection, cal.ranges, options)
    nodes = {n.name: n for n in graph.graph.node}
    assert _quantized_inputs(graph, nodes["/blocks.0/attn/MatMul_1"]) == [True, True]  # both activations
    head = nodes[HEAD]
    assert _quantized_inputs(graph, head)[:2] == [True, True]
    w_dq = _producers(graph)[head.input[1]]
    assert {a.name: a.i for a in w_dq.attribute}["axis"] == 0  # Gemm transB=1: [out, in]
    onnx.checker.check_model(graph, full_check=True)
    from vmaedet.engines.onnxruntime_engine import create_session

    session = create_session(graph.SerializeToString(), device="cpu")
    g = torch.Generator().manual_seed(5)
    out = session.run(["logits"], {"clip": random_clip(HW, g).numpy(), "rois": random_rois(3, HW, g).numpy()})[0]
    assert out.shape == (3, 80) and np.isfinite(out).all()


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="calibration method"):
        Int8Options(method="minmax").check()


def test_layer_groups_of_the_exported_names(fp32_graph) -> None:
    assert layer_group("/blocks.11/mlp/fc2/MatMul") == "fc2" and layer_group("/blocks.0/attn/proj/MatMul") == "proj"
    assert layer_group("/blocks.0/attn/MatMul") == "qkv"  # F.linear with the q/v biases: the attention's own scope
    assert layer_group(HEAD) is None and layer_group("fc1") is None and layer_group("/head/MatMul") is None
    linear = [t.node for t in select_targets(fp32_graph, Int8Options(float_groups=())).targets]
    assert sorted(layer_group(n) for n in linear) == sorted(LAYER_GROUPS * 2)  # 2 blocks × the 4 groups


@pytest.mark.parametrize("groups", [("fc2",), ("qkv", "fc1")])
def test_a_float_group_carries_no_qdq(fp32_graph, data: Path, groups: tuple[str, ...]) -> None:
    """A group kept in float: its MatMuls read float tensors (no DequantizeLinear on either input), the
    reason is recorded, and every other block linear is still int8."""
    options = Int8Options(float_groups=groups)
    options.check()
    selection = select_targets(fp32_graph, options)
    calib, _ = plan_clips(data, calib_clips=2, gate_clips=1, input_hw=HW, short_side=256, max_persons=MAX_PERSONS)
    cal = calibrate(fp32_graph, selection.activation_tensors(), calib)
    graph = quantize_qdq(fp32_graph, selection, cal.ranges, options)
    onnx.checker.check_model(graph, full_check=True)
    inits = {i.name for i in fp32_graph.graph.initializer}
    linears = [n for n in fp32_graph.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert len(linears) == 8 and all(layer_group(n.name) is not None for n in linears)
    nodes = {n.name: n for n in graph.graph.node}
    linears = [nodes[n.name] for n in linears]
    for node in linears:
        quantized = _quantized_inputs(graph, node)
        if layer_group(node.name) in groups:
            assert quantized == [False, False], node.name
            assert selection.excluded[node.name] == f"linear-layer group {layer_group(node.name)} kept in float"
        else:
            assert quantized == [True, True], node.name
    assert check_qdq_structure(graph)["per_channel_weights"] == 8 - 2 * len(groups)


def test_an_unknown_float_group_is_refused() -> None:
    with pytest.raises(ConfigError, match="linear-layer group"):
        Int8Options(float_groups=("mlp",)).check()
    with pytest.raises(ConfigError, match="linear-layer group"):
        Int8Options(float_groups="fc2").check()  # type: ignore[arg-type] - a string, not a tuple of names


# -- calibration -------------------------------------------------------------------------------------
def test_calibration_keeps_one_scalar_per_tensor_and_finds_the_abs_max(fp32_graph, data: Path) -> None:
    selection = select_targets(fp32_graph)
    tensors = selection.activation_tensors()
    calib, _ = plan_clips(data, calib_clips=3, gate_clips=1, input_hw=HW, short_side=256, max_persons=MAX_PERSONS)
    cal = calibrate(fp32_graph, tensors, calib)
    assert cal.clips == 3 and cal.kept_bytes_per_clip == 4 * len(tensors)  # scalars, never the activations
    assert cal.peak_rss_mib > 0
    # the reference: every tensor fetched in full, one clip at a time
    from vmaedet.engines.onnxruntime_engine import create_session

    full = onnx.ModelProto()
    full.CopyFrom(fp32_graph)
    for t in tensors:
        full.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    session = create_session(full.SerializeToString(), device="cpu")
    want = dict.fromkeys(tensors, 0.0)
    one_clip = 0
    for clip, rois in calib:
        values = session.run(tensors, {"clip": clip, "rois": rois})
        one_clip = max(one_clip, sum(v.nbytes for v in values))
        for t, v in zip(tensors, values):
            want[t] = max(want[t], float(np.abs(v).max()))
    assert cal.ranges == pytest.approx(want, rel=1e-6)
    pct = calibrate(fp32_graph, tensors, calib, method="percentile", percentile=99.0, bins=256)
    assert pct.kept_bytes_per_clip == one_clip  # one clip's selected tensors at a time
    assert all(0 < pct.ranges[t] <= cal.ranges[t] for t in tensors)
    assert any(pct.ranges[t] < 0.9 * cal.ranges[t] for t in tensors)  # the 99th percentile cuts the tail


def test_calibration_and_held_back_clips_are_disjoint(data: Path) -> None:
    calib, held = plan_clips(data, calib_clips=32, gate_clips=16, input_hw=HW, short_side=256, max_persons=MAX_PERSONS)
    assert (calib.split, held.split) == ("train", "val") and len(calib) == 3 and len(held) == 3
    clip, rois = next(iter(calib))
    assert clip.shape == (1, 3, 16, *HW) and clip.dtype == np.float32 and rois.shape[1] == 5
    assert 1 <= rois.shape[0] <= MAX_PERSONS and rois[:, 3].max() <= HW[1] and rois[:, 4].max() <= HW[0]


def test_one_split_is_divided(data: Path, tmp_path: Path) -> None:
    import shutil

    one = tmp_path / "one"
    shutil.copytree(data, one)
    (one / "annotations" / "train.csv").unlink()
    calib, held = plan_clips(one, calib_clips=2, gate_clips=5, input_hw=HW, short_side=256, max_persons=MAX_PERSONS)
    assert calib.split == held.split == "val" and not set(calib.keys) & set(held.keys)
    assert len(calib) == 2 and len(held) == 1


# -- gates ---------------------------------------------------------------------------------------------
def test_gates_pass_for_a_sane_model(int8_export) -> None:
    m = read_manifest(int8_export.path)
    assert m.precision == "int8" and dict(m.tolerances) == EXPORT_GATES["int8"]
    gates = m.quantization.gates
    assert gates["passed"] and gates["clips"] == 3 and gates["persons"] >= 3
    assert gates["top5_agreement"] >= 0.95 and gates["mean_abs_score"] <= 5e-3
    assert 0 < gates["max_abs_logit"]  # int8 is not bit-exact: the comparison is real
    assert {"map_fp32", "map_int8", "map_delta"} <= set(gates) and abs(gates["map_delta"]) <= 0.01
    assert 0 < gates["map_fp32"] <= 1
    assert m.verification is not None and m.verification.mean_abs_score == pytest.approx(gates["mean_abs_score"])


@pytest.mark.parametrize("options", [
    Int8Options(range_scale={FC1: 1e-3}),  # one linear layer's input range 1000× too small (the default export passes)
    Int8Options(include_head=True, range_scale={HEAD: 1e-3}),  # the head quantized with a forced tiny range
], ids=["fc1-tiny-range", "head-tiny-range"])
def test_a_broken_quantization_is_refused_with_the_figures(model, data: Path, tmp_path: Path,
                                                           options: Int8Options) -> None:
    out = tmp_path / "broken.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(model, out, input_hw=HW, max_persons=MAX_PERSONS, precision="int8", calib=data, int8=options)
    text = str(info.value)
    assert "accuracy gates" in text and "top-5 agreement" in text and "mean |Δ score|" in text
    assert "max |Δ score|" in text and "frame-mAP" in text and "nothing was written" in text
    assert not out.exists() and not manifest_path(out).exists() and not list(tmp_path.iterdir())


def test_lower_precision_exports_carry_the_task_gates() -> None:
    for precision in ("fp16", "int8"):
        assert EXPORT_GATES[precision]["top5_min"] == 0.95 and EXPORT_GATES[precision]["scores_mean_abs"] == 5e-3
    assert EXPORT_GATES["fp16"]["scores_max_abs"] == 1e-2  # the historical bound stays
    assert EXPORT_GATES["int8"]["map_abs"] == 0.01 and EXPORT_GATES["fp32"] == {"logits_max_abs": 1e-4}


def test_within_checks_the_task_gates() -> None:
    stats = {"max_abs_logit": 1.0, "mean_abs_logit": 0.1, "max_abs_score": 0.2, "top5_agreement": 0.9,
             "mean_abs_score": 6e-3}
    bad = within(stats, EXPORT_GATES["int8"])
    assert len(bad) == 2 and "top-5" in bad[0] and "mean |Δ score|" in bad[1]  # no mAP measured: not checked
    assert len(within({**stats, "map_delta": -0.02}, EXPORT_GATES["int8"])) == 3
    assert within({**stats, "top5_agreement": 1.0, "mean_abs_score": 1e-3, "map_delta": 0.005}, EXPORT_GATES["int8"]) == []
    assert len(within({k: v for k, v in stats.items() if k != "mean_abs_score"}, {"scores_mean_abs": 1.0})) == 1


# -- manifest ------------------------------------------------------------------------------------------
def test_the_quantization_section_round_trips(int8_export, tmp_path: Path) -> None:
    raw = json.loads(manifest_path(int8_export.path).read_text())
    m = read_manifest(int8_export.path)
    q = m.quantization
    assert m.to_dict() == raw and q is not None
    assert q.scheme == "QDQ" and q.library == "vmaedet" and "per output channel" in q.weights
    assert "per tensor" in q.activations and "zero point 0" in q.activations and q.quantized_op_types == ("MatMul",)
    assert q.calibration["clips"] == 3 and q.calibration["method"] == "absmax"
    assert q.calibration["data_root"] and q.calibration["split"] == "train"
    assert q.extra["versions"]["onnx"] == onnx.__version__
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(int8_export.path.read_bytes())
    write_manifest(copy, m)
    assert json.loads(manifest_path(copy).read_text()) == raw
    bad = {**raw, "quantization": {"scheme": "QDQ"}}
    with pytest.raises(EngineError, match="quantization"):
        type(m).from_dict(bad)


def test_an_fp32_manifest_has_no_quantization_section(fp32_graph, model, tmp_path: Path) -> None:
    result = export_onnx(model, tmp_path / "f.onnx", input_hw=HW, max_persons=2)
    assert result.manifest.quantization is None and "quantization" not in json.loads(result.manifest_path.read_text())


# -- engines -------------------------------------------------------------------------------------------
def test_engines_run_the_int8_artifact(int8_export, model) -> None:
    from vmaedet.engines import open_engine

    g = torch.Generator().manual_seed(9)
    clip, rois = random_clip(HW, g), random_rois(3, HW, g)
    with torch.no_grad():
        ref = model(clip, rois)
    with open_engine(int8_export.path) as ort_eng:
        assert (ort_eng.name, ort_eng.precision) == ("onnxruntime", "int8")
        a = ort_eng.infer(clip, rois)
    with open_engine(int8_export.path, "openvino", threads=1) as ov:
        assert (ov.name, ov.precision) == ("openvino", "int8")
        b = ov.infer(clip, rois)
    for out in (a, b):
        assert out.shape == (3, 80) and 0 < float((out - ref).abs().max()) < 1.0
    with pytest.raises(EngineError, match="another precision"):
        open_engine(int8_export.path, "openvino", precision="fp32")


def test_the_ladder_holds_int8_to_its_gates(int8_export, model) -> None:
    from vmaedet.tools.verify import run_ladder

    rungs = run_ladder(model, [int8_export.path], artifact_engines=[("openvino", "fp32")], ks=(1, 4))
    by_name = {r.engine: r for r in rungs}
    assert by_name["onnxruntime #1"].precision == by_name["openvino #1"].precision == "int8"
    assert by_name["openvino #1"].tolerances == EXPORT_GATES["int8"]
    assert "mean_abs_score" in by_name["openvino #1"].stats


# -- CLI ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_detector(model, tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def test_cli_export_int8(ckpt: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", str(ckpt), "--precision", "int8", "--calib", str(data), "--calib-clips", "2",
               "--input-size", "96x128", "--max-persons", "4", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0, text
    art = tmp_path / "micro_96x128_int8.onnx"
    m = read_manifest(art)
    assert m.precision == "int8" and m.quantization.calibration["clips"] == 2
    assert "6 layers quantized" in text and "top-5 agreement" in text


@pytest.mark.parametrize("args, needle", [
    (["--precision", "int8"], "needs calibration data"),
    (["--precision", "int8", "--calib", "{empty}"], "not an AVA-format dataset"),
    (["--precision", "int8", "--calib", "{data}", "--calib-clips", "0"], "--calib-clips"),
    (["--calib", "{data}"], "only used with --precision int8"),
])
def test_cli_export_int8_bad_input(ckpt: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   args: list[str], needle: str) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", data=data) for a in args]
    rc = main(["export", str(ckpt), "--input-size", "96x128", "--out", str(tmp_path / "out"), *args])
    captured = capsys.readouterr()
    assert rc == 2 and needle in captured.out + captured.err
    assert not list((tmp_path / "out").glob("*.onnx")) if (tmp_path / "out").exists() else True


def test_library_bad_input(model, data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibration data"):
        export_onnx(model, tmp_path / "a.onnx", input_hw=HW, precision="int8")
    with pytest.raises(DataError, match="AVA-format"):
        export_onnx(model, tmp_path / "a.onnx", input_hw=HW, precision="int8", calib=tmp_path)
    with pytest.raises(ConfigError, match="calib_clips"):
        export_onnx(model, tmp_path / "a.onnx", input_hw=HW, precision="int8", calib=data, calib_clips=0)
    assert not list(tmp_path.glob("*.onnx"))


def test_qdq_structure_refuses_an_asymmetric_zero_point(int8_export) -> None:
    graph = onnx.load(str(int8_export.path))
    zp = next(i for i in graph.graph.initializer if i.name.endswith("_zero_point") and not i.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(ExportError, match="symmetric int8"):
        check_qdq_structure(graph)


def test_onnxruntime_runs_the_linear_layers_in_int8(int8_export, tmp_path: Path) -> None:
    """With the engine's session settings the 6 int8 layers become MatMulIntegerToFloat; onnxruntime's
    MatMulAddFusion left on turns them into float Gemms (why the engine disables it for int8)."""
    from collections import Counter

    import onnxruntime as ort

    from vmaedet.engines.onnxruntime_engine import session_kwargs

    def fused_ops(**kwargs: object) -> Counter:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(int8_export.path), opts, providers=["CPUExecutionProvider"], **kwargs)
        return Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)

    assert fused_ops(**session_kwargs("int8"))["MatMulIntegerToFloat"] == 6
    assert fused_ops()["MatMulIntegerToFloat"] == 0
    assert session_kwargs("fp32") == {} and session_kwargs("fp16") == {}


# -- the CLI's float groups and the gate's advice -------------------------------------------------------
def test_float_groups_flag_maps_to_the_options_and_refuses_unknown_groups() -> None:
    from vmaedet.cli.export import CalibMethod, int8_options
    from vmaedet.errors import ConfigError

    assert int8_options(CalibMethod.absmax, False, "fc2").float_groups == ("fc2",)
    assert int8_options(CalibMethod.absmax, False, "qkv, FC1").float_groups == ("qkv", "fc1")
    assert int8_options(CalibMethod.absmax, False, "none").float_groups == ()
    for bad in ("fc3", "", "fc2,mlp"):
        with pytest.raises(ConfigError, match="unknown linear-layer group") as err:
            int8_options(CalibMethod.absmax, False, bad)
        assert "none" in str(err.value)


def test_a_map_only_gate_miss_advises_more_held_back_clips() -> None:
    from vmaedet.export.onnx import _gate_fix

    figures = {"clips": 16}
    assert "--gate-clips" in _gate_fix(["|Δ frame-mAP@0.5| 0.0120 > 0.0100"], figures) and "16" in _gate_fix(
        ["|Δ frame-mAP@0.5| 0.0120 > 0.0100"], figures)
    mixed = _gate_fix(["mean |Δ score| 6e-3 > 5e-3", "|Δ frame-mAP@0.5| 0.02 > 0.01"], figures)
    assert "--gate-clips" not in mixed and "float" in mixed
