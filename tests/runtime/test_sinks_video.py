"""The stream's video output: libx264 preset (``save_preset``), encoder threads, colours, frame count, refusals.

Real files written with PyAV/libx264; the options libx264 applied are read back from the SEI message it
writes into every stream (``x264 - core … options: …``).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaedet.data.video import X264_PRESETS
from vmaedet.errors import ConfigError, DataError, StreamError
from vmaedet.runtime.config import DEFAULT_SAVE_PRESET, StreamConfig
from vmaedet.runtime.sinks import ENCODER_THREADS, Mp4Sink, SinkWriter
from vmaedet.runtime.sources import Frame, Mailbox
from vmaedet.runtime.stats import StreamStats
from vmaedet.structures import ActionDetections

#: settings libx264's presets differ in (x264 --fullhelp): subpixel refinement and reference frames
SIGNATURES = {"veryfast": {"subme": "2", "ref": "1"}, "medium": {"subme": "7", "ref": "3"},
              "ultrafast": {"subme": "0", "ref": "1"}}


def x264_options(path: Path) -> dict[str, str]:
    """The ``options:`` libx264 wrote into the stream's SEI (``threads=1 subme=2 …``)."""
    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]*)", path.read_bytes())
    assert found is not None, f"no x264 SEI in {path}"
    return dict(kv.split("=", 1) for kv in found.group(1).decode("ascii", "replace").split() if "=" in kv)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])  # [N, H, W, 3]


def _frames(n: int, h: int = 72, w: int = 96) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : w // 3] = (220, 30, 30)  # red | green | blue bands: a swapped channel order shows
        img[:, w // 3: 2 * w // 3] = (30, 200, 40)
        img[:, 2 * w // 3:] = (40, 50, 210)
        img[h // 4: h // 4 + 8, i % (w - 8): i % (w - 8) + 8] = 255  # a moving square
        out.append(img)
    return out


def _run_writer(path: Path, frames: list[np.ndarray], **kw: object) -> SinkWriter:
    stop = threading.Event()
    box: Mailbox = Mailbox(4, "wait", stop, wait_for_close=True)
    writer = SinkWriter(box, StreamStats(), 0.4, mp4=(path, Fraction(25)), **kw)  # type: ignore[arg-type]
    writer.start()
    for i, img in enumerate(frames):
        box.put(("frame", Frame(i, i / 25, img, 0.0)))
    box.close()
    writer.join(30)
    assert not writer.is_alive() and writer.error is None, writer.error
    return writer


@pytest.mark.parametrize("preset", [None, "medium", "ultrafast"])
def test_the_preset_reaches_libx264_and_every_frame_is_written(tmp_path: Path, preset: str | None) -> None:
    frames = _frames(23)
    out = tmp_path / "o.mp4"
    writer = _run_writer(out, frames, **({} if preset is None else {"save_preset": preset}))
    chosen = preset or DEFAULT_SAVE_PRESET
    opts = x264_options(out)
    assert {k: opts[k] for k in SIGNATURES[chosen]} == SIGNATURES[chosen], opts
    assert opts["threads"] == str(ENCODER_THREADS)
    assert writer.mp4 is not None and writer.mp4.frames == 23
    assert len(decode(out)) == 23


def test_the_default_preset_is_a_real_time_one_and_the_cli_agrees() -> None:
    import inspect

    from vmaedet.cli.stream import stream_command

    assert DEFAULT_SAVE_PRESET == StreamConfig().save_preset == "veryfast"
    assert X264_PRESETS.index(DEFAULT_SAVE_PRESET) < X264_PRESETS.index("medium")
    assert inspect.signature(stream_command).parameters["save_preset"].default == DEFAULT_SAVE_PRESET


def test_colours_survive_the_opencv_yuv_conversion(tmp_path: Path) -> None:
    """Planes made by OpenCV (BT.601 limited range, as swscale): decoded back within a few levels, R G B in place."""
    frames = _frames(6, 64, 96)
    out = tmp_path / "c.mkv"
    sink = Mp4Sink(out, Fraction(25), 96, 64, preset="ultrafast")
    for img in frames:
        sink.write(img)
    sink.close()
    back = decode(out).astype(np.int16)
    assert back.shape == (6, 64, 96, 3)
    band = back[:, 40:, 4:28].reshape(-1, 3).mean(0), back[:, 40:, 36:60].reshape(-1, 3).mean(0)
    assert np.abs(band[0] - (220, 30, 30)).max() < 8 and np.abs(band[1] - (30, 200, 40)).max() < 8, band
    assert np.abs(back[:, 40:] - np.stack(frames)[:, 40:].astype(np.int16)).mean() < 4


def test_an_odd_sized_source_keeps_every_frame(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    writer = _run_writer(out, _frames(9, 45, 71))
    assert writer.mp4 is not None and writer.mp4.frames == 9
    assert decode(out).shape == (9, 46, 72, 3)


def test_a_bad_preset_is_refused_by_every_layer_before_a_file_opens(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        StreamConfig(save="o.mp4", save_preset="fastest")
    msg = str(info.value)
    assert "save_preset" in msg and "'fastest'" in msg and "veryfast | faster" in msg and "fix:" in msg
    assert "--" not in msg  # the library names its parameter, not a flag

    stop = threading.Event()
    with pytest.raises(StreamError, match="preset") as info2:
        SinkWriter(Mailbox(2, "wait", stop), StreamStats(), 0.4, mp4=(tmp_path / "w.mp4", Fraction(25)),
                   save_preset="VeryFast")
    assert "'VeryFast'" in str(info2.value) and "expected:" in str(info2.value)

    with pytest.raises(DataError, match="unknown libx264 preset"):
        Mp4Sink(tmp_path / "m.mp4", Fraction(25), 32, 32, preset="turbo")
    assert not any(tmp_path.iterdir())  # nothing was created


def _draw_per_frame_reference(image: np.ndarray, result: ActionDetections, threshold: float, hud: str) -> np.ndarray:
    """The overlay as the writer drew it before it laid a result out once: every person, every frame."""
    import cv2

    from vmaedet.runtime.sinks import _PALETTE
    from vmaedet.structures import top_actions

    out = image.copy()
    for box, tid, scores in zip(result.boxes, result.track_ids, result.action_scores):
        color = tuple(int(c) for c in _PALETTE[int(tid) % len(_PALETTE)]) if tid >= 0 else (200, 200, 200)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        lines = [f"#{tid}" if tid >= 0 else "#?"] + [f"{n[:18]} {s:.2f}" for n, s in top_actions(scores, threshold)]
        for i, text in enumerate(lines):
            y = max(12, y1 - 4 - 14 * (len(lines) - 1 - i))
            cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    cv2.putText(out, hud, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def test_a_result_laid_out_once_draws_the_same_pixels_on_every_frame() -> None:
    from vmaedet.runtime.sinks import draw_overlay, overlay_items

    rng = np.random.default_rng(3)
    n = 5
    xy = rng.uniform(0, 150, (n, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (n, 80)).astype(np.float32)  # [N, 80]
    result = ActionDetections(np.concatenate([xy, xy + 40.5], 1), np.full(n, 0.9, np.float32), scores,
                              track_ids=np.array([0, 3, -1, 12, 7]))
    items = overlay_items(result, 0.5)
    assert len(items) == n and items[2][1] == (200, 200, 200)  # an untracked person is grey
    for k, image in enumerate(_frames(3, 200, 240)):
        hud = f"{k}.0 fps | latency 80 ms | dropped 0"
        ref = _draw_per_frame_reference(image, result, 0.5, hud)
        got = draw_overlay(image, result, 0.5, hud, items=items)
        assert np.array_equal(got, ref) and np.array_equal(draw_overlay(image, result, 0.5, hud), ref)
        assert not np.array_equal(got, image)  # something was drawn, on a copy
    assert overlay_items(None, 0.5) == []


def test_one_encoder_thread_up_to_1080p_and_libx264_s_choice_above(tmp_path: Path) -> None:
    from vmaedet.runtime.sinks import ENCODER_ONE_THREAD_MAX_PIXELS

    assert Mp4Sink(tmp_path / "a.mp4", Fraction(25), 1920, 1080).threads == ENCODER_THREADS == 1
    assert 1920 * 1080 <= ENCODER_ONE_THREAD_MAX_PIXELS < 2560 * 1440
    big = Mp4Sink(tmp_path / "b.mp4", Fraction(25), 2560, 1440, preset="ultrafast")
    assert big.threads == 0
    big.write(np.zeros((1440, 2560, 3), np.uint8))
    big.close()
    assert int(x264_options(tmp_path / "b.mp4")["threads"]) >= 1  # libx264's own count (its SEI has the number)
    assert Mp4Sink(tmp_path / "c.mp4", Fraction(25), 64, 48, threads=2).threads == 2
