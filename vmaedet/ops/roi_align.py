"""RoIAlign + spatial max, the seed's head pooling (spec §1.8–9).

``roi_align_max`` is the torch composition the model uses: torchvision's legacy RoIAlign
(aligned=False, adaptive sampling) on the time-averaged map, then a max over the 7×7 grid.
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

POOLED_SIZE = 7
SPATIAL_SCALE = 1.0 / 16.0


def roi_align_max(
    features: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float = SPATIAL_SCALE,
    pooled_size: int = POOLED_SIZE,
    sampling_ratio: int = 0,
) -> torch.Tensor:
    """Max over the pooled_size² RoIAlign grid.

    Args:
        features: ``[B, C, h, w]`` time-averaged feature map.
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2) in input pixels, same dtype as features.

    Returns:
        ``[K, C]``.
    """
    pooled = roi_align(
        features, rois.to(features.dtype), (pooled_size, pooled_size),
        spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=False,
    )  # [K, C, 7, 7]
    return pooled.amax(dim=(2, 3))  # [K, C]
