"""Outputs of a stream: overlay drawing, window, H.264 mp4, JSONL events, AVA CSV rows.

The :class:`SinkWriter` thread receives, in order, ``("frame", Frame)``, ``("result", StreamResult)``
and ``("events", [ActionEvent])`` items; each frame is drawn with the latest result received before
it.  Every sink flushes as it goes and is closed on any exit, so an interrupted run leaves a
playable mp4, complete JSONL lines and complete CSV rows.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StreamError
from ..labels import AVA_ACTIONS
from .sources import Closed, Frame, Mailbox
from .stats import StreamStats

if TYPE_CHECKING:
    from .pipeline import StreamResult

_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128)], np.uint8)


def top_actions(scores: np.ndarray, threshold: float, k: int = 3) -> list[tuple[str, float]]:
    """The ≤ k highest-scoring actions ≥ ``threshold`` of one person's ``[80]`` scores."""
    order = np.argsort(-scores)[:k]
    return [(AVA_ACTIONS[i], float(scores[i])) for i in order if scores[i] >= threshold]


def draw_overlay(image: np.ndarray, result: "StreamResult | None", threshold: float, hud: str = "") -> np.ndarray:
    """A copy of ``image`` (RGB) with boxes, track ids, top actions and a HUD line drawn with OpenCV."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    if result is not None:
        for box, tid, scores in zip(result.boxes, result.track_ids, result.scores):
            color = tuple(int(c) for c in _PALETTE[int(tid) % len(_PALETTE)]) if tid >= 0 else (200, 200, 200)
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
            lines = [f"#{tid}" if tid >= 0 else "#?"] + [f"{n[:18]} {s:.2f}" for n, s in top_actions(scores, threshold)]
            for i, text in enumerate(lines):
                y = max(12, y1 - 4 - 14 * (len(lines) - 1 - i))
                cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    if hud:
        cv2.putText(out, hud, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def check_writable(path: str | Path, option: str) -> Path:
    """Refuse an output path that cannot be written, before anything is opened or truncated.

    Creates missing parent folders (as the sinks do); writes nothing else.

    Args:
        path: the output file.
        option: the CLI option naming it (``--jsonl``), for the message.

    Raises:
        StreamError: the path is a folder, its parent cannot be created or is not writable.
    """
    path = Path(path)
    expected = "a file path in a writable folder"
    if path.is_dir():
        raise StreamError(f"{option} names a folder, not a file", received=str(path), expected=expected,
                          fix=f"give a file name, e.g. {option} {path / ('out' + (path.suffix or '.out'))}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StreamError(f"cannot create the folder of {option}", received=f"{path}: {exc.strerror or exc}",
                          expected=expected, fix=f"choose another {option} path or create its folder") from exc
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise StreamError(f"{option} is not writable", received=str(target), expected=expected,
                          fix=f"choose another {option} path or fix its permissions")
    return path


def open_text_output(path: str | Path, option: str) -> Any:
    """Open ``path`` for writing (UTF-8 text, truncated); an OSError becomes a :class:`StreamError`."""
    path = check_writable(path, option)
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - the sink closes it
    except OSError as exc:
        raise StreamError(f"cannot write {option}", received=f"{path}: {exc.strerror or exc}",
                          expected="a file path in a writable folder",
                          fix=f"choose another {option} path or fix its permissions") from exc


def write_stats_json(stats: StreamStats, path: str | Path) -> Path:
    """Write the stats summary as JSON; an OSError becomes a :class:`StreamError`."""
    try:
        return stats.write_json(path)
    except OSError as exc:
        raise StreamError("cannot write --stats", received=f"{path}: {exc.strerror or exc}",
                          expected="a file path in a writable folder",
                          fix="choose another --stats path; the other outputs are complete") from exc


class Mp4Sink:
    """H.264 (libx264, yuv420p) via PyAV at the source's exact frame rate; odd sizes padded to even."""

    def __init__(self, path: str | Path, rate: Fraction, width: int, height: int) -> None:
        import av

        self.path = check_writable(path, "--save")
        try:
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.error.FFmpegError) as exc:
            raise StreamError("cannot write --save", received=f"{self.path}: {exc}",
                              expected="a writable .mp4 path", fix="choose another --save path") from exc
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        import av

        h, w = image.shape[:2]
        if (w, h) != (self._stream.width, self._stream.height):
            image = np.pad(image, ((0, self._stream.height - h), (0, self._stream.width - w), (0, 0)))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None


class WindowSink:
    """``cv2.imshow`` window; refuses to open without a display.  ``q``/Esc stops the stream."""

    TITLE = "vmaedet stream"

    def __init__(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise StreamError("--show needs a display", received="no DISPLAY/WAYLAND_DISPLAY (headless)",
                              expected="a desktop session", fix="drop --show and write --save out.mp4 instead")

    def show(self, image_rgb: np.ndarray) -> bool:
        """Show a frame; False when the user asked to quit."""
        import cv2

        try:
            cv2.imshow(self.TITLE, image_rgb[:, :, ::-1])
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise StreamError("cannot open a window", received=str(exc).strip().splitlines()[-1],
                              fix="opencv-python-headless has no GUI: install opencv-python, or drop --show") from exc
        return key not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        try:
            cv2.destroyWindow(self.TITLE)
        except cv2.error:
            pass


class JsonlSink:
    """One JSON object per line, flushed after each line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open_text_output(self.path, "--jsonl")
        self.lines = 0

    def write(self, line: str) -> None:
        self._fh.write(line + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class AvaCsvSink:
    """AVA result rows at 1 Hz, in the seed's format.

    For each integer second s, the keyframe nearest to s (within half the keyframe spacing,
    ties to the earlier keyframe) is written as ``video,SSSS,x1,y1,x2,y2,action_id,score`` rows
    (normalised boxes with the seed's +1, 5 decimals, all 80 actions per person) — the rows an
    AVA frame-mAP evaluation reads.

    Args:
        path: the CSV file (truncated).
        video_id: first column of every row.
        keyframe_spacing: seconds between keyframes; may be set later (``sink.keyframe_spacing = …``)
            when the file is opened before the source's frame rate is known, but before the first ``add``.
    """

    def __init__(self, path: str | Path, video_id: str, keyframe_spacing: float | None = None) -> None:
        self.path = Path(path)
        self._fh = open_text_output(self.path, "--csv")
        self.video_id = video_id
        self.keyframe_spacing = keyframe_spacing
        self._last_second = -1
        self.rows = 0

    def add(self, result: "StreamResult") -> None:
        assert self.keyframe_spacing is not None, "set keyframe_spacing before the first add"
        second = int(round(result.timestamp))
        if second <= self._last_second or abs(result.timestamp - second) > self.keyframe_spacing / 2 + 1e-9:
            return
        self._last_second = second
        for row in result.to_csv_rows(self.video_id, second):
            self._fh.write(row + "\n")
            self.rows += 1
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class SinkWriter(threading.Thread):
    """Writer thread: draws frames with the latest result and feeds every sink."""

    def __init__(self, mailbox: Mailbox[tuple[str, Any]], stats: StreamStats, threshold: float, *,
                 mp4: tuple[Path, Fraction] | None = None, window: WindowSink | None = None,
                 jsonl: JsonlSink | None = None, csv: AvaCsvSink | None = None) -> None:
        super().__init__(name="vmaedet-writer", daemon=True)
        self.mailbox = mailbox
        self.stats = stats
        self.threshold = threshold
        self._mp4_spec = mp4
        self.mp4: Mp4Sink | None = None
        self.window = window
        self.jsonl = jsonl
        self.csv = csv
        self.error: BaseException | None = None
        self.quit_requested = False
        self._latest: StreamResult | None = None
        self._fps_t: list[float] = []

    @property
    def draws(self) -> bool:
        return self._mp4_spec is not None or self.window is not None

    def _hud(self) -> str:
        now = time.monotonic()
        self._fps_t = [t for t in self._fps_t if now - t < 2.0] + [now]
        fps = (len(self._fps_t) - 1) / max(now - self._fps_t[0], 1e-6)
        lat = f"{self._latest.latency * 1e3:.0f} ms" if self._latest is not None else "-"
        return f"{fps:.1f} fps | latency {lat} | dropped {self.stats.counters.get('frames_dropped', 0)}"

    def _frame(self, frame: Frame) -> None:
        if not self.draws:
            return
        with self.stats.time("draw"):
            image = draw_overlay(frame.image, self._latest, self.threshold, self._hud())
            if self._mp4_spec is not None:
                if self.mp4 is None:
                    path, rate = self._mp4_spec
                    self.mp4 = Mp4Sink(path, rate, image.shape[1], image.shape[0])
                self.mp4.write(image)
            if self.window is not None and not self.window.show(image):
                self.quit_requested = True
                self.mailbox.stop.set()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            self._frame(payload)
        elif kind == "result":
            self._latest = payload
            if self.csv is not None:
                self.csv.add(payload)
        elif kind == "events" and self.jsonl is not None:
            for event in payload:
                self.jsonl.write(event.to_json())

    def run(self) -> None:
        try:
            while True:
                try:
                    kind, payload = self.mailbox.get()
                except Closed:
                    break
                self._handle(kind, payload)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consumer
            self.error = exc
            self.mailbox.stop.set()
        finally:
            self.close()

    def close(self) -> None:
        for sink in (self.mp4, self.window, self.jsonl, self.csv):
            if sink is not None:
                try:
                    sink.close()
                except Exception as exc:  # noqa: BLE001 - keep closing the others
                    self.error = self.error or exc

