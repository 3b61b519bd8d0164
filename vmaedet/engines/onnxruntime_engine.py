"""The onnxruntime engine: CPU, CUDA and TensorRT execution providers, driven by the manifest.

What it guarantees:

* **The providers asked for are the providers used.**  After the session is created,
  ``session.get_providers()`` is compared with the request; a GPU provider (CUDA, TensorRT) that
  did not load — onnxruntime only logs that and carries on on the CPU — raises
  :class:`~vmaedet.errors.BackendUnavailable` naming what was asked for and what was got.
* ``tensorrt`` alone means TensorRT, then CUDA for the nodes TensorRT does not take, then CPU.
* **Provider options** (:func:`provider_options`): CUDA on the engine's device, TF32 off for an
  fp32 artifact (its 1e-4 parity); TensorRT with FP16 for fp16 artifacts, an engine cache and a
  timing cache (a folder beside the artifact, or ``cache_dir``) and one optimisation profile over
  K (``rois`` 1×5 … max_persons×5) and the clips B (1 … max_batch for an artifact exported with a
  batch axis, else the clip's fixed shape), so the engine is built once, not per session and not
  again when K or B grows.
* **IO binding**: inputs are bound where they are (torch tensors: device pointers on CUDA, host
  pointers on the CPU, no numpy round trip) with the shape of each call (``[B, 3, 16, H, W]``,
  ``[K, 5]``) and the output goes to a preallocated tensor per K.
* **Batches**: ``max_batch`` comes from the manifest (1 for artifacts exported before batching).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vmaedet.errors import BackendUnavailable, EngineError
from vmaedet.artifacts import ArtifactManifest, open_artifact
from vmaedet.engines.base import Engine, artifact_cache_dir, import_backend

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (TRT, CUDA)
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TRT, "trt": TRT}
INSTALL_FIX = ("install vmaedet[cpu] (onnxruntime, CPU) or vmaedet[gpu] (onnxruntime-gpu: CUDA and TensorRT "
               "providers) — one of the two, not both")
#: K the TensorRT profile is tuned for (the profile covers 1 … max_persons).
TRT_OPT_PERSONS = 8
#: B the TensorRT profile is tuned for when the artifact takes batches (the profile covers 1 … max_batch).
TRT_OPT_BATCH = 4


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or :class:`BackendUnavailable` saying which extra to install."""
    return import_backend("onnxruntime", "onnxruntime", INSTALL_FIX)


def _installed_ort_distributions() -> list[str]:
    """Which onnxruntime wheels are installed (two of them share one ``onnxruntime`` module)."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def _gpu_fix(installed: Sequence[str]) -> str:
    if {"onnxruntime", "onnxruntime-gpu"} <= set(installed):
        return ("both onnxruntime and onnxruntime-gpu are installed and the CPU-only one shadows the other: "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'vmaedet[gpu]'")
    return "pip install 'vmaedet[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU, or run on the CPU (device='cpu')"


def parse_device(device: str | torch.device | None) -> tuple[str | None, int | None]:
    """``None`` → (None, None); ``"cpu"`` → ("cpu", None); ``"cuda"`` / ``"cuda:1"`` → ("cuda", None / 1)."""
    if device is None:
        return None, None
    text = str(device).strip().lower()
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", text)
    if not m or (m.group(1) == "cpu" and m.group(2)):
        raise EngineError("unknown device for the onnxruntime engine", received=str(device), expected="cpu, cuda or cuda:N")
    return m.group(1), (int(m.group(2)) if m.group(2) else None)


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str], device: str | None = None,
                      gpu_present: bool = True, installed: Sequence[str] = ()) -> list[str]:
    """Full provider names, in priority order, for a request and a device.

    * nothing requested: ``device`` decides — "cpu" → CPU; "cuda[:N]" → CUDA, CPU; ``None`` → CUDA
      then CPU when this onnxruntime has CUDA and a GPU is present (``gpu_present``), else CPU;
    * TensorRT requested without CUDA → TensorRT, CUDA, (CPU): TensorRT falls back to CUDA;
    * a GPU provider always gets CPU after it (onnxruntime adds it anyway; it is said here).

    Raises:
        EngineError: providers and device contradict each other (a GPU provider on "cpu", or CPU
            alone on "cuda").
        BackendUnavailable: a provider this onnxruntime does not have (naming the extra to install).
    """
    kind, _ = parse_device(device)
    if requested is None:
        if kind == "cpu":
            names = [CPU]
        elif kind == "cuda" or (CUDA in available and gpu_present):
            names = [CUDA, CPU]
        else:
            names = [CPU]
    else:
        names = []
        for p in requested:
            name = PROVIDER_ALIASES.get(p.lower(), p)
            if name not in names:
                names.append(name)
        if not names:
            raise EngineError("no onnxruntime execution provider given", expected="cpu, cuda or tensorrt")
        if TRT in names and CUDA not in names:
            names.insert(names.index(TRT) + 1, CUDA)
        if any(p in GPU_PROVIDERS for p in names) and CPU not in names:
            names.append(CPU)
        gpu = [p for p in names if p in GPU_PROVIDERS]
        if kind == "cpu" and gpu:
            raise EngineError("the onnxruntime providers and the device contradict each other",
                              received=f"providers {list(requested)} with device cpu",
                              fix="drop the GPU providers, or run on a GPU (device='cuda')")
        if kind == "cuda" and not gpu:
            raise EngineError("the onnxruntime providers and the device contradict each other",
                              received=f"providers {list(requested)} with device {device}",
                              fix="ask for the cuda or tensorrt provider, or run on the CPU (device='cpu')")
    missing = [p for p in names if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime execution provider(s) not available here: {', '.join(missing)}",
            received=list(requested) if requested is not None else f"device {device}",
            expected=f"some of {list(available)}",
            fix=_gpu_fix(installed) if any(p in GPU_PROVIDERS for p in missing) else INSTALL_FIX,
        )
    return names


def check_providers(requested: Sequence[str], got: Sequence[str], installed: Sequence[str] = ()) -> None:
    """Raise when a GPU provider that was requested is not among those the session uses.

    onnxruntime does not fail when the CUDA or TensorRT provider cannot load (no driver, no cuDNN,
    no TensorRT libraries): it logs and runs on the CPU.  That is refused here.
    """
    lost = [p for p in requested if p in GPU_PROVIDERS and p not in got]
    if lost:
        raise BackendUnavailable(
            f"onnxruntime did not load the {' and '.join(lost)}: the session would silently run on {', '.join(got) or 'nothing'}",
            received=f"requested {list(requested)}, got {list(got)}",
            expected=f"a session using {', '.join(lost)}",
            fix=("check the CUDA/cuDNN (and TensorRT) libraries onnxruntime-gpu needs (run `vmaedet doctor`); "
                 + _gpu_fix(installed)),
        )


class SessionLoadError(EngineError):
    """onnxruntime refused a file: not an ONNX graph, or one this onnxruntime cannot run.

    Raised by :func:`create_session`; callers that know what the file was meant to be catch it and
    say so in their own words (``received`` is onnxruntime's reason, ready to reuse).

    Attributes:
        path: the file (or ``"<bytes>"`` for an in-memory model).
        reason: ``"<ExceptionType>: <first line of onnxruntime's message>"`` (≤ 300 characters).
        ort_version: the onnxruntime version that refused it.
    """

    def __init__(self, path: str, reason: str, ort_version: str) -> None:
        self.path = path
        self.reason = reason
        self.ort_version = ort_version
        super().__init__(f"onnxruntime {ort_version} cannot load {path}", received=reason,
                         expected=f"an ONNX graph onnxruntime {ort_version} can run",
                         fix="export the model again, or upgrade onnxruntime")


#: onnxruntime graph rewrites turned off for int8 (QDQ) artifacts: ``MatMulAddFusion`` rewrites
#: DQ → MatMul → Add (bias) into Reshape → Gemm in float before the QDQ pass can fuse the int8 MatMul
#: (onnxruntime 1.32), so every int8 layer would run in float with Q/DQ around it — slower than fp32.
#: Without it the linear layers become ``MatMulIntegerToFloat``.
INT8_DISABLED_OPTIMIZERS: tuple[str, ...] = ("MatMulAddFusion",)


def session_kwargs(precision: str | None) -> dict[str, Any]:
    """Extra :func:`create_session` arguments an artifact of ``precision`` needs (int8: the optimisers to disable)."""
    return {"disabled_optimizers": INT8_DISABLED_OPTIMIZERS} if precision == "int8" else {}


def create_session(model: str | Path | bytes, *, device: str | None = "cpu", providers: Sequence[str] | None = None,
                   provider_options: Sequence[dict[str, str]] | None = None, threads: int | None = None,
                   cpu_fallback: bool = False, quiet: bool = True,
                   disabled_optimizers: Sequence[str] | None = None) -> Any:
    """The one way the package opens an onnxruntime ``InferenceSession``.

    Args:
        model: an ``.onnx`` path, or a serialised model (bytes).
        device: "cpu", "cuda" or "cuda:N"; decides the providers when ``providers`` is None (see
            :func:`resolve_providers`: "cuda" → CUDA, CPU).  ``None``: CUDA when present, else CPU.
        providers: provider names or aliases ("cpu", "cuda", "tensorrt"), overriding ``device``'s choice.
        provider_options: one dict per resolved provider (default: ``device_id`` for CUDA on "cuda:N").
        threads: intra-op threads (default: onnxruntime's choice).
        cpu_fallback: when the device's GPU provider is not in this onnxruntime, or does not load,
            run on the CPU instead of raising (for optional helpers such as person detectors).
        quiet: onnxruntime logs errors only (its warnings about unused initialisers and provider
            fallbacks are not the user's business).
        disabled_optimizers: onnxruntime graph optimisers to leave out by name (int8 artifacts:
            :data:`INT8_DISABLED_OPTIMIZERS`, see :func:`session_kwargs`).

    Raises:
        BackendUnavailable: onnxruntime or a requested provider is missing, or a GPU provider did
            not load (unless ``cpu_fallback``).
        SessionLoadError: onnxruntime cannot load the file (callers rephrase it).
    """
    ort = import_onnxruntime()
    installed = _installed_ort_distributions()
    available = list(ort.get_available_providers())
    gpu_present = torch.cuda.is_available()
    try:
        chosen = resolve_providers(providers, available, device, gpu_present, installed)
    except BackendUnavailable:
        if not cpu_fallback:
            raise
        chosen = [CPU]
    if provider_options is None:
        _, index = parse_device(device)
        provider_options = [{"device_id": str(index)} if p == CUDA and index is not None else {} for p in chosen]
    opts = ort.SessionOptions()
    if quiet:
        opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    source = model if isinstance(model, bytes) else str(model)
    try:
        extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
        session = ort.InferenceSession(source, opts, providers=chosen, provider_options=list(provider_options), **extra)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises InvalidProtobuf, Fail, … for unusable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__
        raise SessionLoadError("<bytes>" if isinstance(model, bytes) else str(model), reason, ort.__version__) from exc
    if not cpu_fallback:
        check_providers(chosen, session.get_providers(), installed)
    return session


def _shape(name: str, dims: Sequence[int]) -> str:
    return f"{name}:{'x'.join(str(int(d)) for d in dims)}"


def provider_options(providers: Sequence[str], *, device_id: int = 0, precision: str = "fp32",
                     cache_dir: str | Path | None = None, clip_name: str = "clip", rois_name: str = "rois",
                     clip_shape: Sequence[int] = (), max_persons: int = 64,
                     max_batch: int = 1) -> list[dict[str, str]]:
    """One options dict per provider (same order), as ``InferenceSession(..., provider_options=)`` takes.

    CUDA: ``device_id``; the memory arena grows by what is asked, not by doubling; cuDNN picks
    the convolution algorithm heuristically (one fixed-shape Conv3d: no exhaustive search at
    start-up); TF32 off for fp32 artifacts and for the float parts of int8 ones (TF32 GEMMs would
    miss the fp32 parity of 1e-4).
    TensorRT: ``device_id``; FP16 for fp16 artifacts; INT8 for int8 (QDQ) artifacts (the provider
    reads the graph's Q/DQ scales: explicit quantization, no calibration table); engine and timing caches in ``cache_dir``;
    one profile: ``rois`` from 1×5 over ``TRT_OPT_PERSONS``×5 to ``max_persons``×5, and the clip at
    its fixed shape (``max_batch`` 1) or, for an artifact with a batch axis, from 1 over
    ``min(TRT_OPT_BATCH, max_batch)`` to ``max_batch`` clips (``clip_shape`` is one clip's shape).
    """
    out: list[dict[str, str]] = []
    for p in providers:
        if p == CUDA:
            out.append({"device_id": str(device_id), "arena_extend_strategy": "kSameAsRequested",
                        "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1",
                        "use_tf32": "0" if precision in ("fp32", "int8") else "1"})
        elif p == TRT:
            if cache_dir is None:
                raise EngineError("the TensorRT provider needs a cache folder", fix="pass cache_dir")
            for name in (clip_name, rois_name):
                if any(c in name for c in ",:"):
                    raise EngineError("an input name cannot be written into a TensorRT profile", received=name,
                                      fix="re-export the model (inputs clip and rois)")
            opt = max(1, min(TRT_OPT_PERSONS, max_persons))
            batches = (1, max(1, min(TRT_OPT_BATCH, max_batch)), max_batch) if max_batch > 1 else (None,) * 3
            clips = [[_shape(clip_name, (b, *clip_shape[1:]) if b else clip_shape)] if clip_shape else []
                     for b in batches]  # min, opt, max
            out.append({
                "device_id": str(device_id),
                "trt_fp16_enable": "True" if precision == "fp16" else "False",
                **({"trt_int8_enable": "True"} if precision == "int8" else {}),
                "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir),
                "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir),
                "trt_profile_min_shapes": ",".join([*clips[0], _shape(rois_name, (1, 5))]),
                "trt_profile_opt_shapes": ",".join([*clips[1], _shape(rois_name, (opt, 5))]),
                "trt_profile_max_shapes": ",".join([*clips[2], _shape(rois_name, (max_persons, 5))]),
            })
        else:
            out.append({})
    return out


def default_cache_dir(artifact: Path) -> Path:
    """``<artifact>.trt-cache/`` beside the artifact, or under ``~/.cache/vmaedet/ort-trt`` when that folder is read-only."""
    return artifact_cache_dir(artifact, ".trt-cache", "ort-trt")


class OnnxRuntimeEngine(Engine):
    """Run an exported ONNX artifact with onnxruntime.

    Geometry, person capacity, precision and the graph's input/output names come from the sidecar
    manifest ``<path>.json``; an artifact without one, or whose bytes differ from what the manifest
    records, is refused.

    Args:
        path: the ``.onnx`` file.
        providers: provider names or aliases ("cpu", "cuda", "tensorrt"); default from ``device``.
        threads: intra-op threads (default: onnxruntime's choice).
        device: "cpu", "cuda" or "cuda:N" — the providers' device, and where ``infer`` wants the
            clip (``self.device``: "cuda:N" when a GPU provider runs and torch has CUDA, else "cpu").
            Default: CUDA when this onnxruntime has it and a GPU is present, else the CPU.
        cache_dir: TensorRT engine/timing cache folder (default ``<path>.trt-cache/``).
        io_binding: bind torch tensors in place (default); False feeds host numpy arrays (kept for
            comparison and benchmarks).
        input_hw / precision / max_persons / max_batch: what the caller expects; a manifest that
            differs (another geometry or precision, fewer persons or clips per call) is refused.

    Raises:
        BackendUnavailable: onnxruntime or a requested provider is missing, or a GPU provider did
            not load (instead of running on the CPU).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None, *,
                 device: str | None = None, cache_dir: str | Path | None = None, io_binding: bool = True,
                 input_hw: tuple[int, int] | None = None, precision: str | None = None,
                 max_persons: int | None = None, max_batch: int | None = None) -> None:
        path = Path(path)
        manifest = open_artifact(path, "onnx", input_hw=input_hw, precision=precision, max_persons=max_persons,
                                 max_batch=max_batch)
        ort = import_onnxruntime()
        installed = _installed_ort_distributions()
        gpu_present = torch.cuda.is_available()
        chosen = resolve_providers(providers, ort.get_available_providers(), device, gpu_present, installed)
        _, index = parse_device(device)
        uses_gpu = any(p in GPU_PROVIDERS for p in chosen)
        device_id = index if index is not None else (torch.cuda.current_device() if uses_gpu and gpu_present else 0)
        names: dict[str, str] = manifest.input.names.as_dict()  #: graph names of clip, rois, output
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(path)
        if TRT in chosen:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineError(f"cannot create the TensorRT cache folder {self.cache_dir}",
                                  received=f"{type(exc).__name__}: {exc.strerror or exc}",
                                  fix="pass a writable cache_dir") from exc
        self.provider_options = provider_options(
            chosen, device_id=device_id, precision=manifest.precision, cache_dir=self.cache_dir,
            clip_name=names["clip"], rois_name=names["rois"], clip_shape=manifest.input.clip_shape,
            max_persons=manifest.input.max_persons, max_batch=manifest.input.max_batch)
        try:
            self.session = create_session(path, device=device, providers=chosen, provider_options=self.provider_options,
                                          threads=threads, **session_kwargs(manifest.precision))
        except SessionLoadError as exc:
            raise EngineError(
                f"onnxruntime {exc.ort_version} cannot load {path}",
                received=exc.reason,
                expected=f"an opset-{manifest.opset} graph written with onnxruntime {manifest.versions.get('onnxruntime')}",
                fix="upgrade onnxruntime, or re-export the model with this installation",
            ) from exc
        self.providers: list[str] = list(self.session.get_providers())  #: execution providers in use, first preferred
        self.names = names
        self._check_graph(manifest, path)
        runs_on_gpu = any(p in GPU_PROVIDERS for p in self.providers)
        # Inputs are bound where the engine's device is: on the GPU when a GPU provider runs and torch
        # can hold CUDA tensors; otherwise on the host (onnxruntime copies host inputs to its provider).
        bind_device = f"cuda:{device_id}" if runs_on_gpu and gpu_present else "cpu"
        super().__init__(precision=manifest.precision, device=bind_device, input_hw=manifest.input.clip_hw,
                         max_persons=manifest.input.max_persons, short_side=manifest.input.short_side,
                         max_batch=manifest.input.max_batch)
        self.io_binding = bool(io_binding)
        self._torch_device = torch.device(bind_device)
        self._num_classes = manifest.num_classes
        self._outputs: dict[int, torch.Tensor] = {}  # K → preallocated [K, classes] output on the device
        self.path = path
        self.manifest = manifest

    def _check_graph(self, manifest: ArtifactManifest, path: Path) -> None:
        """The graph's inputs and output must be the ones the manifest names.

        The clip input has the manifest's ``clip_shape``; with ``max_batch`` > 1 its batch axis is
        dynamic (a named dimension) and the other axes are the manifest's.
        """
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        clip = inputs.get(self.names["clip"])
        want = list(manifest.input.clip_shape)
        batched = manifest.input.max_batch > 1
        if batched:
            shape_ok = (clip is not None and len(clip.shape) == len(want) and not isinstance(clip.shape[0], int)
                        and list(clip.shape[1:]) == want[1:])
        else:
            shape_ok = clip is not None and list(clip.shape) == want
        if not shape_ok or self.names["rois"] not in inputs or self.names["output"] not in outputs:
            clip_text = f"[B, {', '.join(map(str, want[1:]))}] (B dynamic, ≤ {manifest.input.max_batch})" if batched \
                else str(want)
            raise EngineError(f"the graph of {path} does not match its manifest",
                              received={"inputs": {n: i.shape for n, i in inputs.items()}, "outputs": sorted(outputs)},
                              expected=f"inputs {self.names['clip']} {clip_text}, "
                                       f"{self.names['rois']} [K, 5]; output {self.names['output']}",
                              fix="re-export the model")

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if not self.io_binding:
            return self._infer_numpy(clip, rois)
        dev = self._torch_device
        clip_d = clip.detach().to(dev, torch.float32).contiguous()  # [B, 3, 16, H, W]; no copy when already there
        rois_d = rois.detach().to(dev, torch.float32).contiguous()  # [K, 5]
        k = int(rois_d.shape[0])
        out = self._outputs.get(k)
        if out is None:
            out = self._outputs[k] = torch.empty((k, self._num_classes), dtype=torch.float32, device=dev)  # [K, 80]
        kind, index = ("cuda", dev.index or 0) if dev.type == "cuda" else ("cpu", 0)
        # A binding per call (≈2 µs measured): a shared one would make concurrent infer() calls race.
        binding = self.session.io_binding()
        binding.bind_input(self.names["clip"], kind, index, np.float32, tuple(clip_d.shape), clip_d.data_ptr())
        binding.bind_input(self.names["rois"], kind, index, np.float32, tuple(rois_d.shape), rois_d.data_ptr())
        binding.bind_output(self.names["output"], kind, index, np.float32, tuple(out.shape), out.data_ptr())
        if dev.type == "cuda":  # onnxruntime runs on its own stream: the inputs must be written first
            torch.cuda.current_stream(dev).synchronize()
        self.session.run_with_iobinding(binding)  # synchronises its stream before returning
        return out.to("cpu", copy=True)  # [K, 80]; the preallocated tensor is reused by the next call

    def _infer_numpy(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        feeds = {
            self.names["clip"]: np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32),  # [B, 3, 16, H, W]
            self.names["rois"]: np.ascontiguousarray(rois.detach().cpu().numpy(), dtype=np.float32),  # [K, 5]
        }
        (logits,) = self.session.run([self.names["output"]], feeds)  # [K, 80]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        self._outputs.clear()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "artifact": str(self.path),
                "io_binding": self.io_binding, "max_batch": self.max_batch}
