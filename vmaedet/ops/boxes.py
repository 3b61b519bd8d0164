"""Box conventions of the seed (AlphAction BoxList, "TO_REMOVE = 1"): width = x2 − x1 + 1."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(boxes: ArrayLike) -> tuple[torch.Tensor, bool]:
    is_np = isinstance(boxes, np.ndarray)
    t = torch.as_tensor(boxes)
    if t.ndim != 2 or t.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4] (x1, y1, x2, y2); received shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t, is_np


def extend_boxes(
    boxes_xyxy: ArrayLike,
    image_wh: tuple[int, int],
    ext: tuple[float, float] = (0.1, 0.05),
) -> ArrayLike:
    """The seed's test-time box extension and clamp (``BoxList.extend`` + ``clip_to_image``).

    bw = x2 − x1 + 1, bh = y2 − y1 + 1; x1 −= ext_x·bw/2, x2 += ext_x·bw/2, y likewise with ext_y;
    then clamp x to [0, W − 1] and y to [0, H − 1].  No box is removed (the seed ignores the
    result of the empty-box filter).

    Args:
        boxes_xyxy: ``[N, 4]`` pixels of the resized, unpadded image.
        image_wh: (W, H) of that image.
        ext: (horizontal, vertical) extension ratios.

    Returns:
        ``[N, 4]`` of the same type (numpy or torch) as the input.
    """
    b, is_np = _as_tensor(boxes_xyxy)
    w, h = image_wh
    bw = b[:, 2] - b[:, 0] + 1
    bh = b[:, 3] - b[:, 1] + 1
    dx = ext[0] * bw / 2
    dy = ext[1] * bh / 2
    out = torch.stack((b[:, 0] - dx, b[:, 1] - dy, b[:, 2] + dx, b[:, 3] + dy), dim=1)
    out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
    return out.numpy() if is_np else out


def random_aug(
    boxes_xyxy: torch.Tensor,
    image_wh: tuple[int, int],
    jitter: tuple[float, float, float, float] = (0.2, 0.1, 0.1, 0.05),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The seed's training box jitter (``BoxList.random_aug(0.2, 0.1, 0.1, 0.05)``).

    U(a, b) = rand·(b − a) + a, one column per coordinate (drawn as one ``[N, 4]`` rand):
    x1' = x1 + bw·U(−j0, j2); y1' = y1 + bh·U(−j1, j3); x2' = x2 + bw·U(−j2, j0);
    y2' = y2 + bh·U(−j3, j1), with bw, bh the +1 sizes.  Clamp x1' to [0, W − 2], y1' to [0, H − 2];
    x2' = max(min(x2', W − 1), x1' + 1) and likewise y2'; finally clip to the image (no removal).

    Args:
        boxes_xyxy: ``[N, 4]`` pixels.
        image_wh: (W, H).
        jitter: (x_out, y_out, x_in, y_in) fractions, the seed's (0.2, 0.1, 0.1, 0.05).
    """
    b, _ = _as_tensor(boxes_xyxy)
    w, h = image_wh
    jx_out, jy_out, jx_in, jy_in = jitter
    bw = b[:, 2] - b[:, 0] + 1
    bh = b[:, 3] - b[:, 1] + 1
    u = torch.rand((b.shape[0], 4), generator=generator, dtype=b.dtype, device=b.device)  # [N, 4]
    lo = torch.tensor([-jx_out, -jy_out, -jx_in, -jy_in], dtype=b.dtype, device=b.device)
    hi = torch.tensor([jx_in, jy_in, jx_out, jy_out], dtype=b.dtype, device=b.device)
    r = u * (hi - lo) + lo  # [N, 4]
    x1 = (b[:, 0] + bw * r[:, 0]).clamp(0, w - 2)
    y1 = (b[:, 1] + bh * r[:, 1]).clamp(0, h - 2)
    x2 = torch.maximum((b[:, 2] + bw * r[:, 2]).clamp(max=w - 1), x1 + 1)
    y2 = torch.maximum((b[:, 3] + bh * r[:, 3]).clamp(max=h - 1), y1 + 1)
    out = torch.stack((x1, y1, x2, y2), dim=1)
    out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
    return out


def scale_boxes(boxes_xyxy: ArrayLike, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> ArrayLike:
    """``BoxList.resize``: scale x by dst_w/src_w and y by dst_h/src_h (per axis)."""
    b, is_np = _as_tensor(boxes_xyxy)
    sx = dst_wh[0] / src_wh[0]
    sy = dst_wh[1] / src_wh[1]
    out = b * torch.tensor([sx, sy, sx, sy], dtype=b.dtype)
    return out.numpy() if is_np else out


def make_rois(
    boxes_xyxy: ArrayLike,
    image_wh: tuple[int, int],
    batch_index: int = 0,
    src_wh: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Person boxes → the model's test rois, as the seed builds them.

    Args:
        boxes_xyxy: ``[N, 4]`` un-extended boxes, in pixels of ``src_wh`` when given (they are then
            scaled per axis to ``image_wh``), else already in pixels of the resized image.
        image_wh: (W, H) of the resized, unpadded image the rois refer to.
        batch_index: the clip's index in the batch.

    Returns:
        ``[N, 5]`` float32 (batch index, x1, y1, x2, y2), extended by (0.1, 0.05) and clamped.
    """
    b, _ = _as_tensor(boxes_xyxy)
    if src_wh is not None:
        b = scale_boxes(b, src_wh, image_wh)  # [N, 4] resized pixels
    ext = extend_boxes(b.float(), image_wh)  # [N, 4]
    return torch.cat((torch.full((ext.shape[0], 1), float(batch_index)), ext), dim=1)  # [N, 5]


def normalized_to_pixels(boxes_xyxy: ArrayLike, image_wh: tuple[int, int]) -> ArrayLike:
    """The seed's AVA CSV box → pixels (csv2COCO then ``BoxList`` xywh → xyxy, TO_REMOVE = 1).

    x1·W, y1·H, x2·W − 1, y2·H − 1, clamped to [0, W − 1] × [0, H − 1] (``clip_to_image``).  The
    inverse of the detections writer's ``(x2 + 1) / W`` (``vmaedet.data.detections``).
    """
    b, is_np = _as_tensor(boxes_xyxy)
    w, h = image_wh
    out = b.double() * torch.tensor([w, h, w, h], dtype=torch.float64)
    out[:, 2:] -= 1
    out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
    out = out.to(b.dtype)
    return out.numpy() if is_np else out
