"""A torch engine in a precision this CPU only emulates says so (and how to do better); the CLI says it in words."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from vmaedet.engines import torch_engine
from vmaedet.engines.torch_engine import TorchEngine, emulated_on_cpu
from vmaedet.errors import EngineWarning
from helpers.models import micro_detector


@pytest.mark.parametrize("flags, precision, warns", [
    ({"avx2", "fma"}, "bf16", True),
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16", False),
    ({"avx2", "amx_tile", "amx_bf16"}, "bf16", False),
    ({"avx2", "avx512_bf16"}, "fp16", True),  # bf16 hardware does not make fp16 native
    ({"avx512_fp16"}, "fp16", False),
    ({"avx2"}, "fp32", False),
    (None, "bf16", False),  # no /proc/cpuinfo (not Linux): nothing is known, nothing said
])
def test_torch_engine_warns_when_the_cpu_emulates_its_precision(monkeypatch: pytest.MonkeyPatch, flags: set[str] | None,
                                                                precision: str, warns: bool) -> None:
    monkeypatch.setattr(torch_engine, "cpu_flags", lambda: flags)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = TorchEngine(micro_detector(), precision=precision)
    said = [str(w.message) for w in caught if issubclass(w.category, EngineWarning)]
    assert len(said) == int(warns)
    if warns:
        native = torch_engine.NATIVE_CPU_FLAGS[precision]
        assert said[0].startswith(f"{precision} on this CPU is emulated") and all(f in said[0] for f in native)
        assert "Use precision fp32" in said[0]
    logits = engine.infer(torch.randn(1, 3, 16, 32, 32), torch.tensor([[0.0, 2, 2, 20, 20]]))  # it still runs
    assert logits.shape == (1, 80) and torch.isfinite(logits).all()


def test_a_gpu_engine_never_asks_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_engine, "cpu_flags", lambda: pytest.fail("CPU flags read for a CUDA device"))
    assert emulated_on_cpu("bf16", torch.device("cuda")) is None


def test_cli_prints_the_warning_as_a_sentence(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    from vmaedet.cli.main import main

    monkeypatch.setattr(torch_engine, "cpu_flags", lambda: {"avx2"})
    out = tmp_path / "b.json"
    before = warnings.showwarning
    rc = main(["bench", "--variant", "vit_micro", "--engines", "torch", "--precision", "bf16", "--persons", "1",
               "--input-size", "32x32", "--warmup", "0", "--iters", "1", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert rc == 0 and json.loads(out.read_text())["results"][0]["precision"] == "bf16"
    assert "warning: bf16 on this CPU is emulated" in err
    assert "EngineWarning" not in err and "torch_engine.py" not in err  # no class name, no source line
    assert warnings.showwarning is before  # main() put Python's own warning display back
