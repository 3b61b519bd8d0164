"""benchmarks/bench_stream.py on a short synthetic mp4: both runs' figures add up and describe the video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from helpers.scripts import load_script
from vmaedet.data.video import write_video

bench = load_script("benchmarks/bench_stream.py", "bench_stream")

N_FRAMES, W, H = 48, 160, 120


def _video(path: Path) -> Path:
    """A 25-fps mp4 with a bright block moving over a dark background (the motion detector finds it)."""
    frames = np.full((N_FRAMES, H, W, 3), 30, np.uint8)  # [N, H, W, 3]
    for i, img in enumerate(frames):
        img[20:100, 2 * i:2 * i + 40] = 230
    return write_video(path, frames, fps=25)


def test_first_and_warm_runs_add_up(tmp_path: Path) -> None:
    out = tmp_path / "bs.json"
    bench.main(["--video", str(_video(tmp_path / "moving.mp4")), "--out", str(out), "--repeats", "1", "--warmup", "0"])
    doc = json.loads(out.read_text())
    assert doc["environment"]["cpu"] and doc["config"]["arch"] == "vit_micro"
    first, warm = doc["file_run"], doc["warm_run"]
    for run in (first, warm):
        assert run["frames"] == N_FRAMES and run["keyframes"] == N_FRAMES // 8
        stages = run["stages"]
        assert stages["decode"]["count"] >= N_FRAMES and 1 <= stages["action"]["count"] <= run["keyframes"]
        assert run["model_s"] == stages["action"]["mean_ms"] * stages["action"]["count"] / 1e3 > 0
        assert 0 < run["model_s"] < run["wall_s"] and 0 <= run["startup_s"] < run["wall_s"]
        assert run["wall_over_model"] == run["wall_s"] / run["model_s"]
        assert run["after_start_over_model"] == (run["wall_s"] - run["startup_s"]) / run["model_s"]
    assert doc["persons"]["p50_ms_1"] > 0 and doc["persons"]["p50_ms_32"] > 0
