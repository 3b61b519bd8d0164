"""Person-detector test doubles for the stream tests."""

from __future__ import annotations

import numpy as np

from vmaedet.persons.base import PersonDetector
from vmaedet.structures import PersonDetections


class EveryOther(PersonDetector):
    """Test double: one person on keyframes 0, 16, 32, …; nobody on 8, 24, 40, …"""

    name = "every-other"

    def _detect(self, frame, frame_index, timestamp, video_id) -> PersonDetections:  # noqa: ANN001
        if frame_index is not None and frame_index % 16 == 0:
            return PersonDetections(np.array([[10, 8, 60, 56]], np.float32), np.array([0.9], np.float32))
        return PersonDetections.empty()


class Everyone(PersonDetector):
    """Test double: one person on every frame."""

    name = "everyone"

    def _detect(self, frame, frame_index, timestamp, video_id) -> PersonDetections:  # noqa: ANN001
        return PersonDetections(np.array([[10, 8, 60, 56]], np.float32), np.array([0.9], np.float32))
