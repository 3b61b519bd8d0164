"""Stable person ids across keyframes with ByteTrack from a maintained library.

``supervision`` dropped ``sv.ByteTrack`` in 0.27; its successor is Roboflow's ``trackers``
package (Apache-2.0, ``trackers.ByteTrackTracker``).  The first is used when present, else the
second.  The tracker runs once per keyframe (its frame rate is the keyframe rate).

ByteTrack confirms a new track only on its second keyframe (it answers −1 on the first).  The
runtime gives such a detection an id at once: a new detection that can start a track (score ≥ the
activation threshold) gets the next free id, and when ByteTrack confirms the track on the next
keyframe its id is mapped to that one (the confirmed box overlapping the provisional box most).  So
a tracked person has its id from its first keyframe; only detections too weak to start a track
keep −1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vmaedet.errors import BackendUnavailable


def _bytetrack(keyframe_rate: float, lost_seconds: float, activation: float) -> Any:
    lost = max(1, round(lost_seconds * keyframe_rate))
    try:
        from trackers import ByteTrackTracker
    except ImportError:
        ByteTrackTracker = None
    if ByteTrackTracker is not None:
        return ByteTrackTracker(frame_rate=keyframe_rate, lost_track_buffer=lost, track_activation_threshold=activation,
                                minimum_consecutive_frames=1, high_conf_det_threshold=activation)
    import supervision as sv

    if hasattr(sv, "ByteTrack"):  # supervision < 0.27
        return sv.ByteTrack(track_activation_threshold=activation, lost_track_buffer=lost,
                            frame_rate=max(1, round(keyframe_rate)), minimum_consecutive_frames=1)
    raise BackendUnavailable("no ByteTrack implementation is installed",
                             received=f"supervision {sv.__version__} (without ByteTrack), no 'trackers' package",
                             expected="trackers >= 2.6 (or supervision < 0.27)", fix="pip install trackers")


class PersonTracker:
    """ByteTrack over keyframe detections.

    Args:
        keyframe_rate: keyframes per second (source fps ÷ stride).
        lost_seconds: how long a lost track is kept for re-association.
        activation: detector score above which a detection may start a track.
    """

    def __init__(self, keyframe_rate: float, lost_seconds: float = 2.0, activation: float = 0.5) -> None:
        self._tracker = _bytetrack(keyframe_rate, lost_seconds, activation)
        self.activation = activation
        self._ids: dict[int, int] = {}  #: ByteTrack's id → the id handed out
        self._provisional: list[tuple[np.ndarray, int]] = []  #: (box [4], id) given on the last keyframe
        self._next = 0

    def _new_id(self) -> int:
        self._next += 1
        return self._next - 1

    def _adopt(self, internal: int, box: np.ndarray) -> int:
        """The id for a track ByteTrack confirms now: the provisional id of its box, else a new one."""
        best, best_iou = -1, 0.3
        for j, (pbox, _) in enumerate(self._provisional):
            iou = _iou(box, pbox)
            if iou >= best_iou:
                best, best_iou = j, iou
        if best < 0:
            return self._new_id()
        return self._provisional.pop(best)[1]

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` xyxy + scores ``[N]`` → track ids ``[N]`` int64 in input order (−1: too weak to track)."""
        import supervision as sv

        n = len(boxes)
        det = sv.Detections(xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=np.asarray(scores, np.float32),
                            data={"row": np.arange(n)})
        update = getattr(self._tracker, "update_with_detections", None) or self._tracker.update
        out = update(det)
        internal = np.full(n, -1, dtype=np.int64)
        if len(out) and out.tracker_id is not None:
            internal[np.asarray(out.data["row"], dtype=np.int64)] = np.asarray(out.tracker_id, dtype=np.int64)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)  # [N, 4]
        ids = np.full(n, -1, dtype=np.int64)
        for row in np.flatnonzero(internal >= 0):
            key = int(internal[row])
            if key not in self._ids:
                self._ids[key] = self._adopt(key, boxes[row])
            ids[row] = self._ids[key]
        provisional = []
        for row in np.flatnonzero((internal < 0) & (np.asarray(scores, np.float32).reshape(-1) >= self.activation)):
            ids[row] = self._new_id()
            provisional.append((boxes[row].copy(), int(ids[row])))
        self._provisional = provisional
        return ids


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = w * h
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0
