"""Pieces working together: a model trained at a smaller short side keeps it through export,
engines and the streaming runtime; the export CLI derives geometry from --source-size."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vmaedet.cli.main import main
from vmaedet.data.synthetic import generate
from vmaedet.engines import create_engine
from vmaedet.models import PreprocessConfig, create_detector
from vmaedet.models.checkpoints import save_detector


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, videos=1, seconds=6, seed=3, overwrite=True)
    return root


def test_short_side_through_export_engines_and_stream(tmp_path: Path, small_data: Path) -> None:
    from vmaedet.runtime.config import StreamConfig
    from vmaedet.runtime.pipeline import stream

    model = create_detector("vit_micro", preprocess=PreprocessConfig(short_side=128))
    ckpt = save_detector(model, tmp_path / "m.safetensors")
    assert main(["export", str(ckpt), "--format", "onnx", "--source-size", "320x240", "--max-persons", "8",
                 "--out", str(tmp_path / "exp")]) == 0
    onnx_path = tmp_path / "exp" / "m_128x176_fp32.onnx"
    manifest = json.loads(Path(str(onnx_path) + ".json").read_text())
    # 320×240 at short side 128: int(128·320/240) = 170 → padded 176.
    assert manifest["input"]["clip_hw"] == [128, 176] and manifest["input"]["short_side"] == 128
    assert manifest["input"]["resized_wh"] == [170, 128]
    ort = create_engine("onnxruntime", onnx_path)
    assert ort.short_side == 128 and create_engine("torch", ckpt).short_side == 128

    video = small_data / "videos" / "synth_000.mp4"
    props = small_data / "annotations" / "proposals_train.csv"
    out = tmp_path / "s.mp4"
    results = list(stream(video, onnx_path, StreamConfig(backend="onnxruntime", max_persons=8, save=out),
                          person_detector=f"boxes:{props}"))
    assert results, "no keyframe results"
    assert any(len(r.boxes) for r in results)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 150  # 6 s at 25 fps, every frame written
    # The ONNX engine and the checkpoint give the same scores on the same stream.
    torch_results = list(stream(video, ckpt, StreamConfig(backend="torch", max_persons=8), person_detector=f"boxes:{props}"))
    assert len(torch_results) == len(results)
    for a, b in zip(results, torch_results):
        np.testing.assert_allclose(a.raw_scores, b.raw_scores, atol=1e-4)
