"""One frame-sampling rule for the loaders, the stream scheduler and the validator; one H.264 encoder."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmaedet.data import sampling, video
from vmaedet.data.validate import check_dataset
from vmaedet.data.layouts import FramesDirSource, VideoFileSource
from vmaedet.data.sampling import frame_offsets
from vmaedet.data.video import encode_h264, write_video
from vmaedet.errors import DataError
from vmaedet.runtime import scheduler

# (rate as a stream/user gives it, the exact rate it stands for)
RATES = [(12.5, Fraction(25, 2)), (25.0, Fraction(25)), (29.97, Fraction(2997, 100)),
         (30000 / 1001, Fraction(30000, 1001)), (30.0, Fraction(30)), (37.5, Fraction(75, 2)), (50.0, Fraction(50))]


def brute_nearest(t: Fraction, fps: Fraction) -> int:
    """Frame index whose time i/fps is nearest to t, ties to the earlier frame (exhaustive search)."""
    return min(range(-400, 400), key=lambda i: (abs(Fraction(i) / fps - t), i))


@pytest.mark.parametrize("fps, exact", RATES)
@pytest.mark.parametrize("mode, first", [("centered", -31), ("causal", -60)])
def test_loader_and_scheduler_take_the_same_nearest_frames(fps: float, exact: Fraction, mode: str, first: int) -> None:
    loader = frame_offsets(fps, "time", window=mode)
    stream = scheduler.frame_offsets(mode, fps).tolist()
    assert loader == stream
    assert all(a < b for a, b in zip(loader, loader[1:]))  # strictly increasing
    # spec §2: times (first + 4k)/25 s; each takes the frame nearest in time
    assert loader == [brute_nearest(Fraction(first + 4 * k, 25), exact) for k in range(16)]
    if mode == "centered":
        assert frame_offsets(fps) == loader  # "auto" is "time" off 25 fps and equal to it at 25 fps


def test_hand_values_at_12_5_25_and_frames_rule() -> None:
    # 12.5 fps: (−31 + 4k)/25 s · 12.5 = −15.5 + 2k, always a tie → earlier frame −16 + 2k
    assert frame_offsets(12.5) == list(range(-16, 15, 2))
    seed = [-31, -27, -23, -19, -15, -11, -7, -3, 1, 5, 9, 13, 17, 21, 25, 29]
    assert frame_offsets(25) == frame_offsets(25, "time") == frame_offsets(25, "frames") == seed
    assert frame_offsets(30, "frames") == frame_offsets(12.5, "frames") == seed
    assert frame_offsets(25, "frames", window="causal") == list(range(-60, 1, 4))
    # sampling times in seconds: −1.24 … +1.16 in steps of 0.16
    np.testing.assert_allclose(scheduler.sample_offsets("centered"), np.arange(16) * 0.16 - 1.24, rtol=0, atol=1e-12)
    with pytest.raises(DataError, match="window"):
        frame_offsets(25, window="middle")


def test_keyframe_of_a_timestamp_uses_the_same_tie_rule() -> None:
    # 12.5 fps frame folders: t = 3 s is frame 37.5 → 37 (earlier), t = 1 s is 12.5 → 12
    src = FramesDirSource("/nonexistent", fps=12.5, timestamp_start=0)
    assert (src.keyframe_index(3), src.keyframe_index(1), src.keyframe_index(2)) == (37, 12, 25)
    assert sampling.nearest_frame(Fraction(3), 12.5) == brute_nearest(Fraction(3), Fraction(25, 2))


def coded(n: int, w: int = 64, h: int = 48) -> np.ndarray:
    """Frame i: left half grey (i % 16)·16 + 8, right half (i // 16)·16 + 8."""
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i, :, : w // 2] = (i % 16) * 16 + 8
        f[i, :, w // 2:] = (i // 16) * 16 + 8
    return f


def index_of(frames: np.ndarray) -> list[int]:
    w = frames.shape[2]
    lo = np.round((frames[:, 4:-4, 4: w // 2 - 4].mean(axis=(1, 2, 3)) - 8) / 16)
    hi = np.round((frames[:, 4:-4, w // 2 + 4: -4].mean(axis=(1, 2, 3)) - 8) / 16)
    return [int(a + 16 * b) for a, b in zip(lo, hi)]


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory) -> Path:
    """A 12.5 fps, 62-frame (4.96 s) H.264 video in a dataset layout with one GT file."""
    root = tmp_path_factory.mktemp("rate125")
    write_video(root / "videos" / "v.mp4", coded(62), fps=12.5)
    ann = root / "annotations"
    ann.mkdir()
    (ann / "train.csv").write_text("v,1,0.1,0.1,0.5,0.5,12,0\nv,3,0.1,0.1,0.5,0.5,12,0\nv,4,0.1,0.1,0.5,0.5,12,0\n")
    return root


def test_video_source_at_12_5_fps_decodes_the_scheduler_frames(slow_video: Path) -> None:
    src = VideoFileSource(slow_video / "videos")
    try:
        key, window = src.window("v", 3)
        assert key == 37  # 3 s · 12.5 = 37.5 → earlier frame
        want = [min(max(key + o, 0), 61) for o in scheduler.frame_offsets("centered", 12.5)]
        assert window == [key + o for o in range(-16, 15, 2)]
        assert src.indices("v", 3) == want
        assert index_of(src.clip("v", 3)) == want
    finally:
        src.close()


def test_validator_reports_the_sources_own_window(slow_video: Path) -> None:
    report = check_dataset(slow_video, "train")
    assert report.errors == []
    # t = 1 s: key 12 (12.5 → earlier), frames 12 − 16 .. 12 + 14 = −4..26; t = 4 s: key 50, 34..64 > 61
    msgs = sorted(w.message for w in report.warnings)
    assert msgs == ["keyframe v,1 lacks context: frames -4..26 needed, video has 0..61 (indices will be clamped)",
                    "keyframe v,4 lacks context: frames 34..64 needed, video has 0..61 (indices will be clamped)"]


class _SpyContainer:
    """Wraps a real PyAV container and records ``close()``."""

    def __init__(self, real) -> None:
        self.real, self.closed = real, False

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def close(self) -> None:
        self.closed = True
        self.real.close()


def test_reader_closes_its_container_when_stream_info_fails(slow_video: Path, monkeypatch) -> None:
    opened: list[_SpyContainer] = []
    real_open = video._open_container

    def spy_open(path: Path) -> _SpyContainer:
        opened.append(_SpyContainer(real_open(path)))
        return opened[-1]

    def broken_info(*args, **kwargs):
        raise DataError("cannot tell how many frames the video has", received="test", expected="-", fix="-")

    monkeypatch.setattr(video, "_open_container", spy_open)
    monkeypatch.setattr(video, "_stream_info", broken_info)
    with pytest.raises(DataError, match="how many frames"):
        video.CachedVideoReader(slow_video / "videos" / "v.mp4", None, 10, 10)
    assert len(opened) == 1 and opened[0].closed


def _reference_synthetic_encode(path: Path, frames: np.ndarray, fps: int) -> None:
    """The synthetic generator's original recipe, written out with PyAV directly."""
    import av
    import cv2

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        for n, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_synthetic_encoder_bytes_equal_the_original_recipe(tmp_path: Path) -> None:
    from vmaedet.data.synthetic import encode_mp4

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)
    _reference_synthetic_encode(tmp_path / "ref.mp4", frames, 25)
    assert encode_mp4(iter(frames), tmp_path / "new.mp4", 64, 48, 25) == 12
    assert (tmp_path / "new.mp4").read_bytes() == (tmp_path / "ref.mp4").read_bytes()


@pytest.mark.parametrize("yuv", ["swscale", "cv2"])
def test_encode_h264_round_trip_and_refusals(tmp_path: Path, yuv: str) -> None:
    frames = coded(20)
    assert encode_h264(tmp_path / "a.mp4", iter(frames), Fraction(30000, 1001), yuv=yuv, preset="ultrafast") == 20
    back, fps = video.decode_all(tmp_path / "a.mp4")
    assert index_of(back) == list(range(20)) and fps == pytest.approx(30000 / 1001, abs=1e-6)
    bad = list(frames[:3]) + [frames[3, :, :32]]  # the 4th frame changes size
    with pytest.raises(DataError, match="frame 3 to encode changes size"):
        encode_h264(tmp_path / "b.mp4", bad, 25, yuv=yuv)
    assert not (tmp_path / "b.mp4").exists()  # the partial file is removed
    with pytest.raises(DataError, match="even"):
        encode_h264(tmp_path / "c.mp4", [np.zeros((5, 4, 3), np.uint8)], 25, yuv=yuv)
    with pytest.raises(DataError, match="conversion"):
        encode_h264(tmp_path / "d.mp4", frames, 25, yuv="magic")
