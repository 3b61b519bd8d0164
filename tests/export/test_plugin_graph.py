"""Graph surgery: RoiAlign → ReduceMax becomes one vmaedet::RoIAlignMax node, numerically the same.

The plugin-flavoured graph is executed on the CPU with onnxruntime, the plugin node served by the
float64 reference registered as an onnxruntime-extensions Python op (domain renamed to
``ai.onnx.contrib`` for the check), and compared with the standard graph (RoiAlign + ReduceMax).
The plugin reads channels-last features ``[B, h, w, C]``, so the Python op does too.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from vmaedet.errors import ExportError
from vmaedet.constants import PLUGIN_NAMESPACE, PLUGIN_VERSION, ROI_ALIGN_MAX_OP
from vmaedet.export.surgery import find_roi_align_max, rewrite_file, to_builtin_graph, to_plugin_graph
from vmaedet.ops.roi_align import roi_align_max_reference

ort = pytest.importorskip("onnxruntime")
ortx = pytest.importorskip("onnxruntime_extensions")

CONTRIB = "ai.onnx.contrib"


def _register_reference_op() -> None:
    """Serve RoIAlignMax with the float64 reference (Python op of onnxruntime-extensions)."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    @onnx_op(op_type=ROI_ALIGN_MAX_OP, inputs=[PyCustomOpDef.dt_float, PyCustomOpDef.dt_float],
             outputs=[PyCustomOpDef.dt_float],
             attrs={"spatial_scale": PyCustomOpDef.dt_float, "pooled_size": PyCustomOpDef.dt_int64,
                    "sampling_ratio": PyCustomOpDef.dt_int64, "aligned": PyCustomOpDef.dt_int64})
    def roi_align_max_op(features: np.ndarray, rois: np.ndarray, **attrs: object) -> np.ndarray:
        assert features.ndim == 4
        nchw = torch.from_numpy(np.ascontiguousarray(features.transpose(0, 3, 1, 2)))  # [B, h, w, C] -> [B, C, h, w]
        out = roi_align_max_reference(
            nchw, torch.from_numpy(rois), spatial_scale=float(attrs["spatial_scale"]),
            pooled_size=int(attrs["pooled_size"]), sampling_ratio=int(attrs["sampling_ratio"]),
            aligned=bool(attrs["aligned"]),
        )  # [K, C] float64
        return out.numpy().astype(np.float32)


_register_reference_op()


def _session(model: onnx.ModelProto, contrib: bool = False) -> "ort.InferenceSession":
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if contrib:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for node in model.graph.node:
            if node.domain == PLUGIN_NAMESPACE:
                node.domain = CONTRIB
        model.opset_import.append(helper.make_opsetid(CONTRIB, 1))
        opts.register_custom_ops_library(ortx.get_library_path())
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


# -- the exported detector ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    model.freeze_pos_embed(4, 5)
    clip = torch.randn(1, 3, 16, 64, 80)  # [1, 3, 16, H, W]
    rois = torch.tensor([[0, 3.0, 5.0, 60.0, 50.0]])  # [K, 5]
    path = tmp_path_factory.mktemp("onnx") / "micro.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks
        torch.onnx.export(model, (clip, rois), str(path), dynamo=False, opset_version=17,
                          input_names=["clip", "rois"], output_names=["logits"],
                          dynamic_axes={"rois": {0: "K"}, "logits": {0: "K"}})
    return path


def test_surgery_replaces_head_with_one_plugin_node(detector_onnx: Path) -> None:
    model = onnx.load(str(detector_onnx))
    (match,) = find_roi_align_max(model)
    assert (match.pooled_size, match.sampling_ratio, match.aligned) == (7, 0, 0)
    assert match.spatial_scale == pytest.approx(1 / 16)
    plugin = to_plugin_graph(model, aot=True)
    ops = [n.op_type for n in plugin.graph.node]
    assert "RoiAlign" not in ops and "ReduceMax" not in ops
    (node,) = [n for n in plugin.graph.node if n.op_type == ROI_ALIGN_MAX_OP]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert node.domain == PLUGIN_NAMESPACE
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert attrs["plugin_version"] == PLUGIN_VERSION.encode()
    assert (attrs["pooled_size"], attrs["sampling_ratio"], attrs["aligned"], attrs["aot"]) == (7, 0, 0, 1)
    assert node.input[1] == "rois"  # the float32 [K, 5] graph input itself
    # channels-last features straight from the [B, T, h, w, C] tokens: time mean over axis 1, no transpose
    producers = {o: n for n in plugin.graph.node for o in n.output}
    mean = producers[node.input[0]]
    assert mean.op_type == "ReduceMean"
    assert [a.ints for a in mean.attribute if a.name == "axes"] == [[1]]
    assert producers[mean.input[0]].op_type == "Reshape"
    assert not any(n.op_type == "Transpose" and list(n.attribute[0].ints) == [0, 4, 1, 2, 3] for n in plugin.graph.node)
    assert any(o.domain == PLUGIN_NAMESPACE for o in plugin.opset_import)
    onnx.checker.check_model(plugin)
    # the split of the rois into boxes / batch indices is gone with the RoiAlign
    assert not any(n.op_type == "Gather" and "rois" in "".join(n.input) for n in plugin.graph.node)
    jit = to_plugin_graph(model, aot=False)
    (jnode,) = [n for n in jit.graph.node if n.op_type == ROI_ALIGN_MAX_OP]
    assert {a.name: helper.get_attribute_value(a) for a in jnode.attribute}["aot"] == 0


def test_plugin_graph_matches_standard_graph(detector_onnx: Path) -> None:
    standard = onnx.load(str(detector_onnx))
    plugin = to_plugin_graph(standard)
    rng = np.random.default_rng(0)
    clip = rng.standard_normal((1, 3, 16, 64, 80)).astype(np.float32)
    rois = np.array([[0, 3.0, 5.0, 60.0, 50.0],  # fractional
                     [0, 0.0, 0.0, 79.0, 63.0],  # whole image
                     [0, -20.0, 40.0, 120.0, 90.0],  # beyond the map
                     [0, 30.0, 30.0, 31.0, 31.5]], dtype=np.float32)  # tiny
    feeds = {"clip": clip, "rois": rois}
    ref = _session(standard).run(None, feeds)[0]
    got = _session(plugin, contrib=True).run(None, feeds)[0]
    assert got.shape == ref.shape == (4, 80)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


# -- hand-built heads: other export forms ---------------------------------------------------------
def _head_graph(opset: int, keepdims: int, feat_type: int) -> onnx.ModelProto:
    """X [1, C, 6, 7] + rois [K, 5] → RoiAlign(avg, 7×7, scale 1/2) → ReduceMax(2,3) [→ Squeeze]."""
    nodes = [
        helper.make_node("Cast", ["rois"], ["rois_t"], to=feat_type),
        helper.make_node("Slice", ["rois_t", "s1", "s5", "ax1"], ["boxes"]),
        helper.make_node("Gather", ["rois_t", "i0"], ["bcol"], axis=1),
        helper.make_node("Cast", ["bcol"], ["bidx"], to=TensorProto.INT64),
        helper.make_node("RoiAlign", ["x", "boxes", "bidx"], ["pooled"], output_height=7, output_width=7,
                         sampling_ratio=0, spatial_scale=0.5, coordinate_transformation_mode="output_half_pixel"),
    ]
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n)
             for n, v in [("s1", [1]), ("s5", [5]), ("ax1", [1]), ("i0", 0), ("axes", [2, 3])]]
    if opset >= 18:
        nodes.append(helper.make_node("ReduceMax", ["pooled", "axes"], ["red"], keepdims=keepdims))
    else:
        nodes.append(helper.make_node("ReduceMax", ["pooled"], ["red"], axes=[2, 3], keepdims=keepdims))
    if keepdims:
        nodes.append(helper.make_node("Squeeze", ["red", "axes"], ["out"]))
    else:
        nodes.append(helper.make_node("Identity", ["red"], ["out"]))
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", feat_type, [1, 4, 6, 7]),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 5])],
        [helper.make_tensor_value_info("out", feat_type, ["K", 4])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset,keepdims", [(17, 0), (17, 1), (18, 0), (18, 1)])
def test_surgery_handles_reduce_forms(opset: int, keepdims: int) -> None:
    model = _head_graph(opset, keepdims, TensorProto.FLOAT)
    plugin = to_plugin_graph(model)
    assert [n.op_type for n in plugin.graph.node] == ["Transpose", ROI_ALIGN_MAX_OP, "Identity"][: 2 + (1 - keepdims)]
    x = np.arange(4 * 6 * 7, dtype=np.float32).reshape(1, 4, 6, 7) % 11
    rois = np.array([[0, 1.0, 2.0, 9.0, 10.0], [0, 5.5, 0.25, 13.0, 11.75]], dtype=np.float32)
    ref = _session(model).run(None, {"x": x, "rois": rois})[0]
    got = _session(plugin, contrib=True).run(None, {"x": x, "rois": rois})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_fp16_graph_keeps_float32_rois_for_the_plugin() -> None:
    model = _head_graph(17, 0, TensorProto.FLOAT16)
    plugin = to_plugin_graph(model)
    node = next(n for n in plugin.graph.node if n.op_type == ROI_ALIGN_MAX_OP)
    assert node.input[1] == "rois"  # the FP32 input, not its FP16 cast
    (transpose,) = [n for n in plugin.graph.node if n.op_type == "Transpose"]
    assert list(transpose.input) == ["x"] and list(transpose.output) == [node.input[0]]
    assert list(transpose.attribute[0].ints) == [0, 2, 3, 1]
    assert not any(n.op_type == "Cast" for n in plugin.graph.node)


def _token_head_graph(opset: int, form: str) -> onnx.ModelProto:
    """Features reaching RoiAlign from a channels-last tensor, as the backbone's export does.

    ``form="time_mean"``: tokens ``[1, T=3, 6, 7, C=4]`` → Transpose(0,4,1,2,3) → ReduceMean(axes 2);
    ``form="nhwc"``: ``[1, 6, 7, 4]`` → Transpose(0,3,1,2).
    """
    if form == "time_mean":
        inp = helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 3, 6, 7, 4])
        nodes = [helper.make_node("Transpose", ["t"], ["t5"], perm=[0, 4, 1, 2, 3])]
        if opset >= 18:
            nodes.append(helper.make_node("ReduceMean", ["t5", "ax2"], ["x"], keepdims=0))
        else:
            nodes.append(helper.make_node("ReduceMean", ["t5"], ["x"], axes=[2], keepdims=0))
    else:
        inp = helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 6, 7, 4])
        nodes = [helper.make_node("Transpose", ["t"], ["x"], perm=[0, 3, 1, 2])]
    nodes += [
        helper.make_node("Slice", ["rois", "s1", "s5", "ax1"], ["boxes"]),
        helper.make_node("Gather", ["rois", "i0"], ["bcol"], axis=1),
        helper.make_node("Cast", ["bcol"], ["bidx"], to=TensorProto.INT64),
        helper.make_node("RoiAlign", ["x", "boxes", "bidx"], ["pooled"], output_height=7, output_width=7,
                         sampling_ratio=0, spatial_scale=0.5, coordinate_transformation_mode="output_half_pixel"),
        helper.make_node("ReduceMax", ["pooled", "axes"], ["out"], keepdims=0) if opset >= 18
        else helper.make_node("ReduceMax", ["pooled"], ["out"], axes=[2, 3], keepdims=0),
    ]
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n)
             for n, v in [("s1", [1]), ("s5", [5]), ("ax1", [1]), ("i0", 0), ("axes", [2, 3]), ("ax2", [2])]]
    graph = helper.make_graph(nodes, "tokens", [inp, helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 5])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["K", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset,form", [(17, "time_mean"), (18, "time_mean"), (17, "nhwc")])
def test_plugin_reads_channels_last_without_a_transpose(opset: int, form: str) -> None:
    model = _token_head_graph(opset, form)
    plugin = to_plugin_graph(model)
    ops = [n.op_type for n in plugin.graph.node]
    assert "Transpose" not in ops and "RoiAlign" not in ops
    node = next(n for n in plugin.graph.node if n.op_type == ROI_ALIGN_MAX_OP)
    if form == "nhwc":
        assert node.input[0] == "t" and ops == [ROI_ALIGN_MAX_OP]
    else:
        assert ops == ["ReduceMean", ROI_ALIGN_MAX_OP]
    shape = (1, 3, 6, 7, 4) if form == "time_mean" else (1, 6, 7, 4)
    t = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * 0.37) % 5
    rois = np.array([[0, 1.0, 2.0, 9.0, 10.0], [0, 5.5, 0.25, 13.0, 11.75], [0, -4.0, -4.0, 30.0, 30.0]], dtype=np.float32)
    ref = _session(model).run(None, {"t": t, "rois": rois})[0]
    got = _session(plugin, contrib=True).run(None, {"t": t, "rois": rois})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_builtin_mode_keeps_roialign_and_makes_sampling_ratio_explicit() -> None:
    model = _head_graph(17, 0, TensorProto.FLOAT)
    roi = next(n for n in model.graph.node if n.op_type == "RoiAlign")
    for attr in [a for a in roi.attribute if a.name == "sampling_ratio"]:
        roi.attribute.remove(attr)  # ONNX default 0; TensorRT's importer would assume 1
    builtin = to_builtin_graph(model)
    roi = next(n for n in builtin.graph.node if n.op_type == "RoiAlign")
    attrs = {a.name: helper.get_attribute_value(a) for a in roi.attribute}
    assert attrs["sampling_ratio"] == 0
    assert [n.op_type for n in builtin.graph.node] == [n.op_type for n in model.graph.node]


def test_graph_without_head_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ExportError, match="no RoiAlign"):
        to_plugin_graph(model)
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="overwrite"):
        rewrite_file(path, path)
    with pytest.raises(ExportError, match="unknown RoIAlign mode"):
        rewrite_file(path, tmp_path / "out.onnx", roi_align="fancy")
