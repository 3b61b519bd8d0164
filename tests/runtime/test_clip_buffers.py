"""Clip memory in the stream worker: no clip for a keyframe without persons, clip arrays recycled safely."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vmaedet.data.video import write_video
from vmaedet.engines import create_engine
from vmaedet.models.checkpoints import save_detector
from vmaedet.models.detector import create_detector
from vmaedet.ops.boxes import make_rois
from vmaedet.runtime import buffer
from vmaedet.runtime.buffer import ClipRing
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.scheduler import frame_offsets
from vmaedet.runtime.sources import Frame
from vmaedet.runtime.stats import StreamStats
from helpers.engines import CheckingEngine
from helpers.persons import EveryOther

N_FRAMES, W, H = 72, 96, 64


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mp4 whose frames all differ (a moving bar over a changing background)."""
    frames = np.empty((N_FRAMES, H, W, 3), np.uint8)  # [N, H, W, 3]
    for i, img in enumerate(frames):
        img[:] = (5 * i) % 200
        img[10:50, i % (W - 20):i % (W - 20) + 20] = (220, 90, 30)
    return write_video(tmp_path_factory.mktemp("clipbuf") / "bars.mp4", frames, fps=25)


def _ring(n: int = 20) -> tuple[ClipRing, list[Frame]]:
    rng = np.random.default_rng(3)
    ring = ClipRing(capacity=32)
    frames = [Frame(i, i / 25, rng.integers(0, 256, (40, 70, 3), dtype=np.uint8), 0.0) for i in range(n)]
    for f in frames:
        ring.push(f)
    return ring, frames


def test_picks_are_the_frames_the_clip_takes() -> None:
    ring, _ = _ring()
    indices = np.array([-3, 0, 2, 5, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 30])  # clamped at both ends
    assert ring.picks(np.zeros(16), indices) == ring.clip(np.zeros(16), indices)[1]
    assert ring.picks(np.zeros(16), indices)[0] == 0 and ring.picks(np.zeros(16), indices)[-1] == 19
    targets = np.linspace(-0.1, 0.9, 16)  # live: the nearest frame in time
    nearest = [min(range(20), key=lambda i: (abs(i / 25 - t), i)) for t in targets]  # ties → the earlier frame
    assert ring.picks(targets) == ring.clip(targets)[1] == nearest


def test_clip_stacks_into_a_given_array_when_it_fits() -> None:
    ring, _ = _ring()
    indices = np.arange(2, 18)
    fresh, picks = ring.clip(np.zeros(16), indices)  # [1, 3, 16, Hp, Wp]
    out = np.full(tuple(fresh.shape[1:]), np.nan, np.float32)  # [3, 16, Hp, Wp]
    into, again = ring.clip(np.zeros(16), indices, out=out)
    assert again == picks and into.data_ptr() == out.ctypes.data and torch.equal(into, fresh)
    wrong = np.zeros((3, 8, *fresh.shape[-2:]), np.float32)  # another clip length: not used
    other, _ = ring.clip(np.zeros(16), indices, out=wrong)
    assert other.data_ptr() != wrong.ctypes.data and torch.equal(other, fresh) and not wrong.any()


def test_no_clip_is_built_for_a_keyframe_without_persons(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[list[int]] = []
    clip = buffer.ClipRing.clip

    def counting(self: ClipRing, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = clip(self, *args, **kwargs)
        built.append(result[1])
        return result

    monkeypatch.setattr(buffer.ClipRing, "clip", counting)
    engine = CheckingEngine(hold=0.0)
    results = list(stream(video, engine, StreamConfig(), person_detector=EveryOther()))
    assert [r.frame_index for r in results] == list(range(0, N_FRAMES, 8))
    with_persons = [r for r in results if len(r)]
    assert [r.frame_index for r in with_persons] == list(range(0, N_FRAMES, 16))
    assert len(built) == len(engine.pointers) == len(with_persons)  # one clip per keyframe with persons, no other
    assert built == [r.clip_frames for r in with_persons]
    for r in results:  # the keyframes without persons still say which frames their clip would have been: the seed's
        assert r.clip_frames == [min(max(r.frame_index + o, 0), N_FRAMES - 1) for o in frame_offsets("centered", 25.0)]


@pytest.mark.timeout(120)
def test_recycled_clip_arrays_are_never_written_while_the_engine_reads_them(video: Path) -> None:
    slow = CheckingEngine(hold=0.15)  # the worker runs ahead while each call holds its clip
    st = StreamStats()
    results = list(stream(video, slow, StreamConfig(stride=4), person_detector=f"boxes:{_all_frames(video)}", stats=st))
    assert len(results) == N_FRAMES // 4 == len(slow.pointers)
    assert slow.changed == 0
    distinct = len(set(slow.pointers))
    assert distinct < len(slow.pointers) and distinct <= 4  # recycled: in flight (2) + one being built + one spare
    # the same results as an engine that gets a fresh clip every time (no recycling involved)
    ref = CheckingEngine(hold=0.0)
    again = list(stream(video, ref, StreamConfig(stride=4, max_batch=1), person_detector=f"boxes:{_all_frames(video)}"))
    for a, b in zip(results, again):
        assert a.clip_frames == b.clip_frames
        np.testing.assert_array_equal(a.raw_scores, b.raw_scores)
    # and those means are the decoded frames' (an independent reading of each clip through the torch engine path)
    assert len({float(r.raw_scores[0, 0]) for r in results}) > len(results) // 2  # the clips differ


def test_recycling_gives_the_torch_engine_results_of_fresh_clips(video: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = save_detector(create_detector("vit_micro"), tmp_path / "micro.safetensors")
    engine = create_engine("torch", ckpt)
    spec = f"boxes:{_all_frames(video)}"
    results = list(stream(video, engine, StreamConfig(stride=4), person_detector=spec))
    ring = ClipRing(capacity=N_FRAMES + 1, short_side=engine.short_side)
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            ring.push(Frame(i, i / 25, f.to_ndarray(format="rgb24"), 0.0))
    for r in results[::3]:  # each clip again from a ring of its own, into fresh memory
        clip, _ = ring.clip(np.zeros(16), np.asarray(r.clip_frames))  # [1, 3, 16, Hp, Wp]
        assert r.image_wh == (W, H) and ring.resized_wh is not None
        logits = engine.infer(clip, make_rois(r.boxes, ring.resized_wh, src_wh=(W, H)))  # [K, 80]
        np.testing.assert_allclose(r.raw_scores, torch.sigmoid(logits).numpy() * r.person_scores[:, None],
                                   rtol=1e-5, atol=1e-6)


def _all_frames(video: Path) -> Path:
    """A proposals file with one person on every second of ``video`` (the boxes detector reads it)."""
    path = video.with_name("everyone.csv")
    if not path.exists():
        path.write_text("".join(f"{video.stem},{t},0.1,0.1,0.7,0.9,,0.9\n" for t in range(4)))
    return path
