"""Export: ONNX (fp32 and the mixed-precision FP16 graph), manifests, TensorRT (builder).

Public names are imported lazily so that ``import vmaedet.export.tensorrt`` does not pay for
the ONNX exporter:

* :func:`export_onnx` — export + parity gate + manifest (``vmaedet.export.onnx``)
* :func:`convert_to_fp16`, :func:`check_fp16_structure` — the FP16 graph pass (``vmaedet.export.fp16``)
* :func:`read_manifest`, :func:`write_manifest`, :func:`manifest_path` (``vmaedet.artifacts``)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "onnx", "ExportResult": "onnx", "resolve_geometry": "onnx",
    "convert_to_fp16": "fp16", "check_fp16_structure": "fp16",
    "read_manifest": "manifest", "write_manifest": "manifest", "manifest_path": "manifest",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
