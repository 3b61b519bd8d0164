"""VideoMAE AVA detector: backbone, head, variants, checkpoints."""

from vmaedet.models.detector import (
    OFFICIAL_VARIANTS,
    ActionDetector,
    PreprocessConfig,
    create_detector,
    infer_variant,
    list_models,
    register_model,
    resolve_name,
    variant_config,
)
from vmaedet.models.videomae import BackboneConfig, VideoMAEBackbone

__all__ = [
    "OFFICIAL_VARIANTS",
    "ActionDetector",
    "BackboneConfig",
    "PreprocessConfig",
    "VideoMAEBackbone",
    "create_detector",
    "infer_variant",
    "list_models",
    "register_model",
    "resolve_name",
    "variant_config",
]
