"""Train transforms (spec §2) against hand-computed sizes, boxes and colours."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vmaedet.data.transforms import (MEAN_RGB, STD_RGB, hflip, hsv_shift, input_geometry, random_crop,
                                     resize_boxes, seed_resize_size, train_transform)


class FixedRandom(random.Random):
    """random() returns the given values in turn; randint returns the given ints in turn."""

    def __init__(self, floats: list[float], ints: list[int]) -> None:
        super().__init__(0)
        self.floats, self.ints = list(floats), list(ints)

    def random(self) -> float:
        return self.floats.pop(0)

    def randint(self, a: int, b: int) -> int:
        v = self.ints.pop(0)
        assert a <= v <= b
        return v


def test_resize_and_padding_hand_values():
    assert seed_resize_size(640, 360) == (455, 256)  # int(256·640/360) = int(455.1) = 455
    assert input_geometry((640, 360)) == ((455, 256), (464, 256))
    assert seed_resize_size(360, 640) == (256, 455)
    assert seed_resize_size(456, 256) == (256, 456)  # the seed's (h, w) swap at short side 256
    assert seed_resize_size(456, 256, seed_quirk=False) == (456, 256)
    assert seed_resize_size(320, 240, short_side=128) == (170, 128)


def test_box_scaling_per_axis():
    out = resize_boxes(np.array([[64.0, 36.0, 640.0, 360.0]]), (640, 360), (455, 256))
    np.testing.assert_allclose(out, [[64 * 455 / 640, 36 * 256 / 360, 455, 256]], rtol=1e-6)


def test_crop_shift_and_clamp_keeps_degenerate():
    frames = np.zeros((2, 256, 455, 3), np.uint8)
    boxes = np.array([[100.0, 50.0, 300.0, 200.0], [0.0, 0.0, 10.0, 10.0]], np.float32)
    out_f, out_b = random_crop(frames, boxes, 224, FixedRandom([0.5, 0.25], []))
    # x1 = int(0.5·(455 − 224)) = 115, y1 = int(0.25·(256 − 224)) = 8
    assert out_f.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(out_b, [[0, 42, 185, 192], [0, 0, 0, 2]])


def test_flip_coordinates():
    frames = np.zeros((1, 4, 224, 3), np.uint8)
    frames[0, :, 0] = 255
    f, b = hflip(frames, np.array([[10.0, 20.0, 50.0, 60.0]]))
    np.testing.assert_array_equal(b, [[224 - 50 - 1, 20, 224 - 10 - 1, 60]])
    assert f[0, 0, 223, 0] == 255 and f[0, 0, 0, 0] == 0


@pytest.mark.parametrize("hue, sat, val, rgb", [
    (10, 0, 0, (255, 85, 0)),    # red H=0 → H=10 (20°): G = 255·20/60 = 85
    (-10, 0, 0, (255, 0, 85)),   # H = −10 mod 180 = 170 (340°): B = 85
    (0, 0, -26, (229, 0, 0)),    # V 255 → 229
    (0, -255, 0, (255, 255, 255)),  # S clipped to 0 → white
])
def test_hsv_shift_known_pixel(hue, sat, val, rgb):
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    out = hsv_shift(red, hue, sat, val)
    np.testing.assert_allclose(out[0, 0, 0].astype(int), rgb, atol=1)


def test_train_transform_end_to_end_hand_computed():
    frames = np.full((16, 360, 640, 3), 100, np.uint8)
    boxes = np.array([[320.0, 180.0, 480.0, 300.0]], np.float32)
    # crop r = 0.5, 0.0; hue/sat/val 0; flip draw 0.3 < 0.5 → flip
    rng = FixedRandom([0.5, 0.0, 0.3], [0, 0, 0])
    clip, b, size = train_transform(frames, boxes, rng)
    assert clip.shape == (3, 16, 224, 224) and size == (224, 224)
    # resize ×455/640, ×256/360; crop x1 = int(0.5·231) = 115; then clamp to [0, 224]; then flip
    x1, y1 = 320 * 455 / 640 - 115, 180 * 256 / 360
    x2, y2 = min(480 * 455 / 640 - 115, 224), 300 * 256 / 360
    np.testing.assert_allclose(b, [[224 - x2 - 1, y1, 224 - x1 - 1, y2]], rtol=1e-5)
    want = torch.tensor([(100 - m) / s for m, s in zip(MEAN_RGB, STD_RGB)])
    torch.testing.assert_close(clip[:, 0, 5, 5], want)


def test_crop_larger_than_frame_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        random_crop(np.zeros((1, 100, 100, 3), np.uint8), np.zeros((0, 4)), 224, random.Random(0))


def test_augment_without_crop_keeps_every_person_and_the_frame() -> None:
    import random

    from vmaedet.data.transforms import augment

    frames = np.zeros((16, 128, 170, 3), np.uint8)
    boxes = np.array([[150.0, 10.0, 169.0, 120.0]], np.float32)  # at the right edge: a 112 crop could cut it
    for seed in range(20):
        clip, out, size = augment(frames, boxes, random.Random(seed), crop_size=0)
        assert clip.shape == (3, 16, 128, 170) and size == (170, 128)
        # unflipped, or flipped with the seed's rule x1' = W − x2 − 1, x2' = W − x1 − 1
        assert out.tolist() in ([[150.0, 10.0, 169.0, 120.0]], [[0.0, 10.0, 19.0, 120.0]])
    # With the seed's crop the same person can fall outside (a degenerate box that keeps its labels).
    outs = [augment(frames, boxes, random.Random(s), crop_size=112)[1] for s in range(20)]
    assert any((o[0, 2] - o[0, 0]) <= 0 for o in outs)
