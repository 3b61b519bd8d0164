"""TensorRT engine: run a plan built by ``vmaedet export --trt`` on torch CUDA tensors.

The manifest (``<engine>.json``) is checked first — format, sha256, geometry, and the TensorRT
version and GPU the plan was built for — so a plan from another machine is refused with the
command that rebuilds it.  Buffers are torch CUDA tensors bound by name
(``set_input_shape`` / ``set_tensor_address``) and run with ``execute_async_v3`` on a torch
stream.  The private stream first waits for the caller's current stream (the clip may have been
written there), and the caller's stream waits for the logits before they are copied to the CPU.
With ``cuda_graph=True`` the rois are padded to ``max_persons`` so one captured graph serves every
call (the padded rows are independent and dropped); the padding rows are kept on the GPU from the
capture on and copied in place, so a call allocates nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import EngineError
from ..export.manifest import open_artifact
from ..export.tensorrt import check_engine_compat, gpu_identity, require_tensorrt
from .base import Engine

#: A harmless padding roi (a 16×16 box in clip 0) for CUDA-graph replay.
_PAD_ROI = (0.0, 0.0, 0.0, 16.0, 16.0)


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if dtype not in table:
        raise EngineError("the engine has an I/O tensor of an unsupported dtype", received=str(dtype),
                          expected="float32, float16 or int32", fix="rebuild with vmaedet export --trt")
    return table[dtype]


class TensorRTEngine(Engine):
    """Run a TensorRT plan (``.engine``) with the common ``infer(clip, rois) -> logits`` contract.

    Args:
        path: the engine file (its manifest ``<path>.json`` must exist).
        device: CUDA device.
        cuda_graph: capture one CUDA graph at ``max_persons`` rois and replay it (needs an AOT or
            built-in RoIAlign; a JIT Python plugin cannot be captured).
        input_hw / precision / max_persons: what the caller expects; a manifest that differs is refused.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", cuda_graph: bool = False, *,
                 input_hw: tuple[int, int] | None = None, precision: str | None = None,
                 max_persons: int | None = None) -> None:
        path = Path(path)
        manifest = open_artifact(path, "tensorrt", input_hw=input_hw, precision=precision, max_persons=max_persons)
        trt = require_tensorrt()
        check_engine_compat(manifest, tensorrt_version=trt.__version__, engine_path=path, **_gpu_kwargs())
        roi = manifest["tensorrt"]["roi_align"]
        if roi["mode"] == "plugin":
            if roi["aot"] is False and cuda_graph:
                raise EngineError("CUDA-graph replay needs an AOT plugin (the JIT plugin is a Python callback)",
                                  received="aot=False", expected="an engine built with the AOT plugin",
                                  fix="rebuild without --no-aot, or run with cuda_graph=False")
            from ..export.plugins import roi_align_max_trt  # noqa: F401 - JIT engines need the definitions

        super().__init__(precision=manifest["precision"], device=device,
                         input_hw=tuple(manifest["input"]["clip_hw"]), max_persons=manifest["input"]["max_persons"],
                         short_side=int(manifest["input"].get("short_side", 256)))
        self.path, self.manifest, self._trt = path, manifest, trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}", fix="rebuild it here with vmaedet export CKPT --trt")
        self._context = self._engine.create_execution_context()
        self._names = manifest["input"]["names"]
        self._dtypes = {self._engine.get_tensor_name(i): _torch_dtype(trt, self._engine.get_tensor_dtype(self._engine.get_tensor_name(i)))
                        for i in range(self._engine.num_io_tensors)}
        missing = {self._names["clip"], self._names["rois"], self._names["output"]} - set(self._dtypes)
        if missing:
            raise EngineError(f"the engine {path} lacks I/O tensors its manifest names", received=sorted(self._dtypes),
                              expected=sorted(missing), fix="rebuild with vmaedet export CKPT --trt")
        self._stream = torch.cuda.Stream(device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, torch.Tensor] = {}
        if cuda_graph:
            self._capture()

    # -- execution --------------------------------------------------------------------------------
    def _bind(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Set shapes and addresses; returns the output buffer ``[K, 80]``."""
        ctx, n = self._context, self._names
        ctx.set_input_shape(n["rois"], tuple(rois.shape))
        out = torch.empty(tuple(ctx.get_tensor_shape(n["output"])), dtype=self._dtypes[n["output"]], device=self.device)
        for name, tensor in ((n["clip"], clip), (n["rois"], rois), (n["output"], out)):
            ctx.set_tensor_address(name, tensor.data_ptr())
        return out

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise EngineError("TensorRT execution failed (see the TensorRT log)", fix="check the inputs and the GPU state")

    def _capture(self) -> None:
        """Bind static buffers at max_persons rois, run once, capture one CUDA graph."""
        h, w = self.input_hw  # type: ignore[misc]
        k = int(self.max_persons)  # type: ignore[arg-type]
        clip = torch.zeros(1, 3, 16, h, w, dtype=self._dtypes[self._names["clip"]], device=self.device)  # [1, 3, 16, H, W]
        pad = torch.tensor([_PAD_ROI] * k, dtype=torch.float32, device=self.device)  # [Kmax, 5] padding rows
        rois = pad.clone()  # [Kmax, 5] the graph's bound rois, refilled in place per call
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            out = self._bind(clip, rois)  # [Kmax, 80]
            self._execute()  # first run outside capture (lazy allocations)
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            self._execute()
        self._graph, self._static = graph, {"clip": clip, "rois": rois, "pad": pad, "out": out}

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        k = rois.shape[0]
        caller = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(caller)  # the clip/rois may still be being written on the caller's stream
        with torch.cuda.stream(self._stream):
            if self._graph is not None:
                s = self._static
                s["clip"].copy_(clip, non_blocking=True)  # [1, 3, 16, H, W]
                s["rois"][:k].copy_(rois, non_blocking=True)  # [K, 5]
                s["rois"][k:].copy_(s["pad"][k:])  # [Kmax − K, 5] padding rows, device to device
                self._graph.replay()
                out = s["out"][:k]  # [K, 80]
            else:
                clip_d = clip.to(self.device, self._dtypes[self._names["clip"]]).contiguous()  # [1, 3, 16, H, W]
                rois_d = rois.to(self.device, torch.float32).contiguous()  # [K, 5]
                out = self._bind(clip_d, rois_d)  # [K, 80]
                self._execute()
            logits = out.float()  # [K, 80]
        caller.wait_stream(self._stream)  # the logits are complete before the caller's stream reads them
        return logits.cpu()  # [K, 80] synchronous copy on the caller's stream

    def close(self) -> None:
        self._graph, self._static = None, {}
        self._context = self._engine = self._runtime = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        built = self.manifest["tensorrt"]
        return {**super().describe(), "artifact": str(self.path), "tensorrt": built["version"],
                "roi_align": built["roi_align"]["mode"], "cuda_graph": self._graph is not None}


def _gpu_kwargs() -> dict[str, str]:
    gpu = gpu_identity()
    return {"gpu_name": gpu["name"], "compute_capability": gpu["compute_capability"]}
