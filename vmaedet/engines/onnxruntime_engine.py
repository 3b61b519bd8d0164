"""The onnxruntime engine: CPU, CUDA and TensorRT execution providers, driven by the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import BackendUnavailable, EngineError
from ..export.manifest import open_artifact
from .base import Engine

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed", received=str(exc),
                                 fix="pip install onnxruntime (CPU) or 'vmaedet[gpu]' (onnxruntime-gpu)") from exc
    return ort


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Full provider names; default CUDA (when present) then CPU.  Refuses unavailable ones."""
    if requested is None:
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    missing = [p for p in names if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime execution provider(s) not available here: {', '.join(missing)}",
            received=list(requested), expected=f"some of {list(available)}",
            fix="for CUDA/TensorRT providers: pip install 'vmaedet[gpu]' (onnxruntime-gpu) on a machine with a GPU",
        )
    return names


class OnnxRuntimeEngine(Engine):
    """Run an exported ONNX artifact with onnxruntime.

    Geometry, person capacity, precision and the graph's input/output names come from the sidecar
    manifest ``<path>.json``; an artifact without one, or whose bytes differ from what the manifest
    records, is refused.  Inputs are fed as host numpy arrays whatever the execution provider, so
    ``device`` (where callers should keep the clip) is always ``"cpu"``; the providers in use are
    ``providers``.

    Args:
        path: the ``.onnx`` file.
        providers: provider names or aliases ("cpu", "cuda", "tensorrt"); default CUDA if present, then CPU.
        threads: intra-op threads (default: onnxruntime's choice).
        input_hw / precision / max_persons: what the caller expects; a manifest that differs is refused.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None, *,
                 input_hw: tuple[int, int] | None = None, precision: str | None = None,
                 max_persons: int | None = None) -> None:
        path = Path(path)
        manifest = open_artifact(path, "onnx", input_hw=input_hw, precision=precision, max_persons=max_persons)
        ort = _import_ort()
        chosen = resolve_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=chosen)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise EngineError(
                f"onnxruntime {ort.__version__} cannot load {path}",
                received=str(exc).splitlines()[0][:300],
                expected=f"an opset-{manifest['opset']} graph written with onnxruntime {manifest['versions'].get('onnxruntime')}",
                fix="upgrade onnxruntime, or re-export the model with this installation",
            ) from exc
        self.names: dict[str, str] = dict(manifest["input"]["names"])  #: graph names of clip, rois, output
        self._check_graph(manifest, path)
        self.providers: list[str] = list(self.session.get_providers())  #: execution providers in use, first preferred
        # inputs are host arrays (numpy feeds) on every provider: callers keep clips on the CPU
        super().__init__(precision=manifest["precision"], device="cpu",
                         input_hw=tuple(manifest["input"]["clip_hw"]), max_persons=manifest["input"]["max_persons"],
                         short_side=int(manifest["input"].get("short_side", 256)))
        self.path = path
        self.manifest = manifest

    def _check_graph(self, manifest: dict[str, Any], path: Path) -> None:
        """The graph's inputs and output must be the ones the manifest names."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        clip = inputs.get(self.names["clip"])
        if (clip is None or list(clip.shape) != list(manifest["input"]["clip_shape"]) or self.names["rois"] not in inputs
                or self.names["output"] not in outputs):
            raise EngineError(f"the graph of {path} does not match its manifest",
                              received={"inputs": {n: i.shape for n, i in inputs.items()}, "outputs": sorted(outputs)},
                              expected=f"inputs {self.names['clip']} {manifest['input']['clip_shape']}, "
                                       f"{self.names['rois']} [K, 5]; output {self.names['output']}",
                              fix="re-export the model")

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        feeds = {
            self.names["clip"]: np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32),  # [1, 3, 16, H, W]
            self.names["rois"]: np.ascontiguousarray(rois.detach().cpu().numpy(), dtype=np.float32),  # [K, 5]
        }
        (logits,) = self.session.run([self.names["output"]], feeds)  # [K, 80]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "artifact": str(self.path)}
