"""TensorRT engine builder: exported (FP16) ONNX → strongly typed TensorRT engine + manifest.

``build_engine`` rewrites the RoIAlign head for TensorRT (our ``vmaedet::RoIAlignMax`` plugin or
the built-in ``ROIAlign_TRT``, see :mod:`vmaedet.export.surgery`), parses the graph into a
strongly typed network (precisions come from the graph: FP16 body, FP32 islands), adds an
optimisation profile over the number of persons K, and writes ``<engine>`` plus its sidecar
manifest (TensorRT version, GPU and compute capability, precision, ONNX sha256, plugin version).

TensorRT is imported lazily: this module imports on any machine, and everything TensorRT-specific
fails with :class:`~vmaedet.errors.BackendUnavailable` saying what is missing and how to install it.
"""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from ..errors import BackendUnavailable, ConfigError, EngineError, ExportError
from .manifest import check_artifact_hash, library_versions, read_manifest, sha256_file, write_manifest
from .plugins import PLUGIN_VERSION, ROI_ALIGN_MAX_ID
from .surgery import ROI_ALIGN_MODES, prepare_roi_align

INSTALL_HINT = (
    "install TensorRT on a machine with an NVIDIA GPU and driver: "
    "`pip install tensorrt` with NVIDIA's package index as the extra index URL (NVIDIA's TensorRT "
    "installation guide gives it; the packages on PyPI proper are stubs that download from NVIDIA's index), "
    "or run inside an NGC TensorRT or PyTorch container, which ships TensorRT, CUDA and Triton"
)


class TensorRTStatus(NamedTuple):
    """Whether TensorRT can build/run engines here (a ``(bool, str)`` tuple)."""

    available: bool
    reason: str


def _import_tensorrt() -> Any:
    import tensorrt as trt  # noqa: PLC0415 - optional, imported only when asked for

    return trt


def tensorrt_status() -> TensorRTStatus:
    """Probe TensorRT for real: importable, a CUDA GPU visible, and a ``Builder`` that works.

    Importable is not usable: TensorRT's Python bindings import on a CPU-only machine and only
    fail at CUDA initialisation, so this creates a Builder and asks it for the GPU's properties.
    """
    try:
        trt = _import_tensorrt()
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return TensorRTStatus(False, f"the tensorrt Python package is not importable ({type(exc).__name__}: {exc}); {INSTALL_HINT}")
    try:
        import torch

        if not torch.cuda.is_available():
            return TensorRTStatus(False, f"TensorRT {trt.__version__} imports but no CUDA GPU is visible to torch")
    except ImportError:
        return TensorRTStatus(False, "torch is not importable (vmaedet runs TensorRT on torch CUDA tensors)")
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        ok = builder is not None and builder.platform_has_fast_fp16 is not None
    except Exception as exc:  # noqa: BLE001 - a failing probe means "not usable"
        return TensorRTStatus(False, f"TensorRT {trt.__version__} imports but a Builder cannot be created ({exc})")
    if not ok:
        return TensorRTStatus(False, f"TensorRT {trt.__version__} imports but CUDA initialisation failed")
    return TensorRTStatus(True, f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(0)}")


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`BackendUnavailable` naming what is missing and the fix."""
    status = tensorrt_status()
    if not status.available:
        raise BackendUnavailable("TensorRT is not usable on this machine", received=status.reason,
                                 expected="tensorrt ≥ 10.9 with a CUDA GPU", fix=INSTALL_HINT)
    return _import_tensorrt()


def gpu_identity() -> dict[str, Any]:
    """Name and compute capability of the current CUDA device (what an engine is bound to)."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def check_engine_compat(manifest: Mapping[str, Any], *, tensorrt_version: str, gpu_name: str,
                        compute_capability: str, engine_path: str | Path = "engine") -> None:
    """Refuse an engine built with another TensorRT version or for another GPU.

    TensorRT plans are tied to the exact TensorRT version and to the GPU's compute capability
    (kernels are chosen per SM); a mismatch fails at deserialisation or runs slowly.
    """
    built = manifest.get("tensorrt") or {}
    rebuild = f"rebuild it here: vmaedet export CKPT --trt (the ONNX recorded in {Path(engine_path).name}.json)"
    if built.get("version") != tensorrt_version:
        raise EngineError(f"{engine_path} was built with another TensorRT version", received=built.get("version"),
                          expected=tensorrt_version, fix=rebuild)
    gpu = built.get("gpu") or {}
    if gpu.get("compute_capability") != compute_capability or gpu.get("name") != gpu_name:
        raise EngineError(f"{engine_path} was built for another GPU",
                          received=f"{gpu.get('name')} (sm {gpu.get('compute_capability')})",
                          expected=f"{gpu_name} (sm {compute_capability})", fix=rebuild)


# -- builder ----------------------------------------------------------------------------------------
def _check_build_args(max_persons: int, opt_persons: int, workspace_gb: float, roi_align: str) -> None:
    if not 1 <= opt_persons <= max_persons:
        raise ConfigError("the person profile must satisfy 1 ≤ opt_persons ≤ max_persons",
                          received=f"opt_persons={opt_persons}, max_persons={max_persons}",
                          expected="e.g. --opt-persons 8 --max-persons 64")
    if workspace_gb <= 0:
        raise ConfigError("the builder workspace must be positive", received=workspace_gb, expected="e.g. 4 (GiB)")
    if roi_align not in ROI_ALIGN_MODES:
        raise ConfigError(f"unknown RoIAlign mode {roi_align!r}", received=roi_align,
                          expected=" or ".join(ROI_ALIGN_MODES), fix="--roi-align plugin (default) or builtin")


def _reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    return print if progress else (lambda _msg: None)


def _parse(trt: Any, logger: Any, network: Any, graph_bytes: bytes, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph_bytes, str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT could not parse the ONNX graph", received="; ".join(errors)[:2000],
                          expected="a graph exported by `vmaedet export --precision fp16`",
                          fix="check that the plugin loaded (roi_align=plugin needs Triton) or try --roi-align builtin")


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    max_persons: int,
    opt_persons: int = 8,
    workspace_gb: float = 4.0,
    timing_cache: str | Path | None = None,
    roi_align: str = "plugin",
    progress: bool | Callable[[str], None] = True,
    aot: bool = True,
) -> Path:
    """Build a TensorRT engine from an exported ONNX artifact (and its manifest).

    Args:
        onnx_path: ``.onnx`` written by ``vmaedet export`` (FP16 for TensorRT; its manifest is read).
        out_path: the engine file; its manifest goes to ``<out_path>.json``.
        max_persons / opt_persons: the K profile is min 1, opt ``opt_persons``, max ``max_persons``.
        workspace_gb: builder workspace limit.
        timing_cache: file read (if present) and rewritten after the build; speeds up rebuilds.
        roi_align: "plugin" (fused ``vmaedet::RoIAlignMax``) or "builtin" (``ROIAlign_TRT``).
        progress: print stages and timings (or a callable receiving each message).
        aot: plugin mode only: embed the Triton PTX (engine runs without Python) instead of the JIT callback.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: bad profile/workspace/mode.  BackendUnavailable: no TensorRT/GPU here.
        ExportError: parse or build failure.
    """
    _check_build_args(max_persons, opt_persons, workspace_gb, roi_align)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    source = read_manifest(onnx_path)
    check_artifact_hash(onnx_path, source)
    trt = require_tensorrt()
    say = _reporter(progress)
    import onnx

    t0 = time.perf_counter()
    graph = prepare_roi_align(onnx.load(str(onnx_path)), roi_align, aot=aot)
    graph_bytes = graph.SerializeToString()
    if roi_align == "plugin":
        from .plugins import roi_align_max_trt  # noqa: F401 - registers the tensorrt.plugin definitions
    say(f"graph surgery ({roi_align} RoIAlign): {time.perf_counter() - t0:.1f} s")

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    t1 = time.perf_counter()
    _parse(trt, logger, network, graph_bytes, onnx_path)
    say(f"parsed {network.num_layers} layers: {time.perf_counter() - t1:.1f} s")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    names = source["input"]["names"]
    profile = builder.create_optimization_profile()
    profile.set_shape(names["rois"], (1, 5), (opt_persons, 5), (max_persons, 5))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    t2 = time.perf_counter()
    say(f"building the engine (K profile 1/{opt_persons}/{max_persons}, workspace {workspace_gb:g} GiB); this takes minutes")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)",
                          fix="retry with a larger --workspace-gb, or --roi-align builtin to rule out the plugin")
    build_s = time.perf_counter() - t2
    say(f"built in {build_s:.1f} s")
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
        say(f"timing cache saved to {cache_path}")

    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(memoryview(plan))
    tmp.replace(out_path)
    manifest = engine_manifest(source, out_path, trt_version=trt.__version__, gpu=gpu_identity(), roi_align=roi_align,
                               aot=aot, onnx_sha256=source["artifact"]["sha256"],
                               parsed_sha256=_sha256_bytes(graph_bytes),
                               profile=(1, opt_persons, max_persons), workspace_gb=workspace_gb, build_s=build_s)
    write_manifest(out_path, manifest)
    say(f"wrote {out_path} ({out_path.stat().st_size / 2**20:.1f} MiB) + {out_path.name}.json")
    return out_path


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_manifest(source: Mapping[str, Any], engine_path: Path, *, trt_version: str, gpu: Mapping[str, Any],
                    roi_align: str, aot: bool, onnx_sha256: str, parsed_sha256: str,
                    profile: tuple[int, int, int], workspace_gb: float, build_s: float) -> dict[str, Any]:
    """The engine's manifest: the ONNX artifact's contract plus what binds the plan to this machine."""
    manifest = copy.deepcopy(dict(source))
    manifest["artifact"] = {"file": engine_path.name, "format": "tensorrt", "sha256": sha256_file(engine_path),
                            "bytes": engine_path.stat().st_size, "onnx_file": source["artifact"]["file"],
                            "onnx_sha256": onnx_sha256}
    manifest["input"] = {**manifest["input"], "max_persons": profile[2]}
    manifest["tensorrt"] = {
        "version": trt_version, "gpu": dict(gpu), "strongly_typed": True,
        "roi_align": {"mode": roi_align, "plugin": ROI_ALIGN_MAX_ID if roi_align == "plugin" else "ROIAlign_TRT",
                      "plugin_version": PLUGIN_VERSION if roi_align == "plugin" else "2",
                      "aot": bool(aot) if roi_align == "plugin" else None},
        "parsed_onnx_sha256": parsed_sha256, "profile_persons": list(profile), "workspace_gb": workspace_gb,
        "build_seconds": round(build_s, 1),
    }
    manifest["versions"] = library_versions()
    return manifest
