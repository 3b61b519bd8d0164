"""Engines behind one interface: torch (fp32/bf16/fp16 autocast) and onnxruntime (manifest-checked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vmaedet.engines import create_engine, list_engines
from vmaedet.engines.onnxruntime_engine import OnnxRuntimeEngine
from vmaedet.engines.torch_engine import TorchEngine
from vmaedet.errors import BackendUnavailable, EngineError
from vmaedet.export.onnx import export_onnx
from vmaedet.models import create_detector
from vmaedet.models.checkpoints import save_detector

HW = (64, 96)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_detector("vit_micro").eval()
    with torch.no_grad():
        m.head.weight.normal_(0, 0.5)  # logits of order 1
    return m


@pytest.fixture(scope="module")
def artifact(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("art") / "m.onnx", input_hw=HW, max_persons=4).path


def _inputs(k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(k)
    clip = (torch.randint(0, 256, (1, 3, 16, *HW), generator=g).float() - 118.0) / 57.375
    rois = torch.tensor([[0, 2, 3, 40, 60], [0, 30, 10, 95, 63], [0, 0, 0, 96, 64], [0, 10, 20, 30, 50]])[:k].float()
    return clip, rois


def _reference(model, clip, rois) -> torch.Tensor:
    with torch.no_grad():
        out = model.double()(clip.double(), rois.double())
    model.float()
    return out


def test_registry() -> None:
    assert {"torch", "onnxruntime", "tensorrt"} <= set(list_engines())
    with pytest.raises(EngineError, match="unknown engine"):
        create_engine("tensorflow")


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 1e-4), ("bf16", 5e-2), ("fp16", 1e-2)])
def test_torch_engine_precisions(model, precision: str, tol: float) -> None:
    clip, rois = _inputs()
    ref = _reference(model, clip, rois)
    with create_engine("torch", model, precision=precision) as eng:
        assert isinstance(eng, TorchEngine) and eng.precision == precision
        out = eng.infer(clip, rois)
    assert out.dtype == torch.float32 and out.shape == (3, 80)
    err = (out.double().sigmoid() - ref.sigmoid()).abs().max() if precision != "fp32" else (out.double() - ref).abs().max()
    assert err <= tol
    if precision != "fp32":  # autocast really ran in low precision
        assert (out.double() - ref).abs().max() > 1e-6


def test_torch_engine_from_checkpoint(model, tmp_path: Path) -> None:
    path = save_detector(model, tmp_path / "m.safetensors")
    clip, rois = _inputs()
    eng = TorchEngine(str(path), input_hw=HW, max_persons=4)
    torch.testing.assert_close(eng.infer(clip, rois), _reference(model, clip, rois).float(), atol=1e-4, rtol=0)
    with pytest.raises(EngineError, match="fixed clip geometry"):
        eng.infer(torch.zeros(1, 3, 16, 32, 32), rois)


def test_torch_engine_bad_input(model) -> None:
    with pytest.raises(EngineError, match="ActionDetector"):
        TorchEngine(torch.nn.Linear(2, 2))
    with pytest.raises(EngineError, match="precision"):
        TorchEngine(model, precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            TorchEngine(model, device="cuda")


def test_onnxruntime_engine_matches_reference(model, artifact: Path) -> None:
    clip, rois = _inputs(4)
    with create_engine("onnxruntime", artifact, threads=1) as eng:
        assert isinstance(eng, OnnxRuntimeEngine)
        assert (eng.input_hw, eng.max_persons, eng.precision, eng.device) == (HW, 4, "fp32", "cpu")
        out = eng.infer(clip, rois)
        assert eng.infer(clip, rois[:0]).shape == (0, 80)
        with pytest.raises(EngineError, match="more persons"):
            eng.infer(clip, torch.cat([rois, rois[:1]]))
        with pytest.raises(EngineError, match="fixed clip geometry"):
            eng.infer(torch.zeros(1, 3, 16, 64, 64), rois)
    assert (out.double() - _reference(model, clip, rois)).abs().max() <= 1e-4


def test_onnxruntime_engine_refuses_mismatches(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="another precision"):
        OnnxRuntimeEngine(artifact, precision="fp16")
    with pytest.raises(EngineError, match="another clip geometry"):
        OnnxRuntimeEngine(artifact, input_hw=(256, 464))
    with pytest.raises(EngineError, match="fewer persons"):
        OnnxRuntimeEngine(artifact, max_persons=64)
    with pytest.raises(BackendUnavailable, match=r"vmaedet\[gpu\]"):
        OnnxRuntimeEngine(artifact, providers=["tensorrt"])


def test_onnxruntime_engine_refuses_bad_artifacts(artifact: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    shutil.copy(artifact, bare)
    with pytest.raises(EngineError, match="has no manifest"):
        OnnxRuntimeEngine(bare)
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(artifact.read_bytes() + b"\0")
    shutil.copy(artifact.with_name("m.onnx.json"), tmp_path / "changed.onnx.json")
    with pytest.raises(EngineError, match="does not match its manifest"):
        OnnxRuntimeEngine(changed)
    other = tmp_path / "other.onnx"
    shutil.copy(artifact, other)
    manifest = json.loads(artifact.with_name("m.onnx.json").read_text())
    manifest["format"] = "vmaedet-artifact-0"
    (tmp_path / "other.onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match="unknown format"):
        OnnxRuntimeEngine(other)


def test_bench_engines_script(tmp_path: Path) -> None:
    """The benchmark runs end to end on a micro model and records ratios, errors and the environment."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import bench_engines

    out = tmp_path / "bench.json"
    assert bench_engines.main(["--variant", "vit_micro", "--input-size", "64x96", "--persons", "2", "--runs", "5",
                               "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"torch-fp32", "torch-bf16", "onnxruntime-fp32"}
    for res in data["results"].values():
        assert 0 < res["median_s"] <= res["p95_s"] and res["runs"] == 5
    assert data["results"]["torch-fp32"]["speedup_vs_torch_fp32"] == 1.0
    assert data["results"]["onnxruntime-fp32"]["error_vs_torch_fp32"]["max_abs_logit"] <= 1e-4
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_cores"] >= 1 and env["python"]
    assert env["git_commit"] is None or len(env["git_commit"].split("-")[0]) == 40


def test_onnxruntime_engine_feeds_the_names_the_manifest_gives(artifact: Path, tmp_path: Path) -> None:
    """A graph whose inputs/output are named otherwise runs when its manifest names them."""
    import onnx

    from vmaedet.export.manifest import sha256_file

    renames = {"clip": "video", "rois": "boxes"}
    manifest = json.loads(artifact.with_name("m.onnx.json").read_text())
    renames[manifest["input"]["names"]["output"]] = "action_logits"
    graph = onnx.load(str(artifact))
    for value in [*graph.graph.input, *graph.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(graph, str(renamed))
    manifest["input"]["names"] = {"clip": "video", "rois": "boxes", "output": "action_logits"}
    manifest["artifact"]["sha256"] = sha256_file(renamed)
    (tmp_path / "renamed.onnx.json").write_text(json.dumps(manifest))
    clip, rois = _inputs(3)
    with OnnxRuntimeEngine(renamed, threads=1) as eng, OnnxRuntimeEngine(artifact, threads=1) as ref:
        assert {i.name for i in eng.session.get_inputs()} == {"video", "boxes"}
        torch.testing.assert_close(eng.infer(clip, rois), ref.infer(clip, rois), rtol=0, atol=1e-6)


def test_onnxruntime_engine_takes_host_inputs_whatever_the_provider(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the CUDA provider first, inputs are still numpy feeds: device is "cpu", the provider is recorded."""
    import onnxruntime as ort

    gpu_first = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    class CudaFirstSession(ort.InferenceSession):
        """Test double: a real CPU session that reports the CUDA provider first (no GPU here)."""

        def __init__(self, path: str, opts: object, providers: list[str]) -> None:
            assert providers == gpu_first  # the engine asked for CUDA first
            super().__init__(path, opts, providers=["CPUExecutionProvider"])

        def get_providers(self) -> list[str]:
            return list(gpu_first)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(gpu_first))
    monkeypatch.setattr(ort, "InferenceSession", CudaFirstSession)
    with OnnxRuntimeEngine(artifact, threads=1) as eng:
        assert eng.device == "cpu" and eng.providers == gpu_first
        assert eng.describe()["providers"] == gpu_first and eng.describe()["device"] == "cpu"
        assert eng.infer(*_inputs(2)).shape == (2, 80)
