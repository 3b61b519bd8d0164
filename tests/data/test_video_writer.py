"""The one H.264 writer (:class:`vmaedet.data.video.H264Writer`): odd-size policy, failure clean-up, bytes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmaedet.data.video import X264_PRESETS, H264Writer, decode_all, encode_h264
from vmaedet.errors import DataError


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # [N, H, W, 3]


def _stream_sink_reference(path: Path, frames: np.ndarray, rate: Fraction, fmt: str) -> None:
    """libx264 defaults written out with PyAV directly (no crf or preset option; the stream's video recipe
    before it took a real-time preset), a named muxer, odd sizes padded bottom/right with black, no pts set."""
    import av

    h, w = frames.shape[1:3]
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for img in frames:
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize(("h", "w", "fmt", "suffix"), [(24, 32, "mp4", ".mp4"), (23, 31, "mp4", ".mp4"),
                                                       (23, 32, "mov", ".mov")])  # (matroska writes random UIDs)
def test_writer_bytes_equal_the_stream_sink_recipe(tmp_path: Path, h: int, w: int, fmt: str, suffix: str) -> None:
    frames = _frames(10, h, w)
    rate = Fraction(30000, 1001)
    _stream_sink_reference(tmp_path / f"ref{suffix}", frames, rate, fmt)
    with H264Writer(tmp_path / f"new{suffix}", rate, crf=None, odd="pad", format=fmt) as writer:
        for img in frames:
            writer.write(img)
    assert writer.frames == 10 and writer.coded_size == (w + w % 2, h + h % 2)
    assert (tmp_path / f"new{suffix}").read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()


def test_pad_keeps_pixels_where_they_are(tmp_path: Path) -> None:
    img = np.zeros((23, 31, 3), np.uint8)
    img[:, :15] = 255  # left half white: padding on the right/bottom must not move it
    assert encode_h264(tmp_path / "p.mp4", [img] * 3, 25, odd="pad", crf=0) == 3
    back, _ = decode_all(tmp_path / "p.mp4")  # [3, 24, 32, 3]
    assert back.shape == (3, 24, 32, 3)
    assert back[:, :23, :13].min() > 200 and back[:, :23, 17:31].max() < 60


def test_odd_sizes_are_refused_by_default_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="even") as info:
        encode_h264(tmp_path / "odd.mp4", [np.zeros((5, 4, 3), np.uint8)], 25)
    assert "odd='pad'" in info.value.fix
    assert not (tmp_path / "odd.mp4").exists()
    writer = H264Writer(tmp_path / "w.mp4", 25)
    writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="changes size"):
        writer.write(np.zeros((8, 10, 3), np.uint8))
    assert not (tmp_path / "w.mp4").exists()  # a refused frame deletes the partial file
    with pytest.raises(DataError, match="closed"):
        writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="odd-size policy"):
        H264Writer(tmp_path / "x.mp4", 25, odd="crop")


def test_context_manager_removes_the_file_on_error_and_close_is_idempotent(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with H264Writer(tmp_path / "e.mp4", 25) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            raise RuntimeError("caller failed")
    assert not (tmp_path / "e.mp4").exists()
    empty = H264Writer(tmp_path / "none.mp4", 25)
    assert empty.close() == 0 and not (tmp_path / "none.mp4").exists()  # no frame: no file
    ok = H264Writer(tmp_path / "sub" / "ok.mp4", 25, preset="ultrafast", threads=1)
    for img in _frames(4, 16, 16):
        ok.write(img)
    assert ok.close() == 4 and ok.close() == 4
    assert decode_all(tmp_path / "sub" / "ok.mp4")[0].shape == (4, 16, 16, 3)


def _x264_options(path: Path) -> dict[str, str]:
    """The settings libx264 wrote into its SEI message (``x264 - core … options: subme=2 ref=1 …``)."""
    import re

    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]*)", path.read_bytes())
    assert found is not None
    return dict(kv.split("=", 1) for kv in found.group(1).decode("ascii", "replace").split() if "=" in kv)


@pytest.mark.parametrize(("preset", "threads", "subme"), [("veryfast", 1, "2"), (None, 1, "7"), ("ultrafast", 2, "0")])
def test_preset_and_threads_reach_libx264(tmp_path: Path, preset: str | None, threads: int, subme: str) -> None:
    frames = _frames(5, 128, 96)  # 128 rows: a 64-row frame gets one thread whatever is asked
    assert encode_h264(tmp_path / "p.mp4", frames, 25, crf=None, preset=preset, threads=threads) == 5
    opts = _x264_options(tmp_path / "p.mp4")
    assert opts["subme"] == subme and opts["threads"] == str(threads), opts  # None: libx264's medium (subme 7)
    assert len(decode_all(tmp_path / "p.mp4")[0]) == 5


@pytest.mark.parametrize(("kw", "words"), [({"preset": "Fast"}, "preset"), ({"preset": "fastest"}, "preset"),
                                          ({"threads": -1}, "thread"), ({"threads": 1.5}, "thread")])
def test_bad_encoder_options_are_refused_before_a_file_opens(tmp_path: Path, kw: dict, words: str) -> None:
    with pytest.raises(DataError, match=words) as info:
        encode_h264(tmp_path / "bad.mp4", _frames(2, 8, 8), 25, **kw)
    msg = str(info.value)
    assert "received" in msg and "expected" in msg and "fix" in msg
    if "preset" in kw:
        assert " | ".join(X264_PRESETS) in msg
    assert not any(tmp_path.iterdir())
