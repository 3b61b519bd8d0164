"""`vmaedet bench`: accuracy columns and gates, int8 rows (calibrated in bench's folder), refused bf16, auto.

Real onnxruntime and OpenVINO (where installed), ``vit_micro`` (tests/helpers/models.py) at 96×128 and a
tiny synthetic AVA-format dataset (2 videos of 6 s) for the int8 calibration, as tests/export/test_int8.py.
The failing gate is a real engine wrapped to add noise (a lower-precision engine that bad cannot be
produced on demand here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from vmaedet.cli.main import main
from vmaedet.data.synthetic import generate
from vmaedet.engines.base import engine_availability
from vmaedet.envinfo import module_version
from vmaedet.export.parity import TASK_GATES
from vmaedet.models.checkpoints import save_detector
from vmaedet.tools.bench import BenchConfig, run_benchmark
from tests.helpers.models import micro_detector

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "bench_schema.json").read_text())
HAS_OPENVINO = module_version("openvino") is not None


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, videos=2, seconds=6, seed=3)
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_detector(micro_detector(seed=0, head_std=0.5), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


@pytest.fixture(scope="module")
def cli_run(ckpt: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict[str, Any]]:
    """One `vmaedet bench` run with every new row: onnxruntime/OpenVINO int8, OpenVINO bf16, auto."""
    engines = "torch,onnxruntime" + (",openvino" if HAS_OPENVINO else "") + ",auto"
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    import contextlib
    import io

    from vmaedet.cli import bench as cli_bench

    buf = io.StringIO()  # capsys is per test; this run is shared by the module's tests
    with contextlib.redirect_stdout(buf):
        cli_bench.console.file = buf
        try:
            rc = main(["bench", "--checkpoint", str(ckpt), "--engines", engines, "--precision", "fp32,bf16,int8",
                       "--calib", str(data), "--calib-clips", "2", "--gate-clips", "2", "--persons", "1,3",
                       "--input-size", "96x128", "--warmup", "0", "--iters", "1", "--out", str(out)])
        finally:
            cli_bench.console.file = None  # type: ignore[assignment]
    return rc, buf.getvalue(), json.loads(out.read_text()) if out.exists() else {}


def _rows(result: dict[str, Any], engine: str, precision: str) -> list[dict[str, Any]]:
    return [r for r in result["results"] if r["engine"] == engine and r["precision"] == precision]


@pytest.mark.parametrize("engine", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not HAS_OPENVINO, reason="openvino is not installed (extra: openvino)"))])
def test_int8_rows_have_accuracy_figures_and_the_calibration_time(cli_run, engine: str) -> None:
    rc, text, result = cli_run
    assert rc == 0, text
    rows = _rows(result, engine, "int8")
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["persons"] for r in rows] == [1, 3]
    fp32 = {r["persons"]: r for r in _rows(result, engine, "fp32")}
    for r in rows:
        assert 0 <= r["top5_agreement"] <= 1
        # int8 really differs from fp32 (the fp32 export of the same engine is ~1e-7 from torch)
        assert r["mean_abs_score_diff"] > 10 * fp32[r["persons"]]["mean_abs_score_diff"]
        assert r["max_abs_score_diff"] >= r["mean_abs_score_diff"] > 0
        assert r["gate"]["tolerances"] == TASK_GATES and r["gate"]["persons"] == 4
        assert r["gate"]["passed"] == (r["gate"]["top5_agreement"] >= 0.95 and r["gate"]["mean_abs_score_diff"] <= 5e-3)
        art = r["artifact"]
        assert art["precision"] == "int8" and art["calibration_clips"] == 2 and art["calibration_s"] > 0
        assert art["export_s"] >= art["calibration_s"] and art["export_gates"]["passed"] is True
    assert fp32[1]["gate"]["tolerances"] == {"logits_max_abs": 1e-4} and fp32[1]["gate"]["passed"]
    assert "int8 artifact (" in text and "calibrated on 2 clip(s)" in text


def test_one_int8_export_is_shared_by_the_engines(cli_run) -> None:
    _, _, result = cli_run
    arts = {json.dumps(r["artifact"], sort_keys=True) for r in result["results"]
            if r["status"] == "ok" and r["precision"] == "int8"}
    assert len(arts) == 1  # the same export (same times) for onnxruntime, OpenVINO and auto


def test_bf16_on_openvino_refused_or_run(cli_run) -> None:
    if not HAS_OPENVINO:
        pytest.skip("openvino is not installed (extra: openvino)")
    from vmaedet.engines.openvino_engine import native_bf16

    _, text, result = cli_run
    rows = _rows(result, "openvino", "bf16")
    if native_bf16()[0]:
        pytest.skip(f"this CPU has native bf16 ({native_bf16()[1]}): the row runs, nothing is refused")
    assert [r["status"] for r in rows] == ["skipped"]
    assert rows[0]["reason"].startswith("refused: ") and "no native bf16" in rows[0]["reason"]
    assert "refused openvino bf16: this CPU has no native bf16" in text


def test_auto_rows_name_the_engine_picked_and_why(cli_run) -> None:
    _, text, result = cli_run
    expected = "openvino" if engine_availability("cpu")["openvino"] else "onnxruntime"
    for precision in ("fp32", "int8"):
        rows = _rows(result, "auto", precision)
        assert rows and all(r["status"] == "ok" and r["backend"] == expected for r in rows)
        assert rows[0]["backend_reason"]
        assert f"auto {precision}: {expected} — {rows[0]['backend_reason']}" in text
    assert f"auto→{expected}" in text
    (bf16,) = _rows(result, "auto", "bf16")
    assert bf16["status"] == "skipped" and "name the engine" in bf16["reason"]


def test_torch_has_no_int8_row_and_the_table_has_the_accuracy_columns(cli_run) -> None:
    _, text, result = cli_run
    (row,) = _rows(result, "torch", "int8")
    assert row["status"] == "skipped" and "not benchmarked in int8" in row["reason"]
    for col in ("top-5", "mean|Δs|", "max|Δs|", "gate"):
        assert col in text


def test_int8_result_follows_the_schema(cli_run) -> None:
    """Needs docs/bench_schema.json to list int8 among the precisions (see the coordinator's note)."""
    jsonschema.validate(cli_run[2], SCHEMA)


def test_int8_without_calibration_data_is_skipped_with_how(tmp_path: Path) -> None:
    cfg = BenchConfig(engines=("onnxruntime",), precisions=("int8",), variant="vit_micro", persons=(1,),
                      input_hw=(64, 96), warmup=0, iters=1, workdir=str(tmp_path / "w"))
    (row,) = run_benchmark(cfg)["results"]
    assert row["status"] == "skipped" and "calibration data" in row["reason"]
    assert "`vmaedet bench --engines onnxruntime --precision int8 --calib DATA`" in row["reason"]


def test_a_perturbed_engine_fails_its_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """torch bf16 with noise on its logits: the gate fails with the figures; unperturbed, it passes."""
    import vmaedet.tools.bench as bench

    real = bench.open_engine

    class Noisy:
        def __init__(self, inner: Any) -> None:
            self.inner, self.g = inner, torch.Generator().manual_seed(0)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __enter__(self) -> "Noisy":
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.__exit__(*exc)

        def infer(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
            out = self.inner.infer(clip, rois)  # [K, 80]
            return out + torch.randn(out.shape, generator=self.g).to(out)

    cfg = BenchConfig(engines=("torch",), precisions=("fp32", "bf16"), variant="vit_micro", persons=(2, 5),
                      input_hw=(64, 96), warmup=0, iters=1, workdir=str(tmp_path / "w"))
    good = {r["precision"]: r["gate"] for r in run_benchmark(cfg)["results"]}
    assert good["fp32"]["passed"] and good["bf16"]["passed"]
    monkeypatch.setattr(bench, "open_engine", lambda *a, **k: Noisy(real(*a, **k)) if k.get("precision") == "bf16"
                        else real(*a, **k))
    bad_result = run_benchmark(cfg)
    bad = {r["precision"]: r["gate"] for r in bad_result["results"]}
    assert bad["fp32"]["passed"] and not bad["bf16"]["passed"]
    assert bad["bf16"]["persons"] == 7 and bad["bf16"]["tolerances"] == TASK_GATES
    assert any(f.startswith("top-5 agreement") for f in bad["bf16"]["failures"])
    assert f"mean |Δ score| {bad['bf16']['mean_abs_score_diff']:.3g} > 0.005" in bad["bf16"]["failures"]
    from vmaedet.cli.bench import _print_table

    _print_table(bad_result)
    text = capsys.readouterr().out
    assert "FAIL" in text and "gate failed torch bf16: top-5 agreement" in text and "(over 7 persons)" in text


def test_bench_cli_calib_checks(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--engines", "onnxruntime", "--precision", "int8", "--variant", "vit_micro"]) == 2
    assert "--precision int8 needs calibration data" in capsys.readouterr().err
    assert main(["bench", "--engines", "onnxruntime", "--precision", "fp32", "--calib", str(data)]) == 2
    assert "--calib is only used with --precision int8" in capsys.readouterr().err
    assert main(["bench", "--engines", "onnxruntime", "--precision", "int8", "--calib", str(tmp_path)]) == 2
    assert "not an AVA-format dataset" in capsys.readouterr().err
    assert main(["bench", "--engines", "autopilot"]) == 2


def test_an_int8_export_that_misses_its_gates_is_refused_once(ckpt: Path, data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A real gate miss (the head quantized with a range 1000× too small): every int8 row says refused, with
    the export's figures, and the export is tried once for all engines (not once per engine)."""
    import vmaedet.export.onnx as onnx_export
    from vmaedet.export.int8 import Int8Options

    calls = []
    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: calls.append(k["precision"]) or real(*a, **k))
    engines = ("onnxruntime", "auto") + (("openvino",) if HAS_OPENVINO else ())
    cfg = BenchConfig(engines=engines, precisions=("int8",), checkpoint=str(ckpt), persons=(1,), input_hw=(96, 128),
                      warmup=0, iters=1, workdir=str(tmp_path / "w"), calib=str(data), calib_clips=2, gate_clips=2,
                      int8=Int8Options(include_head=True, range_scale={"/head/Gemm": 1e-3}))
    result = run_benchmark(cfg)
    rows = result["results"]
    assert [r["engine"] for r in rows] == list(engines) and calls == ["int8"]
    for r in rows:
        assert r["status"] == "skipped" and r["reason"].startswith("refused: the int8 ONNX graph fails its accuracy gates")
        assert "top-5 agreement" in r["reason"] and "mean |Δ score|" in r["reason"]
    assert result["config"]["int8_options"]["include_head"] is True
