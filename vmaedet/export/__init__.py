"""Export: ONNX (fp32, the mixed-precision FP16 graph, the int8 QDQ graph) with its gates, and TensorRT (builder).

Public names are imported lazily so that ``import vmaedet.export.tensorrt`` does not pay for
the ONNX exporter:

* :func:`export_onnx`, :class:`ExportResult`, :func:`resolve_geometry` — export + parity gate +
  manifest (``vmaedet.export.onnx``)
* :func:`convert_to_fp16`, :func:`check_fp16_structure` — the FP16 graph pass (``vmaedet.export.fp16``)
* :data:`TOLERANCES`, :func:`error_stats`, :func:`merge_stats`, :func:`within`, :func:`random_clip`,
  :func:`random_rois` — the parity maths shared with ``vmaedet.tools.verify`` (``vmaedet.export.parity``);
  :data:`RUNG_GATES`, :func:`rung_gates`, :func:`task_stats`, :func:`describe_gates` — the gates of each
  precision (fp32: logits within 1e-4; bf16/fp16/int8: the task gates) for verify and bench
* :class:`~vmaedet.export.int8.Int8Options` and the QDQ pass (``vmaedet.export.int8``; used by
  ``export_onnx(..., precision="int8", calib=DATA)``)
* :func:`build_engine` — the TensorRT builder (``vmaedet.export.tensorrt``; the runtime side is
  ``vmaedet.engines.trt_runtime``)

Manifests (:class:`~vmaedet.artifacts.ArtifactManifest`, :func:`~vmaedet.artifacts.read_manifest`,
:func:`~vmaedet.artifacts.write_manifest`) live in :mod:`vmaedet.artifacts`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "onnx", "ExportResult": "onnx", "resolve_geometry": "onnx",
    "convert_to_fp16": "fp16", "check_fp16_structure": "fp16",
    "TOLERANCES": "parity", "EXPORT_GATES": "parity", "RUNG_GATES": "parity", "rung_gates": "parity",
    "task_stats": "parity", "describe_gates": "parity", "pooled_stats": "parity", "error_stats": "parity",
    "merge_stats": "parity", "within": "parity", "random_clip": "parity", "random_rois": "parity",
    "build_engine": "tensorrt",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
