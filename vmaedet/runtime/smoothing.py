"""Per-track score smoothing (EMA + hysteresis) and action events.

For each track, ``ema ← α·score + (1 − α)·ema`` (the first score starts the EMA).  An action turns
*on* when its EMA reaches ``on`` and *off* when it falls below ``off`` (< ``on``), which stops label
flicker between keyframes.  An on→off run is an :class:`ActionEvent` (track, action, start, end,
peak); events close when the action turns off, when the track has been unseen for ``max_missed``
keyframes, or at the end of the stream.  Untracked detections (id −1) are passed through raw.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from vmaedet.labels import AVA_ACTIONS


@dataclass
class ActionEvent:
    """One continuous activity of one tracked person."""

    track_id: int
    action_id: int  #: AVA action id (1..80)
    action: str
    start: float  #: seconds (keyframe time when it turned on)
    end: float  #: seconds (last keyframe time it was on)
    peak_score: float
    peak_time: float
    start_frame: int
    end_frame: int

    def to_json(self, source: str | None = None) -> str:
        """One JSON line (``"type": "event"``) of the stream JSONL, tagged with its ``source``."""
        return json.dumps({"type": "event", "source": source, **asdict(self)})


@dataclass
class _Track:
    ema: np.ndarray  #: [80]
    active: np.ndarray  #: [80] bool
    open: dict[int, ActionEvent] = field(default_factory=dict)
    last_seen: int = 0  #: update counter


class ScoreSmoother:
    """EMA + hysteresis per track; emits closed :class:`ActionEvent` objects.

    Args:
        alpha: EMA weight of the newest score.
        on: threshold that turns an action on.
        off: threshold below which it turns off (defaults to 0.75·on).
        max_missed: keyframes a track may be unseen before its events close and its state is dropped.
    """

    def __init__(self, alpha: float = 0.6, on: float = 0.4, off: float | None = None, max_missed: int = 8) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1]; received {alpha}")
        self.alpha = alpha
        self.on = on
        self.off = 0.75 * on if off is None else off
        if self.off > self.on:
            raise ValueError(f"off threshold ({self.off}) must not exceed on threshold ({self.on})")
        self.max_missed = max_missed
        self._tracks: dict[int, _Track] = {}
        self._step = 0

    def update(self, track_ids: np.ndarray, scores: np.ndarray, time: float, frame: int) -> tuple[np.ndarray, list[ActionEvent]]:
        """Scores ``[N, 80]`` of one keyframe → (smoothed ``[N, 80]``, events closed by this update)."""
        self._step += 1
        smoothed = np.array(scores, dtype=np.float32, copy=True)  # [N, 80]
        closed: list[ActionEvent] = []
        for row, tid in enumerate(int(t) for t in track_ids):
            if tid < 0:
                continue
            tr = self._tracks.get(tid)
            if tr is None:
                tr = self._tracks[tid] = _Track(ema=smoothed[row].copy(), active=np.zeros(len(smoothed[row]), bool))
            else:
                tr.ema = self.alpha * smoothed[row] + (1 - self.alpha) * tr.ema
            tr.last_seen = self._step
            smoothed[row] = tr.ema
            closed += self._hysteresis(tid, tr, time, frame)
        for tid in [t for t, tr in self._tracks.items() if self._step - tr.last_seen > self.max_missed]:
            closed += self._close_all(self._tracks.pop(tid))
        return smoothed, closed

    def _hysteresis(self, tid: int, tr: _Track, time: float, frame: int) -> list[ActionEvent]:
        closed = []
        turn_on = ~tr.active & (tr.ema >= self.on)
        turn_off = tr.active & (tr.ema < self.off)
        for a in np.flatnonzero(turn_on):
            tr.open[int(a)] = ActionEvent(tid, int(a) + 1, AVA_ACTIONS[a], time, time, float(tr.ema[a]), time, frame, frame)
        for a in np.flatnonzero(turn_off):
            closed.append(tr.open.pop(int(a)))
        tr.active = (tr.active | turn_on) & ~turn_off
        for a, ev in tr.open.items():
            ev.end, ev.end_frame = time, frame
            if tr.ema[a] > ev.peak_score:
                ev.peak_score, ev.peak_time = float(tr.ema[a]), time
        return closed

    @staticmethod
    def _close_all(tr: _Track) -> list[ActionEvent]:
        events = sorted(tr.open.values(), key=lambda e: e.action_id)
        tr.open.clear()
        tr.active[:] = False
        return events

    def flush(self) -> list[ActionEvent]:
        """Close every open event (end of stream)."""
        out: list[ActionEvent] = []
        for tr in self._tracks.values():
            out += self._close_all(tr)
        self._tracks.clear()
        return out
