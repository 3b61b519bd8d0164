"""The seed's spatial transforms (spec §2).

Test path (shared by the Predictor, the AVA test dataset, export geometry and the stream runtime):
resize short side to 256 (cv2 INTER_LINEAR, int truncation, no max size) → float → normalise
(RGB, Detectron mean reversed, std 57.375) → [C, T, H, W] → zero-pad bottom/right to multiples of 16.

Train path (:func:`train_transform`, used by :class:`vmaedet.data.ava.AVADataset`): the same resize,
then RandomClip (crop, default 224) → whole-clip HSV jitter → horizontal flip p = 0.5 → normalise.
"""

from __future__ import annotations

import random
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vmaedet.constants import PATCH_SIZE, SHORT_SIDE
from vmaedet.ops.boxes import scale_boxes

#: RGB mean and std of the seed (Detectron's BGR mean reversed; not ImageNet's).
MEAN_RGB: tuple[float, float, float] = (122.7717, 115.9465, 102.9801)
STD_RGB: tuple[float, float, float] = (57.375, 57.375, 57.375)
SIZE_DIVISIBLE = PATCH_SIZE  # clip sides are padded to whole patches


def seed_resize_size(width: int, height: int, short_side: int = SHORT_SIDE, seed_quirk: bool = True) -> tuple[int, int]:
    """Output (width, height) of the seed's ``Resize(256, 464)`` for a frame of ``width × height``.

    Landscape (or square): oh = short, ow = int(short·W/H); portrait: ow = short, oh = int(short·H/W).
    With ``seed_quirk`` (the default, for parity) a frame whose short side already equals
    ``short_side`` comes out with transposed dimensions, as the seed's (h, w)/(w, h) swap does.

    >>> seed_resize_size(640, 360)
    (455, 256)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive; received {width}×{height}")
    if seed_quirk and ((width <= height and width == short_side) or (height <= width and height == short_side)):
        return height, width  # the seed returns (h, w) where (w, h) is expected
    if width < height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def padded_size(width: int, height: int, divisible: int = SIZE_DIVISIBLE) -> tuple[int, int]:
    """(W, H) rounded up to multiples of ``divisible`` (the collator's padding)."""
    return -(-width // divisible) * divisible, -(-height // divisible) * divisible


def input_geometry(source_wh: tuple[int, int], seed_quirk: bool = True,
                   short_side: int = SHORT_SIDE) -> tuple[tuple[int, int], tuple[int, int]]:
    """Resized (W, H) and padded (W, H) the model sees for frames of ``source_wh``.

    >>> input_geometry((640, 360))
    ((455, 256), (464, 256))
    """
    rw, rh = seed_resize_size(*source_wh, short_side=short_side, seed_quirk=seed_quirk)
    return (rw, rh), padded_size(rw, rh)


def resize_frames(frames: Sequence[np.ndarray] | np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """cv2 INTER_LINEAR per frame: ``[T, H, W, 3]`` uint8 → ``[T, h, w, 3]`` uint8."""
    out = [cv2.resize(np.ascontiguousarray(f), size_wh, interpolation=cv2.INTER_LINEAR) for f in frames]
    return np.stack(out)


#: device → (mean [3], std [3]) float32 tensors of :func:`normalize_clip` (built once per device).
_NORM_CACHE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _norm_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device not in _NORM_CACHE:
        _NORM_CACHE[device] = (torch.tensor(MEAN_RGB, dtype=torch.float32, device=device),  # [3]
                               torch.tensor(STD_RGB, dtype=torch.float32, device=device))  # [3]
    return _NORM_CACHE[device]


def normalize_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` RGB (uint8 or float 0..255) → ``[3, T, H, W]`` float32, (x − mean)/std."""
    x = torch.as_tensor(frames).float()  # [T, H, W, 3]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] RGB; received shape {tuple(x.shape)}")
    mean, std = _norm_constants(x.device)  # [3], [3]
    x = (x - mean) / std
    return x.permute(3, 0, 1, 2).contiguous()  # [3, T, H, W]


def pad_to_multiple(clip: torch.Tensor, divisible: int = SIZE_DIVISIBLE) -> torch.Tensor:
    """Zero-pad the last two dims (H, W) at the bottom/right to multiples of ``divisible``."""
    h, w = clip.shape[-2:]
    ph = -(-h // divisible) * divisible - h
    pw = -(-w // divisible) * divisible - w
    if ph == 0 and pw == 0:
        return clip
    return F.pad(clip, (0, pw, 0, ph))


def resize_clip(frames: Sequence[np.ndarray] | np.ndarray, short_side: int = SHORT_SIDE,
                seed_quirk: bool = True) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """The seed's resize of one clip: ``[T, H, W, 3]`` uint8 → (``[T, h', w', 3]``, source (W, H), resized (w', h'))."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be T RGB images [H, W, 3] of one size; received array of shape {arr.shape}")
    h, w = arr.shape[1:3]
    size = seed_resize_size(w, h, short_side=short_side, seed_quirk=seed_quirk)
    return resize_frames(arr, size), (w, h), size


def test_transform(frames: Sequence[np.ndarray] | np.ndarray, seed_quirk: bool = True,
                   short_side: int = SHORT_SIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """The seed's test preprocessing of one clip.

    Args:
        frames: T RGB uint8 frames ``[H, W, 3]`` of one size.
        short_side: target short side (the seed: 256; models trained smaller record theirs).

    Returns:
        (``[3, T, Hp, Wp]`` normalised, zero-padded clip; resized unpadded (W, H)).
    """
    resized, _, size = resize_clip(frames, short_side, seed_quirk)  # [T, h', w', 3]
    return pad_to_multiple(normalize_clip(resized)), size
test_transform.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# --------------------------------------------------------------------------- train path (spec §2)
# Resize (seed rule) → RandomClip → ColorJitter (HSV, whole clip) → Flip p=0.5 → ToTensor → Normalize.
# Randomness comes from one ``random.Random`` per sample (the seed uses Python ``random``), drawn in
# this order: crop x, crop y, hue, saturation, value, flip.


def resize_boxes(boxes: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """``BoxList.resize``: scale x by dst_W/src_W and y by dst_H/src_H (``[N, 4]`` xyxy float32)."""
    return scale_boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), src_wh, dst_wh)


def random_crop(frames: np.ndarray, boxes: np.ndarray, crop: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """The seed's ``RandomClip``: x1 = int(r·(W − crop)), y1 = int(r·(H − crop)); boxes shift, clamp to [0, crop].

    Boxes that fall outside the crop stay (degenerate) with their labels, as in the seed.
    """
    h, w = frames.shape[1:3]
    if w < crop or h < crop:
        raise ValueError(f"crop {crop}×{crop} does not fit in frames of {w}×{h}; lower crop_size or raise short_side")
    x1 = int(rng.random() * (w - crop))
    y1 = int(rng.random() * (h - crop))
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - np.array([x1, y1, x1, y1], np.float32)
    return frames[:, y1:y1 + crop, x1:x1 + crop], np.clip(out, 0, crop)


def hsv_shift(frames: np.ndarray, hue: int, sat: int, val: int) -> np.ndarray:
    """OpenCV RGB→HSV (uint8, H in 0..179), H += hue mod 180, S/V += sat/val clipped to 0..255, → RGB."""
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        hsv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV).astype(np.int16)  # [H, W, 3]
        hsv[..., 0] = (hsv[..., 0] + hue) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + sat, 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + val, 0, 255)
        out[i] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return out


def color_jitter(frames: np.ndarray, rng: random.Random, hue: int = 10, sat: int = 26, val: int = 26) -> np.ndarray:
    """Whole-clip HSV jitter with integer shifts randint[−hue, hue], [−sat, sat], [−val, val]."""
    return hsv_shift(frames, rng.randint(-hue, hue), rng.randint(-sat, sat), rng.randint(-val, val))


def hflip(frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip; x1' = W − x2 − 1, x2' = W − x1 − 1 (the seed's "+1" convention)."""
    w = frames.shape[2]
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    flipped = np.stack([w - b[:, 2] - 1, b[:, 1], w - b[:, 0] - 1, b[:, 3]], axis=1).astype(np.float32)
    return np.ascontiguousarray(frames[:, :, ::-1]), flipped


def train_transform(
    frames: np.ndarray,
    boxes: np.ndarray,
    rng: random.Random,
    crop_size: int = 224,
    short_side: int = SHORT_SIDE,
    seed_quirk: bool = True,
) -> tuple[torch.Tensor, np.ndarray, tuple[int, int]]:
    """The seed's training pipeline for one clip.

    Args:
        frames: ``[T, H, W, 3]`` RGB uint8.
        boxes: ``[N, 4]`` xyxy pixels of ``frames``.
        rng: the sample's random generator.

    Returns:
        (``[3, T, crop, crop]`` normalised clip (unpadded), ``[N, 4]`` float32 boxes in clip pixels, (w, h)).
    """
    arr, src, size = resize_clip(frames, short_side, seed_quirk)  # [T, h', w', 3]
    return augment(arr, resize_boxes(boxes, src, size), rng, crop_size)


def augment(resized: np.ndarray, boxes: np.ndarray, rng: random.Random,
            crop_size: int = 224) -> tuple[torch.Tensor, np.ndarray, tuple[int, int]]:
    """The seed's training augmentation after the resize: crop → HSV jitter → flip → normalise.

    Random draws in this order: crop x, crop y (only when cropping), hue, sat, val, flip.

    Args:
        resized: ``[T, h, w, 3]`` RGB uint8 frames already resized.
        boxes: ``[N, 4]`` pixels of ``resized``.
        crop_size: the seed's square crop (224); 0 keeps the whole resized frame (no crop, so no
            person falls outside the clip and training sees the test geometry).

    Returns:
        (``[3, T, h', w']`` normalised clip, ``[N, 4]`` boxes in clip pixels, (w', h')).
    """
    arr, b = (random_crop(resized, boxes, crop_size, rng) if crop_size
              else (resized, np.asarray(boxes, np.float32).reshape(-1, 4)))  # [T, h', w', 3]
    arr = color_jitter(arr, rng)
    if rng.random() < 0.5:
        arr, b = hflip(arr, b)
    return normalize_clip(arr), b, (arr.shape[2], arr.shape[1])
