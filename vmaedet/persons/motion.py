"""Moving blobs as persons: background subtraction for **static cameras only** (spec ``motion``)."""

from __future__ import annotations

import numpy as np

from vmaedet.persons.base import PersonDetector, register_detector
from vmaedet.persons.nms import select_boxes
from vmaedet.structures import PersonDetections


@register_detector("motion")
class MotionDetector(PersonDetector):
    """Moving blobs from background subtraction; **for static cameras only**.

    Args:
        min_area: smallest box kept, as a fraction of the frame area.
        history, var_threshold: OpenCV MOG2 parameters.
        warmup: frames used only to learn the background (no boxes returned).
        nms_iou: merges overlapping blobs' boxes.
    """

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32, min_area: float = 0.002,
                 history: int = 200, var_threshold: float = 25.0, warmup: int = 5, nms_iou: float = 0.5) -> None:
        import cv2

        super().__init__(score_threshold, max_persons)
        self.cv2 = cv2
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                             detectShadows=False)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.min_area = min_area
        self.warmup = warmup
        self.nms_iou = nms_iou
        self.frames_seen = 0

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        cv2 = self.cv2
        mask = self.subtractor.apply(frame)  # [H, W] uint8, 255 = foreground
        self.frames_seen += 1
        if self.frames_seen <= self.warmup:
            return PersonDetections.empty()
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.dilate(mask, self.kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        h, w = frame.shape[:2]
        boxes, scores = [], []
        for contour in contours:
            x, y, bw, bh = cv2.boundingRect(contour)
            if bw * bh < self.min_area * h * w:
                continue
            boxes.append((x, y, x + bw, y + bh))
            scores.append(float((mask[y:y + bh, x:x + bw] > 0).mean()))
        if not boxes:
            return PersonDetections.empty()
        kept = select_boxes(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), self.score_threshold,
                       self.max_persons, self.nms_iou)
        return PersonDetections(*kept)
