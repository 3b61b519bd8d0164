"""Clip sampling maths (spec §2 "Temporal sampling"): which 16 frames around a keyframe a clip holds.

Every frame source (:mod:`vmaedet.data.layouts`), the streaming scheduler and the layout converters
sample with these functions, so "nearest in time" is one rule everywhere.

Temporal rules (``temporal_rule``):

* ``"frames"`` — the seed's rule, every 4th frame at the source rate: offsets −31, −27, …, +29
  frames. Exactly the seed at 25 fps.
* ``"time"`` — the frames nearest in time to the seed's sampling times −1.24 s, −1.08 s, …, +1.16 s
  (spacing 0.16 s). Identical to ``"frames"`` at 25 fps.
* ``"auto"`` (default) — ``"frames"`` when the source runs at 25 fps, otherwise ``"time"``.

"Nearest in time" (:func:`nearest_frame`): frame i sits at time i/fps, the rate is an exact fraction
(:func:`as_rate`, 29.97… → 30000/1001) and a time exactly half-way between two frames takes the
**earlier** frame, i.e. index = ⌈t·fps − ½⌉ in rational arithmetic. So at 12.5 fps the offsets are
−16, −14, …, +14. Besides the seed's ``"centered"`` window there is a ``"causal"`` one (the streaming
runtime's low-latency mode) whose 16 times end at the keyframe.

Indices outside the video are clamped to [0, N − 1] (:func:`clamp_indices`), as the seed clips its
indices.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE, SEED_FPS
from vmaedet.errors import DataError

#: The seed's frame offsets relative to the keyframe at 25 fps (16 frames, stride 4).
SEED_OFFSETS: tuple[int, ...] = tuple(-(CLIP_LEN * FRAME_STRIDE) // 2 + 1 + FRAME_STRIDE * k for k in range(CLIP_LEN))
#: Names accepted as ``temporal_rule``.
TEMPORAL_RULES = ("auto", "frames", "time")
#: Names accepted as ``window``: the seed's ``"centered"`` one and the ``"causal"`` one ending at the keyframe.
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
    first = SEED_OFFSETS[0] if window == "centered" else -FRAME_STRIDE * (CLIP_LEN - 1)
    return [Fraction(first + FRAME_STRIDE * k, SEED_FPS) for k in range(CLIP_LEN)]


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
