"""``choose_backend``: the fastest engine available here for a checkpoint or an artifact, and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vmaedet.engines.base import choose_backend, engine_availability

HW = (64, 96)
CPU_ALL = {"cuda": False, "openvino": True, "onnxruntime": True, "onnxruntime-cuda": False, "tensorrt": False}
GPU_ALL = {"cuda": True, "openvino": True, "onnxruntime": True, "onnxruntime-cuda": True, "tensorrt": True}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    return create_detector("vit_micro").eval()


@pytest.fixture(scope="module")
def artifacts(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models.checkpoints import save_detector

    root = tmp_path_factory.mktemp("choose")
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    return {"fp32": export_onnx(model, root / "f.onnx", input_hw=HW, max_persons=4).path,
            "fp16": export_onnx(model, root / "h.onnx", input_hw=HW, max_persons=4, precision="fp16").path,
            "ckpt": save_detector(model, root / "m.safetensors")}


def test_cpu_order_openvino_then_onnxruntime_then_torch(artifacts: dict[str, Path]) -> None:
    name, why = choose_backend(artifacts["fp32"], availability=CPU_ALL)
    assert name == "openvino" and "CPU" in why
    name, why = choose_backend(artifacts["fp32"], availability={**CPU_ALL, "openvino": False})
    assert name == "onnxruntime" and "OpenVINO is not installed" in why
    name, why = choose_backend(artifacts["fp16"], availability=CPU_ALL)  # OpenVINO runs fp32/int8 exports only
    assert name == "onnxruntime" and "fp16" in why
    name, why = choose_backend(artifacts["ckpt"], availability=CPU_ALL)
    assert name == "torch" and "vmaedet export" in why
    assert choose_backend(torch.nn.Identity(), availability=CPU_ALL)[0] == "torch"


def test_gpu_order(artifacts: dict[str, Path], tmp_path: Path) -> None:
    assert choose_backend(artifacts["fp32"], availability=GPU_ALL)[0] == "onnxruntime"  # CUDA provider
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"plan")
    assert choose_backend(plan, availability=GPU_ALL) == ("tensorrt", "a TensorRT plan runs on TensorRT only")
    name, why = choose_backend(artifacts["ckpt"], availability=GPU_ALL)
    assert name == "torch" and "GPU" in why
    name, why = choose_backend(artifacts["fp32"], availability={**GPU_ALL, "onnxruntime-cuda": False})
    assert name == "onnxruntime" and "no CUDA provider" in why


def test_availability_here() -> None:
    have = engine_availability("cpu")
    assert have["cuda"] is False and have["onnxruntime"] is True  # onnxruntime is a dependency
    assert set(have) == set(CPU_ALL)
    assert choose_backend(Path("x.safetensors"), device="cpu")[0] == "torch"


def test_cli_stream_prints_the_choice(artifacts: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from vmaedet.cli.main import main

    missing = tmp_path / "missing.mp4"  # the run stops at the source: the choice comes first
    assert main(["stream", "--source", str(missing), "--checkpoint", str(artifacts["ckpt"]), "--backend", "auto",
                 "--device", "cpu"]) == 2
    assert "backend: torch (a checkpoint runs on torch" in capsys.readouterr().err
    expected = choose_backend(artifacts["fp32"], device="cpu")[0]
    assert main(["stream", "--source", str(missing), "--engine", str(artifacts["fp32"]), "--backend", "auto",
                 "--device", "cpu"]) == 2
    assert f"backend: {expected} (" in capsys.readouterr().err
