"""TensorRT engine: run a plan built by ``vmaedet export CKPT --trt`` on torch CUDA tensors.

The manifest (``<engine>.json``) is checked first — format, sha256, geometry, and the TensorRT
version and GPU the plan was built for — so a plan from another machine is refused with the
command that rebuilds it.  Buffers are torch CUDA tensors bound by name
(``set_input_shape`` / ``set_tensor_address``) and run with ``execute_async_v3`` on a torch
stream.  The private stream first waits for the caller's current stream (the clip may have been
written there), and the caller's stream waits for the logits before they are copied to the CPU.
With ``cuda_graph=True`` the rois are padded to ``max_persons`` so one captured graph serves every
call (the padded rows are independent and dropped); the padding rows are kept on the GPU from the
capture on and copied in place, so a call allocates nothing.

Batches: a plan built from an ONNX exported with ``max_batch`` > 1 has a dynamic batch axis on the
clip; each call sets the clip's input shape ``[B, 3, 16, H, W]`` (1 ≤ B ≤ ``max_batch``, the
manifest's) as well as the rois' ``[K, 5]``.  A CUDA graph has static shapes and holds one clip, so
``cuda_graph=True`` is refused for such a plan.

Device: everything (deserialisation, execution context, buffers, stream, CUDA graph, release) runs
under ``torch.cuda.device(device)``, so ``cuda:1`` works whatever the current device is; the manifest
is checked against *that* device's name and compute capability.

Only a TensorRT *runtime* is needed: ``tensorrt``, or the runtime-only ``tensorrt_lean`` /
``tensorrt_dispatch`` packages (which run version-compatible plans, ``version_compatible=True``).  An
engine with the AOT plugin (the default) or the built-in RoIAlign never imports the Python plugin
module (nor torch-side Triton or ``tensorrt.plugin``); only a JIT-plugin engine does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vmaedet.errors import BackendUnavailable, EngineError
from vmaedet.artifacts import ArtifactManifest, TrtRoiAlign, open_artifact
from vmaedet.engines.base import Engine
from vmaedet.engines.trt_runtime import check_engine_compat, gpu_identity, require_tensorrt_runtime

#: A harmless padding roi (a 16×16 box in clip 0) for CUDA-graph replay.
_PAD_ROI = (0.0, 0.0, 0.0, 16.0, 16.0)
#: The Python module defining the ``vmaedet::RoIAlignMax`` plugin (imported for JIT engines only).
PLUGIN_MODULE = "vmaedet.ops.roi_align_trt"


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if dtype not in table:
        raise EngineError("the engine has an I/O tensor of an unsupported dtype", received=str(dtype),
                          expected="float32, float16 or int32", fix="rebuild with vmaedet export CKPT --trt")
    return table[dtype]


def _cuda_device(device: str) -> torch.device:
    """``"cuda"`` / ``"cuda:N"`` → ``torch.device("cuda", N)`` (the current device when no index is given)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(f"invalid device {device!r}", expected="cuda or cuda:N") from exc
    if dev.type != "cuda":
        raise EngineError("TensorRT engines run on a CUDA device", received=device, expected="cuda or cuda:N",
                          fix="use the torch or onnxruntime engine on the CPU")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise EngineError(f"no CUDA device {index} on this machine", received=device,
                          expected=f"cuda:0 … cuda:{count - 1}" if count else "a CUDA GPU")
    return torch.device("cuda", index)


def _plugin_implementation(roi: TrtRoiAlign) -> str:
    """``"aot"``, ``"jit"`` or ``"builtin"`` from the manifest (older manifests: from ``aot``; unknown → JIT)."""
    return roi.kind


class TensorRTEngine(Engine):
    """Run a TensorRT plan (``.engine``) with the common ``infer(clip, rois) -> logits`` contract.

    Args:
        path: the engine file (its manifest ``<path>.json`` must exist).
        device: CUDA device (``cuda`` = the current one, or ``cuda:N``).
        cuda_graph: capture one CUDA graph at ``max_persons`` rois and replay it (needs an AOT or
            built-in RoIAlign; a JIT Python plugin cannot be captured; a one-clip plan).
        input_hw / precision / max_persons / max_batch: what the caller expects; a manifest that
            differs (another geometry or precision, fewer persons or clips per call) is refused.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", cuda_graph: bool = False, *,
                 input_hw: tuple[int, int] | None = None, precision: str | None = None,
                 max_persons: int | None = None, max_batch: int | None = None) -> None:
        path = Path(path)
        manifest = open_artifact(path, "tensorrt", input_hw=input_hw, precision=precision, max_persons=max_persons,
                                 max_batch=max_batch)
        trt, module = require_tensorrt_runtime()
        dev = _cuda_device(device)
        check_engine_compat(manifest, tensorrt_version=trt.__version__, engine_path=path, **_gpu_kwargs(dev))
        built = manifest.tensorrt
        if built is None:
            raise EngineError(f"the manifest of {path} has no tensorrt section", received="tensorrt: null",
                              expected="the TensorRT version and GPU the plan was built for",
                              fix="rebuild it with vmaedet export CKPT --trt")
        implementation = _plugin_implementation(built.roi_align)
        if cuda_graph and manifest.input.max_batch > 1:
            raise EngineError("CUDA-graph replay has static shapes and holds one clip; this plan takes batches of clips",
                              received=f"cuda_graph=True with a plan of max_batch {manifest.input.max_batch}",
                              expected="cuda_graph=False, or a plan exported with max_batch 1",
                              fix="run with cuda_graph=False to batch clips, or rebuild from an ONNX exported with "
                                  "max_batch 1 (e.g. `vmaedet export CKPT --trt`) for graph replay")
        if implementation == "jit":
            if cuda_graph:
                raise EngineError("CUDA-graph replay needs an AOT plugin (the JIT plugin is a Python callback)",
                                  received="a JIT-plugin engine", expected="an engine built with the AOT plugin",
                                  fix="rebuild it with the AOT plugin (aot=True, the default: vmaedet export CKPT --trt), "
                                      "or run with cuda_graph=False")
            if module != "tensorrt":
                raise BackendUnavailable(f"{path} uses the JIT plugin, which needs the full tensorrt package "
                                         "(tensorrt.plugin), torch and Triton to run",
                                         received=f"only {module} is usable here",
                                         fix="rebuild it with the AOT plugin (aot=True, the default: "
                                             "vmaedet export CKPT --trt), or install the full tensorrt package")
            try:
                from vmaedet.ops import roi_align_trt  # noqa: F401 - JIT: registers the callback's definitions
            except ImportError as exc:
                raise BackendUnavailable(f"{path} uses the JIT plugin, whose Python definitions cannot be imported here",
                                         received=f"{type(exc).__name__}: {exc}",
                                         expected="tensorrt.plugin, torch with CUDA and Triton",
                                         fix="rebuild it with the AOT plugin (aot=True, the default: "
                                             "vmaedet export CKPT --trt), which runs without them") from exc
        if module != "tensorrt" and not built.version_compatible:
            raise EngineError(f"{path} is not version-compatible, and only the runtime-only {module} is usable here",
                              received=f"{module} {trt.__version__}",
                              expected="a version-compatible plan (version_compatible=True), or the full tensorrt package",
                              fix="rebuild with vmaedet export CKPT --trt --version-compatible, "
                                  "or install the full tensorrt package")

        super().__init__(precision=manifest.precision, device=str(dev), input_hw=manifest.input.clip_hw,
                         max_persons=manifest.input.max_persons, short_side=manifest.input.short_side,
                         max_batch=manifest.input.max_batch)
        self.path, self.manifest, self._trt, self._module = path, manifest, trt, module
        self._device = dev
        self._implementation = implementation
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, torch.Tensor] = {}
        self._engine = self._context = self._runtime = None
        with torch.cuda.device(dev):
            self._load(path, manifest, built)
            self._stream = torch.cuda.Stream(device=dev)
            if cuda_graph:
                self._capture()

    def _load(self, path: Path, manifest: ArtifactManifest, built: Any) -> None:
        """Deserialise the plan and create the execution context (on the current = the engine's device)."""
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        init_plugins = getattr(trt, "init_libnvinfer_plugins", None)  # absent from the lean/dispatch runtimes
        if init_plugins is not None:
            init_plugins(self._logger, "")
        self._runtime = trt.Runtime(self._logger)
        if built.version_compatible:
            # A version-compatible plan carries TensorRT's lean runtime as host code; its bytes were
            # just checked against the manifest's sha256.
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            hint = (f" ({self._module} runs only version-compatible plans)" if self._module != "tensorrt" else "")
            raise EngineError(f"TensorRT could not deserialize {path}{hint}",
                              fix="rebuild it here with vmaedet export CKPT --trt")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {path}",
                              fix="check free GPU memory, or rebuild for fewer persons (max_persons)")
        self._names = manifest.input.names.as_dict()
        engine = self._engine
        io = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._dtypes = {name: _torch_dtype(trt, engine.get_tensor_dtype(name)) for name in io}
        missing = {self._names["clip"], self._names["rois"], self._names["output"]} - set(self._dtypes)
        if missing:
            raise EngineError(f"the engine {path} lacks I/O tensors its manifest names", received=sorted(self._dtypes),
                              expected=sorted(missing), fix="rebuild with vmaedet export CKPT --trt")
        if engine.get_tensor_mode(self._names["output"]) != trt.TensorIOMode.OUTPUT:
            raise EngineError(f"the engine {path}: {self._names['output']!r} is not an output",
                              fix="rebuild with vmaedet export CKPT --trt")

    # -- device seams (one place where buffers are made and moved) ---------------------------------
    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=self._device)

    def _to_device(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return tensor.to(self._device, dtype).contiguous()

    # -- execution --------------------------------------------------------------------------------
    def _bind(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Set shapes (the clip's too for a batched plan) and addresses; returns the output buffer ``[K, 80]``."""
        ctx, n = self._context, self._names
        if self.max_batch != 1 and not ctx.set_input_shape(n["clip"], tuple(clip.shape)):
            raise EngineError("TensorRT refused the clip shape", received=tuple(clip.shape),
                              expected=f"[B, 3, 16, {self.input_hw[0]}, {self.input_hw[1]}] with 1 ≤ B ≤ {self.max_batch}",  # type: ignore[index]
                              fix="rebuild the engine from the ONNX (its optimisation profile covers the manifest's "
                                  "max_batch): vmaedet export CKPT --trt")
        if not ctx.set_input_shape(n["rois"], tuple(rois.shape)):
            raise EngineError("TensorRT refused the rois shape", received=tuple(rois.shape),
                              expected=f"[K, 5] with 1 ≤ K ≤ {self.max_persons}")
        out = self._empty(tuple(ctx.get_tensor_shape(n["output"])), self._dtypes[n["output"]])  # [K, 80]
        for name, tensor in ((n["clip"], clip), (n["rois"], rois), (n["output"], out)):
            ctx.set_tensor_address(name, tensor.data_ptr())
        return out

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise EngineError("TensorRT execution failed (see the TensorRT log)", fix="check the inputs and the GPU state")

    def _capture(self) -> None:
        """Bind static buffers at max_persons rois, run once, capture one CUDA graph (on the engine's device)."""
        h, w = self.input_hw  # type: ignore[misc]
        k = int(self.max_persons)  # type: ignore[arg-type]
        clip = self._to_device(torch.zeros(1, 3, 16, h, w), self._dtypes[self._names["clip"]])  # [1, 3, 16, H, W]
        pad = self._to_device(torch.tensor([_PAD_ROI] * k), torch.float32)  # [Kmax, 5] padding rows
        rois = pad.clone()  # [Kmax, 5] the graph's bound rois, refilled in place per call
        self._stream.wait_stream(torch.cuda.current_stream(self._device))
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
        with torch.cuda.device(self._device):
            caller = torch.cuda.current_stream(self._device)
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
                    clip_d = self._to_device(clip, self._dtypes[self._names["clip"]])  # [B, 3, 16, H, W]
                    rois_d = self._to_device(rois, torch.float32)  # [K, 5]
                    out = self._bind(clip_d, rois_d)  # [K, 80]
                    self._execute()
                logits = out.float()  # [K, 80]
            caller.wait_stream(self._stream)  # the logits are complete before the caller's stream reads them
            return logits.cpu()  # [K, 80] synchronous copy on the caller's stream

    def close(self) -> None:
        if getattr(self, "_device", None) is None or self._engine is None:
            return
        with torch.cuda.device(self._device):  # TensorRT frees the context's memory on the engine's device
            self._graph, self._static = None, {}
            self._context = self._engine = self._runtime = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        built = self.manifest.tensorrt
        memory = getattr(self._engine, "device_memory_size_v2", None) if self._engine is not None else None
        return {**super().describe(), "artifact": str(self.path), "tensorrt": built.version,
                "tensorrt_module": self._module, "roi_align": built.roi_align.mode,
                "plugin": self._implementation, "cuda_graph": self._graph is not None,
                "device_memory_bytes": int(memory) if memory is not None else None,
                "fused_attention": built.fused_attention, "max_batch": self.max_batch}


def _gpu_kwargs(device: torch.device) -> dict[str, str]:
    gpu = gpu_identity(device)
    return {"gpu_name": gpu["name"], "compute_capability": gpu["compute_capability"]}
