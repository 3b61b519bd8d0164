"""The clip ring's CPU preprocessing: a table lookup and a numpy stack, equal bit for bit to the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmaedet.data.transforms import normalize_clip, pad_to_multiple, resize_frames, seed_resize_size
from vmaedet.runtime.buffer import ClipRing
from vmaedet.runtime.sources import Frame


def _torch_path(image: np.ndarray, short_side: int = 256) -> torch.Tensor:
    """The ring's preprocessing written with the torch operators (the Predictor's test path)."""
    h, w = image.shape[:2]
    resized = resize_frames(image[None], seed_resize_size(w, h, short_side=short_side))  # [1, h', w', 3]
    return pad_to_multiple(normalize_clip(torch.from_numpy(resized)))[:, 0]  # [3, Hp, Wp]


@pytest.mark.parametrize("h, w", [(272, 640), (121, 163), (300, 200), (256, 455), (33, 17)])
def test_cpu_preprocess_equals_the_torch_path_bit_for_bit(h: int, w: int) -> None:
    rng = np.random.default_rng(h * w)
    ring = ClipRing(capacity=8)
    for _ in range(3):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # [H, W, 3]
        image[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]  # the ends of the table
        got = ring.preprocess(image)  # [3, Hp, Wp]
        ref = _torch_path(image)
        assert got.dtype == torch.float32 and got.shape == ref.shape and got.is_contiguous()
        assert torch.equal(got, ref)


def test_cpu_preprocess_honours_a_smaller_short_side() -> None:
    image = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    got = ClipRing(capacity=4, short_side=64).preprocess(image)
    assert got.shape == (3, 64, 128)  # 113 × 64 padded to 128 × 64
    assert torch.equal(got, _torch_path(image, short_side=64))


def test_cpu_clip_is_the_stack_of_its_frames_and_owns_its_memory() -> None:
    rng = np.random.default_rng(2)
    ring = ClipRing(capacity=32)
    frames = [Frame(i, i / 25, rng.integers(0, 256, (40, 70, 3), dtype=np.uint8), 0.0) for i in range(20)]
    for f in frames:
        ring.push(f)
    indices = np.array([0, 0, 3, 5, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 25])  # 25: clamped to the last frame
    clip, picks = ring.clip(np.zeros(16), indices)  # [1, 3, 16, Hp, Wp]
    assert picks == [0, 0, 3, 5, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 19]
    ref = torch.stack([_torch_path(frames[i].image) for i in picks], dim=1)[None]  # [1, 3, 16, Hp, Wp]
    assert clip.is_contiguous() and torch.equal(clip, ref)
    clip.zero_()  # the engine's input is a copy: the ring's frames stay as they were
    again, _ = ring.clip(np.zeros(16), indices)
    assert torch.equal(again, ref)
