"""Several sources, one batchable person detector: keyframes share detector calls; the stats of batched stages.

Real mp4 files of two sizes, the real SSDLite detector (embedded weights, torch) behind a subclass
that counts the frames of each call, ``vit_micro`` on the torch engine.  A three-source run calls
the detector with several frames at once, and each source's results equal its own single-source
run.  The stats: ``detect`` / ``action`` one sample per keyframe (its share of its call),
``detect_batch`` / ``action_batch`` one per call, their totals equal; the table does not wrap.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest

from vmaedet.data.video import write_video
from vmaedet.engines import create_engine
from vmaedet.models.checkpoints import save_detector
from vmaedet.persons.ssdlite import SSDLiteDetector
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.stats import StreamStats
from helpers.models import micro_detector


class CountingSSDLite(SSDLiteDetector):
    """The real SSDLite detector, recording how many frames each call held."""

    def __init__(self) -> None:
        super().__init__(score_threshold=0.05)
        self.calls: list[int] = []
        self.prepared_in: set[str] = set()  #: the threads that ran prepare()
        self._lock = threading.Lock()

    def _detect(self, frame, frame_index, timestamp, video_id):  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls.append(1)
        return super()._detect(frame, frame_index, timestamp, video_id)

    def _detect_batch(self, frames, frame_indices, timestamps, video_ids):  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls.append(len(frames))
        return super()._detect_batch(frames, frame_indices, timestamps, video_ids)

    def prepare(self, frame_rgb):  # type: ignore[no-untyped-def]
        with self._lock:
            self.prepared_in.add(threading.current_thread().name)
        return super().prepare(frame_rgb)

    def detect_prepared(self, prepared, frame_hws, frame_indices, timestamps, video_ids):  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls.append(len(prepared))
        return super().detect_prepared(prepared, frame_hws, frame_indices, timestamps, video_ids)


def _frames(n: int, w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(30, 90, (h, w, 3), dtype=np.uint8)[None], n, axis=0)  # [n, h, w, 3]
    for i in range(n):
        x = 8 + (2 + seed) * i % (w - 48)
        out[i, h // 5: 4 * h // 5, x: x + w // 5] = (190, 130 - 20 * seed, 90)  # a moving upright blob
        out[i, h // 10: h // 5, x + w // 20: x + w // 5 - w // 20] = (220, 180, 150)
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detbatch")
    return {"cam_a": write_video(root / "cam_a.mp4", _frames(40, 160, 120, 0)),
            "cam_b": write_video(root / "cam_b.mp4", _frames(40, 160, 120, 1)),
            "wide": write_video(root / "wide.mp4", _frames(32, 224, 96, 2))}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    ckpt = save_detector(micro_detector(), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")
    return create_engine("torch", ckpt)


@pytest.fixture(scope="module")
def run(videos: dict[str, Path], engine) -> tuple[CountingSSDLite, StreamStats, list]:  # type: ignore[no-untyped-def]
    detector, st = CountingSSDLite(), StreamStats()
    got = list(stream(videos, engine, StreamConfig(max_batch=4, max_wait_ms=200), person_detector=detector, stats=st))
    return detector, st, got


def test_sources_share_detector_calls_and_keep_their_own_results(  # type: ignore[no-untyped-def]
        videos: dict[str, Path], engine, run) -> None:
    detector, st, got = run
    assert max(detector.calls) > 1, detector.calls  # keyframes of several sources in one detector call
    assert sum(detector.calls) == len(got) == 5 + 5 + 4  # every keyframe detected once
    # each source resized its own keyframes in its own worker thread; only the forward was shared
    assert detector.prepared_in == {f"vmaedet-worker-{name}" for name in videos}
    hist = st.summary()["detect_batcher"]["batch_sizes"]
    assert sum(int(k) * v for k, v in hist.items()) == len(got) and max(int(k) for k in hist) <= 3
    assert sum(len(r) for r in got) >= 3  # persons to compare
    key = lambda r: r.frame_index  # noqa: E731
    for name, path in videos.items():
        single = CountingSSDLite()
        own = sorted(stream(path, engine, StreamConfig(), person_detector=single), key=key)
        assert set(single.calls) == {1}  # one source: the detector's own per-frame call
        mine = sorted((r for r in got if r.source == name), key=key)
        assert [r.frame_index for r in mine] == [r.frame_index for r in own]
        for a, b in zip(mine, own):
            assert len(a) == len(b)
            np.testing.assert_array_equal(a.track_ids, b.track_ids)
            np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-4)
            np.testing.assert_allclose(a.person_scores, b.person_scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose(a.raw_scores, b.raw_scores, rtol=0, atol=1e-5)


def test_one_batch_call_per_stage_sample_and_keyframe_shares(run) -> None:  # type: ignore[no-untyped-def]
    _, st, got = run
    s = st.summary()
    stages, batcher, detect = s["stages"], s["batcher"], s["detect_batcher"]
    with_persons = sum(1 for r in got if len(r))
    assert stages["detect"]["count"] == len(got) and stages["detect_batch"]["count"] == detect["calls"] < len(got)
    assert stages["action"]["count"] == with_persons == sum(int(k) * v for k, v in batcher["batch_sizes"].items())
    assert stages["action_batch"]["count"] == batcher["calls"]
    assert batcher["keyframes_without_persons"] == len(got) - with_persons
    for row in ("detect", "action"):  # the shares add up to the calls' time
        share, call = stages[row], stages[f"{row}_batch"]
        assert share["mean_ms"] * share["count"] == pytest.approx(call["mean_ms"] * call["count"], rel=1e-6)
        assert share["p50_ms"] <= share["max_ms"] <= call["max_ms"] + 1e-9


def test_the_table_has_one_line_per_row(run) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    _, st, _ = run
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(st.table())
    lines = out.getvalue().splitlines()
    body = [ln for ln in lines if ln.startswith("│")]
    firsts = [ln.split("│")[1].strip() for ln in body]
    assert all(firsts), lines  # no wrapped continuation line (its first cell would be empty)
    assert max(len(ln) for ln in lines) <= 80
    for label in ("detect", "detect_batch", "action", "action_batch", "action wait", "detect wait"):
        assert label in firsts, lines
    assert any(f.startswith("detect calls ×") for f in firsts) and any(f.startswith("action calls ×") for f in firsts)
