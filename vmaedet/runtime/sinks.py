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

from vmaedet.errors import OutputError, StreamError
from vmaedet.labels import AVA_ACTIONS
from vmaedet.safeio import ensure_parent, final_mode, output_error
from vmaedet.runtime.sources import Closed, Frame, Mailbox
from vmaedet.runtime.stats import StreamStats

if TYPE_CHECKING:
    from vmaedet.runtime.pipeline import StreamResult

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


_EXAMPLE_SUFFIX = {"--save": ".mp4", "--jsonl": ".jsonl", "--csv": ".csv", "--stats": ".json"}


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
                          fix=f"give a file name, e.g. {option} {path / ('out' + (path.suffix or _EXAMPLE_SUFFIX.get(option, '.out')))}")
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
    """Write the stats summary as JSON (atomically); a failed write is an :class:`OutputError` naming it."""
    try:
        return stats.write_json(path, what="the --stats JSON")
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(path, exc, what="the --stats JSON") from exc


#: Containers ``--save`` can write (file suffix → FFmpeg muxer); all take H.264 yuv420p.
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".ts": "mpegts"}


def check_video_container(path: str | Path, option: str) -> str:
    """The FFmpeg muxer for a video output path, from its suffix; refuses an unknown suffix up front.

    Raises:
        StreamError: the suffix names no video container (``out.txt``, no suffix).
    """
    path = Path(path)
    fmt = VIDEO_CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise StreamError(f"{option} must name a video file; {path.suffix or 'no suffix'!s} is not a video container",
                          received=str(path), expected=f"a file ending in {', '.join(VIDEO_CONTAINERS)}",
                          fix=f"e.g. {option} {path.with_suffix('.mp4')}")
    return fmt


class PendingOutput:
    """An output written under a temporary name beside its target and renamed over it at the end.

    The temporary file is created at once (so a folder that cannot be written fails before the run);
    :meth:`commit` renames it over the target, :meth:`discard` deletes it. A failed write marks it
    ``failed`` and it is discarded: an output is either complete or absent, never half written.

    Args:
        target: the file the user asked for.
        label: its name in messages (``--jsonl``).
    """

    def __init__(self, target: str | Path, label: str) -> None:
        import tempfile

        self.target = ensure_parent(target, what=f"the {label} output")
        self.label = label
        self.failed = False
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp" + self.target.suffix,
                                        dir=self.target.parent)
            os.close(fd)
        except OSError as exc:
            raise output_error(self.target, exc, what=f"the {label} output") from exc
        self.tmp = Path(name)

    def error(self, exc: BaseException) -> OutputError:
        """Mark the output failed; the error naming it and the cause in words."""
        self.failed = True
        return exc if isinstance(exc, OutputError) else output_error(self.target, exc, what=f"the {self.label} output")

    def commit(self) -> Path:
        """Rename the temporary file over the target (permissions as a plainly created file)."""
        try:
            os.chmod(self.tmp, final_mode(self.target))
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.discard()
            raise self.error(exc) from exc
        return self.target

    def discard(self) -> None:
        """Delete the temporary file (idempotent)."""
        try:
            self.tmp.unlink()
        except OSError:
            pass


class Mp4Sink:
    """H.264 (libx264, yuv420p) via PyAV at the source's exact frame rate; odd sizes padded to even."""

    def __init__(self, path: str | Path, rate: Fraction, width: int, height: int, fmt: str | None = None) -> None:
        import av

        self.path = check_writable(path, "--save")
        fmt = fmt or check_video_container(self.path, "--save")
        try:
            self._container = av.open(str(self.path), mode="w", format=fmt)
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
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()  # also after a failed flush: never leave the file open


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
    """Writer thread: draws frames with the latest result and feeds every sink.

    ``outputs`` maps each file sink (``"--save"``, ``"--jsonl"``, ``"--csv"``) to its
    :class:`PendingOutput`; a sink whose write or close fails marks its output failed and the error
    (an :class:`OutputError` naming the file and the cause) ends the run.
    """

    def __init__(self, mailbox: Mailbox[tuple[str, Any]], stats: StreamStats, threshold: float, *,
                 mp4: tuple[Path, Fraction] | None = None, window: WindowSink | None = None,
                 jsonl: JsonlSink | None = None, csv: AvaCsvSink | None = None,
                 outputs: dict[str, PendingOutput] | None = None) -> None:
        super().__init__(name="vmaedet-writer", daemon=True)
        self.mailbox = mailbox
        self.stats = stats
        self.threshold = threshold
        self._mp4_spec = mp4
        self.mp4: Mp4Sink | None = None
        self.window = window
        self.jsonl = jsonl
        self.csv = csv
        self.outputs = outputs or {}
        self.error: BaseException | None = None
        self.quit_requested = False
        self._latest: StreamResult | None = None
        self._fps_t: list[float] = []

    @property
    def draws(self) -> bool:
        return self._mp4_spec is not None or self.window is not None

    def _io(self, label: str, fn: Any, *args: Any) -> Any:
        """Run one sink operation; a failure becomes the output's error (named, cause in words)."""
        try:
            return fn(*args)
        except Exception as exc:
            pending = self.outputs.get(label)
            if pending is None:
                raise
            raise pending.error(exc) from exc

    def _hud(self) -> str:
        now = time.monotonic()
        self._fps_t = [t for t in self._fps_t if now - t < 2.0] + [now]
        fps = (len(self._fps_t) - 1) / max(now - self._fps_t[0], 1e-6)
        lat = f"{self._latest.latency * 1e3:.0f} ms" if self._latest is not None else "-"
        return f"{fps:.1f} fps | latency {lat} | dropped {self.stats.counters.get('frames_dropped', 0)}"

    def _open_mp4(self, width: int, height: int) -> Mp4Sink:
        path, rate = self._mp4_spec  # type: ignore[misc]
        pending = self.outputs.get("--save")
        fmt = check_video_container(pending.target if pending is not None else path, "--save")
        return Mp4Sink(pending.tmp if pending is not None else path, rate, width, height, fmt=fmt)

    def _frame(self, frame: Frame) -> None:
        if not self.draws:
            return
        with self.stats.time("draw"):
            image = draw_overlay(frame.image, self._latest, self.threshold, self._hud())
            if self._mp4_spec is not None:
                if self.mp4 is None:
                    self.mp4 = self._io("--save", self._open_mp4, image.shape[1], image.shape[0])
                self._io("--save", self.mp4.write, image)
            if self.window is not None and not self.window.show(image):
                self.quit_requested = True
                self.mailbox.stop.set()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            self._frame(payload)
        elif kind == "result":
            self._latest = payload
            if self.csv is not None:
                self._io("--csv", self.csv.add, payload)
        elif kind == "events" and self.jsonl is not None:
            for event in payload:
                self._io("--jsonl", self.jsonl.write, event.to_json())

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
        for label, sink in (("--save", self.mp4), ("", self.window), ("--jsonl", self.jsonl), ("--csv", self.csv)):
            if sink is not None:
                try:
                    self._io(label, sink.close)
                except Exception as exc:  # noqa: BLE001 - keep closing the others
                    self.error = self.error or exc
