"""Predictor preprocessing and post-processing against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmaedet import Predictor
from vmaedet.data.transforms import MEAN_RGB, input_geometry, seed_resize_size, test_transform
from vmaedet.models import create_detector


@pytest.mark.parametrize(
    "wh, resized, padded",
    [((640, 360), (455, 256), (464, 256)), ((1920, 1080), (455, 256), (464, 256)),
     ((360, 640), (256, 455), (256, 464)), ((320, 240), (341, 256), (352, 256)), ((300, 300), (256, 256), (256, 256))],
)
def test_geometry(wh, resized, padded) -> None:
    assert input_geometry(wh) == (resized, padded)


def test_seed_quirk_for_short_side_256() -> None:
    assert seed_resize_size(455, 256) == (256, 455)  # the seed's transposed output
    assert seed_resize_size(455, 256, seed_quirk=False) == (455, 256)


def test_predictor_preprocess_and_scores() -> None:
    torch.manual_seed(0)
    det = create_detector("vit_micro").eval()
    pred = Predictor(det)
    frames = np.full((16, 360, 640, 3), 200, np.uint8)
    boxes = np.array([[64.0, 36.0, 320.0, 324.0]], np.float32)
    clip, rois, size = pred.preprocess(frames, boxes)
    assert clip.shape == (1, 3, 16, 256, 464) and size == (455, 256)
    # Constant frames stay constant through INTER_LINEAR; padding is zero after normalisation.
    assert clip[0, 0, 0, 0, 0].item() == pytest.approx((200 - MEAN_RGB[0]) / 57.375, abs=1e-6)
    assert clip[0, :, :, :, 455:].abs().max() == 0
    # Box: scaled by 455/640 and 256/360 → (45.5, 25.6, 227.5, 230.4); then extended:
    # bw = 183 → dx = 9.15; bh = 205.8 → dy = 5.145.
    np.testing.assert_allclose(rois.numpy(), [[0, 36.35, 20.455, 236.65, 235.545]], atol=1e-4)
    out = pred(frames, boxes, np.array([0.5]))
    with torch.no_grad():
        ref = torch.sigmoid(det(clip, rois)).numpy() * 0.5
    np.testing.assert_allclose(out.action_scores, ref, atol=1e-6)
    np.testing.assert_array_equal(out.boxes, boxes)  # un-extended boxes are reported


def test_predictor_empty_and_bad_input() -> None:
    pred = Predictor(create_detector("vit_micro"))
    out = pred(np.zeros((16, 64, 64, 3), np.uint8), np.zeros((0, 4)))
    assert out.action_scores.shape == (0, 80)
    with pytest.raises(ValueError, match=r"\[16, H, W, 3\]"):
        pred(np.zeros((8, 64, 64, 3), np.uint8), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="one score per box"):
        pred(np.zeros((16, 64, 64, 3), np.uint8), np.zeros((2, 4)), np.ones(3))


def test_test_transform_normalises_rgb_order() -> None:
    frames = np.zeros((16, 32, 32, 3), np.uint8)
    frames[..., 0] = 10
    frames[..., 2] = 250
    clip, _ = test_transform(frames)
    assert clip.shape == (3, 16, 256, 256)
    assert clip[0].mean().item() == pytest.approx((10 - 122.7717) / 57.375, abs=1e-5)
    assert clip[2].mean().item() == pytest.approx((250 - 102.9801) / 57.375, abs=1e-5)
