"""AdamW with the seed's layer-wise lr decay and weight-decay exclusions (spec §5).

The parameter groups are timm's (``timm.optim.param_groups_layer_decay``, BEiT's recipe, which the
seed copied) over the detector's :meth:`~vmaedet.models.detector.ActionDetector.group_matcher`:
``patch_embed.*`` → layer 0, ``blocks.k.*`` → k + 1, the final ``norm`` and the ``head`` → depth + 1.
Layer i gets ``lr_scale = layer_decay^(depth + 1 − i)``.  No weight decay for 1-D parameters
(biases, norms, q/v biases) and ``pos_embed``/``cls_token``.  Groups come in first-seen order, like
the seed's.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import param_groups_layer_decay
from torch import nn

from vmaedet.config import OptimConfig

#: Parameter names without weight decay besides the 1-D ones (the seed's ``no_weight_decay()``).
SKIP_WEIGHT_DECAY = ("pos_embed", "cls_token")


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with ``lr_scale`` and ``weight_decay`` per (layer, decay/no-decay).

    Args:
        model: the detector (unwrapped; names without ``module.``), with a timm ``group_matcher``.
        weight_decay: value for the decayed groups.
        layer_decay: per-layer lr decay factor (1.0 = none).

    Returns:
        timm's groups ``{"params", "lr_scale", "weight_decay"}``, each with ``"param_names"`` added.
    """
    groups = param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay,
                                      no_weight_decay_list=SKIP_WEIGHT_DECAY)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        g["param_names"] = [names[id(p)] for p in g["params"]]
    return groups


def actual_lr(base_lr: float, total_batch: int, scaling: bool = True) -> float:
    """The linear scaling rule: ``base_lr · total_batch / 256`` (or base_lr when disabled)."""
    return base_lr * total_batch / 256.0 if scaling else base_lr


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the lr of each group is set per iteration by the schedule."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    for g in groups:
        g["lr"] = 0.0
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=0.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr · lr_scale`` into every group (the seed's per-iteration update)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


__all__ = ["param_groups", "actual_lr", "build_optimizer", "set_lr"]
