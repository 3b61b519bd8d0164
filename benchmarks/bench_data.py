"""Loader throughput (clips/s) of AVADataset on synthetic data, per frame source and split.

Usage: .venv/bin/python benchmarks/bench_data.py [--videos 2 --seconds 8 --workers 0]
Writes benchmarks/results/bench_data.json with the environment.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from vmaedet.data.ava import build_dataset, collate_clips
from vmaedet.envinfo import environment, write_json
from vmaedet.data.synthetic import generate
from vmaedet.data.layouts import write_clips_layout, write_frames_layout


def _rate(ds, workers: int, batch: int) -> dict:
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate_clips)
    t0 = time.perf_counter()
    n = sum(len(b["meta"]) for b in loader)
    dt = time.perf_counter() - t0
    return {"clips": n, "seconds": round(dt, 3), "clips_per_s": round(n / dt, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "syn"
        generate(root, videos=args.videos, seconds=args.seconds, seed=0)
        for mp4 in sorted((root / "videos").glob("*.mp4")):
            write_clips_layout(mp4, root / "clips", mp4.stem)
            write_frames_layout(mp4, root / "frames", mp4.stem, fps=30)
        for source in ("video", "clips", "frames"):
            for split, train in (("train", True), ("val", False)):
                ds = build_dataset(root, split, train, frame_source=source)
                results[f"{source}/{split}"] = _rate(ds, args.workers, args.batch)
                print(source, split, results[f"{source}/{split}"])
    out = {
        "benchmark": "bench_data", "config": vars(args) | {"width": 320, "height": 240, "fps": 25},
        "results": results,
        "environment": environment() | {"loadavg_1min": os.getloadavg()[0]},
    }
    path = write_json(Path(__file__).parent / "results" / "bench_data.json", out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
