"""The PyTorch engine: eager (optionally ``torch.compile``), fp32 or bf16/fp16 autocast, CPU or CUDA."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..errors import BackendUnavailable, EngineError
from .base import Engine

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _load(model_or_checkpoint: Any) -> torch.nn.Module:
    from ..models.detector import ActionDetector

    if isinstance(model_or_checkpoint, (str, Path)):
        from ..models.checkpoints import load_detector

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
    return dev


class TorchEngine(Engine):
    """Run an :class:`~vmaedet.models.ActionDetector` in PyTorch.

    Args:
        model_or_checkpoint: the model, or a checkpoint path (loaded with ``load_detector``).
        precision: "fp32" (plain), "bf16" or "fp16" (autocast; weights stay fp32).
        device: "cpu" or "cuda[:N]".
        compile: wrap the model in ``torch.compile`` (first call compiles).
        input_hw: optional fixed clip geometry (H, W) to enforce; None accepts any multiple of 16.
        max_persons: optional largest K to accept.
    """

    name = "torch"

    def __init__(self, model_or_checkpoint: Any, precision: str = "fp32", device: str = "cpu", compile: bool = False,
                 input_hw: tuple[int, int] | None = None, max_persons: int | None = None) -> None:
        if precision not in _AUTOCAST:
            raise EngineError(f"unsupported precision {precision!r} for the torch engine",
                              received=precision, expected=", ".join(_AUTOCAST))
        dev = _check_device(device)
        model = _load(model_or_checkpoint)
        super().__init__(precision=precision, device=str(dev), input_hw=input_hw, max_persons=max_persons,
                         short_side=int(getattr(model, "short_side", 256)))
        self.model = model.to(dev).eval()
        self._dev = dev
        self._runner: Any = torch.compile(self.model) if compile else self.model
        self.compiled = compile

    def _autocast(self) -> Any:
        dtype = _AUTOCAST[self.precision]
        return nullcontext() if dtype is None else torch.autocast(device_type=self._dev.type, dtype=dtype)

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        clip = clip.to(self._dev, torch.float32, non_blocking=True)  # [1, 3, 16, H, W]
        rois = rois.to(self._dev, torch.float32, non_blocking=True)  # [K, 5]
        with torch.inference_mode(), self._autocast():
            logits = self._runner(clip, rois)  # [K, 80]
        return logits.float().cpu()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "compile": self.compiled, "variant": getattr(self.model, "variant", None)}
