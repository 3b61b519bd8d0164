"""The OpenVINO engine: the exported ONNX artifact on the CPU, in fp32 or (where the CPU has it) native bf16.

What it guarantees:

* **Manifest-checked like every engine**: it opens only an fp32 (or int8 QDQ) ONNX artifact whose
  bytes are the ones its manifest records (:func:`vmaedet.artifacts.open_artifact`); geometry, person capacity and
  the graph's input/output names come from the manifest.
* **The precision asked for is the precision run**: ``fp32`` sets OpenVINO's inference precision
  hint to ``f32`` explicitly (on a CPU with bf16 OpenVINO picks bf16 by default); ``bf16`` is run only
  where the CPU has native bf16 (``avx512_bf16`` or AMX in ``/proc/cpuinfo``, or ``BF16`` in
  OpenVINO's ``OPTIMIZATION_CAPABILITIES``) and refused elsewhere — emulated bf16 would be slower
  than fp32 and is never what a user wants.  ``int8`` runs an int8 QDQ artifact (``vmaedet export
  CKPT --precision int8 --calib DATA``): OpenVINO executes the quantized layers in int8 and, with
  the ``f32`` hint, everything else in fp32 (what the artifact's gates were measured against).
* **Latency hint, thread count, compiled-model cache**: ``PERFORMANCE_HINT=LATENCY`` (one clip at a
  time, all cores on it), ``INFERENCE_NUM_THREADS`` from ``threads``, and ``CACHE_DIR`` — a folder
  beside the artifact (``<artifact>.ov-cache/<sha256 prefix>/``) or under ``cache_dir`` — so a second
  start imports the compiled model instead of compiling it again, and a re-exported artifact (other
  bytes, same path) never gets the old one.

``openvino`` is an optional extra (``pip install 'vmaedet[openvino]'``); it is imported when the
engine is created, so a missing install gives :class:`~vmaedet.errors.BackendUnavailable` naming it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vmaedet.artifacts import ArtifactManifest, open_artifact
from vmaedet.engines.base import Engine, artifact_cache_dir, import_backend
from vmaedet.envinfo import NATIVE_CPU_FLAGS, cpu_flags
from vmaedet.errors import BackendUnavailable, EngineError

INSTALL_FIX = "pip install 'vmaedet[openvino]' (the openvino wheel, CPU inference)"
#: Engine precision → OpenVINO's ``INFERENCE_PRECISION_HINT``.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: /proc/cpuinfo flags that mean native bf16 arithmetic (AVX-512 BF16, AMX tiles with bf16).
BF16_CPU_FLAGS = NATIVE_CPU_FLAGS["bf16"]
#: The precision the ONNX artifact must have been exported in (OpenVINO lowers it itself for bf16).
ARTIFACT_PRECISION = "fp32"
#: Engine precision → the artifact precision it runs (int8: the QDQ export; its float parts in f32).
ARTIFACT_PRECISIONS = {"fp32": ARTIFACT_PRECISION, "bf16": ARTIFACT_PRECISION, "int8": "int8"}


def import_openvino() -> Any:
    """``import openvino``, or :class:`BackendUnavailable` naming the extra to install."""
    return import_backend("openvino", "openvino", INSTALL_FIX)


def native_bf16(core: Any | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the evidence in words.

    Native when /proc/cpuinfo lists ``avx512_bf16`` or ``amx_bf16``, or when OpenVINO's CPU plugin
    reports ``BF16`` among its ``OPTIMIZATION_CAPABILITIES`` (``core``: an ``openvino.Core``; one is
    created when openvino is installed and none is given).
    """
    flags = sorted((cpu_flags() or set()) & set(BF16_CPU_FLAGS))
    if flags:
        return True, f"CPU flags {', '.join(flags)}"
    caps: list[str] = []
    if core is None:
        try:
            core = shared_core()
        except BackendUnavailable:
            core = None
    if core is not None:
        try:
            caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        except Exception:  # noqa: BLE001 - an old plugin without the property: the flags decide
            caps = []
    if "BF16" in caps:
        return True, "OpenVINO's CPU plugin reports BF16"
    return False, f"no {' / '.join(BF16_CPU_FLAGS)} flag in /proc/cpuinfo" + (
        f"; OpenVINO CPU capabilities: {', '.join(caps)}" if caps else "")


_CORE: Any = None


def shared_core() -> Any:
    """The process's one ``openvino.Core``: compiled models never outlive the Core (and its plugins)
    that made them, whatever order the garbage collector finds them in.  A Core created per engine
    and dropped after ``compile_model`` crashed the process (SIGSEGV) later, at an unrelated
    garbage collection, in the test suite."""
    global _CORE
    if _CORE is None:
        _CORE = import_openvino().Core()
    return _CORE


def default_cache_dir(artifact: Path) -> Path:
    """``<artifact>.ov-cache/`` beside the artifact, or under ``~/.cache/vmaedet/openvino`` when that folder is read-only."""
    return artifact_cache_dir(artifact, ".ov-cache", "openvino")


def _content_key(manifest: ArtifactManifest) -> str:
    """16 hex digits naming the artifact's bytes: its sha256, and its external data's when it has some."""
    record = manifest.artifact
    if record.external_data is None:
        return record.sha256[:16]
    return hashlib.sha256(f"{record.sha256}:{record.external_data.sha256}".encode()).hexdigest()[:16]


def _check_device(device: str | None) -> None:
    if device is not None and str(device).strip().lower() != "cpu":
        raise EngineError("the OpenVINO engine runs on the CPU", received=f"device {device!r}", expected="cpu",
                          fix="run the artifact with device='cpu', or with the onnxruntime engine on a GPU")


def _check_precision(precision: str, core: Any) -> None:
    if precision not in PRECISION_HINTS:
        raise EngineError("the OpenVINO engine has no such precision", received=precision,
                          expected=" or ".join(PRECISION_HINTS),
                          fix="use precision fp32 (or bf16 on a CPU with avx512_bf16/AMX; int8 for an int8 export)")
    if precision == "bf16":
        native, why = native_bf16(core)
        if not native:
            raise BackendUnavailable("this CPU has no native bf16: OpenVINO would emulate it, slower than fp32",
                                     received=f"precision 'bf16' ({why})",
                                     expected="a CPU with avx512_bf16 or AMX (or OpenVINO reporting BF16)",
                                     fix="use precision fp32, or run on a CPU with avx512_bf16/AMX")


def _artifact_precision(path: Path) -> str | None:
    """The precision an artifact's manifest records (None when it cannot be read: opening it says why)."""
    from vmaedet.artifacts import read_manifest

    try:
        return read_manifest(path).precision
    except EngineError:
        return None


class OpenVINOEngine(Engine):
    """Run an exported fp32 (or int8 QDQ) ONNX artifact with OpenVINO on the CPU.

    Args:
        path: the ``.onnx`` file (with its manifest ``<path>.json``; an fp32 export).
        threads: inference threads (``INFERENCE_NUM_THREADS``; default: OpenVINO's choice, all cores).
        device: "cpu" (or None); any other device is refused.
        precision: "fp32" (inference precision hint f32), "bf16" (only on a CPU with native bf16) or
            "int8" (an int8 export: its quantized layers in int8, the rest with the f32 hint).
            Default: "int8" for an int8 export, else "fp32".
        cache_dir: the compiled-model cache folder (default ``<path>.ov-cache/`` beside the artifact); the
            cache goes into its sub-folder named by the artifact's sha256, so a re-exported artifact
            never loads the compiled model of the one it replaced.
        cache: False compiles at every start and writes no cache.
        input_hw / max_persons / max_batch: what the caller expects; a manifest that differs (another
            geometry, fewer persons or clips per call) is refused.  ``max_batch`` of the engine is the
            manifest's (1 for an artifact exported without a batch axis).

    Raises:
        BackendUnavailable: openvino is not installed, or bf16 asked for on a CPU without native bf16.
        EngineError: the artifact or its manifest is refused, or OpenVINO cannot compile the graph.
        OutputError: the cache folder cannot be written.
    """

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, *, device: str | None = None,
                 precision: str | None = None, cache_dir: str | Path | None = None, cache: bool = True,
                 input_hw: tuple[int, int] | None = None, max_persons: int | None = None,
                 max_batch: int | None = None) -> None:
        path = Path(path)
        precision = precision or ("int8" if _artifact_precision(path) == "int8" else "fp32")
        _check_device(device)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise EngineError("the OpenVINO thread count (threads) must be a whole number ≥ 1", received=threads,
                              expected="e.g. 2, or None for OpenVINO's choice", fix="pass threads=2")
        # fp32 and bf16 run an fp32 export (OpenVINO lowers it to bf16 itself); int8 runs an int8 export
        manifest = open_artifact(path, "onnx", input_hw=input_hw, precision=ARTIFACT_PRECISIONS.get(precision),
                                 max_persons=max_persons, max_batch=max_batch)
        ov = import_openvino()
        core = shared_core()
        _check_precision(precision, core)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.cache_dir: Path | None = None
        if cache:
            from vmaedet.safeio import check_writable_dir

            # one sub-folder per artifact content: OpenVINO keys a cache entry of a model given by path on the
            # path and the settings, not on the bytes, so a re-export to the same path would load the old model
            root = Path(cache_dir) if cache_dir is not None else default_cache_dir(path)
            self.cache_dir = check_writable_dir(root / _content_key(manifest),
                                                what="the OpenVINO model cache folder (cache_dir)")
            config["CACHE_DIR"] = str(self.cache_dir)
        try:
            # from the path (not a read model): a cache hit then skips reading and converting the ONNX graph
            self.compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise EngineError(f"OpenVINO {ov.__version__} cannot compile {path}", received=first,
                              expected=f"an opset-{manifest.opset} ONNX graph OpenVINO can read",
                              fix="upgrade openvino, or re-export the model with this installation") from exc
        self.names: dict[str, str] = manifest.input.names.as_dict()  #: graph names of clip, rois, output
        self._check_graph(manifest, path)
        super().__init__(precision=precision, device="cpu", input_hw=manifest.input.clip_hw,
                         max_persons=manifest.input.max_persons, short_side=manifest.input.short_side,
                         max_batch=manifest.input.max_batch)
        self.request = self.compiled.create_infer_request()
        self.loaded_from_cache: bool | None = None  #: whether the compiled model came from ``cache_dir`` (None: unknown)
        try:
            self.loaded_from_cache = bool(self.compiled.get_property("LOADED_FROM_CACHE"))
        except Exception:  # noqa: BLE001 - an OpenVINO without the property
            pass
        self.threads = threads
        self.version = str(ov.__version__)
        self.path = path
        self.manifest = manifest

    def _check_graph(self, manifest: ArtifactManifest, path: Path) -> None:
        """The graph's inputs and output must be the ones the manifest names.

        ``clip`` has the manifest's ``clip_shape`` (with ``max_batch`` > 1: a dynamic batch axis and
        the other axes the manifest's); ``rois`` is ``[?, 5]``.
        """
        inputs = {n: p for p in self.compiled.inputs for n in p.get_names()}
        outputs = {n: p for p in self.compiled.outputs for n in p.get_names()}
        clip, rois = inputs.get(self.names["clip"]), inputs.get(self.names["rois"])
        want = list(manifest.input.clip_shape)
        batched = manifest.input.max_batch > 1
        clip_ok = False
        if clip is not None and clip.get_partial_shape().rank.is_static:
            dims = list(clip.get_partial_shape())
            fixed = [d.get_length() if d.is_static else None for d in dims]
            clip_ok = len(fixed) == len(want) and fixed[1:] == want[1:] and (
                dims[0].is_dynamic if batched else fixed[0] == want[0])
        rois_ok = rois is not None and rois.get_partial_shape().rank.is_static and \
            rois.get_partial_shape().rank.get_length() == 2
        if not (clip_ok and rois_ok and self.names["output"] in outputs):
            raise EngineError(f"the graph of {path} does not match its manifest",
                              received={"inputs": {sorted(p.get_names())[0]: str(p.get_partial_shape())
                                                   for p in self.compiled.inputs},
                                        "outputs": sorted(outputs)},
                              expected=f"inputs {self.names['clip']} "
                                       + (f"[B, {', '.join(map(str, want[1:]))}] (B dynamic, ≤ {manifest.input.max_batch})"
                                          if batched else str(want)) + ", "
                                       f"{self.names['rois']} [K, 5]; output {self.names['output']}",
                              fix="re-export the model")
        self._clip_port, self._rois_port, self._out_port = clip, rois, outputs[self.names["output"]]

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        feeds = {
            self._clip_port: np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32),  # [B, 3, 16, H, W]
            self._rois_port: np.ascontiguousarray(rois.detach().cpu().numpy(), dtype=np.float32),  # [K, 5]
        }
        self.request.infer(feeds, share_inputs=True)
        logits = self.request.get_tensor(self._out_port).data  # [K, 80], OpenVINO's buffer (reused next call)
        return torch.from_numpy(np.array(logits, dtype=np.float32, copy=True))

    def close(self) -> None:
        # release in dependency order (request → ports → compiled model); the Core lives for the process
        self.request = None  # type: ignore[assignment]
        self._clip_port = self._rois_port = self._out_port = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "artifact": str(self.path), "openvino": self.version, "threads": self.threads,
                "max_batch": self.max_batch,
                "cache_dir": str(self.cache_dir) if self.cache_dir else None, "loaded_from_cache": self.loaded_from_cache}
