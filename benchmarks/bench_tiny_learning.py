"""Does the tiny config learn?  The demo's path, timed: synth → untrained eval → train → eval.

1. ``generate(data, videos, seconds, seed)`` (the synthetic AVA-format dataset);
2. frame-mAP@0.5 (official protocol, val split) of the untrained ``model.arch`` at the config's short side;
3. ``train(load_config("tiny", …))`` — the datasets are built with ``build_datasets`` exactly as ``train``
   builds them, only kept here so the decoded-clip cache's size can be read afterwards;
4. frame-mAP of ``final.safetensors`` with ``evaluate_checkpoint`` (what ``vmaedet demo`` reports).

Writes ``benchmarks/results/bench_tiny_learning.json``: mAP before/after, wall times, clips/s
(all training clips over the training wall time, and the median of the logged steady-state rate),
the cache's bytes, the load average before/after, and the environment.

    python benchmarks/bench_tiny_learning.py [--videos 10] [--seconds 12] [--seed 0] [--set optim.lr=0.1 …]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from vmaedet.config import load_config  # noqa: E402
from vmaedet.data.synthetic import generate  # noqa: E402
from vmaedet.envinfo import environment, write_json  # noqa: E402
from vmaedet.models.checkpoints import save_detector  # noqa: E402
from vmaedet.train.evaluate import evaluate_checkpoint  # noqa: E402
from vmaedet.train.loop import build_datasets, initial_model, train  # noqa: E402


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _logged_rates(metrics: Path) -> list[float]:
    """``clips_per_s`` of every logged step after the first epoch's (decoding) steps."""
    recs = [json.loads(line) for line in metrics.read_text().splitlines() if '"clips_per_s"' in line]
    return [r["clips_per_s"] for r in recs if r.get("epoch", 0) >= 1]


def run(work: Path, videos: int, seconds: int, seed: int, overrides: list[str]) -> dict[str, Any]:
    """One synth → baseline → train → eval pass in ``work``; returns the figures."""
    out: dict[str, Any] = {"videos": videos, "seconds": seconds, "seed": seed, "load_before": _load()}
    data = work / "data"
    t0 = time.perf_counter()
    syn = generate(data, videos=videos, seconds=seconds, seed=seed, overwrite=True)
    out["synth_s"] = time.perf_counter() - t0
    out["keyframes"], out["boxes"] = syn.keyframes, syn.boxes
    cfg = load_config("tiny", [f"data.root={data}", f"train.out_dir={work / 'train'}", "runtime.progress=false",
                               *overrides])
    out["config"] = cfg.to_dict()

    t0 = time.perf_counter()
    untrained = initial_model(cfg)  # the run's own starting weights
    base_ckpt = save_detector(untrained, work / "baseline" / "untrained.safetensors")
    out["mAP_untrained"] = evaluate_checkpoint(base_ckpt, data, split="val", out_dir=work / "baseline",
                                               device="cpu", num_workers=0)["mAP"]
    out["baseline_eval_s"] = time.perf_counter() - t0

    train_ds, val_ds = build_datasets(cfg)
    t0 = time.perf_counter()
    result = train(cfg, train_dataset=train_ds, val_dataset=val_ds, overwrite=True)  # --work is this script's scratch
    out["train_wall_s"] = time.perf_counter() - t0
    out["train_clips"] = len(train_ds)  # type: ignore[arg-type]
    out["steps"] = result.steps
    out["clips_per_s_overall"] = result.steps * cfg.train.batch_size / out["train_wall_s"]
    rates = _logged_rates(Path(cfg.train.out_dir) / "metrics.jsonl")
    out["clips_per_s_steady_median"] = statistics.median(rates) if rates else None
    out["cache_MiB"] = getattr(train_ds, "cache_bytes", 0) / 2**20
    out["in_training_val_mAP"] = result.history[-1].get("mAP") if result.history else None

    t0 = time.perf_counter()
    ev = evaluate_checkpoint(result.final_checkpoint, data, split="val", out_dir=work / "eval", device="cpu",
                             num_workers=0)
    out["eval_s"] = time.perf_counter() - t0
    out["mAP_trained"] = ev["mAP"]
    out["per_class_AP"] = ev.get("per_class", ev.get("per_class_ap"))
    out["max_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_after"] = _load()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the pass and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="tiny-config override a.b=value")
    ap.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_tiny_learning.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        figures = run(work, args.videos, args.seconds, args.seed, args.overrides)
    print(f"frame-mAP {figures['mAP_untrained']:.3f} → {figures['mAP_trained']:.3f}; train {figures['train_wall_s']:.0f} s "
          f"({figures['steps']} steps, {figures['clips_per_s_overall']:.1f} clips/s); cache {figures['cache_MiB']:.0f} MiB; "
          f"load {figures['load_before']} → {figures['load_after']}")
    write_json(args.out, {"benchmark": "tiny_learning", **figures, "environment": environment()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
