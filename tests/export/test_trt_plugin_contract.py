"""The TensorRT plugin module against a stand-in ``tensorrt.plugin`` that checks what TensorRT checks.

``tests/helpers/fake_trt_plugin.py`` re-implements, from TensorRT's documented behaviour and sources, the
signature validation of ``register``/``impl``/``autotune``/``aot_impl`` (``inspect.signature`` +
``issubclass`` on the annotation objects), the ONNX parser's plugin fields (FLOAT → float32,
INT → int32, 1-element), the creator's attribute conversion (``int(field.data)`` for a built-in
annotation: NumPy ≥ 2.4 refuses it) and how TensorRT calls each function.  Each test installs it in
``sys.modules`` and imports ``vmaedet.ops.roi_align_trt`` afresh.

The module of commit 324722c (``from __future__ import annotations``, ``int``/``float`` attributes)
fails here at import: ``TypeError: issubclass() arg 1 must be a class``.
"""

# No "from __future__ import annotations": the stand-in validates real annotation objects, and a
# test below declares a plugin with built-in attribute types.
import ast
import functools
import importlib
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from helpers import fake_trt_plugin as fake
from vmaedet.constants import ROI_ALIGN_MAX_ID, ROI_ALIGN_MAX_OP

ROOT = Path(__file__).resolve().parents[2]
MODULE = "vmaedet.ops.roi_align_trt"
NUMPY_REFUSES_1ELEM_INT = tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 4)


@pytest.fixture()
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The plugin module imported under the stand-in (a fresh registry each time)."""
    import vmaedet.ops.roi_align  # noqa: F401 - torch/torchvision first, under the real (absent) tensorrt

    fake.install(monkeypatch)
    import vmaedet.ops as pkg

    sys.modules.pop(MODULE, None)
    if hasattr(pkg, "roi_align_trt"):
        monkeypatch.delattr(pkg, "roi_align_trt")
    try:
        yield importlib.import_module(MODULE)
    finally:
        sys.modules.pop(MODULE, None)
        if hasattr(pkg, "roi_align_trt"):
            delattr(pkg, "roi_align_trt")


def _descs(dtype: fake.DataType) -> tuple[fake.TensorDesc, fake.TensorDesc]:
    """features ``[B, H, W, C]`` and rois ``[K, 5]`` with symbolic dimensions."""
    dim = fake.ShapeExpr.dim
    feats = fake.TensorDesc(fake.ShapeExprs.from_tuple([dim("B"), dim("H"), dim("W"), dim("C")]), dtype)
    rois = fake.TensorDesc(fake.ShapeExprs.from_tuple([dim("K"), 5]), fake.DataType.FLOAT)
    return feats, rois


def _plugin_node_attrs() -> dict[str, object]:
    """The attributes of the node that graph surgery writes (what TensorRT's ONNX parser reads)."""
    from vmaedet.export.surgery import to_plugin_graph

    nodes = [
        helper.make_node("Slice", ["rois", "s1", "s5", "ax1"], ["boxes"]),
        helper.make_node("Gather", ["rois", "i0"], ["bcol"], axis=1),
        helper.make_node("Cast", ["bcol"], ["bidx"], to=TensorProto.INT64),
        helper.make_node("RoiAlign", ["x", "boxes", "bidx"], ["pooled"], output_height=7, output_width=7,
                         sampling_ratio=0, spatial_scale=0.0625, coordinate_transformation_mode="output_half_pixel"),
        helper.make_node("ReduceMax", ["pooled"], ["out"], axes=[2, 3], keepdims=0),
    ]
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n)
             for n, v in [("s1", [1]), ("s5", [5]), ("ax1", [1]), ("i0", 0)]]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 7]),
                                              helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 5])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["K", 8])], inits)
    model = to_plugin_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    node = next(n for n in model.graph.node if n.op_type == ROI_ALIGN_MAX_OP)
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _attrs(plugin_id: str = ROI_ALIGN_MAX_ID) -> dict[str, object]:
    """ONNX node → parser fields → creator conversion: the values TensorRT passes to the functions."""
    return fake.create_plugin_attrs(plugin_id, fake.onnx_node_fields(plugin_id, _plugin_node_attrs()))


# -- the stand-in does fail where TensorRT fails ---------------------------------------------------
def test_stand_in_refuses_string_annotations_like_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    _, trtp = fake.install(monkeypatch)

    def desc(x: "trtp.TensorDesc", n: "int") -> "trtp.TensorDesc":  # what the future import produces
        return x

    with pytest.raises(TypeError, match="issubclass"):
        trtp.register("t::strings")(desc)


@pytest.mark.skipif(not NUMPY_REFUSES_1ELEM_INT, reason=f"NumPy {np.__version__} still converts 1-element arrays")
def test_stand_in_reproduces_the_numpy_2_4_int_attribute_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    _, trtp = fake.install(monkeypatch)

    def desc(x: trtp.TensorDesc, n: int, s: float) -> trtp.TensorDesc:
        return x

    trtp.register("t::builtin_attrs")(desc)
    fields = fake.onnx_node_fields("t::builtin_attrs", {"n": 7, "s": 0.0625})
    with pytest.raises(TypeError, match="0-dimensional"):
        fake.create_plugin_attrs("t::builtin_attrs", fields)


def test_plugin_module_has_no_future_annotations() -> None:
    tree = ast.parse((ROOT / "vmaedet/ops/roi_align_trt.py").read_text())
    futures = [a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__" for a in n.names]
    assert "annotations" not in futures


# -- registration ----------------------------------------------------------------------------------
def test_every_decorator_registers(plugin: ModuleType) -> None:
    pdef = fake.QDP_REGISTRY[ROI_ALIGN_MAX_ID]
    assert pdef.input_tensor_names == ["features", "rois"]
    assert list(pdef.input_attrs) == ["spatial_scale", "pooled_size", "sampling_ratio", "aligned"]
    assert pdef.num_outputs == 1
    assert pdef.impl_func is plugin.roi_align_max_impl and not pdef.expects_tactic
    assert pdef.impl_attr_names == list(pdef.input_attrs)
    assert pdef.autotune_func is plugin.roi_align_max_autotune
    assert pdef.aot_impl_func is plugin.roi_align_max_aot
    assert pdef.aot_impl_attr_names == list(pdef.input_attrs)  # TensorRT passes all of them to aot_impl


def test_attribute_fields_match_the_onnx_parser(plugin: ModuleType) -> None:
    """The creator's field types are what the parser makes of the surgery's FLOAT/INT attributes."""
    types = fake.creator_field_types(ROI_ALIGN_MAX_ID)
    assert types == {"spatial_scale": fake.PluginFieldType.FLOAT32, "pooled_size": fake.PluginFieldType.INT32,
                     "sampling_ratio": fake.PluginFieldType.INT32, "aligned": fake.PluginFieldType.INT32}
    fields = fake.onnx_node_fields(ROI_ALIGN_MAX_ID, _plugin_node_attrs())
    assert [f.name for f in fields] == list(types)
    assert [f.type for f in fields] == list(types.values())


def test_attributes_survive_tensorrt_conversion(plugin: ModuleType) -> None:
    attrs = _attrs()  # raises on NumPy >= 2.4 for int/float annotations
    got = {k: plugin.attr_scalar(v, float if k == "spatial_scale" else int) for k, v in attrs.items()}
    assert got == {"spatial_scale": 0.0625, "pooled_size": 7, "sampling_ratio": 0, "aligned": 0}
    assert all(isinstance(v, np.ndarray) and v.shape == (1,) for v in attrs.values())
    # a JIT engine serialises the attributes impl names and re-creates them on load
    reloaded = fake.create_plugin_attrs(ROI_ALIGN_MAX_ID, fake.serialize_fields(ROI_ALIGN_MAX_ID, attrs))
    assert {k: v.tolist() for k, v in reloaded.items()} == {k: v.tolist() for k, v in attrs.items()}


# -- the functions as TensorRT calls them ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [fake.DataType.FLOAT, fake.DataType.HALF])
def test_register_describes_k_by_c_in_the_features_dtype(plugin: ModuleType, dtype: fake.DataType) -> None:
    feats, rois = _descs(dtype)
    (out,) = fake.call_register(ROI_ALIGN_MAX_ID, [feats, rois], _attrs())
    dims = {"B": 2, "H": 16, "W": 29, "C": 768, "K": 8}
    assert [e.evaluate(dims) for e in out.shape_expr] == [8, 768]
    assert out.dtype == dtype


def test_autotune_offers_fp32_and_fp16_with_fp32_rois(plugin: ModuleType) -> None:
    feats, rois = _descs(fake.DataType.FLOAT)
    outs = fake.call_register(ROI_ALIGN_MAX_ID, [feats, rois], _attrs())
    combos = fake.call_autotune(ROI_ALIGN_MAX_ID, [feats, rois], _attrs(), outs)
    assert [c.positions for c in combos] == [[{"FP32"}, {"FP32"}, {"FP32"}], [{"FP16"}, {"FP32"}, {"FP16"}]]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [fake.DataType.FLOAT, fake.DataType.HALF])
def test_aot_impl_returns_ptx_that_takes_tensorrts_arguments(plugin: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                            dtype: fake.DataType) -> None:
    """The AOT kernel, compiled for sm_90 on the CPU: its ``.entry`` takes inputs + scalars + outputs."""
    from vmaedet.ops import triton_roi_align as tra

    monkeypatch.setattr(tra, "compile_roi_align_max_aot",
                        functools.partial(tra.compile_roi_align_max_aot, target=("cuda", 90, 32)))
    feats, rois = _descs(dtype)
    outs = fake.call_register(ROI_ALIGN_MAX_ID, [feats, rois], _attrs())
    name, ptx, params, extra = fake.call_aot_impl(ROI_ALIGN_MAX_ID, [feats, rois], _attrs(), outs, tactic=0)
    ptx_text = ptx.decode() if isinstance(ptx, bytes) else ptx
    kname = name.decode() if isinstance(name, bytes) else name
    entry = tra.ptx_entry_params(ptx_text, kname)
    assert len(entry) == 2 + len(extra) + 1  # TensorRT: input pointers, SymInt32 scalars, output pointer
    assert len(extra) == len(tra.AOT_SCALARS)
    ptr = re.compile(r"\.param\s+\.u64")
    decls = re.search(r"\.entry\s+\w+\s*\((.*?)\)", ptx_text, flags=re.S).group(1).split(",")  # type: ignore[union-attr]
    assert [bool(ptr.search(d)) for d in decls] == [True, True] + [False] * len(extra) + [True]
    elem = "fp16" if dtype == fake.DataType.HALF else "fp32"
    assert ("ld.global.b16" in ptx_text) == (elem == "fp16")
    for dims in ({"B": 2, "H": 16, "W": 29, "C": 768, "K": 8}, {"B": 1, "H": 16, "W": 29, "C": 768, "K": 0},
                 {"B": 1, "H": 4, "W": 5, "C": 65, "K": 3}):
        assert [e.evaluate(dims) for e in extra] == [dims[n] for n in tra.AOT_SCALARS]
        assert params.grid_x.evaluate(dims) == max(dims["K"], 1)  # never a zero grid
        assert params.grid_y.evaluate(dims) == -(-dims["C"] // tra.BLOCK_C)
        assert params.block_x.evaluate(dims) == tra.NUM_WARPS * 32
        assert (params.block_y.evaluate(dims), params.grid_z.evaluate(dims)) == (1, 1)
        assert params.shared_mem.evaluate(dims) >= 0


def test_impl_launches_with_python_scalars_on_channels_last(plugin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JIT callback converts the array attributes and hands the channels-last map to the launcher."""
    from vmaedet.ops import triton_roi_align as tra
    from vmaedet.ops.roi_align import roi_align_max_reference

    calls = []

    def launcher(feats: torch.Tensor, boxes: torch.Tensor, out: torch.Tensor, **kw: object) -> None:
        calls.append(kw)
        assert feats.ndim == 4 and feats.shape[3] == out.shape[1]  # [B, h, w, C]
        out.copy_(roi_align_max_reference(feats.permute(0, 3, 1, 2), boxes, spatial_scale=kw["spatial_scale"],  # type: ignore[arg-type]
                                           pooled_size=kw["pooled_size"], sampling_ratio=kw["sampling_ratio"],  # type: ignore[arg-type]
                                           aligned=kw["aligned"]).float())  # type: ignore[arg-type]

    class _Ctx:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(tra, "launch_roi_align_max", launcher)
    monkeypatch.setattr(torch.cuda, "ExternalStream", lambda stream: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _Ctx())
    monkeypatch.setattr(torch, "as_tensor", lambda t, device=None: torch.from_numpy(t.array))
    gen = np.random.default_rng(0)
    nchw = gen.standard_normal((1, 8, 6, 7)).astype(np.float32)
    feats = fake.Tensor(np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)), fake.DataType.FLOAT)
    rois = fake.Tensor(np.array([[0, 3.0, 5.0, 60.0, 50.0]], dtype=np.float32), fake.DataType.FLOAT)
    out = fake.Tensor(np.zeros((1, 8), dtype=np.float32), fake.DataType.FLOAT)
    attrs = fake.create_plugin_attrs(ROI_ALIGN_MAX_ID, fake.serialize_fields(ROI_ALIGN_MAX_ID, _attrs()))
    fake.call_impl(ROI_ALIGN_MAX_ID, [feats, rois], attrs, [out], stream=1234)
    (kw,) = calls
    assert kw == {"spatial_scale": 0.0625, "pooled_size": 7, "sampling_ratio": 0, "aligned": False}
    assert type(kw["spatial_scale"]) is float and type(kw["pooled_size"]) is int
    expected = roi_align_max_reference(torch.from_numpy(nchw), torch.from_numpy(rois.array))
    np.testing.assert_allclose(out.array, expected.numpy(), rtol=0, atol=1e-6)


def test_attr_scalar_takes_arrays_and_scalars(plugin: ModuleType) -> None:
    assert plugin.attr_scalar(np.array([7], dtype=np.int32), int) == 7
    assert plugin.attr_scalar(np.float32(0.5), float) == 0.5
    assert plugin.attr_scalar(3, int) == 3
    with pytest.raises(ValueError, match="one value"):
        plugin.attr_scalar(np.array([1, 2]), int)


def test_onnx_plugin_node_attributes_are_float_and_int() -> None:
    attrs = _plugin_node_attrs()
    assert isinstance(attrs["spatial_scale"], float)
    assert all(isinstance(attrs[k], int) for k in ("pooled_size", "sampling_ratio", "aligned", "aot"))
    assert onnx.__version__  # the parser-field simulation above relies on these two ONNX attribute types
