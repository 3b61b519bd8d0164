"""The parity ladder: error statistics on hand-computed cases and the `vmaedet verify` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vmaedet.cli.main import main
from vmaedet.export.onnx import export_onnx
from vmaedet.models import create_detector
from vmaedet.models.checkpoints import save_detector
from vmaedet.envinfo import module_version
from vmaedet.export.parity import error_stats, within


def test_error_stats_hand_computed() -> None:
    ref = torch.arange(80, dtype=torch.float64).reshape(1, 80) / 10  # top-5: classes 79..75
    other = ref.clone()
    other[0, 79] = -1.0  # class 79 leaves the top-5; class 74 enters → 4 of 5 agree
    other[0, 0] = 0.5
    s = error_stats(ref, other)
    assert s["max_abs_logit"] == pytest.approx(7.9 + 1.0)
    assert s["mean_abs_logit"] == pytest.approx((8.9 + 0.5) / 80)
    assert s["max_abs_score"] == pytest.approx(1 / (1 + math.exp(-7.9)) - 1 / (1 + math.exp(1.0)))
    assert s["top5_agreement"] == pytest.approx(0.8)
    assert within(s, {"logits_max_abs": 10.0}) == []
    assert len(within(s, {"logits_max_abs": 1.0, "top5_min": 0.9})) == 2
    assert error_stats(torch.zeros(0, 80), torch.zeros(0, 80))["top5_agreement"] == 1.0


def test_within_refuses_nan_figures() -> None:
    """An engine that returns NaN must fail every gate, not pass it (NaN compares false both ways)."""
    nan = float("nan")
    stats = {"max_abs_logit": nan, "mean_abs_logit": nan, "max_abs_score": nan, "top5_agreement": nan}
    assert len(within(stats, {"logits_max_abs": 1e-4, "scores_max_abs": 1e-4, "top5_min": 0.95})) == 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    root = tmp_path_factory.mktemp("verify")
    ckpt = save_detector(model, root / "micro.safetensors")
    art = export_onnx(model, root / "micro.onnx", input_hw=(64, 96), max_persons=4, checkpoint=ckpt).path
    return ckpt, art


def test_cli_verify_table(exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, art = exported
    out_json = tmp_path / "v.json"
    rc = main(["verify", str(art), "--engines", "torch-bf16", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0, text
    for needle in ("torch (ref)", "fp32", "bf16", "onnxruntime #1", "max |Δ logit|", "top-5", "mean |Δ score|",
                   "top-5 ≥ 0.95, mean |Δ score| ≤ 0.005", "max |Δ logit| ≤ 0.0001"):
        assert needle in text
    rows = json.loads(out_json.read_text())["rungs"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime #1", "fp32")]
    assert all(r["ok"] for r in rows) and rows[2]["max_abs_logit"] <= 1e-4
    assert 0 < rows[1]["max_abs_score"] <= 5e-2  # bf16 really differs, within its tolerance


def test_cli_verify_without_artifact(exported, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = exported
    rc = main(["verify", "--checkpoint", str(ckpt), "--input-size", "64x96", "--engines", "torch-fp16", "--persons", "2"])
    assert rc == 0 and "fp16" in capsys.readouterr().out


def test_cli_verify_regression_exits_nonzero(exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tighten the recorded tolerance below the real float32 error: the ladder must report a regression."""
    ckpt, art = exported
    strict = tmp_path / art.name
    strict.write_bytes(art.read_bytes())
    manifest = json.loads(art.with_name(art.name + ".json").read_text())
    manifest["tolerances"] = {"logits_max_abs": 1e-12}
    strict.with_name(strict.name + ".json").write_text(json.dumps(manifest))
    rc = main(["verify", str(strict), "--checkpoint", str(ckpt)])
    out = capsys.readouterr().out
    assert rc == 1 and "regression" in out and "onnxruntime #1" in out


def test_cli_verify_bad_input(exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, art = exported
    assert main(["verify", str(tmp_path / "missing.onnx")]) == 2
    assert "artifact not found" in capsys.readouterr().err
    changed = tmp_path / "changed.safetensors"
    changed.write_bytes(ckpt.read_bytes())
    manifest = json.loads(art.with_name(art.name + ".json").read_text())
    manifest["checkpoint"]["path"] = str(changed)
    moved = tmp_path / art.name
    moved.write_bytes(art.read_bytes())
    moved.with_name(moved.name + ".json").write_text(json.dumps(manifest))
    changed.write_bytes(ckpt.read_bytes()[:-1] + b" ")
    assert main(["verify", str(moved)]) == 2
    assert "changed since export" in capsys.readouterr().err
    assert main(["verify", "--checkpoint", str(ckpt), "--engines", "tensorflow"]) == 2
    assert "unknown engine rung" in capsys.readouterr().err


@pytest.mark.skipif(module_version("openvino") is None, reason="openvino is not installed (extra: openvino)")
def test_cli_verify_openvino_rung(exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--engines openvino``: the artifact also runs on OpenVINO, held to its recorded fp32 tolerance."""
    from vmaedet.engines.openvino_engine import native_bf16

    _, art = exported
    out_json = tmp_path / "v.json"
    rc = main(["verify", str(art), "--engines", "openvino", "--json", str(out_json)])
    assert rc == 0, capsys.readouterr()
    rows = json.loads(out_json.read_text())["rungs"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnxruntime #1", "fp32"),
                                                             ("openvino #1", "fp32")]
    assert rows[2]["ok"] and 0 < rows[2]["max_abs_logit"] <= 1e-4
    rc = main(["verify", str(art), "--engines", "openvino-bf16"])
    captured = capsys.readouterr()
    if native_bf16()[0]:
        assert rc == 0 and "openvino #1" in captured.out
    else:  # no native bf16 here: refused in words, not emulated
        assert rc == 2 and "no native bf16" in captured.err


def test_cli_verify_openvino_rung_needs_an_artifact(exported, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = exported
    assert main(["verify", "--checkpoint", str(ckpt), "--input-size", "64x96", "--engines", "openvino"]) == 2
    assert "runs an exported artifact" in capsys.readouterr().err
    assert main(["verify", "--checkpoint", str(ckpt), "--engines", "openvino-fp16"]) == 2
    assert "unknown engine rung" in capsys.readouterr().err
