"""The OpenVINO engine: parity with torch, K = 0, the compiled-model cache, manifest and bf16 refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vmaedet.envinfo import module_version
from vmaedet.errors import BackendUnavailable, EngineError
from vmaedet.export.onnx import export_onnx
from vmaedet.models import create_detector

from vmaedet.engines import open_engine
from vmaedet.engines.openvino_engine import OpenVINOEngine, native_bf16
from helpers.models import micro_detector

HW = (64, 96)
needs_openvino = pytest.mark.skipif(module_version("openvino") is None, reason="openvino is not installed (extra: openvino)")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return micro_detector()  # vit_micro, seed 0, logits of order 1


@pytest.fixture(scope="module")
def artifact(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("ov") / "m.onnx", input_hw=HW, max_persons=4).path


def _inputs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(k)
    clip = (torch.randint(0, 256, (1, 3, 16, *HW), generator=g).float() - 118.0) / 57.375  # [1, 3, 16, H, W]
    rois = torch.tensor([[0, 2, 3, 40, 60], [0, 30, 10, 95, 63], [0, 0, 0, 96, 64], [0, 10, 20, 30, 50]])[:k].float()
    return clip, rois  # [k, 5]


def _torch_fp32(model: torch.nn.Module, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(clip, rois)  # [K, 80]


@needs_openvino
def test_fp32_matches_torch_and_k0(model: torch.nn.Module, artifact: Path, tmp_path: Path) -> None:
    with open_engine(artifact, "openvino", device="cpu", threads=1, cache_dir=tmp_path / "c") as eng:
        assert isinstance(eng, OpenVINOEngine) and (eng.name, eng.precision, eng.device) == ("openvino", "fp32", "cpu")
        assert (eng.input_hw, eng.max_persons) == (HW, 4)
        assert eng.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"  # set explicitly
        assert str(eng.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
        assert eng.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        worst = 0.0
        for k in (1, 3, 4):  # the rois axis is dynamic: one compiled model for every K
            clip, rois = _inputs(k)
            out = eng.infer(clip, rois)
            ref = _torch_fp32(model, clip, rois)
            assert out.shape == (k, 80) and out.dtype == torch.float32
            assert ref.abs().max() > 0.1  # logits of a realistic scale, not all near zero
            worst = max(worst, float((out - ref).abs().max()))
        print(f"openvino fp32 vs torch fp32: max |Δ logit| {worst:.2e}")
        assert worst <= 1e-4, worst  # measured here: about 1e-6
        clip, _ = _inputs(1)
        empty = eng.infer(clip, torch.zeros(0, 5))
        assert empty.shape == (0, 80)
        with pytest.raises(EngineError, match="more persons than the engine was built for"):
            eng.infer(clip, torch.zeros(5, 5))
        with pytest.raises(EngineError, match="fixed clip geometry"):
            eng.infer(torch.zeros(1, 3, 16, 64, 64), torch.zeros(1, 5))


@needs_openvino
def test_the_compiled_model_cache_is_written_and_reused(artifact: Path, tmp_path: Path) -> None:
    art = tmp_path / "m.onnx"
    shutil.copy(artifact, art)
    shutil.copy(artifact.with_name(artifact.name + ".json"), art.with_name(art.name + ".json"))
    clip, rois = _inputs(2)
    t0 = time.perf_counter()
    with open_engine(art, "openvino", threads=1) as first:
        cold = time.perf_counter() - t0
        assert first.loaded_from_cache is False
        expected = first.infer(clip, rois)
    manifest = json.loads(art.with_name(art.name + ".json").read_text())
    cache = tmp_path / "m.onnx.ov-cache" / manifest["artifact"]["sha256"][:16]  # beside the artifact, per content
    assert first.cache_dir == cache
    blobs = sorted(p.name for p in cache.iterdir() if p.is_file())
    assert blobs and all(p.stat().st_size > 0 for p in cache.iterdir())
    t0 = time.perf_counter()
    with open_engine(art, "openvino", threads=1) as second:
        warm = time.perf_counter() - t0
        assert second.loaded_from_cache is True
        assert torch.equal(second.infer(clip, rois), expected)
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == blobs  # loaded from it, nothing new compiled
    print(f"openvino start: {cold:.3f} s compiling, {warm:.3f} s from the cache")
    with open_engine(art, "openvino", threads=1, cache=False) as uncached:
        assert uncached.cache_dir is None and uncached.loaded_from_cache is False
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == blobs


@needs_openvino
def test_manifest_refusals(artifact: Path, tmp_path: Path) -> None:
    manifest = json.loads(artifact.with_name(artifact.name + ".json").read_text())

    def copy_with(name: str, data: dict, payload: bytes | None = None) -> Path:
        path = tmp_path / name
        path.write_bytes(payload if payload is not None else artifact.read_bytes())
        path.with_name(path.name + ".json").write_text(json.dumps(data))
        return path

    fp16 = copy_with("fp16.onnx", {**manifest, "precision": "fp16"})  # an fp16 export
    with pytest.raises(EngineError, match="another precision") as info:
        open_engine(fp16, "openvino")
    assert "fp16" in str(info.value) and "fp32" in str(info.value)
    changed = copy_with("changed.onnx", manifest, artifact.read_bytes() + b" ")
    with pytest.raises(EngineError, match="does not match its manifest"):
        open_engine(changed, "openvino")
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(artifact.read_bytes())
    with pytest.raises(EngineError, match="has no manifest"):
        open_engine(bare, "openvino")
    with pytest.raises(EngineError, match="accepts fewer persons"):
        open_engine(artifact, "openvino", max_persons=8)
    with pytest.raises(EngineError, match="runs on the CPU"):
        open_engine(artifact, "openvino", device="cuda")
    with pytest.raises(EngineError, match="artifact of the onnxruntime engine, not of tensorrt") as info:
        open_engine(artifact, "tensorrt")  # the other refusals stay
    assert "'openvino'" in str(info.value)
    with open_engine(artifact, device="cpu") as default:  # no backend: still onnxruntime
        assert default.name == "onnxruntime"


@needs_openvino
def test_bf16_runs_only_on_a_cpu_with_native_bf16(model: torch.nn.Module, artifact: Path, tmp_path: Path) -> None:
    import openvino as ov

    native, why = native_bf16(ov.Core())
    if not native:  # e.g. an AVX2-only CPU: a real refusal, before anything is compiled
        with pytest.raises(BackendUnavailable, match="no native bf16") as info:
            open_engine(artifact, "openvino", precision="bf16", cache_dir=tmp_path / "c")
        text = str(info.value)
        assert "precision 'bf16'" in text and "avx512_bf16/AMX" in text and "use precision fp32" in text
        return
    from vmaedet.export.parity import error_stats

    with open_engine(artifact, "openvino", precision="bf16", threads=2, cache_dir=tmp_path / "c") as eng:
        assert eng.precision == "bf16"
        assert eng.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
        clip, rois = _inputs(4)
        stats = error_stats(_torch_fp32(model, clip, rois).double(), eng.infer(clip, rois))
    assert stats["top5_agreement"] >= 0.95, (why, stats)
    assert 0 < stats["max_abs_logit"], "bf16 asked for but fp32 ran"


@needs_openvino
def test_unknown_precision_is_refused(artifact: Path) -> None:
    with pytest.raises(EngineError, match="no such precision"):
        open_engine(artifact, "openvino", precision="fp16x")


def test_a_missing_openvino_names_the_extra(artifact: Path) -> None:
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from vmaedet.engines import open_engine\n"
        "from vmaedet.errors import BackendUnavailable\n"
        "try:\n"
        f"    open_engine({str(artifact)!r}, 'openvino')\n"
        "except BackendUnavailable as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('opened')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "openvino is not installed" in done.stdout and "vmaedet[openvino]" in done.stdout, done.stdout


@needs_openvino
def test_doctor_reports_openvino_and_whether_bf16_is_native() -> None:
    import openvino as ov

    from vmaedet.tools.doctor import collect

    (row,) = [r for r in collect() if r["component"] == "OpenVINO"]
    native, _ = native_bf16(ov.Core())
    assert row["status"] == "ok" and ov.__version__.split("-")[0] in row["detail"] and "devices: CPU" in row["detail"]
    assert ("bf16: native" in row["detail"]) == native and ("bf16: not native" in row["detail"]) == (not native)


@needs_openvino
def test_stream_runs_an_onnx_artifact_on_openvino(model: torch.nn.Module, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`vmaedet stream --backend openvino --engine model.onnx`: the artifact runs on OpenVINO (device auto → the CPU)."""
    import av
    import numpy as np

    from vmaedet.cli.main import main
    from vmaedet.engines import base
    from vmaedet.runtime import pipeline

    w, h = 96, 64
    video = tmp_path / "clip_000.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(24):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 + 4 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    proposals = tmp_path / "proposals.csv"
    proposals.write_text("".join(f"clip_000,{t},0.1,0.2,0.5,0.85,,0.9\n" for t in range(2)))
    art = export_onnx(model, tmp_path / "m.onnx", source_wh=(w, h), max_persons=4).path
    made = []
    real = base.create_engine
    monkeypatch.setattr(base, "create_engine", lambda name, *a, **k: made.append((name, k)) or real(name, *a, **k))
    jsonl = tmp_path / "events.jsonl"
    rc = main(["stream", "--source", str(video), "--engine", str(art), "--backend", "openvino", "--detector",
               f"boxes:{proposals}", "--max-persons", "4", "--jsonl", str(jsonl), "--quiet"])
    assert rc == 0 and made == [("openvino", {})]  # device auto: the engine's own (the CPU)
    assert jsonl.read_text().strip()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine: still no CUDA device for openvino
    with pipeline._open_engine(art, "openvino", "auto") as eng:
        assert eng.name == "openvino" and eng.device == "cpu"


@needs_openvino
def test_a_batched_artifact_runs_several_clips_in_one_call(model: torch.nn.Module, tmp_path: Path) -> None:
    """max_batch > 1: a dynamic batch axis; each roi's logits equal those of its clip run alone."""
    art = export_onnx(model, tmp_path / "b.onnx", input_hw=HW, max_persons=6, max_batch=3).path
    (c0, _), (c1, _) = _inputs(1), _inputs(2)
    clips = torch.cat([c0, c1])  # [2, 3, 16, H, W]
    rois = torch.tensor([[1, 2, 3, 40, 60], [0, 30, 10, 95, 63], [1, 0, 0, 96, 64]]).float()  # [3, 5]
    with open_engine(art, "openvino", threads=1, cache_dir=tmp_path / "c") as eng:
        assert eng.max_batch == 3
        out = eng.infer(clips, rois)  # [3, 80]
        alone = torch.cat([eng.infer(clips[int(r[0]):int(r[0]) + 1], torch.cat([r[:1] * 0, r[1:]])[None])
                           for r in rois])
        with pytest.raises(EngineError, match="more than the openvino engine takes"):
            eng.infer(torch.cat([clips, clips]), rois)
    assert out.shape == (3, 80) and float((out - alone).abs().max()) <= 1e-4
    with torch.no_grad():
        assert float((out - model(clips, rois)).abs().max()) <= 1e-4
    with pytest.raises(EngineError, match="max_batch|clips"):  # asked for more clips per call than exported for
        open_engine(art, "openvino", max_batch=4, cache=False)


@needs_openvino
def test_a_reexport_to_the_same_path_never_loads_the_old_compiled_model(tmp_path: Path) -> None:
    """OpenVINO keys a cached model given by path on the path, not the bytes: the engine keys it on the sha256."""
    clip, rois = _inputs(2)
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = create_detector("vit_micro").eval()
        with torch.no_grad():
            m.head.weight.normal_(0, 0.5)
        art = export_onnx(m, tmp_path / "m.onnx", input_hw=HW, max_persons=4).path  # the same path both times
        with open_engine(art, "openvino", threads=1) as eng:
            assert eng.loaded_from_cache is False, f"seed {seed}: a compiled model of other weights was loaded"
            assert float((eng.infer(clip, rois) - _torch_fp32(m, clip, rois)).abs().max()) <= 1e-4
    assert len([d for d in (tmp_path / "m.onnx.ov-cache").iterdir() if d.is_dir()]) == 2
