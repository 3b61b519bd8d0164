"""Predictor: raw frames + person boxes → per-person AVA action scores, as the seed computes them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vmaedet.constants import CLIP_LEN, NUM_CLASSES
from vmaedet.data.transforms import test_transform
from vmaedet.errors import UsageError
from vmaedet.models.detector import ActionDetector
from vmaedet.ops.boxes import make_rois
from vmaedet.structures import ActionDetections


class Predictor:
    """Run a detector on one 16-frame clip with the seed's pre- and post-processing.

    Pre-processing (spec §2): resize short side to 256 (``detector.preprocess.short_side``) (cv2 INTER_LINEAR, int truncation),
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
        """Frames ``[16, H, W, 3]`` uint8 + boxes ``[N, 4]`` original pixels → clip ``[1, 3, 16, Hp, Wp]``, rois ``[N, 5]``, resized (W, H).

        Raises:
            UsageError (a ``ValueError``): frames or boxes of the wrong shape, type or range (see :meth:`__call__`).
        """
        arr = check_frames(frames)
        return self._prepare(arr, check_boxes(boxes, (arr.shape[2], arr.shape[1])))

    def _prepare(self, arr: np.ndarray, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """:meth:`preprocess` on inputs already checked (``check_frames`` / ``check_boxes``)."""
        h, w = arr.shape[1:3]
        clip, size = test_transform(arr, seed_quirk=self.seed_quirk, short_side=self.detector.preprocess.short_side)  # [3, 16, Hp, Wp]
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
            frames: the 16 sampled RGB uint8 frames ``[16, H, W, 3]`` (stride 4 around the keyframe), all of one size.
            boxes: ``[N, 4]`` person boxes x1, y1, x2, y2 in pixels of the original frames: finite, x1 < x2 and
                y1 < y2, overlapping the frame (a box partly outside is clipped as the seed does).
            person_scores: ``[N]`` detector scores in [0, 1] (1 when None).

        Returns:
            :class:`~vmaedet.structures.ActionDetections` with ``action_scores`` = ``raw_scores`` =
            sigmoid(logit) × person score, ``track_ids`` −1 and ``image_wh`` the frames' size.

        Raises:
            UsageError (a ``ValueError``): saying what was received and what is expected.
        """
        arr = check_frames(frames)
        h, w = arr.shape[1:3]
        n = len(check_boxes(boxes, (w, h), values=False))  # shapes first, then values
        scores = check_person_scores(person_scores, n)
        boxes = check_boxes(boxes, (w, h))
        clip, rois, _ = self._prepare(arr, boxes)  # checked once above
        if n == 0:
            return ActionDetections(boxes, scores, np.zeros((0, NUM_CLASSES), np.float32), image_wh=(w, h))
        logits = self.detector(clip.to(self.device), rois.to(self.device)).float().cpu()  # [N, 80]
        action = torch.sigmoid(logits).numpy() * scores[:, None]  # [N, 80] raw = the scores to act on
        return ActionDetections(boxes=boxes, person_scores=scores, action_scores=action, image_wh=(w, h))


def check_frames(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``[16, H, W, 3]`` uint8 frames of one size, or a :class:`UsageError` naming what differs."""
    expected = f"{CLIP_LEN} RGB uint8 images of one size, [16, H, W, 3]"
    if not isinstance(frames, np.ndarray):
        try:
            items = list(frames)
        except TypeError:
            raise UsageError("frames must be a sequence of images", received=type(frames).__name__,
                             expected=expected, fix="pass a list of 16 decoded frames or one [16, H, W, 3] array") from None
        shapes = [np.shape(f) for f in items]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise UsageError(f"the frames differ in size: frame {i} has shape {shape}, frame 0 has {shapes[0]}",
                                 received=f"{len(items)} frames of shapes {sorted(set(shapes))}", expected=expected,
                                 fix="resize the frames to one size (all frames of a clip come from one video)")
    try:
        arr = np.asarray(frames)
    except ValueError as exc:
        raise UsageError("frames cannot be stacked into one array", received=str(exc), expected=expected,
                         fix="pass 16 images of one size and type") from None
    if arr.ndim != 4 or arr.shape[0] != CLIP_LEN or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise UsageError(f"frames must be {expected}",
                         received=f"array of shape {arr.shape} and dtype {arr.dtype}", expected=expected,
                         fix="decode 16 frames as RGB uint8 (PyAV: frame.to_ndarray(format='rgb24'))")
    if min(arr.shape[1:3]) < 1:
        raise UsageError("frames are empty", received=f"shape {arr.shape}", expected=expected,
                         fix="pass decoded frames of at least 1×1 pixels")
    return arr


def check_boxes(boxes: np.ndarray, image_wh: tuple[int, int], values: bool = True) -> np.ndarray:
    """``[N, 4]`` float32 xyxy pixel boxes that are finite, ordered and overlap the ``(W, H)`` frame.

    A box partly outside the frame is kept (the model clips it as the seed does); one wholly outside
    the frame, with zero area or with x2 < x1 is refused, since its scores would mean nothing.
    ``values=False`` checks the shape only.
    """
    w, h = image_wh
    expected = f"[N, 4] boxes x1, y1, x2, y2 in pixels of the {w}×{h} frames, x1 < x2, y1 < y2"
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError("boxes must be numbers", received=f"{type(boxes).__name__}: {exc}", expected=expected,
                         fix="pass a float array of shape [N, 4]") from None
    if b.size == 0:
        return np.zeros((0, 4), np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        hint = ("drop the 5th column (a score?) and pass it as person_scores" if b.ndim == 2 and b.shape[1] == 5
                else "pass boxes[None] for one box" if b.shape == (4,) else "pass one row x1, y1, x2, y2 per person")
        raise UsageError("boxes must have shape [N, 4]", received=f"shape {b.shape}", expected=expected, fix=hint)
    if not values:
        return b.astype(np.float32)
    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"box {i} is not finite (NaN or inf); {int(bad.sum())} of {len(b)} boxes are",
                         received=b[i].tolist(), expected=expected, fix="drop or fix the boxes with NaN/inf")
    bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"box {i} is inverted or has zero area; {int(bad.sum())} of {len(b)} boxes are",
                         received=b[i].tolist(), expected=expected,
                         fix="pass corners (x1, y1, x2, y2) with x1 < x2 and y1 < y2 (xywh boxes: x2 = x + w)")
    bad = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= w) | (b[:, 1] >= h)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"box {i} lies wholly outside the {w}×{h} frame; {int(bad.sum())} of {len(b)} boxes do",
                         received=b[i].tolist(), expected=expected,
                         fix="pass boxes in pixels of these frames (normalised boxes: multiply by W and H)")
    return b.astype(np.float32)


def check_person_scores(person_scores: np.ndarray | None, n: int) -> np.ndarray:
    """``[n]`` float32 detector scores in [0, 1] (ones when None)."""
    if person_scores is None:
        return np.ones(n, np.float32)
    try:
        s = np.asarray(person_scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError("person_scores must be numbers", received=f"{type(person_scores).__name__}: {exc}",
                         expected=f"[{n}] scores in [0, 1]", fix="pass one float per box") from None
    if s.shape != (n,):
        raise UsageError(f"person_scores must have one score per box ({n})", received=f"shape {s.shape}",
                         expected=f"[{n}] scores in [0, 1]", fix="pass one score per box, or None for 1.0")
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"person score {i} is {s[i]}, not a probability; {int(bad.sum())} of {n} are outside [0, 1]",
                         received=s[i], expected="finite scores in [0, 1]",
                         fix="pass the detector's probabilities (apply a sigmoid to logits)")
    return s.astype(np.float32)
