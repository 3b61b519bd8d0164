"""Frame sources for AVA-style keyframe clips (spec §2 "Temporal sampling").

Three layouts give the same thing — 16 RGB frames around a keyframe — from different storage:

* :class:`VideoFileSource` — whole video files ``<root>/<video_id>.mp4`` decoded with PyAV, seeking
  to the key frame before the needed range and decoding forward; decoded frames are kept in a
  bounded per-video cache so consecutive keyframes of one video do not re-decode everything.
  Keyframe of timestamp t = the frame nearest to time t (``round(t·fps)``, ties to the earlier frame).
* :class:`ClipsSource` — the seed's 1-second clips ``<root>/<video_id>/<sec>.mp4`` (25 fps). The
  first frame of ``<t>.mp4`` is the keyframe; neighbours come from ``<t±1>.mp4`` concatenated the
  way the seed does it (right side t, t+1, … until ≥ 32 frames; left side t−1, t−2, …; keep
  ``m = min(left, right)`` frames each side).
* :class:`FramesDirSource` — the mmaction2/SlowFast frame folders
  ``<root>/<video_id>/<video_id>_%06d.jpg`` (1-based numbering, 30 fps by default). Timestamp t is
  frame ``(t − timestamp_start)·fps + 1`` (1-based); ``timestamp_start`` is 900 for real AVA
  (15-minute cuts from 900 s) and 0 for synthetic data.

Temporal rules (``temporal_rule``):

* ``"frames"`` — the seed's rule, every 4th frame at the source rate: offsets −31, −27, …, +29
  frames. Exactly the seed at 25 fps.
* ``"time"`` — the frames nearest in time to the seed's sampling times −1.24 s, −1.08 s, …, +1.16 s
  (spacing 0.16 s). Identical to ``"frames"`` at 25 fps.
* ``"auto"`` (default) — ``"frames"`` when the source runs at 25 fps, otherwise ``"time"``.

"Nearest in time" is one rule everywhere (:func:`nearest_frame`: the loaders, the streaming
scheduler, the keyframe of a timestamp and the layout converters): frame i sits at time i/fps, the
rate is an exact fraction (:func:`as_rate`, 29.97… → 30000/1001) and a time exactly half-way
between two frames takes the **earlier** frame, i.e. index = ⌈t·fps − ½⌉ in rational arithmetic.
So at 12.5 fps the offsets are −16, −14, …, +14. Besides the seed's ``"centered"`` window there is a
``"causal"`` one (the streaming runtime's low-latency mode) whose 16 times end at the keyframe.

Indices outside the video are clamped to [0, N − 1], as the seed clips its indices.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE, SEED_FPS
from vmaedet.errors import DataError

#: The seed's frame offsets relative to the keyframe at 25 fps (16 frames, stride 4).
NUM_FRAMES = CLIP_LEN
STRIDE = FRAME_STRIDE
SEED_OFFSETS: tuple[int, ...] = tuple(-31 + STRIDE * k for k in range(NUM_FRAMES))
TEMPORAL_RULES = ("auto", "frames", "time")


WINDOWS = ("centered", "causal")


def as_rate(fps: float | Fraction) -> Fraction:
    """The frame rate as an exact fraction: a :class:`~fractions.Fraction` as given, a number as the
    nearest fraction with denominator ≤ 1001 (25 → 25, 12.5 → 25/2, 29.97002997 → 30000/1001)."""
    rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise DataError("frame rate must be positive", received=fps, expected="fps > 0",
                        fix="pass the source's frame rate (e.g. 25, 30, 30000/1001)")
    return rate


def nearest_frame(time: Fraction | int, fps: float | Fraction) -> int:
    """Index of the frame nearest to ``time`` seconds (frame i at i/fps); a tie takes the earlier frame."""
    return math.ceil(Fraction(time) * as_rate(fps) - Fraction(1, 2))


def resolve_rule(temporal_rule: str, fps: float | Fraction) -> str:
    """``"auto"`` → ``"frames"`` at 25 fps, ``"time"`` otherwise; checks the name."""
    if temporal_rule not in TEMPORAL_RULES:
        raise DataError(
            "unknown temporal rule",
            received=temporal_rule,
            expected=" | ".join(TEMPORAL_RULES),
            fix="pass temporal_rule='time' (nearest frames to the seed's times) or 'frames' (every 4th frame)",
        )
    if temporal_rule == "auto":
        return "frames" if as_rate(fps) == SEED_FPS else "time"
    return temporal_rule


def sample_times(window: str = "centered") -> list[Fraction]:
    """The 16 sampling times relative to the keyframe in seconds (exact): ``"centered"`` is the seed's
    −31/25 … +29/25 s; ``"causal"`` ends at the keyframe, −60/25 … 0 s."""
    if window not in WINDOWS:
        raise DataError("unknown sampling window", received=window, expected=" | ".join(WINDOWS),
                        fix="pass window='centered' (the seed's alignment) or 'causal' (ends at the keyframe)")
    first = SEED_OFFSETS[0] if window == "centered" else -STRIDE * (NUM_FRAMES - 1)
    return [Fraction(first + STRIDE * k, SEED_FPS) for k in range(NUM_FRAMES)]


def frame_offsets(fps: float | Fraction, temporal_rule: str = "auto", window: str = "centered") -> list[int]:
    """Offsets in frames, relative to the keyframe, of the 16 sampled frames at ``fps``.

    ``"frames"``: every 4th source frame (the seed's offsets whatever the rate); ``"time"``: the frame
    nearest to each of :func:`sample_times` (ties → earlier frame). Strictly increasing for any
    rate ≥ 6.25 fps (one frame per 0.16 s).

    >>> frame_offsets(25)[:3], frame_offsets(30, "time")[:3], frame_offsets(12.5)[:3]
    ([-31, -27, -23], [-37, -32, -28], [-16, -14, -12])
    """
    rule = resolve_rule(temporal_rule, fps)
    times = sample_times(window)
    if rule == "frames":
        return [int(t * SEED_FPS) for t in times]
    return [nearest_frame(t, fps) for t in times]


def clamp_indices(indices: Sequence[int], lo: int, hi: int) -> list[int]:
    """Clamp every index to ``[lo, hi]``."""
    return [min(max(int(i), lo), hi) for i in indices]


class FrameSource:
    """Base class: 16 RGB frames around the keyframe of ``(video_id, timestamp)``.

    Subclasses implement :meth:`clip` and :meth:`describe`; all return uint8 ``[16, H, W, 3]`` RGB.
    """

    kind: str = "base"
    temporal_rule: str = "auto"

    def clip(self, video_id: str, timestamp: int) -> np.ndarray:
        """The 16 sampled frames ``[16, H, W, 3]`` uint8 RGB of the keyframe at ``timestamp`` seconds."""
        raise NotImplementedError

    def describe(self, video_id: str) -> dict:
        """``{"path", "fps", "frames", "width", "height"}`` of one video (opens it, decodes nothing)."""
        raise NotImplementedError

    def window(self, video_id: str, timestamp: int) -> tuple[int, list[int]]:
        """``(keyframe index, unclamped sampled indices)`` of ``timestamp`` in this source's frame numbering."""
        raise NotImplementedError

    def location(self, video_id: str) -> Path:
        """Where the frames of ``video_id`` live (a file or a folder)."""
        raise NotImplementedError

    def has_video(self, video_id: str) -> bool:
        """Whether ``video_id`` exists in this source (no decoding)."""
        return self.location(video_id).exists()

    def close(self) -> None:
        """Release open files (safe to call twice)."""

    def __getstate__(self) -> dict:
        """Drop open decoders when a DataLoader worker receives a copy."""
        state = self.__dict__.copy()
        state.pop("_readers", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_max_open" in state:
            self._readers = OrderedDict()


# --------------------------------------------------------------------------- PyAV helpers


def _open_container(path: Path):
    import av

    if not path.is_file():
        raise DataError(
            "video file not found",
            received=str(path),
            expected="an existing video file",
            fix="check the dataset root / frame source layout, or run `vmaedet data check ROOT`",
        )
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises its own error hierarchy (InvalidDataError, …)
        raise DataError(
            "video file cannot be opened",
            received=f"{path} ({type(exc).__name__}: {exc})",
            expected="a video PyAV/FFmpeg can decode (e.g. H.264 mp4)",
            fix="re-encode the file (ffmpeg -i in.mp4 -c:v libx264 -pix_fmt yuv420p out.mp4) or remove it",
        ) from None
    if not container.streams.video:
        container.close()
        raise DataError("file has no video stream", received=str(path), expected="a video file",
                        fix="remove it or replace it with a video")
    return container


def _stream_info(container, path: Path, fps_override: float | None) -> tuple[float, int]:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(fps_override) if fps_override else (float(rate) if rate else 0.0)
    if fps <= 0:
        raise DataError("video has no frame rate", received=str(path), expected="a positive frame rate",
                        fix="pass fps= explicitly")
    n = int(stream.frames or 0)
    if n <= 0 and stream.duration is not None and stream.time_base is not None:
        n = int(round(float(stream.duration * stream.time_base) * fps))
    if n <= 0 and container.duration:
        n = int(round(container.duration / 1_000_000 * fps))
    if n <= 0:
        raise DataError("cannot tell how many frames the video has", received=str(path),
                        expected="a stream with frame count or duration metadata",
                        fix="re-encode the file with ffmpeg (it writes the duration)")
    return fps, n


def probe_video(path: str | Path, fps: float | None = None) -> dict:
    """``{"path", "fps", "frames", "width", "height"}`` of a video file (header only)."""
    path = Path(path)
    container = _open_container(path)
    try:
        rate, n = _stream_info(container, path, fps)
        stream = container.streams.video[0]
        return {"path": str(path), "fps": rate, "frames": n, "width": stream.width, "height": stream.height}
    finally:
        container.close()


def decode_all(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of a video ``[N, H, W, 3]`` uint8 RGB and its frame rate."""
    path = Path(path)
    container = _open_container(path)
    try:
        fps, _ = _stream_info(container, path, None)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except DataError:
        raise
    except Exception as exc:
        raise DataError("video cannot be decoded", received=f"{path} ({type(exc).__name__}: {exc})",
                        expected="a decodable video", fix="re-encode or remove the file") from None
    finally:
        container.close()
    if not frames:
        raise DataError("video has no decodable frames", received=str(path), expected="≥ 1 frame",
                        fix="re-encode or remove the file")
    return np.stack(frames), fps


YUV_CONVERSIONS = ("swscale", "cv2")


def _check_frame(img: np.ndarray, size: tuple[int, int] | None, index: int) -> tuple[int, int]:
    """``(width, height)`` of one RGB frame to encode; refuses wrong dtype/shape, odd or changing sizes."""
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise DataError(f"frame {index} to encode is not a uint8 [H, W, 3] RGB image",
                        received=f"{img.dtype} {img.shape}", expected="uint8 [H, W, 3]",
                        fix="convert with np.asarray(frame, dtype=np.uint8)")
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        raise DataError("H.264 yuv420p needs even frame sizes", received=f"{w}×{h}", expected="even W and H",
                        fix="crop or resize to even dimensions")
    if size is not None and (w, h) != size:
        raise DataError(f"frame {index} to encode changes size", received=f"{w}×{h}",
                        expected=f"{size[0]}×{size[1]} like the frames before", fix="resize every frame alike")
    return w, h


def encode_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float | Fraction = 25, *, crf: int = 18,
                preset: str | None = None, threads: int = 0, yuv: str = "swscale",
                size: tuple[int, int] | None = None) -> int:
    """Encode RGB uint8 frames ``[H, W, 3]`` (even H, W) as H.264 yuv420p mp4 with PyAV; returns the count.

    Frames are consumed one at a time (an iterator is never held in memory). Frame i gets pts i at
    time base 1/fps. On failure the partial file is removed.

    Args:
        path: output file (parent folders are created).
        frames: the RGB frames, all the same size.
        fps: frame rate (exact via :func:`as_rate`: 29.97 → 2997/100, 30000/1001 stays).
        crf: libx264 constant rate factor (lower = better quality, bigger file).
        preset: libx264 preset ("ultrafast" … "veryslow"); None keeps libx264's default ("medium").
        threads: encoder threads; 0 lets libx264 choose. 1 makes the bytes independent of the machine.
        yuv: RGB → YUV 4:2:0 conversion: "swscale" (FFmpeg's, inside PyAV) or "cv2"
            (``cv2.COLOR_RGB2YUV_I420``; the synthetic generator's choice).
        size: expected ``(width, height)``; None takes the first frame's.
    """
    import av
    import cv2

    if yuv not in YUV_CONVERSIONS:
        raise DataError("unknown RGB→YUV conversion", received=yuv, expected=" | ".join(YUV_CONVERSIONS),
                        fix="pass yuv='swscale' or yuv='cv2'")
    path = Path(path)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise DataError("no frames to encode", received=str(path), expected="≥ 1 frame",
                        fix="pass a non-empty sequence of frames")
    size = _check_frame(np.asarray(first), size, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"crf": str(crf), **({"preset": preset} if preset else {})}
    n = 0
    try:
        # the file is opened here (PyAV guesses the container from its name) so that it is closed in every
        # case: a failing write (full disk) left PyAV's own handle open on the deleted partial file
        with open(path, "wb") as fh, av.open(fh, "w") as container:
            stream = container.add_stream("libx264", rate=as_rate(fps), options=options)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            if threads > 0:
                stream.codec_context.thread_count = threads
            for img in itertools.chain([first], it):
                img = np.asarray(img)
                _check_frame(img, size, n)
                if yuv == "cv2":
                    frame = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420),  # [H·3/2, W]
                                                       format="yuv420p")
                else:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = n
                container.mux(stream.encode(frame))
                n += 1
            container.mux(stream.encode(None))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return n


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float = 25, crf: int = 18) -> Path:
    """Encode RGB uint8 frames ``[N, H, W, 3]`` (even H, W) as H.264 yuv420p with PyAV (:func:`encode_h264`)."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
        raise DataError("frames to encode must be a non-empty uint8 [N, H, W, 3] RGB array",
                        received=f"{arr.dtype} {arr.shape}", expected="uint8 [N, H, W, 3]",
                        fix="convert with np.asarray(frames, dtype=np.uint8)")
    encode_h264(path, arr, fps, crf=crf)
    return Path(path)


# --------------------------------------------------------------------------- whole videos


class _CachedVideoReader:
    """One open video with a bounded LRU cache of decoded frames and a forward-decoding cursor."""

    def __init__(self, path: Path, fps_override: float | None, cache_frames: int, seek_gap: int) -> None:
        self.path = path
        self.container = _open_container(path)
        try:
            self.stream = self.container.streams.video[0]
            self.fps, self.num_frames = _stream_info(self.container, path, fps_override)
            start = self.stream.start_time
        except BaseException:  # a reader that fails to start must not leak its open container
            self.container.close()
            raise
        self._start_pts = int(start) if start is not None else 0
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_frames = cache_frames
        self.seek_gap = seek_gap
        self._iter: Iterator | None = None
        self._next = 0  # index of the next frame the cursor will produce
        self.decoded = 0  # frames decoded so far (for tests/benchmarks)

    def _index_of(self, frame) -> int:
        if frame.pts is None:
            return self._next
        t = float((frame.pts - self._start_pts) * self.stream.time_base)
        return int(round(t * self.fps))

    def _seek(self, index: int) -> None:
        sec = max(index, 0) / self.fps
        pts = int(sec / float(self.stream.time_base)) + self._start_pts
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self._iter = self.container.decode(self.stream)
        self._next = -1  # unknown until the first frame arrives

    def _store(self, idx: int, img: np.ndarray) -> None:
        self.cache[idx] = img
        self.cache.move_to_end(idx)
        while len(self.cache) > self.cache_frames:
            self.cache.popitem(last=False)

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = sorted(set(indices))
        missing = [i for i in wanted if i not in self.cache]
        if missing:
            lo, hi = missing[0], missing[-1]
            if self._iter is None or not (0 <= self._next <= lo and lo - self._next <= self.seek_gap):
                self._seek(lo)
            try:
                for frame in self._iter:
                    idx = self._index_of(frame)
                    self.decoded += 1
                    self._next = idx + 1
                    if idx >= lo:
                        self._store(idx, frame.to_ndarray(format="rgb24"))
                    if idx >= hi:
                        break
                else:
                    self._iter = None
            except Exception as exc:
                raise DataError("video cannot be decoded", received=f"{self.path} ({type(exc).__name__}: {exc})",
                                expected="a decodable video", fix="re-encode or remove the file") from None
        out = []
        for i in indices:
            img = self.cache.get(i)
            if img is None:  # stream shorter than its metadata: use the last decoded frame before i
                earlier = [j for j in self.cache if j <= i]
                if not earlier:
                    raise DataError("frame missing from video", received=f"{self.path} frame {i}",
                                    expected=f"frames 0..{self.num_frames - 1}", fix="re-encode the file")
                img = self.cache[max(earlier)]
            else:
                self.cache.move_to_end(i)
            out.append(img)
        return np.stack(out)

    def close(self) -> None:
        self.container.close()


class VideoFileSource(FrameSource):
    """Whole video files ``<root>/<video_id><ext>`` decoded with PyAV (keyframe = round(t·fps)).

    Args:
        root: folder holding the videos.
        fps: override the stream's frame rate (only for files with wrong metadata).
        temporal_rule: "auto" | "frames" | "time" (see module docstring).
        cache_frames: decoded frames kept per open video (bounds memory: ≈ W·H·3 bytes each).
        max_open: videos kept open at once (least recently used is closed).
        seek_gap: decode forward instead of seeking when the next needed frame is at most this far ahead.
    """

    kind = "video"
    EXTENSIONS = (".mp4", ".mkv", ".avi", ".webm", ".mov")

    def __init__(self, root: str | Path, fps: float | None = None, temporal_rule: str = "auto",
                 cache_frames: int = 160, max_open: int = 4, seek_gap: int = 100) -> None:
        self.root = Path(root)
        self.fps = fps
        self.temporal_rule = temporal_rule
        resolve_rule(temporal_rule, SEED_FPS)
        self.cache_frames = cache_frames
        self._max_open = max_open
        self.seek_gap = seek_gap
        self._readers: OrderedDict[str, _CachedVideoReader] = OrderedDict()

    def path_of(self, video_id: str) -> Path:
        """The file of ``video_id`` (first existing extension; ``.mp4`` when none exists)."""
        for ext in self.EXTENSIONS:
            p = self.root / f"{video_id}{ext}"
            if p.is_file():
                return p
        return self.root / f"{video_id}.mp4"

    def location(self, video_id: str) -> Path:
        return self.path_of(video_id)

    def reader(self, video_id: str) -> _CachedVideoReader:
        """The open, cached reader of ``video_id``."""
        r = self._readers.get(video_id)
        if r is None:
            r = _CachedVideoReader(self.path_of(video_id), self.fps, self.cache_frames, self.seek_gap)
            self._readers[video_id] = r
            while len(self._readers) > self._max_open:
                self._readers.popitem(last=False)[1].close()
        self._readers.move_to_end(video_id)
        return r

    def keyframe_index(self, video_id: str, timestamp: int) -> int:
        """Frame nearest to time ``timestamp`` (round(t·fps), ties to the earlier frame)."""
        return nearest_frame(timestamp, self.reader(video_id).fps)

    def window(self, video_id: str, timestamp: int) -> tuple[int, list[int]]:
        key = self.keyframe_index(video_id, timestamp)
        return key, [key + o for o in frame_offsets(self.reader(video_id).fps, self.temporal_rule)]

    def indices(self, video_id: str, timestamp: int) -> list[int]:
        """Clamped frame indices sampled for ``timestamp``."""
        return clamp_indices(self.window(video_id, timestamp)[1], 0, self.reader(video_id).num_frames - 1)

    def clip(self, video_id: str, timestamp: int) -> np.ndarray:
        return self.reader(video_id).frames(self.indices(video_id, timestamp))

    def describe(self, video_id: str) -> dict:
        return probe_video(self.path_of(video_id), self.fps)

    def close(self) -> None:
        while self._readers:
            self._readers.popitem()[1].close()


# --------------------------------------------------------------------------- 1-second clips


class ClipsSource(FrameSource):
    """The seed's 1-second clips ``<root>/<video_id>/<sec>.mp4`` (25 fps; first frame = keyframe).

    Clips are concatenated as the seed does (spec §2): right = clips t, t+1, … until ≥ 32 frames,
    left = clips t−1, t−2, … until ≥ 32 frames (a missing clip ends a side), m = min(len(left),
    len(right)); offsets are clamped to [−m, m − 1] around the keyframe — the seed's clamp to
    [0, 2m − 1] of ``left[−m:] + right[:m]``. With no clip before t the right side alone is used.
    Rule "frames" by default (the clips are 25 fps).
    """

    kind = "clips"
    HALF = NUM_FRAMES * STRIDE // 2  # 32

    def __init__(self, root: str | Path, fps: float | None = None, temporal_rule: str = "auto",
                 cache_clips: int = 8) -> None:
        self.root = Path(root)
        self.fps = float(fps) if fps else float(SEED_FPS)
        self.temporal_rule = temporal_rule
        resolve_rule(temporal_rule, self.fps)
        self.cache_clips = cache_clips
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._first: dict[str, int] = {}

    def clip_path(self, video_id: str, sec: int) -> Path:
        """``<root>/<video_id>/<sec>.mp4``."""
        return self.root / video_id / f"{sec}.mp4"

    def location(self, video_id: str) -> Path:
        return self.root / video_id

    def seconds(self, video_id: str) -> list[int]:
        """Sorted seconds for which a clip exists."""
        d = self.root / video_id
        if not d.is_dir():
            return []
        return sorted(int(p.stem) for p in d.glob("*.mp4") if re.fullmatch(r"\d+", p.stem))

    def keyframe_index(self, video_id: str, timestamp: int) -> int:
        """Index of the first frame of ``<timestamp>.mp4`` in the clips concatenated from the first one
        (1-second clips of round(fps) frames each)."""
        first = self._first.get(video_id)
        if first is None:
            secs = self.seconds(video_id)
            if not secs:
                raise DataError("no clips for video", received=str(self.root / video_id),
                                expected=f"<root>/{video_id}/<sec>.mp4", fix="check the clips root")
            first = self._first[video_id] = secs[0]
        return (int(timestamp) - first) * int(round(self.fps))

    def window(self, video_id: str, timestamp: int) -> tuple[int, list[int]]:
        key = self.keyframe_index(video_id, timestamp)
        return key, [key + o for o in frame_offsets(self.fps, self.temporal_rule)]

    def _decode(self, path: Path) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            arr = decode_all(path)[0]
            self._cache[path] = arr
            while len(self._cache) > self.cache_clips:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        return arr

    def _side(self, video_id: str, start: int, step: int) -> list[np.ndarray]:
        parts: list[np.ndarray] = []
        count, sec = 0, start
        while count < self.HALF and self.clip_path(video_id, sec).is_file():
            arr = self._decode(self.clip_path(video_id, sec))
            parts.append(arr)
            count += len(arr)
            sec += step
        return parts

    def clip(self, video_id: str, timestamp: int) -> np.ndarray:
        t = int(timestamp)
        if not self.clip_path(video_id, t).is_file():
            raise DataError("keyframe clip not found", received=str(self.clip_path(video_id, t)),
                            expected=f"<root>/{video_id}/{t}.mp4 (1-second clip whose first frame is the keyframe)",
                            fix="write the clips with vmaedet.data.video.write_clips_layout or fix the annotations")
        right = np.concatenate(self._side(video_id, t, 1))
        left_parts = self._side(video_id, t - 1, -1)
        left = np.concatenate(left_parts[::-1]) if left_parts else right[:0]
        m = min(len(left), len(right))
        lo, hi = (-m, m - 1) if m > 0 else (0, len(right) - 1)
        offs = clamp_indices(frame_offsets(self.fps, self.temporal_rule), lo, hi)
        return np.stack([right[o] if o >= 0 else left[len(left) + o] for o in offs])

    def describe(self, video_id: str) -> dict:
        secs = self.seconds(video_id)
        if not secs:
            raise DataError("no clips for video", received=str(self.root / video_id),
                            expected=f"<root>/{video_id}/<sec>.mp4", fix="check the clips root")
        info = probe_video(self.clip_path(video_id, secs[0]))
        return {"path": str(self.root / video_id), "fps": self.fps, "frames": info["frames"] * len(secs),
                "width": info["width"], "height": info["height"], "seconds": secs}


# --------------------------------------------------------------------------- frame folders


class FramesDirSource(FrameSource):
    """Frame folders ``<root>/<video_id>/<video_id>_%06d.jpg`` (1-based, ``fps`` = 30 by default).

    Timestamp t ↔ 1-based frame ``(t − timestamp_start)·fps + 1`` (SlowFast/mmaction2 convention;
    ``timestamp_start`` = 900 for real AVA, 0 for synthetic data). Rule "time" by default at 30 fps.
    """

    kind = "frames"

    def __init__(self, root: str | Path, fps: float | None = None, timestamp_start: int = 900,
                 temporal_rule: str = "auto", template: str = "{vid}_{idx:06d}.jpg") -> None:
        self.root = Path(root)
        self.fps = float(fps) if fps else 30.0
        self.timestamp_start = timestamp_start
        self.temporal_rule = temporal_rule
        resolve_rule(temporal_rule, self.fps)
        self.template = template
        self._counts: dict[str, int] = {}

    def frame_path(self, video_id: str, index0: int) -> Path:
        """Path of 0-based frame ``index0``."""
        return self.root / video_id / self.template.format(vid=video_id, idx=index0 + 1)

    def location(self, video_id: str) -> Path:
        return self.root / video_id

    def num_frames(self, video_id: str) -> int:
        """Number of frames in the folder (counted once, then cached)."""
        n = self._counts.get(video_id)
        if n is None:
            d = self.root / video_id
            if not d.is_dir():
                raise DataError("frame folder not found", received=str(d),
                                expected=f"<root>/{video_id}/{self.template.format(vid=video_id, idx=1)}, …",
                                fix="write the frames with vmaedet.data.video.write_frames_layout or fix the root")
            n = sum(1 for _ in d.glob("*.jpg"))
            self._counts[video_id] = n
        return n

    def keyframe_index(self, timestamp: int) -> int:
        """0-based index of the frame nearest to time ``timestamp − timestamp_start`` (ties → earlier)."""
        return nearest_frame(timestamp - self.timestamp_start, self.fps)

    def window(self, video_id: str, timestamp: int) -> tuple[int, list[int]]:
        key = self.keyframe_index(timestamp)
        return key, [key + o for o in frame_offsets(self.fps, self.temporal_rule)]

    def indices(self, video_id: str, timestamp: int) -> list[int]:
        """Clamped 0-based frame indices sampled for ``timestamp``."""
        return clamp_indices(self.window(video_id, timestamp)[1], 0, self.num_frames(video_id) - 1)

    def read(self, video_id: str, index0: int) -> np.ndarray:
        """One frame as RGB uint8 ``[H, W, 3]``."""
        import cv2

        p = self.frame_path(video_id, index0)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError("frame image missing or unreadable", received=str(p), expected="a readable JPEG",
                            fix="re-extract the frames of this video")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def clip(self, video_id: str, timestamp: int) -> np.ndarray:
        return np.stack([self.read(video_id, i) for i in self.indices(video_id, timestamp)])

    def describe(self, video_id: str) -> dict:
        n = self.num_frames(video_id)
        h, w = self.read(video_id, 0).shape[:2] if n else (0, 0)
        return {"path": str(self.root / video_id), "fps": self.fps, "frames": n, "width": w, "height": h}


def make_source(kind: str, root: str | Path, *, fps: float | None = None, temporal_rule: str = "auto",
                timestamp_start: int = 900) -> FrameSource:
    """A frame source by name: "video" | "clips" | "frames"."""
    if kind == "video":
        return VideoFileSource(root, fps=fps, temporal_rule=temporal_rule)
    if kind == "clips":
        return ClipsSource(root, fps=fps, temporal_rule=temporal_rule)
    if kind == "frames":
        return FramesDirSource(root, fps=fps, timestamp_start=timestamp_start, temporal_rule=temporal_rule)
    raise DataError("unknown frame source", received=kind, expected="video | clips | frames",
                    fix="pass frame_source='video' (whole files), 'clips' (<vid>/<sec>.mp4) or 'frames' (jpg folders)")


# --------------------------------------------------------------------------- layout converters


def _resample(n_src: int, src_fps: float, dst_fps: float) -> list[int]:
    """Source index nearest in time to each output frame j (time j/dst_fps) over the same duration
    (:func:`nearest_frame`: ties to the earlier source frame)."""
    src, dst = as_rate(src_fps), as_rate(dst_fps)
    n_dst = math.floor(n_src * dst / src)
    return [min(nearest_frame(Fraction(j) / dst, src), n_src - 1) for j in range(n_dst)]


def write_frames_layout(video_path: str | Path, out_root: str | Path, video_id: str, fps: float = 30,
                        quality: int = 95) -> Path:
    """Write ``out_root/<video_id>/<video_id>_%06d.jpg`` (1-based) resampled to ``fps`` (nearest time).

    Frame j (1-based) holds the source frame nearest to time (j − 1)/fps, so timestamp t (with
    ``timestamp_start`` 0) is frame t·fps + 1.
    """
    import cv2

    frames, src_fps = decode_all(video_path)
    out = Path(out_root) / video_id
    out.mkdir(parents=True, exist_ok=True)
    for j, i in enumerate(_resample(len(frames), src_fps, fps)):
        bgr = cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / f"{video_id}_{j + 1:06d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return out


def write_clips_layout(video_path: str | Path, out_root: str | Path, video_id: str, fps: float = 25) -> Path:
    """Write 1-second H.264 clips ``out_root/<video_id>/<sec>.mp4`` at ``fps`` (nearest-time resampling).

    Clip s holds output frames s·fps … (s+1)·fps − 1, so its first frame is the keyframe of timestamp s.
    A trailing partial second is dropped.
    """
    frames, src_fps = decode_all(video_path)
    idx = _resample(len(frames), src_fps, fps)
    per = int(round(fps))
    out = Path(out_root) / video_id
    for s in range(len(idx) // per):
        write_video(out / f"{s}.mp4", frames[idx[s * per:(s + 1) * per]], fps=fps)
    return out
