"""TensorRT engine builder: exported (FP16) ONNX → strongly typed TensorRT engine + manifest.

``build_engine`` rewrites the RoIAlign head for TensorRT (our ``vmaedet::RoIAlignMax`` plugin or
the built-in ``ROIAlign_TRT``, see :mod:`vmaedet.export.surgery`), parses the graph into a
strongly typed network (precisions come from the graph: FP16 body, FP32 islands), adds an
optimisation profile over the number of persons K (and, for an ONNX exported with ``max_batch`` > 1,
over the number of clips B of one call), and writes ``<engine>`` plus its sidecar
manifest (TensorRT version, GPU and compute capability, precision, ONNX sha256, plugin version,
AOT or JIT plugin, layer count, whether the engine's layers show fused attention).

An int8 export (``precision`` "int8": the QDQ graph of :mod:`vmaedet.export.int8`) goes through the
same path: in a strongly typed network the Q/DQ nodes *are* the precisions (explicit quantization),
so no INT8 builder flag and no calibrator is set; the builder only checks that every Q/DQ is
symmetric int8 with a constant scale (what explicit quantization requires) and records it under
``tensorrt.explicit_quantization``.  This path is checked against the fake bindings of the tests;
it has not been run on a real TensorRT.

Supported TensorRT: **10.9 ≤ version < 12** (10.9 is the first release with ``tensorrt.plugin``'s
``aot_impl``; 11.x removed the weak-typing APIs such as ``Builder.platform_has_fast_fp16`` and
``ICudaEngine.device_memory_size``).  This module and the engine use only APIs present in both 10.x
and 11.x; any other version is refused with a clear error before anything is built or loaded.

Building needs the full ``tensorrt`` package (a ``Builder``, the ONNX parser).  Running an engine
needs only a ``Runtime``: :func:`vmaedet.engines.trt_runtime.tensorrt_runtime_status` (the runtime
side — version range, probe, GPU identity, plan compatibility — lives in the engines package, which
never imports this builder) accepts ``tensorrt``, then the runtime-only
``tensorrt_lean`` and ``tensorrt_dispatch`` packages (which, per NVIDIA's documentation, run
version-compatible plans: build with ``version_compatible=True`` / ``--version-compatible``).

Timing cache: the file given is keyed by GPU (name, compute capability) and TensorRT version, so one
path can serve several machines; a cache TensorRT rejects (other GPU/version, damaged) is replaced by
a fresh one with a logged warning.  The plan is written (atomically) as soon as the build ends;
everything after it (inspection, cache, manifest extras) can only warn, never lose the engine.

TensorRT is imported lazily: this module imports on any machine, and everything TensorRT-specific
fails with :class:`~vmaedet.errors.BackendUnavailable` saying what is missing and how to install it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from vmaedet.artifacts import (ArtifactFile, ArtifactManifest, GpuIdentity, TensorRTInfo, TrtRoiAlign,
                               check_artifact_hash, library_versions, read_manifest, sha256_file, write_manifest)
from vmaedet.constants import PLUGIN_VERSION, ROI_ALIGN_MAX_ID
from vmaedet.engines.trt_runtime import (INSTALL_HINT, SUPPORTED_RANGE, TensorRTStatus, _device_name, _probe,
                                         gpu_identity, parse_version)
from vmaedet.errors import BackendUnavailable, ConfigError, ExportError
from vmaedet.export.surgery import ROI_ALIGN_MODES, prepare_roi_align
from vmaedet.safeio import atomic_path

log = logging.getLogger(__name__)


def tensorrt_status() -> TensorRTStatus:
    """Can engines be **built** here: the full ``tensorrt`` package in range, a CUDA GPU, a working ``Builder``.

    Importable is not usable: TensorRT's Python bindings import on a CPU-only machine and only
    fail at CUDA initialisation, so this creates a Builder (an API present in 10.x and 11.x).
    """
    trt, reason = _probe("tensorrt", need_builder=True)
    if trt is None:
        return TensorRTStatus(False, f"{reason}; {INSTALL_HINT}" if "not importable" in reason else reason)
    return TensorRTStatus(True, f"TensorRT {trt.__version__} on {_device_name()}")


def require_tensorrt() -> Any:
    """The full ``tensorrt`` module (for building), or :class:`BackendUnavailable` naming what is missing."""
    trt, reason = _probe("tensorrt", need_builder=True)
    if trt is None:
        raise BackendUnavailable("TensorRT is not usable on this machine (building an engine needs the full "
                                 "tensorrt package with a Builder and a CUDA GPU)", received=reason,
                                 expected=f"tensorrt with {SUPPORTED_RANGE} and a CUDA GPU", fix=INSTALL_HINT)
    return trt


# -- engine inspection ------------------------------------------------------------------------------
#: Markers of a fused attention kernel in a layer's name, type or tactic (lower case).  Conservative:
#: ``attention`` alone is not one (ONNX-derived names of *unfused* MatMul/Softmax layers contain it,
#: e.g. ``…_[scaled_dot_product_attention]_…_matrix_multiply``); ``mha`` must stand as a token.
_FUSED_ATTENTION_TOKENS = ("fmha", "flash_attention", "flashattention", "fused_multihead_attention",
                           "multiheadattention", "multi_head_attention", "kgen_mha")
_MHA_TOKEN = re.compile(r"(^|[^a-z0-9])mha([^a-z0-9]|$)")
_ATTENTION_LAYER_TYPES = {"mha", "attention", "fusedattention"}


def _layer_text(layer: Any) -> tuple[str, str]:
    """(name, type + tactic) of one layer entry of the inspector's JSON, lower case."""
    if isinstance(layer, str):
        return layer.lower(), ""
    if isinstance(layer, Mapping):
        return (str(layer.get("Name", "")).lower(),
                f"{layer.get('LayerType', '')} {layer.get('TacticName', '')}".lower())
    return "", ""


def _is_fused_attention(layer: Any) -> bool:
    name, kind = _layer_text(layer)
    if isinstance(layer, Mapping) and str(layer.get("LayerType", "")).strip().lower() in _ATTENTION_LAYER_TYPES:
        return True
    for text in (name, kind):
        if any(tok in text for tok in _FUSED_ATTENTION_TOKENS) or _MHA_TOKEN.search(text):
            return True
    return False


def attention_fusion(engine_info: str | Mapping[str, Any]) -> dict[str, Any]:
    """Whether an engine's layers show fused attention, from ``IEngineInspector`` JSON (10.x or 11.x schema).

    Args:
        engine_info: ``inspector.get_engine_information(LayerInformationFormat.JSON)`` (a string or parsed).

    Returns:
        ``{"fused_attention": True | False | None, "fused_attention_layers": n, "layers": n,
        "detail": "detailed" | "layer_names_only" | "none", "examples": [up to 3 layer names]}``.
        ``True``: at least one layer whose name, type or tactic carries a fused-attention marker
        (``fmha``, ``mha`` as a token, ``flash_attention``, …).  ``False``: only with detailed layer
        information (``ProfilingVerbosity.DETAILED``: types and tactics present) and no marker.
        ``None``: cannot tell (names only and no marker, no layers, unparsable JSON).
    """
    try:
        data = json.loads(engine_info) if isinstance(engine_info, (str, bytes)) else engine_info
    except (TypeError, ValueError):
        return {"fused_attention": None, "fused_attention_layers": 0, "layers": 0, "detail": "none", "examples": []}
    layers = data.get("Layers") if isinstance(data, Mapping) else None
    if not isinstance(layers, list) or not layers:
        return {"fused_attention": None, "fused_attention_layers": 0, "layers": 0, "detail": "none", "examples": []}
    detailed = any(isinstance(layer, Mapping) and ("LayerType" in layer or "TacticName" in layer) for layer in layers)
    fused = [layer for layer in layers if _is_fused_attention(layer)]
    names = [layer if isinstance(layer, str) else str(layer.get("Name", "")) for layer in fused[:3]]
    verdict: bool | None = True if fused else (False if detailed else None)
    return {"fused_attention": verdict, "fused_attention_layers": len(fused), "layers": len(layers),
            "detail": "detailed" if detailed else "layer_names_only", "examples": names}


def inspect_plan(trt: Any, plan: Any, logger: Any, *, version_compatible: bool = False) -> dict[str, Any]:
    """Deserialise ``plan`` and report its layer count and fused attention (:func:`attention_fusion`)."""
    runtime = trt.Runtime(logger)
    if version_compatible:  # the plan embeds TensorRT's lean runtime (host code); we just built it
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ExportError("TensorRT could not deserialise the plan it just built for inspection")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    report = attention_fusion(info)
    report["num_layers"] = int(engine.num_layers)
    return report


# -- timing cache -----------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "gpu"


def timing_cache_path(base: str | Path, *, tensorrt_version: str, gpu: Mapping[str, Any]) -> Path:
    """The cache file for this GPU and TensorRT version: ``cache.bin`` → ``cache-<gpu>-sm<cc>-trt<version>.bin``.

    A timing cache is only valid for the GPU and TensorRT version that wrote it (TensorRT checks a
    header and refuses others); keying the file name lets one path serve several machines.
    """
    base = Path(base)
    cc = str(gpu.get("compute_capability", "")).replace(".", "")
    key = f"{_slug(str(gpu.get('name', 'gpu')))}-sm{cc}-trt{_slug(tensorrt_version)}"
    return base.with_name(f"{base.stem}-{key}{base.suffix}")


def _attach_timing_cache(config: Any, cache_path: Path | None, warn: Callable[[str], None],
                         fallback: Path | None = None) -> dict[str, Any]:
    """Create and attach a timing cache (read from ``cache_path``, else ``fallback``, when usable); a manifest record.

    ``fallback`` is the path exactly as given (a cache written by ``trtexec --timingCacheFile`` or
    copied by hand); the keyed ``cache_path`` wins when both exist.  ``set_timing_cache(…,
    ignore_mismatch=False)`` returns False for a cache of another GPU or TensorRT version;
    ``create_timing_cache`` may return None (or raise) for damaged bytes.  Either way the build goes
    on with a fresh cache and a warning; the file read is not modified (the fresh cache is saved to
    ``cache_path``).
    """
    state: dict[str, Any] = {"file": cache_path.name if cache_path else None, "loaded": False, "saved": False}
    source = next((p for p in (cache_path, fallback) if p is not None and p.is_file()), None)
    blob = b""
    if source is not None:
        try:
            blob = source.read_bytes()
        except OSError as exc:
            warn(f"timing cache {source} is unreadable ({exc}); starting a fresh one")
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception as exc:  # noqa: BLE001 - damaged bytes: fall back, never fail the build for a cache
            cache, reason = None, f"{type(exc).__name__}: {exc}"
        else:
            reason = "TensorRT could not read it"
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            state.update(loaded=True, read_from=source.name)  # type: ignore[union-attr]
            return state
        if cache is not None:
            reason = "it was written for another GPU or TensorRT version (TensorRT refused it)"
        warn(f"timing cache {source} not used: {reason}; starting a fresh one (saved to {cache_path})")
    try:
        cache = config.create_timing_cache(b"")
        attached = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
    except Exception as exc:  # noqa: BLE001
        attached, state["error"] = False, f"{type(exc).__name__}: {exc}"
    if not attached:
        warn("TensorRT could not attach a fresh timing cache; building without one")
    state["attached"] = attached
    return state


def _save_timing_cache(config: Any, cache_path: Path, state: dict[str, Any], warn: Callable[[str], None]) -> None:
    """Serialise the builder's timing cache to ``cache_path``; failures only warn (the plan is already written)."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            warn("TensorRT returned no timing cache after the build; nothing saved")
            return
        data = cache.serialize()
        if data is None:
            warn("TensorRT could not serialise the timing cache; nothing saved")
            return
        with atomic_path(cache_path, what="the TensorRT timing cache") as tmp:
            tmp.write_bytes(memoryview(data))
        state["saved"] = True
    except Exception as exc:  # noqa: BLE001 - the engine is written; a cache is an optimisation
        warn(f"could not save the timing cache to {cache_path} ({type(exc).__name__}: {exc}); the engine is fine")


# -- builder ----------------------------------------------------------------------------------------
#: B the profile is tuned for by default when the ONNX takes batches: min(OPT_BATCH, max_batch).
OPT_BATCH = 4


def _check_build_args(max_persons: int, opt_persons: int, workspace_gb: float, roi_align: str,
                      opt_batch: int | None = None, max_batch: int = 1) -> None:
    if not 1 <= opt_persons <= max_persons:
        raise ConfigError("the person profile must satisfy 1 ≤ opt_persons ≤ max_persons",
                          received=f"opt_persons={opt_persons}, max_persons={max_persons}",
                          expected="e.g. opt_persons=8, max_persons=64")
    if opt_batch is not None and not 1 <= opt_batch <= max_batch:
        raise ConfigError("the clip profile must satisfy 1 ≤ opt_batch ≤ max_batch (the ONNX's)",
                          received=f"opt_batch={opt_batch}, max_batch={max_batch}",
                          expected=f"an opt_batch in 1 … {max_batch}, or None for min({OPT_BATCH}, max_batch)",
                          fix="leave opt_batch unset, or export the ONNX with a larger max_batch")
    if workspace_gb <= 0:
        raise ConfigError("the builder workspace must be positive", received=workspace_gb, expected="e.g. 4 (GiB)")
    if roi_align not in ROI_ALIGN_MODES:
        raise ConfigError(f"unknown RoIAlign mode {roi_align!r}", received=roi_align,
                          expected=" or ".join(ROI_ALIGN_MODES), fix="roi_align='plugin' (the default) or 'builtin'")


def _reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    return print if progress else (lambda _msg: None)


def _parse(trt: Any, logger: Any, network: Any, graph_bytes: bytes, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph_bytes, str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT could not parse the ONNX graph", received="; ".join(errors)[:2000],
                          expected="a graph exported by `vmaedet export CKPT --precision fp16`",
                          fix="check that the plugin loaded (roi_align='plugin' needs Triton) or try roi_align='builtin'")


def _network_flags(trt: Any) -> int:
    """Strongly typed network: the flag in 10.x; 11.x is always strongly typed (the flag, if present, is a no-op)."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if flag is None:
        if (parse_version(trt.__version__) or (0, 0)) < (11, 0):
            raise ExportError(f"TensorRT {trt.__version__} has no strongly typed networks",
                              expected=SUPPORTED_RANGE, fix=INSTALL_HINT)
        return 0
    return 1 << int(flag)


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
    version_compatible: bool = False,
    opt_batch: int | None = None,
) -> Path:
    """Build a TensorRT engine from an exported ONNX artifact (and its manifest).

    Args:
        onnx_path: ``.onnx`` written by ``vmaedet export`` (FP16 for TensorRT; its manifest is read).
        out_path: the engine file; its manifest goes to ``<out_path>.json``.
        max_persons / opt_persons: the K profile is min 1, opt ``opt_persons``, max ``max_persons``.
            K is the rois of one call: with batches, the total over all its clips (e.g. 4 cameras ×
            16 persons → 64).
        opt_batch: the B the clip profile is tuned for when the ONNX was exported with ``max_batch``
            > 1 (its manifest says): the profile is min 1, opt ``opt_batch`` (default
            ``min(4, max_batch)``), max ``max_batch``.  Unused for a one-clip ONNX (its clip input
            is static).
        workspace_gb: builder workspace limit.
        timing_cache: base path of the timing cache; the file used is keyed by GPU and TensorRT
            version (:func:`timing_cache_path`), read if present and usable (else the path as given,
            e.g. a ``trtexec`` cache, if usable), written after the build.
        roi_align: "plugin" (fused ``vmaedet::RoIAlignMax``) or "builtin" (``ROIAlign_TRT``).
        progress: print stages and timings (or a callable receiving each message).
        aot: plugin mode only: embed the Triton PTX (AOT: the engine runs without Python, torch,
            Triton or ``tensorrt.plugin``) instead of the JIT Python callback (CLI: ``--jit``).
        version_compatible: build a version-compatible plan (``BuilderFlag.VERSION_COMPATIBLE``):
            runs on this or a later TensorRT and on the runtime-only ``tensorrt_lean`` /
            ``tensorrt_dispatch`` packages; can be slower.

    Returns:
        ``out_path``.

    Raises:
        ConfigError: bad profile/workspace/mode.  BackendUnavailable: no TensorRT/GPU here, or a
        version outside 10.9 ≤ TensorRT < 12.  ExportError: parse or build failure.
    """
    _check_build_args(max_persons, opt_persons, workspace_gb, roi_align)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    source = read_manifest(onnx_path)
    max_batch = source.input.max_batch
    _check_build_args(max_persons, opt_persons, workspace_gb, roi_align, opt_batch, max_batch)
    batch_profile = (1, opt_batch or min(OPT_BATCH, max_batch), max_batch)
    check_artifact_hash(onnx_path, source)
    trt = require_tensorrt()
    say = _reporter(progress)
    warn = log.warning  # shown on stderr (logging's last resort) unless the application configures logging

    graph_bytes = _prepared_graph(onnx_path, roi_align, aot, say)
    quantization = _explicit_quantization(source, graph_bytes, say)
    gpu = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    t1 = time.perf_counter()
    _parse(trt, logger, network, graph_bytes, onnx_path)
    say(f"parsed {network.num_layers} layers: {time.perf_counter() - t1:.1f} s")

    config = _builder_config(trt, builder, source, opt_persons, max_persons, workspace_gb, version_compatible,
                             batch_profile)
    cache_path = timing_cache_path(timing_cache, tensorrt_version=trt.__version__, gpu=gpu) if timing_cache else None
    cache_state = _attach_timing_cache(config, cache_path, warn, fallback=Path(timing_cache) if timing_cache else None)
    if cache_state["loaded"]:
        say(f"timing cache: {cache_state['read_from']}")

    plan, build_s = _build_plan(builder, network, config, opt_persons, max_persons, workspace_gb, say, batch_profile)
    with atomic_path(out_path, what="the TensorRT engine") as tmp:  # first: nothing after this loses the build
        tmp.write_bytes(memoryview(plan))
    if cache_path is not None:
        _save_timing_cache(config, cache_path, cache_state, warn)
        if cache_state["saved"]:
            say(f"timing cache saved to {cache_path}")
    inspection = _inspection(trt, plan, logger, version_compatible, say, warn)
    manifest = engine_manifest(source, out_path, trt_version=trt.__version__, gpu=gpu, roi_align=roi_align,
                               aot=aot, onnx_sha256=source.artifact.sha256,
                               parsed_sha256=_sha256_bytes(graph_bytes),
                               profile=(1, opt_persons, max_persons), batch_profile=batch_profile,
                               workspace_gb=workspace_gb, build_s=build_s,
                               version_compatible=version_compatible, inspection=inspection,
                               timing_cache=cache_state if cache_path is not None else None,
                               quantization=quantization)
    write_manifest(out_path, manifest)
    say(f"wrote {out_path} ({out_path.stat().st_size / 2**20:.1f} MiB) + {out_path.name}.json")
    return out_path


def _prepared_graph(onnx_path: Path, roi_align: str, aot: bool, say: Callable[[str], None]) -> bytes:
    """The ONNX graph with its RoIAlign prepared for TensorRT (plugin or built-in), serialised."""
    import onnx

    t0 = time.perf_counter()
    graph = prepare_roi_align(onnx.load(str(onnx_path)), roi_align, aot=aot)
    graph_bytes = graph.SerializeToString()
    if roi_align == "plugin":
        from vmaedet.ops import roi_align_trt  # noqa: F401 - registers the tensorrt.plugin definitions
    say(f"graph surgery ({roi_align} RoIAlign): {time.perf_counter() - t0:.1f} s")
    return graph_bytes


def _explicit_quantization(source: ArtifactManifest, graph_bytes: bytes,
                           say: Callable[[str], None]) -> dict[str, Any] | None:
    """For an int8 (QDQ) ONNX: check its Q/DQ nodes suit explicit quantization; None for other precisions.

    A strongly typed network takes its int8 layers from the Q/DQ nodes: no INT8 builder flag, no
    calibration cache.  Raises ExportError when a Q/DQ is not symmetric int8 with a constant scale.
    """
    if source.precision != "int8":
        return None
    import onnx

    from vmaedet.export.int8 import check_qdq_structure

    structure = check_qdq_structure(onnx.load_from_string(graph_bytes))
    say(f"int8 QDQ graph: {structure['QuantizeLinear']} QuantizeLinear, {structure['DequantizeLinear']} "
        "DequantizeLinear; explicit quantization in a strongly typed network (no INT8 builder flag)")
    return {"mode": "explicit (QDQ), strongly typed", "int8_builder_flag": False, **structure}


def _builder_config(trt: Any, builder: Any, source: Any, opt_persons: int, max_persons: int, workspace_gb: float,
                    version_compatible: bool, batch_profile: tuple[int, int, int] = (1, 1, 1)) -> Any:
    """Builder config: workspace, detailed profiling, the K profile of ``rois`` ``[K, 5]``, version compatibility.

    A batched ONNX (``batch_profile`` max > 1: the clip's batch axis is dynamic) also gets the B
    profile of ``clip`` ``[B, 3, 16, H, W]`` in the same optimisation profile.
    """
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer types/tactics for the inspector
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profile = builder.create_optimization_profile()
    profile.set_shape(source.input.names.rois, (1, 5), (opt_persons, 5), (max_persons, 5))
    if batch_profile[2] > 1:
        one = tuple(source.input.clip_shape[1:])  # (3, 16, H, W)
        profile.set_shape(source.input.names.clip, *((b, *one) for b in batch_profile))
    config.add_optimization_profile(profile)
    return config


def _build_plan(builder: Any, network: Any, config: Any, opt_persons: int, max_persons: int, workspace_gb: float,
                say: Callable[[str], None], batch_profile: tuple[int, int, int] = (1, 1, 1)) -> tuple[Any, float]:
    """The serialised plan and the build time in seconds; ExportError when TensorRT returns nothing."""
    t2 = time.perf_counter()
    clips = f", B profile {'/'.join(map(str, batch_profile))}" if batch_profile[2] > 1 else ""
    say(f"building the engine (K profile 1/{opt_persons}/{max_persons}{clips}, workspace {workspace_gb:g} GiB); "
        "this takes minutes")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)",
                          fix="retry with a larger builder workspace (workspace_gb), or roi_align='builtin' to rule out "
                              "the plugin")
    build_s = time.perf_counter() - t2
    say(f"built in {build_s:.1f} s")
    return plan, build_s


def _inspection(trt: Any, plan: Any, logger: Any, version_compatible: bool, say: Callable[[str], None],
                warn: Callable[[str], None]) -> dict[str, Any]:
    """The engine inspector's summary (informative only: a failure is a warning, not an error)."""
    try:
        inspection = inspect_plan(trt, plan, logger, version_compatible=version_compatible)
    except Exception as exc:  # noqa: BLE001 - inspection is informative only
        inspection = {"fused_attention": None, "error": f"{type(exc).__name__}: {exc}"}
        warn(f"could not inspect the engine's layers ({inspection['error']}); fused attention not recorded")
    if inspection.get("fused_attention") is False:
        say("note: no layer of the engine shows a fused attention kernel (see tensorrt.attention in the manifest)")
    return inspection


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_manifest(source: ArtifactManifest, engine_path: Path, *, trt_version: str, gpu: Mapping[str, Any],
                    roi_align: str, aot: bool, onnx_sha256: str, parsed_sha256: str,
                    profile: tuple[int, int, int], workspace_gb: float, build_s: float,
                    version_compatible: bool = False, inspection: Mapping[str, Any] | None = None,
                    timing_cache: Mapping[str, Any] | None = None,
                    batch_profile: tuple[int, int, int] | None = None,
                    quantization: Mapping[str, Any] | None = None) -> ArtifactManifest:
    """The engine's manifest: the ONNX artifact's contract plus what binds the plan to this machine.

    ``tensorrt.profile_persons`` is the K profile (min, opt, max rois of one call) and
    ``tensorrt.profile_batch`` the B profile (min, opt, max clips of one call; (1, 1, 1) for a
    one-clip ONNX); ``input.max_persons`` / ``input.max_batch`` are their maxima.

    ``tensorrt.roi_align.implementation`` is ``"aot"`` (PTX inside the plan: running needs no
    Python plugin), ``"jit"`` (a Python callback: running imports the plugin module, torch, Triton
    and ``tensorrt.plugin``) or ``"builtin"`` (``ROIAlign_TRT``); ``aot`` keeps the boolean.
    """
    plugin = roi_align == "plugin"
    inspection = dict(inspection or {})
    attention = {k: inspection[k] for k in ("fused_attention", "fused_attention_layers", "detail", "examples", "error")
                 if k in inspection} or {"fused_attention": None}
    built = TensorRTInfo(
        version=trt_version, gpu=GpuIdentity(gpu.get("name"), gpu.get("compute_capability")), strongly_typed=True,
        version_compatible=bool(version_compatible),
        roi_align=TrtRoiAlign(mode=roi_align, plugin=ROI_ALIGN_MAX_ID if plugin else "ROIAlign_TRT",
                              plugin_version=PLUGIN_VERSION if plugin else "2", aot=bool(aot) if plugin else None,
                              implementation=("aot" if aot else "jit") if plugin else "builtin"),
        parsed_onnx_sha256=parsed_sha256, profile_persons=tuple(profile), workspace_gb=workspace_gb,  # type: ignore[arg-type]
        profile_batch=tuple(batch_profile) if batch_profile is not None else None,  # type: ignore[arg-type]
        build_seconds=round(build_s, 1), num_layers=inspection.get("num_layers"), attention=attention,
        timing_cache=dict(timing_cache) if timing_cache is not None else None,
        extra={"explicit_quantization": dict(quantization)} if quantization is not None else {},
    )
    artifact = ArtifactFile(file=engine_path.name, format="tensorrt", sha256=sha256_file(engine_path),
                            bytes=engine_path.stat().st_size, onnx_file=source.artifact.file, onnx_sha256=onnx_sha256)
    geometry = dataclasses.replace(source.input, max_persons=profile[2],
                                   max_batch=batch_profile[2] if batch_profile is not None else source.input.max_batch)
    return source.replace(artifact=artifact, input=geometry, tensorrt=built, versions=library_versions())
