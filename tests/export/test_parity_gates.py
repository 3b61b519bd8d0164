"""The gates of ladder rungs and bench rows (`vmaedet.export.parity.rung_gates`) and the pooled task figures."""

from __future__ import annotations

import pytest
import torch

from vmaedet.errors import EngineError
from vmaedet.export.parity import (EXPORT_GATES, TASK_GATES, TOLERANCES, describe_gates, rung_gates, task_stats,
                                   within)


def test_rung_gates_fp32_keeps_the_logit_bound_lower_precisions_get_the_task_gates() -> None:
    assert rung_gates("fp32") == {"logits_max_abs": 1e-4} == TOLERANCES["fp32"]
    for p in ("bf16", "fp16", "int8"):
        assert rung_gates(p) == {"top5_min": 0.95, "scores_mean_abs": 5e-3} == TASK_GATES
    # an artifact's recorded tolerances are kept (fp16: its max |Δ score| bound) and win over the defaults
    assert rung_gates("fp16", EXPORT_GATES["fp16"]) == {**TASK_GATES, "scores_max_abs": 1e-2}
    assert rung_gates("int8", EXPORT_GATES["int8"]) == EXPORT_GATES["int8"]
    assert rung_gates("bf16", {"scores_max_abs": 1e-2}) == {**TASK_GATES, "scores_max_abs": 1e-2}  # older manifest
    assert rung_gates("fp32", {"logits_max_abs": 1e-12}) == {"logits_max_abs": 1e-12}
    with pytest.raises(EngineError, match="no gates"):
        rung_gates("int4")


def test_describe_gates_says_the_direction() -> None:
    assert describe_gates(TASK_GATES) == "top-5 ≥ 0.95, mean |Δ score| ≤ 0.005"
    assert describe_gates(rung_gates("fp32")) == "max |Δ logit| ≤ 0.0001"


def test_task_stats_pools_persons_and_keeps_the_worst_max() -> None:
    """Clip 1: one person whose top-5 loses one class (4/5); clip 2: three persons unchanged.

    Pooled top-5 agreement = (0.8 + 3 × 1.0) / 4 = 0.95 (the per-clip worst case would be 0.8);
    mean |Δ score| = the one changed score's |Δ| / (4 persons × 80 classes).
    """
    ref1 = torch.arange(80, dtype=torch.float64).reshape(1, 80) / 10  # top-5: 79..75
    oth1 = ref1.clone()
    oth1[0, 79] = 0.0  # 79 leaves the top-5
    ref2 = torch.randn(3, 80, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = task_stats([ref1, ref2], [oth1, ref2.clone()])
    assert s["top5_agreement"] == pytest.approx(0.95)
    d = float(torch.sigmoid(torch.tensor(7.9, dtype=torch.float64)) - 0.5)
    assert s["mean_abs_score"] == pytest.approx(d / 320)
    assert s["max_abs_score"] == pytest.approx(d) and s["max_abs_logit"] == pytest.approx(7.9)
    assert s["persons"] == 4
    assert within(s, TASK_GATES) == []  # 0.95 is on the gate, d / 320 ≈ 1.3e-3 under it
    s2 = task_stats([ref1], [oth1])  # that person alone: 0.8 < 0.95, and the mean 4× larger (d / 80 ≈ 6.2e-3)
    assert within(s2, TASK_GATES) == ["top-5 agreement 0.800 < 0.950", f"mean |Δ score| {d / 80:.3g} > 0.005"]
