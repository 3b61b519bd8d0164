"""AdamW with the seed's layer-wise lr decay and weight-decay exclusions (spec §5).

Layer ids (``get_num_layer_for_vit``): ``patch_embed.*`` → 0, ``blocks.k.*`` → k + 1, everything
else (final ``norm``, ``head``) → depth + 1.  Layer i gets ``lr_scale = layer_decay^(depth + 1 − i)``.
No weight decay for 1-D parameters, names ending in ``.bias`` and ``pos_embed``/``cls_token``.
Groups are keyed ``layer_<id>_<decay|no_decay>`` in first-seen order, like the seed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vmaedet.config import OptimConfig

SKIP_WEIGHT_DECAY = ("pos_embed", "cls_token")


def layer_id(name: str, depth: int) -> int:
    """The seed's layer id of a parameter name for a ViT of ``depth`` blocks."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_scales(depth: int, layer_decay: float) -> list[float]:
    """``[layer_decay^(depth + 1 − i) for i in 0..depth + 1]``."""
    return [layer_decay ** (depth + 1 - i) for i in range(depth + 2)]


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with ``lr_scale`` and ``weight_decay`` per (layer, decay/no-decay).

    Args:
        model: the detector (unwrapped; names without ``module.``).
        weight_decay: value for the decayed groups.
        layer_decay: per-layer lr decay factor (1.0 = none).

    Returns:
        List of dicts ``{"name", "params", "param_names", "weight_decay", "lr_scale", "layer_id"}``.
    """
    depth = len(model.blocks)  # type: ignore[arg-type]
    scales = layer_scales(depth, layer_decay)
    groups: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim == 1 or name.endswith(".bias") or name in SKIP_WEIGHT_DECAY
        lid = layer_id(name, depth)
        key = f"layer_{lid}_{'no_decay' if no_decay else 'decay'}"
        if key not in groups:
            groups[key] = {"name": key, "params": [], "param_names": [], "layer_id": lid,
                           "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scales[lid]}
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


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


__all__ = ["layer_id", "layer_scales", "param_groups", "actual_lr", "build_optimizer", "set_lr"]
