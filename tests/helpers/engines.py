"""Engine test doubles for the stream tests."""

from __future__ import annotations

import time

import torch

from vmaedet.engines.base import Engine


class SlowEngine(Engine):
    """Test double for an action engine slower than real time: ``delay`` seconds per call, logits of zeros.

    ``max_batch``: clips per call it takes (1, the engine default; None: any).  ``calls`` counts the calls.
    """

    name = "slow"

    def __init__(self, delay: float, max_batch: int | None = 1) -> None:
        super().__init__(max_batch=max_batch)
        self.delay = delay
        self.calls = 0

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay)
        return torch.zeros((rois.shape[0], 80))
