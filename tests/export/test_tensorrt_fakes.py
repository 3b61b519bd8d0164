"""The TensorRT builder and engine against fakes of the 10.x and 11.x bindings (``tests/helpers/fake_tensorrt.py``).

CPU only, no markers: the fakes behave as NVIDIA documents the bindings (see the fake module's
docstring), and ``FakeCuda`` stands in for ``torch.cuda`` so the device handling (``cuda:1``) can be
checked without a GPU.  What these prove: the version probe (10.x and 11.x accepted, 9.x and 12.x
refused with the supported range, a runtime-only ``tensorrt_lean`` accepted for running and refused
for building), the timing-cache fallback (a cache of another GPU/version or damaged bytes → warning
and a fresh cache; a failing serialisation never loses the plan), every TensorRT call of the engine
on the engine's device, an AOT engine that never imports the Python plugin module, and the whole
``build_engine`` on the fake (manifest: AOT/JIT, layer count, fused attention).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers.fake_tensorrt import FakeCuda, make_plan, make_tensorrt
from vmaedet.errors import BackendUnavailable, ConfigError, EngineError
from vmaedet.engines import trt_runtime
from vmaedet.export import tensorrt as trt_export
from vmaedet.artifacts import MANIFEST_FORMAT, sha256_file, write_manifest
from vmaedet.export.int8 import DEFAULT_FLOAT_GROUPS, LAYER_GROUPS

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_MODULE = "vmaedet.ops.roi_align_trt"
RUNTIME_NAMES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture()
def cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    """Two fake GPUs (an H100 as cuda:0, an L40S as cuda:1), current device 0."""
    return FakeCuda().install(monkeypatch)


def _install(monkeypatch: pytest.MonkeyPatch, **modules: types.ModuleType | None) -> None:
    """Make exactly these TensorRT modules importable (None = not installed)."""
    for name in RUNTIME_NAMES:
        monkeypatch.setitem(sys.modules, name, modules.get(name))


@pytest.fixture(params=["10", "11"])
def trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda) -> types.ModuleType:
    """The full ``tensorrt`` module as 10.x or as 11.x behaves."""
    mod = make_tensorrt(request.param, cuda=cuda)
    _install(monkeypatch, tensorrt=mod)
    return mod


@pytest.fixture(scope="module")
def fp16_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real FP16 ONNX export (vit_micro, 64×80, ≤ 8 persons) with its manifest."""
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    out = tmp_path_factory.mktemp("fake_trt") / "micro_fp16.onnx"
    return export_onnx(model, out, input_hw=(64, 80), max_persons=8, precision="fp16").path


def _engine_artifact(tmp_path: Path, trt: types.ModuleType, *, gpu: tuple[str, str] = ("NVIDIA H100 80GB HBM3", "9.0"),
                     roi: dict[str, Any] | None = None, version_compatible: bool = False,
                     built_version: str | None = None, name: str = "m.engine") -> Path:
    """A fake plan + a manifest of the engine format, as build_engine writes them."""
    path = tmp_path / name
    path.write_bytes(make_plan(trt, version=built_version, version_compatible=version_compatible))
    manifest = {
        "format": MANIFEST_FORMAT, "precision": "fp16",
        "artifact": {"file": name, "format": "tensorrt", "sha256": sha256_file(path)},
        "input": {"names": {"clip": "clip", "rois": "rois", "output": "logits"}, "clip_shape": [1, 3, 16, 64, 80],
                  "clip_hw": [64, 80], "max_persons": 8},
        "tensorrt": {"version": built_version or trt.__version__, "gpu": {"name": gpu[0], "compute_capability": gpu[1]},
                     "version_compatible": version_compatible,
                     "roi_align": roi or {"mode": "plugin", "aot": True, "implementation": "aot"}},
    }
    write_manifest(path, manifest)
    return path


@pytest.fixture()
def host_buffers(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda) -> list[int]:
    """Engine buffers on the host (no GPU here); records the current device at every allocation/move."""
    from vmaedet.engines.tensorrt_engine import TensorRTEngine

    seen: list[int] = []

    def empty(self: Any, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        seen.append(cuda.current)
        return torch.empty(shape, dtype=dtype)

    def to_device(self: Any, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        seen.append(cuda.current)
        return tensor.to(dtype=dtype).contiguous().clone()

    monkeypatch.setattr(TensorRTEngine, "_empty", empty, raising=False)
    monkeypatch.setattr(TensorRTEngine, "_to_device", to_device, raising=False)
    return seen


CLIP = torch.zeros(1, 3, 16, 64, 80)  # [1, 3, 16, H, W]
ROIS = torch.tensor([[0, 3.0, 5.0, 60.0, 50.0], [0, 10.0, 0.0, 79.0, 63.0], [0, 30.0, 20.0, 31.0, 21.0]])  # [3, 5]


def _expected(rois: torch.Tensor) -> torch.Tensor:
    """What the fake engine computes: logits[k, j] = x1_k / 100 + j."""
    return rois[:, 1:2] / 100.0 + torch.arange(80, dtype=torch.float32)[None, :]


# -- version probe --------------------------------------------------------------------------------
def test_builder_probe_accepts_10x_and_11x(trt: types.ModuleType) -> None:
    """11.x has no Builder.platform_has_fast_fp16: the probe must not need it (it refused every 11.x install)."""
    ok, reason = trt_export.tensorrt_status()
    assert ok, reason
    assert trt.__version__ in reason and "H100" in reason
    assert trt_export.require_tensorrt() is trt
    ok, reason = trt_runtime.tensorrt_runtime_status()
    assert ok and reason.startswith(f"tensorrt {trt.__version__}")


@pytest.mark.parametrize("flavour,words", [("9", "too old"), ("12", "newer than vmaedet supports")])
def test_unsupported_versions_are_refused_with_the_range(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda,
                                                          flavour: str, words: str) -> None:
    mod = make_tensorrt(flavour, cuda=cuda)
    _install(monkeypatch, tensorrt=mod)
    ok, reason = trt_export.tensorrt_status()
    assert not ok and words in reason and "10.9 ≤ TensorRT < 12" in reason
    with pytest.raises(BackendUnavailable) as info:
        trt_export.require_tensorrt()
    assert mod.__version__ in str(info.value) and "10.9 ≤ TensorRT < 12" in str(info.value)
    assert not trt_runtime.tensorrt_runtime_status().available
    with pytest.raises(EngineError, match="10.9 ≤ TensorRT < 12"):
        trt_runtime.check_engine_compat({"tensorrt": {"version": mod.__version__}}, tensorrt_version=mod.__version__,
                                       gpu_name="x", compute_capability="9.0")


@pytest.mark.parametrize("version,ok", [("10.8.0.43", False), ("10.9.0.34", True), ("11.4.1", True), ("12.0", False),
                                        ("garbage", False)])
def test_version_range(version: str, ok: bool) -> None:
    assert (trt_runtime.version_problem(version) is None) == ok


def test_runtime_only_install_runs_but_cannot_build(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda) -> None:
    lean = make_tensorrt("10", cuda=cuda, module_name="tensorrt_lean")
    _install(monkeypatch, tensorrt=None, tensorrt_lean=lean)
    ok, reason = trt_runtime.tensorrt_runtime_status()
    assert ok and reason.startswith("tensorrt_lean 10.13")
    assert trt_runtime.require_tensorrt_runtime() == (lean, "tensorrt_lean")
    ok, reason = trt_export.tensorrt_status()
    assert not ok and "tensorrt" in reason
    with pytest.raises(BackendUnavailable, match="needs the full tensorrt package"):
        trt_export.require_tensorrt()


def test_doctor_reports_a_runtime_only_install(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda) -> None:
    from vmaedet.tools import doctor

    _install(monkeypatch, tensorrt=None, tensorrt_dispatch=make_tensorrt("11", cuda=cuda, module_name="tensorrt_dispatch"))
    row = next(r for r in doctor.collect() if r["component"] == "TensorRT")
    assert row["status"] == "warn" and "tensorrt_dispatch 11.1" in row["detail"] and "building" in row["detail"]


def test_check_engine_compat_version_compatible_plans() -> None:
    built = {"tensorrt": {"version": "10.13.0.35", "version_compatible": True,
                          "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}}}
    kw = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    trt_runtime.check_engine_compat(built, tensorrt_version="11.1.0.106", **kw)  # same or later: fine
    with pytest.raises(EngineError, match="newer TensorRT"):
        trt_runtime.check_engine_compat(built, tensorrt_version="10.12.0.1", **kw)
    built["tensorrt"]["version_compatible"] = False
    with pytest.raises(EngineError, match="another TensorRT version"):
        trt_runtime.check_engine_compat(built, tensorrt_version="11.1.0.106", **kw)


# -- build_engine on the fake ----------------------------------------------------------------------
def _build(fp16_onnx: Path, tmp_path: Path, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
    out = trt_export.build_engine(fp16_onnx, tmp_path / "m.engine", max_persons=8, opt_persons=4, workspace_gb=1,
                                  roi_align="builtin", progress=False, **kwargs)
    return out, json.loads((tmp_path / "m.engine.json").read_text())


def test_build_engine_end_to_end(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path) -> None:
    plan, manifest = _build(fp16_onnx, tmp_path, timing_cache=tmp_path / "cache" / "timing.bin")
    header = json.loads(plan.read_bytes().split(b"\n", 1)[1])
    assert header["strongly_typed"] and header["verbosity"] == "DETAILED" and header["profile"] == [1, 8]
    built = manifest["tensorrt"]
    assert built["version"] == trt.__version__ and built["gpu"] == {"name": "NVIDIA H100 80GB HBM3",
                                                                     "compute_capability": "9.0"}
    assert built["roi_align"]["implementation"] == "builtin" and built["version_compatible"] is False
    assert built["num_layers"] == len(header["layers"]) > 50
    assert built["attention"]["fused_attention"] is False  # the fake fuses nothing: detailed info, no marker
    assert built["timing_cache"]["saved"] and not built["timing_cache"]["loaded"]
    assert manifest["artifact"]["sha256"] == sha256_file(plan)
    cache_file = tmp_path / "cache" / built["timing_cache"]["file"]
    assert cache_file.exists() and "h100" in cache_file.name and trt.__version__ in cache_file.name
    # A rebuild on the same machine reads the cache it wrote.
    _, manifest = _build(fp16_onnx, tmp_path, timing_cache=tmp_path / "cache" / "timing.bin")
    assert manifest["tensorrt"]["timing_cache"]["loaded"]


def test_build_records_fused_attention(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path) -> None:
    trt._state.engine_layers = [  # type: ignore[attr-defined]
        {"Name": "/blocks.0/attn/qkv/MatMul", "LayerType": "gemm", "TacticName": "sm90_xmma_gemm_f16f16"},
        {"Name": "_gemm_mha_v2_myl0_12", "LayerType": "kgen", "TacticName": ""},
        {"Name": "/blocks.0/mlp/fc1/MatMul", "LayerType": "gemm", "TacticName": "sm90_xmma_gemm_f16f16"}]
    _, manifest = _build(fp16_onnx, tmp_path)
    att = manifest["tensorrt"]["attention"]
    assert att["fused_attention"] is True and att["fused_attention_layers"] == 1
    assert manifest["tensorrt"]["num_layers"] == 3 and "timing_cache" not in manifest["tensorrt"]


def _foreign_cache(trt: types.ModuleType) -> bytes:
    """A timing cache written by another GPU (the fake's header check refuses it)."""
    return bytes(trt.ITimingCache("NVIDIA A100-SXM4-80GB|sm80|trt" + trt.__version__, 7).serialize())


@pytest.mark.parametrize("where", ["given", "keyed"])
def test_a_cache_from_another_gpu_falls_back_to_a_fresh_one(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture, where: str) -> None:
    """A cache of another GPU at the path given (e.g. copied from another machine) or at the keyed path."""
    base = tmp_path / "timing.bin"
    keyed = tmp_path / "timing-nvidia-h100-80gb-hbm3-sm90-trt{}.bin".format(trt.__version__)
    (base if where == "given" else keyed).write_bytes(_foreign_cache(trt))
    with caplog.at_level(logging.WARNING, logger="vmaedet.export.tensorrt"):
        plan, manifest = _build(fp16_onnx, tmp_path, timing_cache=base)
    assert plan.exists() and manifest["artifact"]["sha256"] == sha256_file(plan)
    assert any("another GPU or TensorRT version" in r.getMessage() for r in caplog.records), caplog.text
    state = manifest["tensorrt"]["timing_cache"]
    assert not state["loaded"] and state["saved"] and state["file"] == keyed.name
    assert trt._state.machine_key().encode() in keyed.read_bytes()  # type: ignore[attr-defined] - a fresh cache
    if where == "given":
        assert base.read_bytes() == _foreign_cache(trt)  # the file given is left as it was


def test_a_usable_cache_at_the_path_given_is_read(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path) -> None:
    base = tmp_path / "timing.bin"
    base.write_bytes(bytes(trt.ITimingCache(trt._state.machine_key(), 3).serialize()))  # type: ignore[attr-defined]
    _, manifest = _build(fp16_onnx, tmp_path, timing_cache=base)
    assert manifest["tensorrt"]["timing_cache"]["loaded"] and manifest["tensorrt"]["timing_cache"]["read_from"] == "timing.bin"


def test_a_damaged_cache_falls_back_to_a_fresh_one(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    base = tmp_path / "timing.bin"
    base.write_bytes(b"\x00garbage, not a timing cache")
    with caplog.at_level(logging.WARNING, logger="vmaedet.export.tensorrt"):
        plan, manifest = _build(fp16_onnx, tmp_path, timing_cache=base)
    assert plan.exists() and "could not read it" in caplog.text
    assert manifest["tensorrt"]["timing_cache"]["saved"]


def test_a_failing_cache_serialisation_never_loses_the_plan(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    trt._state.serialize_raises = True  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="vmaedet.export.tensorrt"):
        plan, manifest = _build(fp16_onnx, tmp_path, timing_cache=tmp_path / "timing.bin")
    assert plan.exists() and manifest["artifact"]["sha256"] == sha256_file(plan)
    assert "could not save the timing cache" in caplog.text and "the engine is fine" in caplog.text
    assert not manifest["tensorrt"]["timing_cache"]["saved"]
    assert not list(tmp_path.glob("timing*.bin")) and not list(tmp_path.glob(".*tmp*"))


def test_no_cache_attached_means_get_timing_cache_none(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    trt._state.refuse_every_cache = True  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="vmaedet.export.tensorrt"):
        plan, manifest = _build(fp16_onnx, tmp_path, timing_cache=tmp_path / "timing.bin")
    assert plan.exists()
    assert "building without one" in caplog.text and "no timing cache" in caplog.text
    assert manifest["tensorrt"]["timing_cache"]["attached"] is False


def test_a_failed_build_writes_nothing(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path) -> None:
    from vmaedet.errors import ExportError

    trt._state.fail_build = True  # type: ignore[attr-defined]
    with pytest.raises(ExportError, match="failed to build"):
        _build(fp16_onnx, tmp_path)
    assert not list(tmp_path.glob("m.engine*"))


def test_version_compatible_build_runs_on_a_lean_runtime(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda,
                                                         fp16_onnx: Path, tmp_path: Path,
                                                         host_buffers: list[int]) -> None:
    from vmaedet.engines import create_engine

    _install(monkeypatch, tensorrt=make_tensorrt("10", cuda=cuda))
    plan, manifest = _build(fp16_onnx, tmp_path, version_compatible=True)
    assert manifest["tensorrt"]["version_compatible"] is True
    assert manifest["tensorrt"]["attention"]["fused_attention"] is False  # inspected (host code allowed)
    _install(monkeypatch, tensorrt=None, tensorrt_lean=make_tensorrt("11", cuda=cuda, module_name="tensorrt_lean"))
    with create_engine("tensorrt", plan) as engine:
        assert engine.describe()["tensorrt_module"] == "tensorrt_lean"
        torch.testing.assert_close(engine.infer(CLIP, ROIS), _expected(ROIS), rtol=0, atol=1e-6)


# -- engine ---------------------------------------------------------------------------------------
def test_engine_does_everything_on_its_device(trt: types.ModuleType, cuda: FakeCuda, tmp_path: Path,
                                              host_buffers: list[int]) -> None:
    """cuda:1 while the current device is 0: every TensorRT call, stream and buffer on device 1."""
    from vmaedet.engines import create_engine

    plan = _engine_artifact(tmp_path, trt, gpu=("NVIDIA L40S", "8.9"))  # built on cuda:1's GPU
    with create_engine("tensorrt", plan, device="cuda:1") as engine:
        assert cuda.current == 0  # the caller's current device is left as it was
        got = engine.infer(CLIP, ROIS)  # [3, 80]
        assert engine.describe()["device"] == "cuda:1" and engine.describe()["device_memory_bytes"] == 1 << 20
    torch.testing.assert_close(got, _expected(ROIS), rtol=0, atol=1e-6)
    calls = trt._state.calls  # type: ignore[attr-defined]
    assert {api for api, _ in calls} == {"deserialize_cuda_engine", "create_execution_context", "execute_async_v3"}
    assert all(dev == 1 for _, dev in calls), calls
    assert host_buffers and all(dev == 1 for dev in host_buffers), host_buffers
    assert all(dev == 1 for what, dev in cuda.events if what == "stream"), cuda.events
    assert cuda.current == 0


def test_engine_cuda_graph_is_captured_on_its_device(trt: types.ModuleType, cuda: FakeCuda, tmp_path: Path,
                                                     host_buffers: list[int]) -> None:
    from vmaedet.engines import create_engine

    plan = _engine_artifact(tmp_path, trt, gpu=("NVIDIA L40S", "8.9"))
    with create_engine("tensorrt", plan, device="cuda:1", cuda_graph=True) as engine:
        assert engine.describe()["cuda_graph"]
        for k in (3, 1, 2):
            torch.testing.assert_close(engine.infer(CLIP, ROIS[:k]), _expected(ROIS[:k]), rtol=0, atol=1e-6)
    assert ("capture", 1) in cuda.events and all(dev == 1 for what, dev in cuda.events if what in ("capture", "replay"))
    assert all(dev == 1 for _, dev in trt._state.calls)  # type: ignore[attr-defined]


def test_engine_checks_the_manifest_against_its_own_device(trt: types.ModuleType, tmp_path: Path) -> None:
    from vmaedet.engines import create_engine

    plan = _engine_artifact(tmp_path, trt, gpu=("NVIDIA L40S", "8.9"))
    with pytest.raises(EngineError, match="another GPU"):
        create_engine("tensorrt", plan, device="cuda:0")  # the H100
    with pytest.raises(EngineError, match="no CUDA device 2"):
        create_engine("tensorrt", plan, device="cuda:2")


def test_aot_engine_does_not_import_the_plugin_module(trt: types.ModuleType, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, host_buffers: list[int]) -> None:
    from vmaedet.engines import create_engine

    monkeypatch.delitem(sys.modules, PLUGIN_MODULE, raising=False)
    plan = _engine_artifact(tmp_path, trt)
    with create_engine("tensorrt", plan, cuda_graph=True) as engine:
        engine.infer(CLIP, ROIS)
        assert engine.describe()["plugin"] == "aot"
    assert PLUGIN_MODULE not in sys.modules


def test_jit_engine_needs_the_plugin_module(trt: types.ModuleType, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.engines import create_engine

    jit = {"mode": "plugin", "aot": False, "implementation": "jit"}
    plan = _engine_artifact(tmp_path, trt, roi=jit)
    with pytest.raises(EngineError, match="AOT plugin") as info:  # the real parameter and command, no --no-aot
        create_engine("tensorrt", plan, cuda_graph=True)
    assert "aot=True" in str(info.value) and "vmaedet export CKPT --trt" in str(info.value)
    assert "--no-aot" not in str(info.value)
    monkeypatch.setitem(sys.modules, PLUGIN_MODULE, None)  # not importable (no tensorrt.plugin / Triton here)
    with pytest.raises(BackendUnavailable, match="JIT plugin"):
        create_engine("tensorrt", plan)


def test_lean_runtime_refuses_plans_it_cannot_run(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda, tmp_path: Path) -> None:
    from vmaedet.engines import create_engine

    lean = make_tensorrt("10", cuda=cuda, module_name="tensorrt_lean")
    _install(monkeypatch, tensorrt=None, tensorrt_lean=lean)
    plan = _engine_artifact(tmp_path, lean, name="plain.engine")
    with pytest.raises(EngineError, match="not version-compatible") as info:
        create_engine("tensorrt", plan)
    assert "--version-compatible" in str(info.value)
    jit = _engine_artifact(tmp_path, lean, name="jit.engine", version_compatible=True,
                           roi={"mode": "plugin", "aot": False, "implementation": "jit"})
    with pytest.raises(BackendUnavailable, match="full tensorrt"):
        create_engine("tensorrt", jit)


def test_engine_without_any_tensorrt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda,
                                                      tmp_path: Path) -> None:
    from vmaedet.engines import create_engine

    plan = _engine_artifact(tmp_path, make_tensorrt("10"))
    _install(monkeypatch)
    with pytest.raises(BackendUnavailable, match="TensorRT is not usable") as info:
        create_engine("tensorrt", plan)
    assert all(name in str(info.value) for name in RUNTIME_NAMES)


def test_cli_has_the_flags_the_errors_name() -> None:
    import os

    proc = subprocess.run([str(ROOT / ".venv/bin/vmaedet"), "export", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--jit" in proc.stdout and "--version-compatible" in proc.stdout
    sources = "".join(p.read_text() for p in (ROOT / "vmaedet").rglob("*.py"))
    assert "--no-aot" not in sources


# -- fused attention detection (inspector JSON as NVIDIA documents it) -----------------------------
DETAILED_10X_FUSED = {"Layers": [
    {"Name": "/blocks.0/norm1/LayerNormalization", "LayerType": "kgen", "TacticName": ""},
    {"Name": "{ForeignNode[/blocks.0/attn/MatMul.../blocks.0/attn/MatMul_1]}", "LayerType": "Myelin",
     "TacticName": "sm90_fmha_v2_flash_attention_fp16_64_64_S_64_causal_sm90_kernel"},
    {"Name": "/blocks.0/mlp/fc1/MatMul", "LayerType": "CaskGemmMatrixMultiply", "TacticName": "sm90_xmma_gemm"}],
    "Bindings": ["clip", "rois", "logits"]}
DETAILED_11X_MHA_NAME = {"Layers": [
    {"Name": "_gemm_mha_v2_myl3_7", "LayerType": "gemm", "TacticName": "", "Metadata": "[ONNX Layer: /attn/MatMul]"}],
    "I/O Tensors": [{"Name": "clip", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, 16, 64, 80]}]}
DETAILED_UNFUSED = {"Layers": [
    {"Name": "[MATRIX_MULTIPLY]_[scaled_dot_product_attention]_[x11_qkv]_matrix_multiply", "LayerType": "gemm",
     "TacticName": "sm80_xmma_gemm_f16f16_f16f16_f16_nn_n_tilesize32x32x64",
     "Metadata": "[MATRIX_MULTIPLY]_[scaled_dot_product_attention]"},
    {"Name": "/blocks.0/attn/Softmax", "LayerType": "kgen", "TacticName": ""},
    {"Name": "/blocks.0/attn/MatMul_1", "LayerType": "gemm", "TacticName": "sm80_xmma_gemm_f16f16"}],
    "I/O Tensors": []}


@pytest.mark.parametrize("info,verdict,count", [
    (DETAILED_10X_FUSED, True, 1),
    (DETAILED_11X_MHA_NAME, True, 1),
    (DETAILED_UNFUSED, False, 0),  # "attention" in ONNX-derived names of unfused layers is not fusion
    ({"Layers": ["/blocks.0/attn/MatMul", "/blocks.0/attn/Softmax"], "Bindings": []}, None, 0),  # names only
    ({"Layers": ["/blocks.0/attn/MatMul", "fused_mha_v2_myl0"], "Bindings": []}, True, 1),
    ({"Layers": [{"Name": "/smhash/MatMul", "LayerType": "gemm", "TacticName": "xmma_gemm"}]}, False, 0),  # not a token
    ({"Layers": []}, None, 0),
])
def test_attention_fusion(info: dict[str, Any], verdict: bool | None, count: int) -> None:
    report = trt_export.attention_fusion(json.dumps(info))
    assert report["fused_attention"] is verdict and report["fused_attention_layers"] == count
    assert report["layers"] == len(info["Layers"])


def test_attention_fusion_on_unreadable_info() -> None:
    assert trt_export.attention_fusion("not json")["fused_attention"] is None
    assert trt_export.attention_fusion(json.dumps([1, 2]))["fused_attention"] is None


def test_timing_cache_path_is_keyed() -> None:
    a = trt_export.timing_cache_path("/c/t.bin", tensorrt_version="10.13.0.35",
                                     gpu={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    b = trt_export.timing_cache_path("/c/t.bin", tensorrt_version="11.1.0.106",
                                     gpu={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    c = trt_export.timing_cache_path("/c/t.bin", tensorrt_version="10.13.0.35",
                                     gpu={"name": "NVIDIA L40S", "compute_capability": "8.9"})
    assert len({a, b, c}) == 3 and a.parent == Path("/c") and a.suffix == ".bin"
    assert a.name == "t-nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.bin"


# -- batches: the profile over B and K, the clip shape set per call ---------------------------------
# Not verified on a real TensorRT here: the fakes check the shapes vmaedet asks for and binds.
@pytest.fixture(scope="module")
def fp16_onnx_batched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real FP16 ONNX export with a batch axis (vit_micro, 64×80, ≤ 4 clips, ≤ 8 persons per call)."""
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    out = tmp_path_factory.mktemp("fake_trt_b4") / "micro_fp16_b4.onnx"
    return export_onnx(model, out, input_hw=(64, 80), max_persons=8, precision="fp16", max_batch=4).path


def _profiles(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the optimisation profiles build_engine adds (name → (min, opt, max))."""
    seen: list[dict[str, Any]] = []
    real = trt_export._builder_config

    def spy(*args: Any, **kwargs: Any) -> Any:
        config = real(*args, **kwargs)
        seen.extend(dict(p.shapes) for p in config.profiles)
        return config

    monkeypatch.setattr(trt_export, "_builder_config", spy)
    return seen


def test_build_engine_profiles_the_batch_and_the_persons(trt: types.ModuleType, fp16_onnx_batched: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _profiles(monkeypatch)
    plan, manifest = _build(fp16_onnx_batched, tmp_path)
    one = (3, 16, 64, 80)
    assert seen == [{"rois": ((1, 5), (4, 5), (8, 5)), "clip": ((1, *one), (4, *one), (4, *one))}]
    header = json.loads(plan.read_bytes().split(b"\n", 1)[1])
    assert header["profiles"] == {"rois": [1, 8], "clip": [1, 4]}
    assert manifest["tensorrt"]["profile_batch"] == [1, 4, 4] and manifest["tensorrt"]["profile_persons"] == [1, 4, 8]
    assert manifest["input"]["max_batch"] == 4 and manifest["input"]["max_persons"] == 8
    seen.clear()
    trt_export.build_engine(fp16_onnx_batched, tmp_path / "o.engine", max_persons=8, opt_persons=4, workspace_gb=1,
                            roi_align="builtin", progress=False, opt_batch=2)
    assert seen[0]["clip"] == ((1, *one), (2, *one), (4, *one))
    with pytest.raises(ConfigError, match="opt_batch ≤ max_batch"):
        trt_export.build_engine(fp16_onnx_batched, tmp_path / "x.engine", max_persons=8, roi_align="builtin",
                                progress=False, opt_batch=5)


def test_a_one_clip_onnx_gets_no_clip_profile(trt: types.ModuleType, fp16_onnx: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _profiles(monkeypatch)
    _, manifest = _build(fp16_onnx, tmp_path)
    assert seen == [{"rois": ((1, 5), (4, 5), (8, 5))}]  # the static clip is not profiled (as before batching)
    assert manifest["tensorrt"]["profile_batch"] == [1, 1, 1] and manifest["input"]["max_batch"] == 1


def test_without_the_clip_profile_a_batched_network_does_not_build(trt: types.ModuleType, fp16_onnx_batched: Path,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake refuses a dynamic input without a profile, as TensorRT does: the profile above is what makes it build."""
    from vmaedet.errors import ExportError

    real = trt_export._builder_config
    monkeypatch.setattr(trt_export, "_builder_config",
                        lambda *a, **k: real(*a[:7], (1, 1, 1)))  # the K profile only
    with pytest.raises(ExportError, match="failed to build"):
        _build(fp16_onnx_batched, tmp_path)


def _batched_inputs(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    clip = torch.arange(b, dtype=torch.float32).mul(10).view(b, 1, 1, 1, 1).expand(b, 3, 16, 64, 80).contiguous()
    rois = torch.tensor([[2, 3.0, 5.0, 60.0, 50.0], [0, 10.0, 0.0, 79.0, 63.0], [1, 30.0, 20.0, 31.0, 21.0],
                         [2, 7.0, 7.0, 40.0, 40.0]])  # [4, 5] spread over 3 clips, out of order
    rois[:, 0] %= b
    return clip, rois


def test_engine_sets_the_clip_shape_per_call(trt: types.ModuleType, fp16_onnx_batched: Path, tmp_path: Path,
                                             host_buffers: list[int]) -> None:
    from vmaedet.engines import create_engine

    plan, _ = _build(fp16_onnx_batched, tmp_path)
    clip, rois = _batched_inputs(3)
    with create_engine("tensorrt", plan) as engine:
        assert engine.max_batch == 4 and engine.describe()["max_batch"] == 4
        got = engine.infer(clip, rois)  # [4, 80]
        assert trt._state.executed_shapes[-1] == {"clip": (3, 3, 16, 64, 80), "rois": (4, 5)}  # type: ignore[attr-defined]
        singles = torch.cat([engine.infer(clip[b:b + 1], torch.cat([torch.zeros(1, 1), rois[k:k + 1, 1:]], 1))
                             for k, b in enumerate(rois[:, 0].long().tolist())])
        assert trt._state.executed_shapes[-1] == {"clip": (1, 3, 16, 64, 80), "rois": (1, 5)}  # type: ignore[attr-defined]
        with pytest.raises(EngineError, match="max_batch ≥ 5"):
            engine.infer(clip[:1].expand(5, -1, -1, -1, -1), rois[:1] * torch.tensor([0, 1, 1, 1, 1]))
        with pytest.raises(EngineError, match="not in the call"):
            engine.infer(clip[:2], rois)  # a roi of clip 2
    expected = _expected(rois) + 10 * rois[:, :1]  # each roi read its own clip (clip b is filled with 10·b)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, singles, rtol=0, atol=0)


def test_a_one_clip_plan_binds_as_before(trt: types.ModuleType, tmp_path: Path, host_buffers: list[int]) -> None:
    from vmaedet.engines import create_engine

    plan = _engine_artifact(tmp_path, trt)  # a manifest without max_batch: one clip
    with create_engine("tensorrt", plan) as engine:
        assert engine.max_batch == 1
        torch.testing.assert_close(engine.infer(CLIP, ROIS), _expected(ROIS), rtol=0, atol=1e-6)
        with pytest.raises(EngineError, match="max_batch ≥ 2"):
            engine.infer(CLIP.expand(2, -1, -1, -1, -1), ROIS)
    assert trt._state.executed_shapes == [{"rois": (3, 5)}]  # type: ignore[attr-defined] - the clip shape is not set


def test_a_batched_plan_refuses_a_cuda_graph(trt: types.ModuleType, fp16_onnx_batched: Path, tmp_path: Path) -> None:
    from vmaedet.engines import create_engine

    plan, _ = _build(fp16_onnx_batched, tmp_path)
    with pytest.raises(EngineError, match="holds one clip") as info:
        create_engine("tensorrt", plan, cuda_graph=True)
    assert "cuda_graph=False" in str(info.value)


# -- int8 (QDQ): explicit quantization in a strongly typed network --------------------------------
@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real int8 QDQ export (vit_micro, 64×80, ≤ 8 persons) calibrated on a tiny synthetic dataset."""
    from vmaedet.data.synthetic import generate
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models import create_detector

    root = tmp_path_factory.mktemp("fake_trt_int8")
    generate(root / "data", videos=2, seconds=6, seed=3)
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    return export_onnx(model, root / "micro_int8.onnx", input_hw=(64, 80), max_persons=8, precision="int8",
                       calib=root / "data").path


def test_build_engine_takes_an_int8_qdq_graph_without_an_int8_flag(trt: types.ModuleType, int8_onnx: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked against the fake bindings only: not verified on a real TensorRT."""
    flags: list[set[Any]] = []
    real = trt_export._builder_config

    def spy(*args: Any, **kwargs: Any) -> Any:
        config = real(*args, **kwargs)
        flags.append(set(config.flags))
        return config

    monkeypatch.setattr(trt_export, "_builder_config", spy)
    plan, manifest = _build(int8_onnx, tmp_path)
    header = json.loads(plan.read_bytes().split(b"\n", 1)[1])
    assert header["strongly_typed"]  # precisions come from the Q/DQ nodes
    assert flags == [set()]  # no INT8 (nor FP16) builder flag, no calibrator
    # vit_micro: 2 blocks × the 3 linear groups quantized by default (qkv, proj, fc1; fc2 stays in float)
    n = 2 * (len(LAYER_GROUPS) - len(DEFAULT_FLOAT_GROUPS))
    types_ = [layer["LayerType"] for layer in header["layers"]]
    assert types_.count("QuantizeLinear") == n and types_.count("DequantizeLinear") == 2 * n  # activation + weight
    assert manifest["precision"] == "int8" and manifest["quantization"]["scheme"] == "QDQ"
    eq = manifest["tensorrt"]["explicit_quantization"]
    assert eq["int8_builder_flag"] is False and eq["QuantizeLinear"] == n and eq["per_channel_weights"] == n
