"""Parity maths shared by the export gate and the verification ladder.

Inputs at a realistic scale (:func:`random_clip`: random uint8 RGB frames normalised exactly as the
seed does, so values span about −2.1…2.6; :func:`random_rois`: random boxes ≥ 16 px inside the
clip), error statistics of one output against a reference (:func:`error_stats`, merged worst-case
by :func:`merge_stats`), and the one tolerance table (:data:`TOLERANCES`) checked by :func:`within`.

Two kinds of gate share the table.  fp32 graphs are held to a logit tolerance (1e-4: the same
arithmetic, another order).  Exported artifacts of a lower precision (fp16, int8:
:data:`EXPORT_GATES`) change the arithmetic, so their gates speak the task: per person, do the
top-5 actions agree (``top5_min``, the mean over persons of |top-5 ∩ top-5| / 5), how far do the
action scores move on average (``scores_mean_abs``, mean |Δ sigmoid score|), and — when the data
has labels — how far does frame-mAP@0.5 move (``map_abs``, absolute, official protocol).  The worst
|Δ score| is always reported; fp16 keeps its historical bound on it too.

The verification ladder and ``vmaedet bench`` hold each rung / row to :func:`rung_gates`
(:data:`RUNG_GATES`): fp32 the logit bound, every lower precision the task gates (figures from
:func:`task_stats`: the max figures the worst clip, top-5 agreement and mean |Δ score| pooled over
every person as at export), plus an artifact's recorded tolerances; :func:`describe_gates` says
them in words for tables.
"""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import torch

from vmaedet.data.transforms import MEAN_RGB, STD_RGB
from vmaedet.errors import EngineError

#: The task gates every lower-precision artifact passes (vs PyTorch fp32): top-5 agreement per
#: person, mean |Δ score|, and the frame-mAP@0.5 difference when the data has labels.
TASK_GATES: dict[str, float] = {"top5_min": 0.95, "scores_mean_abs": 5e-3}
#: The frame-mAP@0.5 gate (absolute difference vs fp32, official protocol), applied when labels exist.
MAP_GATE: dict[str, float] = {"map_abs": 0.01}

#: Tolerances per precision, against a float-precision reference: the export's parity gate (vs
#: PyTorch fp32, for the export precisions) and the ladder's torch rungs (vs float64).  Keys:
#: ``logits_max_abs`` (max |Δ logit|), ``scores_max_abs`` (max |Δ sigmoid score|), ``top5_min``,
#: ``scores_mean_abs`` (mean |Δ sigmoid score|) and ``map_abs`` (|Δ frame-mAP@0.5|, checked only
#: where a mAP difference was measured: an export calibrated on labelled data).
#: One entry per precision of :data:`vmaedet.constants.PRECISIONS` and of
#: :data:`vmaedet.constants.EXPORT_PRECISIONS`.  The ladder's torch rungs use these entries; an
#: exported artifact is held to :data:`EXPORT_GATES` (recorded in its manifest as ``tolerances``).
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"logits_max_abs": 1e-4},
    "bf16": {"scores_max_abs": 5e-2},
    "fp16": {"scores_max_abs": 1e-2},
    "int8": {**TASK_GATES, **MAP_GATE},
}
#: The gates of an exported artifact per export precision: fp32 its logit bound; every lower
#: precision its entry of :data:`TOLERANCES` plus the task gates (int8: plus the mAP gate).
EXPORT_GATES: dict[str, dict[str, float]] = {
    p: dict(TOLERANCES[p]) if p == "fp32" else {**TOLERANCES[p], **TASK_GATES} for p in ("fp32", "fp16", "int8")
}
#: The gates of one ladder rung or bench row run in a precision, against the fp32 / float64
#: reference: fp32 its logit bound (the same arithmetic); every lower precision (an engine run in
#: bf16 or fp16, an int8 artifact) the task gates only — top-5 agreement per person and mean
#: |Δ score| — with the max |Δ score| reported, not gated.  An exported artifact's recorded
#: tolerances (:data:`EXPORT_GATES`, e.g. fp16's historical max |Δ score| bound) are added on top
#: by :func:`rung_gates`.
RUNG_GATES: dict[str, dict[str, float]] = {
    "fp32": dict(TOLERANCES["fp32"]), "bf16": dict(TASK_GATES), "fp16": dict(TASK_GATES), "int8": dict(TASK_GATES),
}
#: How the task figures are named and compared in tables: gate key → (figure, comparison).
GATE_LABELS: dict[str, tuple[str, str]] = {
    "logits_max_abs": ("max |Δ logit|", "≤"), "scores_max_abs": ("max |Δ score|", "≤"),
    "top5_min": ("top-5", "≥"), "scores_mean_abs": ("mean |Δ score|", "≤"), "map_abs": ("|Δ mAP|", "≤"),
}


def rung_gates(precision: str, recorded: Mapping[str, float] | None = None) -> dict[str, float]:
    """The gates a rung / bench row run in ``precision`` is held to.

    fp32: ``recorded`` (an artifact's manifest tolerances) when given, else the 1e-4 logit bound.
    A lower precision: :data:`RUNG_GATES` (the task gates), updated with ``recorded`` (a recorded
    bound wins; an artifact exported before the task gates still gets them).

    Raises:
        EngineError: an unknown precision.
    """
    if precision not in RUNG_GATES:
        raise EngineError("no gates for this precision", received=precision, expected=", ".join(RUNG_GATES))
    if precision == "fp32":
        return dict(recorded) if recorded else dict(RUNG_GATES["fp32"])
    return {**RUNG_GATES[precision], **dict(recorded or {})}


def describe_gates(tolerances: Mapping[str, float]) -> str:
    """``"top-5 ≥ 0.95, mean |Δ score| ≤ 0.005"``: the gates in words, in a table's order."""
    order = [k for k in GATE_LABELS if k in tolerances] + [k for k in tolerances if k not in GATE_LABELS]
    parts = []
    for key in order:
        name, op = GATE_LABELS.get(key, (key, "≤"))
        parts.append(f"{name} {op} {tolerances[key]:g}")
    return ", ".join(parts)


def task_stats(reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor]) -> dict[str, float]:
    """The figures of a run against its reference over several clips (logits ``[K_i, C]`` each).

    The worst case per clip for the max figures (:func:`merge_stats`) and, as at export, the task
    figures pooled over every person (:func:`pooled_stats`: ``top5_agreement``, ``mean_abs_score``).
    """
    per_clip = [error_stats(r, o) for r, o in zip(reference, other)]
    out = merge_stats(per_clip)
    pooled = pooled_stats(reference, other)
    out["top5_agreement"] = pooled["top5_agreement"]
    out["mean_abs_score"] = pooled["mean_abs_score"]
    out["persons"] = float(sum(int(r.shape[0]) for r in reference))
    return out


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

    Returns max/mean |Δ logit|, max/mean |Δ sigmoid score| and top-5 agreement (the mean over rois
    of |top-5 classes of reference ∩ top-5 of other| / 5; 1.0 when K = 0).
    """
    ref = reference.double()
    oth = other.double()
    if ref.shape != oth.shape:
        raise EngineError("outputs have different shapes", received=tuple(oth.shape), expected=tuple(ref.shape))
    if ref.numel() == 0:
        return {"max_abs_logit": 0.0, "mean_abs_logit": 0.0, "max_abs_score": 0.0, "top5_agreement": 1.0,
                "mean_abs_score": 0.0}
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
        "mean_abs_score": float(score_diff.mean()),
    }


def merge_stats(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """Worst case over several comparisons (mean of means, min of agreements)."""
    if not stats:
        return error_stats(torch.zeros(0, 80), torch.zeros(0, 80))
    out = {
        "max_abs_logit": max(s["max_abs_logit"] for s in stats),
        "mean_abs_logit": statistics.fmean(s["mean_abs_logit"] for s in stats),
        "max_abs_score": max(s["max_abs_score"] for s in stats),
        "top5_agreement": min(s["top5_agreement"] for s in stats),
    }
    if all("mean_abs_score" in s for s in stats):
        out["mean_abs_score"] = statistics.fmean(s["mean_abs_score"] for s in stats)
    return out


def pooled_stats(reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor]) -> dict[str, float]:
    """Errors over all persons of several clips pooled (``[K_i, C]`` each): the task gates' figures.

    Unlike :func:`merge_stats` (worst case per clip), the top-5 agreement and the means are taken
    over every person of every clip, so a clip with one person weighs as much as one person.
    """
    ref = [r for r in reference if r.shape[0]]
    oth = [o for r, o in zip(reference, other) if r.shape[0]]
    if not ref:
        return error_stats(torch.zeros(0, 80), torch.zeros(0, 80))
    return error_stats(torch.cat([r.double() for r in ref]), torch.cat([o.double() for o in oth]))


def within(stats: Mapping[str, float], tolerances: Mapping[str, float]) -> list[str]:
    """Violations of ``tolerances`` (keys ``logits_max_abs``, ``scores_max_abs``, ``top5_min``,
    ``scores_mean_abs``, ``map_abs``).

    A NaN or missing figure is a violation (every comparison is written so that NaN fails it),
    except ``map_abs``, checked only when ``stats`` has ``map_delta`` (labelled data was evaluated).
    """
    nan = float("nan")
    bad = []
    if "logits_max_abs" in tolerances and not stats["max_abs_logit"] <= tolerances["logits_max_abs"]:
        bad.append(f"max |Δ logit| {stats['max_abs_logit']:.3g} > {tolerances['logits_max_abs']:.3g}")
    if "scores_max_abs" in tolerances and not stats["max_abs_score"] <= tolerances["scores_max_abs"]:
        bad.append(f"max |Δ score| {stats['max_abs_score']:.3g} > {tolerances['scores_max_abs']:.3g}")
    if "top5_min" in tolerances and not stats["top5_agreement"] >= tolerances["top5_min"]:
        bad.append(f"top-5 agreement {stats['top5_agreement']:.3f} < {tolerances['top5_min']:.3f}")
    if "scores_mean_abs" in tolerances and not stats.get("mean_abs_score", nan) <= tolerances["scores_mean_abs"]:
        bad.append(f"mean |Δ score| {stats.get('mean_abs_score', nan):.3g} > {tolerances['scores_mean_abs']:.3g}")
    if "map_abs" in tolerances and "map_delta" in stats and not abs(stats["map_delta"]) <= tolerances["map_abs"]:
        bad.append(f"|Δ frame-mAP@0.5| {abs(stats['map_delta']):.4f} > {tolerances['map_abs']:.4f}")
    return bad
