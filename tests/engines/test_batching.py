"""Many cameras, one engine call: clips ``[B, 3, 16, H, W]`` and rois whose column 0 names the clip.

For the torch engine and the onnxruntime engine on a ``max_batch=4`` export of ``vit_micro``
(random weights): the logits of one call with B = 3 clips and rois spread over them equal the
logits of three one-clip calls (within 1e-5), a batch larger than the engine takes and a roi
naming a clip not in the call are refused with the fix, and a one-clip artifact keeps its
one-clip contract (and messages).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vmaedet.engines.onnxruntime_engine import CPU, TRT, OnnxRuntimeEngine, provider_options
from vmaedet.engines.torch_engine import TorchEngine
from vmaedet.errors import EngineError
from vmaedet.export.onnx import export_onnx
from helpers.models import micro_detector

HW = (64, 96)
MAX_BATCH = 4
#: roi → clip: out of order, clip 1 with three persons, clip 2 with one
INDEX = [2, 0, 1, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return micro_detector()  # vit_micro, seed 0, logits of order 1


@pytest.fixture(scope="module")
def batched_artifact(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("b4") / "m.onnx", input_hw=HW, max_persons=8,
                       max_batch=MAX_BATCH).path


@pytest.fixture(scope="module")
def one_clip_artifact(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("b1") / "m.onnx", input_hw=HW, max_persons=8).path


def _batch(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``b`` different clips ``[B, 3, 16, H, W]`` and rois ``[7, 5]`` spread over them (column 0: INDEX mod b)."""
    g = torch.Generator().manual_seed(seed)
    clip = (torch.randint(0, 256, (b, 3, 16, *HW), generator=g).float() - 118.0) / 57.375
    xy1 = torch.rand(len(INDEX), 2, generator=g) * torch.tensor([HW[1] - 20, HW[0] - 20])
    wh = 16 + torch.rand(len(INDEX), 2, generator=g) * (torch.tensor([HW[1], HW[0]]) - 16 - xy1)
    index = (torch.tensor(INDEX) % b).float()[:, None]
    return clip, torch.cat([index, xy1, xy1 + wh], dim=1)


def _one_call_per_clip(engine, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Three B = 1 calls (each clip with its own rois, index 0), the logits back in the rois' order."""
    out = torch.full((rois.shape[0], 80), float("nan"))
    for b in range(clip.shape[0]):
        mask = rois[:, 0] == b
        own = rois[mask].clone()
        own[:, 0] = 0
        out[mask] = engine.infer(clip[b:b + 1], own)
    return out


def _check_refusals(engine, clip: torch.Tensor, rois: torch.Tensor, max_batch: int) -> None:
    big = clip[:1].expand(max_batch + 1, -1, -1, -1, -1)
    with pytest.raises(EngineError, match="more than the") as info:
        engine.infer(big, rois)
    text = str(info.value)
    assert f"B = {max_batch + 1}" in text and f"max_batch ≥ {max_batch + 1}" in text  # received, the fix
    bad = rois.clone()
    bad[0, 0] = clip.shape[0]  # a clip not in the call
    with pytest.raises(EngineError, match=r"rois name clips that are not in the call") as info:
        engine.infer(clip, bad)
    assert f"integers in [0, {clip.shape[0] - 1}]" in str(info.value)
    bad[0, 0] = 0.5
    with pytest.raises(EngineError, match="not in the call"):
        engine.infer(clip, bad)
    bad[0, 0] = -1
    with pytest.raises(EngineError, match="not in the call"):
        engine.infer(clip, bad)


def test_torch_engine_batch_equals_one_clip_calls(model) -> None:
    clip, rois = _batch(3)
    with TorchEngine(model) as eng:
        assert eng.max_batch is None  # any number of clips
        batched = eng.infer(clip, rois)  # [7, 80]
        single = _one_call_per_clip(eng, clip, rois)
    assert batched.shape == (7, 80) and single.abs().max() > 1e-2
    assert (batched - single).abs().max() <= 1e-5
    with TorchEngine(model, max_batch=2) as eng:
        _check_refusals(eng, clip[:2], rois[rois[:, 0] < 2], 2)


def test_torch_engine_refuses_a_batch_with_a_cuda_graph(model) -> None:
    from vmaedet.engines.torch_engine import _check_options

    with pytest.raises(EngineError, match="holds one clip"):
        _check_options("fp32", None, True, False, torch.device("cuda", 0), HW, 8, max_batch=2)
    with pytest.raises(EngineError, match="at least 1 clip"):
        TorchEngine(model, max_batch=0)


@pytest.mark.parametrize("io_binding", [True, False])
def test_onnxruntime_engine_batch_equals_one_clip_calls(batched_artifact: Path, io_binding: bool) -> None:
    clip, rois = _batch(3)
    with OnnxRuntimeEngine(batched_artifact, device="cpu", threads=1, io_binding=io_binding) as eng:
        assert eng.max_batch == MAX_BATCH and eng.describe()["max_batch"] == MAX_BATCH
        batched = eng.infer(clip, rois)  # [7, 80]
        single = _one_call_per_clip(eng, clip, rois)
        assert eng.infer(clip, rois[:0]).shape == (0, 80)
        full, full_rois = _batch(MAX_BATCH, seed=1)
        assert eng.infer(full, full_rois).shape == (7, 80)
        _check_refusals(eng, clip, rois, MAX_BATCH)
    assert batched.shape == (7, 80) and single.abs().max() > 1e-2
    assert (batched - single).abs().max() <= 1e-5


def test_onnxruntime_batch_matches_the_torch_engine(model, batched_artifact: Path) -> None:
    clip, rois = _batch(3, seed=2)
    with OnnxRuntimeEngine(batched_artifact, device="cpu", threads=1) as eng, TorchEngine(model) as ref:
        assert (eng.infer(clip, rois) - ref.infer(clip, rois)).abs().max() <= 1e-4


def test_a_one_clip_artifact_keeps_its_contract(one_clip_artifact: Path, batched_artifact: Path) -> None:
    clip, rois = _batch(2)
    with OnnxRuntimeEngine(one_clip_artifact, device="cpu", threads=1) as eng:
        assert eng.max_batch == 1
        _check_refusals(eng, clip[:1], rois[rois[:, 0] == 0], 1)
        with pytest.raises(EngineError, match="clip has the wrong shape") as info:  # the message of before batching
            eng.infer(torch.zeros(1, 3, 8, *HW), rois[:1])
        assert "[1, 3, 16, H, W]" in str(info.value)
    with pytest.raises(EngineError, match="fewer clips per call") as info:
        OnnxRuntimeEngine(one_clip_artifact, max_batch=2)
    assert "max_batch=2" in str(info.value)
    OnnxRuntimeEngine(batched_artifact, max_batch=MAX_BATCH, device="cpu").close()


def test_tensorrt_provider_profile_covers_the_batch() -> None:
    clip = (1, 3, 16, 256, 464)
    (trt,) = provider_options([TRT], precision="fp16", cache_dir="/c", clip_shape=clip, max_persons=64, max_batch=8)
    assert trt["trt_profile_min_shapes"] == "clip:1x3x16x256x464,rois:1x5"
    assert trt["trt_profile_opt_shapes"] == "clip:4x3x16x256x464,rois:8x5"
    assert trt["trt_profile_max_shapes"] == "clip:8x3x16x256x464,rois:64x5"
    (two,) = provider_options([TRT], cache_dir="/c", clip_shape=clip, max_persons=4, max_batch=2)
    assert two["trt_profile_opt_shapes"] == "clip:2x3x16x256x464,rois:4x5"
    assert provider_options([CPU], max_batch=8) == [{}]


def test_the_engine_gives_onnxruntime_the_manifests_batch(batched_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TensorRT provider is asked for the manifest's clip range (the session itself is a real CPU one)."""
    import onnxruntime as ort

    asked: list[list[dict]] = []
    real = ort.InferenceSession

    class Session(real):  # type: ignore[misc, valid-type]
        def __init__(self, path: str, opts: object, providers: list[str], provider_options: list[dict]) -> None:
            asked.append(list(provider_options))
            super().__init__(path, opts, providers=[CPU])

        def get_providers(self) -> list[str]:
            return [TRT, "CUDAExecutionProvider", CPU]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, "CUDAExecutionProvider", CPU])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with OnnxRuntimeEngine(batched_artifact, providers=["tensorrt"], threads=1) as eng:
        assert eng.max_batch == MAX_BATCH
    trt = asked[0][0]
    assert trt["trt_profile_max_shapes"] == f"clip:{MAX_BATCH}x3x16x{HW[0]}x{HW[1]},rois:8x5"
