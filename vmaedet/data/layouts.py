"""Dataset frame layouts: 16 RGB frames around a keyframe from three kinds of storage (spec §2).

* :class:`VideoFileSource` — whole video files ``<root>/<video_id>.mp4`` decoded with PyAV, seeking
  to the key frame before the needed range and decoding forward; decoded frames are kept in a
  bounded per-video cache (:class:`vmaedet.data.video.CachedVideoReader`) so consecutive keyframes
  of one video do not re-decode everything. Keyframe of timestamp t = the frame nearest to time t
  (``round(t·fps)``, ties to the earlier frame).
* :class:`ClipsSource` — the seed's 1-second clips ``<root>/<video_id>/<sec>.mp4`` (25 fps). The
  first frame of ``<t>.mp4`` is the keyframe; neighbours come from ``<t±1>.mp4`` concatenated the
  way the seed does it (right side t, t+1, … until ≥ 32 frames; left side t−1, t−2, …; keep
  ``m = min(left, right)`` frames each side).
* :class:`FramesDirSource` — the mmaction2/SlowFast frame folders
  ``<root>/<video_id>/<video_id>_%06d.jpg`` (1-based numbering, 30 fps by default). Timestamp t is
  frame ``(t − timestamp_start)·fps + 1`` (1-based); ``timestamp_start`` is 900 for real AVA
  (15-minute cuts from 900 s) and 0 for synthetic data.

Which frames a clip holds (temporal rule, window, nearest-in-time, clamping) is
:mod:`vmaedet.data.sampling`. :func:`make_source` picks a layout by name; the converters
:func:`write_frames_layout` and :func:`write_clips_layout` turn a video file into the other two.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE, SEED_FPS
from vmaedet.data.sampling import as_rate, clamp_indices, frame_offsets, nearest_frame, resolve_rule
from vmaedet.data.video import CachedVideoReader, decode_all, probe_video, write_video
from vmaedet.errors import DataError

#: Default frame rate of a frame-folder layout (AVA's frames are extracted at 30 fps).
FRAMES_DIR_FPS = 30.0
#: First timestamp of real AVA's 15-minute cuts (a frame folder's frame 1 is this second).
AVA_TIMESTAMP_START = 900


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



# --------------------------------------------------------------------------- whole videos


class VideoFileSource(FrameSource):
    """Whole video files ``<root>/<video_id><ext>`` decoded with PyAV (keyframe = round(t·fps)).

    Args:
        root: folder holding the videos.
        fps: override the stream's frame rate (only for files with wrong metadata).
        temporal_rule: "auto" | "frames" | "time" (see :mod:`vmaedet.data.sampling`).
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
        self._readers: OrderedDict[str, CachedVideoReader] = OrderedDict()

    def path_of(self, video_id: str) -> Path:
        """The file of ``video_id`` (first existing extension; ``.mp4`` when none exists)."""
        for ext in self.EXTENSIONS:
            p = self.root / f"{video_id}{ext}"
            if p.is_file():
                return p
        return self.root / f"{video_id}.mp4"

    def location(self, video_id: str) -> Path:
        return self.path_of(video_id)

    def reader(self, video_id: str) -> CachedVideoReader:
        """The open, cached reader of ``video_id``."""
        r = self._readers.get(video_id)
        if r is None:
            r = CachedVideoReader(self.path_of(video_id), self.fps, self.cache_frames, self.seek_gap)
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
    HALF = CLIP_LEN * FRAME_STRIDE // 2  # 32

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
                            fix="write the clips with vmaedet.data.layouts.write_clips_layout or fix the annotations")
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

    def __init__(self, root: str | Path, fps: float | None = None, timestamp_start: int = AVA_TIMESTAMP_START,
                 temporal_rule: str = "auto", template: str = "{vid}_{idx:06d}.jpg") -> None:
        self.root = Path(root)
        self.fps = float(fps) if fps else FRAMES_DIR_FPS
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
                                fix="write the frames with vmaedet.data.layouts.write_frames_layout or fix the root")
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
                timestamp_start: int = AVA_TIMESTAMP_START) -> FrameSource:
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


def write_frames_layout(video_path: str | Path, out_root: str | Path, video_id: str, fps: float = FRAMES_DIR_FPS,
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


def write_clips_layout(video_path: str | Path, out_root: str | Path, video_id: str, fps: float = SEED_FPS) -> Path:
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
