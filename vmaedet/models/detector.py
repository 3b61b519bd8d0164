"""The AVA action detector and the registry of its variants.

State-dict keys are exactly the seed's (spec §1): ``patch_embed.*``, ``blocks.{i}.*``, ``norm.*``,
``head.*`` — the detector *is* the backbone plus a head, not a wrapper around it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE, NUM_CLASSES, SHORT_SIDE
from vmaedet.data.transforms import MEAN_RGB, STD_RGB
from vmaedet.errors import ConfigError
from vmaedet.models.videomae import BackboneConfig, VideoMAEBackbone, init_weights
from vmaedet.ops.roi_align import roi_align_max


@dataclass(frozen=True)
class PreprocessConfig:
    """How frames must be prepared for a detector: its preprocessing facts (as timm's ``pretrained_cfg``).

    Set when the detector is built (:func:`create_detector`, ``load_detector``) and saved in vmaedet
    checkpoints; the Predictor, evaluation, export and the stream read ``model.preprocess``.
    The defaults are the seed's (:mod:`vmaedet.constants`, :mod:`vmaedet.data.transforms`).
    """

    short_side: int = SHORT_SIDE  # test-time resize of the short side, px (the seed: 256)
    clip_len: int = CLIP_LEN  # frames per clip (the backbone's positional table is for 16)
    frame_stride: int = FRAME_STRIDE  # source frames between sampled frames (the seed: 4)
    mean: tuple[float, float, float] = MEAN_RGB  # RGB mean subtracted after the resize
    std: tuple[float, float, float] = STD_RGB  # RGB std divided by

    def __post_init__(self) -> None:
        def bad(field: str, value: object, expected: str) -> ConfigError:
            return ConfigError(f"preprocessing {field} is out of range", received=f"{field}={value!r}",
                               expected=expected, fix=f"pass PreprocessConfig({field}=…) within {expected}")

        ss = self.short_side
        if not isinstance(ss, int) or isinstance(ss, bool) or not 16 <= ss <= 4096:
            raise bad("short_side", ss, f"an integer in 16..4096 (the seed uses {SHORT_SIDE})")
        if self.clip_len != CLIP_LEN:
            raise bad("clip_len", self.clip_len, f"{CLIP_LEN} (the VideoMAE positional table has {CLIP_LEN} frames)")
        fs = self.frame_stride
        if not isinstance(fs, int) or isinstance(fs, bool) or fs < 1:
            raise bad("frame_stride", fs, f"an integer ≥ 1 (the seed uses {FRAME_STRIDE})")
        for name, values, positive in (("mean", self.mean, False), ("std", self.std, True)):
            ok = isinstance(values, tuple) and len(values) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
                for v in values)
            if not ok:
                raise bad(name, values, "three finite numbers (R, G, B)" + (", each > 0" if positive else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples as lists), as saved in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown preprocessing field(s) {unknown}", received=sorted(data),
                              expected=", ".join(names), fix="remove them or fix the spelling")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


_REGISTRY: dict[str, Callable[[], BackboneConfig]] = {}
_ALIASES: dict[str, str] = {}


def register_model(*aliases: str) -> Callable[[Callable[[], BackboneConfig]], Callable[[], BackboneConfig]]:
    """Register a variant: the decorated function returns its :class:`BackboneConfig`."""

    def deco(fn: Callable[[], BackboneConfig]) -> Callable[[], BackboneConfig]:
        _REGISTRY[fn.__name__] = fn
        for a in aliases:
            _ALIASES[a] = fn.__name__
        return fn

    return deco


@register_model("vit-s", "vit_small", "S")
def vit_small_patch16_224() -> BackboneConfig:
    """ViT-S: D 384, 12 blocks, 6 heads (21.9 M parameters with the 80-way head)."""
    return BackboneConfig(embed_dim=384, depth=12, num_heads=6)


@register_model("vit-b", "vit_base", "B")
def vit_base_patch16_224() -> BackboneConfig:
    """ViT-B: D 768, 12 blocks, 12 heads (86.3 M)."""
    return BackboneConfig(embed_dim=768, depth=12, num_heads=12)


@register_model("vit-l", "vit_large", "L")
def vit_large_patch16_224() -> BackboneConfig:
    """ViT-L: D 1024, 24 blocks, 16 heads (303.9 M)."""
    return BackboneConfig(embed_dim=1024, depth=24, num_heads=16)


@register_model("vit-h", "vit_huge", "H")
def vit_huge_patch16_224() -> BackboneConfig:
    """ViT-H: D 1280, 32 blocks, 16 heads of dim 80 (631.7 M)."""
    return BackboneConfig(embed_dim=1280, depth=32, num_heads=16)


@register_model("seed-tiny")
def vit_seed_tiny() -> BackboneConfig:
    """Test variant of the parity fixture: D 96, 2 blocks, 2 heads of dim 48."""
    return BackboneConfig(embed_dim=96, depth=2, num_heads=2)


@register_model("micro")
def vit_micro() -> BackboneConfig:
    """Smallest test variant: D 64, 2 blocks, 2 heads (fast unit tests)."""
    return BackboneConfig(embed_dim=64, depth=2, num_heads=2)


@register_model("tiny")
def vit_tiny() -> BackboneConfig:
    """Demo variant trained from scratch on synthetic data on a CPU: D 128, 4 blocks, 2 heads."""
    return BackboneConfig(embed_dim=128, depth=4, num_heads=2)


@register_model("tiny-convstem")
def vit_tiny_convstem() -> BackboneConfig:
    """The demo's CPU model: ``vit_tiny``'s blocks and head behind a 3D-conv stem (:class:`ConvStem`).

    Trained from scratch on ~200 synthetic clips, the plain tubelet ViT memorises its training
    videos; the conv stem gives it locality and it learns (README, *Training on a CPU*).
    """
    return BackboneConfig(embed_dim=128, depth=4, num_heads=2, stem="conv", head_init_scale=1.0)


#: Variants that are the published sizes (the rest are test/demo variants).
OFFICIAL_VARIANTS = (
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
    "vit_huge_patch16_224",
)


def list_models() -> list[str]:
    """Names of every registered variant."""
    return sorted(_REGISTRY)


def resolve_name(name: str) -> str:
    """Canonical variant name for a name or alias; raises with a suggestion on a typo."""
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = list_models() + sorted(_ALIASES)
    close = difflib.get_close_matches(name, known, n=3)
    raise ConfigError(
        f"unknown model variant {name!r}",
        received=name,
        expected=", ".join(list_models()),
        fix=f"did you mean {', '.join(close)}?" if close else "use one of the names above (vmaedet info lists them)",
    )


def variant_config(name: str) -> BackboneConfig:
    return _REGISTRY[resolve_name(name)]()


class ActionDetector(VideoMAEBackbone):
    """VideoMAE AVA detector: clip + rois → per-roi logits of the 80 AVA actions.

    ``forward(clip [B, 3, 16, H, W], rois [K, 5]) -> logits [K, 80]``, where rois are
    (batch index, x1, y1, x2, y2) in pixels of ``clip``, already extended for test, and logit i is
    AVA action id i+1.  The backbone can run once per clip and the head per set of persons:
    ``forward_head(forward_features(clip), rois)``.
    """

    def __init__(self, cfg: BackboneConfig, num_classes: int = NUM_CLASSES, variant: str | None = None,
                 preprocess: PreprocessConfig | None = None) -> None:
        super().__init__(cfg)
        self.variant = variant
        self.num_classes = num_classes
        #: How frames are prepared for this model (short side trained/evaluated at, clip, normalisation).
        #: Saved in vmaedet checkpoints; the Predictor, evaluation, export and stream read it.
        self.preprocess: PreprocessConfig = preprocess if preprocess is not None else PreprocessConfig()
        self.head = nn.Linear(cfg.embed_dim, num_classes)
        self.apply(init_weights)
        with torch.no_grad():  # the seed scales the head's init by init_scale = 0.001
            self.head.weight.mul_(cfg.head_init_scale)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 16, H, W]`` → time-averaged map ``[B, D, H/16, W/16]``."""
        return super().forward(clip)

    def forward_head(self, fmap: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """``[B, D, h, w]`` + ``[K, 5]`` → ``[K, num_classes]``."""
        pooled = roi_align_max(fmap, rois)  # [K, D]
        return self.head(pooled)  # [K, C]

    def forward(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be [K, 5] (batch index, x1, y1, x2, y2); received {tuple(rois.shape)}")
        return self.forward_head(self.forward_features(clip), rois)

    @property
    def config(self) -> BackboneConfig:
        return self.cfg

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter-group interface (``timm.optim.param_groups_layer_decay`` reads it).

        The seed's (BEiT's) layer ids: ``patch_embed`` → 0, ``blocks.k`` → k + 1, the final ``norm``
        and the ``head`` together → depth + 1.
        """
        return {"stem": r"^patch_embed", "blocks": r"^blocks\.(\d+)", "head": r"^norm|^head"}


def create_detector(name: str, num_classes: int = NUM_CLASSES, *, preprocess: PreprocessConfig | None = None,
                    **overrides: object) -> ActionDetector:
    """Build a randomly initialised detector of a registered variant.

    Args:
        name: variant name or alias (``list_models()``).
        preprocess: its preprocessing facts (default: the seed's, short side 256).
        overrides: BackboneConfig fields to change (``drop_path``, ``attn_impl``, ``grad_checkpointing``).
    """
    canonical = resolve_name(name)
    cfg = _REGISTRY[canonical]()
    if overrides:
        unknown = set(overrides) - set(cfg.to_dict())
        if unknown:
            raise ConfigError(
                f"unknown backbone option(s) {sorted(unknown)}",
                expected=sorted(cfg.to_dict()),
            )
        cfg = replace(cfg, **overrides)  # type: ignore[arg-type]
    return ActionDetector(cfg, num_classes=num_classes, variant=canonical, preprocess=preprocess)


def infer_variant(embed_dim: int, depth: int, mlp_hidden: int, stem: str = "tubelet") -> str | None:
    """Registered variant whose shapes (and stem) match, or None."""
    for name in list_models():
        cfg = _REGISTRY[name]()
        if cfg.embed_dim == embed_dim and cfg.depth == depth and int(cfg.embed_dim * cfg.mlp_ratio) == mlp_hidden \
                and cfg.stem == stem:
            return name
    return None
