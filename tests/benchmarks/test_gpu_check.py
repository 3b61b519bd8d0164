"""`make gpu-check` (benchmarks/gpu_check.py) on the CPU, and the torch engine's GPU options where a CPU can test them.

The script itself runs in smoke mode here (no GPU): every step is recorded, the GPU steps say why
they were skipped, and a failing or overrunning step is recorded while the next steps still run.
The helpers of steps 4–6 run on the CPU with a micro model (step 5, the multi-camera run, with small frames), so their code paths are exercised before a
GPU ever sees them; CUDA-only parts (graphs, the matmul peak) are refused or skipped here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers.scripts import ROOT, load_script
from vmaedet.engines.torch_engine import TorchEngine, _check_options
from vmaedet.errors import EngineError
from vmaedet.models import create_detector

gpu_check = load_script("benchmarks/gpu_check.py", "gpu_check")  # a script, not a package module: loaded from its path
Options, Step, run_checks = gpu_check.Options, gpu_check.Step, gpu_check.run_checks

HW = (64, 96)


def _load(out: Path) -> dict:
    return json.loads(out.read_text())


# -- the script ---------------------------------------------------------------------------------------
def test_smoke_run_records_every_step(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = _load(out)
    md = out.with_suffix(".md").read_text()
    assert doc["schema"] == "vmaedet-gpu-check-1" and doc["mode"] == "smoke" and doc["finished"]
    assert [s["id"] for s in doc["steps"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert doc["steps"][4]["name"] == "multistream" and doc["options"]["stream"]["sources"] == 8
    env = doc["environment"]
    assert env["torch"] == torch.__version__ and env["python"] and "git_commit" in env
    first = doc["steps"][0]
    assert first["status"] == "ok", first
    fig = first["figures"]
    assert fig["torch"] == torch.__version__ and fig["numpy"] and "onnxruntime_providers" in fig
    assert isinstance(fig["numpy_attribute_conversion"]["conversion_raises"], bool)
    build = fig["triton_build"]  # this machine: gcc and the Python headers (Triton's launcher builds)
    assert build["ok"] is (bool(build["c_compiler"]) and bool(build["python_h"]))
    assert ("WARNING Triton cannot build" in first["summary"]) is (not build["ok"])
    assert "available" in fig["tensorrt_status"] and fig["tensorrt_status"]["reason"]
    for step in doc["steps"][1:]:
        assert step["status"] == "skipped" and step["reason"].strip(), step
        if not torch.cuda.is_available():
            assert step["reason"].startswith("no CUDA GPU")
    for step in doc["steps"]:
        assert f"| {step['id']} | {step['title']} | {step['status']} |" in md


def _ok(ctx, rec) -> None:
    rec["figures"]["value"] = 42
    rec["summary"] = "fine"


def _boom(ctx, rec) -> None:
    rec["figures"]["before"] = 1
    raise RuntimeError("injected failure")


def test_a_failing_step_is_recorded_and_later_steps_run(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    steps = [Step(1, "first", "first", 10, _ok, needs_cuda=False),
             Step(2, "boom", "boom", 10, _boom, needs_cuda=False),
             Step(3, "after", "after", 10, _ok, needs_cuda=False)]
    doc = run_checks(Options(steps=frozenset({1, 2, 3})), out, steps)
    on_disk = _load(out)
    assert [s["status"] for s in on_disk["steps"]] == ["ok", "failed", "ok"]
    failed = on_disk["steps"][1]
    assert "RuntimeError: injected failure" in failed["reason"] and "injected failure" in failed["traceback"]
    assert failed["figures"] == {"before": 1}  # what it measured before failing is kept
    assert on_disk["steps"][2]["figures"] == {"value": 42}
    assert doc["steps"][1]["status"] == "failed"
    assert "| 2 | boom | failed |" in out.with_suffix(".md").read_text()


def test_a_step_over_its_budget_is_failed_and_the_next_runs(tmp_path: Path) -> None:
    def slow(ctx, rec) -> None:
        rec["figures"]["started"] = True
        try:
            time.sleep(30)
        except Exception:  # a step's own catch-all must not swallow the timeout
            rec["figures"]["swallowed"] = True

    out = tmp_path / "gc.json"
    t0 = time.monotonic()
    doc = run_checks(Options(steps=frozenset({1, 2})), out,
                     [Step(1, "slow", "slow", 1, slow, needs_cuda=False), Step(2, "next", "next", 10, _ok, needs_cuda=False)])
    assert time.monotonic() - t0 < 10
    slow_rec, next_rec = doc["steps"]
    assert slow_rec["status"] == "failed" and "budget" in slow_rec["reason"]
    assert slow_rec["figures"] == {"started": True}
    assert next_rec["status"] == "ok"


def test_each_step_is_saved_as_soon_as_it_ends(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    seen = {}

    def peek(ctx, rec) -> None:
        doc = _load(out)
        seen["statuses"] = [s["status"] for s in doc["steps"]]

    run_checks(Options(steps=frozenset({1, 2, 3})), out,
               [Step(1, "a", "a", 10, _ok, needs_cuda=False), Step(2, "peek", "peek", 10, peek, needs_cuda=False),
                Step(3, "c", "c", 10, _ok, needs_cuda=False)])
    assert seen["statuses"] == ["ok", "running", "pending"]


def test_gpu_steps_skip_without_cuda_and_unselected_steps_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "_cuda_state", lambda device: (False, "no CUDA GPU (test)"))
    doc = run_checks(Options(steps=frozenset({1})), tmp_path / "g.json",
                     [Step(1, "gpu", "gpu", 10, _boom), Step(2, "cpu", "cpu", 10, _boom, needs_cuda=False)])
    assert [(s["status"], s["reason"]) for s in doc["steps"]] == [
        ("skipped", "no CUDA GPU (test)"), ("skipped", "not selected (--steps 1)")]


def test_roi_steps_are_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps 2/3 call benchmarks/gpu_check_roi.py; a missing or broken module is a recorded step, not a crash."""
    step = Step(2, "roi", "roi", 10, gpu_check._roi_step("step_triton"), needs_cuda=False)

    def run_with(module_or_exc) -> dict:
        def fake(name: str):
            assert name == "gpu_check_roi"
            if isinstance(module_or_exc, BaseException):
                raise module_or_exc
            return module_or_exc

        monkeypatch.setattr(gpu_check, "_sibling", fake)
        return run_checks(Options(steps=frozenset({2})), tmp_path / "g.json", [step])["steps"][0]

    rec = run_with(None)
    assert rec["status"] == "skipped" and "gpu_check_roi.py" in rec["reason"]
    rec = run_with(SyntaxError("bad line"))
    assert rec["status"] == "failed" and "cannot be imported" in rec["reason"] and "bad line" in rec["reason"]
    rec = run_with(SimpleNamespace())
    assert rec["status"] == "failed" and "no step_triton" in rec["reason"]
    rec = run_with(SimpleNamespace(step_triton=lambda device: {"status": "weird", "reason": "?"}))
    assert rec["status"] == "failed" and "'weird'" in rec["reason"]
    rec = run_with(SimpleNamespace(step_triton=lambda device: 3))
    assert rec["status"] == "failed" and "not a dict" in rec["reason"]
    rec = run_with(SimpleNamespace(step_triton=lambda device: {"status": "ok", "reason": "", "max_err": 1e-6, "device": device}))
    assert rec["status"] == "ok" and rec["figures"] == {"max_err": 1e-6, "device": "cuda"}
    rec = run_with(SimpleNamespace(step_triton=lambda device: {"status": "skipped", "reason": "triton: not installed"}))
    assert rec["status"] == "skipped" and rec["reason"] == "triton: not installed"


def test_numpy_attribute_check_matches_this_numpy() -> None:
    import numpy as np

    res = gpu_check.numpy_attribute_check()
    try:
        int(np.array([3], dtype=np.int32))
        raises = False
    except TypeError:
        raises = True
    assert res["conversion_raises"] is raises and res["numpy"] == np.__version__


# -- step 4's helpers on the CPU ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["vit_micro", "vit_seed_tiny"])
def test_analytic_flops_match_the_flop_counter(variant: str) -> None:
    from vmaedet.tools.bench import count_flops

    model = create_detector(variant).eval()
    clip, rois = gpu_check.random_inputs(HW, 3)
    assert gpu_check.vit_flops(variant, HW, 3) == count_flops(model, clip, rois)


def test_realistic_head_gives_logits_of_order_one_to_ten() -> None:
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    clip, rois = gpu_check.random_inputs(HW, 16)
    ref, rng = gpu_check.realistic_head(model, clip, rois)
    assert ref.shape == (16, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(clip, rois), ref, rtol=0, atol=1e-5)  # the reference is the model's output
    assert 1.0 <= rng["mean_abs"] <= 10.0 and rng["max"] - rng["min"] > 5.0


def test_torch_parity_runs_on_cpu_and_can_fail() -> None:
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    clip, rois = gpu_check.random_inputs(HW, 4)
    ref, _ = gpu_check.realistic_head(model, clip, rois)
    res = gpu_check.torch_parity(model, ref, clip, rois, device="cpu", hw=HW, ks=(0, 1, 4), precisions=("fp32", "bf16"),
                                 graphs=(False,))
    assert res["failures"] == [] and len(res["rows"]) == 6
    assert all(r["within_tolerance"] for r in res["rows"])
    bad = gpu_check.torch_parity(model, ref + 0.5, clip, rois, device="cpu", hw=HW, ks=(1,), precisions=("fp32",),
                                 graphs=(False,))
    assert bad["failures"] and "logit" in bad["failures"][0]


def test_torch_latency_runs_on_cpu() -> None:
    res = gpu_check.torch_latency("vit_micro", device="cpu", hw=HW, persons=2, precision="fp32", cuda_graph=False,
                                  iters=5, warmup=1, peak_flops=1e12)
    assert res["runs"] == 5 and 0 < res["min_ms"] <= res["p50_ms"] <= res["p95_ms"]
    assert res["flops_per_clip"] == gpu_check.vit_flops("vit_micro", HW, 2) and 0 < res["fraction_of_bf16_peak"]


def test_target_verdict() -> None:
    assert gpu_check.target_verdict({"p50_ms": 2.5, "fraction_of_bf16_peak": 0.5}, "NVIDIA H200")["verdict"] == "met"
    assert gpu_check.target_verdict({"p50_ms": 3.5, "fraction_of_bf16_peak": 0.5}, "NVIDIA H100 80GB HBM3")["verdict"] == "not met"
    assert gpu_check.target_verdict({"p50_ms": 2.5, "fraction_of_bf16_peak": 0.3}, "NVIDIA H200")["verdict"] == "not met"
    assert gpu_check.target_verdict({}, "NVIDIA A10")["verdict"].startswith("not applicable")


def test_ort_check_runs_on_the_cpu_provider(tmp_path: Path) -> None:
    """Step 5's code path (export, providers used, host feeds, IO binding) on the CPU provider."""
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    clip, rois = gpu_check.random_inputs(HW, 2)
    ref, _ = gpu_check.realistic_head(model, clip, rois)
    res = gpu_check.ort_check(model, ref, clip, rois, tmp_path, hw=HW, provider="cpu", device="cpu",
                              precisions=("fp32",), iters=5)
    assert res["failures"] == [], res["failures"]
    (row,) = res["rows"]
    assert row["providers_used"][0] == "CPUExecutionProvider"
    assert row["host_feeds"]["max_abs_logit"] <= 1e-3 and row["io_binding"]["max_abs_logit"] <= 1e-3
    assert row["io_binding"]["runs"] == 5
    # the fallback used when the engine has no io_binding option: binding set up on its session
    from vmaedet.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(tmp_path / "ort_fp32.onnx", providers=["cpu"]) as eng:
        bound = gpu_check._raw_binding(eng.session, eng.manifest.input.names.as_dict(), clip, rois, "cpu")
        torch.testing.assert_close(bound(), eng.infer(clip, rois), rtol=0, atol=1e-6)


# -- the torch engine's options -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_detector("vit_micro").eval()
    with torch.no_grad():
        m.head.weight.normal_(0, 0.5)  # logits of order 1
    return m


def test_sdpa_and_naive_attention_agree_on_cpu_fp32(micro) -> None:
    clip, rois = gpu_check.random_inputs(HW, 3)
    assert {b.attn.attn_impl for b in micro.blocks} == {"sdpa"}
    with TorchEngine(micro, attn_impl="naive") as naive, TorchEngine(micro, attn_impl="sdpa") as sdpa:
        assert naive.describe()["attn_impl"] == "naive" and sdpa.describe()["attn_impl"] == "sdpa"
        assert {b.attn.attn_impl for b in naive.model.blocks} == {"naive"}
        a, b = naive.infer(clip, rois), sdpa.infer(clip, rois)
    assert (a - b).abs().max() <= 1e-5 and a.abs().max() > 0.1
    assert {b.attn.attn_impl for b in micro.blocks} == {"sdpa"}  # the caller's model is unchanged


def test_engine_option_errors(micro) -> None:
    with pytest.raises(EngineError, match="attention implementation"):
        TorchEngine(micro, attn_impl="flash")
    with pytest.raises(EngineError, match="precision"):
        TorchEngine(micro, precision="fp64")
    with pytest.raises(EngineError, match="CUDA graphs need a CUDA device"):
        TorchEngine(micro, device="cpu", cuda_graph=True, input_hw=HW, max_persons=4)
    cuda = torch.device("cuda", 0)  # the checks that follow the device check, without a GPU
    with pytest.raises(EngineError, match="static shapes"):
        _check_options("bf16", None, True, False, cuda, None, 4)
    with pytest.raises(EngineError, match="static shapes"):
        _check_options("bf16", None, True, False, cuda, HW, None)
    with pytest.raises(EngineError, match="cannot be combined"):
        _check_options("bf16", None, True, True, cuda, HW, 4)
    _check_options("bf16", "sdpa", True, False, cuda, HW, 4)  # a valid graph request passes


def test_engine_describe_reports_the_options(micro) -> None:
    with TorchEngine(micro, precision="bf16") as eng:
        d = eng.describe()
    assert d["attn_impl"] == "sdpa" and d["cuda_graph"] is False and d["precision"] == "bf16"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_engine_matches_eager_on_gpu(micro, precision: str) -> None:
    """On a GPU: the replayed graph (rois padded to max_persons) equals eager at every K."""
    clip, rois = gpu_check.random_inputs(HW, 4)
    with TorchEngine(micro, precision=precision, device="cuda", input_hw=HW, max_persons=4) as eager, \
            TorchEngine(micro, precision=precision, device="cuda", input_hw=HW, max_persons=4, cuda_graph=True) as graph:
        assert graph.describe()["cuda_graph"] is True
        for k in (4, 1, 3, 0, 4):
            torch.testing.assert_close(graph.infer(clip, rois[:k]), eager.infer(clip, rois[:k]), rtol=0,
                                       atol=1e-4 if precision == "fp32" else 2e-2)


# -- steps 4 and 5 end to end on the CPU (their glue: records, summaries, verdicts) --------------------
def _cpu_options(**kw) -> Options:
    return Options(device="cpu", variants=("vit_micro",), parity_variant="vit_micro", export_variant="vit_micro", hw=HW,
                   parity_ks=(0, 1, 3), cuda_graph=False, peak_n=128, iters=5, warmup=1, **kw)


def test_torch_step_end_to_end_on_cpu(tmp_path: Path) -> None:
    doc = run_checks(_cpu_options(steps=frozenset({4})), tmp_path / "g.json",
                     [Step(4, "torch", "torch", 120, gpu_check.step_torch, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "ok", rec
    fig = rec["figures"]
    assert fig["parity"]["failures"] == [] and len(fig["parity"]["rows"]) == 9  # 3 precisions × K 0, 1, 3
    assert 1.0 <= fig["parity"]["logit_range"]["mean_abs"] <= 10.0
    (lat,) = fig["latency"]
    assert lat["variant"] == "vit_micro" and lat["p50_ms"] > 0 and lat["fraction_of_bf16_peak"] > 0
    assert fig["target"]["verdict"].startswith("not applicable") and "parity ok" in rec["summary"]


def test_onnxruntime_step_end_to_end_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    real_check = gpu_check.ort_check
    monkeypatch.setattr(gpu_check, "ort_check", lambda *a, **kw: real_check(
        *a, **{**kw, "provider": "cpu", "device": "cpu", "precisions": ("fp32",), "iters": 5}))
    doc = run_checks(_cpu_options(steps=frozenset({5})), tmp_path / "g.json",
                     [Step(5, "ort", "ort", 120, gpu_check.step_onnxruntime, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "ok", rec
    assert rec["figures"]["rows"][0]["providers_used"][0] == "CPUExecutionProvider"
    assert "host" in rec["summary"] and "IO binding" in rec["summary"]


def test_onnxruntime_and_tensorrt_steps_say_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "tensorrt") else real_find(name, *a))
    doc = run_checks(_cpu_options(steps=frozenset({5, 6})), tmp_path / "g.json",
                     [Step(5, "ort", "ort", 10, gpu_check.step_onnxruntime, needs_cuda=False),
                      Step(6, "trt", "trt", 10, gpu_check.step_tensorrt, needs_cuda=False)])
    for rec in doc["steps"]:
        assert rec["status"] == "skipped" and rec["reason"].startswith("skipped: not installed"), rec


def test_pytest_step_runs_the_marked_tests_and_reports_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: g\n    trt: t\n")
    (tmp_path / "tests" / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.gpu\ndef test_a():\n    pass\n\n@pytest.mark.trt\ndef test_b():\n    assert False\n\n"
        "def test_c():\n    pass\n")
    monkeypatch.setattr(gpu_check, "REPO_ROOT", tmp_path)
    doc = run_checks(Options(steps=frozenset({7})), tmp_path / "g.json",
                     [Step(7, "pytest", "pytest", 60, gpu_check.step_pytest, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "failed" and rec["figures"]["returncode"] == 1
    assert "1 failed" in rec["figures"]["summary_line"] and "1 passed" in rec["figures"]["summary_line"]
    assert "1 deselected" in rec["figures"]["summary_line"]


# -- step 5 (many cameras, one engine) on the CPU: its glue; the run itself in test_gpu_multistream.py ---
def test_multistream_step_end_to_end_on_cpu(tmp_path: Path) -> None:
    opts = Options(device="cpu", steps=frozenset({5}), stream_variant="vit_micro", stream_sources=2,
                   stream_size=(160, 120), stream_seconds=2.0, stream_precision="fp32", stream_detector="scene")
    doc = run_checks(opts, tmp_path / "g.json",
                     [Step(5, "multistream", "many cameras", 90, gpu_check.step_multistream, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "ok", rec
    fig = rec["figures"]
    assert set(fig["sources"]) == {"cam0", "cam1"} and fig["config"]["frame_size"] == [160, 120]
    assert all(s["frames_produced"] == 60 for s in fig["sources"].values())  # 2 s at 30 fps
    assert fig["consistency_failures"] == [] and "definition" in fig["verdict"] and "cuda_graph" in fig["engine_options"]
    assert fig["goal"]["verdict"].startswith("not applicable")
    assert "2 × 160×120 @ 30 fps" in rec["summary"] and "goal: not applicable" in rec["summary"]
    md = (tmp_path / "g.md").read_text()
    assert "| 5 | many cameras | ok |" in md and "keyframes/s" in md


def test_multistream_step_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = gpu_check._multistream_module()
    monkeypatch.setattr(mod, "missing_modules", lambda: ["cv2 (opencv-python-headless)"])
    doc = run_checks(Options(device="cpu", steps=frozenset({5})), tmp_path / "g.json",
                     [Step(5, "multistream", "many cameras", 10, gpu_check.step_multistream, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "skipped" and rec["reason"].startswith("skipped: not installed (cv2")


def test_multistream_figures_that_do_not_add_up_fail_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = gpu_check._multistream_module()
    monkeypatch.setattr(mod, "run_multistream", lambda **kw: {"consistency_failures": ["cam0: processed 3 ≠ read 2 − dropped 0"]})
    monkeypatch.setattr(mod, "summary_line", lambda res: "summary")
    doc = run_checks(Options(device="cpu", steps=frozenset({5})), tmp_path / "g.json",
                     [Step(5, "multistream", "many cameras", 60, gpu_check.step_multistream, needs_cuda=False)])
    rec = doc["steps"][0]
    assert rec["status"] == "failed" and "do not add up" in rec["reason"] and "processed 3" in rec["reason"]


def test_multistream_goal() -> None:
    goal_cfg = {"sources": 8, "frame_size": [1920, 1080], "fps": 30.0, "stride": 8, "arch": "vit_base_patch16_224"}
    met = {"config": goal_cfg, "verdict": {"sustained": True}}
    assert gpu_check.multistream_goal(met, "NVIDIA H200")["verdict"] == "met"
    assert gpu_check.multistream_goal({**met, "verdict": {"sustained": False}}, "NVIDIA H100 80GB HBM3")["verdict"] == "not met"
    assert gpu_check.multistream_goal(met, "NVIDIA A10")["verdict"].startswith("not applicable (the goal is for")
    small = {**met, "config": {**goal_cfg, "sources": 4}}
    assert gpu_check.multistream_goal(small, "NVIDIA H200")["verdict"].startswith("not applicable (the run was not")
