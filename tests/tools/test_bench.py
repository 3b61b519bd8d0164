"""`vmaedet bench`: FLOP counting, measured peak, result schema, skipped engines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
import torch

from vmaedet.tools.bench import BenchConfig, count_flops, make_inputs, measure_matmul_peak, plot_latency, run_benchmark
from vmaedet.models import create_detector
from vmaedet.envinfo import module_version

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "bench_schema.json").read_text())


def _analytic_flops(n_tokens: int, d: int, depth: int, k: int, classes: int = 80) -> int:
    """Closed form: qkv + proj + MLP + the two attention products per block, the patch conv, the head."""
    per_block = 2 * n_tokens * d * 3 * d + 2 * n_tokens * d * d + 2 * 2 * n_tokens * d * 4 * d + 4 * n_tokens * n_tokens * d
    conv = 2 * n_tokens * (3 * 2 * 16 * 16) * d
    return depth * per_block + conv + 2 * k * d * classes


def test_count_flops_matches_closed_form() -> None:
    m = create_detector("vit_micro").eval()
    clip, rois = make_inputs((64, 96), 3)
    n = 8 * 4 * 6
    assert count_flops(m, clip, rois) == _analytic_flops(n, 64, 2, 3)
    # The fused attention path is restored afterwards.
    assert all(b.attn.attn_impl == "sdpa" for b in m.blocks)


def test_matmul_peak_positive() -> None:
    assert measure_matmul_peak(torch.float32, n=256, iters=2) > 1e6
    # bounded time whatever the kernel: a budget far below one 2048² product still returns promptly
    t0 = time.perf_counter()
    assert measure_matmul_peak(torch.bfloat16, n=2048, iters=2, budget_s=0.05) > 0
    assert time.perf_counter() - t0 < 30


def test_run_benchmark_schema_and_skips(tmp_path: Path) -> None:
    cfg = BenchConfig(engines=("torch", "onnxruntime", "tensorrt"), precisions=("fp32", "bf16"), variant="vit_micro",
                      persons=(1, 4), input_hw=(64, 96), warmup=1, iters=2, workdir=str(tmp_path / "work"))
    result = run_benchmark(cfg)
    jsonschema.validate(result, SCHEMA)
    ok = [r for r in result["results"] if r["status"] == "ok"]
    by = {(r["engine"], r["precision"], r["persons"]): r for r in ok}
    assert {("torch", "fp32", 1), ("torch", "fp32", 4), ("torch", "bf16", 4), ("onnxruntime", "fp32", 4)} <= set(by)
    assert by[("torch", "fp32", 4)]["max_abs_score_diff"] < 1e-6
    assert by[("onnxruntime", "fp32", 4)]["max_abs_score_diff"] < 1e-4
    assert by[("torch", "bf16", 4)]["max_abs_score_diff"] < 5e-2
    for r in ok:
        assert r["fraction_of_peak"] == pytest.approx(r["achieved_flops_per_s"] / result["peak_flops_per_s"][r["precision"]])
        assert r["latency_ms"]["p95"] >= r["latency_ms"]["min"] > 0
    skipped = {(r["engine"], r["precision"]): r["reason"] for r in result["results"] if r["status"] == "skipped"}
    assert ("onnxruntime", "bf16") in skipped
    if not torch.cuda.is_available():
        assert ("tensorrt", "fp32") in skipped and ("tensorrt", "bf16") in skipped
    png = plot_latency(result, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A broken result fails the schema (the schema can fail).
    bad = json.loads(json.dumps(result))
    del bad["results"][0]["status"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


@pytest.mark.skipif(module_version("openvino") is None, reason="openvino is not installed (extra: openvino)")
def test_run_benchmark_openvino(tmp_path: Path) -> None:
    """OpenVINO runs the fp32 export; bf16 runs only where the CPU has native bf16, else it is skipped with the reason."""
    from vmaedet.engines.openvino_engine import native_bf16

    cfg = BenchConfig(engines=("openvino",), precisions=("fp32", "bf16", "fp16"), variant="vit_micro", persons=(2,),
                      input_hw=(64, 96), warmup=1, iters=2, workdir=str(tmp_path / "work"))
    result = run_benchmark(cfg)
    jsonschema.validate(result, SCHEMA)
    rows = {r["precision"]: r for r in result["results"]}
    assert rows["fp32"]["status"] == "ok" and rows["fp32"]["max_abs_score_diff"] < 1e-4
    assert rows["fp32"]["latency_ms"]["p50"] > 0
    assert rows["fp16"]["status"] == "skipped" and "not benchmarked in fp16" in rows["fp16"]["reason"]
    if native_bf16()[0]:
        assert rows["bf16"]["status"] == "ok" and rows["bf16"]["max_abs_score_diff"] < 5e-2
    else:
        assert rows["bf16"]["status"] == "skipped" and "no native bf16" in rows["bf16"]["reason"]


def test_bench_cli_bad_input() -> None:
    from vmaedet.cli.main import main

    assert main(["bench", "--persons", "a,b"]) == 2
    assert main(["bench", "--precision", "fp8"]) == 2
    assert main(["bench", "--engines", "tensorflow"]) == 2
    assert main(["bench", "--input-size", "250x464", "--variant", "vit_micro", "--engines", "torch"]) == 2


# -- the one timing loop (vmaedet.tools.timing) -----------------------------------------------------
def test_time_calls_warms_up_then_times_and_keeps_the_last_result() -> None:
    from vmaedet.tools.timing import time_calls

    calls, syncs = [], []
    t = time_calls(lambda: calls.append(len(calls)) or len(calls), repeats=5, warmup=2, sync=lambda: syncs.append(1))
    assert len(calls) == 7 and t.runs == 5 and t.warmup == 2 and t.result == 7
    assert len(syncs) == 1 + 2 * 5  # once after the warm-up, then before and after every timed run
    assert all(s >= 0 for s in t.times_s) and t.min_s <= t.p50_s <= t.p95_s <= max(t.times_s)
    with pytest.raises(ValueError):
        time_calls(lambda: None, repeats=0)


def test_one_percentile_definition() -> None:
    """Interpolated percentiles: p95 of five runs lies between the 4th and 5th (the old scripts took one run)."""
    from vmaedet.tools.timing import Timing, percentile

    t = Timing((0.5, 0.1, 0.4, 0.2, 0.3), warmup=0)
    assert t.p50_s == pytest.approx(0.3) and t.p95_s == pytest.approx(0.48) and t.mean_s == pytest.approx(0.3)
    assert t.ms() == pytest.approx({"p50": 300.0, "p95": 480.0, "mean": 300.0, "min": 100.0})
    assert percentile([1.0, 2.0], 50) == 1.5
