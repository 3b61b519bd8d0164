"""Outputs of a stream: overlay drawing, window, H.264 mp4, JSONL events, AVA CSV rows.

The :class:`SinkWriter` thread receives, in order, ``("frame", Frame)``, ``("result", ActionDetections)``
and ``("events", [ActionEvent])`` items; each frame is drawn with the latest result received before
it.  Every sink flushes as it goes and is closed on any exit, so an interrupted run leaves a
playable mp4, complete JSONL lines and complete CSV rows.

Messages name an output by its ``what`` (``"the video output"``); the caller decides the words
(the CLI names its flags).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from vmaedet.errors import OutputError, StreamError
from vmaedet.safeio import atomic_path, check_writable_dir, ensure_parent, output_error
from vmaedet.runtime.config import DEFAULT_SAVE_PRESET
from vmaedet.runtime.sources import Closed, Frame, Mailbox
from vmaedet.runtime.stats import StreamStats
from vmaedet.structures import ActionDetections, top_actions

_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128)], np.uint8)


#: One person's overlay: box corners ``(x1, y1, x2, y2)`` in pixels, RGB colour, text lines with their origins.
OverlayItem = tuple[tuple[int, int, int, int], tuple[int, int, int], list[tuple[str, tuple[int, int]]]]


def overlay_items(result: ActionDetections | None, threshold: float) -> list[OverlayItem]:
    """What :func:`draw_overlay` draws for ``result``: per person its box, colour and text lines.

    A result is drawn on every frame until the next one arrives (``stride`` frames): the writer lays it
    out once here and draws the same items on each of those frames.
    """
    if result is None:
        return []
    items: list[OverlayItem] = []
    for box, tid, scores in zip(result.boxes, result.track_ids, result.action_scores):  # type: ignore[arg-type]
        color = tuple(int(c) for c in _PALETTE[int(tid) % len(_PALETTE)]) if tid >= 0 else (200, 200, 200)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        lines = [f"#{tid}" if tid >= 0 else "#?"] + [f"{n[:18]} {s:.2f}" for n, s in top_actions(scores, threshold)]
        texts = [(text, (x1, max(12, y1 - 4 - 14 * (len(lines) - 1 - i)))) for i, text in enumerate(lines)]
        items.append(((x1, y1, x2, y2), color, texts))  # type: ignore[arg-type]
    return items


def draw_overlay(image: np.ndarray, result: ActionDetections | None, threshold: float, hud: str = "", *,
                 items: list[OverlayItem] | None = None) -> np.ndarray:
    """A copy of ``image`` (RGB) with boxes, track ids, top actions and a HUD line drawn with OpenCV.

    ``items``: ``overlay_items(result, threshold)`` when the caller already has them (the writer lays a
    result out once for all the frames it is drawn on); None lays ``result`` out here.
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    for (x1, y1, x2, y2), color, texts in overlay_items(result, threshold) if items is None else items:
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        for text, origin in texts:
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    if hud:
        cv2.putText(out, hud, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def ava_csv_rows(result: ActionDetections, video_id: str, timestamp: int | None = None,
                 smoothed: bool = False) -> list[str]:
    """AVA rows ``video,TTTT,x1,y1,x2,y2,action_id,score`` of one keyframe, in the seed's format.

    Boxes are normalised by the frame size (``result.image_wh``) with the seed's +1 on x2/y2 and
    clipped to [0, 1]; all 80 actions per person; ``'{:.5f}'``; the timestamp is ``%04d`` of
    ``timestamp`` (default: the keyframe time rounded to whole seconds).  Scores are the raw seed
    scores unless ``smoothed`` (then ``action_scores``).
    """
    from vmaedet.data.detections import detections_to_rows

    w, h = result.image_wh
    if w <= 0 or h <= 0:
        raise StreamError("AVA CSV rows need the frame size", received=result.image_wh, expected="(W, H) > 0",
                          fix="fill image_wh of the result")
    if timestamp is None and result.timestamp is None:
        raise StreamError("AVA CSV rows need the keyframe's time", received="timestamp None",
                          expected="a time in seconds", fix="pass timestamp= or fill the result's timestamp")
    ts = int(round(result.timestamp)) if timestamp is None else int(timestamp)  # type: ignore[arg-type]
    scores = result.action_scores if smoothed else result.raw_scores
    # Boxes are already in original pixels: the seed's conversion with resized = original size.
    rows = detections_to_rows(result.boxes, scores, video_id, ts, (w, h), (w, h))  # type: ignore[arg-type]
    return [f"{v},{t:04d},{x1:.5f},{y1:.5f},{x2:.5f},{y2:.5f},{a},{sc:.5f}" for v, t, x1, y1, x2, y2, a, sc in rows]


def check_writable(path: str | Path, what: str = "the output", example_suffix: str = ".out") -> Path:
    """Refuse an output path that cannot be written, before anything is opened or truncated.

    Creates missing parent folders (as the sinks do) and proves the folder writable with
    :func:`vmaedet.safeio.check_writable_dir`; writes nothing else.

    Args:
        path: the output file.
        what: how messages name it (``"the video output"``; the CLI names its flag).
        example_suffix: the suffix of the file name suggested when ``path`` is a folder.

    Raises:
        OutputError: the path is a folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} names a folder, not a file", received=str(path),
                          expected="a file path in a writable folder",
                          fix=f"give a file name, e.g. {path / ('out' + (path.suffix or example_suffix))}")
    check_writable_dir(path.parent, what=f"{what} {path} into its folder")
    return path


def open_text_output(path: str | Path, what: str = "the output") -> TextIO:
    """Open ``path`` for writing (UTF-8 text, truncated); an OSError becomes an :class:`OutputError` in words."""
    path = ensure_parent(path, what=what)
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - the sink closes it
    except OSError as exc:
        raise output_error(path, exc, what=what) from exc


def write_stats_json(stats: StreamStats, path: str | Path, what: str = "the stats JSON") -> Path:
    """Write the stats summary as JSON (atomically); a failed write is an :class:`OutputError` naming it."""
    try:
        return stats.write_json(path, what=what)
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(path, exc, what=what) from exc


#: Containers a video output can be written in (file suffix → FFmpeg muxer); all take H.264 yuv420p.
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".ts": "mpegts"}


def check_video_container(path: str | Path, what: str = "the video output") -> str:
    """The FFmpeg muxer for a video output path, from its suffix; refuses an unknown suffix up front.

    Raises:
        StreamError: the suffix names no video container (``out.txt``, no suffix).
    """
    path = Path(path)
    fmt = VIDEO_CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise StreamError(f"{what} must name a video file; {path.suffix or 'no suffix'!s} is not a video container",
                          received=str(path), expected=f"a file ending in {', '.join(VIDEO_CONTAINERS)}",
                          fix=f"e.g. {path.with_suffix('.mp4')}")
    return fmt


class _Discard(BaseException):
    """Thrown into :func:`~vmaedet.safeio.atomic_path` to delete its temporary file instead of renaming it."""


class PendingOutput:
    """An output written under a temporary name beside its target and renamed over it at the end.

    A held-open :func:`vmaedet.safeio.atomic_path`: the temporary file is created at once (so a
    folder that cannot be written fails before the run); :meth:`commit` renames it over the target,
    :meth:`discard` deletes it. A failed write marks it ``failed`` and it is discarded: an output is
    either complete or absent, never half written. The first error that marked it failed is kept
    (``last_error``: reported after a Ctrl-C, when nothing is raised).

    Args:
        target: the file the user asked for.
        what: its name in messages (``"the video output"``).
    """

    def __init__(self, target: str | Path, what: str) -> None:
        self.target = Path(target)
        self.what = what
        self.failed = False
        self.last_error: OutputError | None = None
        self._stack = contextlib.ExitStack()
        self.tmp: Path = self._stack.enter_context(atomic_path(self.target, what=what))

    def error(self, exc: BaseException) -> OutputError:
        """Mark the output failed; the error naming it and the cause in words."""
        self.failed = True
        err = exc if isinstance(exc, OutputError) else output_error(self.target, exc, what=self.what)
        if self.last_error is None:  # the first failure is the cause; later ones (closing) follow from it
            self.last_error = err
        return err

    def commit(self) -> Path:
        """Rename the temporary file over the target (permissions as a plainly created file)."""
        try:
            self._stack.close()
        except OutputError as exc:  # atomic_path removed the temporary file
            raise self.error(exc) from exc.__cause__
        return self.target

    def discard(self) -> None:
        """Delete the temporary file (idempotent)."""
        self._stack.__exit__(_Discard, _Discard(), None)


#: libx264 threads of the stream's video output: 1 encodes in the writer thread itself. The action engine's
#: threads use every core; encoder threads of libx264's own only add switching and lookahead copies
#: (measured at 640×272 on 2 cores: about 10 % less encoder CPU than libx264's automatic choice, same frames).
ENCODER_THREADS = 1
#: Above this many pixels per frame (1920×1088) one thread may not keep up with the source's frame rate:
#: libx264 chooses its thread count there (``threads=0``).
ENCODER_ONE_THREAD_MAX_PIXELS = 1920 * 1088


class Mp4Sink:
    """H.264 (libx264, yuv420p) at the source's exact frame rate, through the one writer
    (:class:`vmaedet.data.video.H264Writer`) with ``odd="pad"``: a stream keeps every frame of an
    odd-sized source, padded with black to even on the bottom/right edge.

    Encoded for real time: the libx264 ``preset`` (default ``"veryfast"``), :data:`ENCODER_THREADS`
    encoder thread up to 1080p (libx264's own choice above :data:`ENCODER_ONE_THREAD_MAX_PIXELS`),
    libx264's default quality (crf 23), and the RGB → YUV 4:2:0 conversion done by OpenCV (``yuv="cv2"``: the same BT.601 limited-range planes as FFmpeg's swscale within ±2 levels, at a
    tenth of its cost).

    Args:
        path, rate, width, height: the file, the exact frame rate and the frames' size.
        fmt: FFmpeg muxer (default: from the suffix); what: the output's name in messages.
        preset: libx264 preset (:data:`vmaedet.data.video.X264_PRESETS`).
        threads: encoder threads (0: libx264 chooses); None: the rule above (:attr:`threads` says which).

    Raises:
        DataError: ``preset`` is not one of :data:`vmaedet.data.video.X264_PRESETS` (nothing is opened).
    """

    def __init__(self, path: str | Path, rate: Fraction, width: int, height: int, fmt: str | None = None,
                 what: str = "the video output", preset: str = DEFAULT_SAVE_PRESET,
                 threads: int | None = None) -> None:
        from vmaedet.data.video import H264Writer

        self.path = ensure_parent(path, what=what)
        self.what = what
        fmt = fmt or check_video_container(self.path, what)
        if threads is None:
            threads = ENCODER_THREADS if width * height <= ENCODER_ONE_THREAD_MAX_PIXELS else 0
        self.threads = threads  #: encoder threads asked of libx264 (0: its own choice)
        # crf=None: libx264's own default quality, as the stream always wrote
        self._writer = H264Writer(self.path, rate, crf=None, preset=preset, threads=threads, yuv="cv2", odd="pad",
                                  format=fmt, size=(width, height))

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._writer.frames

    def write(self, image: np.ndarray) -> None:
        """Encode one RGB frame ``[H, W, 3]`` (the file opens at the first one)."""
        import av

        try:
            self._writer.write(image)
        except (OSError, av.error.FFmpegError) as exc:
            raise StreamError(f"cannot write {self.what}", received=f"{self.path}: {exc}",
                              expected="a writable video path", fix="choose another path for it") from exc

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent)."""
        self._writer.close()


def mosaic_layout(n: int) -> tuple[int, int]:
    """Rows × columns of the window's grid for ``n`` sources: the squarest grid, wider than tall."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def fit_tile(image: np.ndarray, tile_wh: tuple[int, int], label: str = "") -> np.ndarray:
    """``image`` (RGB ``[H, W, 3]``) scaled to fit ``tile_wh`` keeping its aspect, centred on black, ``label`` top-left."""
    import cv2

    tw, th = tile_wh
    h, w = image.shape[:2]
    scale = min(tw / w, th / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((th, tw, 3), dtype=np.uint8)  # [th, tw, 3]
    x0, y0 = (tw - nw) // 2, (th - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    if label:
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class WindowSink:
    """``cv2.imshow`` window; refuses to open without a display.  ``q``/Esc stops the stream.

    One window serves every source of a run: each source's writer :meth:`attach` es itself, and with
    several sources the window shows a grid of their latest frames (each scaled into a ``tile`` cell,
    named), redrawn at most :attr:`max_fps` times a second.  ``q`` stops every attached source.
    """

    TITLE = "vmaedet stream"

    def __init__(self, tile: tuple[int, int] = (640, 360), max_fps: float = 30.0) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise StreamError("showing a window needs a display", received="no DISPLAY/WAYLAND_DISPLAY (headless)",
                              expected="a desktop session",
                              fix="do not show a window; write the video to a file (e.g. out.mp4) instead")
        self.tile = tile
        self.max_fps = max_fps
        self._lock = threading.Lock()
        self._names: list[str] = []  #: attached sources, in grid order
        self._stops: list[threading.Event] = []
        self._latest: dict[str, np.ndarray] = {}  #: each source's latest frame (fitted to its cell at a redraw)
        self._users = 0
        self._shown = 0.0  #: monotonic time of the last redraw
        self.quit = False

    def attach(self, name: str, stop: threading.Event) -> None:
        """A source's writer will show its frames here; ``stop`` is set when the user quits."""
        with self._lock:
            self._names.append(name)
            self._stops.append(stop)
            self._users += 1

    def _mosaic(self) -> np.ndarray:
        rows, cols = mosaic_layout(len(self._names))
        tw, th = self.tile
        canvas = np.zeros((rows * th, cols * tw, 3), dtype=np.uint8)  # [rows·th, cols·tw, 3]
        for k, name in enumerate(self._names):
            frame = self._latest.get(name)
            if frame is not None:
                r, c = divmod(k, cols)
                canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = fit_tile(frame, self.tile, name)
        return canvas

    def show(self, image_rgb: np.ndarray, name: str | None = None) -> bool:
        """Show a source's frame (the whole window for one source, its cell for several); False once the user quit."""
        import cv2

        with self._lock:
            if self.quit:
                return False
            grid = len(self._names) > 1
            if grid:
                self._latest[name or ""] = image_rgb  # a frame of its own (drawn per frame): no copy needed
                now = time.monotonic()
                if now - self._shown < 1.0 / self.max_fps:
                    return True  # redrawn with the next frame of any source
                self._shown = now
            try:
                cv2.imshow(self.TITLE, (self._mosaic() if grid else image_rgb)[:, :, ::-1])
                key = cv2.waitKey(1) & 0xFF
            except cv2.error as exc:
                raise StreamError("cannot open a window", received=str(exc).strip().splitlines()[-1],
                                  fix="opencv-python-headless has no GUI: install opencv-python, or do not show a window") from exc
            if key in (ord("q"), 27):
                self.quit = True
                for stop in self._stops:
                    stop.set()
                return False
            return True

    def close(self) -> None:
        """Detach one source; the window closes when the last one is done."""
        import cv2

        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
        try:
            cv2.destroyWindow(self.TITLE)
        except cv2.error:
            pass


class JsonlSink:
    """One JSON object per line, flushed after each line."""

    def __init__(self, path: str | Path, what: str = "the JSONL output") -> None:
        self.path = Path(path)
        self._fh = open_text_output(self.path, what)
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

    def __init__(self, path: str | Path, video_id: str, keyframe_spacing: float | None = None,
                 what: str = "the CSV output") -> None:
        self.path = Path(path)
        self._fh = open_text_output(self.path, what)
        self.video_id = video_id
        self.keyframe_spacing = keyframe_spacing
        self._last_second = -1
        self.rows = 0

    def add(self, result: ActionDetections) -> None:
        assert self.keyframe_spacing is not None, "set keyframe_spacing before the first add"
        assert result.timestamp is not None, "stream results carry their keyframe time"
        second = int(round(result.timestamp))
        if second <= self._last_second or abs(result.timestamp - second) > self.keyframe_spacing / 2 + 1e-9:
            return
        self._last_second = second
        for row in ava_csv_rows(result, self.video_id, second):
            self._fh.write(row + "\n")
            self.rows += 1
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class SinkWriter(threading.Thread):
    """Writer thread: draws frames with the latest result and feeds every sink.

    The JSONL gets one ``"type": "keyframe"`` line per result (actions ≥ ``threshold``) and one
    ``"type": "event"`` line per closed action event, each tagged with ``source``
    (``docs/stream-jsonl.schema.json``).

    ``outputs`` maps each file sink (``"save"``, ``"jsonl"``, ``"csv"``) to its
    :class:`PendingOutput`; a sink whose write or close fails marks its output failed and the error
    (an :class:`OutputError` naming the file and the cause) ends the run.

    ``save_preset`` is the libx264 preset of the ``mp4`` output (:class:`Mp4Sink`;
    :attr:`vmaedet.runtime.config.StreamConfig.save_preset`), checked here before the thread starts.
    """

    def __init__(self, mailbox: Mailbox[tuple[str, Any]], stats: StreamStats, threshold: float, *,
                 mp4: tuple[Path, Fraction] | None = None, window: WindowSink | None = None,
                 jsonl: JsonlSink | None = None, csv: AvaCsvSink | None = None,
                 outputs: dict[str, PendingOutput] | None = None, source: str | None = None,
                 save_preset: str = DEFAULT_SAVE_PRESET) -> None:
        from vmaedet.data.video import X264_PRESETS

        super().__init__(name="vmaedet-writer" if source is None else f"vmaedet-writer-{source}", daemon=True)
        if save_preset not in X264_PRESETS:  # the video opens at the first frame: refuse it now, not then
            raise StreamError("unknown libx264 preset for the video output", received=repr(save_preset),
                              expected=" | ".join(X264_PRESETS),
                              fix=f"use {DEFAULT_SAVE_PRESET!r} (real time) or 'medium' (libx264's default)")
        self.source = source
        self.mailbox = mailbox
        self.stats = stats
        self.threshold = threshold
        self._mp4_spec = mp4
        self.save_preset = save_preset
        self.mp4: Mp4Sink | None = None
        self.window = window
        if window is not None:
            window.attach(source or "", mailbox.stop)
        self.jsonl = jsonl
        self.csv = csv
        self.outputs = outputs or {}
        self.error: BaseException | None = None
        self.quit_requested = False
        self._latest: ActionDetections | None = None
        self._items: list[OverlayItem] = []  #: ``overlay_items`` of ``_latest``
        self._fps_t: list[float] = []

    @property
    def draws(self) -> bool:
        return self._mp4_spec is not None or self.window is not None

    def _io(self, label: str, fn: Callable[..., Any], *args: Any) -> Any:
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
        pending = self.outputs.get("save")
        what = pending.what if pending is not None else "the video output"
        fmt = check_video_container(pending.target if pending is not None else path, what)
        return Mp4Sink(pending.tmp if pending is not None else path, rate, width, height, fmt=fmt, what=what,
                       preset=self.save_preset)

    def _frame(self, frame: Frame) -> None:
        if not self.draws:
            return
        with self.stats.time("draw"):
            image = draw_overlay(frame.image, self._latest, self.threshold, self._hud(), items=self._items)
            if self._mp4_spec is not None:
                if self.mp4 is None:
                    self.mp4 = self._io("save", self._open_mp4, image.shape[1], image.shape[0])
                self._io("save", self.mp4.write, image)
            if self.window is not None and not self.window.show(image, self.source):
                self.quit_requested = True
                self.mailbox.stop.set()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "frame":
            self._frame(payload)
        elif kind == "result":
            self._latest = payload
            if self.draws:
                self._items = overlay_items(payload, self.threshold)
            if self.jsonl is not None:
                self._io("jsonl", self.jsonl.write, payload.to_json(self.threshold))
            if self.csv is not None:
                self._io("csv", self.csv.add, payload)
        elif kind == "events" and self.jsonl is not None:
            for event in payload:
                self._io("jsonl", self.jsonl.write, event.to_json(self.source))

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
        for label, sink in (("save", self.mp4), ("", self.window), ("jsonl", self.jsonl), ("csv", self.csv)):
            if sink is not None:
                try:
                    self._io(label, sink.close)
                except Exception as exc:  # noqa: BLE001 - keep closing the others
                    self.error = self.error or exc
