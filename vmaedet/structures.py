"""Validated results (no drawing here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmaedet.labels import AVA_ACTIONS, NUM_CLASSES


@dataclass
class ActionDetections:
    """Per-person action scores on one keyframe.

    Attributes:
        boxes: ``[N, 4]`` float32 xyxy in pixels of the original frames (as given, not extended).
        person_scores: ``[N]`` float32 detector scores.
        action_scores: ``[N, 80]`` float32 = sigmoid(logit) × person score; column i is AVA id i+1.
        track_ids: ``[N]`` int64, −1 when untracked.
    """

    boxes: np.ndarray
    person_scores: np.ndarray
    action_scores: np.ndarray
    track_ids: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4) if np.size(self.boxes) == 0 else np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4]; received shape {self.boxes.shape}")
        n = self.boxes.shape[0]
        self.person_scores = np.asarray(self.person_scores, dtype=np.float32).reshape(-1)
        if self.person_scores.shape != (n,):
            raise ValueError(f"person_scores must be [{n}] to match boxes; received shape {self.person_scores.shape}")
        self.action_scores = np.asarray(self.action_scores, dtype=np.float32)
        if n == 0 and self.action_scores.size == 0:
            self.action_scores = self.action_scores.reshape(0, NUM_CLASSES)
        if self.action_scores.shape != (n, NUM_CLASSES):
            raise ValueError(f"action_scores must be [{n}, {NUM_CLASSES}]; received shape {self.action_scores.shape}")
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        if self.track_ids.shape != (n,):
            raise ValueError(f"track_ids must be [{n}]; received shape {self.track_ids.shape}")

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def top_actions(self, threshold: float = 0.4, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per person, up to ``k`` (name, score) pairs with score ≥ threshold, best first."""
        out = []
        for row in self.action_scores:
            idx = np.argsort(-row)[:k]
            out.append([(AVA_ACTIONS[i], float(row[i])) for i in idx if row[i] >= threshold])
        return out
