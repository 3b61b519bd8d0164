"""``tensorrt.plugin`` (QDP) definitions of ``vmaedet::RoIAlignMax``; importing registers them.

* ``register``: features ``[B, h, w, C]`` channels-last (FP16/FP32) + rois ``[K, 5]`` FP32 →
  ``[K, C]`` in the features' dtype; attributes ``spatial_scale`` (float32), ``pooled_size``,
  ``sampling_ratio``, ``aligned`` (int32), each a 1-element NumPy array.
* ``autotune``: (FP32, FP32 → FP32) and (FP16, FP32 → FP16), linear layout.
* ``impl``: JIT path — a Python callback launching the Triton kernel on TensorRT's stream.
* ``aot_impl``: the same Triton kernel compiled to PTX by
  :func:`vmaedet.ops.triton_roi_align.compile_roi_align_max_aot`, launch parameters from symbolic
  shapes, so the engine runs without Python (trtexec, C++).

Why the signatures look the way they do (see ``README.md`` in this package):

* No ``from __future__ import annotations`` in this module: ``tensorrt.plugin`` validates every
  decorated function with ``inspect.signature`` and ``issubclass(annotation, TensorDesc)``, so the
  annotations must be the classes themselves, not strings.
* Attributes are ``numpy.typing.NDArray[...]``, as NVIDIA's samples declare them: TensorRT hands a
  declared ``int``/``float`` attribute over as ``int(field.data)`` of a 1-element array, which
  NumPy ≥ 2.4 refuses; an ``NDArray`` attribute arrives as ``field.data.astype(dtype)``.  The
  dtypes are the ONNX parser's field types (FLOAT → float32, INT → int32).
* ``aot_impl`` takes every attribute, in registration order: TensorRT calls it with all the
  plugin's attributes positionally.

This module imports TensorRT and NumPy at import time (Triton and torch only inside ``impl`` /
``aot_impl``); only :mod:`vmaedet.export.tensorrt` and :mod:`vmaedet.engines.tensorrt_engine` import it.
"""

from typing import List, Tuple, Union

import numpy as np
import numpy.typing as npt
import tensorrt as trt
import tensorrt.plugin as trtp

from vmaedet.constants import ROI_ALIGN_MAX_ID

#: Attribute annotations (the ONNX parser's plugin field types for FLOAT / INT node attributes).
Float32Attr = npt.NDArray[np.float32]
Int32Attr = npt.NDArray[np.int32]


def attr_scalar(value: object, kind: type) -> object:
    """The Python scalar in a TensorRT plugin attribute: a 1-element array (or a scalar) → ``kind``."""
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"RoIAlignMax attribute must hold one value, got {arr.size}: {arr!r}")
    return kind(arr[0].item())


@trtp.register(ROI_ALIGN_MAX_ID)
def roi_align_max_desc(features: trtp.TensorDesc, rois: trtp.TensorDesc, spatial_scale: Float32Attr,
                       pooled_size: Int32Attr, sampling_ratio: Int32Attr, aligned: Int32Attr) -> trtp.TensorDesc:
    """Output ``[K, C]`` with the features' dtype (features ``[B, h, w, C]``, rois ``[K, 5]``)."""
    return trtp.from_shape_expr((rois.shape_expr[0], features.shape_expr[3]), dtype=features.dtype)


@trtp.autotune(ROI_ALIGN_MAX_ID)
def roi_align_max_autotune(features: trtp.TensorDesc, rois: trtp.TensorDesc,
                           outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    """FP32 or FP16 features (output follows), rois always FP32; linear layout."""
    return [trtp.AutoTuneCombination("FP32, FP32, FP32"), trtp.AutoTuneCombination("FP16, FP32, FP16")]


@trtp.impl(ROI_ALIGN_MAX_ID)
def roi_align_max_impl(features: trtp.Tensor, rois: trtp.Tensor, spatial_scale: Float32Attr, pooled_size: Int32Attr,
                       sampling_ratio: Int32Attr, aligned: Int32Attr, outputs: Tuple[trtp.Tensor], stream: int) -> None:
    """JIT path: launch the Triton kernel on TensorRT's stream (torch views of TensorRT's buffers)."""
    import torch

    from vmaedet.ops.triton_roi_align import launch_roi_align_max

    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        feats = torch.as_tensor(features, device="cuda")  # [B, h, w, C]
        boxes = torch.as_tensor(rois, device="cuda")  # [K, 5]
        out = torch.as_tensor(outputs[0], device="cuda")  # [K, C]
        launch_roi_align_max(feats, boxes, out, spatial_scale=attr_scalar(spatial_scale, float),
                             pooled_size=attr_scalar(pooled_size, int), sampling_ratio=attr_scalar(sampling_ratio, int),
                             aligned=bool(attr_scalar(aligned, int)))


@trtp.aot_impl(ROI_ALIGN_MAX_ID)
def roi_align_max_aot(features: trtp.TensorDesc, rois: trtp.TensorDesc, spatial_scale: Float32Attr,
                      pooled_size: Int32Attr, sampling_ratio: Int32Attr, aligned: Int32Attr,
                      outputs: Tuple[trtp.TensorDesc], tactic: int,
                      ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
    """AOT path: PTX for this dtype; grid ``(max(K, 1), ⌈C/64⌉)``; scalars ``B, H, W, C, K`` from shapes.

    TensorRT launches the ``.entry`` with (features, rois, *scalars, output), which is exactly
    :data:`vmaedet.ops.triton_roi_align.AOT_PARAM_ORDER`; the compile function checks the PTX.
    """
    from vmaedet.ops.triton_roi_align import AOT_SCALARS, compile_roi_align_max_aot

    kernel = compile_roi_align_max_aot(
        "fp16" if features.dtype == trt.float16 else "fp32", attr_scalar(spatial_scale, float),
        attr_scalar(pooled_size, int), attr_scalar(sampling_ratio, int), bool(attr_scalar(aligned, int)),
    )
    shape = features.shape_expr  # [B, H, W, C]
    k = rois.shape_expr[0]
    params = trtp.KernelLaunchParams()
    params.grid_x = trtp.max(k, 1)  # a zero grid is an invalid launch; programs with k >= K exit
    params.grid_y = trtp.cdiv(shape[3], kernel.block_c)
    params.block_x = kernel.num_warps * 32
    params.shared_mem = kernel.shared_mem
    exprs = {"B": shape[0], "H": shape[1], "W": shape[2], "C": shape[3], "K": k}
    scalars = trtp.SymIntExprs.from_tuple([trtp.SymInt32(exprs[name]) for name in AOT_SCALARS])
    return kernel.name.encode(), kernel.ptx.encode(), params, scalars
