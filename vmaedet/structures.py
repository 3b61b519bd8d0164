"""The result types of the package (validated arrays, no drawing and no file formats here).

* :class:`PersonDetections` — person boxes and scores of one frame (what a person detector returns).
* :class:`ActionDetections` — per-person AVA action scores on one keyframe (what the
  :class:`~vmaedet.models.predictor.Predictor` and the streaming runtime return).
* :func:`top_actions` — the best (name, score) pairs of one person's 80 scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from vmaedet.constants import NUM_CLASSES
from vmaedet.errors import DataError
from vmaedet.labels import AVA_ACTIONS


def top_actions(scores: np.ndarray, threshold: float = 0.4, k: int = 3) -> list[tuple[str, float]]:
    """The ≤ ``k`` highest-scoring actions ≥ ``threshold`` of one person's ``[80]`` scores, best first."""
    order = np.argsort(-scores)[:k]
    return [(AVA_ACTIONS[i], float(scores[i])) for i in order if scores[i] >= threshold]


def _check_shape(owner: str, name: str, value: np.ndarray, shape: tuple[int, ...], fix: str) -> None:
    if value.shape != shape:
        raise DataError(f"{owner}.{name} has the wrong shape", received=value.shape, expected=shape, fix=fix)


@dataclass
class PersonDetections:
    """Person boxes of one frame: ``boxes [N, 4]`` float32 (x1, y1, x2, y2, pixels), ``scores [N]`` float32."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise DataError("PersonDetections.boxes has the wrong shape.", received=self.boxes.shape,
                            expected="[N, 4] (x1, y1, x2, y2)", fix="pass one row of 4 coordinates per box")
        if self.scores.shape[0] != self.boxes.shape[0]:
            raise DataError("PersonDetections.scores does not match the number of boxes.",
                            received=f"{self.scores.shape[0]} scores for {self.boxes.shape[0]} boxes",
                            expected="one score per box", fix="pass scores of shape [N]")
        if not (np.isfinite(self.boxes).all() and np.isfinite(self.scores).all()):
            raise DataError("PersonDetections contain NaN or infinite values.", received="non-finite values",
                            expected="finite boxes and scores", fix="check the detector's outputs")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> "PersonDetections":
        """No persons."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@dataclass
class ActionDetections:
    """Per-person AVA action scores on one keyframe.

    The :class:`~vmaedet.models.predictor.Predictor` fills the arrays; the streaming runtime also
    the keyframe's place in the stream (``frame_index``, ``timestamp``, ``latency``, …) and smooths
    ``action_scores`` per track.

    Attributes:
        boxes: ``[N, 4]`` float32 xyxy in pixels of the original frames (as given, not extended).
        person_scores: ``[N]`` float32 detector scores.
        action_scores: ``[N, 80]`` float32 scores to act on; column i is AVA id i+1. The Predictor's
            are the raw scores; a stream's are smoothed per track (raw for track id −1).
        track_ids: ``[N]`` int64, −1 when untracked (default: all −1).
        raw_scores: ``[N, 80]`` float32 = sigmoid(logit) × person score, the seed's post-processing
            (default: ``action_scores``).
        frame_index: source index of the keyframe (None outside a stream).
        timestamp: keyframe time in seconds (None outside a stream).
        latency: glass-to-result seconds (capture of the keyframe → result).
        image_wh: (W, H) of the source frames ((0, 0) when unknown).
        clip_frames: source indices of the 16 sampled frames (empty when unknown).
        source: name of the stream the keyframe comes from (a run over several sources tags each
            result with its source's name; None outside a stream).
    """

    boxes: np.ndarray
    person_scores: np.ndarray
    action_scores: np.ndarray
    track_ids: np.ndarray | None = None
    raw_scores: np.ndarray | None = None
    frame_index: int | None = None
    timestamp: float | None = None
    latency: float = 0.0
    image_wh: tuple[int, int] = (0, 0)
    clip_frames: list[int] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        owner, fix = "ActionDetections", "pass one row per person"
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise DataError(f"{owner}.boxes has the wrong shape", received=self.boxes.shape, expected="(N, 4)",
                            fix="pass one row x1, y1, x2, y2 per person")
        n = self.boxes.shape[0]
        self.person_scores = np.asarray(self.person_scores, dtype=np.float32).reshape(-1)
        _check_shape(owner, "person_scores", self.person_scores, (n,), fix)
        self.action_scores = self._scores(self.action_scores, n)
        _check_shape(owner, "action_scores", self.action_scores, (n, NUM_CLASSES), fix)
        self.raw_scores = self.action_scores if self.raw_scores is None else self._scores(self.raw_scores, n)
        _check_shape(owner, "raw_scores", self.raw_scores, (n, NUM_CLASSES), fix)
        self.track_ids = (np.full(n, -1, dtype=np.int64) if self.track_ids is None
                          else np.asarray(self.track_ids, dtype=np.int64).reshape(-1))
        _check_shape(owner, "track_ids", self.track_ids, (n,), fix)

    @staticmethod
    def _scores(scores: np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(scores, dtype=np.float32)
        return arr.reshape(0, NUM_CLASSES) if n == 0 and arr.size == 0 else arr

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def top_actions(self, threshold: float = 0.4, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per person, up to ``k`` (name, score) pairs of ``action_scores`` ≥ ``threshold``, best first."""
        return [top_actions(row, threshold, k) for row in self.action_scores]

    def to_json(self, threshold: float = 0.0) -> str:
        """One JSON line (``"type": "keyframe"``): source, keyframe, persons with track id, box, person score and
        actions ≥ threshold (AVA id → score); the schema is ``docs/stream-jsonl.schema.json``."""
        persons = []
        for i in range(len(self)):
            ids = np.flatnonzero(self.action_scores[i] >= threshold)
            persons.append({
                "track_id": int(self.track_ids[i]),  # type: ignore[index]
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "person_score": round(float(self.person_scores[i]), 5),
                "actions": {int(a) + 1: round(float(self.action_scores[i, a]), 5) for a in ids},
            })
        timestamp = None if self.timestamp is None else round(self.timestamp, 4)
        return json.dumps({"type": "keyframe", "source": self.source, "frame_index": self.frame_index, "timestamp": timestamp,
                           "latency_ms": round(self.latency * 1e3, 2), "persons": persons})
