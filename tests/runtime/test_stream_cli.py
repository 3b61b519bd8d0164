"""``vmaedet stream --save-preset``: a bad value is refused before anything opens; a good one reaches libx264."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vmaedet.data.video import write_video

from helpers.badinput import Case, run_case, run_cli
from runtime.test_sinks_video import SIGNATURES, decode, x264_options  # the x264 SEI read-back (tests/ is on the path)

N_FRAMES = 24


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    from vmaedet.models.checkpoints import save_detector
    from vmaedet.models.detector import create_detector

    root = tmp_path_factory.mktemp("cli")
    frames = np.full((N_FRAMES, 48, 64, 3), 60, np.uint8)  # [N, H, W, 3]
    for i in range(N_FRAMES):
        frames[i, 10:40, 5 + i:20 + i] = (200, 120, 60)
    video = write_video(root / "walk.mp4", frames)
    torch.manual_seed(0)
    return video, save_detector(create_detector("vit_micro"), root / "micro.safetensors")


def test_a_bad_preset_is_refused_and_nothing_written_is_lost(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    video, ckpt = inputs
    for name in ("out.mp4", "out.jsonl"):
        (tmp_path / name).write_bytes(b"an earlier run's output")  # --overwrite must not touch them on an error
    case = Case("stream-bad-save-preset",
                ["stream", "--source", str(video), "--checkpoint", str(ckpt), "--detector", "motion", "--quiet",
                 "--save", "{tmp}/out.mp4", "--jsonl", "{tmp}/out.jsonl", "--overwrite", "--save-preset", "fastest"],
                2, ["--save-preset", "'fastest'", "expected: ultrafast | superfast | veryfast", "fix:"])
    run_case(case, tmp_path, watch=[video.parent])  # byte-identical files, nothing new


def test_the_preset_reaches_the_written_video(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    video, ckpt = inputs
    out = tmp_path / "out.mp4"
    code, text = run_cli(["stream", "--source", str(video), "--checkpoint", str(ckpt), "--detector", "motion",
                          "--quiet", "--save", str(out), "--save-preset", "medium"])
    assert code == 0, text
    assert len(decode(out)) == N_FRAMES
    opts = x264_options(out)
    assert {k: opts[k] for k in SIGNATURES["medium"]} == SIGNATURES["medium"], opts
