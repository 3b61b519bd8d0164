"""vmaedet: VideoMAE spatio-temporal action detection, from research code to real-time deployment."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

# Public API, imported lazily so `import vmaedet` stays light.
_LAZY = {
    "load_detector": "vmaedet.models.checkpoints:load_detector",
    "load_detector_with_report": "vmaedet.models.checkpoints:load_detector_with_report",
    "save_detector": "vmaedet.models.checkpoints:save_detector",
    "create_detector": "vmaedet.models.detector:create_detector",
    "list_models": "vmaedet.models.detector:list_models",
    "PreprocessConfig": "vmaedet.models.detector:PreprocessConfig",
    "open_engine": "vmaedet.engines.base:open_engine",
    "Predictor": "vmaedet.models.predictor:Predictor",
    "ActionDetections": "vmaedet.structures:ActionDetections",
    "PersonDetections": "vmaedet.structures:PersonDetections",
    "create_person_detector": "vmaedet.persons.base:create_person_detector",
    "StreamConfig": "vmaedet.runtime.config:StreamConfig",
    "stream": "vmaedet.runtime.pipeline:stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'vmaedet' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
