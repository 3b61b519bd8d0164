"""Parity maths shared by the export gate and the verification ladder.

Inputs at a realistic scale (:func:`random_clip`: random uint8 RGB frames normalised exactly as the
seed does, so values span about −2.1…2.6; :func:`random_rois`: random boxes ≥ 16 px inside the
clip), error statistics of one output against a reference (:func:`error_stats`, merged worst-case
by :func:`merge_stats`), and the one tolerance table (:data:`TOLERANCES`) checked by :func:`within`.
"""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import torch

from vmaedet.data.transforms import MEAN_RGB, STD_RGB
from vmaedet.errors import EngineError

#: Tolerances per precision, against a float-precision reference: the export's parity gate (vs
#: PyTorch fp32, for the export precisions) and the ladder's torch rungs (vs float64).  Keys:
#: ``logits_max_abs`` (max |Δ logit|), ``scores_max_abs`` (max |Δ sigmoid score|), ``top5_min``.
#: One entry per precision of :data:`vmaedet.constants.PRECISIONS`.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"logits_max_abs": 1e-4},
    "bf16": {"scores_max_abs": 5e-2},
    "fp16": {"scores_max_abs": 1e-2},
}


# -- inputs -----------------------------------------------------------------------------------
def random_clip(input_hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Random uint8 RGB frames normalised as the seed does: ``[1, 3, 16, H, W]`` float32."""
    h, w = input_hw
    frames = torch.randint(0, 256, (1, 3, 16, h, w), generator=generator).float()  # [1, 3, 16, H, W]
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1, 1)
    return (frames - mean) / std  # [1, 3, 16, H, W]


def random_rois(k: int, input_hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``k`` random boxes inside an H×W clip, at least 16 px on a side: ``[K, 5]`` float32."""
    h, w = input_hw
    u = torch.rand((k, 4), generator=generator)  # [K, 4]
    x1 = u[:, 0] * (w - 16)
    y1 = u[:, 1] * (h - 16)
    x2 = x1 + 16 + u[:, 2] * (w - 16 - x1)
    y2 = y1 + 16 + u[:, 3] * (h - 16 - y1)
    return torch.stack([torch.zeros(k), x1, y1, x2, y2], dim=1)  # [K, 5]


# -- statistics -------------------------------------------------------------------------------
def error_stats(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Errors of ``other`` vs ``reference`` logits ``[K, C]``.

    Returns max/mean |Δ logit|, max |Δ sigmoid score| and top-5 agreement (the mean over rois of
    |top-5 classes of reference ∩ top-5 of other| / 5; 1.0 when K = 0).
    """
    ref = reference.double()
    oth = other.double()
    if ref.shape != oth.shape:
        raise EngineError("outputs have different shapes", received=tuple(oth.shape), expected=tuple(ref.shape))
    if ref.numel() == 0:
        return {"max_abs_logit": 0.0, "mean_abs_logit": 0.0, "max_abs_score": 0.0, "top5_agreement": 1.0}
    diff = (ref - oth).abs()
    score_diff = (ref.sigmoid() - oth.sigmoid()).abs()
    k = min(5, ref.shape[1])
    top_ref = ref.topk(k, dim=1).indices  # [K, 5]
    top_oth = oth.topk(k, dim=1).indices  # [K, 5]
    overlap = (top_ref.unsqueeze(2) == top_oth.unsqueeze(1)).any(dim=2).sum(dim=1).double() / k  # [K]
    return {
        "max_abs_logit": float(diff.max()),
        "mean_abs_logit": float(diff.mean()),
        "max_abs_score": float(score_diff.max()),
        "top5_agreement": float(overlap.mean()),
    }


def merge_stats(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """Worst case over several comparisons (mean of means, min of agreements)."""
    if not stats:
        return error_stats(torch.zeros(0, 80), torch.zeros(0, 80))
    return {
        "max_abs_logit": max(s["max_abs_logit"] for s in stats),
        "mean_abs_logit": statistics.fmean(s["mean_abs_logit"] for s in stats),
        "max_abs_score": max(s["max_abs_score"] for s in stats),
        "top5_agreement": min(s["top5_agreement"] for s in stats),
    }


def within(stats: Mapping[str, float], tolerances: Mapping[str, float]) -> list[str]:
    """Violations of ``tolerances`` (keys ``logits_max_abs``, ``scores_max_abs``, ``top5_min``).

    A NaN figure is a violation (every comparison is written so that NaN fails it).
    """
    bad = []
    if "logits_max_abs" in tolerances and not stats["max_abs_logit"] <= tolerances["logits_max_abs"]:
        bad.append(f"max |Δ logit| {stats['max_abs_logit']:.3g} > {tolerances['logits_max_abs']:.3g}")
    if "scores_max_abs" in tolerances and not stats["max_abs_score"] <= tolerances["scores_max_abs"]:
        bad.append(f"max |Δ score| {stats['max_abs_score']:.3g} > {tolerances['scores_max_abs']:.3g}")
    if "top5_min" in tolerances and not stats["top5_agreement"] >= tolerances["top5_min"]:
        bad.append(f"top-5 agreement {stats['top5_agreement']:.3f} < {tolerances['top5_min']:.3f}")
    return bad
