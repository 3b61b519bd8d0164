"""Person boxes from an AVA proposals CSV (spec ``boxes:FILE``).

CSV rows ``video_id,timestamp,x1,y1,x2,y2,[action],score`` with normalised boxes: a frame gets the
boxes of the nearest keyframe timestamp (within ``max_gap`` seconds) of its video, scaled to frame
pixels. Needs ``timestamp`` (or ``frame_index`` and ``fps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vmaedet.errors import ConfigError, DataError
from vmaedet.ops.boxes import normalized_to_pixels
from vmaedet.persons.base import PersonDetector, register_detector, unknown_spec
from vmaedet.persons.nms import select_boxes
from vmaedet.structures import PersonDetections


@register_detector("boxes")
class ProposalBoxes(PersonDetector):
    """Person boxes from an AVA proposals CSV, looked up by video id and nearest keyframe timestamp.

    Args:
        path: CSV rows ``video_id,timestamp,x1,y1,x2,y2[,action],score`` (normalised boxes); rows
            repeating a box (one per action) count once.
        fps: converts ``frame_index`` to seconds when ``timestamp`` is not given.
        max_gap: the nearest keyframe must lie within this many seconds, else no boxes.
    """

    def __init__(self, path: str | Path, score_threshold: float = 0.5, max_persons: int = 32,
                 fps: float | None = None, max_gap: float = 1.0) -> None:
        super().__init__(score_threshold, max_persons)
        self.path = Path(path)
        self.fps = fps
        self.max_gap = max_gap
        self.table = self._read(self.path)  # video → sorted timestamps, boxes per timestamp

    @classmethod
    def from_spec(cls, argument: str, *, score_threshold: float, max_persons: int, backend: str, device: str,
                  **options: Any) -> "ProposalBoxes":
        if not argument:
            raise unknown_spec("boxes:")
        return cls(argument, score_threshold, max_persons, **options)

    @classmethod
    def input_file(cls, argument: str) -> Path | None:
        return Path(argument) if argument else None

    @staticmethod
    def _read(path: Path) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
        from vmaedet.data.annotations import read_proposals

        rows: dict[str, dict[int, dict[tuple[float, ...], float]]] = {}
        for r in read_proposals(path):  # AVA proposals CSV: 8 columns, score last (errors name file:line)
            per_box = rows.setdefault(r.video_id, {}).setdefault(r.timestamp, {})
            per_box[r.box] = max(r.score, per_box.get(r.box, 0.0))
        if not rows:
            raise DataError("The proposals CSV holds no rows.", received=str(path), expected="at least one box",
                            fix="pass a non-empty proposals file")
        return {vid: {ts: (np.asarray(list(b), np.float32).reshape(-1, 4), np.asarray(list(b.values()), np.float32))
                      for ts, b in per_ts.items()} for vid, per_ts in rows.items()}

    def coverage_warning(self, video_id: str) -> str | None:
        """A sentence when the proposals hold no box for ``video_id`` (every frame would have 0 persons)."""
        if video_id in self.table:
            return None
        videos = sorted(self.table)
        shown = ", ".join(videos[:5]) + (f", … ({len(videos)} videos)" if len(videos) > 5 else "")
        return (f"the proposals file {self.path} has no rows for the video {video_id!r} (it holds {shown}); "
                "every frame will have 0 persons and no actions. Name the video file after its video id, or "
                "pass the proposals of this video.")

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        if timestamp is None:
            if frame_index is None or self.fps is None:
                raise ConfigError("boxes:FILE needs the frame's time to look up its keyframe.",
                                  received=f"timestamp=None, frame_index={frame_index}, fps={self.fps}",
                                  expected="a timestamp in seconds, or frame_index with fps",
                                  fix="pass timestamp= to detect(), or create the detector with fps=")
            timestamp = frame_index / self.fps
        if video_id is None:
            if len(self.table) != 1:
                raise ConfigError("boxes:FILE holds several videos; say which one.", received="video_id=None",
                                  expected=f"one of {sorted(self.table)[:5]}…", fix="pass video_id= to detect()")
            video_id = next(iter(self.table))
        per_ts = self.table.get(video_id)
        if not per_ts:
            return PersonDetections.empty()
        nearest = min(per_ts, key=lambda ts: (abs(ts - timestamp), ts))
        if abs(nearest - timestamp) > self.max_gap:
            return PersonDetections.empty()
        boxes, scores = per_ts[nearest]
        h, w = frame.shape[:2]
        pixels = normalized_to_pixels(boxes, (w, h))  # [n, 4] the seed's convention
        return PersonDetections(*select_boxes(pixels, scores, self.score_threshold, self.max_persons, None))
