"""TensorRT plugins of vmaedet: names shared by the graph surgery, the builder and the engine.

The ``tensorrt.plugin`` definitions live in :mod:`vmaedet.export.plugins.roi_align_max_trt`, which
imports TensorRT at import time; only :mod:`vmaedet.export.tensorrt` and
:mod:`vmaedet.engines.tensorrt_engine` import it.  This package itself imports nothing optional.
"""

from __future__ import annotations

#: ONNX op type = TensorRT plugin name of the fused RoIAlign + max.
ROI_ALIGN_MAX_OP = "RoIAlignMax"
#: ONNX domain of the node = TensorRT plugin namespace.
PLUGIN_NAMESPACE = "vmaedet"
#: Plugin version (``plugin_version`` attribute of the ONNX node).
PLUGIN_VERSION = "1"
#: QDP plugin id, ``"<namespace>::<name>"``.
ROI_ALIGN_MAX_ID = f"{PLUGIN_NAMESPACE}::{ROI_ALIGN_MAX_OP}"

__all__ = ["ROI_ALIGN_MAX_OP", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "ROI_ALIGN_MAX_ID"]
