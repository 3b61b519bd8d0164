"""Multi-stream benchmark: N file sources in one ``vmaedet stream`` process vs N processes side by side.

For N = 1, 2, 4, 8 short synthetic videos (lossless), with ``vit_micro`` (random weights) and
proposal boxes (``boxes:FILE``):

* **one process**: ``vmaedet stream --source … (×N) --max-batch N``;
* **N processes**: N single-source ``vmaedet stream`` processes started together.

Reports aggregate frames/s and keyframes/s (frames of all sources ÷ wall time), peak RSS (the one
process; the sum of the N processes' peaks), and whether every per-source CSV is identical between
the two ways (``--max-batch 1`` makes them byte-identical; batched calls may differ in float rounding,
so the comparison runs both).  Live mode: N sources played in real time with a fake slow engine
(``SlowEngine``, a fixed delay per call): added latency beyond the clip window (glass-to-result, p50/p95)
and frames dropped per source.

Writes ``benchmarks/results/multistream.json`` (with the environment) and prints a markdown table.

    python benchmarks/bench_multistream.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from vmaedet.data.video import write_video  # noqa: E402
from vmaedet.engines.base import Engine  # noqa: E402
from vmaedet.envinfo import environment  # noqa: E402
from vmaedet.models.checkpoints import save_detector  # noqa: E402
from vmaedet.models.detector import create_detector  # noqa: E402
from vmaedet.runtime.config import StreamConfig  # noqa: E402
from vmaedet.runtime.pipeline import stream  # noqa: E402
from vmaedet.runtime.stats import StreamStats  # noqa: E402

#: Reads the peak RSS of the process it runs in, then runs the CLI (the parent reads it from a file).
_CHILD = """
import atexit, sys
from vmaedet.cli.main import main
def peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            open(sys.argv[1], 'w').write(line.split()[1])
atexit.register(peak)
rc = main(sys.argv[2:])
peak()
sys.exit(rc)
"""


def _frames(n: int, w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(20, 80, (h, w, 3), dtype=np.uint8)[None], n, axis=0)  # [n, h, w, 3]
    for i in range(n):
        x = 10 + (2 + seed % 5) * i % (w - 40)
        out[i, h // 4: 3 * h // 4, x: x + 30] = (200, 120, 60)
    return out


class SlowEngine(Engine):
    """A fake engine: ``delay`` seconds per call whatever the batch (for the live-mode latency figures)."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        super().__init__(max_batch=None)
        self.delay = delay

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return torch.zeros((rois.shape[0], 80))


def _spawn(argv: list[str], rss_file: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "VMAEDET_PROGRESS": "off"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(rss_file), *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"vmaedet stream failed ({p.returncode}): {err[-2000:]}")


def file_case(n: int, videos: list[Path], props: Path, ckpt: Path, tmp: Path, frames: int, stride: int) -> dict[str, Any]:
    common = ["--checkpoint", str(ckpt), "--detector", f"boxes:{props}", "--stride", str(stride), "--quiet",
              "--device", "cpu"]
    srcs = videos[:n]
    out: dict[str, Any] = {"sources": n}
    for batch in sorted({1, n}):
        one = tmp / f"one_{n}_b{batch}"
        argv = ["stream", *[a for v in srcs for a in ("--source", str(v))], *common, "--max-batch", str(batch),
                "--csv", str(one / "{name}.csv") if n > 1 else str(one / f"{srcs[0].stem}.csv"),
                "--stats", str(one / "stats.json")]
        t0 = time.perf_counter()
        _wait([_spawn(argv, tmp / f"rss_one_{n}_{batch}")])
        wall = time.perf_counter() - t0
        stats = json.loads((one / "stats.json").read_text())
        out[f"one_process_batch{batch}"] = {
            "wall_s": wall, "frames_per_s": n * frames / wall, "keyframes_per_s": stats["counters"]["keyframes"] / wall,
            "peak_rss_mb": int((tmp / f"rss_one_{n}_{batch}").read_text()) / 1024,
            "mean_batch": stats["batcher"]["mean_batch"], "csv_dir": one}
    sep = tmp / f"sep_{n}"
    procs = [_spawn(["stream", "--source", str(v), *common, "--csv", str(sep / f"{v.stem}.csv")], tmp / f"rss_sep_{n}_{i}")
             for i, v in enumerate(srcs)]
    t0 = time.perf_counter()
    _wait(procs)
    wall = time.perf_counter() - t0
    keyframes = n * len(range(0, frames, stride))
    out["separate_processes"] = {"wall_s": wall, "frames_per_s": n * frames / wall, "keyframes_per_s": keyframes / wall,
                                 "peak_rss_mb": sum(int((tmp / f"rss_sep_{n}_{i}").read_text()) for i in range(n)) / 1024}
    for batch in sorted({1, n}):
        one = out[f"one_process_batch{batch}"].pop("csv_dir")
        out[f"one_process_batch{batch}"]["csv_identical"] = all(
            (one / f"{v.stem}.csv").read_bytes() == (sep / f"{v.stem}.csv").read_bytes() for v in srcs)
    return out


def live_case(n: int, videos: list[Path], props: Path, delay: float, stride: int) -> dict[str, Any]:
    st = StreamStats()
    cfg = StreamConfig(realtime=True, mode="causal", stride=stride, max_batch=n, max_wait_ms=5, device="cpu")
    list(stream({v.stem: v for v in videos[:n]}, SlowEngine(delay), cfg, person_detector=f"boxes:{props}", stats=st))
    s = st.summary()
    g = s["stages"]["glass_to_result"]
    return {"sources": n, "engine_delay_ms": delay * 1e3, "added_latency_p50_ms": g["p50_ms"],
            "added_latency_p95_ms": g["p95_ms"], "mean_batch": s["batcher"]["mean_batch"],
            "dropped_per_source": {k: v["frames_dropped"] for k, v in s["sources"].items()},
            "read_per_source": {k: v["frames_read"] for k, v in s["sources"].items()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,2,4,8", help="numbers of sources")
    ap.add_argument("--frames", type=int, default=50, help="frames per synthetic video (25 fps)")
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--live-delay", type=float, default=0.2, help="seconds per call of the fake live engine")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multistream.json")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ckpt = save_detector(create_detector("vit_micro"), tmp / "micro.safetensors")
        videos = [write_video(tmp / f"src{i}.mp4", _frames(args.frames, 160, 120, i)) for i in range(max(counts))]
        props = tmp / "proposals.csv"
        props.write_text("".join(f"src{i},{t},0.1,0.2,0.5,0.85,,0.9\n" for i in range(max(counts))
                                 for t in range(args.frames // 25 + 1)))
        files = [file_case(n, videos, props, ckpt, tmp, args.frames, args.stride) for n in counts]
        live = [live_case(n, videos, props, args.live_delay, args.stride) for n in counts]
    payload = {"config": {"arch": "vit_micro", "frames": args.frames, "size": "160x120", "stride": args.stride,
                          "detector": "boxes:FILE", "live_engine_delay_s": args.live_delay},
               "environment": environment(), "file": files, "live": live}
    write_json(args.out, payload)
    print(markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    """The results as markdown tables."""
    rows = ["| sources | one process frames/s (batch 1) | one process frames/s (batch N) | N processes frames/s | "
            "keyframes/s (one, batch N) | peak RSS one / N procs (MB) | CSV identical |",
            "|---|---|---|---|---|---|---|"]
    for f in payload["file"]:
        n = f["sources"]
        b1, bn, sep = f["one_process_batch1"], f[f"one_process_batch{n}"], f["separate_processes"]
        rows.append(f"| {n} | {b1['frames_per_s']:.1f} | {bn['frames_per_s']:.1f} (mean batch {bn['mean_batch']:.1f}) | "
                    f"{sep['frames_per_s']:.1f} | {bn['keyframes_per_s']:.2f} | "
                    f"{bn['peak_rss_mb']:.0f} / {sep['peak_rss_mb']:.0f} | "
                    f"{'yes' if b1['csv_identical'] else 'NO'} (batch 1), {'yes' if bn['csv_identical'] else 'no'} (batch N) |")
    rows += ["", f"Live (real-time playback, fake engine {payload['config']['live_engine_delay_s'] * 1e3:.0f} ms per call, "
                 "causal mode):", "",
             "| sources | added latency p50 / p95 (ms) | mean batch | frames dropped per source |", "|---|---|---|---|"]
    for lv in payload["live"]:
        drops = ", ".join(f"{v}/{lv['read_per_source'][k]}" for k, v in lv["dropped_per_source"].items())
        rows.append(f"| {lv['sources']} | {lv['added_latency_p50_ms']:.0f} / {lv['added_latency_p95_ms']:.0f} | "
                    f"{lv['mean_batch']:.1f} | {drops} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
