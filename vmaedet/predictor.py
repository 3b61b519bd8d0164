"""Predictor: raw frames + person boxes → per-person AVA action scores, as the seed computes them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data.transforms import test_transform
from .models.detector import ActionDetector
from .ops.boxes import make_rois
from .structures import ActionDetections

CLIP_LEN = 16


class Predictor:
    """Run a detector on one 16-frame clip with the seed's pre- and post-processing.

    Pre-processing (spec §2): resize short side to 256 (``detector.short_side``) (cv2 INTER_LINEAR, int truncation),
    normalise, zero-pad to multiples of 16; boxes scaled per axis to the resized frame, then
    extended by (0.1, 0.05) and clamped to the resized, unpadded size.  Post-processing (spec §3):
    score = sigmoid(logit) × person score.

    Args:
        detector: an :class:`ActionDetector` (e.g. from :func:`vmaedet.load_detector`).
        device: where to run; defaults to the model's device.
        seed_quirk: copy the seed's transposed resize for frames whose short side is already 256.
    """

    def __init__(self, detector: ActionDetector, device: str | torch.device | None = None, seed_quirk: bool = True) -> None:
        self.detector = detector.eval()
        self.device = torch.device(device) if device is not None else next(detector.parameters()).device
        self.detector.to(self.device)
        self.seed_quirk = seed_quirk

    def preprocess(self, frames: Sequence[np.ndarray] | np.ndarray, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Frames ``[16, H, W, 3]`` uint8 + boxes ``[N, 4]`` original pixels → clip ``[1, 3, 16, Hp, Wp]``, rois ``[N, 5]``, resized (W, H)."""
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[0] != CLIP_LEN or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"frames must be {CLIP_LEN} RGB uint8 images of one size, [16, H, W, 3]; "
                f"received array of shape {arr.shape} and dtype {arr.dtype}"
            )
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        clip, size = test_transform(arr, seed_quirk=self.seed_quirk, short_side=self.detector.short_side)  # [3, 16, Hp, Wp]
        h, w = arr.shape[1:3]
        rois = make_rois(boxes, size, src_wh=(w, h))  # [N, 5]
        return clip.unsqueeze(0), rois, size

    @torch.no_grad()
    def __call__(
        self,
        frames: Sequence[np.ndarray] | np.ndarray,
        boxes: np.ndarray,
        person_scores: np.ndarray | None = None,
    ) -> ActionDetections:
        """Score the persons on the clip's keyframe.

        Args:
            frames: the 16 sampled RGB uint8 frames ``[16, H, W, 3]`` (stride 4 around the keyframe).
            boxes: ``[N, 4]`` person boxes xyxy in pixels of the original frames.
            person_scores: ``[N]`` detector scores (1 when None).
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        scores = np.ones(n, np.float32) if person_scores is None else np.asarray(person_scores, np.float32).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"person_scores must have one score per box ({n}); received shape {scores.shape}")
        clip, rois, _ = self.preprocess(frames, boxes)
        if n == 0:
            return ActionDetections(boxes, scores, np.zeros((0, 80), np.float32))
        logits = self.detector(clip.to(self.device), rois.to(self.device)).float().cpu()  # [N, 80]
        action = torch.sigmoid(logits).numpy() * scores[:, None]
        return ActionDetections(boxes=boxes, person_scores=scores, action_scores=action)
