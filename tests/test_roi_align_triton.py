"""Triton RoIAlign+max kernel = float64 reference = torch composition.

On the CPU the kernel runs in Triton's interpreter, which needs ``TRITON_INTERPRET=1`` before
``import triton``: the cases run in a subprocess (this file executed as a script) so the variable
applies cleanly and the rest of the suite keeps a normal Triton.  With a CUDA GPU the same cases
run in-process on the device.

Tolerances: FP32 features ≤ 1e-5 absolute (FP32 coordinates and accumulation vs float64; values
of order 1–25); FP16 features ≤ 4e-3 (the output is rounded to FP16: half an ulp at |x| < 4 is
1e-3, plus FP16 inputs read exactly); hand-computed cases ≤ 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

BORDER_ROIS = [
    [0, 0.0, 0.0, 127.0, 95.0],  # whole image
    [1, -40.0, -30.0, 300.0, 200.0],  # larger than the map
    [0, 60.0, 40.0, 61.0, 40.5],  # tiny
    [1, 120.0, 90.0, 160.0, 140.0],  # past the bottom-right edge
    [0, 17.3, 33.9, 88.1, 71.2],  # fractional
    [1, -50.0, -50.0, -20.0, -18.0],  # entirely outside: every bin 0
]


def run_cases(device: str) -> dict[str, tuple[float, float]]:
    """Every case → (max |error|, tolerance); the kernel on ``device``."""
    from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference, roi_align_max_triton

    results: dict[str, tuple[float, float]] = {}

    def record(name: str, got: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        err = (got.double().cpu() - expected.double().cpu()).abs().max().item() if got.numel() else 0.0
        results[name] = (err, tol)

    # Hand-computed: f(y, x) = 5y + x on 5×5 (see test_roi_align.py for the derivations).
    arange = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5).to(device)  # [1, 1, 5, 5]
    boxes = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 2.0, 2.0, 2.1, 2.1], [0, -1.0, -1.0, 0.4, 0.4],
                          [0, 0.0, 0.0, 8.0, 8.0]], device=device)
    hand = torch.tensor([[6 * 6.5 * 4 / 7], [6 * (2 + 6.5 / 7)], [6 * 0.3], [6 * (26 / 7 + 4) / 2]])
    record("hand_computed", roi_align_max_triton(arange, boxes, 1.0), hand, 1e-5)
    record("outside_gives_zero", roi_align_max_triton(arange - 100, boxes[:0].new_tensor([[0, -3.0, -3.0, -1.0, -1.0]]), 1.0),
           torch.zeros(1, 1), 0.0)

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 6, 8, generator=gen)  # [B, C, h, w]: a 96×128 input at 1/16
    xy = torch.rand(10, 2, generator=gen) * torch.tensor([140.0, 110.0]) - 10
    wh = torch.rand(10, 2, generator=gen) * torch.tensor([110.0, 80.0]) + 0.5
    idx = torch.randint(0, 2, (10, 1), generator=gen).float()
    rois = torch.cat([torch.tensor(BORDER_ROIS), torch.cat([idx, xy, xy + wh], dim=1)])  # [K, 5]
    ref = roi_align_max_reference(feats, rois)  # [K, C] float64
    f_dev, r_dev = feats.to(device), rois.to(device)
    out = roi_align_max_triton(f_dev, r_dev)  # [K, C]
    record("fp32_vs_reference", out, ref, 1e-5)
    record("fp32_vs_torch_composition", out, roi_align_max(feats, rois), 1e-5)
    half = feats.half()
    out_half = roi_align_max_triton(half.to(device), r_dev)
    assert out_half.dtype == torch.float16
    record("fp16_vs_reference", out_half, roi_align_max_reference(half, rois), 4e-3)
    record("aligned_ratio2_vs_reference", roi_align_max_triton(f_dev, r_dev, sampling_ratio=2, aligned=True),
           roi_align_max_reference(feats, rois, sampling_ratio=2, aligned=True), 1e-5)
    record("odd_channels", roi_align_max_triton(f_dev[:, :5], r_dev), ref[:, :5], 1e-5)
    record("empty_rois", roi_align_max_triton(f_dev, r_dev[:0]), torch.zeros(0, 16), 0.0)
    return results


def _check(results: dict[str, tuple[float, float]]) -> None:
    failures = {k: v for k, v in results.items() if not v[0] <= v[1]}
    assert not failures, f"cases over tolerance (max error, tolerance): {failures}"


@pytest.mark.slow
def test_triton_kernel_in_interpreter_on_cpu() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {k: tuple(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    assert len(results) == 8
    _check(results)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_triton_kernel_on_gpu() -> None:
    _check(run_cases("cuda"))


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.errors import BackendUnavailable
    from vmaedet.ops.roi_align import roi_align_max_triton

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="TRITON_INTERPRET"):
        roi_align_max_triton(torch.zeros(1, 4, 5, 6), torch.tensor([[0, 0.0, 0.0, 8.0, 8.0]]))


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (the interpreter must be on before triton is imported)")
    print(json.dumps(run_cases("cpu")))
