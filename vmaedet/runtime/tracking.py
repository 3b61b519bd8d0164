"""Stable person ids across keyframes with ByteTrack from a maintained library.

``supervision`` dropped ``sv.ByteTrack`` in 0.27; its successor is Roboflow's ``trackers``
package (Apache-2.0, ``trackers.ByteTrackTracker``).  The first is used when present, else the
second.  The tracker runs once per keyframe (its frame rate is the keyframe rate); a detection it
has not confirmed yet gets track id −1.
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

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` xyxy + scores ``[N]`` → track ids ``[N]`` int64 in input order (−1 = unconfirmed)."""
        import supervision as sv

        n = len(boxes)
        det = sv.Detections(xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), confidence=np.asarray(scores, np.float32),
                            data={"row": np.arange(n)})
        update = getattr(self._tracker, "update_with_detections", None) or self._tracker.update
        out = update(det)
        ids = np.full(n, -1, dtype=np.int64)
        if len(out) and out.tracker_id is not None:
            ids[np.asarray(out.data["row"], dtype=np.int64)] = np.asarray(out.tracker_id, dtype=np.int64)
        return ids
