"""Training-step throughput (clips/s): forward + BCE×K + backward + AdamW, data already in memory.

Cases: the tiny config with the seed's plain ``vit_tiny`` pinned (112², batch 8; the figures in
benchmarks/README predate the config's switch to ``vit_tiny_convstem``) and ViT-S at 224² (the seed's
training geometry), fp32 and bf16 autocast on the CPU, fp16 + GradScaler on CUDA when present.  Data
loading is left out (it is measured by the data benchmarks); the loop is the one ``vmaedet train`` runs.
Writes ``benchmarks/results/bench_train.json`` with the environment.

    python benchmarks/bench_train.py [--steps 5] [--warmup 2] [--vit-s-batch 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from vmaedet.config import load_config  # noqa: E402
from vmaedet.train.loop import autocast_context, build_model, detection_loss  # noqa: E402
from vmaedet.train.optim import build_optimizer, set_lr  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_case(name: str, overrides: list[str], size: int, batch: int, steps: int, warmup: int,
               device: torch.device) -> dict[str, Any]:
    """Median step time and clips/s of one configuration."""
    cfg = load_config("tiny", [f"train.batch_size={batch}", *overrides])
    model = build_model(cfg).to(device)
    opt = build_optimizer(model, cfg.optim)
    set_lr(opt, 1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.runtime.amp)
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(batch, 3, 16, size, size, generator=g).to(device)  # [B, 3, 16, S, S]
    boxes = torch.tensor([[8.0, 8.0, size / 2, size - 8], [size / 2, 16.0, size - 8, size - 4]])  # [2, 4]
    rois = torch.cat([torch.cat((torch.full((2, 1), float(b)), boxes), 1) for b in range(batch)]).to(device)  # [K, 5]
    labels = (torch.rand(rois.shape[0], 80, generator=g) > 0.95).float().to(device)  # [K, 80]
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context(cfg, device):
            logits = model(clip, rois)  # [K, 80]
        scaler.scale(detection_loss(logits, labels)).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"case": name, "device": str(device), "input": f"{batch}x3x16x{size}x{size}", "batch": batch,
            "rois": int(rois.shape[0]), "overrides": overrides, "steps": steps,
            "step_s_median": med, "step_s_p95": sorted(times)[max(0, int(round(0.95 * len(times))) - 1)],
            "clips_per_s": batch / med}


def main(argv: list[str] | None = None) -> int:
    """Run the cases and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--vit-s-batch", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_train.json")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vit_s = ["model.arch=vit_small_patch16_224", "model.drop_path=0.2"]
    tiny = ["model.arch=vit_tiny"]
    cases = [("tiny fp32", tiny, 112, 8), ("tiny bf16", [*tiny, "runtime.cpu_bf16=true"], 112, 8),
             ("vit_s 224 fp32", vit_s, 224, args.vit_s_batch),
             ("vit_s 224 bf16", [*vit_s, "runtime.cpu_bf16=true"], 224, args.vit_s_batch)]
    if device.type == "cuda":
        cases = [("tiny fp16", tiny, 112, 8), ("vit_s 224 fp16", vit_s, 224, 8), ("vit_b 224 fp16",
                 ["model.arch=vit_base_patch16_224"], 224, 4)]
    results = []
    for name, ov, size, batch in cases:
        r = bench_case(name, ov, size, batch, args.steps, args.warmup, device)
        print(f"{name:18s} {r['input']:>20s}  {r['step_s_median'] * 1000:8.1f} ms/step  {r['clips_per_s']:7.2f} clips/s")
        results.append(r)
    payload: dict[str, Any] = {"benchmark": "train_step", "torch_threads": torch.get_num_threads(), "results": results}
    try:
        from common import environment, write_json

        payload["environment"] = environment()
        write_json(args.out, payload)
    except ImportError:
        import json

        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
