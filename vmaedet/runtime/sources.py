"""Frame sources (camera, RTSP/HTTP, video file, image folder) and the reader thread's mailbox.

Policies (named, like roboflow inference's buffer strategies):

* ``wait`` — lossless: the reader blocks when the queue is full, every frame is processed
  (default for files and folders).
* ``latest`` — latest-frame-wins: the queue holds one frame; a new frame replaces an unread
  one and the replaced frame is counted as dropped (default for cameras and network streams),
  so a slow model never builds up lag.

Every frame is stamped with ``time.monotonic()`` when it is read (``Frame.captured``).  Media time
``Frame.time`` is ``index / fps`` for files and folders (constant frame rate assumed) and seconds
since the first frame for live sources.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, Iterator, TypeVar

import numpy as np

from vmaedet.errors import StreamError
from vmaedet.runtime.stats import StreamStats

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class Frame:
    """One decoded frame."""

    index: int  #: position in the source (dropped frames leave gaps)
    time: float  #: media time in seconds
    image: np.ndarray  #: [H, W, 3] uint8 RGB
    captured: float  #: time.monotonic() when read


class Source(ABC):
    """A frame source.  ``open()`` then ``read()`` until it returns None, then ``close()``."""

    live: bool = False
    fps: float = 25.0
    rate: Fraction | None = None  #: exact frame rate when the container declares one
    frame_count: int | None = None
    name: str = "stream"

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame | None:
        """Next frame, or None at the end of the source."""

    def close(self) -> None:
        """Release the source (idempotent)."""


class FileSource(Source):
    """A video file decoded with PyAV (RGB, ``frame.to_ndarray(format="rgb24")`` as the seed).

    A file that ends before the frame count its container declares (a download cut short, a
    fast-start mp4 missing its second half) is read up to where it ends; :attr:`truncated` then says
    how many frames were read and how many were declared (:meth:`shortfall`).
    """

    #: A file shorter than its declared frame count by more than this many frames counts as cut short.
    SHORT_TOLERANCE = 2
    #: For a count estimated from the duration (containers without a frame count: mkv, webm), the
    #: tolerance is this share of the estimate, at least :attr:`SHORT_TOLERANCE` frames: a variable
    #: frame rate makes duration × average rate off by more than a frame or two on long files.
    ESTIMATE_TOLERANCE = 0.01

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._index = 0
        self.decode_error: str | None = None  #: the decoder's error when the data ended in a damaged packet
        self.frame_count_estimated = False  #: the frame count is estimated from the duration, not declared

    def open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise StreamError(f"cannot open video file {self.path}: it is not a video FFmpeg can read",
                              received=str(exc), expected="a video readable by FFmpeg/PyAV (mp4, mkv, avi, …)",
                              fix="check the file plays (e.g. ffprobe FILE)") from exc
        try:
            self._start_decoding()
        except BaseException:
            self.close()  # never leave the container open behind an error
            raise

    def _start_decoding(self) -> None:
        if not self._container.streams.video:
            raise StreamError(f"{self.path} has no video stream", received=str(self.path), expected="a video file",
                              fix="pass a file with a video track (audio-only files cannot be streamed)")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.rate = Fraction(rate) if rate else None
        self.fps = float(rate) if rate else 25.0
        declared = int(stream.frames)
        self.frame_count_estimated = not declared
        self.frame_count = declared or self._frames_from_duration(stream)
        self._frames = self._container.decode(stream)

    def _frames_from_duration(self, stream: Any) -> int | None:
        """Frame count estimated from the declared duration (containers without a frame count)."""
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif self._container.duration:
            seconds = self._container.duration / 1_000_000  # AV_TIME_BASE
        return int(round(seconds * self.fps)) if seconds and seconds > 0 else None

    def read(self) -> Frame | None:
        import av

        assert self._frames is not None, "open() first"
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except (av.error.InvalidDataError, EOFError) as exc:
            if self._index == 0:
                raise StreamError(f"cannot decode the first frame of {self.path}", received=str(exc),
                                  expected="a playable video", fix="check the file plays (e.g. ffprobe FILE)") from exc
            self.decode_error = str(exc)  # the data ends in a damaged packet: the file is cut short
            return None
        image = frame.to_ndarray(format="rgb24")  # [H, W, 3]
        out = Frame(self._index, self._index / self.fps, image, time.monotonic())
        self._index += 1
        return out

    @property
    def frames_read(self) -> int:
        return self._index

    def short_tolerance(self) -> int:
        """Frames a file may fall short of :attr:`frame_count` without counting as cut short.

        A declared count: :attr:`SHORT_TOLERANCE`; an estimated one: max(that, 1 % of the estimate).
        """
        if self.frame_count_estimated and self.frame_count:
            return max(self.SHORT_TOLERANCE, math.ceil(self.ESTIMATE_TOLERANCE * self.frame_count))
        return self.SHORT_TOLERANCE

    def shortfall(self) -> str | None:
        """A sentence when the file ended before its declared length (after the last read), else None."""
        declared = self.frame_count
        if self.decode_error is None and (declared is None or self._index >= declared - self.short_tolerance()):
            return None
        cause = (f"the decoder stopped at damaged data ({self.decode_error})" if self.decode_error
                 else "the data stops there")
        of = (f" of about {declared}" if self.frame_count_estimated else f" of {declared}") if declared else ""
        return (f"the file {self.path} ended after {self._index}{of} frames: {cause}; it is probably cut short "
                f"(an unfinished copy or download). The outputs cover the {self._index} frames read.")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class FolderSource(Source):
    """Images of a folder in name order, at a declared ``fps``."""

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.fps = fps
        self._files: list[Path] = []
        self._index = 0

    def open(self) -> None:
        self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise StreamError(f"no images in {self.path}", received=str(self.path),
                              expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}")
        self.frame_count = len(self._files)

    def read(self) -> Frame | None:
        import cv2

        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise StreamError(f"cannot read image {path}", received=str(path), expected="a readable image")
        out = Frame(self._index, self._index / self.fps, np.ascontiguousarray(bgr[:, :, ::-1]), time.monotonic())
        self._index += 1
        return out


class CaptureSource(Source):
    """Camera index or network stream through ``cv2.VideoCapture``; network loss → reconnect.

    Args:
        spec: camera index (int) or URL (rtsp://, http://, …).
        retries: reconnect attempts after a read failure (network streams only).
        backoff: first reconnect delay in seconds, doubled after each failure (capped at 8 s).
    """

    live = True

    def __init__(self, spec: int | str, retries: int = 5, backoff: float = 0.5) -> None:
        self.spec = spec
        self.name = f"camera{spec}" if isinstance(spec, int) else "stream"
        self.retries = retries
        self.backoff = backoff
        self._cap: Any = None
        self._index = 0
        self._t0: float | None = None

    def _try_open(self) -> tuple[Any, list[str]]:
        import cv2

        tried: list[str] = []
        backends = [("CAP_ANY", cv2.CAP_ANY)]
        if isinstance(self.spec, int) and hasattr(cv2, "CAP_V4L2"):
            backends.append(("CAP_V4L2", cv2.CAP_V4L2))
        with quiet_opencv():  # a missing camera makes every OpenCV backend print its own warning
            for name, api in backends:
                cap = cv2.VideoCapture(self.spec, api)
                if cap.isOpened():
                    return cap, tried
                cap.release()
                tried.append(f"cv2.VideoCapture({self.spec!r}, {name})")
        return None, tried

    def open(self) -> None:
        cap, tried = self._try_open()
        if cap is None:
            devices = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise StreamError(
                f"cannot open {'camera ' + str(self.spec) if isinstance(self.spec, int) else self.spec}",
                received="; ".join(tried) + f"; video devices present: {', '.join(devices) or 'none'}",
                expected="a camera index that exists or a reachable stream URL",
                fix="check the device or URL (vmaedet doctor lists cameras), or stream a file instead",
            )
        self._cap = cap
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 30.0

    def _reconnect(self) -> bool:
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            log.warning("stream %s lost; reconnect attempt %d/%d in %.1f s", self.spec, attempt, self.retries, delay)
            time.sleep(delay)
            if self._cap is not None:
                self._cap.release()
            cap, _ = self._try_open()
            if cap is not None:
                self._cap = cap
                log.warning("stream %s reconnected", self.spec)
                return True
            delay = min(delay * 2, 8.0)
        return False

    def read(self) -> Frame | None:
        assert self._cap is not None, "open() first"
        ok, bgr = self._cap.read()
        if not ok:
            if isinstance(self.spec, int) or not self._reconnect():
                raise StreamError(f"lost {self.spec} and could not reconnect", received=f"{self.retries} attempts",
                                  expected="frames", fix="check the camera/network; the outputs written so far are complete")
            ok, bgr = self._cap.read()
            if not ok:
                return None
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        out = Frame(self._index, now - self._t0, np.ascontiguousarray(bgr[:, :, ::-1]), now)
        self._index += 1
        return out

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(spec: str | int | Path | Source, fps: float = 25.0) -> Source:
    """A :class:`Source` for a camera index, URL, video file or image folder (or a Source as is)."""
    if isinstance(spec, Source):
        return spec
    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        return CaptureSource(int(text))
    if text.lower().startswith(NETWORK_SCHEMES):
        return CaptureSource(text)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, fps=fps)
    if path.is_file():
        return FileSource(path)
    expected = "a camera index (0), a URL (rtsp://…, http://…), a video file or a folder of images"
    if path.exists():  # a device, a FIFO or a socket: never a video file
        import stat

        mode = path.stat().st_mode
        if stat.S_ISCHR(mode) and path.name.startswith("video") and path.parent == Path("/dev"):
            return CaptureSource(text)  # /dev/videoN: a V4L2 camera
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise StreamError(f"the source {text} is {kind}, not a video file", received=text, expected=expected,
                          fix="pass a video file (e.g. video.mp4); cameras are given by index (0) or as /dev/videoN")
    raise StreamError(f"source not found: {text}", received=text, expected=expected,
                      fix="check the path; cameras are given by index (0)")


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (``[ WARN:0@…]``) inside the block; the caller reports failures."""
    try:
        import cv2

        logging_api = cv2.utils.logging
        previous = logging_api.getLogLevel()
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # an OpenCV build without the logging API
        yield
        return
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


T = TypeVar("T")


class Closed(Exception):
    """Raised by :meth:`Mailbox.get` when the producer closed and every item was read."""


class Mailbox(Generic[T]):
    """A bounded hand-over between two threads with an explicit full-queue policy.

    ``policy="wait"`` blocks the producer (lossless); ``policy="latest"`` drops the oldest
    unread item and counts it.  The producer ends with :meth:`close` (optionally with an error);
    the consumer drains what is left, then gets :class:`Closed` or the producer's error.
    A shared ``stop`` event wakes both sides; with ``wait_for_close`` the consumer still waits for
    the producer's final (forced) items and :meth:`close` after a stop — for producers that
    always close in a ``finally`` block.
    """

    def __init__(self, capacity: int, policy: str, stop: threading.Event, wait_for_close: bool = False) -> None:
        if policy not in ("wait", "latest"):
            raise ValueError(f"policy must be 'wait' or 'latest'; received {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self.stop = stop
        self.wait_for_close = wait_for_close
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, force: bool = False) -> bool:
        """Hand over ``item``; returns False if the pipeline is stopping.

        ``force`` appends even when full or stopping (final flush items on shutdown).
        """
        with self._cond:
            while not force and self.policy == "wait" and len(self._items) >= self.capacity:
                if self.stop.is_set():
                    return False
                self._cond.wait(0.05)
            if not force and self.policy == "latest" and len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return not self.stop.is_set()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._closed = True
            self._error = error
            self._cond.notify_all()

    def get(self) -> T:
        """Next item; raises the producer's error or :class:`Closed` once drained, or on stop."""
        with self._cond:
            while not self._items:
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    raise Closed
                if self.stop.is_set() and not self.wait_for_close:
                    raise Closed
                self._cond.wait(0.05)
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class SourceReader(threading.Thread):
    """Reader thread: source → mailbox; paces files to their frame rate when ``realtime``."""

    def __init__(self, source: Source, mailbox: Mailbox[Frame], stats: StreamStats, realtime: bool) -> None:
        super().__init__(name="vmaedet-reader", daemon=True)
        self.source = source
        self.mailbox = mailbox
        self.stats = stats
        self.realtime = realtime and not source.live
        self.ended = False  #: the source said it had no more frames (not a stop, not an error)

    def run(self) -> None:
        error: BaseException | None = None
        t_start = time.monotonic()
        try:
            while not self.mailbox.stop.is_set():
                t0 = time.perf_counter()
                frame = self.source.read()
                self.stats.add("decode", time.perf_counter() - t0)
                if frame is None:
                    self.ended = True
                    break
                if self.realtime:  # play a file like a camera
                    delay = t_start + frame.time - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    frame.captured = time.monotonic()
                self.stats.incr("frames_read")
                dropped = self.mailbox.dropped
                if not self.mailbox.put(frame):
                    break
                self.stats.incr("frames_dropped", self.mailbox.dropped - dropped)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            error = exc if isinstance(exc, StreamError) else StreamError(
                f"the source failed: {type(exc).__name__}: {exc}", received=getattr(self.source, "name", "source"),
                fix="the outputs written so far are complete; check the source")
            error.__cause__ = exc if error is not exc else None
        finally:
            self.mailbox.close(error)
