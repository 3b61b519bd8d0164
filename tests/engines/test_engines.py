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
from vmaedet.errors import BackendUnavailable, ConfigError, EngineError
from vmaedet.export.onnx import export_onnx
from vmaedet.models.checkpoints import save_detector
from helpers.models import micro_detector

HW = (64, 96)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return micro_detector()  # vit_micro, seed 0, logits of order 1


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
    with create_engine("onnxruntime", artifact, threads=1, device="cpu") as eng:
        assert isinstance(eng, OnnxRuntimeEngine) and eng.providers == ["CPUExecutionProvider"]
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



def test_a_missing_gpu_provider_is_refused_naming_the_extra(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this machine's onnxruntime has: on a CPU-only onnxruntime, asking for TensorRT or CUDA
    is refused up front, naming the gpu extra (the test pins the provider list, so it holds with
    onnxruntime-gpu installed too)."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for request in (dict(providers=["tensorrt"]), dict(providers=["cuda"]), dict(device="cuda")):
        with pytest.raises(BackendUnavailable, match=r"vmaedet\[gpu\]"):
            OnnxRuntimeEngine(artifact, **request)


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
    """The benchmark runs end to end on a micro model and records ratios, errors and the environment.

    Run as a user runs it (``python benchmarks/bench_engines.py``): a script, not a package module."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_engines.py"), "--variant", "vit_micro",
                          "--input-size", "64x96", "--persons", "2", "--runs", "5", "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
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

    from vmaedet.artifacts import sha256_file

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


# -- onnxruntime providers, options, IO binding (row 11) --------------------------------------
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_provider_resolution() -> None:
    from vmaedet.engines.onnxruntime_engine import resolve_providers

    gpu_ort = [TRT, CUDA, CPU]
    # tensorrt alone falls back to CUDA, then CPU — never straight to the CPU
    assert resolve_providers(["tensorrt"], gpu_ort) == [TRT, CUDA, CPU]
    assert resolve_providers(["trt", "cpu"], gpu_ort) == [TRT, CUDA, CPU]
    assert resolve_providers(["cuda"], gpu_ort) == [CUDA, CPU]
    assert resolve_providers(["cpu"], gpu_ort) == [CPU]
    # the device decides when no provider is named
    assert resolve_providers(None, gpu_ort, "cpu") == [CPU]
    assert resolve_providers(None, gpu_ort, "cuda:1") == [CUDA, CPU]
    assert resolve_providers(None, gpu_ort, None, gpu_present=True) == [CUDA, CPU]
    assert resolve_providers(None, gpu_ort, None, gpu_present=False) == [CPU]  # onnxruntime-gpu, no GPU
    assert resolve_providers(None, [CPU], None) == [CPU]
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider") as err:
        resolve_providers(["tensorrt"], [CUDA, CPU])
    assert "vmaedet[gpu]" in str(err.value)
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        resolve_providers(None, [CPU], "cuda")
    with pytest.raises(BackendUnavailable, match="uninstall"):  # both wheels: say how to repair
        resolve_providers(["cuda"], [CPU], installed=["onnxruntime", "onnxruntime-gpu"])
    with pytest.raises(EngineError, match="contradict"):
        resolve_providers(["cuda"], gpu_ort, "cpu")
    with pytest.raises(EngineError, match="contradict"):
        resolve_providers(["cpu"], gpu_ort, "cuda")
    with pytest.raises(EngineError, match="unknown device"):
        resolve_providers(None, gpu_ort, "gpu0")


def test_provider_check_refuses_a_dropped_gpu_provider() -> None:
    from vmaedet.engines.onnxruntime_engine import check_providers

    check_providers([CUDA, CPU], [CUDA, CPU])
    check_providers([TRT, CUDA, CPU], [TRT, CUDA, CPU])
    check_providers([CPU], [CPU])
    with pytest.raises(BackendUnavailable) as err:
        check_providers([CUDA, CPU], [CPU])
    text = str(err.value)
    assert "CUDAExecutionProvider" in text and "requested ['CUDAExecutionProvider', 'CPUExecutionProvider']" in text
    assert "got ['CPUExecutionProvider']" in text
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"):
        check_providers([TRT, CUDA, CPU], [CUDA, CPU])


def _fake_gpu_ort(monkeypatch: pytest.MonkeyPatch, loads: list[str]) -> list[dict]:
    """onnxruntime that offers TensorRT and CUDA, and whose sessions report ``loads`` as the providers
    that loaded; the session itself is a real CPU one.  Returns the (providers, options) it was asked for."""
    import onnxruntime as ort

    asked: list[dict] = []
    real = getattr(ort.InferenceSession, "real_session", ort.InferenceSession)

    class FakeGpuSession(real):  # type: ignore[misc, valid-type]
        real_session = real
        def __init__(self, path: str, opts: object, providers: list[str], provider_options: list[dict]) -> None:
            asked.append({"providers": list(providers), "options": list(provider_options)})
            super().__init__(path, opts, providers=[CPU])

        def get_providers(self) -> list[str]:
            return list(loads)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeGpuSession)
    return asked


def test_engine_refuses_a_session_that_silently_runs_on_the_cpu(artifact: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu whose CUDA provider fails to load (no driver, no cuDNN) logs and runs on the CPU:
    the engine refuses, naming what it asked for and what it got."""
    asked = _fake_gpu_ort(monkeypatch, loads=[CPU])
    with pytest.raises(BackendUnavailable, match="did not load the CUDAExecutionProvider") as err:
        OnnxRuntimeEngine(artifact, device="cuda", threads=1)
    assert "requested ['CUDAExecutionProvider', 'CPUExecutionProvider'], got ['CPUExecutionProvider']" in str(err.value)
    assert asked[0]["providers"] == [CUDA, CPU]
    asked.clear()
    _fake_gpu_ort(monkeypatch, loads=[CUDA, CPU])  # TensorRT did not load, CUDA did
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"):
        OnnxRuntimeEngine(artifact, providers=["tensorrt"], cache_dir=tmp_path / "cache", threads=1)


def test_engine_passes_provider_options_and_records_what_loaded(artifact: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_gpu_ort(monkeypatch, loads=[TRT, CUDA, CPU])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the providers "run", torch holds no CUDA tensor
    art = tmp_path / "m.onnx"
    shutil.copy(artifact, art)
    shutil.copy(artifact.with_name("m.onnx.json"), tmp_path / "m.onnx.json")
    with OnnxRuntimeEngine(art, providers=["tensorrt"], threads=1) as eng:
        assert eng.providers == [TRT, CUDA, CPU] and eng.describe()["providers"] == [TRT, CUDA, CPU]
        assert eng.device == "cpu"  # no torch CUDA: inputs are bound on the host, onnxruntime copies them
        assert eng.infer(*_inputs(2)).shape == (2, 80)
    (req,) = asked
    assert req["providers"] == [TRT, CUDA, CPU]
    trt, cuda, cpu = req["options"]
    cache = tmp_path / "m.onnx.trt-cache"
    assert cache.is_dir() and trt["trt_engine_cache_path"] == str(cache) == trt["trt_timing_cache_path"]
    assert trt["trt_profile_max_shapes"] == f"clip:1x3x16x{HW[0]}x{HW[1]},rois:4x5"
    assert cuda["device_id"] == trt["device_id"] == "0" and cpu == {}


def test_provider_options() -> None:
    from vmaedet.engines.onnxruntime_engine import provider_options

    clip = (1, 3, 16, 256, 464)
    trt, cuda, cpu = provider_options([TRT, CUDA, CPU], device_id=1, precision="fp16", cache_dir="/c",
                                      clip_shape=clip, max_persons=64)
    assert cpu == {}
    assert cuda["device_id"] == "1" and cuda["use_tf32"] == "1" and cuda["arena_extend_strategy"] == "kSameAsRequested"
    assert trt == {
        "device_id": "1", "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": "/c",
        "trt_timing_cache_enable": "True", "trt_timing_cache_path": "/c",
        "trt_profile_min_shapes": "clip:1x3x16x256x464,rois:1x5",
        "trt_profile_opt_shapes": "clip:1x3x16x256x464,rois:8x5",
        "trt_profile_max_shapes": "clip:1x3x16x256x464,rois:64x5",
    }
    (cuda32,) = provider_options([CUDA], precision="fp32")
    assert cuda32["device_id"] == "0" and cuda32["use_tf32"] == "0"  # fp32 parity (1e-4) needs true fp32 GEMMs
    (trt32,) = provider_options([TRT], precision="fp32", cache_dir="/c", clip_name="video", rois_name="boxes",
                                clip_shape=clip, max_persons=4)
    assert trt32["trt_fp16_enable"] == "False"
    assert trt32["trt_profile_opt_shapes"] == "video:1x3x16x256x464,boxes:4x5"  # opt K ≤ max persons
    with pytest.raises(EngineError, match="cache"):
        provider_options([TRT])


def test_io_binding_equals_numpy_feeds_on_the_cpu(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IO binding (torch tensors bound in place) gives what numpy feeds give, binds the caller's own
    buffer when it is already contiguous float32, and never hands out the reused output buffer."""
    with OnnxRuntimeEngine(artifact, device="cpu", threads=1) as bound, \
            OnnxRuntimeEngine(artifact, device="cpu", threads=1, io_binding=False) as fed:
        assert bound.device == "cpu" and bound.io_binding and not fed.io_binding
        pointers: list[int] = []
        real_binding = bound.session.io_binding

        def spy() -> object:
            b = real_binding()

            class Spy:
                def __getattr__(self, name: str) -> object:
                    return getattr(b, name)

                def bind_input(self, name, kind, index, dtype, shape, ptr):  # noqa: ANN001, ANN202
                    pointers.append(ptr)
                    assert kind == "cpu"
                    return b.bind_input(name, kind, index, dtype, shape, ptr)

            return Spy()

        monkeypatch.setattr(bound.session, "io_binding", spy, raising=False)
        monkeypatch.setattr(bound.session, "run", lambda *a, **k: pytest.fail("IO binding path used session.run"),
                            raising=False)
        results = []
        for k in (4, 1, 4):
            clip, rois = _inputs(k)
            out = bound.infer(clip, rois)
            torch.testing.assert_close(out, fed.infer(clip, rois), rtol=0, atol=1e-6)
            assert pointers[-2:] == [clip.data_ptr(), rois.data_ptr()]  # no copy of the caller's tensors
            results.append(out)
        assert results[0].data_ptr() != results[2].data_ptr()  # each call's result is its own tensor
        torch.testing.assert_close(results[0], results[2], rtol=0, atol=0)


# -- the stream runs the artifact where --device says (row 15) ---------------------------------
def test_stream_passes_the_device_to_artifact_engines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vmaedet.engines import base
    from vmaedet.runtime import pipeline

    calls = []  # the stream opens engines through open_engine, which creates them by name here
    monkeypatch.setattr(base, "create_engine", lambda name, *a, **k: calls.append((name, a, k)) or "engine")
    for artifact_name, device, name in (("m.onnx", "cuda", "onnxruntime"), ("m.onnx", "cpu", "onnxruntime"),
                                        ("m.engine", "cuda:1", "tensorrt"), ("m.plan", "cuda", "tensorrt")):
        assert pipeline._open_engine(tmp_path / artifact_name, "torch", device) == "engine"
        assert calls[-1] == (name, (tmp_path / artifact_name,), {"device": device})
    with pytest.raises(ConfigError, match="TensorRT engine runs on a CUDA GPU"):  # not silently elsewhere
        pipeline._open_engine(tmp_path / "m.engine", "torch", "cpu")


def test_stream_device_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default device "auto": a TensorRT plan runs on the GPU without a device given; an ONNX artifact
    lets onnxruntime choose (CUDA only where its provider exists); checkpoints follow the GPU."""
    from vmaedet.engines import base
    from vmaedet.runtime import pipeline

    calls = []
    monkeypatch.setattr(base, "create_engine", lambda name, *a, **k: calls.append((name, k)) or "engine")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    pipeline._open_engine(tmp_path / "m.engine", "torch", "auto")
    pipeline._open_engine(tmp_path / "m.onnx", "torch", "auto")
    pipeline._open_engine(tmp_path / "m.safetensors", "torch", "auto")
    # onnxruntime gets no device: its default (CUDA only where its provider exists and a GPU is seen)
    assert calls == [("tensorrt", {"device": "cuda"}), ("onnxruntime", {}), ("torch", {"device": "cuda"})]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        pipeline._open_engine(tmp_path / "m.engine", "torch", "auto")
    pipeline._open_engine(tmp_path / "m.safetensors", "torch", "auto")
    assert calls[-1] == ("torch", {"device": "cpu"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_stream_on_cuda_without_a_gpu_is_refused(artifact: Path) -> None:
    from vmaedet.runtime.pipeline import _open_engine

    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        _open_engine(artifact, "onnxruntime", "cuda")


def test_stream_with_an_onnx_artifact_and_a_device(model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: --device cpu runs the artifact on onnxruntime's CPU provider; --device cuda on a
    machine without a GPU stops with a clear error instead of running on the CPU."""
    import av
    import numpy as np

    from vmaedet.runtime import pipeline

    w, h = 96, 64
    video = tmp_path / "clip_000.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(24):
            img = np.full((h, w, 3), 40 + 4 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    proposals = tmp_path / "proposals.csv"
    proposals.write_text("".join(f"clip_000,{t},0.1,0.2,0.5,0.85,,0.9\n" for t in range(2)))
    art = export_onnx(model, tmp_path / "m.onnx", source_wh=(w, h), max_persons=4).path
    from vmaedet.engines import base
    from vmaedet.runtime.config import StreamConfig

    made = []
    real = base.create_engine  # what open_engine creates engines with
    monkeypatch.setattr(base, "create_engine", lambda *a, **k: made.append(k) or real(*a, **k))
    results = list(pipeline.stream(video, art, StreamConfig(stride=8, device="cpu"), person_detector=f"boxes:{proposals}"))
    assert made == [{"device": "cpu"}] and results and any(len(r.track_ids) for r in results)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
            list(pipeline.stream(video, art, StreamConfig(stride=8, device="cuda"), person_detector=f"boxes:{proposals}"))
        assert made[-1] == {"device": "cuda"}


# -- packaging: one onnxruntime per environment (row 12) ----------------------------------------
def test_extras_never_install_both_onnxruntime_wheels() -> None:
    import itertools
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]

    def names(reqs: list[str], seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for req in reqs:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", req)
            name = m.group(1).lower().replace("_", "-")
            if name == project["name"]:  # a self-reference: vmaedet[cpu] inside another extra
                for extra in (e.strip() for e in (m.group(2) or "").split(",") if e.strip()):
                    if extra not in seen:
                        out |= names(extras[extra], seen | {extra})
            else:
                out.add(name)
        return out

    wheels = {"onnxruntime", "onnxruntime-gpu"}
    assert not names(project["dependencies"]) & wheels, "the base install must not pick an onnxruntime wheel"
    assert "onnxruntime" in names(extras["cpu"]) and "onnxruntime-gpu" in names(extras["gpu"])
    assert "onnxruntime-gpu" not in names(extras["cpu"]) and "onnxruntime" not in names(extras["gpu"])
    for n in range(1, len(extras) + 1):
        for combo in itertools.combinations(sorted(extras), n):
            if {"cpu", "gpu"} <= set(combo):
                continue  # the two alternatives, never installed together
            got = names(project["dependencies"] + [r for e in combo for r in extras[e]])
            assert not wheels <= got, f"extras {combo} install both onnxruntime and onnxruntime-gpu"
