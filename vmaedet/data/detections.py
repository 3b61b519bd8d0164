"""Model outputs → AVA detection CSV, exactly as the seed's ``prepare_for_ava_detection`` + ``write_csv``.

Per box (un-extended, in pixels of the resized unpadded clip): resize back to the original frame
with per-axis ratios W/w and H/h, x2 += 1 and y2 += 1, divide x by W and y by H, clip to [0, 1]
(float32, as the seed's tensors); one row per class (all 80, ``action_thresh = 0``), action id =
column + 1. The CSV has 4-digit zero-padded timestamps and 5-decimal coordinates and scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from vmaedet.errors import DataError
from vmaedet.data.annotations import AvaRows, write_ava_csv

#: One detection row: (video_id, timestamp, x1, y1, x2, y2, action_id, score).
Row = tuple[str, int, float, float, float, float, int, float]


def detections_to_rows(
    boxes_xyxy: np.ndarray | torch.Tensor,
    scores: np.ndarray | torch.Tensor,
    video_id: str,
    timestamp: int,
    resized_wh: tuple[int, int],
    orig_wh: tuple[int, int],
) -> list[Row]:
    """AVA rows of one keyframe (the seed's ``prepare_for_ava_detection``).

    Args:
        boxes_xyxy: ``[N, 4]`` un-extended boxes in pixels of the resized (unpadded) clip.
        scores: ``[N, 80]`` final scores (sigmoid × person score).
        resized_wh: (w, h) of the resized clip; orig_wh: (W, H) of the source frames.

    Returns:
        N·80 rows ordered box-major, then action id 1..80.
    """
    b = torch.as_tensor(boxes_xyxy).detach().cpu().float().reshape(-1, 4)  # [N, 4]
    s = torch.as_tensor(scores).detach().cpu().float()  # [N, 80]
    if s.ndim != 2 or s.shape[0] != b.shape[0]:
        raise DataError("scores must be [N, num_classes] with one row per box",
                        received=f"boxes {tuple(b.shape)}, scores {tuple(s.shape)}",
                        expected="boxes [N, 4] and scores [N, 80]", fix="pass the per-box class scores")
    (w, h), (ow, oh) = resized_wh, orig_wh
    if min(w, h, ow, oh) <= 0:
        raise DataError("image sizes must be positive", received=f"resized {resized_wh}, original {orig_wh}",
                        expected="(w, h) > 0", fix="pass the sample's size and orig_size")
    rx, ry = float(ow) / float(w), float(oh) / float(h)
    b = b * torch.tensor([rx, ry, rx, ry], dtype=torch.float32)  # BoxList.resize
    b[:, 2:] += 1
    b[:, 0::2] /= ow
    b[:, 1::2] /= oh
    b = b.clamp(0.0, 1.0)
    rows: list[Row] = []
    for box, sc in zip(b.tolist(), s.tolist()):
        rows.extend((video_id, int(timestamp), *box, c + 1, score) for c, score in enumerate(sc))
    return rows


def rows_to_ava(rows: Sequence[Row]) -> AvaRows:
    """Detection rows as :class:`vmaedet.data.annotations.AvaRows` (with scores)."""
    return AvaRows.from_columns(
        [r[0] for r in rows], [r[1] for r in rows], [r[2:6] for r in rows], [r[6] for r in rows],
        scores=[r[7] for r in rows],
    )


def write_detections_csv(path: str | Path, rows: Iterable[Row]) -> Path:
    """Write rows as ``movie,TTTT,x1,y1,x2,y2,action_id,score`` (4-digit timestamp, 5 decimals)."""
    return write_ava_csv(path, rows_to_ava(list(rows)))
