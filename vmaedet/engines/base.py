"""One interface for every inference backend (torch, onnxruntime, TensorRT).

``Engine.infer(clip, rois) -> logits`` has the same meaning everywhere: ``clip`` is
``[B, 3, 16, H, W]`` float32 normalised and padded to multiples of 16 (the engine's geometry),
``rois`` is ``[K, 5]`` float32 (batch index, x1, y1, x2, y2) in clip pixels, already extended,
and the result is ``[K, 80]`` float32 logits on the CPU (torch tensor), row k for roi k.  K may be 0.

Batching (several cameras, one call): B clips are stacked on axis 0 and column 0 of each roi is
the index of its clip, an integer in ``[0, B)``; the logits of a batched call equal those of one
call per clip (up to float rounding).  ``Engine.max_batch`` is the largest B an engine accepts
(``None``: any — the torch engine; 1 for an artifact exported without a batch axis, the default);
``max_persons`` bounds the total K of one call, over all its clips.  :meth:`Engine.check_inputs`
refuses ``B > max_batch`` (the fix: export with ``max_batch ≥ B``) and batch indices that are not
integers naming a clip of the call.

:func:`open_engine` is the one way from a model, a checkpoint or an exported artifact to an engine:
an artifact runs on the engine its manifest's format names, anything else on the backend named
(``torch`` by default).  Underneath, engines are created by name through the registry
(``create_engine("onnxruntime", path, …)``); optional backends are imported lazily inside their
module, so a missing backend gives a :class:`~vmaedet.errors.BackendUnavailable` naming the extra
to install.
"""

from __future__ import annotations

import importlib
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import torch

from vmaedet.constants import CLIP_LEN
from vmaedet.artifacts import FORMAT_ENGINE, FORMAT_ENGINES, manifest_path, read_manifest
from vmaedet.errors import BackendUnavailable, EngineError

#: name → "module:Class" (imported on first use).
_REGISTRY: dict[str, str] = {
    "torch": "vmaedet.engines.torch_engine:TorchEngine",
    "onnxruntime": "vmaedet.engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "vmaedet.engines.tensorrt_engine:TensorRTEngine",
    "openvino": "vmaedet.engines.openvino_engine:OpenVINOEngine",
}


def import_backend(module: str, what: str, fix: str) -> Any:
    """``import module``, or :class:`BackendUnavailable` saying that ``what`` is not installed and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{what} is not installed", received=str(exc), expected=f"the {module} package",
                                 fix=fix) from exc


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
        max_persons: largest K accepted in one call (over all its clips), or None.
        max_batch: largest number of clips B accepted in one call, or None for any (default 1).
        short_side: short side (px) frames are resized to before padding (the seed: 256; models
            trained smaller record theirs in the checkpoint and the manifest).
    """

    name: str = "base"

    def __init__(self, precision: str = "fp32", device: str = "cpu", input_hw: tuple[int, int] | None = None,
                 max_persons: int | None = None, short_side: int = 256, max_batch: int | None = 1) -> None:
        self.precision = precision
        self.short_side = short_side
        self.device = device
        self.input_hw = input_hw
        self.max_persons = max_persons
        self.max_batch = max_batch

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release backend resources (idempotent)."""

    # -- contract -------------------------------------------------------------------------
    def check_inputs(self, clip: torch.Tensor, rois: torch.Tensor) -> None:
        """Refuse inputs outside the contract (module docstring), each error with what was expected and the fix."""
        if self.max_batch == 1:
            expected = "[1, 3, 16, H, W]"
        else:
            expected = "[B, 3, 16, H, W] with " + (f"1 ≤ B ≤ {self.max_batch}" if self.max_batch else "B ≥ 1")
        if clip.ndim != 5 or clip.shape[0] < 1 or clip.shape[1] != 3 or clip.shape[2] != CLIP_LEN:
            raise EngineError("clip has the wrong shape", received=tuple(clip.shape), expected=expected)
        b = int(clip.shape[0])
        if self.max_batch is not None and b > self.max_batch:
            raise EngineError(
                f"clip has the wrong shape: {b} clips in one call, more than the {self.name} engine takes",
                received=f"B = {b} (clip {tuple(clip.shape)})", expected=f"{expected} (max_batch {self.max_batch})",
                fix=f"split the batch into calls of ≤ {self.max_batch} clips, or export with max_batch ≥ {b} "
                    f"(e.g. `vmaedet export CKPT --max-batch {b}`)",
            )
        if self.input_hw is not None and tuple(clip.shape[-2:]) != tuple(self.input_hw):
            raise EngineError(
                f"{self.name} engine was built for a fixed clip geometry",
                received=f"H×W = {clip.shape[-2]}×{clip.shape[-1]}",
                expected=f"{self.input_hw[0]}×{self.input_hw[1]}",
                fix="re-export for this source size (e.g. `vmaedet export CKPT --source-size 1920x1080`) "
                    "or resize the input",
            )
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise EngineError("rois have the wrong shape", received=tuple(rois.shape), expected="[K, 5]")
        if self.max_persons is not None and rois.shape[0] > self.max_persons:
            raise EngineError(
                "more persons than the engine was built for",
                received=rois.shape[0], expected=f"≤ {self.max_persons}",
                fix="keep the top-scoring persons or re-export for more persons (max_persons)",
            )
        if rois.shape[0]:
            index = rois[:, 0].double()  # [K] the clip of each roi
            bad = (index != index.round()) | (index < 0) | (index >= b)  # NaN is bad too
            if bool(bad.any()):
                raise EngineError(
                    "rois name clips that are not in the call (column 0 is the index of the roi's clip)",
                    received=f"batch indices {index[bad][:5].tolist()} with B = {b} clip(s)",
                    expected=f"integers in [0, {b - 1}]",
                    fix="give each roi the index of its clip in this call's batch (0 for a single clip)",
                )

    def infer(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, 3, 16, H, W]`` + rois ``[K, 5]`` (column 0: the roi's clip) → logits ``[K, 80]`` float32 on the CPU."""
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


#: Artifact file suffixes → engine, for an artifact whose manifest is missing (the engine then says so).
_SUFFIX_ENGINE = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}


def artifact_backend(source: Any) -> str | None:
    """The engine an exported artifact runs on, or None when ``source`` is not an artifact.

    By the manifest's ``artifact.format`` when ``<source>.json`` exists; else by the suffix
    (``.onnx``, ``.engine``, ``.plan``: the engine then refuses the artifact without a manifest).

    Raises:
        EngineError: the manifest is unreadable, of another format, or names an unknown artifact format.
    """
    if not isinstance(source, (str, Path)):
        return None
    path = Path(source)
    if manifest_path(path).exists() and path.exists():
        fmt = read_manifest(path).artifact.format
        if fmt not in FORMAT_ENGINE:
            raise EngineError(f"unknown artifact format {fmt!r} in the manifest of {path}",
                              received=fmt, expected=" or ".join(FORMAT_ENGINE), fix="re-export the model")
        return FORMAT_ENGINE[fmt]
    return _SUFFIX_ENGINE.get(path.suffix.lower())


def open_engine(source: Any, backend: str | None = None, *, device: str | None = None, precision: str | None = None,
                **options: Any) -> Engine:
    """The one way from a model, a checkpoint or an exported artifact to an :class:`Engine`.

    Args:
        source: an exported artifact (``.onnx`` / TensorRT plan with its manifest), a checkpoint
            path, or an :class:`~vmaedet.models.ActionDetector`.
        backend: the engine name (:func:`list_engines`).  None: an artifact's manifest decides
            (``onnx`` → onnxruntime, ``tensorrt`` → tensorrt); anything else runs on torch.  Given
            for an artifact, it must be an engine of the artifact's format
            (:data:`~vmaedet.artifacts.FORMAT_ENGINES`: ``onnx`` → onnxruntime or openvino).
        device: where the engine runs ("cpu", "cuda", "cuda:N"); None keeps the engine's default
            (torch: the CPU; onnxruntime: CUDA when present, else the CPU; TensorRT: the current GPU).
        precision: torch: the precision to run in (default fp32); an artifact: the precision it
            must have been exported in (another is refused); openvino: the precision to run the fp32
            artifact in (fp32, or bf16 on a CPU with native bf16).
        **options: passed to the engine (``providers``, ``threads``, ``cuda_graph``, ``input_hw``, …).

    Raises:
        EngineError: unknown backend, a backend that does not run this artifact, or what the engine refuses.
        BackendUnavailable: the backend is not installed or not usable here.
    """
    if backend is not None and backend not in _REGISTRY:
        raise EngineError(f"unknown engine {backend!r}", received=backend, expected=", ".join(list_engines()))
    artifact = artifact_backend(source)
    if artifact is not None:
        runs_it = next((engines for engines in FORMAT_ENGINES.values() if artifact in engines), (artifact,))
        if backend is not None and backend not in runs_it:
            raise EngineError(f"{source} is an artifact of the {artifact} engine, not of {backend}",
                              received=f"backend {backend!r}",
                              expected=f"{' or '.join(map(repr, runs_it))} (or none: the manifest decides)",
                              fix=f"open it with the {' or '.join(runs_it)} engine, or export the model for {backend}")
        name = backend or artifact
    else:
        name = backend or "torch"
    kwargs = dict(options)
    if device is not None:
        kwargs["device"] = device
    if precision is not None:
        kwargs["precision"] = precision
    return create_engine(name, source, **kwargs)


# -- the fastest engine available here ----------------------------------------------------------------
def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def engine_availability(device: str | None = None) -> dict[str, bool]:
    """What can run here: ``cuda`` (the device asks for a GPU, or "auto"/None and one is visible),
    ``openvino``, ``onnxruntime``, ``onnxruntime-cuda`` (its CUDA provider) and ``tensorrt`` (importable)."""
    wants = str(device or "auto").strip().lower()
    cuda = torch.cuda.is_available() and (wants == "auto" or wants.startswith("cuda"))
    ort_cuda = False
    if _importable("onnxruntime"):
        try:
            import onnxruntime

            ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        except Exception:  # noqa: BLE001 - a broken install: not available
            ort_cuda = False
    return {"cuda": cuda, "openvino": _importable("openvino"), "onnxruntime": _importable("onnxruntime"),
            "onnxruntime-cuda": ort_cuda, "tensorrt": _importable("tensorrt")}


def choose_backend(source: Any, *, device: str | None = None,
                   availability: dict[str, bool] | None = None) -> tuple[str, str]:
    """The fastest engine available here for ``source``, and why, in words: ``(name, reason)``.

    Order — on the CPU: OpenVINO > onnxruntime > torch; on a GPU: TensorRT > onnxruntime (CUDA) >
    torch (CUDA).  Each engine can only run what it runs: a TensorRT plan runs on ``tensorrt``; an
    ONNX artifact on OpenVINO (fp32 or int8 exports, CPU) or onnxruntime; a checkpoint or a model on
    torch (export it for the others).

    Args:
        source: an artifact path, a checkpoint path or a model.
        device: "auto"/None (a GPU when one is visible), "cpu", "cuda[:N]".
        availability: what is installed/usable (default :func:`engine_availability`; tests pass their own).

    Raises:
        EngineError: the artifact's manifest is unreadable or names an unknown format.
    """
    have = availability if availability is not None else engine_availability(device)
    gpu = bool(have.get("cuda"))
    where = "a GPU" if gpu else "the CPU"
    artifact = artifact_backend(source)
    if artifact == "tensorrt":
        return "tensorrt", "a TensorRT plan runs on TensorRT only"
    if artifact is None:
        return "torch", (f"a checkpoint runs on torch ({where}); export it (`vmaedet export CKPT`) "
                         "for onnxruntime/OpenVINO/TensorRT")
    precision = None
    if manifest_path(Path(source)).exists():
        precision = read_manifest(Path(source)).precision
    if gpu:
        if have.get("onnxruntime-cuda"):
            return "onnxruntime", ("an ONNX artifact on a GPU: onnxruntime's CUDA provider (TensorRT needs a plan: "
                                   "`vmaedet export CKPT --trt`)")
        if have.get("onnxruntime"):
            return "onnxruntime", "an ONNX artifact: onnxruntime (no CUDA provider here, so on the CPU)"
    if have.get("openvino") and precision in (None, "fp32", "int8"):
        return "openvino", f"an {precision or 'ONNX'} ONNX artifact on the CPU: OpenVINO is the fastest CPU engine here"
    if have.get("onnxruntime"):
        why = "OpenVINO is not installed" if not have.get("openvino") else f"OpenVINO does not run {precision} exports"
        return "onnxruntime", f"an ONNX artifact on the CPU: onnxruntime ({why})"
    return "onnxruntime", "an ONNX artifact runs on onnxruntime or OpenVINO, and neither is installed (opening it will say how)"


def artifact_cache_dir(artifact: Path, suffix: str, kind: str) -> Path:
    """An engine's cache folder for ``artifact``: ``<artifact><suffix>/`` beside it, or, when that folder is
    read-only, ``$XDG_CACHE_HOME/vmaedet/<kind>/<the artifact's absolute path, made a name>`` (default
    ``~/.cache``)."""
    beside = artifact.with_name(artifact.name + suffix)
    if os.access(beside if beside.exists() else artifact.parent, os.W_OK):
        return beside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vmaedet" / kind / re.sub(r"[^A-Za-z0-9_.-]", "_", str(artifact.resolve()).strip("/"))
