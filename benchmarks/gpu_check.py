"""`make gpu-check`: one command that proves the GPU path on one GPU, in at most five minutes.

Eight steps, each with its own time budget, each saved the moment it ends (a timeout or a kill keeps
what ran), each skipped with the reason when the machine lacks what it needs:

1. environment — Python, torch (+ CUDA, cuDNN), Triton, NumPy, onnxruntime and its providers,
   TensorRT status, cuda-python/CuPy, the GPU (name, capability, memory, driver), and whether this
   NumPy raises on ``int()``/``float()`` of a 1-element array (TensorRT's plugin-attribute conversion);
2. Triton RoIAlignMax on CUDA (``benchmarks/gpu_check_roi.py: step_triton``);
3. the AOT PTX launched in TensorRT's argument order (``benchmarks/gpu_check_roi.py: step_aot``);
4. the torch engine on CUDA: fp32 / bf16 / fp16, eager and CUDA graph, vs CPU fp32 with a head
   re-initialised to realistic logits (|logit| ≈ 1–10), K = 0, 1, 8, 64; ViT-S and ViT-B latency at
   16×256×464 (bf16, SDPA attention, CUDA graph; p50/p95) and % of the measured bf16 matmul peak,
   against the target "ViT-B, 8 persons ≤ 3 ms on an H100/H200-class GPU (≥ 40 % of bf16 peak)";
5. many cameras, one engine (``benchmarks/gpu_multistream.py``): the real multi-source runtime
   (``vmaedet.runtime.pipeline.stream``) on 8 live synthetic 1920×1080 cameras at 30 fps, ViT-B (bf16,
   SDPA) batching up to 8 keyframe clips per call, a keyframe every 8 frames per source, live policy,
   for 30 s of stream time: frames/s and drops per source, keyframes/s, batch sizes, engine time per
   call, glass-to-result latency, GPU memory, and the verdict "sustained" (every source ≥ 29 frames/s
   processed, no keyframe lost) against the goal "≥ 8 real-time 1080p streams on one H100/H200";
6. onnxruntime's CUDA provider (when installed): fp32 and fp16 graphs, providers actually used,
   parity, host feeds vs IO binding;
7. TensorRT (when installed): built-in, AOT and JIT plugin engines over K = 3, 1, 8, 2, 8 with CUDA
   graphs (not for JIT) and one timing cache, parity vs torch fp32;
8. ``pytest -m "gpu or trt"``.

Without a CUDA GPU (or with ``--smoke``) only step 1 runs and the others say why they did not: CI
runs it that way in seconds.  Output: ``benchmarks/results/gpu_check.json`` (``--out``) and a
markdown table beside it (same stem, ``.md``), both rewritten after every step.  Random weights
throughout (no checkpoint is needed).  Exit status 1 when a step failed.

    python benchmarks/gpu_check.py                      # on the GPU machine (pip install --no-deps -e .)
    python benchmarks/gpu_check.py --smoke --out /tmp/g.json
    python benchmarks/gpu_check.py --steps 1,4          # only some steps
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runs from a checkout without an install, too
    sys.path.insert(0, str(REPO_ROOT))

SCHEMA = "vmaedet-gpu-check-1"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "gpu_check.json"
TOTAL_BUDGET_S = 300.0  # the whole script, five minutes
MIN_STEP_S = 5.0  # a step with less time than this left is skipped, not started
HW = (256, 464)  # the seed's padded clip for 16:9 video: 16×256×464
PARITY_KS = (0, 1, 8, 64)
TRT_KS = (3, 1, 8, 2, 8)
TARGET = {"variant": "vit_base_patch16_224", "persons": 8, "p50_ms": 3.0, "fraction_of_peak": 0.40,
          "gpus": r"H100|H200|H800|H20\b|GH200"}
#: Tolerances vs CPU fp32 (sigmoid scores for the low precisions, as the verify ladder states them).
TORCH_TOL = {"fp32": {"logits_max_abs": 1e-3}, "bf16": {"scores_max_abs": 5e-2}, "fp16": {"scores_max_abs": 1e-2}}
ORT_TOL = {"fp32": {"logits_max_abs": 1e-3}, "fp16": {"scores_max_abs": 2e-2}}
TRT_TOL = {"scores_max_abs": 2e-2}
STATUSES = ("ok", "failed", "skipped")


# -- the run record -----------------------------------------------------------------------------------
class StepTimeout(BaseException):
    """Raised in a step when its budget is spent (a BaseException: a step's own ``except Exception``
    must not swallow it)."""


@dataclass
class Options:
    """What the steps measure (the command-line options)."""

    device: str = "cuda"
    smoke: bool = False
    steps: frozenset[int] = frozenset(range(1, 9))
    variants: tuple[str, ...] = ("vit_small_patch16_224", "vit_base_patch16_224")
    parity_variant: str = "vit_base_patch16_224"
    export_variant: str = "vit_tiny"  # ONNX/TensorRT steps: the paths are the point, not the model's size
    iters: int = 50
    warmup: int = 5
    total_budget_s: float = TOTAL_BUDGET_S
    workdir: str | None = None
    hw: tuple[int, int] = HW  # clip geometry of steps 4, 6, 7 (smaller only in the CPU tests)
    parity_ks: tuple[int, ...] = PARITY_KS
    cuda_graph: bool = True  # step 4 with CUDA graphs (off only in the CPU tests)
    peak_n: int = 8192  # matrix size of the bf16 peak measurement
    # step 5 (many cameras, one engine); smaller only in the CPU tests
    stream_variant: str = "vit_base_patch16_224"
    stream_sources: int = 8
    stream_size: tuple[int, int] = (1920, 1080)  # (W, H)
    stream_fps: float = 30.0
    stream_seconds: float = 30.0  # stream time (less when the step's budget is short)
    stream_stride: int = 8
    stream_max_batch: int = 8
    stream_precision: str = "bf16"
    stream_detector: str = "auto"  # ssdlite where installed (its cost; the scene's boxes), else the scene's boxes


@dataclass
class Context:
    """Handed to every step: the options, whether CUDA is here, and the step's time left."""

    opts: Options
    cuda: bool
    cuda_why: str
    deadline: float = math.inf  # time.monotonic() by which the step must end

    def left(self) -> float:
        """Seconds left in this step's budget."""
        return self.deadline - time.monotonic()


@dataclass
class Step:
    """One check: ``fn(ctx, rec)`` fills ``rec`` (figures, summary; may set status/reason)."""

    id: int
    name: str
    title: str
    budget_s: float
    fn: Callable[[Context, dict[str, Any]], None]
    needs_cuda: bool = True


def _skip(rec: dict[str, Any], reason: str) -> None:
    rec["status"], rec["reason"] = "skipped", reason


def _fail(rec: dict[str, Any], reason: str) -> None:
    rec["status"], rec["reason"] = "failed", reason


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the main thread after ``seconds`` (no-op where signals cannot)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0 or math.isinf(seconds):
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise StepTimeout(f"exceeded its time budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover - numpy is a torch dependency
        pass
    return str(value)


def _summary_of(rec: dict[str, Any]) -> str:
    """One line for the markdown table: the step's summary, else its reason, else a few figures."""
    if rec.get("summary"):
        return str(rec["summary"])
    if rec.get("reason"):
        return str(rec["reason"])
    scalars = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (rec.get("figures") or {}).items()
               if isinstance(v, (int, float, str, bool))]
    return ", ".join(scalars[:5])


def markdown(doc: dict[str, Any]) -> str:
    """The run as a markdown table (one row per step) with its date, GPU and versions."""
    env = doc.get("environment") or {}
    gpu = env.get("gpu") or {}
    lines = [
        f"# vmaedet gpu-check ({doc.get('mode')})",
        "",
        f"{doc.get('started')} · GPU: {gpu.get('name', 'none')} · torch {env.get('torch')} · "
        f"TensorRT {env.get('tensorrt') or 'not installed'} · onnxruntime {env.get('onnxruntime') or 'not installed'} · "
        f"commit {env.get('git_commit')}",
        "",
        "| # | step | status | time (s) | result |",
        "|---|---|---|---|---|",
    ]
    for rec in doc["steps"]:
        text = _summary_of(rec).replace("|", "\\|").replace("\n", " ")
        secs = f"{rec['seconds']:.1f}" if isinstance(rec.get("seconds"), (int, float)) else ""
        lines.append(f"| {rec['id']} | {rec['title']} | {rec['status']} | {secs} | {text} |")
    return "\n".join(lines) + "\n"


def save(doc: dict[str, Any], out: Path) -> None:
    """Rewrite the JSON and the markdown table, each atomically (temp file beside it, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(_jsonable(doc), indent=2) + "\n"), (out.with_suffix(".md"), markdown(doc))):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _environment() -> dict[str, Any]:
    try:
        from vmaedet.envinfo import environment

        return environment()
    except Exception as exc:  # noqa: BLE001 - the record must not stop the check
        return {"error": f"vmaedet.envinfo.environment() failed: {type(exc).__name__}: {exc}",
                "python": platform.python_version(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat()}


def _cuda_state(device: str) -> tuple[bool, str]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return False, f"no CUDA GPU (torch is not importable: {exc})"
    try:
        if not torch.cuda.is_available():
            return False, f"no CUDA GPU (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
        torch.device(device)
    except Exception as exc:  # noqa: BLE001
        return False, f"no CUDA GPU usable as {device!r} ({type(exc).__name__}: {exc})"
    return True, ""


def run_checks(opts: Options, out: Path, steps: Sequence[Step] | None = None) -> dict[str, Any]:
    """Run the steps in order; after each, rewrite ``out`` (JSON) and its ``.md`` table."""
    steps = list(STEPS if steps is None else steps)
    t_start = time.monotonic()
    end = t_start + opts.total_budget_s
    cuda, cuda_why = _cuda_state(opts.device)
    ctx = Context(opts=opts, cuda=cuda, cuda_why=cuda_why)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "mode": "smoke" if (opts.smoke or not cuda) else "full",
        "options": {"device": opts.device, "smoke": opts.smoke, "steps": sorted(opts.steps),
                    "variants": list(opts.variants), "parity_variant": opts.parity_variant,
                    "export_variant": opts.export_variant, "iters": opts.iters, "warmup": opts.warmup,
                    "total_budget_s": opts.total_budget_s, "input_hw": list(opts.hw),
                    "stream": {"variant": opts.stream_variant, "sources": opts.stream_sources,
                               "frame_size": list(opts.stream_size), "fps": opts.stream_fps,
                               "seconds": opts.stream_seconds, "stride": opts.stream_stride,
                               "max_batch": opts.stream_max_batch, "precision": opts.stream_precision,
                               "detector": opts.stream_detector}},
        "cuda": {"available": cuda, "reason": cuda_why or None},
        "environment": _environment(),
        "steps": [{"id": s.id, "name": s.name, "title": s.title, "status": "pending", "budget_s": s.budget_s,
                   "reason": "not reached: the run stopped before this step", "seconds": None, "figures": {}}
                  for s in steps],
    }
    save(doc, out)
    for step, rec in zip(steps, doc["steps"]):
        rec["reason"] = ""
        if step.id not in opts.steps:
            _skip(rec, f"not selected (--steps {','.join(map(str, sorted(opts.steps)))})")
        elif step.needs_cuda and not cuda:
            _skip(rec, cuda_why)
        elif step.needs_cuda and opts.smoke:
            _skip(rec, "smoke mode (--smoke): GPU steps not run")
        elif end - time.monotonic() < MIN_STEP_S:
            _skip(rec, f"the {opts.total_budget_s:.0f}-s budget of the whole check was spent")
        if rec["status"] == "skipped":
            rec["seconds"] = 0.0
            save(doc, out)
            continue
        budget = min(step.budget_s, end - time.monotonic())
        rec.update(status="running", budget_s=round(budget, 1))
        save(doc, out)  # a kill during the step leaves it marked "running"
        ctx.deadline = time.monotonic() + budget
        t0 = time.monotonic()
        try:
            with _alarm(budget):
                step.fn(ctx, rec)
            if rec["status"] == "running":
                rec["status"] = "ok"
        except StepTimeout as exc:
            _fail(rec, f"{exc}; the figures above were measured before it ran out")
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the next step still runs
            _fail(rec, f"{type(exc).__name__}: {str(exc).strip()}"[:2000])
            rec["traceback"] = traceback.format_exc(limit=8)[-4000:]
        if rec["status"] not in STATUSES:
            _fail(rec, f"the step ended with an unknown status {rec['status']!r}")
        if rec["status"] == "skipped" and not rec.get("reason"):
            rec["reason"] = "skipped (no reason given by the step)"
        rec["seconds"] = round(time.monotonic() - t0, 2)
        _free_gpu()
        save(doc, out)
    doc["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc["elapsed_s"] = round(time.monotonic() - t_start, 1)
    save(doc, out)
    return doc


def _free_gpu() -> None:
    try:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# -- step 1: environment ------------------------------------------------------------------------------
def numpy_attribute_check() -> dict[str, Any]:
    """Does this NumPy raise on ``int()``/``float()`` of a 1-element array (TensorRT's attribute conversion)?"""
    import warnings

    import numpy as np

    res: dict[str, Any] = {"numpy": np.__version__}
    cases = {"int(np.array([3], dtype=np.int32))": lambda: int(np.array([3], dtype=np.int32)),
             "float(np.array([0.0625], dtype=np.float32))": lambda: float(np.array([0.0625], dtype=np.float32))}
    raises = []
    for text, fn in cases.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res[text] = {"value": fn(), "warning": str(caught[0].message) if caught else None}
            except Exception as exc:  # noqa: BLE001
                res[text] = {"raises": f"{type(exc).__name__}: {exc}"}
                raises.append(text)
    res["conversion_raises"] = bool(raises)
    return res


def _module_version(name: str) -> str | None:
    """``name.__version__``; None when it is not installed (an import failure is reported as such)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):  # a dotted name whose parent package is absent
        return None
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001
        return f"import fails: {type(exc).__name__}: {exc}"[:300]
    return str(getattr(mod, "__version__", "unknown version"))


def triton_build_check() -> dict[str, Any]:
    """What Triton needs to build its small C launcher on its first GPU launch: a C compiler (``$CC``,
    else gcc or clang) and ``Python.h``.  Without them steps 2 and 3 fail at their first kernel."""
    import shutil
    import sysconfig

    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    res = {"c_compiler": cc, "python_h": str(header) if header.is_file() else None}
    res["ok"] = bool(cc) and header.is_file()
    return res


def step_environment(ctx: Context, rec: dict[str, Any]) -> None:
    import torch

    fig: dict[str, Any] = rec["figures"]
    fig["python"] = platform.python_version()
    fig["torch"] = torch.__version__
    fig["torch_cuda"] = torch.version.cuda
    fig["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    for name in ("triton", "numpy", "torchvision", "onnx", "onnxruntime", "tensorrt", "cupy"):
        fig[name] = _module_version(name)
    fig["cuda-python"] = _module_version("cuda.bindings") or _module_version("cuda")
    try:
        import onnxruntime as ort

        fig["onnxruntime_providers"] = list(ort.get_available_providers())
    except Exception as exc:  # noqa: BLE001
        fig["onnxruntime_providers"] = f"not available ({type(exc).__name__}: {exc})"[:300]
    try:
        from vmaedet.export.tensorrt import tensorrt_status

        status = tensorrt_status()
        fig["tensorrt_status"] = {"available": bool(status[0]), "reason": str(status[1])}
    except Exception as exc:  # noqa: BLE001 - e.g. onnx missing after pip install --no-deps
        installed = "not installed" if fig["tensorrt"] is None else f"tensorrt {fig['tensorrt']} installed"
        fig["tensorrt_status"] = {"available": False, "reason": f"{installed}; vmaedet's TensorRT probe cannot be "
                                                                f"imported ({type(exc).__name__}: {exc})"[:500]}
    fig["numpy_attribute_conversion"] = numpy_attribute_check()
    fig["triton_build"] = triton_build_check()
    fig["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    gpu = None
    if ctx.cuda:
        dev = torch.device(ctx.opts.device)
        props = torch.cuda.get_device_properties(dev)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
               "count": torch.cuda.device_count(), "driver": _driver_version()}
    fig["gpu"] = gpu
    np_check = fig["numpy_attribute_conversion"]
    rec["summary"] = (
        f"torch {fig['torch']} (CUDA {fig['torch_cuda']}), triton {fig['triton']}, numpy {fig['numpy']} "
        f"(int()/float() of a 1-element array {'RAISES' if np_check['conversion_raises'] else 'works'}); "
        f"GPU {gpu['name'] + ' sm' + gpu['capability'] if gpu else 'none'}; "
        f"onnxruntime {(fig['onnxruntime'] + ' ' + str(fig['onnxruntime_providers'])) if fig['onnxruntime'] else 'not installed'}; "
        f"TensorRT: {fig['tensorrt_status']['reason'].split(';')[0][:160]}"
        + ("" if fig["triton_build"]["ok"] else
           f"; WARNING Triton cannot build its GPU launcher (C compiler: {fig['triton_build']['c_compiler'] or 'none'}, "
           f"Python.h: {'found' if fig['triton_build']['python_h'] else 'missing'}): steps 2-3 will fail; set CC "
           f"or install gcc and the Python headers")
    )


def _driver_version() -> str | None:
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None


def _sibling(name: str) -> Any:
    """The module ``benchmarks/<name>.py`` loaded from its path, once (None when the file is absent; import errors
    propagate, and a failed import is not cached)."""
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    if not path.exists():
        return None
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _step_module(rec: dict[str, Any], name: str) -> Any:
    """A step's helper module ``benchmarks/<name>.py``, or None after recording why not (import error: failed;
    absent from this checkout: skipped)."""
    try:
        mod = _sibling(name)
    except Exception as exc:  # noqa: BLE001
        _fail(rec, f"benchmarks/{name}.py cannot be imported ({type(exc).__name__}: {exc})"[:1000])
        return None
    if mod is None:
        _skip(rec, f"benchmarks/{name}.py is not in this checkout")
    return mod


# -- steps 2, 3: the RoIAlignMax kernel (benchmarks/gpu_check_roi.py) -------------------------------
def _roi_step(fn_name: str) -> Callable[[Context, dict[str, Any]], None]:
    def step(ctx: Context, rec: dict[str, Any]) -> None:
        mod = _step_module(rec, "gpu_check_roi")
        if mod is None:
            return
        fn = getattr(mod, fn_name, None)
        if fn is None:
            _fail(rec, f"benchmarks/gpu_check_roi.py has no {fn_name}()")
            return
        res = fn(device=ctx.opts.device)
        if not isinstance(res, dict):
            _fail(rec, f"{fn_name}() returned {type(res).__name__}, not a dict")
            return
        res = dict(res)
        status, reason = res.pop("status", None), res.pop("reason", "")
        rec["summary"] = res.pop("summary", "")
        rec["figures"].update(res)
        if status not in STATUSES:
            _fail(rec, f"{fn_name}() returned status {status!r} (reason: {reason})")
        else:
            rec["status"], rec["reason"] = status, str(reason or "")
    step.__name__ = f"step_{fn_name}"
    return step


# -- step 4: the torch engine on CUDA -----------------------------------------------------------------
def random_inputs(hw: tuple[int, int], k: int, seed: int = 0) -> tuple[Any, Any]:
    """A clip at real-frame scale (uint8 frames centred and scaled, values ≈ ±2.2) and K boxes ≥ 16 px.

    ``[1, 3, 16, H, W]`` float32 and ``[K, 5]`` float32 (batch index 0), on the CPU.
    """
    import torch

    h, w = hw
    g = torch.Generator().manual_seed(seed)
    clip = (torch.randint(0, 256, (1, 3, 16, h, w), generator=g).float() - 127.5) / 58.0  # [1, 3, 16, H, W]
    u = torch.rand((k, 4), generator=g)  # [K, 4]
    x1 = u[:, 0] * (w - 16)
    y1 = u[:, 1] * (h - 16)
    x2 = x1 + 16 + u[:, 2] * (w - 16 - x1)
    y2 = y1 + 16 + u[:, 3] * (h - 16 - y1)
    return clip, torch.stack([torch.zeros(k), x1, y1, x2, y2], dim=1)  # [K, 5]


def error_stats(reference: Any, other: Any) -> dict[str, float]:
    """max/mean |Δ logit|, max |Δ sigmoid score| and top-5 agreement of ``other`` vs ``reference`` [K, C]
    (the project's one definition, :func:`vmaedet.export.parity.error_stats`)."""
    from vmaedet.export.parity import error_stats as project_error_stats

    return project_error_stats(reference, other)


def violations(stats: dict[str, float], tol: dict[str, float]) -> list[str]:
    """The gates ``stats`` misses (:func:`vmaedet.export.parity.within`: a NaN figure misses every gate)."""
    from vmaedet.export.parity import within

    return within(stats, tol)


def realistic_head(model: Any, clip: Any, rois: Any, target_std: float = 3.0, seed: int = 0) -> tuple[Any, dict[str, float]]:
    """Re-initialise the head so logits are of order 1–10 (the seed's 0.001-scaled head gives ~1e-4,
    which no parity tolerance can tell from zeros); returns CPU fp32 logits ``[K, 80]`` and their range.

    The backbone runs once (CPU, fp32); the head's weights are N(0, 1) rescaled so the logits on
    these rois have standard deviation ``target_std``, with a bias of N(0, 1).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        fmap = model.forward_features(clip)  # [1, D, h, w]
    with torch.no_grad():
        d = model.head.in_features
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g) / math.sqrt(d))
        model.head.bias.zero_()
        with torch.inference_mode():
            std = float(model.forward_head(fmap, rois).std()) if rois.shape[0] else 1.0
        model.head.weight.mul_(target_std / max(std, 1e-12))
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=g))
    with torch.inference_mode():
        ref = model.forward_head(fmap, rois).clone()  # [K, 80] = model(clip, rois) in CPU fp32
    a = ref.abs()
    rng = {"min": float(ref.min()), "max": float(ref.max()), "mean_abs": float(a.mean()), "max_abs": float(a.max()),
           "p05_abs": float(a.quantile(0.05)), "p95_abs": float(a.quantile(0.95))} if ref.numel() else {}
    return ref, rng


@contextlib.contextmanager
def _no_tf32(enabled: bool) -> Iterator[None]:
    """Plain fp32 matmuls and convolutions on CUDA while ``enabled`` (restored afterwards)."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def torch_parity(model: Any, reference: Any, clip: Any, rois: Any, *, device: str, hw: tuple[int, int],
                 ks: Sequence[int] = PARITY_KS, precisions: Sequence[str] = ("fp32", "bf16", "fp16"),
                 graphs: Sequence[bool] = (False, True), ctx: Context | None = None) -> dict[str, Any]:
    """Every (precision, graph) engine on ``device`` at every K vs ``reference`` (CPU fp32 logits of all rois).

    Each roi's logits depend on its own box only, so the reference for K rois is the first K rows.
    fp32 runs with TF32 off (true fp32 on the GPU).  Returns ``{"rows": [...], "failures": [...]}``.
    """
    from vmaedet.engines.torch_engine import TorchEngine

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for precision in precisions:
        for graph in graphs:
            label = f"{precision}{' +graph' if graph else ''}"
            if ctx is not None and ctx.left() < 8:
                failures.append(f"{label}: not run, the step's budget was spent")
                continue
            with _no_tf32(precision == "fp32"), TorchEngine(model, precision=precision, device=device, input_hw=hw,
                                                           max_persons=max(ks), attn_impl="sdpa",
                                                           cuda_graph=graph) as eng:
                for k in ks:
                    out = eng.infer(clip, rois[:k])  # [K, 80]
                    if tuple(out.shape) != (k, 80) or not out.dtype.is_floating_point:
                        failures.append(f"{label} K={k}: output {tuple(out.shape)} {out.dtype}, expected ({k}, 80)")
                        continue
                    stats = error_stats(reference[:k], out)
                    bad = violations(stats, TORCH_TOL[precision])
                    failures += [f"{label} K={k}: {b}" for b in bad]
                    rows.append({"precision": precision, "cuda_graph": graph, "persons": k, **stats,
                                 "within_tolerance": not bad})
            del eng
            _free_gpu()
    return {"tolerances": TORCH_TOL, "rows": rows, "failures": failures}


def vit_flops(variant: str, hw: tuple[int, int], persons: int) -> int:
    """FLOPs of one forward (multiply-add = 2), counted as torch's FlopCounterMode counts them:
    tubelet conv, qkv/proj/MLP linears, q·kᵀ and attn·v, the head (norms, softmax, GELU, RoIAlign excluded).
    """
    from vmaedet.models.detector import variant_config
    from vmaedet.models.videomae import NUM_FRAMES, PATCH, TUBELET

    cfg = variant_config(variant)
    if cfg.stem != "tubelet":
        raise ValueError(f"vit_flops counts the tubelet stem only; {variant} has stem {cfg.stem!r}")
    d, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    n = (NUM_FRAMES // TUBELET) * (hw[0] // PATCH) * (hw[1] // PATCH)  # tokens
    embed = 2 * n * d * 3 * TUBELET * PATCH * PATCH
    block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
    return embed + cfg.depth * block + 2 * persons * d * 80


def matmul_peak(device: str, dtype_name: str = "bf16", n: int = 8192, iters: int = 20, repeats: int = 3,
                warmup_s: float = 0.3) -> dict[str, Any]:
    """Measured peak FLOP/s of an n×n·n×n matmul: the best of ``repeats`` runs of ``iters`` back-to-back products,
    timed with CUDA events (perf_counter on the CPU), after ``warmup_s`` seconds of products on a GPU (its clocks
    ramp up first: a cold peak would make every "% of peak" too high)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    cuda = torch.device(device).type == "cuda"
    t0 = time.perf_counter()
    warm = 0
    while warm < 3 or (cuda and time.perf_counter() - t0 < warmup_s):
        torch.matmul(a, b)
        warm += 1
        if cuda:
            torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                torch.matmul(a, b)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3 / iters)
        else:
            t1 = time.perf_counter()
            for _ in range(iters):
                torch.matmul(a, b)
            times.append((time.perf_counter() - t1) / iters)
    secs = min(times)
    return {"dtype": dtype_name, "n": n, "iters": iters, "repeats": repeats, "warmup_matmuls": warm,
            "flops_per_s": 2.0 * n**3 / secs, "ms_per_matmul": 1e3 * secs}


def _device_name(device: str) -> str:
    import torch

    dev = torch.device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{dev.type} ({platform.processor() or 'cpu'})"


def _short(variant: str) -> str:
    """vit_base_patch16_224 → base."""
    parts = variant.split("_")
    return parts[1] if len(parts) > 1 else variant


def _time_calls(fn: Callable[[], Any], warmup: int, iters: int, ctx: Context | None = None) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if ctx is not None and ctx.left() < 2 and len(times) >= 5:
            break  # enough for a median; the budget is nearly spent
        t0 = time.perf_counter()
        fn()  # ends with a device→host copy of the logits: synchronised
        times.append(time.perf_counter() - t0)
    return times


def _pcts(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": 1e3 * statistics.median(ordered),
            "p95_ms": 1e3 * ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
            "min_ms": 1e3 * ordered[0], "runs": len(ordered)}


def torch_latency(variant: str, *, device: str, hw: tuple[int, int] = HW, persons: int = 8, precision: str = "bf16",
                  cuda_graph: bool = True, attn_impl: str = "sdpa", iters: int = 50, warmup: int = 5,
                  peak_flops: float | None = None, host_clip: bool = False, ctx: Context | None = None) -> dict[str, Any]:
    """p50/p95 of ``TorchEngine.infer`` (random weights) with the clip already on ``device``.

    ``host_clip``: also time a CPU clip (the host→device copy of 16×3×H×W floats included).
    """
    import torch

    from vmaedet.engines.torch_engine import TorchEngine
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector(variant).eval()
    clip, rois = random_inputs(hw, persons, seed=1)
    res: dict[str, Any] = {"variant": variant, "precision": precision, "cuda_graph": cuda_graph, "attn_impl": attn_impl,
                           "persons": persons, "clip": [1, 3, 16, *hw]}
    with TorchEngine(model, precision=precision, device=device, input_hw=hw, max_persons=persons,
                     attn_impl=attn_impl, cuda_graph=cuda_graph) as eng:
        clip_d, rois_d = clip.to(device), rois.to(device)
        res.update(_pcts(_time_calls(lambda: eng.infer(clip_d, rois_d), warmup, iters, ctx)))
        if host_clip:
            res["p50_ms_host_clip"] = _pcts(_time_calls(lambda: eng.infer(clip, rois), 2, 10, ctx))["p50_ms"]
    flops = vit_flops(variant, hw, persons)
    res["flops_per_clip"] = flops
    res["achieved_flops_per_s"] = flops / (res["p50_ms"] / 1e3)
    if peak_flops:
        res["fraction_of_bf16_peak"] = res["achieved_flops_per_s"] / peak_flops
    del model
    _free_gpu()
    return res


def target_verdict(result: dict[str, Any], gpu_name: str) -> dict[str, Any]:
    """The performance target (a benchmark, not a test): met / not met / not applicable on this GPU."""
    p50, frac = result.get("p50_ms"), result.get("fraction_of_bf16_peak")
    met = p50 is not None and p50 <= TARGET["p50_ms"] and frac is not None and frac >= TARGET["fraction_of_peak"]
    applies = re.search(TARGET["gpus"], gpu_name or "") is not None
    verdict = ("met" if met else "not met") if applies else f"not applicable (the target is for H100/H200-class GPUs; this is {gpu_name})"
    return {"target": f"ViT-B, {TARGET['persons']} persons, 16×{HW[0]}×{HW[1]}: ≤ {TARGET['p50_ms']} ms per clip and "
                      f"≥ {TARGET['fraction_of_peak']:.0%} of the measured bf16 matmul peak",
            "p50_ms": p50, "fraction_of_bf16_peak": frac, "verdict": verdict}


def step_torch(ctx: Context, rec: dict[str, Any]) -> None:
    import torch

    from vmaedet.models import create_detector

    opts, dev, fig = ctx.opts, ctx.opts.device, rec["figures"]
    gpu_name = _device_name(dev)
    fig["peak_bf16"] = matmul_peak(dev, "bf16", n=opts.peak_n)
    peak = fig["peak_bf16"]["flops_per_s"]

    # parity: one model, a realistic head, CPU fp32 reference for all 64 rois
    torch.manual_seed(0)
    model = create_detector(opts.parity_variant).eval()
    hw, ks = opts.hw, opts.parity_ks
    clip, rois = random_inputs(hw, max(ks), seed=0)
    reference, logit_range = realistic_head(model, clip, rois)
    fig["parity"] = {"variant": opts.parity_variant, "clip": [1, 3, 16, *hw], "reference": "torch fp32 on the CPU",
                     "head": "re-initialised: N(0,1) rescaled to logit std 3, bias N(0,1)", "logit_range": logit_range}
    fig["parity"].update(torch_parity(model, reference, clip, rois, device=dev, hw=hw, ks=ks,
                                         graphs=(False, True) if opts.cuda_graph else (False,), ctx=ctx))
    del model
    _free_gpu()

    # latency: the target first (ViT-B), then the rest
    lat: list[dict[str, Any]] = []
    fig["latency"] = lat
    order = sorted(opts.variants, key=lambda v: v != TARGET["variant"])
    for variant in order:
        if ctx.left() < 10:
            lat.append({"variant": variant, "status": "not run: the step's budget was spent"})
            continue
        lat.append(torch_latency(variant, device=dev, hw=hw, persons=TARGET["persons"], cuda_graph=opts.cuda_graph,
                                 iters=opts.iters, warmup=opts.warmup,
                                 peak_flops=peak, host_clip=variant == TARGET["variant"], ctx=ctx))
    if TARGET["variant"] in opts.variants and opts.cuda_graph and ctx.left() > 10:  # the same model without the graph: what it buys
        lat.append(torch_latency(TARGET["variant"], device=dev, hw=hw, persons=TARGET["persons"], cuda_graph=False,
                                 iters=max(10, opts.iters // 3), warmup=2, peak_flops=peak, ctx=ctx))
    main = next((r for r in lat if r.get("variant") == TARGET["variant"] and r.get("cuda_graph")), {})
    fig["target"] = target_verdict(main, gpu_name)

    failures = fig["parity"]["failures"]
    lat_text = "; ".join(f"{_short(r['variant'])} {'graph' if r.get('cuda_graph') else 'eager'} "
                         f"p50 {r['p50_ms']:.2f} ms / p95 {r['p95_ms']:.2f} ms"
                         + (f" ({r['fraction_of_bf16_peak']:.0%} of peak)" if r.get("fraction_of_bf16_peak") else "")
                         for r in lat if "p50_ms" in r)
    modes = "eager/graph" if opts.cuda_graph else "eager"
    rec["summary"] = (f"parity {'FAILED: ' + '; '.join(failures[:3]) if failures else 'ok'} "
                      f"(fp32/bf16/fp16 × {modes} × K {list(ks)}, mean |logit| {logit_range.get('mean_abs', 0):.1f}, "
                      f"max {logit_range.get('max_abs', 0):.1f}); bf16 peak {peak / 1e12:.0f} TFLOP/s; {lat_text}; "
                      f"target: {fig['target']['verdict']}")
    if failures:
        _fail(rec, f"{len(failures)} parity check(s) out of tolerance: " + "; ".join(failures[:5]))


# -- step 5: many cameras, one engine (benchmarks/gpu_multistream.py) ---------------------------------
MULTISTREAM_BUDGET_S = 75.0
#: Seconds of step 5's budget kept for everything but the stream itself: building ViT-B and the
#: detector, the warm-up calls, the last keyframes (their clips reach 1.16 s past the end) and shutdown.
MULTISTREAM_RESERVE_S = 30.0
MULTISTREAM_GOAL = {"sources": 8, "frame_size": (1920, 1080), "fps": 30.0, "stride": 8,
                    "variant": "vit_base_patch16_224", "gpus": TARGET["gpus"]}
#: What the torch engine offers beyond eager bf16 + SDPA, and why step 5 does not use it.
ENGINE_OPTIONS_NOTE = (
    "eager autocast + SDPA with the positional table frozen on the GPU (fixed clip geometry); cuda_graph: refused "
    "with batches (a graph holds one clip: max_batch 1), so it is not used here (step 4 times it per clip); "
    "compile: takes batches but compiles each new batch shape at its first call, beyond this step's budget, not used")


def _multistream_module() -> Any:
    """``benchmarks/gpu_multistream.py`` loaded from its path (None when absent; import errors propagate)."""
    return _sibling("gpu_multistream")


def multistream_goal(res: dict[str, Any], gpu_name: str) -> dict[str, Any]:
    """The issue's goal, "≥ 8 real-time 1080p streams on one H100/H200-class GPU": met / not met / not applicable."""
    g, c = MULTISTREAM_GOAL, res.get("config") or {}
    as_goal = (c.get("sources", 0) >= g["sources"] and tuple(c.get("frame_size") or ()) == g["frame_size"]
               and c.get("fps") == g["fps"] and c.get("stride") == g["stride"] and c.get("arch") == g["variant"])
    applies = re.search(g["gpus"], gpu_name or "") is not None
    sustained = bool((res.get("verdict") or {}).get("sustained"))
    if not applies:
        verdict = f"not applicable (the goal is for H100/H200-class GPUs; this is {gpu_name})"
    elif not as_goal:
        verdict = "not applicable (the run was not the goal's 8 × 1920×1080 @ 30 fps, stride 8, ViT-B)"
    else:
        verdict = "met" if sustained else "not met"
    return {"goal": f"ViT-B, ≥ {g['sources']} live 1920×1080 streams at 30 fps, stride {g['stride']}, sustained on one "
                    "H100/H200-class GPU", "sustained": sustained, "verdict": verdict}


def step_multistream(ctx: Context, rec: dict[str, Any]) -> None:
    mod = _step_module(rec, "gpu_multistream")
    if mod is None:
        return
    missing = mod.missing_modules()
    if missing:
        _skip(rec, f"skipped: not installed ({', '.join(missing)}; the streaming runtime needs them)")
        return
    opts = ctx.opts
    seconds = min(opts.stream_seconds, ctx.left() - MULTISTREAM_RESERVE_S)
    shortest = min(5.0, opts.stream_seconds)
    if seconds < shortest:
        _skip(rec, f"only {ctx.left():.0f} s of the step's budget left: too little for a stream of {shortest:g} s "
                   f"beside {MULTISTREAM_RESERVE_S:.0f} s of set-up and shutdown")
        return
    res = mod.run_multistream(device=opts.device, arch=opts.stream_variant, sources=opts.stream_sources,
                              size=opts.stream_size, fps=opts.stream_fps, seconds=seconds, stride=opts.stream_stride,
                              max_batch=opts.stream_max_batch, precision=opts.stream_precision,
                              detector=opts.stream_detector, persons=TARGET["persons"])
    rec["figures"].update(res)
    rec["figures"]["engine_options"] = ENGINE_OPTIONS_NOTE
    rec["figures"]["goal"] = multistream_goal(res, _device_name(opts.device))
    rec["summary"] = f"{mod.summary_line(res)}; goal: {rec['figures']['goal']['verdict']}"
    if res.get("run_error"):
        _fail(rec, f"the stream ended with an error: {res['run_error']}"[:2000])
    elif res["consistency_failures"]:
        _fail(rec, "the run's figures do not add up: " + "; ".join(res["consistency_failures"][:5]))


# -- step 6: onnxruntime CUDA provider ----------------------------------------------------------------
def _ort_type(type_str: str) -> Any:
    import numpy as np

    return {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(type_str, np.float32)


def _raw_binding(sess: Any, names: dict[str, str], clip: Any, rois: Any, device: str) -> Callable[[], Any]:
    """A call running ``sess`` on tensors bound in place on ``device`` (onnxruntime's IO binding API)."""
    import numpy as np
    import torch

    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name: o for o in sess.get_outputs()}
    tdev = torch.device(device)
    kind, index = ("cuda", tdev.index or 0) if tdev.type == "cuda" else ("cpu", 0)
    np_clip, np_rois = _ort_type(inputs[names["clip"]].type), _ort_type(inputs[names["rois"]].type)
    np_out = _ort_type(outputs[names["output"]].type)
    to_t = {np.float32: torch.float32, np.float16: torch.float16}
    clip_d = clip.to(tdev, to_t[np_clip]).contiguous()  # [1, 3, 16, H, W]
    rois_d = rois.to(tdev, to_t[np_rois]).contiguous()  # [K, 5]
    out_d = torch.empty((rois.shape[0], 80), dtype=to_t[np_out], device=tdev)  # [K, 80]
    binding = sess.io_binding()
    binding.bind_input(names["clip"], kind, index, np_clip, tuple(clip_d.shape), clip_d.data_ptr())
    binding.bind_input(names["rois"], kind, index, np_rois, tuple(rois_d.shape), rois_d.data_ptr())
    binding.bind_output(names["output"], kind, index, np_out, tuple(out_d.shape), out_d.data_ptr())

    def run() -> Any:
        if tdev.type == "cuda":
            torch.cuda.synchronize(tdev)
        sess.run_with_iobinding(binding)
        return out_d.float().cpu()  # [K, 80]

    return run


def ort_check(model: Any, reference: Any, clip: Any, rois: Any, workdir: Path, *, hw: tuple[int, int],
              provider: str = "cuda", device: str = "cuda", precisions: Sequence[str] = ("fp32", "fp16"),
              iters: int = 20, ctx: Context | None = None) -> dict[str, Any]:
    """Export each precision, run it on ``provider``: providers used, parity, host feeds vs IO binding.

    With an engine that has the ``io_binding`` option both modes go through ``OnnxRuntimeEngine.infer``
    (the bound one with the clip already on ``device``); otherwise IO binding is set up here on the
    engine's session.
    """
    import inspect

    from vmaedet.engines.onnxruntime_engine import OnnxRuntimeEngine
    from vmaedet.export.onnx import export_onnx

    params = inspect.signature(OnnxRuntimeEngine.__init__).parameters
    has_modes = "io_binding" in params
    common: dict[str, Any] = {"providers": [provider]}
    if "device" in params:
        common["device"] = device
    expected = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}.get(provider, provider)
    k = rois.shape[0]
    rows, failures = [], []
    for precision in precisions:
        if ctx is not None and ctx.left() < 10:
            failures.append(f"{precision}: not run, the step's budget was spent")
            continue
        art = export_onnx(model, workdir / f"ort_{precision}.onnx", input_hw=hw, max_persons=k, precision=precision).path
        row: dict[str, Any] = {"precision": precision, "engine_io_binding_option": has_modes}
        with contextlib.ExitStack() as stack:
            host = stack.enter_context(OnnxRuntimeEngine(art, **common, **({"io_binding": False} if has_modes else {})))
            used = list(host.session.get_providers())
            row["providers_used"] = used
            if not used or used[0] != expected:
                failures.append(f"{precision}: session runs on {used}, not {expected}")
            if has_modes:
                bound = stack.enter_context(OnnxRuntimeEngine(art, **common, io_binding=True))
                row["providers_used_io_binding"] = list(bound.session.get_providers())
                clip_b, rois_b = clip.to(bound.device), rois.to(bound.device)
                run_bound: Callable[[], Any] = lambda: bound.infer(clip_b, rois_b)  # noqa: E731
            else:
                names = getattr(host, "names", None) or host.manifest.input.names.as_dict()
                run_bound = _raw_binding(host.session, names, clip, rois, device)
            for mode, fn in (("host_feeds", lambda: host.infer(clip, rois)), ("io_binding", run_bound)):
                stats = error_stats(reference, fn())  # [K, 80] vs the CPU fp32 torch logits
                failures += [f"{precision} {mode}: {b}" for b in violations(stats, ORT_TOL[precision])]
                row[mode] = {**stats, **_pcts(_time_calls(fn, 2, iters, ctx))}
            row["speedup_io_binding"] = row["host_feeds"]["p50_ms"] / row["io_binding"]["p50_ms"]
        rows.append(row)
    return {"tolerances": ORT_TOL, "rows": rows, "failures": failures}


def _realistic_model(variant: str, hw: tuple[int, int], k: int) -> tuple[Any, Any, Any, Any, dict[str, float]]:
    import torch

    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector(variant).eval()
    clip, rois = random_inputs(hw, k, seed=2)
    reference, rng = realistic_head(model, clip, rois)
    return model, clip, rois, reference, rng


def step_onnxruntime(ctx: Context, rec: dict[str, Any]) -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        _skip(rec, "skipped: not installed (onnxruntime; pip install 'vmaedet[gpu]' gives onnxruntime-gpu)")
        return
    import onnxruntime as ort

    providers = list(ort.get_available_providers())
    rec["figures"]["available_providers"] = providers
    if "CUDAExecutionProvider" not in providers:
        _skip(rec, f"skipped: not installed (onnxruntime-gpu: onnxruntime {ort.__version__} offers {providers}, "
                   "no CUDAExecutionProvider)")
        return
    for dep in ("onnx",):
        if importlib.util.find_spec(dep) is None:
            _skip(rec, f"skipped: not installed ({dep}, needed to export the graphs)")
            return
    model, clip, rois, reference, rng = _realistic_model(ctx.opts.export_variant, ctx.opts.hw, TARGET["persons"])
    with tempfile.TemporaryDirectory(dir=ctx.opts.workdir) as tmp:
        res = ort_check(model, reference, clip, rois, Path(tmp), hw=ctx.opts.hw, provider="cuda", device=ctx.opts.device,
                        iters=max(10, ctx.opts.iters // 2), ctx=ctx)
    rec["figures"].update({"variant": ctx.opts.export_variant, "persons": TARGET["persons"], "logit_range": rng, **res})
    parts = [f"{r['precision']}: {r['providers_used'][0] if r['providers_used'] else '?'}, "
             f"host {r['host_feeds']['p50_ms']:.2f} ms vs IO binding {r['io_binding']['p50_ms']:.2f} ms, "
             f"max |Δ score| {max(r['host_feeds']['max_abs_score'], r['io_binding']['max_abs_score']):.2g}"
             for r in res["rows"]]
    rec["summary"] = f"onnxruntime {ort.__version__}, {ctx.opts.export_variant}: " + "; ".join(parts)
    if res["failures"]:
        _fail(rec, "; ".join(res["failures"][:5]))


# -- step 7: TensorRT ---------------------------------------------------------------------------------
TRT_ENGINES = (("builtin", {"roi_align": "builtin"}, True),
               ("plugin-aot", {"roi_align": "plugin", "aot": True}, True),
               ("plugin-jit", {"roi_align": "plugin", "aot": False}, False))


def step_tensorrt(ctx: Context, rec: dict[str, Any]) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        _skip(rec, "skipped: not installed (tensorrt)")
        return
    for dep in ("onnx",):
        if importlib.util.find_spec(dep) is None:
            _skip(rec, f"skipped: not installed ({dep}, needed to export the graph)")
            return
    from vmaedet.engines.tensorrt_engine import TensorRTEngine
    from vmaedet.export.onnx import export_onnx
    from vmaedet.export.tensorrt import build_engine, tensorrt_status

    status = tensorrt_status()
    rec["figures"]["tensorrt_status"] = {"available": bool(status[0]), "reason": str(status[1])}
    if not status[0]:
        _fail(rec, f"TensorRT is installed but not usable: {status[1]}")
        return
    kmax = max(TRT_KS)
    model, clip, rois, reference, rng = _realistic_model(ctx.opts.export_variant, ctx.opts.hw, kmax)
    rows, failures = [], []
    with tempfile.TemporaryDirectory(dir=ctx.opts.workdir) as tmp:
        wd = Path(tmp)
        art = export_onnx(model, wd / "trt.onnx", input_hw=ctx.opts.hw, max_persons=kmax, precision="fp16").path
        cache = wd / "timing.cache"
        for name, kwargs, graph in TRT_ENGINES:
            row: dict[str, Any] = {"engine": name, "cuda_graph": graph}
            rows.append(row)
            if ctx.left() < 15:
                row["status"] = "not run: the step's budget was spent"
                failures.append(f"{name}: not run (budget)")
                continue
            try:
                t0 = time.perf_counter()
                plan = build_engine(art, wd / f"{name}.engine", max_persons=kmax, opt_persons=kmax, timing_cache=cache,
                                    progress=False, **kwargs)
                row["build_s"] = round(time.perf_counter() - t0, 1)
                row["timing_cache_bytes"] = cache.stat().st_size if cache.exists() else 0
                manifest_file = Path(str(plan) + ".json")
                if manifest_file.exists():
                    built = json.loads(manifest_file.read_text()).get("tensorrt", {})
                    row["manifest"] = {k: v for k, v in built.items() if k not in ("gpu",)}
                with TensorRTEngine(plan, device=ctx.opts.device, cuda_graph=graph) as eng:
                    per_k = []
                    for k in TRT_KS:
                        out = eng.infer(clip, rois[:k])  # [K, 80]
                        stats = error_stats(reference[:k], out)
                        bad = violations(stats, TRT_TOL)
                        failures += [f"{name} K={k}: {b}" for b in bad]
                        per_k.append({"persons": k, **stats})
                    row["parity"] = per_k
                    clip_d, rois_d = clip.to(ctx.opts.device), rois.to(ctx.opts.device)
                    row["latency_k8"] = _pcts(_time_calls(lambda: eng.infer(clip_d, rois_d[:8]), 3, 20, ctx))
                row["status"] = "ok"
            except StepTimeout:
                raise
            except Exception as exc:  # noqa: BLE001 - the next engine kind still runs
                row["status"] = f"failed: {type(exc).__name__}: {str(exc).strip()}"[:1500]
                failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
    rec["figures"].update({"variant": ctx.opts.export_variant, "persons_sequence": list(TRT_KS), "logit_range": rng,
                           "tolerance_vs_torch_fp32": TRT_TOL, "engines": rows, "failures": failures})
    rec["summary"] = "; ".join(f"{r['engine']}: {r.get('status', '?')[:80]}"
                               + (f", build {r['build_s']} s, K=8 p50 {r['latency_k8']['p50_ms']:.2f} ms"
                                  if "latency_k8" in r else "") for r in rows)
    if failures:
        _fail(rec, "; ".join(failures[:5]))


# -- step 8: pytest -m "gpu or trt" -------------------------------------------------------------------
def step_pytest(ctx: Context, rec: dict[str, Any]) -> None:
    if importlib.util.find_spec("pytest") is None:
        _skip(rec, "skipped: not installed (pytest)")
        return
    if not (REPO_ROOT / "tests").is_dir():
        _skip(rec, f"no tests/ directory in {REPO_ROOT}")
        return
    # Files that cannot be imported here (a dependency missing after `pip install --no-deps -e .`) are
    # reported as errors while the GPU tests of the others still run.
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu or trt", "-q", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", "tests"]
    rec["figures"]["command"] = " ".join(cmd[1:])
    timeout = max(5.0, ctx.left() - 2)
    try:
        res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-2000:]
        rec["figures"]["output_tail"] = str(tail)
        _fail(rec, f"pytest did not finish within {timeout:.0f} s")
        return
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines)
                    if re.search(r"\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b", ln)), "")
    rec["figures"].update(returncode=res.returncode, summary_line=summary, output_tail="\n".join(lines[-40:])[-4000:])
    rec["summary"] = f"pytest -m 'gpu or trt': {summary or 'no summary line'} (exit {res.returncode})"
    if res.returncode == 5:
        _skip(rec, f"no tests collected ({summary})")
    elif res.returncode != 0:
        _fail(rec, f"pytest exited {res.returncode}: {summary}")


STEPS: tuple[Step, ...] = (
    Step(1, "environment", "environment", 20, step_environment, needs_cuda=False),
    Step(2, "triton_roi_align", "Triton RoIAlignMax on CUDA", 35, _roi_step("step_triton")),
    Step(3, "aot_ptx", "AOT PTX in TensorRT's argument order", 25, _roi_step("step_aot")),
    Step(4, "torch_cuda", "torch engine on CUDA", 75, step_torch),
    Step(5, "multistream", "many cameras, one engine", MULTISTREAM_BUDGET_S, step_multistream),
    Step(6, "onnxruntime_cuda", "onnxruntime CUDA provider", 35, step_onnxruntime),
    Step(7, "tensorrt", "TensorRT engines", 80, step_tensorrt),
    Step(8, "pytest_gpu", "pytest -m 'gpu or trt'", 60, step_pytest),
)


# -- command line -------------------------------------------------------------------------------------
def _parse_steps(text: str) -> frozenset[int]:
    try:
        ids = frozenset(int(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--steps takes step numbers such as 1,4; received {text!r}") from exc
    if not ids or not ids <= {s.id for s in STEPS}:
        raise argparse.ArgumentTypeError(f"--steps takes numbers among 1..{len(STEPS)}; received {text!r}")
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path (the markdown table goes beside it, .md)")
    parser.add_argument("--smoke", action="store_true", help="run step 1 only; GPU steps report skipped (automatic without a GPU)")
    parser.add_argument("--steps", type=_parse_steps, default=frozenset(s.id for s in STEPS), help="e.g. 1,4")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    parser.add_argument("--variants", default=",".join(Options.variants), help="latency variants of step 4")
    parser.add_argument("--parity-variant", default=Options.parity_variant)
    parser.add_argument("--export-variant", default=Options.export_variant, help="model of the ONNX/TensorRT steps")
    parser.add_argument("--iters", type=int, default=Options.iters)
    parser.add_argument("--stream-seconds", type=float, default=Options.stream_seconds,
                        help="step 5: stream time of the live cameras (capped by the step's budget)")
    parser.add_argument("--stream-sources", type=int, default=Options.stream_sources, help="step 5: live cameras")
    parser.add_argument("--stream-detector", choices=("auto", "ssdlite", "scene"), default=Options.stream_detector,
                        help="step 5: ssdlite (run for its cost; the scene's boxes used), scene (boxes only), auto")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole check")
    args = parser.parse_args(argv)
    if args.iters < 5:
        parser.error("--iters must be at least 5 (p95 needs runs)")
    if args.stream_seconds < 2 or args.stream_sources < 1:
        parser.error("--stream-seconds must be at least 2 and --stream-sources at least 1")
    opts = Options(device=args.device, smoke=args.smoke, steps=args.steps,
                   variants=tuple(v for v in args.variants.split(",") if v), parity_variant=args.parity_variant,
                   export_variant=args.export_variant, iters=args.iters, total_budget_s=args.budget,
                   stream_seconds=args.stream_seconds, stream_sources=args.stream_sources,
                   stream_detector=args.stream_detector)
    doc = run_checks(opts, args.out)
    print(markdown(doc))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 1 if any(r["status"] == "failed" for r in doc["steps"]) else 0


if __name__ == "__main__":
    sys.exit(main())
