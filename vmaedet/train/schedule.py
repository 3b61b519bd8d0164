"""The seed's per-iteration lr schedule (``utils.cosine_scheduler``, spec §5).

Warm-up: ``linspace(0, lr, W)`` over W = warmup_epochs · iters_per_epoch iterations (so the last
warm-up step reaches exactly ``lr``), then for i in 0..T − W − 1:
``min + ½(lr − min)(1 + cos(π · i / (T − W)))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineSchedule:
    """lr as a function of the global iteration."""

    base_lr: float  # peak lr (already scaled by batch / 256)
    min_lr: float  # final lr of the cosine
    total_steps: int  # epochs · iters_per_epoch
    warmup_steps: int  # linear warm-up iterations from 0

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive; received {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must lie in [0, {self.total_steps}]; received {self.warmup_steps}")

    @classmethod
    def from_epochs(cls, base_lr: float, min_lr: float, epochs: int, iters_per_epoch: int,
                    warmup_epochs: float, warmup_steps: int = 0) -> "CosineSchedule":
        """The seed's arguments: warm-up of ``warmup_epochs · iters_per_epoch`` (or ``warmup_steps``)."""
        total = epochs * iters_per_epoch
        warm = warmup_steps if warmup_steps > 0 else int(warmup_epochs * iters_per_epoch)
        return cls(base_lr, min_lr, total, min(warm, total))

    def __call__(self, step: int) -> float:
        """lr at iteration ``step`` (clamped to the last value past the end)."""
        step = min(max(step, 0), self.total_steps - 1)
        w = self.warmup_steps
        if step < w:
            return self.base_lr * step / (w - 1) if w > 1 else 0.0  # np.linspace(0, lr, w)
        i = step - w
        span = self.total_steps - w
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * i / span))


__all__ = ["CosineSchedule"]
