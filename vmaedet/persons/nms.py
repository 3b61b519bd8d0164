"""Box selection shared by the person detectors: greedy NMS, threshold, sort and cap."""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (``torchvision.ops.nms``) of ``[N, 4]`` xyxy boxes: indices kept, by decreasing score."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    keep = torchvision.ops.nms(torch.as_tensor(boxes, dtype=torch.float32),
                               torch.as_tensor(scores, dtype=torch.float32), float(iou_threshold))
    return keep.numpy()


def select_boxes(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, max_persons: int,
                 iou_threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Threshold, NMS (unless ``iou_threshold`` is None), sort by score and cap at ``max_persons``.

    Args:
        boxes: ``[N, 4]`` xyxy; scores: ``[N]``.

    Returns:
        The kept boxes ``[K, 4]`` and scores ``[K]``, best first, ``K ≤ max_persons``.
    """
    mask = scores >= score_threshold
    boxes, scores = boxes[mask], scores[mask]
    order = nms(boxes, scores, iou_threshold) if iou_threshold is not None else np.argsort(-scores, kind="stable")
    order = order[:max_persons]
    return boxes[order], scores[order]
