"""One interface for every inference backend (torch, onnxruntime, TensorRT).

``Engine.infer(clip, rois) -> logits`` has the same meaning everywhere: ``clip`` is
``[1, 3, 16, H, W]`` float32 normalised and padded to multiples of 16 (the engine's geometry),
``rois`` is ``[K, 5]`` float32 (batch index, x1, y1, x2, y2) in clip pixels, already extended,
and the result is ``[K, 80]`` float32 logits on the CPU (torch tensor).  K may be 0.

Engines are created by name through the registry (``create_engine("onnxruntime", path, …)``);
optional backends are imported lazily inside their module, so a missing backend gives a
:class:`~vmaedet.errors.BackendUnavailable` naming the extra to install.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch

from vmaedet.errors import BackendUnavailable, EngineError

#: name → "module:Class" (imported on first use).
_REGISTRY: dict[str, str] = {
    "torch": "vmaedet.engines.torch_engine:TorchEngine",
    "onnxruntime": "vmaedet.engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "vmaedet.engines.tensorrt_engine:TensorRTEngine",
}


def register_engine(name: str, target: str) -> None:
    """Register an engine class given as ``"module:Class"``."""
    _REGISTRY[name] = target


def list_engines() -> list[str]:
    return sorted(_REGISTRY)


class Engine(ABC):
    """Base class: input checking once here, backends implement ``_infer_impl``.

    Attributes:
        name: registry name of the backend.
        precision: "fp32", "bf16" or "fp16".
        device: "cpu" or "cuda[:i]".
        input_hw: (H, W) of the clip the engine accepts, or None if any multiple of 16.
        max_persons: largest K accepted, or None.
        short_side: short side (px) frames are resized to before padding (the seed: 256; models
            trained smaller record theirs in the checkpoint and the manifest).
    """

    name: str = "base"

    def __init__(self, precision: str = "fp32", device: str = "cpu", input_hw: tuple[int, int] | None = None,
                 max_persons: int | None = None, short_side: int = 256) -> None:
        self.precision = precision
        self.short_side = short_side
        self.device = device
        self.input_hw = input_hw
        self.max_persons = max_persons

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release backend resources (idempotent)."""

    # -- contract -------------------------------------------------------------------------
    def check_inputs(self, clip: torch.Tensor, rois: torch.Tensor) -> None:
        if clip.ndim != 5 or clip.shape[0] != 1 or clip.shape[1] != 3 or clip.shape[2] != 16:
            raise EngineError("clip has the wrong shape", received=tuple(clip.shape), expected="[1, 3, 16, H, W]")
        if self.input_hw is not None and tuple(clip.shape[-2:]) != tuple(self.input_hw):
            raise EngineError(
                f"{self.name} engine was built for a fixed clip geometry",
                received=f"H×W = {clip.shape[-2]}×{clip.shape[-1]}",
                expected=f"{self.input_hw[0]}×{self.input_hw[1]}",
                fix="re-export for this source size (vmaedet export --source-size WxH) or resize the input",
            )
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise EngineError("rois have the wrong shape", received=tuple(rois.shape), expected="[K, 5]")
        if self.max_persons is not None and rois.shape[0] > self.max_persons:
            raise EngineError(
                "more persons than the engine was built for",
                received=rois.shape[0], expected=f"≤ {self.max_persons}",
                fix="keep the top-scoring persons or re-export with a larger --max-persons",
            )

    def infer(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Clip ``[1, 3, 16, H, W]`` + rois ``[K, 5]`` → logits ``[K, 80]`` float32 on the CPU."""
        self.check_inputs(clip, rois)
        if rois.shape[0] == 0:
            return torch.zeros((0, 80), dtype=torch.float32)
        return self._infer_impl(clip, rois)

    @abstractmethod
    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]:
        """Short description for tables and stats."""
        return {"engine": self.name, "precision": self.precision, "device": self.device}


def engine_class(name: str) -> Callable[..., Engine]:
    """The class registered under ``name`` (imports its module)."""
    if name not in _REGISTRY:
        raise EngineError(f"unknown engine {name!r}", received=name, expected=", ".join(list_engines()))
    module_name, cls_name = _REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise BackendUnavailable(
            f"the {name} engine cannot be imported ({exc})",
            fix="pip install 'vmaedet[gpu]' for CUDA backends; TensorRT comes from NVIDIA's index (see README)",
        ) from exc
    return getattr(module, cls_name)


def create_engine(name: str, *args: Any, **kwargs: Any) -> Engine:
    """Create an engine by registry name, e.g. ``create_engine("onnxruntime", "model.onnx")``."""
    return engine_class(name)(*args, **kwargs)
