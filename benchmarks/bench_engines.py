"""Compare engines on the same clip: torch eager fp32, torch bf16 autocast, onnxruntime fp32.

ViT-S with random weights, one clip 16×256×464 (a 1920×1080 source after the seed's resize and
padding), 8 persons.  Each engine gets warm-up runs, then ≥ 5 timed runs; the JSON records
median/p95/mean latency, throughput, the ratios to torch fp32, the error of each engine vs torch
fp32, and the environment (benchmarks.common.environment()).

A thin front of the library: engines come from ``vmaedet.engines.open_engine``, the timing loop is
``vmaedet.tools.bench.time_engine`` (``vmaedet.tools.timing``: the percentile definition of
``vmaedet bench``), the error statistics from ``vmaedet.export.parity``.  ``vmaedet bench`` is the
full matrix (engines × precisions × persons, FLOPs, % of peak, accuracy and gates vs torch fp32;
OpenVINO f32/bf16/int8, onnxruntime int8 with ``--calib DATA``, and ``auto``); this script is its
fixed three-engine comparison with speed ratios.

    .venv/bin/python benchmarks/bench_engines.py [--runs 5] [--warmup 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import environment, write_json  # noqa: E402
from vmaedet.engines import open_engine  # noqa: E402
from vmaedet.export.onnx import export_onnx  # noqa: E402
from vmaedet.export.parity import error_stats, random_clip, random_rois  # noqa: E402
from vmaedet.models import create_detector  # noqa: E402
from vmaedet.tools.bench import time_engine as _time_engine  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_engines.json"


def time_engine(engine: Any, clip: torch.Tensor, rois: torch.Tensor, runs: int, warmup: int) -> tuple[dict[str, float], torch.Tensor]:
    """Latency statistics (seconds) of ``engine.infer`` and its last output ``[K, 80]``."""
    t = _time_engine(engine, clip, rois, iters=runs, warmup=warmup)
    stats = {"median_s": t.p50_s, "p95_s": t.p95_s, "mean_s": t.mean_s, "min_s": t.min_s, "runs": t.runs,
             "warmup": warmup, "clips_per_s": 1.0 / t.p50_s}
    return stats, t.result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_small_patch16_224")
    parser.add_argument("--input-size", default="256x464", help="HxW of the clip")
    parser.add_argument("--persons", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    try:
        h, w = (int(v) for v in args.input_size.lower().split("x"))
    except ValueError:
        parser.error(f"--input-size must be HxW, e.g. 256x464 (got {args.input_size!r})")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = create_detector(args.variant).eval()
    gen = torch.Generator().manual_seed(0)
    clip, rois = random_clip((h, w), gen), random_rois(args.persons, (h, w), gen)  # [1,3,16,H,W], [K,5]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        onnx_path = export_onnx(model, Path(tmp) / "bench.onnx", input_hw=(h, w), max_persons=args.persons).path
        export_s = time.perf_counter() - t0
        engines = {
            "torch-fp32": lambda: open_engine(model, "torch", precision="fp32", device="cpu"),
            "torch-bf16": lambda: open_engine(model, "torch", precision="bf16", device="cpu"),
            "onnxruntime-fp32": lambda: open_engine(onnx_path, device="cpu", threads=args.threads),
        }
        outputs = {}
        for name, make in engines.items():
            with make() as eng:
                stats, outputs[name] = time_engine(eng, clip, rois, args.runs, args.warmup)
                results[name] = {**stats, **eng.describe()}
            print(f"{name:18s} median {stats['median_s']:.3f} s  p95 {stats['p95_s']:.3f} s", flush=True)
    base = results["torch-fp32"]["median_s"]
    for name, res in results.items():
        res["speedup_vs_torch_fp32"] = base / res["median_s"]
        res["error_vs_torch_fp32"] = error_stats(outputs["torch-fp32"], outputs[name])
    payload = {
        "benchmark": "bench_engines",
        "config": {"variant": args.variant, "clip": [1, 3, 16, h, w], "persons": args.persons, "weights": "random (seed init)",
                   "runs": args.runs, "warmup": args.warmup, "threads": args.threads or torch.get_num_threads(),
                   "onnx_export_and_verify_s": export_s},
        "results": results,
        "environment": environment(),
        "note": "shared 2-core machine: other jobs may have been running; compare ratios from one run",
    }
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    for name, res in results.items():
        print(f"  {name:18s} {res['speedup_vs_torch_fp32']:.2f}× torch fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
