"""Triton kernel of ``RoIAlignMax``: legacy RoIAlign (7×7, adaptive sampling) fused with the max.

One program per (roi, block of channels).  For each of the pooled² bins it averages the
bilinear samples of its adaptive ``gh × gw`` grid in FP32, and keeps the running max over bins.
The coordinate and boundary rules are those of torchvision's kernel (spec §1.8); the float64
transcription is :func:`vmaedet.ops.roi_align.roi_align_max_reference`.

Kernel argument order is the one TensorRT's AOT plugins use: input pointers, int32 scalars,
output pointer, then constexprs (``spatial_scale`` is a constexpr, so the PTX bakes it in).

This module imports Triton at import time; import it lazily (``vmaedet.ops.roi_align`` does).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Channels per program.  64 keeps interpreter runs light and coalesces nothing anyway (NCHW
#: gathers are strided by h·w); larger blocks did not help on the CPU interpreter.
BLOCK_C = 64


@triton.jit
def roi_align_max_kernel(
    feat_ptr,  # [B, C, H, W] fp16/fp32
    rois_ptr,  # [K, 5] fp32
    B,  # int32
    C,  # int32
    H,  # int32
    W,  # int32
    out_ptr,  # [K, C], dtype of feat
    SPATIAL_SCALE: tl.constexpr,
    POOLED: tl.constexpr,
    SAMPLING_RATIO: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    k = tl.program_id(0)
    cb = tl.program_id(1)
    ch = cb * BLOCK + tl.arange(0, BLOCK)  # [BLOCK]
    cmask = ch < C

    roi = rois_ptr + k.to(tl.int64) * 5
    bidx = tl.load(roi).to(tl.int32)
    bvalid = (bidx >= 0) & (bidx < B)
    bidx = tl.where(bvalid, bidx, 0)
    offset: tl.constexpr = 0.5 if ALIGNED else 0.0
    start_w = tl.load(roi + 1) * SPATIAL_SCALE - offset
    start_h = tl.load(roi + 2) * SPATIAL_SCALE - offset
    roi_w = tl.load(roi + 3) * SPATIAL_SCALE - offset - start_w
    roi_h = tl.load(roi + 4) * SPATIAL_SCALE - offset - start_h
    if not ALIGNED:
        roi_w = tl.maximum(roi_w, 1.0)
        roi_h = tl.maximum(roi_h, 1.0)
    bin_w = roi_w / POOLED
    bin_h = roi_h / POOLED
    if SAMPLING_RATIO > 0:
        grid_h = SAMPLING_RATIO + tl.zeros((), dtype=tl.int32)
        grid_w = SAMPLING_RATIO + tl.zeros((), dtype=tl.int32)
    else:
        grid_h = tl.ceil(roi_h / POOLED).to(tl.int32)
        grid_w = tl.ceil(roi_w / POOLED).to(tl.int32)
    count = tl.maximum(grid_h * grid_w, 1).to(tl.float32)
    Hf = H.to(tl.float32)
    Wf = W.to(tl.float32)

    plane = H.to(tl.int64) * W
    base = feat_ptr + (bidx.to(tl.int64) * C + ch) * plane  # [BLOCK] pointers to channel planes
    best = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
    for ph in range(POOLED):
        for pw in range(POOLED):
            acc = tl.zeros((BLOCK,), dtype=tl.float32)
            for iy in range(0, grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(0, grid_w):
                    x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    inside = (y >= -1.0) & (y <= Hf) & (x >= -1.0) & (x <= Wf)
                    yc = tl.maximum(y, 0.0)
                    xc = tl.maximum(x, 0.0)
                    y_lo = yc.to(tl.int32)
                    x_lo = xc.to(tl.int32)
                    y_edge = y_lo >= H - 1
                    x_edge = x_lo >= W - 1
                    y_lo = tl.where(y_edge, H - 1, y_lo)
                    x_lo = tl.where(x_edge, W - 1, x_lo)
                    y_hi = tl.where(y_edge, y_lo, y_lo + 1)
                    x_hi = tl.where(x_edge, x_lo, x_lo + 1)
                    ly = tl.where(y_edge, 0.0, yc - y_lo.to(tl.float32))
                    lx = tl.where(x_edge, 0.0, xc - x_lo.to(tl.float32))
                    hy = 1.0 - ly
                    hx = 1.0 - lx
                    v00 = tl.load(base + y_lo * W + x_lo, mask=cmask, other=0.0).to(tl.float32)
                    v01 = tl.load(base + y_lo * W + x_hi, mask=cmask, other=0.0).to(tl.float32)
                    v10 = tl.load(base + y_hi * W + x_lo, mask=cmask, other=0.0).to(tl.float32)
                    v11 = tl.load(base + y_hi * W + x_hi, mask=cmask, other=0.0).to(tl.float32)
                    val = hy * hx * v00 + hy * lx * v01 + ly * hx * v10 + ly * lx * v11
                    acc += tl.where(inside, val, 0.0)
            best = tl.maximum(best, acc / count)
    best = tl.where(bvalid, best, 0.0)
    tl.store(out_ptr + k.to(tl.int64) * C + ch, best.to(out_ptr.dtype.element_ty), mask=cmask)


def launch_roi_align_max(
    features: torch.Tensor,
    rois: torch.Tensor,
    out: torch.Tensor,
    *,
    spatial_scale: float,
    pooled_size: int,
    sampling_ratio: int,
    aligned: bool,
    block: int = BLOCK_C,
) -> None:
    """Launch the kernel: ``features [B, C, H, W]`` + ``rois [K, 5]`` fp32 → ``out [K, C]`` (contiguous)."""
    b, c, h, w = features.shape
    k = rois.shape[0]
    block = min(block, triton.next_power_of_2(max(c, 1)))
    grid = (k, triton.cdiv(c, block))
    roi_align_max_kernel[grid](
        features, rois, b, c, h, w, out,
        SPATIAL_SCALE=float(spatial_scale), POOLED=int(pooled_size), SAMPLING_RATIO=int(sampling_ratio),
        ALIGNED=bool(aligned), BLOCK=block,
    )
