"""Box conventions against hand-computed cases (spec §1 'Boxes entering the model')."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmaedet.ops.boxes import extend_boxes, random_aug, scale_boxes


def test_extend_boxes_hand_case() -> None:
    # bw = 60 - 10 + 1 = 51 → dx = 0.1·51/2 = 2.55; bh = 110 - 20 + 1 = 91 → dy = 0.05·91/2 = 2.275
    out = extend_boxes(np.array([[10.0, 20.0, 60.0, 110.0]]), (200, 150))
    np.testing.assert_allclose(out, [[7.45, 17.725, 62.55, 112.275]], atol=1e-5)


def test_extend_boxes_clamps_to_unpadded_size_and_keeps_count() -> None:
    # A full-frame box (0, 0, W-1, H-1) stays clamped at the border; an empty box is kept.
    boxes = torch.tensor([[0.0, 0.0, 175.0, 127.0], [50.0, 50.0, 50.0, 50.0], [170.0, 120.0, 400.0, 300.0]])
    out = extend_boxes(boxes, (176, 128))
    assert out.shape == (3, 4)
    assert out[0].tolist() == [0.0, 0.0, 175.0, 127.0]
    # empty box: bw = bh = 1 → ±0.05, ±0.025
    torch.testing.assert_close(out[1], torch.tensor([49.95, 49.975, 50.05, 50.025]))
    assert out[2].tolist()[2:] == [175.0, 127.0]


@pytest.mark.parametrize(
    "u, expected",
    [
        # u = 0 → ratios (−0.2, −0.1, −0.1, −0.05): bw = 41, bh = 61
        # x1 = 10 − 8.2 = 1.8; y1 = 20 − 6.1 = 13.9; x2 = 50 − 4.1 = 45.9; y2 = 80 − 3.05 = 76.95
        (0.0, [1.8, 13.9, 45.9, 76.95]),
        # u = 1 → ratios (0.1, 0.05, 0.2, 0.1): x1 = 14.1; y1 = 23.05; x2 = 58.2; y2 = 86.1
        (1.0, [14.1, 23.05, 58.2, 86.1]),
    ],
)
def test_random_aug_extremes(monkeypatch: pytest.MonkeyPatch, u: float, expected: list[float]) -> None:
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.full_like(real_rand(*a, **k), u))
    out = random_aug(torch.tensor([[10.0, 20.0, 50.0, 80.0]]), (320, 240))
    torch.testing.assert_close(out[0], torch.tensor(expected), atol=1e-5, rtol=0)


def test_random_aug_clamps(monkeypatch: pytest.MonkeyPatch) -> None:
    real_rand = torch.rand
    # u = 1 pushes x2/y2 outward past the border; u = 0 pulls x1/y1 below 0.
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    out = random_aug(torch.tensor([[0.0, 0.0, 99.0, 49.0]]), (100, 50))
    assert out[0].tolist() == [0.0, 0.0, 99.0, 49.0]
    # x2' = max(min(x2', W−1), x1'+1): a box collapsed to the right edge keeps x2 ≥ x1 + 1 then clips.
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    out = random_aug(torch.tensor([[98.0, 48.0, 99.0, 49.0]]), (100, 50))
    # x1 = 98 + 2·0.1 = 98.2 → clamp to W−2 = 98; x2 = 99 − 0.2·2 = 98.6 → max(98.6, 99) = 99
    assert out[0].tolist() == pytest.approx([98.0, 48.0, 99.0, 49.0])
    monkeypatch.setattr(torch, "rand", real_rand)
    g = torch.Generator().manual_seed(0)
    r = random_aug(torch.tensor([[10.0, 10.0, 60.0, 40.0]] * 100), (100, 50), generator=g)
    assert (r[:, 2] >= r[:, 0]).all() and (r[:, 3] >= r[:, 1]).all()
    assert r[:, 0::2].max() <= 99 and r[:, 1::2].max() <= 49 and r.min() >= 0


def test_scale_boxes_per_axis() -> None:
    out = scale_boxes(np.array([[64.0, 36.0, 640.0, 360.0]]), (640, 360), (455, 256))
    np.testing.assert_allclose(out, [[45.5, 25.6, 455.0, 256.0]], rtol=1e-6)


def test_bad_box_shape() -> None:
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        extend_boxes(np.zeros((3, 5)), (10, 10))


def test_normalized_to_pixels_seed_convention_and_roundtrip() -> None:
    from vmaedet.data.detections import detections_to_rows
    from vmaedet.ops.boxes import normalized_to_pixels

    # x1·W, y1·H, x2·W − 1, y2·H − 1 (csv2COCO + xywh→xyxy with TO_REMOVE = 1), clamped to the image.
    px = normalized_to_pixels(np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]), (200, 100))
    np.testing.assert_allclose(px, [[20, 20, 99, 59], [0, 0, 199, 99]])
    # The detections writer's (x2 + 1) / W undoes it exactly.
    rows = detections_to_rows(px[:1], np.zeros((1, 80)), "v", 902, (200, 100), (200, 100))
    assert rows[0][2:6] == pytest.approx((0.1, 0.2, 0.5, 0.6), abs=1e-6)
