"""RoIAlign + spatial max, the seed's head pooling (spec §1.8–9).

Three implementations of one op, ``RoIAlignMax(features [B, C, h, w], rois [K, 5]) -> [K, C]``
(the time-averaged map; the temporal mean stays outside the op), which must agree:

* ``roi_align_max``: the torch composition the model uses — torchvision's legacy RoIAlign
  (aligned=False, adaptive sampling) on the time-averaged map, then a max over the 7×7 grid;
* ``roi_align_max_reference``: a float64 reference transcribed off torchvision's CPU kernel
  (the bilinear boundary rules of spec §1.8), vectorised as separable interpolation matrices;
* ``roi_align_max_triton``: the Triton kernel (``vmaedet.ops.triton_roi_align``) that the
  TensorRT plugin launches; FP32 accumulation, output in the features' dtype.
"""

from __future__ import annotations

import math
import os

import torch
from torchvision.ops import roi_align

from vmaedet.errors import BackendUnavailable, VmaedetError

POOLED_SIZE = 7
SPATIAL_SCALE = 1.0 / 16.0


class RoIAlignInputError(VmaedetError, ValueError):
    """Bad features/rois given to one of the RoIAlign+max implementations."""


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


# -- input checks shared by the reference and the Triton wrapper ------------------------------
def check_roi_inputs(features: torch.Tensor, rois: torch.Tensor, pooled_size: int, sampling_ratio: int) -> None:
    """Raise :class:`RoIAlignInputError` unless features are ``[B, C, h, w]`` and rois ``[K, 5]`` valid."""
    if features.ndim != 4 or not features.is_floating_point():
        raise RoIAlignInputError(
            "features must be a floating-point [B, C, h, w] map (the time-averaged backbone output)",
            received=f"{tuple(features.shape)} {features.dtype}", expected="[B, C, h, w] float16/float32",
            fix="average over time first: fmap.mean(dim=2) on [B, C, T, h, w]",
        )
    if rois.ndim != 2 or rois.shape[1] != 5 or not rois.is_floating_point():
        raise RoIAlignInputError(
            "rois must be a floating-point [K, 5] tensor (batch index, x1, y1, x2, y2)",
            received=f"{tuple(rois.shape)} {rois.dtype}", expected="[K, 5] float32",
            fix="prepend the batch index column: torch.cat([idx[:, None], boxes], dim=1)",
        )
    if pooled_size < 1 or sampling_ratio < 0:
        raise RoIAlignInputError(
            "pooled_size must be ≥ 1 and sampling_ratio ≥ 0",
            received=f"pooled_size={pooled_size}, sampling_ratio={sampling_ratio}",
            expected="pooled_size=7, sampling_ratio=0 (adaptive) for the seed",
        )
    if rois.shape[0]:
        idx = rois[:, 0]
        bad = (idx != idx.round()) | (idx < 0) | (idx >= features.shape[0])
        if bool(bad.any()):
            raise RoIAlignInputError(
                "roi batch indices must be integers within the batch",
                received=idx[bad][:5].tolist(), expected=f"integers in [0, {features.shape[0] - 1}]",
                fix="column 0 of rois is the index of the clip in the batch",
            )


# -- float64 reference --------------------------------------------------------------------------
def _interp_matrix(start: float, bin_size: float, grid: int, pooled: int, size: int) -> torch.Tensor:
    """``[pooled·grid, size]`` float64 matrix whose row i holds the bilinear taps of sample i.

    Sample coordinate (torchvision's kernel): ``start + p·bin + (i + 0.5)·bin/grid``; a sample
    outside ``[-1, size]`` contributes 0; negatives clamp to 0; ``⌊c⌋ ≥ size−1`` collapses both
    taps onto ``size−1``.
    """
    p = torch.arange(pooled, dtype=torch.float64).repeat_interleave(grid)  # [P·G]
    i = torch.arange(grid, dtype=torch.float64).repeat(pooled)  # [P·G]
    coord = start + p * bin_size + (i + 0.5) * bin_size / grid  # [P·G]
    valid = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    coord = torch.where(edge, low.double(), coord)
    frac = coord - low.double()  # [P·G]
    mat = torch.zeros(pooled * grid, size, dtype=torch.float64)
    rows = torch.arange(pooled * grid)
    mat.index_put_((rows, low), (1.0 - frac) * valid, accumulate=True)
    mat.index_put_((rows, high), frac * valid, accumulate=True)
    return mat


def roi_align_max_reference(
    features: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float = SPATIAL_SCALE,
    pooled_size: int = POOLED_SIZE,
    sampling_ratio: int = 0,
    aligned: bool = False,
) -> torch.Tensor:
    """Float64 RoIAlign + max over the grid, one roi at a time (CPU).

    Args:
        features: ``[B, C, h, w]`` any float dtype (converted to float64).
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2) in input pixels.
        spatial_scale: feature-map cells per input pixel (1/16 for the seed).
        pooled_size: the RoIAlign grid is ``pooled_size × pooled_size`` bins.
        sampling_ratio: samples per bin side; 0 = adaptive ``ceil(roi_size / pooled_size)``.
        aligned: False = legacy coordinates (the seed); True = half-pixel shift, no 1-cell minimum.

    Returns:
        ``[K, C]`` float64 on the CPU.
    """
    check_roi_inputs(features, rois, pooled_size, sampling_ratio)
    fmap = features.detach().to("cpu", torch.float64)  # [B, C, h, w]
    boxes = rois.detach().to("cpu", torch.float64)  # [K, 5]
    _, c, h, w = fmap.shape
    out = torch.zeros(boxes.shape[0], c, dtype=torch.float64)  # [K, C]
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / pooled_size, rh / pooled_size
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / pooled_size)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pooled_size)
        if gh <= 0 or gw <= 0:  # empty sampling grid (aligned, inverted box): every bin is 0
            continue
        ay = _interp_matrix(sy, bh, gh, pooled_size, h)  # [7·gh, h]
        ax = _interp_matrix(sx, bw, gw, pooled_size, w)  # [7·gw, w]
        samples = ay @ fmap[int(b)] @ ax.T  # [C, 7·gh, 7·gw]
        bins = samples.reshape(c, pooled_size, gh, pooled_size, gw).mean(dim=(2, 4))  # [C, 7, 7]
        out[k] = bins.amax(dim=(1, 2))  # [C]
    return out


# -- Triton kernel wrapper ------------------------------------------------------------------------
def triton_interpreting() -> bool:
    """True when Triton runs in interpreter mode (``TRITON_INTERPRET=1``, CPU tensors allowed)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


def roi_align_max_triton(
    features: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float = SPATIAL_SCALE,
    pooled_size: int = POOLED_SIZE,
    sampling_ratio: int = 0,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign + max with the Triton kernel (what the TensorRT plugin runs).

    Runs on CUDA tensors, or on CPU tensors when ``TRITON_INTERPRET=1`` was set before Triton
    was imported.  Features FP16 or FP32, rois FP32; accumulation in FP32; output ``[K, C]`` in
    the features' dtype on the features' device.  ``features`` is indexed ``[B, C, h, w]``; the
    kernel reads it channels-last (no copy when it is ``torch.channels_last`` in memory).
    """
    check_roi_inputs(features, rois, pooled_size, sampling_ratio)
    if features.device.type != "cuda" and not triton_interpreting():
        raise BackendUnavailable(
            "the Triton RoIAlign kernel needs CUDA tensors (or Triton's interpreter for CPU tensors)",
            received=f"features on {features.device}", expected="features on a CUDA device",
            fix="move the tensors to CUDA, or set TRITON_INTERPRET=1 before importing triton to check on the CPU",
        )
    if features.dtype not in (torch.float16, torch.float32):
        raise RoIAlignInputError(
            "the Triton kernel takes FP16 or FP32 features", received=features.dtype,
            expected="torch.float16 or torch.float32", fix="features.float()",
        )
    try:
        from vmaedet.ops.triton_roi_align import launch_roi_align_max
    except ImportError as exc:
        raise BackendUnavailable(
            f"Triton is not importable ({exc})", fix="pip install triton (it ships with CUDA builds of torch)",
        ) from exc
    # The kernel reads channels-last [B, h, w, C]: free for a torch.channels_last map, one copy otherwise.
    feats = features.permute(0, 2, 3, 1).contiguous()  # [B, h, w, C]
    boxes = rois.to(device=features.device, dtype=torch.float32).contiguous()  # [K, 5]
    out = torch.empty(boxes.shape[0], feats.shape[3], dtype=feats.dtype, device=feats.device)  # [K, C]
    if boxes.shape[0] == 0 or feats.shape[3] == 0:
        return out
    launch_roi_align_max(feats, boxes, out, spatial_scale=spatial_scale, pooled_size=pooled_size,
                         sampling_ratio=sampling_ratio, aligned=aligned)
    return out
