"""RoIAlign + max: torch composition vs float64 reference vs Triton kernel.

On a CPU-only machine the Triton kernel runs in Triton's interpreter (``TRITON_INTERPRET=1`` is set
here before Triton is imported): its timing measures the interpreter, not the kernel, and is
recorded only to show the cost of the CPU check.  With CUDA the three run on the GPU (reference on
the CPU), with warm-up and synchronisation.  Writes benchmarks/results/bench_roi_align.json.

    .venv/bin/python benchmarks/bench_roi_align.py [--persons 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede any import of triton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, write_json  # noqa: E402

from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference, roi_align_max_triton  # noqa: E402
from vmaedet.tools.timing import time_calls  # noqa: E402


def _time(fn: Callable[[], torch.Tensor], repeats: int, cuda: bool) -> dict[str, float]:
    """One warm-up (and Triton compilation), then ``repeats`` timed runs, CUDA synchronised around each."""
    t = time_calls(fn, repeats=repeats, warmup=1, sync=torch.cuda.synchronize if cuda else None)
    return {"p50_ms": 1e3 * t.p50_s, "p95_ms": 1e3 * t.p95_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    gen = torch.Generator().manual_seed(0)
    # ViT-B at 256×464: D 768, map 16×29.  The CPU interpreter gets a small map (C 16) to stay short.
    shape = (1, 768, 16, 29) if cuda else (1, 16, 16, 29)
    feats = torch.randn(*shape, generator=gen)  # [B, C, h, w]
    xy = torch.rand(args.persons, 2, generator=gen) * torch.tensor([300.0, 150.0])
    wh = torch.rand(args.persons, 2, generator=gen) * torch.tensor([150.0, 100.0]) + 16
    rois = torch.cat([torch.zeros(args.persons, 1), xy, xy + wh], dim=1)  # [K, 5]
    ref = roi_align_max_reference(feats, rois)
    f_dev, r_dev = feats.to(device), rois.to(device)
    results = {
        "torch_composition": _time(lambda: roi_align_max(f_dev, r_dev), args.repeats, cuda),
        "reference_float64_cpu": _time(lambda: roi_align_max_reference(feats, rois), args.repeats, False),
        "triton" + ("" if cuda else "_interpreter"): _time(lambda: roi_align_max_triton(f_dev, r_dev), args.repeats, cuda),
    }
    if cuda:
        half = f_dev.half()
        results["triton_fp16"] = _time(lambda: roi_align_max_triton(half, r_dev), args.repeats, cuda)
    errors = {
        "torch_composition": (roi_align_max(f_dev, r_dev).double().cpu() - ref).abs().max().item(),
        "triton": (roi_align_max_triton(f_dev, r_dev).double().cpu() - ref).abs().max().item(),
    }
    payload = {"config": {"features": list(shape), "persons": args.persons, "repeats": args.repeats, "device": device,
                          "triton_interpreter": not cuda},
               "timings": results, "max_abs_error_vs_float64": errors}
    path = write_json(REPO_ROOT / "benchmarks/results/bench_roi_align.json", payload)
    for name, t in results.items():
        print(f"{name:28s} p50 {t['p50_ms']:9.2f} ms   p95 {t['p95_ms']:9.2f} ms")
    print(f"max |error| vs float64: {errors}\nwrote {path}")


if __name__ == "__main__":
    main()
