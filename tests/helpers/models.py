"""Small models the tests share."""

from __future__ import annotations

import torch

from vmaedet.models.detector import create_detector


def micro_detector(seed: int = 0, head_std: float = 0.5) -> torch.nn.Module:
    """``vit_micro`` with random weights (seeded) in eval mode; the head rescaled so logits are of order 1."""
    torch.manual_seed(seed)
    m = create_detector("vit_micro").eval()
    with torch.no_grad():
        m.head.weight.normal_(0, head_std)
    return m
