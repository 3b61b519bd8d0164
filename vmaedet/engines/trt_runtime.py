"""TensorRT on the running side: which TensorRT runtime is usable here, and whether a plan fits it.

Shared by the engine (:mod:`vmaedet.engines.tensorrt_engine`) and the builder
(:mod:`vmaedet.export.tensorrt`, which imports these from here: engines never import export).

Supported TensorRT: **10.9 ≤ version < 12**.  Running an engine needs only a ``Runtime``:
:func:`tensorrt_runtime_status` accepts ``tensorrt``, then the runtime-only ``tensorrt_lean`` and
``tensorrt_dispatch`` packages (which run version-compatible plans).  TensorRT is imported lazily
(``importlib``): this module imports on any machine.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from vmaedet.artifacts import ArtifactManifest, GpuIdentity, TensorRTInfo
from vmaedet.errors import BackendUnavailable, EngineError

#: Supported TensorRT versions: MIN_VERSION ≤ (major, minor) < (MAX_MAJOR_EXCLUSIVE, 0).
MIN_VERSION = (10, 9)
MAX_MAJOR_EXCLUSIVE = 12
SUPPORTED_RANGE = f"{MIN_VERSION[0]}.{MIN_VERSION[1]} ≤ TensorRT < {MAX_MAJOR_EXCLUSIVE}"
#: Python modules that provide a TensorRT ``Runtime``, in the order they are tried for running engines.
RUNTIME_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")

INSTALL_HINT = (
    f"install TensorRT ({SUPPORTED_RANGE}) on a machine with an NVIDIA GPU and driver: "
    "`pip install tensorrt` with NVIDIA's package index as the extra index URL (NVIDIA's TensorRT "
    "installation guide gives it; the packages on PyPI proper are stubs that download from NVIDIA's index), "
    "or run inside an NGC TensorRT or PyTorch container, which ships TensorRT, CUDA and Triton"
)


class TensorRTStatus(NamedTuple):
    """Whether TensorRT can build/run engines here (a ``(bool, str)`` tuple)."""

    available: bool
    reason: str


def _import_tensorrt(name: str = "tensorrt") -> Any:
    """Import a TensorRT Python module (``tensorrt``, ``tensorrt_lean`` or ``tensorrt_dispatch``)."""
    return importlib.import_module(name)


def parse_version(version: str) -> tuple[int, int] | None:
    """``"10.13.0.35"`` → ``(10, 13)``; None when the string does not start with ``major.minor``."""
    m = re.match(r"\s*(\d+)\.(\d+)", str(version))
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_problem(version: str) -> str | None:
    """Why TensorRT ``version`` is not supported (a sentence), or None when it is."""
    parsed = parse_version(version)
    if parsed is None:
        return f"TensorRT reports an unreadable version {version!r}; vmaedet supports {SUPPORTED_RANGE}"
    if parsed < MIN_VERSION:
        return (f"TensorRT {version} is too old: vmaedet supports {SUPPORTED_RANGE} "
                f"(tensorrt.plugin's AOT plugins and the strongly typed build it relies on)")
    if parsed[0] >= MAX_MAJOR_EXCLUSIVE:
        return (f"TensorRT {version} is newer than vmaedet supports ({SUPPORTED_RANGE}); a new major "
                "release removes APIs, so it is refused rather than half-working")
    return None


def _cuda_problem(module: str, version: str) -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not importable (vmaedet runs TensorRT on torch CUDA tensors)"
    if not torch.cuda.is_available():
        return f"{module} {version} imports but no CUDA GPU is visible to torch"
    return None


def _probe(module: str, *, need_builder: bool) -> tuple[Any | None, str]:
    """Import ``module``, check its version and CUDA, create a Builder (or a Runtime); (module or None, reason)."""
    try:
        trt = _import_tensorrt(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return None, f"the {module} Python package is not importable ({type(exc).__name__}: {exc})"
    version = str(getattr(trt, "__version__", "unknown"))
    problem = version_problem(version) or _cuda_problem(module, version)
    if problem:
        return None, problem
    what = "Builder" if need_builder else "Runtime"
    factory = getattr(trt, what, None)
    if factory is None:
        return None, (f"{module} {version} has no {what}" +
                      (" (a runtime-only install: it runs engines but cannot build them)" if need_builder else ""))
    try:
        obj = factory(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:  # noqa: BLE001 - a failing probe means "not usable"
        return None, f"{module} {version} imports but a {what} cannot be created ({type(exc).__name__}: {exc})"
    if obj is None:
        return None, f"{module} {version} imports but CUDA initialisation failed (no {what})"
    return trt, f"{module} {version}"


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(torch.cuda.current_device())


def tensorrt_runtime_status() -> TensorRTStatus:
    """Can engines be **run** here: ``tensorrt``, ``tensorrt_lean`` or ``tensorrt_dispatch`` with a working ``Runtime``.

    The reason of a usable status starts with the module name (``"tensorrt_lean 10.13.0 on …"``).
    """
    reasons = []
    for module in RUNTIME_MODULES:
        trt, reason = _probe(module, need_builder=False)
        if trt is not None:
            return TensorRTStatus(True, f"{reason} on {_device_name()}")
        reasons.append(reason)
    return TensorRTStatus(False, "; ".join(reasons) + f"; {INSTALL_HINT}")


def require_tensorrt_runtime() -> tuple[Any, str]:
    """``(module, name)`` of the first usable TensorRT runtime (:data:`RUNTIME_MODULES`), or :class:`BackendUnavailable`."""
    reasons = []
    for module in RUNTIME_MODULES:
        trt, reason = _probe(module, need_builder=False)
        if trt is not None:
            return trt, module
        reasons.append(reason)
    raise BackendUnavailable("TensorRT is not usable on this machine (running an engine needs a TensorRT runtime "
                             "and a CUDA GPU)", received="; ".join(reasons),
                             expected=f"tensorrt, tensorrt_lean or tensorrt_dispatch with {SUPPORTED_RANGE}",
                             fix=INSTALL_HINT)


def gpu_identity(device: Any = None) -> dict[str, Any]:
    """Name and compute capability of a CUDA device (default: the current one), what an engine is bound to."""
    import torch

    index = torch.cuda.current_device() if device is None else torch.device(device).index
    if index is None:
        index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def check_engine_compat(manifest: ArtifactManifest | TensorRTInfo | Mapping[str, Any], *, tensorrt_version: str,
                        gpu_name: str, compute_capability: str, engine_path: str | Path = "engine") -> None:
    """Refuse an engine built with another TensorRT version or for another GPU.

    TensorRT plans are tied to the exact TensorRT version and to the GPU's compute capability
    (kernels are chosen per SM); a mismatch fails at deserialisation or runs slowly.  A plan built
    version-compatible (``tensorrt.version_compatible`` in the manifest) runs on the same or a later
    TensorRT; the GPU must still match.

    Args:
        manifest: the engine's manifest, its ``tensorrt`` section, or a manifest's JSON object
            (``{"tensorrt": {...}}``).
    """
    if isinstance(manifest, ArtifactManifest):
        built = manifest.tensorrt or TensorRTInfo()
    elif isinstance(manifest, TensorRTInfo):
        built = manifest
    else:
        built = TensorRTInfo.from_dict(manifest.get("tensorrt"), source=str(engine_path))
    rebuild = f"rebuild it here: vmaedet export CKPT --trt (the ONNX recorded in {Path(engine_path).name}.json)"
    problem = version_problem(tensorrt_version)
    if problem:
        raise EngineError(f"cannot run {engine_path}: {problem}", received=tensorrt_version,
                          expected=SUPPORTED_RANGE, fix=INSTALL_HINT)
    built_version = built.version
    if built.version_compatible:
        here, there = parse_version(tensorrt_version), parse_version(str(built_version))
        if there is None or here is None or here < there:
            raise EngineError(f"{engine_path} is version-compatible but was built with a newer TensorRT than this one",
                              received=built_version, expected=f"≤ {tensorrt_version}", fix=rebuild)
    elif built_version != tensorrt_version:
        raise EngineError(f"{engine_path} was built with another TensorRT version", received=built_version,
                          expected=tensorrt_version, fix=rebuild)
    gpu = built.gpu or GpuIdentity(None, None)
    if gpu.compute_capability != compute_capability or gpu.name != gpu_name:
        raise EngineError(f"{engine_path} was built for another GPU",
                          received=f"{gpu.name} (sm {gpu.compute_capability})",
                          expected=f"{gpu_name} (sm {compute_capability})", fix=rebuild)
