"""The VideoMAE ViT backbone exactly as the AVA detector of the original code uses it (spec §1).

* Conv3d tubelet embedding (2×16×16), no cls token.
* A fixed 1-D sinusoid table over 1568 = 8·14·14 positions, **not** a parameter nor a buffer
  (absent from the state_dict), bicubically interpolated per time slice to the input grid on every
  forward (cached per grid; at the training grid 14×14 it is the identity).
* Pre-norm blocks, q/v bias with a zero k bias, q scaled before the product, exact-erf GELU,
  LayerNorm eps 1e-6, final norm over all tokens.

The MLP is ``timm.layers.Mlp`` (fc1 → exact GELU → fc2, the seed's keys; its two dropouts have
p = 0, draw nothing and export as nothing).  Stochastic depth and the init stay ours: timm 1.x's
``drop_path`` draws its keep mask with ``bernoulli_`` and its ``trunc_normal_`` draws other values
than torch's, while the seed's (and our fixtures') come from ``floor(keep + U)`` and torch's
``nn.init.trunc_normal_``.

``BackboneConfig.stem = "conv"`` swaps the tubelet embedding for a small 3D-conv stem with the same
output grid (:class:`ConvStem`).  No official checkpoint has one: it exists for the tiny demo model
trained from scratch on a CPU, where a ViT without locality does not learn (README, *Training*).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from timm.layers import Mlp

from vmaedet.constants import CLIP_LEN, NUM_CLASSES, PATCH_SIZE

PATCH = PATCH_SIZE
TUBELET = 2
NUM_FRAMES = CLIP_LEN
TRAIN_GRID = 14  # img_size 224 / patch 16
TABLE_LEN = (NUM_FRAMES // TUBELET) * TRAIN_GRID * TRAIN_GRID  # 1568


@dataclass(frozen=True)
class BackboneConfig:
    """Shape of a VideoMAE ViT backbone."""

    embed_dim: int  # D
    depth: int  # number of blocks
    num_heads: int  # attention heads; head_dim = D / heads
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio · D
    drop_path: float = 0.0  # stochastic depth of the last block (linspace from 0)
    attn_impl: str = "sdpa"  # "sdpa" (fused kernel) or "naive" (the seed's explicit matmuls)
    grad_checkpointing: bool = False  # recompute blocks in backward (saves memory for L/H)
    stem: str = "tubelet"  # "tubelet": the seed's Conv3d 2×16×16; "conv": ConvStem (demo variant only)
    head_init_scale: float = 0.001  # the seed's init_scale of the head; 1.0 for the from-scratch demo variant

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """The seed's ``get_sinusoid_encoding_table``: float64 maths, cast to float32.

    angle(p, j) = p / 10000^(2·⌊j/2⌋/dim); even j → sin, odd j → cos.

    Returns:
        ``[1, n_position, dim]`` float32.
    """
    pos = np.arange(n_position, dtype=np.float64)[:, None]  # [P, 1]
    j = np.arange(dim)
    denom = np.power(10000.0, 2 * (j // 2) / dim)  # [dim]
    table = pos / denom  # [P, dim] float64
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float().unsqueeze(0)


def interpolate_pos_table(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubic per-time-slice resize of the 8×14×14 table to 8×h×w (spec §1.2).

    Runs in float32 on the table's device (the seed runs it on the CPU); at h = w = 14 bicubic
    with align_corners=False is an exact identity.

    Args:
        table: ``[1, 1568, D]``.

    Returns:
        ``[1, 8·h·w, D]``.
    """
    d = table.shape[-1]
    t = NUM_FRAMES // TUBELET
    x = table.reshape(t, TRAIN_GRID, TRAIN_GRID, d).permute(0, 3, 1, 2)  # [8, D, 14, 14]
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)  # [8, D, h, w]
    return x.permute(0, 2, 3, 1).reshape(1, t * h * w, d)  # [1, 8hw, D]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """The seed's DropPath (timm 0.4's): per sample keep = floor(1 − p + U), out = x / (1 − p) · keep."""
    if p == 0.0 or not training:
        return x
    keep_prob = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = (keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep_prob) * keep


class GlobalBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d whose training statistics cover the whole batch across torch.distributed ranks.

    One process and N ranks at the same total batch then normalise alike (and reach the same
    weights within float tolerance).  Unlike ``nn.SyncBatchNorm`` it runs on any backend, gloo on
    the CPU included: the per-channel sums travel through the autograd-aware
    ``torch.distributed.nn.functional.all_reduce``.  Outside training, or in a single process, it is
    ``nn.BatchNorm3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = (0, 2, 3, 4)
        count = x.new_tensor([x.numel() / x.shape[1]])  # elements per channel on this rank
        total = all_reduce(torch.cat([x.sum(dims), count]))  # [C + 1]
        n = total[-1]
        mean = total[:-1] / n  # [C]
        centred = x - mean.view(1, -1, 1, 1, 1)
        var = all_reduce((centred * centred).sum(dims)) / n  # [C], biased, as BatchNorm normalises
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)  # unbiased, as BatchNorm keeps it
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1)
        return y


class ConvStem(nn.Sequential):
    """Four 3D convolutions (BatchNorm, ReLU): ``[B, 3, 16, H, W]`` → ``[B, D, 8, H/16, W/16]``.

    The tubelet embedding's output grid, reached by a conv stack with locality ("early convolutions
    help transformers see better", Xiao et al., 2021): time stride 2 in the second layer, space
    stride 2 in each.  Batch statistics are global across ranks (:class:`GlobalBatchNorm3d`).
    """

    def __init__(self, embed_dim: int, widths: tuple[int, int, int] = (32, 64, 64)) -> None:
        chans = (3, *widths, embed_dim)
        kernels = ((3, 5, 5), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        strides = ((1, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))
        layers: list[tuple[str, nn.Module]] = []
        for i, (k, st) in enumerate(zip(kernels, strides), start=1):
            pad = tuple(x // 2 for x in k)
            layers += [(f"conv{i}", nn.Conv3d(chans[i - 1], chans[i], k, st, pad, bias=False)),
                       (f"bn{i}", GlobalBatchNorm3d(chans[i])), (f"relu{i}", nn.ReLU())]
        super().__init__(OrderedDict(layers))


class PatchEmbed(nn.Module):
    """Tubelet embedding: ``[B, 3, 16, H, W]`` → ``[B, D, 8, H/16, W/16]``.

    ``stem="tubelet"`` is the seed's Conv3d 2×16×16 (key ``patch_embed.proj.weight``);
    ``stem="conv"`` a :class:`ConvStem` (keys ``patch_embed.proj.conv1.weight`` …).
    """

    def __init__(self, embed_dim: int, stem: str = "tubelet") -> None:
        super().__init__()
        if stem == "tubelet":
            self.proj: nn.Module = nn.Conv3d(3, embed_dim, kernel_size=(TUBELET, PATCH, PATCH),
                                             stride=(TUBELET, PATCH, PATCH))
        elif stem == "conv":
            self.proj = ConvStem(embed_dim)
        else:
            raise ValueError(f"unknown stem {stem!r}; expected 'tubelet' (the seed) or 'conv'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with q/v bias and a zero k bias (no mask)."""

    def __init__(self, dim: int, num_heads: int, attn_impl: str = "sdpa") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        if attn_impl not in ("sdpa", "naive"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'naive', received {attn_impl!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))  # [3D]
        qkv = F.linear(x, self.qkv.weight, bias)  # [B, N, 3D]
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, nh, N, hd]
        q = q * self.scale  # scaled before the product, as the seed does
        if self.attn_impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # [B, nh, N, hd]
        else:
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, nh, N, N]
            out = attn @ v  # [B, nh, N, hd]
        out = out.transpose(1, 2).reshape(b, n, d)  # [B, N, D]
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block without layer scale."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, attn_impl: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))  # fc1 → nn.GELU (exact erf) → fc2; dropouts p = 0
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
        return x


class VideoMAEBackbone(nn.Module):
    """VideoMAE ViT returning the time-averaged feature map.

    Input ``[B, 3, 16, H, W]`` (H, W multiples of 16) → ``[B, D, H/16, W/16]``.
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(d, cfg.stem)
        # A plain attribute, as in the seed: not a Parameter, not a buffer, not in the state_dict.
        self.pos_table = sinusoid_table(TABLE_LEN, d)  # [1, 1568, D]
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._frozen_grid: tuple[int, int] | None = None
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, rates[i], cfg.attn_impl) for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.grad_checkpointing = cfg.grad_checkpointing

    # -- positional embedding -------------------------------------------------------------
    def pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Interpolated table for an h×w token grid, ``[1, 8hw, D]`` float32 on the CPU (cached)."""
        key = (h, w)
        if key not in self._pos_cache:
            with torch.no_grad():
                self._pos_cache[key] = interpolate_pos_table(self.pos_table, h, w)
        return self._pos_cache[key]

    def freeze_pos_embed(self, h: int, w: int) -> None:
        """Fix the token grid and hold its positional embedding as a buffer (for export).

        The ONNX graph then carries the interpolated table as one constant (no ``Resize`` node).
        A forward on another grid raises.  The buffer is non-persistent, so the state_dict keeps
        the seed's exact keys.
        """
        self.register_buffer("pos_frozen", self.pos_embed(h, w).clone(), persistent=False)
        self._frozen_grid = (h, w)

    def _pos_for(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if self._frozen_grid is not None:
            if (h, w) != self._frozen_grid:
                raise ValueError(
                    f"this model was frozen for a {self._frozen_grid[0]}×{self._frozen_grid[1]} token grid "
                    f"(input {self._frozen_grid[0] * PATCH}×{self._frozen_grid[1] * PATCH}); received {h}×{w}"
                )
            pos = self.pos_frozen
        else:
            pos = self.pos_embed(h, w).to(x.device)
        return pos.type_as(x).detach()

    # -- forward --------------------------------------------------------------------------
    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``[B, 3, 16, H, W]`` → normalised tokens ``[B, 8hw, D]`` and the grid (h, w)."""
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] != NUM_FRAMES:
            raise ValueError(f"expected a clip [B, 3, {NUM_FRAMES}, H, W]; received shape {tuple(x.shape)}")
        if x.shape[3] % PATCH or x.shape[4] % PATCH:
            raise ValueError(
                f"clip height and width must be multiples of {PATCH}; received {x.shape[3]}×{x.shape[4]} "
                "(pad bottom/right with zeros, as vmaedet.data.transforms.pad_to_multiple does)"
            )
        x = self.patch_embed(x)  # [B, D, 8, h, w]
        _, _, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [B, 8hw, D]; token = t·h·w + i·w + j
        x = x + self._pos_for(x, h, w)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x), h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, h, w = self.forward_tokens(x)  # [B, 8hw, D]
        b, _, d = tokens.shape
        t = NUM_FRAMES // TUBELET
        fmap = tokens.reshape(b, t, h, w, d).permute(0, 4, 1, 2, 3)  # [B, D, 8, h, w]
        return fmap.mean(dim=2)  # [B, D, h, w]


def init_weights(module: nn.Module) -> None:
    """The seed's init: trunc_normal(.02, ±2) Linear weights, zero biases, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def count_params(depth: int, dim: int, num_classes: int = NUM_CLASSES) -> int:
    """Closed form of the detector's parameter count for mlp_ratio 4: depth·12D(D+1) + 1619D + 80."""
    assert num_classes == NUM_CLASSES
    return depth * 12 * dim * (dim + 1) + 1619 * dim + NUM_CLASSES


__all__ = [
    "BackboneConfig",
    "VideoMAEBackbone",
    "sinusoid_table",
    "interpolate_pos_table",
    "init_weights",
    "count_params",
]
