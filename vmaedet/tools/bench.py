"""`vmaedet bench`: latency, throughput, FLOPs and %-of-peak per engine, precision and person count.

For every (engine, precision) the same clip and rois go through the engine after a warm-up;
latency is the wall time of ``Engine.infer`` (CUDA synchronised inside the engine when on a GPU),
reported as p50/p95 over ``iters`` runs (:func:`vmaedet.tools.timing.time_calls`: the one timing
loop and percentile definition of the project).  FLOPs per clip are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the PyTorch model (matmuls, convolutions,
attention), not estimated.  The device's peak is *measured* in the same process by a square
matmul micro-benchmark of the same dtype, and the achieved FLOP/s is reported as a fraction of it.
Accuracy: max |Δ sigmoid score| against torch fp32 on the same inputs.

The JSON written by :func:`run_benchmark` follows ``docs/bench_schema.json`` (schema id
``vmaedet-bench-1``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vmaedet.constants import CLIP_LEN, EXPORT_PRECISIONS, PATCH_SIZE, PRECISIONS
from vmaedet.engines import Engine, open_engine
from vmaedet.errors import VmaedetError
from vmaedet.models.detector import ActionDetector, create_detector
from vmaedet.tools.timing import Timing, time_calls

SCHEMA = "vmaedet-bench-1"
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Precisions each engine can run (others are reported as skipped with this reason).
SUPPORTED = {
    "torch": set(PRECISIONS),
    "onnxruntime": set(EXPORT_PRECISIONS),
    "tensorrt": {"fp16"},
    "openvino": {"fp32", "bf16"},  # bf16: an fp32 artifact run in bf16, only on a CPU with native bf16
}
#: Engines that run an fp32 export in every precision they support (their precision is the run's, not the artifact's).
RUNTIME_PRECISION_ENGINES = {"openvino"}


@dataclass
class BenchConfig:
    """What to measure."""

    engines: Sequence[str] = ("torch", "onnxruntime")
    precisions: Sequence[str] = ("fp32", "bf16")
    variant: str = "vit_small_patch16_224"  # used when no checkpoint is given (random weights)
    checkpoint: str | None = None
    persons: Sequence[int] = (1, 8, 32)
    input_hw: tuple[int, int] = (256, 464)  # padded clip size (the seed's 16×256×464 for 16:9 video)
    warmup: int = 2
    iters: int = 5
    device: str = "cpu"
    seed: int = 0
    workdir: str | None = None  # where exported artifacts go (a temp dir by default)
    extra: dict[str, Any] = field(default_factory=dict)


def measure_matmul_peak(dtype: torch.dtype, device: str = "cpu", n: int = 2048, iters: int = 5,
                        budget_s: float = 3.0) -> float:
    """Best FLOP/s of an n×n @ n×n matmul in ``dtype`` on ``device`` (2n³ FLOPs per product).

    ``n`` shrinks (halving, down to 128) until ``iters + 1`` products fit in about ``budget_s``: on a CPU
    without native bf16 kernels (AVX2 only) torch's bf16 matmul runs ~1000× slower than fp32, and a
    2048² product takes over a minute there.
    """
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    probe_n = min(n, 128)
    p = torch.randn(probe_n, probe_n, device=device).to(dtype)
    torch.matmul(p, p)  # warm-up: kernel selection, thread pool
    sync()
    t0 = time.perf_counter()
    torch.matmul(p, p)
    sync()
    per_probe = max(time.perf_counter() - t0, 1e-7)
    while n > probe_n and per_probe * (n / probe_n) ** 3 * (iters + 1) > budget_s:
        n //= 2
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    sync()
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def count_flops(model: ActionDetector, clip: torch.Tensor, rois: torch.Tensor) -> int:
    """FLOPs of one forward pass, counted by torch's FlopCounterMode (a multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vmaedet.models.videomae import Attention

    # The CPU fused-attention kernel is not in FlopCounterMode's table: count on the explicit
    # q·kᵀ / softmax / ·v path, which has the same FLOPs.
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    saved = [a.attn_impl for a in attns]
    for a in attns:
        a.attn_impl = "naive"
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(clip, rois)
    finally:
        for a, impl in zip(attns, saved):
            a.attn_impl = impl
    return int(counter.get_total_flops())


def make_inputs(input_hw: tuple[int, int], k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip of real-frame scale and K random person rois inside it (the verify ladder's inputs)."""
    from vmaedet.export.parity import random_clip, random_rois

    g = torch.Generator().manual_seed(seed)
    return random_clip(input_hw, g), random_rois(k, input_hw, g)  # [1, 3, 16, H, W], [K, 5]


def time_engine(engine: Engine, clip: torch.Tensor, rois: torch.Tensor, *, iters: int, warmup: int) -> Timing:
    """``engine.infer(clip, rois)`` after ``warmup`` untimed calls, timed ``iters`` times.

    The one engine-latency loop (``vmaedet bench`` and ``benchmarks/bench_engines.py``); the
    engine synchronises CUDA inside ``infer``.  ``Timing.result`` is the last call's logits ``[K, 80]``.
    """
    return time_calls(lambda: engine.infer(clip, rois), repeats=iters, warmup=warmup)


def _open_engine(name: str, precision: str, model: ActionDetector, cfg: BenchConfig, workdir: Path,
                 checkpoint_path: Path) -> Engine:
    """Open the engine (:func:`~vmaedet.engines.open_engine`, on ``cfg.device``); artifact backends export first."""
    max_k = max(cfg.persons)
    if name == "torch":
        return open_engine(model, "torch", precision=precision, device=cfg.device,
                           input_hw=cfg.input_hw, max_persons=None)
    from vmaedet.export.onnx import export_onnx

    export_precision = "fp32" if name in RUNTIME_PRECISION_ENGINES else precision
    art = export_onnx(model, workdir / f"{name}_{precision}.onnx", input_hw=cfg.input_hw, max_persons=max_k,
                      precision=export_precision, checkpoint=checkpoint_path).path
    if name == "tensorrt":
        from vmaedet.export.tensorrt import build_engine

        art = build_engine(art, workdir / f"{name}.engine", max_persons=max_k, opt_persons=min(8, max_k),
                           workspace_gb=4.0, timing_cache=None, roi_align="plugin", progress=False)
    return open_engine(art, name, precision=precision, device=cfg.device)


def _unavailable(name: str) -> str | None:
    """Why an engine cannot run here at all (None when it can)."""
    if name == "tensorrt":
        from vmaedet.export.tensorrt import tensorrt_status

        ok, why = tensorrt_status()
        return None if ok else why.split(";")[0]
    if name == "openvino":
        from vmaedet.envinfo import module_version

        return None if module_version("openvino") else "openvino is not installed (pip install 'vmaedet[openvino]')"
    return None


def _bench_model(cfg: BenchConfig) -> tuple[torch.nn.Module, str]:
    """The model to measure (the checkpoint's, else random weights of ``cfg.variant``) and its variant name."""
    from vmaedet.models.checkpoints import load_detector

    torch.manual_seed(cfg.seed)
    if cfg.checkpoint:
        model = load_detector(cfg.checkpoint)
        return model, model.variant or "custom"
    model = create_detector(cfg.variant).eval()
    return model, model.variant or cfg.variant


def _check_input_hw(input_hw: tuple[int, int]) -> None:
    h, w = input_hw
    if h % PATCH_SIZE or w % PATCH_SIZE or h < 2 * PATCH_SIZE or w < 2 * PATCH_SIZE:
        raise VmaedetError(f"the clip size (input_hw) must be multiples of {PATCH_SIZE} and at least 32×32",
                           received=f"{h}×{w}", expected="e.g. (256, 464)", fix="use input_hw=(256, 464)")


def _matmul_peaks(precisions: Sequence[str], device: str) -> dict[str, float]:
    """Measured matmul FLOP/s per precision on ``device`` (a precision this device cannot run is left out)."""
    peaks: dict[str, float] = {}
    for p in sorted(set(precisions)):
        try:
            peaks[p] = measure_matmul_peak(PRECISION_DTYPES[p], device)
        except (RuntimeError, KeyError):
            continue
    return peaks


def _engine_rows(engine: Engine, base: dict[str, Any], inputs: dict[int, tuple[torch.Tensor, torch.Tensor]],
                 ref: dict[int, torch.Tensor], flops: dict[int, float], peak: float | None, cfg: BenchConfig,
                 say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One result row per number of persons for an opened engine."""
    rows = []
    for k, (clip, rois) in inputs.items():  # clip [1, 3, T, H, W], rois [k, 5]
        say(f"{base['engine']} {base['precision']}: {k} person(s)")
        out = engine.infer(clip, rois)  # [k, 80] logits
        timing = time_engine(engine, clip, rois, iters=cfg.iters, warmup=cfg.warmup)
        p50 = timing.p50_s
        achieved = flops[k] / p50
        rows.append({
            **base, "status": "ok", "persons": k,
            "latency_ms": timing.ms(),
            "clips_per_s": 1.0 / p50,
            "flops_per_clip": flops[k],
            "achieved_flops_per_s": achieved,
            "peak_flops_per_s": peak,
            "fraction_of_peak": achieved / peak if peak else None,
            "max_abs_score_diff": float((torch.sigmoid(out.float()) - ref[k]).abs().max()) if k else 0.0,
        })
    return rows


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every (engine, precision, persons) combination; return the JSON-ready result."""
    from vmaedet.envinfo import environment
    from vmaedet.models.checkpoints import save_detector

    say = progress or (lambda msg: None)
    model, variant = _bench_model(cfg)
    _check_input_hw(cfg.input_hw)
    tmp = tempfile.TemporaryDirectory(prefix="vmaedet-bench-") if cfg.workdir is None else None
    try:
        workdir = Path(cfg.workdir or tmp.name)  # type: ignore[union-attr]
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else save_detector(model, workdir / "model.safetensors")

        inputs = {k: make_inputs(cfg.input_hw, k, cfg.seed + k) for k in cfg.persons}
        say("reference: torch fp32")
        with torch.no_grad():
            ref = {k: torch.sigmoid(model(c, r)) for k, (c, r) in inputs.items()}  # [k, 80] each
        flops = {k: count_flops(model, c, r) for k, (c, r) in inputs.items()}
        say("peak: matmul micro-benchmark")
        peaks = _matmul_peaks(cfg.precisions, cfg.device)

        results: list[dict[str, Any]] = []
        for name in cfg.engines:
            unavailable = _unavailable(name)
            for precision in cfg.precisions:
                base = {"engine": name, "precision": precision, "device": cfg.device}
                if unavailable:
                    results.append({**base, "status": "skipped", "reason": unavailable})
                    continue
                if precision not in SUPPORTED.get(name, {precision}):
                    results.append({**base, "status": "skipped",
                                    "reason": f"{name} is not benchmarked in {precision} (supported: {sorted(SUPPORTED[name])})"})
                    continue
                say(f"{name} {precision}: preparing")
                try:
                    engine = _open_engine(name, precision, model, cfg, workdir, ckpt_path)
                except (VmaedetError, ImportError) as exc:
                    results.append({**base, "status": "skipped", "reason": str(exc).splitlines()[0]})
                    continue
                with engine:
                    results += _engine_rows(engine, base, inputs, ref, flops, peaks.get(precision), cfg, say)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "schema": SCHEMA,
        "config": {"engines": list(cfg.engines), "precisions": list(cfg.precisions), "variant": variant,
                   "checkpoint": cfg.checkpoint, "persons": list(cfg.persons), "input_hw": list(cfg.input_hw),
                   "clip": [1, 3, CLIP_LEN, *cfg.input_hw], "warmup": cfg.warmup, "iters": cfg.iters,
                   "device": cfg.device, "seed": cfg.seed},
        "peak_flops_per_s": peaks,
        "results": results,
        "environment": environment(),
    }


def plot_latency(result: dict[str, Any], path: str | Path) -> Path:
    """PNG: p50 latency vs number of persons, one line per (engine, precision)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    series: dict[str, list[tuple[int, float]]] = {}
    for r in result["results"]:
        if r["status"] == "ok":
            series.setdefault(f"{r['engine']} {r['precision']}", []).append((r["persons"], r["latency_ms"]["p50"]))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p for p, _ in pts], [t for _, t in pts], marker="o", label=label)
    cfg = result["config"]
    ax.set_xlabel("persons per clip")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_ylim(bottom=0)  # from zero: run-to-run noise must not look like a trend
    ax.set_title(f"{cfg['variant']} 16×{cfg['input_hw'][0]}×{cfg['input_hw'][1]} on {cfg['device']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
