"""``tensorrt.plugin`` (QDP) definitions of ``vmaedet::RoIAlignMax``; importing registers them.

* ``register``: features ``[B, C, h, w]`` (FP16/FP32) + rois ``[K, 5]`` FP32 → ``[K, C]`` in the
  features' dtype; attributes ``spatial_scale``, ``pooled_size``, ``sampling_ratio``, ``aligned``.
* ``autotune``: (FP32, FP32 → FP32) and (FP16, FP32 → FP16), linear layout.
* ``impl``: JIT path — a Python callback launching the Triton kernel on TensorRT's stream.
* ``aot_impl``: the same Triton kernel compiled to PTX with launch parameters from symbolic shapes,
  so the engine runs without Python (trtexec, C++).

This module imports TensorRT and Triton at import time; only :mod:`vmaedet.export.tensorrt` and
:mod:`vmaedet.engines.tensorrt_engine` import it.
"""

from __future__ import annotations

from typing import Tuple, Union

import tensorrt as trt
import tensorrt.plugin as trtp

from ...ops.triton_roi_align import BLOCK_C, launch_roi_align_max, roi_align_max_kernel
from . import ROI_ALIGN_MAX_ID

_KERNEL_ARGS = ("feat_ptr", "rois_ptr", "B", "C", "H", "W", "out_ptr")
_CONSTEXPRS = ("SPATIAL_SCALE", "POOLED", "SAMPLING_RATIO", "ALIGNED", "BLOCK")


@trtp.register(ROI_ALIGN_MAX_ID)
def roi_align_max_desc(features: trtp.TensorDesc, rois: trtp.TensorDesc, spatial_scale: float, pooled_size: int,
                       sampling_ratio: int, aligned: int) -> trtp.TensorDesc:
    """Output ``[K, C]`` with the features' dtype."""
    return trtp.from_shape_expr((rois.shape_expr[0], features.shape_expr[1]), dtype=features.dtype)


@trtp.autotune(ROI_ALIGN_MAX_ID)
def roi_align_max_autotune(features: trtp.TensorDesc, rois: trtp.TensorDesc,
                           outputs: Tuple[trtp.TensorDesc]) -> list[trtp.AutoTuneCombination]:
    """FP32 or FP16 features (output follows), rois always FP32; linear layout."""
    return [trtp.AutoTuneCombination("FP32, FP32, FP32"), trtp.AutoTuneCombination("FP16, FP32, FP16")]


@trtp.impl(ROI_ALIGN_MAX_ID)
def roi_align_max_impl(features: trtp.Tensor, rois: trtp.Tensor, spatial_scale: float, pooled_size: int,
                       sampling_ratio: int, aligned: int, outputs: Tuple[trtp.Tensor], stream: int) -> None:
    """JIT path: launch the Triton kernel on TensorRT's stream (torch views of TensorRT's buffers)."""
    import torch

    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        feats = torch.as_tensor(features, device="cuda")  # [B, C, h, w]
        boxes = torch.as_tensor(rois, device="cuda")  # [K, 5]
        out = torch.as_tensor(outputs[0], device="cuda")  # [K, C]
        if boxes.shape[0] == 0:
            return
        launch_roi_align_max(feats, boxes, out, spatial_scale=spatial_scale, pooled_size=pooled_size,
                             sampling_ratio=sampling_ratio, aligned=bool(aligned))


@trtp.aot_impl(ROI_ALIGN_MAX_ID)
def roi_align_max_aot(features: trtp.TensorDesc, rois: trtp.TensorDesc, spatial_scale: float, pooled_size: int,
                      sampling_ratio: int, aligned: int, outputs: Tuple[trtp.TensorDesc], tactic: int,
                      ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
    """AOT path: PTX of the kernel for this dtype; grid (K, ⌈C/BLOCK⌉); scalars B, C, H, W from shapes."""
    import triton
    from triton.compiler import ASTSource

    ty = "fp16" if features.dtype == trt.float16 else "fp32"
    signature = dict(zip(_KERNEL_ARGS, (f"*{ty}", "*fp32", "i32", "i32", "i32", "i32", f"*{ty}")))
    signature.update({name: "constexpr" for name in _CONSTEXPRS})
    constexprs = {"SPATIAL_SCALE": float(spatial_scale), "POOLED": int(pooled_size),
                  "SAMPLING_RATIO": int(sampling_ratio), "ALIGNED": bool(aligned), "BLOCK": BLOCK_C}
    compiled = triton.compile(ASTSource(fn=roi_align_max_kernel, signature=signature, constexprs=constexprs))
    shape = features.shape_expr
    params = trtp.KernelLaunchParams()
    params.grid_x = rois.shape_expr[0]
    params.grid_y = trtp.cdiv(shape[1], BLOCK_C)
    params.block_x = compiled.metadata.num_warps * 32
    params.shared_mem = compiled.metadata.shared
    scalars = trtp.SymIntExprs.from_tuple([trtp.SymInt32(shape[i]) for i in range(4)])
    return compiled.metadata.name.encode(), compiled.asm["ptx"].encode(), params, scalars
