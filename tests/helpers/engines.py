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


class CheckingEngine(Engine):
    """Test double: keeps a copy of each clip, holds it a while, then checks nobody wrote into it meanwhile.

    Each roi's logits are its clip's mean (so a result depends on the clip's content); it records where
    each call's clips were in memory and their batch size.  ``max_batch``: as :class:`SlowEngine`'s.
    """

    name = "checking"

    def __init__(self, hold: float, max_batch: int | None = 1) -> None:
        super().__init__(max_batch=max_batch)
        self.hold = hold
        self.pointers: list[int] = []
        self.batches: list[int] = []
        self.changed = 0

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        self.pointers.append(clip.data_ptr())
        self.batches.append(int(clip.shape[0]))
        before = clip.clone()  # [B, 3, 16, H, W]
        time.sleep(self.hold)  # the worker prepares the next clips meanwhile
        self.changed += int(not torch.equal(before, clip))
        means = clip.mean(dim=(1, 2, 3, 4), dtype=torch.float64).float()  # [B]
        return means[rois[:, 0].long()][:, None].expand(-1, 80).clone()  # [K, 80]
