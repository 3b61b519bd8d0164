"""RoIAlign + max: float64 reference vs hand-computed values, grid_sample, torchvision, torch composition.

Tolerances: float64 reference vs torchvision in float64 ≤ 1e-10 (same formula, same precision);
vs the FP32 torch composition ≤ 1e-5 (values of order 1–25); FP16 features ≤ 2e-2 absolute (the
composition casts the rois to FP16 too, ~0.03 cell of coordinate error).
The Triton kernel is checked against the same reference in test_roi_align_triton.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vmaedet.errors import VmaedetError
from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference

# f(y, x) = 5y + x on a 5×5 grid: bilinear interpolation of a linear map is exact.
ARANGE = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)  # [1, 1, 5, 5]


def _ref(features: torch.Tensor, rois: list[list[float]], scale: float = 1.0, **kw: object) -> torch.Tensor:
    return roi_align_max_reference(features, torch.tensor(rois, dtype=torch.float64), scale, **kw)  # type: ignore[arg-type]


# -- hand-computed cases --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "box,expected",
    [
        # 4×4 box, bins 4/7, one sample per bin at its centre; best bin centre 6.5·4/7 on both axes.
        ((0.0, 0.0, 4.0, 4.0), 6 * (6.5 * 4 / 7)),
        # Legacy rule: a 0.1-cell box grows to 1 cell; bins 1/7; best sample 2 + 6.5/7 on both axes.
        ((2.0, 2.0, 2.1, 2.1), 6 * (2 + 6.5 / 7)),
        # Box from −1 to 0.4 (1.4 cells, bins 0.2): samples below 0 clamp to 0; best 0.3 on both axes.
        ((-1.0, -1.0, 0.4, 0.4), 6 * 0.3),
        # 8×8 box on a 5×5 map: bins 8/7, 2×2 samples. Bin 3 holds 26/7 and 30/7 → clamped to row 4;
        # bin 4 holds 34/7 (→ 4) and 38/7 > 5 (→ contributes 0, still counted): bin (3, 3) wins
        # with 6·mean(26/7, 4).
        ((0.0, 0.0, 8.0, 8.0), 6 * (26 / 7 + 4) / 2),
    ],
)
def test_reference_hand_computed(box: tuple[float, ...], expected: float) -> None:
    got = _ref(ARANGE, [[0.0, *box]])
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_samples_outside_the_map_give_zero_which_wins_the_max() -> None:
    negative = ARANGE - 100.0  # every value < 0
    # Box (−3, −3)–(−1, −1): all samples below −1 → every bin is 0, the max is 0 (not −100).
    assert _ref(negative, [[0, -3.0, -3.0, -1.0, -1.0]]).item() == 0.0
    # Box inside the map: the max is the ordinary (negative) value.
    assert _ref(negative, [[0, 0.0, 0.0, 4.0, 4.0]]).item() == pytest.approx(6 * (6.5 * 4 / 7) - 100, abs=1e-12)


def test_spatial_scale_and_channels() -> None:
    feats = torch.cat([ARANGE, ARANGE + 100.0, -ARANGE], dim=1)  # [1, 3, 5, 5]
    got = _ref(feats, [[0, 0.0, 0.0, 64.0, 64.0]], scale=1 / 16)  # = box (0, 0, 4, 4) in cells
    best = 6 * (6.5 * 4 / 7)
    lowest = 6 * (0.5 * 4 / 7)  # −f is largest at the top-left bin
    assert got[0].tolist() == pytest.approx([best, best + 100, -lowest], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_map_any_interior_box(seed: int) -> None:
    """For f = a·y + b·x + c and a box whose samples stay in [0, H−1], each bin averages to f at its
    centre, whatever the adaptive grid: max = f(centre of the extreme bin)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = 12, 15
    a, b, c = 0.7, -1.3, 2.0
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    feats = (a * yy + b * xx + c)[None, None]  # [1, 1, h, w]
    for _ in range(5):
        x1, y1 = (torch.rand(2, generator=gen, dtype=torch.float64) * 3).tolist()
        x2 = x1 + 1 + torch.rand(1, generator=gen, dtype=torch.float64).item() * (w - 2 - x1)
        y2 = y1 + 1 + torch.rand(1, generator=gen, dtype=torch.float64).item() * (h - 2 - y1)
        cy = y1 + 6.5 * (y2 - y1) / 7  # a > 0: bottom bin
        cx = x1 + 0.5 * (x2 - x1) / 7  # b < 0: left bin
        got = roi_align_max_reference(feats, torch.tensor([[0, x1, y1, x2, y2]], dtype=torch.float64), 1.0)
        assert got.item() == pytest.approx(a * cy + b * cx + c, abs=1e-9)


def test_against_grid_sample() -> None:
    """Independent sampler: F.grid_sample (bilinear, align_corners=True) at the same sample points,
    for boxes whose samples stay inside [0, size−1] (where the boundary rules do not apply)."""
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 6, 9, 11, generator=gen, dtype=torch.float64)  # [1, C, H, W]
    for x1, y1, x2, y2 in [(0.5, 0.5, 9.5, 7.5), (2.25, 1.0, 5.0, 3.5), (1.0, 1.0, 10.0, 8.0)]:
        rw, rh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        gh, gw = -(-rh // 7), -(-rw // 7)
        gh, gw = int(gh), int(gw)
        ys = y1 + (torch.arange(7 * gh, dtype=torch.float64) + 0.5) * rh / (7 * gh)  # [7·gh]
        xs = x1 + (torch.arange(7 * gw, dtype=torch.float64) + 0.5) * rw / (7 * gw)  # [7·gw]
        gy, gx = torch.meshgrid(ys / (9 - 1) * 2 - 1, xs / (11 - 1) * 2 - 1, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None]  # [1, 7·gh, 7·gw, 2]
        samples = F.grid_sample(feats, grid, mode="bilinear", align_corners=True)  # [1, C, 7·gh, 7·gw]
        bins = samples.reshape(1, 6, 7, gh, 7, gw).mean(dim=(3, 5))  # [1, C, 7, 7]
        expected = bins.amax(dim=(2, 3))  # [1, C]
        got = roi_align_max_reference(feats, torch.tensor([[0, x1, y1, x2, y2]], dtype=torch.float64), 1.0)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


# -- against torchvision and the torch composition ------------------------------------------------
def _random_rois(gen: torch.Generator, k: int, batch: int, size_px: tuple[int, int]) -> torch.Tensor:
    h, w = size_px
    xy = torch.rand(k, 2, generator=gen) * torch.tensor([w, h]) * 1.2 - 0.1 * torch.tensor([w, h])
    wh = torch.rand(k, 2, generator=gen) * torch.tensor([w, h]) * 0.9 + 0.5
    idx = torch.randint(0, batch, (k, 1), generator=gen).float()
    return torch.cat([idx, xy, xy + wh], dim=1)  # [K, 5]: fractional, border and beyond-map boxes


BORDER_ROIS = [
    [0, 0.0, 0.0, 127.0, 95.0],  # whole image
    [1, -40.0, -30.0, 300.0, 200.0],  # larger than the map
    [0, 60.0, 40.0, 61.0, 40.5],  # tiny (below one cell)
    [1, 120.0, 90.0, 160.0, 140.0],  # past the bottom-right edge
    [0, 17.3, 33.9, 88.1, 71.2],  # fractional
]


@pytest.mark.parametrize("aligned", [False, True])
def test_reference_equals_torchvision_float64(aligned: bool) -> None:
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 8, 6, 8, generator=gen, dtype=torch.float64)  # [B, C, h, w], 96×128 px at 1/16
    rois = torch.cat([torch.tensor(BORDER_ROIS), _random_rois(gen, 12, 2, (96, 128))]).double()
    for ratio in (0, 2):
        tv = torchvision.ops.roi_align(feats, rois, (7, 7), 1 / 16, ratio, aligned=aligned).amax(dim=(2, 3))
        got = roi_align_max_reference(feats, rois, 1 / 16, sampling_ratio=ratio, aligned=aligned)
        torch.testing.assert_close(got, tv, rtol=0, atol=1e-10)


def test_torch_composition_fp32_and_fp16() -> None:
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 16, 6, 8, generator=gen)  # [B, C, h, w] float32
    rois = torch.cat([torch.tensor(BORDER_ROIS), _random_rois(gen, 12, 2, (96, 128))])  # [K, 5]
    ref = roi_align_max_reference(feats, rois)  # [K, C] float64
    torch.testing.assert_close(roi_align_max(feats, rois).double(), ref, rtol=0, atol=1e-5)
    half = feats.half()
    ref_half = roi_align_max_reference(half, rois)
    torch.testing.assert_close(roi_align_max(half, rois).double(), ref_half, rtol=0, atol=2e-2)


def test_batches_select_their_own_map() -> None:
    gen = torch.Generator().manual_seed(6)
    feats = torch.randn(3, 4, 5, 6, generator=gen)  # [B, C, h, w]
    rois = torch.tensor([[2, 8.0, 8.0, 60.0, 50.0], [0, 8.0, 8.0, 60.0, 50.0]])
    got = roi_align_max_reference(feats, rois)
    alone = roi_align_max_reference(feats[2:3], rois[:1] * torch.tensor([0, 1, 1, 1, 1]))
    assert torch.equal(got[0], alone[0])
    assert not torch.allclose(got[0], got[1])


def test_empty_rois_and_empty_batch() -> None:
    feats = torch.randn(2, 4, 5, 6)
    assert roi_align_max_reference(feats, torch.zeros(0, 5)).shape == (0, 4)
    assert roi_align_max(feats, torch.zeros(0, 5)).shape == (0, 4)
    with pytest.raises(VmaedetError, match="batch indices"):
        roi_align_max_reference(torch.zeros(0, 4, 5, 6), torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]]))


@pytest.mark.parametrize(
    "features,rois,match",
    [
        (torch.zeros(1, 4, 2, 5, 6), torch.zeros(1, 5), "time-averaged"),
        (torch.zeros(1, 4, 5, 6), torch.zeros(3, 4), r"\[K, 5\]"),
        (torch.zeros(1, 4, 5, 6), torch.tensor([[1.0, 0, 0, 8, 8]]), "batch indices"),
        (torch.zeros(2, 4, 5, 6), torch.tensor([[0.5, 0, 0, 8, 8]]), "batch indices"),
    ],
)
def test_bad_inputs_raise_with_a_fix(features: torch.Tensor, rois: torch.Tensor, match: str) -> None:
    with pytest.raises(VmaedetError, match=match) as info:
        roi_align_max_reference(features, rois)
    assert "received" in str(info.value)
