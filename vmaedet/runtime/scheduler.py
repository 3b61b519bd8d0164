"""When to run the action model, and which frames a keyframe's clip takes.

The seed samples 16 frames at offsets −31, −27, …, +29 frames around the keyframe at 25 fps
(spec §2): one frame every 0.16 s, from −1.24 s to +1.16 s.  The runtime keeps that *time*
spacing at any frame rate: each of the 16 sampling times takes the frame nearest in time
(ties go to the earlier frame), so a 30-fps source is sampled at 0.16 s, not every 4th frame.
At 25 fps this is exactly the seed's frames.  The offsets come from the data loaders' own rule
(:func:`vmaedet.data.sampling.frame_offsets`, rule ``"time"``, exact rational arithmetic), so a
stream and the dataset sample the same frames at every frame rate.  Sampling times before the first frame or after the
last one take the first/last frame (the seed clamps indices the same way).

Modes:
* ``centered`` — the seed's alignment; a keyframe's result is ready once a frame 1.16 s after it
  has arrived, so results lag by about half a window.
* ``causal`` — the clip ends at the keyframe (offsets −60, −56, …, 0 frames at 25 fps): results
  are ready as soon as the keyframe arrives (lower latency, not the seed's alignment).

Keyframes: the first frame, then the first frame whose index is ≥ previous keyframe + ``stride``
(exactly every ``stride`` frames for files; live sources that drop frames take the next arrival).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmaedet import constants
from vmaedet.data import sampling
from vmaedet.errors import ConfigError

CLIP_LEN = constants.CLIP_LEN
FRAME_INTERVAL = constants.FRAME_STRIDE
SEED_FPS = float(constants.SEED_FPS)
MODES = sampling.WINDOWS


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown stream mode {mode!r}", received=mode, expected=" or ".join(MODES))


def sample_offsets(mode: str = "centered") -> np.ndarray:
    """The 16 sampling times relative to the keyframe, in seconds (float64)."""
    _check_mode(mode)
    return np.array([float(t) for t in sampling.sample_times(mode)], dtype=np.float64)  # [16]


def frame_offsets(mode: str, fps: float) -> np.ndarray:
    """The 16 sampling offsets in frames at ``fps``: nearest frame in time, ties to the earlier one."""
    _check_mode(mode)
    return np.array(sampling.frame_offsets(fps, "time", window=mode), dtype=np.int64)  # [16]


@dataclass
class KeyJob:
    """A keyframe waiting for the frames its clip needs."""

    index: int
    time: float
    captured: float  #: monotonic capture stamp of the keyframe
    boxes: np.ndarray  #: [N, 4] float32 original pixels
    person_scores: np.ndarray  #: [N] float32
    track_ids: np.ndarray  #: [N] int64 (−1: not tracked yet)
    image_wh: tuple[int, int]
    targets: np.ndarray = field(default_factory=lambda: np.zeros(CLIP_LEN))  #: [16] sampling times (s)


class Scheduler:
    """Keyframe choice, clip sampling times, readiness and which frames the ring must keep.

    Args:
        mode: ``centered`` or ``causal``.
        stride: frames between keyframes.
        fps: nominal frame rate of the source.
        lossless: the source delivers every frame with ``time = index / fps`` (files, folders); the
            ring then preprocesses only the frames some keyframe can sample.
    """

    def __init__(self, mode: str = "centered", stride: int = 8, fps: float = SEED_FPS, lossless: bool = True) -> None:
        if stride < 1:
            raise ConfigError("stride must be at least 1 frame", received=stride, expected="an integer ≥ 1")
        if fps <= 0:
            raise ConfigError("frame rate must be positive", received=fps, expected="> 0")
        self.mode = mode
        self.stride = stride
        self.fps = fps
        self.lossless = lossless
        self.offsets = sample_offsets(mode)  # [16] seconds
        self.index_offsets = frame_offsets(mode, fps)  # [16] frames
        self._next_key = 0

    def is_keyframe(self, index: int) -> bool:
        """Whether the arriving frame ``index`` is a keyframe (advances the schedule)."""
        if index < self._next_key:
            return False
        self._next_key = index + self.stride
        return True

    def targets(self, key_time: float) -> np.ndarray:
        """The 16 sampling times of a keyframe at ``key_time``."""
        return key_time + self.offsets

    def is_ready(self, job: KeyJob, newest_time: float) -> bool:
        """Whether every sampling time's nearest frame is known once a frame at ``newest_time`` arrived."""
        return newest_time >= job.targets[-1] - 1e-9

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` can be sampled by some keyframe (always True for live sources)."""
        if not self.lossless or index == 0:
            return True
        keys = index - self.index_offsets  # keyframe indices that would sample this frame
        return bool(np.any((keys >= 0) & (keys % self.stride == 0)))

    def horizon(self, pending: list[KeyJob], newest_time: float) -> float:
        """Earliest sampling time any pending or future keyframe can still ask for."""
        future = newest_time + self.offsets[0]
        return min([future, *(float(j.targets[0]) for j in pending)])
