"""The run's order and accounting when batches mix keyframes, sources end early, die or the engine fails."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vmaedet.data.video import write_video
from vmaedet.errors import StreamError
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.stats import StreamStats
from helpers.engines import CheckingEngine
from helpers.persons import Everyone, EveryOther
from helpers.sources import DyingSource

W, H = 96, 64


def _video(path: Path, n: int, seed: int = 0) -> Path:
    frames = np.empty((n, H, W, 3), np.uint8)  # [N, H, W, 3]
    for i, img in enumerate(frames):
        img[:] = (5 * i + 37 * seed) % 200
        img[10:50, i % (W - 20):i % (W - 20) + 20] = (220, 90, 30)
    return write_video(path, frames, fps=25)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    return {"long": _video(root / "long.mp4", 72), "short": _video(root / "short.mp4", 20, seed=1),
            "dies": _video(root / "dies.mp4", 72, seed=2)}


def _run_in_thread(fn, timeout: float = 60.0) -> None:  # noqa: ANN001
    """Run ``fn`` and fail (instead of hanging the suite) when it has not returned after ``timeout`` s."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"the run did not end within {timeout} s"
    if error:
        raise error[0]


def test_a_batch_mixing_keyframes_with_and_without_persons_answers_them_in_order(videos: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    # keyframes 8, 24, 40 … have nobody; with several keyframes of the source per call they shared batches with
    # 0, 16, 32 …, were answered first (out of order) and were never taken off the in-flight list: the run hung
    engine = CheckingEngine(hold=0.2, max_batch=4)
    got: list[tuple[int, int, float]] = []
    jsonl = tmp_path / "o.jsonl"

    def run() -> None:
        for r in stream(videos["long"], engine, StreamConfig(max_batch=4, max_wait_ms=300, jsonl=jsonl),
                        person_detector=EveryOther()):
            got.append((r.frame_index, len(r), float(r.raw_scores[0, 0]) if len(r) else -1.0))

    _run_in_thread(run)
    assert max(engine.batches) >= 2  # keyframes did share calls
    assert [g[0] for g in got] == list(range(0, 72, 8))
    assert [g[1] for g in got] == [1 - (k // 8) % 2 for k in range(0, 72, 8)]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [x["frame_index"] for x in lines if x["type"] == "keyframe"] == list(range(0, 72, 8))
    one = CheckingEngine(hold=0.0)  # one clip per call: each keyframe's own clip mean
    ref = [(r.frame_index, len(r), float(r.raw_scores[0, 0]) if len(r) else -1.0)
           for r in stream(videos["long"], one, StreamConfig(), person_detector=EveryOther())]
    assert [g[:2] for g in got] == [g[:2] for g in ref]
    np.testing.assert_allclose([g[2] for g in got], [g[2] for g in ref], rtol=1e-6)


def test_each_source_has_its_own_clock_and_a_dying_source_keeps_its_keyframes(videos: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    st = StreamStats()
    warnings: list[str] = []
    sources = {"long": videos["long"], "short": videos["short"], "dies": DyingSource(videos["dies"], 30, name="dies")}
    cfg = StreamConfig(save=out, jsonl=out, stats=out / "stats.json", max_batch=2)
    got: list[tuple[str | None, int]] = []

    def run() -> None:
        with pytest.raises(StreamError, match="1 of 3 sources failed") as info:
            for r in stream(sources, CheckingEngine(hold=0.02, max_batch=2), cfg, person_detector=Everyone(), stats=st,
                            on_warning=warnings.append):
                got.append((r.source, r.frame_index))
        message = str(info.value)
        assert "dies (a DyingSource)" in message and "object at 0x" not in message  # a Source object by its name

    _run_in_thread(run)
    summary = json.loads((out / "stats.json").read_text())
    per = summary["sources"]
    for name, frames in (("long", 72), ("short", 20), ("dies", 30)):
        src = per[name]
        assert src["frames_processed"] == frames and src["fps"] == pytest.approx(frames / src["wall_s"])
        assert src["wall_s"] <= summary["wall_s"]
    assert per["short"]["wall_s"] < per["long"]["wall_s"]  # it ended first: its clock stopped then
    # the dying source: every keyframe of the 30 frames it gave has its result, in the JSONL too
    assert [k for s, k in got if s == "dies"] == [0, 8, 16, 24]
    lines = [json.loads(line) for line in (out / "dies.jsonl").read_text().splitlines()]
    assert [x["frame_index"] for x in lines if x["type"] == "keyframe"] == [0, 8, 16, 24]
    assert "camera unplugged" in per["dies"]["error"] and per["long"]["error"] is None
    assert [w for w in warnings if "the source dies failed" in w]


def test_a_single_source_that_dies_is_recorded_in_the_stats(videos: dict[str, Path], tmp_path: Path) -> None:
    stats = tmp_path / "s.json"
    got: list[int] = []
    with pytest.raises(StreamError, match="camera unplugged"):
        for r in stream(DyingSource(videos["dies"], 40, name="cam"), CheckingEngine(hold=0.0),
                        StreamConfig(jsonl=tmp_path / "o.jsonl", stats=stats), person_detector=Everyone()):
            got.append(r.frame_index)
    summary = json.loads(stats.read_text())
    assert "camera unplugged" in summary["sources"]["cam"]["error"]
    assert got == [0, 8, 16, 24, 32]  # the keyframes of its 40 frames


class FailingEngine(CheckingEngine):
    """Test double: fails on its second call (a CUDA error, out of memory)."""

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if len(self.batches) == 1:
            self.batches.append(-1)
            raise RuntimeError("injected engine failure")
        return super()._infer_impl(clip, rois)


def test_an_engine_error_is_the_runs_error_not_each_sources(videos: dict[str, Path], tmp_path: Path) -> None:
    warnings: list[str] = []

    def run() -> None:
        with pytest.raises(StreamError) as info:
            for _ in stream({"a": videos["long"], "b": videos["dies"]}, FailingEngine(hold=0.05, max_batch=2),
                            StreamConfig(save=tmp_path, max_batch=2), person_detector=Everyone(),
                            on_warning=warnings.append):
                pass
        assert str(info.value).startswith("the action engine failed: RuntimeError: injected engine failure")
        assert "sources failed" not in str(info.value)

    _run_in_thread(run)
    assert not [w for w in warnings if "the other sources go on" in w]  # nothing went on
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # outputs so far, renamed into place


def test_a_crowd_beyond_the_engines_person_limit_keeps_the_best_persons(videos: dict[str, Path], tmp_path: Path) -> None:
    from vmaedet.export.onnx import export_onnx
    from helpers.models import micro_detector

    art = tmp_path / "two.onnx"
    export_onnx(micro_detector(), art, source_wh=(W, H), max_persons=2)
    boxes = tmp_path / "crowd.csv"  # five persons on the short video's keyframes, scores 0.9 … 0.5
    boxes.write_text("".join(f"short,0,{0.1 * i:.1f},0.1,{0.1 * i + 0.3:.1f},0.9,,{0.9 - 0.1 * i:.1f}\n" for i in range(5)))
    warnings: list[str] = []
    got = list(stream(videos["short"], art, StreamConfig(backend="onnxruntime", max_persons=8),
                      person_detector=f"boxes:{boxes}", on_warning=warnings.append))
    assert [r.frame_index for r in got] == [0, 8, 16]
    for r in got:  # an engine error on the first crowded keyframe before; now its two best persons
        np.testing.assert_allclose(r.person_scores, [0.9, 0.8], rtol=1e-6)
    said = [w for w in warnings if "at most 2 persons" in w]
    assert len(said) == 1 and "vmaedet export CKPT --max-persons 8" in said[0]
