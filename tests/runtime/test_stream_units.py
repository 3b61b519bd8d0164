"""Unit tests of the streaming runtime parts: schedule, ring, mailbox, smoothing, tracking, results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from vmaedet.data.transforms import test_transform
from vmaedet.errors import ConfigError, DataError, StreamError
from vmaedet.runtime.buffer import ClipRing
from vmaedet.runtime.sinks import ava_csv_rows
from vmaedet.runtime.scheduler import KeyJob, Scheduler, frame_offsets, sample_offsets
from vmaedet.runtime.smoothing import ScoreSmoother
from vmaedet.runtime.sources import Closed, Frame, Mailbox
from vmaedet.runtime.tracking import PersonTracker
from vmaedet.structures import ActionDetections


def test_centered_offsets_are_the_seeds_frames_at_25fps() -> None:
    # spec §2: arange(19, 83, 4) − 50 = −31, −27, …, +29
    assert frame_offsets("centered", 25.0).tolist() == list(range(-31, 30, 4))
    assert frame_offsets("causal", 25.0).tolist() == list(range(-60, 1, 4))


@pytest.mark.parametrize("fps", [30.0, 29.97, 15.0, 50.0])
def test_other_fps_take_the_nearest_frame_in_time(fps: float) -> None:
    # independent brute force: for each time −1.24 + 0.16 j, the frame index whose time is nearest
    candidates = np.arange(-200, 200)
    for j, off in enumerate(frame_offsets("centered", fps)):
        t = (-31 + 4 * j) / 25
        dist = np.abs(candidates / fps - t)
        best = candidates[dist <= dist.min() + 1e-12].min()  # ties → earlier frame
        assert off == best


def test_bad_mode_and_stride_are_refused() -> None:
    with pytest.raises(ConfigError, match="mode"):
        sample_offsets("middle")
    with pytest.raises(ConfigError, match="stride"):
        Scheduler("centered", 0)


def _ring_frames(n: int, h: int = 40, w: int = 60) -> list[Frame]:
    rng = np.random.default_rng(0)
    return [Frame(i, i / 25, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 0.0) for i in range(n)]


def test_ring_clip_equals_the_predictor_transform_and_stays_small() -> None:
    frames = _ring_frames(80)
    sched = Scheduler("centered", stride=8, fps=25.0, lossless=True)
    ring = ClipRing(capacity=100)
    pending: list[KeyJob] = []
    sizes = []
    for f in frames:
        if sched.wants(f.index):
            ring.push(f)
        if sched.is_keyframe(f.index):
            pending.append(KeyJob(f.index, f.time, 0.0, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), (60, 40),
                                  sched.targets(f.time)))
        if pending and pending[0].index == 32 and sched.is_ready(pending[0], f.time):
            clip, picks = ring.clip(pending[0].targets)
            assert picks == list(range(1, 62, 4))  # 32 + (−31 … +29)
            ref, _ = test_transform(np.stack([frames[i].image for i in picks]))  # [3, 16, Hp, Wp]
            torch.testing.assert_close(clip[0], ref, rtol=0, atol=1e-6)
        while pending and sched.is_ready(pending[0], f.time):
            pending.pop(0)
        ring.evict_before(sched.horizon(pending, f.time))
        sizes.append(len(ring))
    # stride 8 at 25 fps samples every 4th frame: 16 slots plus the one being filled
    assert max(sizes[40:]) <= 17


def test_mailbox_latest_drops_and_counts_wait_blocks_until_stop() -> None:
    stop = threading.Event()
    latest: Mailbox[int] = Mailbox(1, "latest", stop)
    for i in range(5):
        latest.put(i)
    assert latest.get() == 4 and latest.dropped == 4
    wait: Mailbox[int] = Mailbox(1, "wait", stop)
    wait.put(1)
    threading.Timer(0.2, stop.set).start()
    assert wait.put(2) is False  # blocked until the stop event, then gives up
    wait.close(StreamError("boom"))
    assert wait.get() == 1
    with pytest.raises(StreamError, match="boom"):
        wait.get()
    closed: Mailbox[int] = Mailbox(2, "wait", threading.Event())
    closed.close()
    with pytest.raises(Closed):
        closed.get()


def test_smoother_ema_hysteresis_and_events_hand_computed() -> None:
    sm = ScoreSmoother(alpha=0.5, on=0.4, off=0.3, max_missed=2)
    seq = [0.2, 0.8, 0.4, 0.3, 0.1]  # action 0 of track 7
    # EMA: 0.2, 0.5, 0.45, 0.375, 0.2375 → on at step 2 (t=1), stays on (0.45, 0.375 ≥ 0.3), off at step 5
    expected = [0.2, 0.5, 0.45, 0.375, 0.2375]
    events = []
    for k, v in enumerate(seq):
        s = np.zeros((1, 80), np.float32)
        s[0, 0] = v
        smoothed, closed = sm.update(np.array([7]), s, time=float(k), frame=8 * k)
        assert smoothed[0, 0] == pytest.approx(expected[k], abs=1e-6)
        events += closed
    assert len(events) == 1
    ev = events[0]
    assert (ev.track_id, ev.action_id, ev.start, ev.end, ev.start_frame, ev.end_frame) == (7, 1, 1.0, 3.0, 8, 24)
    assert ev.peak_score == pytest.approx(0.5) and ev.peak_time == 1.0
    # untracked rows pass through raw and never open events
    raw = np.full((1, 80), 0.9, np.float32)
    smoothed, closed = sm.update(np.array([-1]), raw, 5.0, 40)
    assert np.array_equal(smoothed, raw) and closed == [] and sm.flush() == []


def test_smoother_closes_events_of_lost_tracks() -> None:
    sm = ScoreSmoother(alpha=1.0, on=0.4, max_missed=1)
    hi = np.zeros((1, 80), np.float32)
    hi[0, 13] = 0.9
    assert sm.update(np.array([3]), hi, 0.0, 0)[1] == []
    assert sm.update(np.zeros(0, np.int64), np.zeros((0, 80), np.float32), 1.0, 8)[1] == []
    closed = sm.update(np.zeros(0, np.int64), np.zeros((0, 80), np.float32), 2.0, 16)[1]
    assert [(e.track_id, e.action) for e in closed] == [(3, "walk")]


def test_tracker_keeps_ids_of_moving_boxes_in_input_order() -> None:
    tr = PersonTracker(keyframe_rate=3.125, activation=0.5)
    ids = []
    for k in range(6):
        boxes = np.array([[300, 20, 360, 120], [10 + 4 * k, 10, 50 + 4 * k, 100]], np.float32)
        ids.append(tr.update(boxes, np.array([0.9, 0.8], np.float32)))
    last = ids[-1]
    assert last[0] >= 0 and last[1] >= 0 and last[0] != last[1]
    assert all((i == last).all() for i in ids[2:])
    swapped = tr.update(np.array([[10 + 24, 10, 50 + 24, 100], [300, 20, 360, 120]], np.float32), np.array([0.8, 0.9]))
    assert swapped.tolist() == last[::-1].tolist()


def test_stream_result_validates_and_writes_seed_csv_rows() -> None:
    with pytest.raises(DataError, match="action_scores"):
        ActionDetections(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 79)), track_ids=np.zeros(2), raw_scores=np.zeros((2, 80)))
    with pytest.raises(DataError, match="raw_scores"):
        ActionDetections(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 80)), raw_scores=np.zeros((1, 80)))
    raw = np.zeros((1, 80), np.float32)
    raw[0, 11] = 0.123456
    r = ActionDetections(np.array([[32.0, 23.0, 63.0, 119.0]], np.float32), np.array([0.9], np.float32), raw * 0,
                         track_ids=np.array([4]), raw_scores=raw, frame_index=50, timestamp=2.0, image_wh=(320, 240))
    rows = ava_csv_rows(r, "vid")
    # x1 = 32/320, y1 = 23/240, x2 = 64/320, y2 = 120/240 (seed's +1), id 12 = column 11
    assert rows[11] == "vid,0002,0.10000,0.09583,0.20000,0.50000,12,0.12346"
    assert len(rows) == 80


def test_a_camera_that_cannot_open_lists_what_was_tried() -> None:
    from vmaedet.runtime.sources import CaptureSource, open_source

    src = open_source("63")
    assert isinstance(src, CaptureSource)
    with pytest.raises(StreamError, match=r"cv2.VideoCapture\(63, CAP_ANY\)"):
        src.open()
    with pytest.raises(StreamError, match="source not found"):
        open_source("/nonexistent/clip.mp4")


def test_ring_nbytes_is_a_running_total_of_pushes_and_evictions() -> None:
    from collections import deque

    # 60×40 frames → short side 256 → 384×256 (both multiples of 16): 3·256·384 float32 per frame
    per_frame = 3 * 256 * 384 * 4
    ring = ClipRing(capacity=5)
    for f in _ring_frames(8):  # capacity evicts 3
        ring.push(f)
    assert len(ring) == 5 and ring.nbytes() == 5 * per_frame
    ring.evict_before(5.5 / 25)  # keeps frames 5, 6, 7 (frame 5 ties frame 6 at 5.5/25; ties → earlier)
    assert len(ring) == 3 and ring.nbytes() == 3 * per_frame

    class NoIteration(deque):
        def __iter__(self):  # the per-frame hot path must not walk the ring
            raise AssertionError("nbytes() iterated over the ring")

    ring._entries = NoIteration(ring._entries)
    assert ring.nbytes() == 3 * per_frame


def test_normalize_clip_builds_its_constants_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.data.transforms import MEAN_RGB, STD_RGB, normalize_clip

    frames = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    normalize_clip(frames)  # the first call on this device may build them
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    outs = [normalize_clip(frames) for _ in range(3)]
    assert made == []
    # float64 hand computation: (x − mean) / std per channel, channels first
    ref = (frames.astype(np.float64) - np.array(MEAN_RGB)) / np.array(STD_RGB)  # [T, H, W, 3]
    for out in outs:
        assert out.shape == (3, 2, 5, 7) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref.transpose(3, 0, 1, 2), rtol=0, atol=1e-5)


def test_file_source_without_a_video_stream_closes_its_container(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typing import Any

    import av

    from vmaedet.runtime.sources import FileSource

    path = tmp_path / "audio_only.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)

    opened: list[Any] = []
    real_open = av.open

    class Recording:
        """Wraps a real container and records close()."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.closed = inner, False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def close(self) -> None:
            self.closed = True
            self.inner.close()

    def recording_open(*args: Any, **kwargs: Any) -> Recording:
        opened.append(Recording(real_open(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(av, "open", recording_open)
    src = FileSource(path)
    with pytest.raises(StreamError, match="no video stream"):
        src.open()
    assert len(opened) == 1 and opened[0].closed


def test_lossless_clip_takes_exact_indices_at_a_tie_rate() -> None:
    """At 12.5 fps the time −1.24 s is exactly frame −15.5: a lossless source takes the
    scheduler's exact offsets (ties → earlier), never a float-rounded neighbour."""
    from vmaedet.runtime.scheduler import Scheduler

    fps = 12.5
    frames = [Frame(i, i / fps, np.full((8, 8, 3), i, np.uint8), 0.0) for i in range(60)]
    ring = ClipRing(capacity=100)
    for f in frames:
        ring.push(f)
    sched = Scheduler("centered", stride=8, fps=fps, lossless=True)
    key = 30
    _, picks = ring.clip(sched.targets(key / fps), key + sched.index_offsets)
    assert picks == [key + int(o) for o in sched.index_offsets]
    assert picks[0] == 14  # offset −16 (−15.5 rounds to the earlier frame)
    _, edge = ring.clip(sched.targets(2 / fps), 2 + sched.index_offsets)
    assert edge[0] == 0 and edge == sorted(edge)  # clamped at the start, as the seed clamps indices
    with pytest.raises(StreamError, match="lacks frames"):
        sparse = ClipRing(capacity=100)
        for f in frames[1::2]:  # odd frames only; the offsets at 12.5 fps are even
            sparse.push(f)
        sparse.clip(sched.targets(key / fps), key + sched.index_offsets)


@pytest.mark.parametrize("count, estimated, read, short", [
    (10_000, True, 9_920, False),  # a long VFR mkv/webm: duration × average rate is 80 frames high (0.8 %)
    (10_000, True, 9_899, True),  # more than 1 % short of the estimate: cut short
    (100, True, 98, False),  # a short file: at least the fixed 2 frames
    (100, True, 97, True),
    (10_000, False, 9_998, False),  # a declared count stays strict: 2 frames
    (10_000, False, 9_990, True),
])
def test_an_estimated_frame_count_gets_a_relative_tolerance(count: int, estimated: bool, read: int, short: bool) -> None:
    from vmaedet.runtime.sources import FileSource

    src = FileSource("long.mkv")
    src.frame_count, src.frame_count_estimated, src._index = count, estimated, read  # as after open() and the reads
    msg = src.shortfall()
    assert (msg is not None) == short, msg
    if short:
        assert f"ended after {read} of {'about ' if estimated else ''}{count} frames" in msg
