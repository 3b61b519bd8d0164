"""The ladder's task gates: bf16/fp16 rungs are held to top-5 agreement and mean |Δ score|, fp32 to 1e-4.

The failing rungs are real engines wrapped to add noise to their logits (:class:`NoisyEngine`): a
lower-precision engine that is really this bad cannot be produced on demand here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vmaedet.cli.main import main
from vmaedet.engines import open_engine
from vmaedet.export.parity import TASK_GATES, rung_gates
from vmaedet.models.checkpoints import save_detector
from vmaedet.tools.verify import make_inputs, run_rung
from tests.helpers.models import micro_detector

HW = (64, 96)


class NoisyEngine:
    """A real engine whose logits get Gaussian noise of std ``sigma`` (seeded): a deliberately bad engine."""

    def __init__(self, inner: Any, sigma: float, seed: int = 0) -> None:
        self.inner, self.sigma = inner, sigma
        self.generator = torch.Generator().manual_seed(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> "NoisyEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def infer(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        out = self.inner.infer(clip, rois)  # [K, 80]
        return out + self.sigma * torch.randn(out.shape, generator=self.generator).to(out)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return micro_detector(seed=0, head_std=0.5)


@pytest.fixture(scope="module")
def inputs(model):
    return make_inputs(model, HW, (1, 7), seed=0)


def test_a_good_bf16_rung_passes_the_task_gates(model, inputs) -> None:
    with open_engine(model, "torch", precision="bf16") as eng:
        rung = run_rung(eng, "torch", inputs, rung_gates("bf16"))
    assert rung.ok, rung.failures
    assert rung.tolerances == TASK_GATES
    assert 0 < rung.stats["mean_abs_score"] <= 5e-3 and rung.stats["top5_agreement"] >= 0.95
    assert rung.stats["persons"] == 8  # pooled over every person of the two clips


def test_a_perturbed_bf16_rung_fails_with_the_figures(model, inputs) -> None:
    with open_engine(model, "torch", precision="bf16") as eng:
        rung = run_rung(NoisyEngine(eng, sigma=1.0), "torch", inputs, rung_gates("bf16"))
    assert not rung.ok
    text = "; ".join(rung.failures)
    assert "top-5 agreement" in text and "< 0.950" in text, text
    assert f"mean |Δ score| {rung.stats['mean_abs_score']:.3g} > 0.005" in text
    assert rung.stats["top5_agreement"] < 0.95 and rung.stats["mean_abs_score"] > 5e-3


def test_small_noise_fails_fp32_but_not_the_task_gates(model, inputs) -> None:
    """fp32 keeps its 1e-4 logit gate: noise of 1e-3 fails it, and the lower precisions' task gates tolerate it."""
    with open_engine(model, "torch", precision="fp32") as eng:
        noisy = NoisyEngine(eng, sigma=1e-3)
        fp32 = run_rung(noisy, "torch", inputs, rung_gates("fp32"))
        task = run_rung(noisy, "torch", inputs, rung_gates("bf16"))
    assert not fp32.ok and fp32.failures[0].startswith("max |Δ logit|")
    assert task.ok, task.failures


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_detector(model, tmp_path_factory.mktemp("gates") / "micro.safetensors")


def _noisy_bf16(monkeypatch: pytest.MonkeyPatch, sigma: float) -> None:
    """Every torch engine opened in bf16 by the ladder is wrapped to add noise."""
    import vmaedet.engines as engines

    real = engines.open_engine

    def patched(source: Any, backend: str | None = None, **kwargs: Any) -> Any:
        eng = real(source, backend, **kwargs)
        return NoisyEngine(eng, sigma) if kwargs.get("precision") == "bf16" else eng

    monkeypatch.setattr(engines, "open_engine", patched)


def test_cli_verify_table_shows_the_task_gates_and_passes(ckpt: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "v.json"
    rc = main(["verify", "--checkpoint", str(ckpt), "--input-size", "64x96", "--engines", "torch-bf16,torch-fp16",
               "--json", str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0, text
    for needle in ("top-5", "mean |Δ score|", "max |Δ score|", "top-5 ≥ 0.95, mean |Δ score| ≤ 0.005",
                   "max |Δ logit| ≤ 0.0001"):
        assert needle in text
    assert all(len(line) <= 170 for line in text.splitlines())
    rows = {r["precision"]: r for r in json.loads(out_json.read_text())["rungs"]}
    assert rows["fp32"]["tolerances"] == {"logits_max_abs": 1e-4}
    assert rows["bf16"]["tolerances"] == rows["fp16"]["tolerances"] == TASK_GATES
    assert all(0 <= rows[p]["mean_abs_score"] <= 5e-3 for p in ("bf16", "fp16"))


def test_cli_verify_perturbed_bf16_rung_exits_1_with_the_figures(ckpt: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _noisy_bf16(monkeypatch, sigma=1.0)
    rc = main(["verify", "--checkpoint", str(ckpt), "--input-size", "64x96", "--engines", "torch-bf16"])
    text = capsys.readouterr().out
    assert rc == 1, text
    line = next(line for line in text.splitlines() if line.startswith("regression"))
    assert line.startswith("regression torch bf16: top-5 agreement 0.") and "< 0.950" in line
    assert "mean |Δ score|" in line and "max |Δ score|" in line and "gates: top-5 ≥ 0.95" in line
