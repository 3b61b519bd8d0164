"""The PyTorch engine: eager (optionally ``torch.compile``), fp32 or bf16/fp16 autocast, CPU or CUDA.

On CUDA two options make it fast (``benchmarks/gpu_check.py`` measures them):

* ``attn_impl``: the attention kernel of every block, ``"sdpa"`` (``scaled_dot_product_attention``,
  flash/memory-efficient kernels on a GPU) or ``"naive"`` (the seed's explicit matmuls, which write
  the N×N score matrix).  ``None`` keeps what the model was built with (the registry's default is
  ``"sdpa"``).  Both give the same result within float tolerance (tested on the CPU in fp32).
* ``cuda_graph``: capture the whole forward once as a CUDA graph and replay it.  A graph has static
  shapes, so it needs a fixed clip geometry (``input_hw``) and a person capacity
  (``max_persons``): the rois of every call are padded to ``max_persons`` with a harmless box and
  the padded rows are dropped (each roi's logits depend on its own box only, so padding changes
  nothing; the cost is the head for the padded rows, negligible beside the backbone).  One graph
  serves every K ≤ ``max_persons``.  The graph holds one clip: with ``cuda_graph`` the engine takes
  B = 1 (``max_batch`` 1).

Batching: eager (and compiled) runs take any number of clips B per call (``max_batch`` None) or up
to the ``max_batch`` given; column 0 of the rois picks the clip (the model's own contract).

On CUDA with a fixed ``input_hw`` the engine runs its own copy of the model with the positional
table frozen on the GPU (no host→device copy per call; a graph cannot capture one); a copy is also
made when ``attn_impl`` changes the model's.  The caller's model keeps its grid and attention (as
before, a model passed in is moved to ``device`` when no copy is needed).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from vmaedet.constants import PRECISIONS
from vmaedet.engines.base import Engine
from vmaedet.envinfo import NATIVE_CPU_FLAGS, cpu_flags
from vmaedet.errors import BackendUnavailable, EngineError, EngineWarning

#: Autocast dtype per precision of :data:`vmaedet.constants.PRECISIONS` (fp32: none).
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ATTN_IMPLS = ("sdpa", "naive")
#: A harmless padding roi (a 16×16 box in clip 0) for CUDA-graph replay.
_PAD_ROI = (0.0, 0.0, 0.0, 16.0, 16.0)
_GRAPH_WARMUP = 3  # eager runs on a side stream before capture (cuDNN/cuBLAS autotuning, lazy init)


def _load(model_or_checkpoint: Any) -> torch.nn.Module:
    from vmaedet.models.detector import ActionDetector

    if isinstance(model_or_checkpoint, (str, Path)):
        from vmaedet.models.checkpoints import load_detector

        return load_detector(model_or_checkpoint)  # type: ignore[return-value]
    if not isinstance(model_or_checkpoint, ActionDetector):
        raise EngineError("the torch engine needs an ActionDetector or a checkpoint path",
                          received=type(model_or_checkpoint).__name__,
                          fix="pass vmaedet.models.checkpoints.load_detector(path) or the path itself")
    return model_or_checkpoint


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise EngineError(f"unknown device {device!r}", expected="cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("CUDA was asked for but no CUDA GPU is usable here", received=device,
                                 fix="use device='cpu', or install a CUDA build of torch on a machine with a GPU")
    if dev.type not in ("cpu", "cuda"):
        raise EngineError(f"unsupported device {device!r}", expected="cpu or cuda[:N]")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _check_options(precision: str, attn_impl: str | None, cuda_graph: bool, compile: bool, dev: torch.device,
                   input_hw: tuple[int, int] | None, max_persons: int | None, max_batch: int | None = None) -> None:
    """Refuse option combinations the engine cannot honour, each with the fix."""
    if max_batch is not None and max_batch < 1:
        raise EngineError("the largest batch must be at least 1 clip", received=f"max_batch={max_batch}",
                          expected="max_batch ≥ 1, or None for any number of clips")
    if precision not in PRECISIONS:
        raise EngineError(f"unsupported precision {precision!r} for the torch engine",
                          received=precision, expected=", ".join(PRECISIONS))
    if attn_impl is not None and attn_impl not in ATTN_IMPLS:
        raise EngineError(f"unknown attention implementation {attn_impl!r}", received=attn_impl,
                          expected=f"one of {', '.join(ATTN_IMPLS)}, or None to keep the model's")
    if not cuda_graph:
        return
    if dev.type != "cuda":
        raise EngineError("CUDA graphs need a CUDA device", received=f"device={dev}", expected="device='cuda[:N]'",
                          fix="run on a GPU, or leave cuda_graph off on the CPU")
    if compile:
        raise EngineError("cuda_graph and compile cannot be combined (torch.compile manages its own graphs)",
                          received="compile=True, cuda_graph=True", expected="one of them",
                          fix="use cuda_graph=True for eager replay, or compile=True alone")
    if input_hw is None or not max_persons or max_persons < 1:
        raise EngineError("a CUDA graph has static shapes: it needs a fixed clip geometry and a person capacity",
                          received=f"input_hw={input_hw}, max_persons={max_persons}",
                          expected="input_hw=(H, W) and max_persons ≥ 1",
                          fix="pass both, e.g. input_hw=(256, 464), max_persons=8")
    if max_batch is not None and max_batch > 1:
        raise EngineError("a CUDA graph holds one clip: it cannot take batches of clips",
                          received=f"cuda_graph=True, max_batch={max_batch}", expected="max_batch None or 1",
                          fix="leave cuda_graph off to batch clips, or run one clip per call")


class TorchEngine(Engine):
    """Run an :class:`~vmaedet.models.ActionDetector` in PyTorch.

    Args:
        model_or_checkpoint: the model, or a checkpoint path (loaded with ``load_detector``).
        precision: "fp32" (plain), "bf16" or "fp16" (autocast; weights stay fp32).
        device: "cpu" or "cuda[:N]".
        compile: wrap the model in ``torch.compile`` (first call compiles).
        input_hw: optional fixed clip geometry (H, W) to enforce; None accepts any multiple of 16.
        max_persons: optional largest K to accept.
        attn_impl: "sdpa" or "naive" for every attention block; None keeps the model's.
        cuda_graph: capture the forward as one CUDA graph at ``max_persons`` rois and replay it
            (CUDA only; needs ``input_hw`` and ``max_persons``; not with ``compile``; one clip per call).
        max_batch: the largest number of clips per call to accept; None (default) accepts any
            (1 with ``cuda_graph``).
    """

    name = "torch"

    def __init__(self, model_or_checkpoint: Any, precision: str = "fp32", device: str = "cpu", compile: bool = False,
                 input_hw: tuple[int, int] | None = None, max_persons: int | None = None, *,
                 attn_impl: str | None = None, cuda_graph: bool = False, max_batch: int | None = None) -> None:
        dev = _check_device(device)
        _check_options(precision, attn_impl, cuda_graph, compile, dev, input_hw, max_persons, max_batch)
        if (why := emulated_on_cpu(precision, dev)) is not None:
            warnings.warn(EngineWarning(why), stacklevel=2)
        model = _load(model_or_checkpoint)
        super().__init__(precision=precision, device=str(dev), input_hw=input_hw, max_persons=max_persons,
                         short_side=model.preprocess.short_side, max_batch=1 if cuda_graph else max_batch)
        freeze = dev.type == "cuda" and input_hw is not None
        if freeze or (attn_impl is not None and attn_impl != _model_attn_impl(model)):
            model = copy.deepcopy(model)  # ours to change; the caller's model stays as it is
        if freeze:
            h, w = input_hw  # type: ignore[misc]
            if h % 16 or w % 16:
                raise EngineError("the clip geometry must be multiples of 16", received=f"{h}×{w}",
                                  expected="e.g. 256×464", fix="pad the clip bottom/right to multiples of 16")
            model.freeze_pos_embed(h // 16, w // 16)  # the table becomes a buffer, moved to the GPU below
        if attn_impl is not None:
            from vmaedet.models.videomae import Attention

            for module in model.modules():
                if isinstance(module, Attention):
                    module.attn_impl = attn_impl
        self.model = model.to(dev).eval()
        self._dev = dev
        self._runner: Any = torch.compile(self.model) if compile else self.model
        self.compiled = compile
        self.attn_impl = attn_impl or _model_attn_impl(self.model)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, torch.Tensor] = {}
        if cuda_graph:
            self._capture()

    def _autocast(self) -> Any:
        dtype = _AUTOCAST[self.precision]
        if dtype is None:
            return nullcontext()
        # Autocast's weight-cast cache must be off around graph capture (the cached copies would be
        # freed after capture while the graph still reads them); off in eager too, for one code path.
        return torch.autocast(device_type=self._dev.type, dtype=dtype, cache_enabled=self._dev.type != "cuda")

    def _capture(self) -> None:
        """Static buffers at ``max_persons`` rois, warm-up on a side stream, one captured graph."""
        h, w = self.input_hw  # type: ignore[misc]
        k = int(self.max_persons)  # type: ignore[arg-type]
        side = torch.cuda.Stream(self._dev)
        with torch.cuda.device(self._dev), torch.inference_mode():  # capture and replay on the engine's GPU
            clip = torch.zeros(1, 3, 16, h, w, device=self._dev)  # [1, 3, 16, H, W] the graph's clip
            pad = torch.tensor([_PAD_ROI] * k, dtype=torch.float32, device=self._dev)  # [Kmax, 5] padding rows
            rois = pad.clone()  # [Kmax, 5] the graph's rois, refilled in place per call
            side.wait_stream(torch.cuda.current_stream(self._dev))  # the buffers above are written first
            with torch.cuda.stream(side), self._autocast():
                for _ in range(_GRAPH_WARMUP):
                    self.model(clip, rois)
            torch.cuda.current_stream(self._dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), self._autocast():
                out = self.model(clip, rois)  # [Kmax, 80]
        torch.cuda.synchronize(self._dev)
        self._graph, self._static = graph, {"clip": clip, "rois": rois, "pad": pad, "out": out}

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if self._graph is not None:
            k = rois.shape[0]
            s = self._static
            with torch.cuda.device(self._dev), torch.inference_mode():
                s["clip"].copy_(clip, non_blocking=True)  # [1, 3, 16, H, W]
                s["rois"][:k].copy_(rois, non_blocking=True)  # [K, 5]
                s["rois"][k:].copy_(s["pad"][k:])  # [Kmax − K, 5] padding rows, device to device
                self._graph.replay()
                return s["out"][:k].float().cpu()  # [K, 80]
        clip = clip.to(self._dev, torch.float32, non_blocking=True)  # [B, 3, 16, H, W]
        rois = rois.to(self._dev, torch.float32, non_blocking=True)  # [K, 5]
        with torch.inference_mode(), self._autocast():
            logits = self._runner(clip, rois)  # [K, 80]
        return logits.float().cpu()

    def close(self) -> None:
        self._graph, self._static = None, {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "compile": self.compiled, "variant": getattr(self.model, "variant", None),
                "attn_impl": self.attn_impl, "cuda_graph": self._graph is not None}


def emulated_on_cpu(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` autocast on this CPU is emulated (a sentence), or None where it is native or unknown.

    bf16 is native with ``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo, fp16 with ``avx512_fp16`` or
    ``amx_fp16``; elsewhere torch converts every operand and runs several times slower than fp32 (on an
    AVX2-only EPYC: bf16 5×, fp16 6.5× for vit_micro; bf16 ≈ 50× for the demo's trained model).
    Where /proc/cpuinfo is missing (not Linux) nothing is said.
    """
    native = NATIVE_CPU_FLAGS.get(precision)
    flags = cpu_flags() if device.type == "cpu" and native else None
    if flags is None or native is None or flags & set(native):
        return None
    return (f"{precision} on this CPU is emulated (/proc/cpuinfo lists neither {' nor '.join(native)}), so the torch "
            f"engine runs several times slower than fp32 (5–50× measured on an AVX2-only CPU). Use precision "
            f"fp32 on this CPU (or an int8 export on onnxruntime); {precision} pays on CPUs with "
            f"{' or '.join(native)} and on GPUs")


def _model_attn_impl(model: torch.nn.Module) -> str | None:
    """The attention implementation of the model's blocks (None when it has none)."""
    from vmaedet.models.videomae import Attention

    impls = {m.attn_impl for m in model.modules() if isinstance(m, Attention)}
    return impls.pop() if len(impls) == 1 else None
