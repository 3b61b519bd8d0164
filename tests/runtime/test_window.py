"""One window for every source: a grid of the sources' latest frames, ``q`` stops them all.

No display exists here, so OpenCV's three GUI calls are replaced by a recorder (a test double for the
screen); everything else — sources, engine, overlay, the window's grid — is the real code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from vmaedet.data.video import write_video
from vmaedet.models.checkpoints import save_detector
from vmaedet.models.detector import create_detector
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.sinks import WindowSink, fit_tile, mosaic_layout


class Screen:
    """Records what ``cv2.imshow`` is given; answers ``q`` to ``waitKey`` on the ``quit_after``-th frame
    counted from the first that ``seen`` accepts (the user presses q once they have seen what they wanted)."""

    def __init__(self, quit_after: int) -> None:
        self.frames: list[np.ndarray] = []
        self.quit_after = quit_after
        self.seen: Callable[[np.ndarray], bool] = lambda frame: True
        self.first_seen: int | None = None
        self.destroyed = 0

    def imshow(self, title: str, image_bgr: np.ndarray) -> None:
        self.frames.append(image_bgr.copy())
        if self.first_seen is None and self.seen(image_bgr):
            self.first_seen = len(self.frames) - 1

    def waitKey(self, delay: int) -> int:  # noqa: N802 - OpenCV's name
        if self.first_seen is not None and len(self.frames) - self.first_seen >= self.quit_after:
            return ord("q")
        return -1

    def destroyWindow(self, title: str) -> None:  # noqa: N802 - OpenCV's name
        self.destroyed += 1


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Screen:
    import cv2

    s = Screen(quit_after=10**9)
    monkeypatch.setenv("DISPLAY", ":99")
    for name in ("imshow", "waitKey", "destroyWindow"):
        monkeypatch.setattr(cv2, name, getattr(s, name))
    return s


def _video(path: Path, n: int, w: int, h: int, colour: tuple[int, int, int]) -> Path:
    frames = np.full((n, h, w, 3), 40, dtype=np.uint8)  # [n, h, w, 3]
    for i in range(n):
        x = 4 + (2 * i) % (w - 38)
        frames[i, h // 4: 3 * h // 4, x: x + 30] = colour  # a block moving across, again and again
    return write_video(path, frames)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_detector(create_detector("vit_micro"), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def test_grid_layout_and_tiles_keep_the_aspect() -> None:
    assert [mosaic_layout(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 3)]
    wide = np.full((100, 400, 3), 255, dtype=np.uint8)  # 4:1 into a 16:9 cell: black bars above and below
    tile = fit_tile(wide, (320, 180))
    assert tile.shape == (180, 320, 3)
    rows = np.nonzero(tile[:, 160, 0] > 128)[0]  # the image's rows in the middle column
    assert rows.min() == (180 - 80) // 2 and rows.max() == (180 - 80) // 2 + 79
    assert tile[0, 160].sum() == 0 and tile[-1, 160].sum() == 0


@pytest.mark.timeout(120)
def test_several_sources_share_one_window_and_q_stops_them_all(screen: Screen, checkpoint: Path,
                                                               tmp_path: Path) -> None:
    red = _video(tmp_path / "red.mp4", 200, 160, 120, (230, 20, 20))
    blue = _video(tmp_path / "blue.mp4", 200, 96, 128, (20, 20, 230))  # another size and aspect: its own cell
    screen.quit_after = 3
    screen.seen = lambda f: bool(f[:, :640].any() and f[:, 640:].any())  # both cells have a frame
    results = list(stream({"red": red, "blue": blue}, checkpoint, StreamConfig(show=True, stride=8, max_batch=2),
                          person_detector="motion"))
    assert screen.first_seen is not None, "never showed both sources"
    assert len(screen.frames) == screen.first_seen + 3  # q on the 3rd redraw (≤ 30 a second): nothing after it
    assert all(f.shape == (360, 1280, 3) for f in screen.frames)  # 1 × 2 cells of 640 × 360
    last = screen.frames[-1].astype(int)  # BGR
    left, right = last[:, :640], last[:, 640:]
    assert (left[..., 2] - left[..., 0] > 100).any(), "the red source is not in the left cell"
    assert (right[..., 0] - right[..., 2] > 100).any(), "the blue source is not in the right cell"
    assert screen.destroyed == 1  # closed once, after both sources let go
    per_source = {}
    for r in results:
        per_source[r.source] = per_source.get(r.source, 0) + 1
    assert set(per_source) <= {"red", "blue"}
    assert sum(per_source.values()) < 2 * 200 // 8  # both stopped before their ends


def test_one_source_shows_its_frames_unscaled(screen: Screen, checkpoint: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "one.mp4", 24, 160, 120, (230, 20, 20))
    list(stream(video, checkpoint, StreamConfig(show=True, stride=8), person_detector="motion"))
    assert len(screen.frames) == 24 and all(f.shape == (120, 160, 3) for f in screen.frames)
    assert screen.destroyed == 1


def test_the_window_is_refused_without_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.errors import StreamError

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(StreamError, match="needs a display"):
        WindowSink()
