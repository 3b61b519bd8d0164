"""Fakes of the ``tensorrt`` Python bindings as TensorRT 10.x and 11.x behave, and of torch's CUDA device API.

Written from NVIDIA's documentation and the bindings' sources (``python/src/infer/pyCore.cpp``,
``python/docstrings/infer/pyCoreDoc.h`` of NVIDIA/TensorRT, release/10.x and 11.x), for what vmaedet
uses — documented behaviour only, nothing guessed about internals:

* ``Builder``: 10.x has ``platform_has_fast_fp16`` / ``platform_has_fast_int8`` / ``platform_has_tf32``;
  11.x removed them (migration guide: "IBuilder::platformHasFastFp16() Removed; use strongly typed
  networks").  A Builder that cannot initialise CUDA is an error (the factory returns null).
* ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: both (11.x: deprecated, always enabled).
* ``BuilderFlag``: 11.x removed ``FP16``/``INT8``/``BF16``…; ``VERSION_COMPATIBLE`` is in both.
* ``IBuilderConfig.create_timing_cache(b"")`` makes a fresh cache; ``set_timing_cache(cache,
  ignore_mismatch=False)`` returns a bool, False when "the CUDA device property in the provided cache
  is different from current environment" (then no cache is attached); ``get_timing_cache()`` returns
  "None if no timing cache is set".  Damaged bytes: ``create_timing_cache`` returns None (the C++
  API returns null on failure).
* ``ICudaEngine``: ``num_io_tensors``, ``get_tensor_name/mode/dtype/shape``, ``num_layers``,
  ``device_memory_size_v2`` (both) and ``device_memory_size`` (10.x only; removed in 11.x),
  ``create_engine_inspector()``.  Inspector JSON: ``{"Layers": [...], "Bindings": [names]}`` (10.x)
  or ``{"Layers": [...], "I/O Tensors": [{...}]}`` (11.x); layers are names only unless the plan was
  built with ``ProfilingVerbosity.DETAILED`` (then objects with ``Name``, ``LayerType``,
  ``TacticName``, ``Metadata``).
* ``Runtime.deserialize_cuda_engine`` returns None for a plan of another TensorRT version; the
  runtime-only ``tensorrt_lean`` / ``tensorrt_dispatch`` modules have ``Runtime`` but no ``Builder``,
  ``OnnxParser`` or ``init_libnvinfer_plugins`` and run version-compatible plans, which need
  ``runtime.engine_host_code_allowed = True``.
* ``IExecutionContext``: ``set_input_shape`` → bool (False outside the optimisation profile, or for
  a static dimension given another size), ``get_tensor_shape``, ``set_tensor_address``,
  ``execute_async_v3(stream_handle)`` → bool (False when a dynamic input's shape was never set:
  "not all input dimensions specified").
* Building: every input with a dynamic dimension needs a profile (``IOptimizationProfile.set_shape``
  with min ≤ opt ≤ max, of the input's rank, static dimensions as in the network), else
  ``build_serialized_network`` returns None ("Network has dynamic or shape inputs, but no
  optimization profile has been defined").

The fake "engine" computes ``logits[k, j] = x1_k / 100 + j + clip[b_k, 0, 0, 0, 0]`` (``b_k`` =
column 0 of roi k) from the rois and the clip it is bound to, through the addresses it was given
(host memory here), so tests can check binding, batch shapes and which clip each roi reads.  Every call that touches
the GPU records the fake current CUDA device (``FakeCuda``), which is how the device tests work.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import itertools
import json
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

VERSIONS = {"9": "9.3.0.1", "10": "10.13.0.35", "11": "11.1.0.106", "12": "12.0.0.1"}
PLAN_MAGIC = b"FAKETRTPLAN\n"
CACHE_MAGIC = b"FAKETRTCACHE\n"
NUM_CLASSES = 80


# -- torch.cuda stand-in ----------------------------------------------------------------------------
class FakeCuda:
    """A stand-in for ``torch.cuda`` on a CPU-only machine: devices, the current device, streams, graphs.

    ``install(monkeypatch)`` replaces the ``torch.cuda`` functions vmaedet's TensorRT code calls.
    ``current`` is the current device index; ``torch.cuda.device(d)`` sets it for a block.
    """

    def __init__(self, names: tuple[str, ...] = ("NVIDIA H100 80GB HBM3", "NVIDIA L40S"),
                 capabilities: tuple[tuple[int, int], ...] = ((9, 0), (8, 9)), current: int = 0) -> None:
        self.names, self.capabilities, self.current = names, capabilities, current
        self.capturing: list[Callable[[], None]] | None = None
        self.events: list[tuple[str, int]] = []  # (what, current device) for stream/graph calls
        self._handles = itertools.count(0x1000)

    def _index(self, device: Any) -> int:
        import torch

        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        dev = torch.device(device)
        return self.current if dev.index is None else dev.index

    def install(self, monkeypatch: Any) -> "FakeCuda":
        import torch

        fake = self

        class device:  # noqa: N801 - mirrors torch.cuda.device
            def __init__(self, dev: Any) -> None:
                self.index = fake._index(dev)

            def __enter__(self) -> None:
                self.prev, fake.current = fake.current, self.index

            def __exit__(self, *exc: object) -> None:
                fake.current = self.prev

        class Stream:
            def __init__(self, device: Any = None, priority: int = 0) -> None:
                self.device_index = fake._index(device)
                self.cuda_stream = next(fake._handles)
                fake.events.append(("stream", fake.current))

            def wait_stream(self, other: Any) -> None:
                fake.events.append(("wait_stream", fake.current))

            def synchronize(self) -> None:
                fake.events.append(("synchronize", fake.current))

        class CUDAGraph:
            def __init__(self) -> None:
                self.calls: list[Callable[[], None]] = []
                self.device = fake.current

            def replay(self) -> None:
                fake.events.append(("replay", fake.current))
                for call in self.calls:
                    call()

        @contextlib.contextmanager
        def graph(g: CUDAGraph, stream: Any = None, **_: Any):  # type: ignore[no-untyped-def]
            fake.events.append(("capture", fake.current))
            fake.capturing = g.calls
            try:
                yield
            finally:
                fake.capturing = None

        @contextlib.contextmanager
        def stream(s: Any):  # type: ignore[no-untyped-def]
            yield s

        streams: dict[int, Stream] = {}

        def current_stream(device: Any = None) -> Stream:
            index = fake._index(device)
            if index not in streams:
                streams[index] = Stream(index)
            return streams[index]

        patches = {
            "is_available": lambda: True, "device_count": lambda: len(fake.names),
            "current_device": lambda: fake.current, "set_device": lambda d: setattr(fake, "current", fake._index(d)),
            "get_device_name": lambda d=None: fake.names[fake._index(d)],
            "get_device_capability": lambda d=None: fake.capabilities[fake._index(d)],
            "device": device, "Stream": Stream, "CUDAGraph": CUDAGraph, "graph": graph, "stream": stream,
            "current_stream": current_stream, "synchronize": lambda d=None: None,
        }
        for name, value in patches.items():
            monkeypatch.setattr(torch.cuda, name, value)
        return self

    def key(self) -> str:
        """What a timing cache is bound to on the current device (the fake's 'CUDA device property')."""
        return f"{self.names[self.current]}|sm{''.join(map(str, self.capabilities[self.current]))}"


# -- the fake tensorrt module ---------------------------------------------------------------------
@dataclass
class FakeState:
    """Knobs and records shared by one fake module's objects."""

    version: str
    module_name: str
    runtime_only: bool
    cuda: FakeCuda | None
    calls: list[tuple[str, int | None]] = field(default_factory=list)  # (api, current device)
    fail_build: bool = False
    serialize_raises: bool = False
    refuse_every_cache: bool = False  # set_timing_cache returns False even for a fresh cache
    engine_layers: list[dict[str, Any]] | None = None  # detailed layers the built plan reports
    plugin_namespaces: set[str] = field(default_factory=set)
    executed_shapes: list[dict[str, tuple[int, ...]]] = field(default_factory=list)  # input shapes of each run

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def record(self, api: str) -> None:
        self.calls.append((api, self.cuda.current if self.cuda else None))

    def require_gpu(self, what: str) -> None:
        import torch

        if self.cuda is None and not torch.cuda.is_available():
            raise TypeError(f"pybind11::init(): factory function returned nullptr ({what}: CUDA initialisation failed)")

    def machine_key(self) -> str:
        return f"{self.cuda.key() if self.cuda else 'nogpu'}|trt{self.version}"


class HostMemory(bytes):
    """``IHostMemory``: supports the buffer protocol (``memoryview``), ``nbytes``."""

    @property
    def nbytes(self) -> int:
        return len(self)


class _IntEnum(enum.IntEnum):
    pass


def make_tensorrt(flavour: str = "10", *, cuda: FakeCuda | None = None, module_name: str = "tensorrt",
                  version: str | None = None) -> types.ModuleType:
    """A fake ``tensorrt`` (or ``tensorrt_lean`` / ``tensorrt_dispatch``) module of TensorRT ``flavour`` ("9", "10", "11", "12")."""
    runtime_only = module_name != "tensorrt"
    state = FakeState(version=version or VERSIONS[flavour], module_name=module_name, runtime_only=runtime_only,
                      cuda=cuda)
    major = state.major
    m = types.ModuleType(module_name)
    m.__version__ = state.version
    m._state = state  # type: ignore[attr-defined]

    class DataType(_IntEnum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4

    m.DataType = DataType
    m.float32, m.float16, m.int8, m.int32, m.bool = (DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32,
                                                     DataType.BOOL)
    onnx_to_trt = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 3: DataType.INT8, 9: DataType.BOOL}
    m.TensorIOMode = _IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    m.LayerInformationFormat = _IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
    m.ProfilingVerbosity = _IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
    m.MemoryPoolType = _IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "TACTIC_SHARED_MEMORY": 3})
    flags = {"STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3}
    if major < 10:
        flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    m.NetworkDefinitionCreationFlag = _IntEnum("NetworkDefinitionCreationFlag", flags)
    builder_flags = {"VERSION_COMPATIBLE": 10, "EXCLUDE_LEAN_RUNTIME": 11}
    if major < 11:  # the weak-typing flags TensorRT 11 removed
        builder_flags.update({"FP16": 0, "INT8": 1, "BF16": 17, "OBEY_PRECISION_CONSTRAINTS": 7})
    m.BuilderFlag = _IntEnum("BuilderFlag", builder_flags)

    class Logger:
        class Severity(_IntEnum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self, min_severity: Any = 2) -> None:
            self.min_severity = min_severity
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append(msg)

    m.Logger = Logger
    m.ILogger = Logger

    # -- plans -------------------------------------------------------------------------------
    def encode_plan(header: dict[str, Any]) -> HostMemory:
        return HostMemory(PLAN_MAGIC + json.dumps(header).encode())

    def decode_plan(data: Any) -> dict[str, Any] | None:
        raw = bytes(data)
        if not raw.startswith(PLAN_MAGIC):
            return None
        try:
            return json.loads(raw[len(PLAN_MAGIC):])
        except ValueError:
            return None

    m._encode_plan = encode_plan  # type: ignore[attr-defined]

    class ICudaEngine:
        def __init__(self, header: dict[str, Any]) -> None:
            self._h = header
            self._io = header["io"]

        num_io_tensors = property(lambda self: len(self._io))
        num_layers = property(lambda self: len(self._h["layers"]))
        device_memory_size_v2 = property(lambda self: 1 << 20)
        if major < 11:
            device_memory_size = property(lambda self: 1 << 20)  # removed in 11.x
        profiling_verbosity = property(lambda self: m.ProfilingVerbosity[self._h["verbosity"]])

        def _tensor(self, name: str) -> dict[str, Any]:
            for t in self._io:
                if t["name"] == name:
                    return t
            raise ValueError(f"no tensor {name!r}")  # the real call logs an error and returns a default

        def get_tensor_name(self, index: int) -> str:
            return self._io[index]["name"]

        def get_tensor_mode(self, name: str) -> Any:
            return m.TensorIOMode.INPUT if self._tensor(name)["input"] else m.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType(self._tensor(name)["dtype"])

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._tensor(name)["shape"])

        def create_execution_context(self) -> "IExecutionContext":
            state.record("create_execution_context")
            return IExecutionContext(self)

        if not runtime_only:
            def create_engine_inspector(self) -> "EngineInspector":
                return EngineInspector(self)

    class EngineInspector:
        def __init__(self, engine: ICudaEngine) -> None:
            self._engine = engine

        def get_engine_information(self, format: Any) -> str:  # noqa: A002 - the bindings' name
            h = self._engine._h
            if h["verbosity"] == "NONE":
                layers: list[Any] = []
            elif h["verbosity"] == "DETAILED":
                layers = h["layers"]
            else:
                layers = [layer["Name"] for layer in h["layers"]]
            dtype_names = {0: "Float", 1: "Half", 3: "Int32"}
            if major >= 11:  # "Bindings" replaced by "I/O Tensors" objects
                io = [{"Name": t["name"], "IOMode": "Input" if t["input"] else "Output",
                       "DataType": dtype_names.get(t["dtype"], "Float"), "Dimensions": t["shape"],
                       "Location": "Device", "IsShapeInferenceIO": False} for t in h["io"]]
                return json.dumps({"Layers": layers, "I/O Tensors": io})
            return json.dumps({"Layers": layers, "Bindings": [t["name"] for t in h["io"]]})

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self._engine = engine
            self._shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            t = self._engine._tensor(name)
            shape = tuple(int(s) for s in shape)
            h = self._engine._h
            lo, hi = h.get("profiles", {}).get(name, h["profile"])
            if not t["input"] or len(shape) != len(t["shape"]) or (t["shape"][0] == -1 and not lo <= shape[0] <= hi):
                return False
            if any(d != -1 and d != s for d, s in zip(t["shape"], shape)):
                return False  # a static dimension cannot change
            self._shapes[name] = shape
            return True

        def _rois(self) -> dict[str, Any]:
            return next(t for t in self._engine._io if t["input"] and len(t["shape"]) == 2)

        def _clip(self) -> dict[str, Any] | None:
            return next((t for t in self._engine._io if t["input"] and len(t["shape"]) == 5), None)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            t = self._engine._tensor(name)
            if t["input"]:
                return self._shapes.get(name, tuple(t["shape"]))
            k = self._shapes.get(self._rois()["name"], (-1,))[0]  # the output has K rows, K from the rois
            return (k, *t["shape"][1:])

        def _read(self, name: str, dtype: int, count: int) -> np.ndarray:
            if dtype == DataType.HALF:
                raw = np.ctypeslib.as_array((ctypes.c_uint16 * count).from_address(self._addresses[name]))
                return raw.view(np.float16).astype(np.float32)
            return np.ctypeslib.as_array((ctypes.c_float * count).from_address(self._addresses[name])).copy()

        def set_tensor_address(self, name: str, memory: int) -> bool:
            self._engine._tensor(name)
            self._addresses[name] = int(memory)
            return True

        def _ready(self) -> bool:
            """Every dynamic input's shape was set (TensorRT refuses to enqueue otherwise)."""
            return all(name in self._shapes for name in (t["name"] for t in self._engine._io
                                                         if t["input"] and -1 in t["shape"]))

        def _run(self) -> None:
            h = self._engine._h
            rois_t, clip_t = self._rois(), self._clip()
            rois_name = rois_t["name"]
            out = next(t for t in h["io"] if not t["input"])
            k = self._shapes[rois_name][0]
            rois = self._read(rois_name, rois_t["dtype"], k * 5).reshape(k, 5)  # [K, 5]
            first = np.zeros(k, dtype=np.float32)  # [K] clip[b_k, 0, 0, 0, 0]
            if clip_t is not None and clip_t["name"] in self._addresses:
                shape = self._shapes.get(clip_t["name"], tuple(clip_t["shape"]))  # [B, 3, 16, H, W]
                per_clip = int(np.prod(shape[1:]))
                clip = self._read(clip_t["name"], clip_t["dtype"], shape[0] * per_clip).reshape(shape[0], per_clip)
                index = rois[:, 0].astype(np.int64)  # [K]
                if k and (index.min() < 0 or index.max() >= shape[0]):
                    raise IndexError(f"roi batch index outside the {shape[0]} bound clips")  # an out-of-bounds read
                first = clip[index, 0]
            state.executed_shapes.append(dict(self._shapes))
            logits = rois[:, 1:2] / 100.0 + np.arange(out["shape"][1])[None, :] + first[:, None]  # [K, C]
            np_dtype = np.float16 if out["dtype"] == DataType.HALF else np.float32
            ctype = ctypes.c_uint16 if np_dtype is np.float16 else ctypes.c_float
            view = np.ctypeslib.as_array((ctype * logits.size).from_address(self._addresses[out["name"]]))
            view[:] = logits.astype(np_dtype).reshape(-1).view(view.dtype)

        def execute_async_v3(self, stream_handle: int) -> bool:
            state.record("execute_async_v3")
            if not self._ready():
                return False
            if state.cuda is not None and state.cuda.capturing is not None:
                state.cuda.capturing.append(self._run)  # captured into the graph, run on replay
                return True
            self._run()
            return True

    class Runtime:
        def __init__(self, logger: Any) -> None:
            state.require_gpu("Runtime")
            self.logger = logger
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            state.record("deserialize_cuda_engine")
            header = decode_plan(serialized_engine)
            if header is None:
                return None
            vc = header.get("version_compatible", False)
            if vc:
                ok = (tuple(map(int, state.version.split(".")[:2])) >= tuple(map(int, header["version"].split(".")[:2]))
                      and self.engine_host_code_allowed)
            else:  # a plan runs on the exact version that built it, and not on a runtime-only module
                ok = header["version"] == state.version and not runtime_only
            return ICudaEngine(header) if ok else None

    m.Runtime = Runtime
    m.ICudaEngine = ICudaEngine
    m.IExecutionContext = IExecutionContext

    if runtime_only:
        return m

    # -- build side: the full module only ---------------------------------------------------
    class ITimingCache:
        def __init__(self, key: str, entries: int = 0) -> None:
            self.key, self.entries = key, entries

        def serialize(self) -> HostMemory:
            if state.serialize_raises:
                raise RuntimeError("ITimingCache::serialize failed")
            return HostMemory(CACHE_MAGIC + f"{self.key}\n{self.entries}".encode())

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, Any, Any]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - the bindings' names
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class IBuilderConfig:
        def __init__(self) -> None:
            self.pools: dict[Any, int] = {}
            self.flags: set[Any] = set()
            self.profiles: list[OptimizationProfile] = []
            self.profiling_verbosity = m.ProfilingVerbosity.LAYER_NAMES_ONLY
            self._cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self.pools[pool] = int(pool_size)

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache | None:
            raw = bytes(serialized_timing_cache)
            if not raw:
                return ITimingCache(state.machine_key())
            if not raw.startswith(CACHE_MAGIC):
                return None  # damaged: the C++ call fails and returns null
            key, _, entries = raw[len(CACHE_MAGIC):].decode(errors="replace").rpartition("\n")
            return ITimingCache(key, int(entries) if entries.isdigit() else 0)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if state.refuse_every_cache or (cache.key != state.machine_key() and not ignore_mismatch):
                return False  # "A failure will be reported if the CUDA device property … is different"
            self._cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[dict[str, Any]] = []
            self.outputs: list[dict[str, Any]] = []
            self.layers: list[dict[str, Any]] = []

        num_layers = property(lambda self: len(self.layers))

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, index: int) -> str:
            return self.errors[index]

        def parse(self, model: Any, path: str | None = None) -> bool:
            import onnx

            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"ModelImporter: failed to parse the ONNX model ({exc})")
                return False
            g = proto.graph

            def tensor(v: Any, is_input: bool) -> dict[str, Any]:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                return {"name": v.name, "input": is_input, "dtype": int(onnx_to_trt[v.type.tensor_type.elem_type]),
                        "shape": dims}

            self.network.inputs = [tensor(v, True) for v in g.input]
            self.network.outputs = [tensor(v, False) for v in g.output]
            self.network.layers = [{"Name": n.name or f"{n.op_type}_{i}", "LayerType": n.op_type, "Inputs": [],
                                    "Outputs": [], "TacticName": "", "Metadata": f"[ONNX Layer: {n.name}]"}
                                   for i, n in enumerate(g.node)]
            return True

    class Builder:
        def __init__(self, logger: Any) -> None:
            state.require_gpu("Builder")
            self.logger = logger

        if major < 11:  # removed in TensorRT 11
            platform_has_fast_fp16 = property(lambda self: True)
            platform_has_fast_int8 = property(lambda self: True)
            platform_has_tf32 = property(lambda self: True)

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> HostMemory | None:
            state.record("build_serialized_network")
            if state.fail_build:
                return None
            if config.get_timing_cache() is not None:
                config.get_timing_cache().entries += len(network.layers)  # type: ignore[union-attr]
            shapes = config.profiles[0].shapes if config.profiles else {}
            profile = (1, 1)  # the rois' K range (older plans have only this one)
            profiles: dict[str, list[int]] = {}
            io = []
            for t in network.inputs + network.outputs:
                t = dict(t)
                if t["input"] and -1 in t["shape"]:
                    if t["name"] not in shapes:
                        self.logger.log(Logger.ERROR, "Network has dynamic or shape inputs, but no optimization "
                                                      f"profile has been defined for {t['name']}")
                        return None
                    lo, opt, hi = shapes[t["name"]]
                    ok = all(len(s) == len(t["shape"]) for s in (lo, opt, hi)) and all(
                        lo[i] <= opt[i] <= hi[i] and (d == -1 or lo[i] == hi[i] == d) for i, d in enumerate(t["shape"]))
                    if not ok:
                        self.logger.log(Logger.ERROR, f"invalid optimization profile for {t['name']}")
                        return None
                    profiles[t["name"]] = [lo[0], hi[0]]
                    if len(t["shape"]) == 2:
                        profile = (lo[0], hi[0])
                io.append(t)
            verbosity = m.ProfilingVerbosity(config.profiling_verbosity).name
            return encode_plan({"version": state.version, "io": io, "profile": list(profile), "profiles": profiles,
                                "layers": state.engine_layers if state.engine_layers is not None else network.layers,
                                "verbosity": verbosity, "strongly_typed": bool(network.flags & 2),
                                "version_compatible": config.get_flag(m.BuilderFlag.VERSION_COMPATIBLE)})

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        state.plugin_namespaces.add(namespace)
        return True

    m.Builder, m.OnnxParser, m.IBuilderConfig, m.ITimingCache = Builder, OnnxParser, IBuilderConfig, ITimingCache
    m.INetworkDefinition, m.IOptimizationProfile, m.EngineInspector = INetworkDefinition, OptimizationProfile, EngineInspector
    m.init_libnvinfer_plugins = init_libnvinfer_plugins
    return m


def make_plan(trt: types.ModuleType, *, version: str | None = None, max_persons: int = 8, clip_hw: tuple[int, int] = (64, 80),
              version_compatible: bool = False, out_dtype: str = "float32",
              layers: list[dict[str, Any]] | None = None, max_batch: int = 1) -> bytes:
    """The bytes of a fake plan with vmaedet's I/O (clip [B, 3, 16, H, W], rois [K, 5], logits [K, 80]) for ``trt``.

    ``max_batch`` > 1: the clip's batch axis is dynamic, with a profile of 1 … max_batch clips.
    """
    h, w = clip_hw
    profiles = {"rois": [1, max_persons], **({"clip": [1, max_batch]} if max_batch > 1 else {})}
    io = [{"name": "clip", "input": True, "dtype": int(trt.float32), "shape": [-1 if max_batch > 1 else 1, 3, 16, h, w]},
          {"name": "rois", "input": True, "dtype": int(trt.float32), "shape": [-1, 5]},
          {"name": "logits", "input": False, "dtype": int(getattr(trt, out_dtype)), "shape": [-1, NUM_CLASSES]}]
    return bytes(trt._encode_plan({"version": version or trt.__version__, "io": io, "profile": [1, max_persons],  # type: ignore[attr-defined]
                                   "profiles": profiles,
                                   "layers": layers or [{"Name": "layer0", "LayerType": "gemm", "TacticName": ""}],
                                   "verbosity": "DETAILED", "version_compatible": version_compatible}))
