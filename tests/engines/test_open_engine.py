"""One way from a model or an artifact to an engine (``open_engine``) and one onnxruntime session (``create_session``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vmaedet.engines import artifact_backend, open_engine
from vmaedet.engines.onnxruntime_engine import CPU, SessionLoadError, create_session
from vmaedet.errors import EngineError

HW = (64, 96)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    return create_detector("vit_micro").eval()


@pytest.fixture(scope="module")
def artifact(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vmaedet.export.onnx import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("art") / "m.onnx", input_hw=HW, max_persons=4).path


def test_an_artifact_opens_on_the_engine_its_manifest_names(artifact: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"  # no telling suffix: the manifest decides, not the file name
    shutil.copy(artifact, renamed)
    shutil.copy(artifact.with_name(artifact.name + ".json"), renamed.with_name(renamed.name + ".json"))
    assert artifact_backend(renamed) == "onnxruntime"
    with open_engine(renamed, device="cpu") as eng:
        assert eng.name == "onnxruntime" and eng.providers == [CPU] and eng.device == "cpu"
        assert (eng.input_hw, eng.max_persons) == (HW, 4)
    with pytest.raises(EngineError, match="artifact of the onnxruntime engine, not of tensorrt"):
        open_engine(renamed, "tensorrt")
    with pytest.raises(EngineError, match="another precision"):  # precision = what the artifact must be
        open_engine(renamed, precision="fp16")


def test_models_and_checkpoints_open_on_the_backend_named(model: torch.nn.Module, tmp_path: Path) -> None:
    from vmaedet.models.checkpoints import save_detector

    with open_engine(model, precision="bf16") as eng:  # no backend: torch
        assert (eng.name, eng.precision, eng.device) == ("torch", "bf16", "cpu")
    ckpt = save_detector(model, tmp_path / "m.safetensors")
    assert artifact_backend(ckpt) is None
    with open_engine(ckpt, "torch", device="cpu", input_hw=HW) as eng:
        assert eng.name == "torch" and eng.input_hw == HW
    with pytest.raises(EngineError, match="unknown engine"):
        open_engine(model, "tensorflow")


def test_open_engine_passes_the_device_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vmaedet.engines import base

    calls = []
    monkeypatch.setattr(base, "create_engine", lambda name, *a, **k: calls.append((name, k)) or "engine")
    open_engine(tmp_path / "m.onnx", device="cuda:1")
    open_engine(tmp_path / "m.plan", device="cuda:0", cuda_graph=True)
    open_engine(tmp_path / "m.onnx")
    assert calls == [("onnxruntime", {"device": "cuda:1"}), ("tensorrt", {"device": "cuda:0", "cuda_graph": True}),
                     ("onnxruntime", {})]


def test_create_session_runs_on_the_cpu_and_types_a_load_failure(artifact: Path, tmp_path: Path) -> None:
    session = create_session(artifact, device="cpu")
    assert session.get_providers() == [CPU]
    assert create_session(artifact.read_bytes(), device="cpu").get_inputs()[0].name == "clip"
    junk = tmp_path / "junk.onnx"
    junk.write_text("not an ONNX graph")
    with pytest.raises(SessionLoadError) as info:
        create_session(junk)
    err = info.value
    assert isinstance(err, EngineError) and err.path == str(junk) and err.reason and err.ort_version
    assert str(junk) in str(err) and "fix:" in str(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without a GPU")
def test_create_session_cuda_without_a_gpu_refuses_or_falls_back_when_asked(artifact: Path) -> None:
    from vmaedet.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        create_session(artifact, device="cuda")
    assert create_session(artifact, device="cuda", cpu_fallback=True).get_providers() == [CPU]
