"""`vmaedet bench`: latency, throughput, FLOPs and %-of-peak per engine, precision and person count.

For every (engine, precision) the same clip and rois go through the engine after a warm-up;
latency is the wall time of ``Engine.infer`` (CUDA synchronised inside the engine when on a GPU),
reported as p50/p95 over ``iters`` runs (:func:`vmaedet.tools.timing.time_calls`: the one timing
loop and percentile definition of the project).  FLOPs per clip are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the PyTorch model (matmuls, convolutions,
attention), not estimated.  The device's peak is *measured* in the same process by a square
matmul micro-benchmark of the same dtype, and the achieved FLOP/s is reported as a fraction of it.
Accuracy, against torch fp32 on the same inputs: top-5 agreement per person, mean and max
|Δ sigmoid score| and max |Δ logit| per row, and each (engine, precision) held to its gates
(:func:`vmaedet.export.parity.rung_gates`: fp32 max |Δ logit| ≤ 1e-4; bf16, fp16 and int8 top-5
agreement ≥ 0.95 and mean |Δ score| ≤ 5e-3, pooled over every person of every row; max |Δ score|
reported) — ``gate`` in each row.

Artifacts are exported once per export precision into the run's working folder and shared by the
engines that run them (onnxruntime and OpenVINO read the same fp32 file).  int8 needs calibration
data (``calib``: an AVA-format dataset root, e.g. one written by ``vmaedet synth``): the int8 QDQ
artifact is exported, calibrated and gated on held-back keyframes exactly as ``vmaedet export
CKPT --precision int8 --calib DATA`` does, and the rows report the calibration and export time
(``artifact``).  An engine or exporter that refuses a case — OpenVINO bf16 on a CPU without native
bf16, an int8 export that misses its gates — gives a row with status ``skipped`` and a reason that
starts with ``refused:`` and says why.  The engine ``auto`` benches the engine
:func:`vmaedet.engines.base.choose_backend` picks for the exported artifact (``backend`` and
``backend_reason`` in its rows).

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
from vmaedet.errors import ConfigError, VmaedetError
from vmaedet.models.detector import ActionDetector, create_detector
from vmaedet.tools.timing import Timing, time_calls

SCHEMA = "vmaedet-bench-1"
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Precisions each engine can run (others are reported as skipped with this reason).
SUPPORTED = {
    "torch": set(PRECISIONS),
    "onnxruntime": set(EXPORT_PRECISIONS),
    "tensorrt": {"fp16"},
    "openvino": {"fp32", "bf16", "int8"},  # bf16: an fp32 artifact run in bf16, only on a CPU with native bf16
    "auto": set(EXPORT_PRECISIONS),  # the engine choose_backend picks for the artifact of that precision
}
#: Engines that run an fp32 export in every float precision they support (their precision is the run's,
#: not the artifact's); an int8 run is always the int8 export.
RUNTIME_PRECISION_ENGINES = {"openvino"}
#: Every precision a bench row can have: the engines' run precisions and the export precisions.
BENCH_PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys((*PRECISIONS, *EXPORT_PRECISIONS)))
#: The pseudo-engine that benches whatever :func:`~vmaedet.engines.base.choose_backend` picks.
AUTO = "auto"


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
    calib: str | None = None  # int8: an AVA-format dataset root to calibrate on (and hold keyframes back from)
    calib_clips: int = 32  # int8: keyframes to calibrate on (one at a time), as the export's default
    gate_clips: int = 16  # int8: held-back keyframes the export's gates run on
    int8: Any = None  # int8: a vmaedet.export.int8.Int8Options (what to quantize, calibration method); None: defaults
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


class _Artifacts:
    """The run's exported artifacts, one per export precision, made on first use and shared by the engines.

    A failed export (e.g. an int8 graph that misses its gates) is remembered and raised again, so
    the second engine of that precision does not repeat a long calibration.
    """

    def __init__(self, model: ActionDetector, cfg: BenchConfig, workdir: Path, checkpoint_path: Path,
                 say: Callable[[str], None]) -> None:
        self.model, self.cfg, self.workdir, self.checkpoint_path, self.say = model, cfg, workdir, checkpoint_path, say
        self._made: dict[str, tuple[Path, dict[str, Any]] | VmaedetError] = {}

    def get(self, precision: str) -> tuple[Path, dict[str, Any]]:
        """(the ONNX artifact exported in ``precision``, what making it cost: ``export_s``, int8: calibration)."""
        if precision not in self._made:
            try:
                self._made[precision] = self._export(precision)
            except VmaedetError as exc:
                self._made[precision] = exc
        made = self._made[precision]
        if isinstance(made, VmaedetError):
            raise made
        return made

    def _export(self, precision: str) -> tuple[Path, dict[str, Any]]:
        from vmaedet.export.onnx import export_onnx

        cfg = self.cfg
        kwargs: dict[str, Any] = {}
        if precision == "int8":
            if cfg.calib is None:
                raise ConfigError("int8 needs calibration data", received="no calibration data (calib=None)",
                                  expected="calib: an AVA-format dataset root",
                                  fix="e.g. `vmaedet bench --engines onnxruntime,openvino --precision fp32,int8 "
                                      "--calib DATA` (a folder written by `vmaedet synth DATA`)")
            kwargs = {"calib": cfg.calib, "calib_clips": cfg.calib_clips, "gate_clips": cfg.gate_clips,
                      "int8": cfg.int8}
            self.say(f"int8: export, calibration on up to {cfg.calib_clips} clip(s) of {cfg.calib} (one at a time) "
                     f"and the accuracy gates on {cfg.gate_clips} held-back clip(s)")
        else:
            self.say(f"{precision}: ONNX export (and its parity check)")
        t0 = time.perf_counter()
        result = export_onnx(self.model, self.workdir / f"model_{precision}.onnx", input_hw=cfg.input_hw,
                             max_persons=max(cfg.persons), precision=precision, checkpoint=self.checkpoint_path,
                             **kwargs)
        info: dict[str, Any] = {"precision": precision, "export_s": time.perf_counter() - t0}
        quant = result.manifest.quantization
        if quant is not None:
            calibration = dict(quant.calibration or {})
            info.update({"calibration_s": calibration.get("seconds"), "calibration_clips": calibration.get("clips"),
                         "calibration_method": calibration.get("method"), "export_gates": dict(quant.gates or {})})
            self.say(f"int8: calibrated on {info['calibration_clips']} clip(s) in {info['calibration_s']:.1f} s; "
                     f"export with its gates {info['export_s']:.1f} s")
        return result.path, info


def _open_engine(name: str, precision: str, model: ActionDetector, cfg: BenchConfig,
                 artifacts: _Artifacts) -> tuple[Engine, dict[str, Any]]:
    """Open the engine (:func:`~vmaedet.engines.open_engine`, on ``cfg.device``) and say what it runs.

    Artifact backends run the shared export of the right precision (exported on first use); ``auto``
    runs the engine :func:`~vmaedet.engines.base.choose_backend` picks for it.  Returns the engine and
    the row's extra fields (``artifact``: how it was made; ``auto``: ``backend``, ``backend_reason``).
    """
    max_k = max(cfg.persons)
    if name == "torch":
        return open_engine(model, "torch", precision=precision, device=cfg.device,
                           input_hw=cfg.input_hw, max_persons=None), {}
    export_precision = "fp32" if name in RUNTIME_PRECISION_ENGINES and precision != "int8" else precision
    art, info = artifacts.get(export_precision)
    extra: dict[str, Any] = {"artifact": info}
    if name == AUTO:
        from vmaedet.engines.base import choose_backend

        backend, reason = choose_backend(art, device=cfg.device)
        extra.update({"backend": backend, "backend_reason": reason})
        artifacts.say(f"auto {precision}: {backend} ({reason})")
        return open_engine(art, backend, device=cfg.device), extra
    if name == "tensorrt":
        from vmaedet.export.tensorrt import build_engine

        art = build_engine(art, artifacts.workdir / f"{name}.engine", max_persons=max_k, opt_persons=min(8, max_k),
                           workspace_gb=4.0, timing_cache=None, roi_align="plugin", progress=False)
    return open_engine(art, name, precision=precision, device=cfg.device), extra


def _refused(exc: BaseException) -> str:
    """``refused: what — received``: why an engine or the exporter refused a case, in one line."""
    if isinstance(exc, VmaedetError):
        why = exc.what + (f" — {exc.received}" if exc.received is not None else "")
    else:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return "refused: " + " ".join(why.split())


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


def _unsupported(name: str, precision: str) -> str:
    """Why an engine has no row in a precision (the case is not benchmarked at all)."""
    if name == AUTO and precision in PRECISIONS:
        return (f"auto picks the engine of an exported artifact ({', '.join(sorted(SUPPORTED[AUTO]))}); {precision} is "
                "a precision engines run an fp32 artifact in: name the engine (torch or openvino)")
    return f"{name} is not benchmarked in {precision} (supported: {sorted(SUPPORTED[name])})"


def _int8_options(options: Any) -> dict[str, Any]:
    """The int8 options of the run, for its JSON (the defaults when none were given)."""
    from dataclasses import asdict

    from vmaedet.export.int8 import Int8Options

    out = asdict(options if options is not None else Int8Options())
    out["exclude"] = list(out["exclude"])
    out["range_scale"] = dict(out["range_scale"])
    return out


def _check_config(cfg: BenchConfig) -> None:
    """ConfigError / DataError before anything is measured: unknown precisions or engines, bad calibration data."""
    from vmaedet.engines.base import list_engines

    bad = [p for p in cfg.precisions if p not in BENCH_PRECISIONS]
    if bad:
        raise ConfigError("unknown precision", received=bad, expected=", ".join(BENCH_PRECISIONS))
    known = [*list_engines(), AUTO]
    unknown = [e for e in cfg.engines if e not in known]
    if unknown:
        raise ConfigError("unknown engine", received=unknown, expected=", ".join(known))
    if cfg.calib is not None and "int8" in cfg.precisions:
        from vmaedet.export.int8 import check_dataset_root

        check_dataset_root(cfg.calib)
    if cfg.int8 is not None:
        cfg.int8.check()


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
    """One result row per number of persons for an opened engine, with its accuracy against torch fp32.

    ``ref``: torch fp32 logits ``[k, 80]`` per person count.  Each row has its own figures; ``gate``
    (the same in every row of the engine) holds the figures pooled over all of them and the verdict.
    """
    from vmaedet.export.parity import error_stats, rung_gates, task_stats, within

    rows, outs = [], {}
    for k, (clip, rois) in inputs.items():  # clip [1, 3, T, H, W], rois [k, 5]
        say(f"{base['engine']} {base['precision']}: {k} person(s)")
        out = engine.infer(clip, rois).float().cpu()  # [k, 80] logits
        outs[k] = out
        timing = time_engine(engine, clip, rois, iters=cfg.iters, warmup=cfg.warmup)
        p50 = timing.p50_s
        achieved = flops[k] / p50
        acc = error_stats(ref[k], out)
        rows.append({
            **base, "status": "ok", "persons": k,
            "latency_ms": timing.ms(),
            "clips_per_s": 1.0 / p50,
            "flops_per_clip": flops[k],
            "achieved_flops_per_s": achieved,
            "peak_flops_per_s": peak,
            "fraction_of_peak": achieved / peak if peak else None,
            "max_abs_score_diff": acc["max_abs_score"],
            "mean_abs_score_diff": acc["mean_abs_score"],
            "max_abs_logit_diff": acc["max_abs_logit"],
            "top5_agreement": acc["top5_agreement"],
        })
    pooled = task_stats([ref[k] for k in inputs], [outs[k] for k in inputs])
    gates = rung_gates(str(getattr(engine, "precision", base["precision"])))
    failures = within(pooled, gates)
    gate = {"reference": "torch fp32", "persons": int(pooled["persons"]), "top5_agreement": pooled["top5_agreement"],
            "mean_abs_score_diff": pooled["mean_abs_score"], "max_abs_score_diff": pooled["max_abs_score"],
            "max_abs_logit_diff": pooled["max_abs_logit"], "tolerances": gates, "passed": not failures,
            "failures": failures}
    for row in rows:
        row["gate"] = gate
    return rows


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every (engine, precision, persons) combination; return the JSON-ready result."""
    from vmaedet.envinfo import environment, module_version
    from vmaedet.models.checkpoints import save_detector

    say = progress or (lambda msg: None)
    _check_config(cfg)
    _check_input_hw(cfg.input_hw)
    model, variant = _bench_model(cfg)
    tmp = tempfile.TemporaryDirectory(prefix="vmaedet-bench-") if cfg.workdir is None else None
    try:
        workdir = Path(cfg.workdir or tmp.name)  # type: ignore[union-attr]
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else save_detector(model, workdir / "model.safetensors")

        inputs = {k: make_inputs(cfg.input_hw, k, cfg.seed + k) for k in cfg.persons}
        say("reference: torch fp32")
        with torch.no_grad():
            ref = {k: model(c, r).float() for k, (c, r) in inputs.items()}  # [k, 80] logits each
        flops = {k: count_flops(model, c, r) for k, (c, r) in inputs.items()}
        say("peak: matmul micro-benchmark")
        peaks = _matmul_peaks(cfg.precisions, cfg.device)
        artifacts = _Artifacts(model, cfg, workdir, ckpt_path, say)

        results: list[dict[str, Any]] = []
        for name in cfg.engines:
            unavailable = _unavailable(name)
            for precision in cfg.precisions:
                base = {"engine": name, "precision": precision, "device": cfg.device}
                if unavailable:
                    results.append({**base, "status": "skipped", "reason": unavailable})
                    continue
                if precision not in SUPPORTED.get(name, {precision}):
                    results.append({**base, "status": "skipped", "reason": _unsupported(name, precision)})
                    continue
                if precision == "int8" and cfg.calib is None:
                    results.append({**base, "status": "skipped",
                                    "reason": "int8 needs calibration data (calib: an AVA-format dataset root), e.g. "
                                              f"`vmaedet bench --engines {name} --precision int8 --calib DATA`"})
                    continue
                say(f"{name} {precision}: preparing")
                try:
                    engine, extra = _open_engine(name, precision, model, cfg, artifacts)
                except (VmaedetError, ImportError) as exc:
                    results.append({**base, "status": "skipped", "reason": _refused(exc)})
                    continue
                with engine:
                    results += _engine_rows(engine, {**base, **extra}, inputs, ref, flops, peaks.get(precision),
                                            cfg, say)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "schema": SCHEMA,
        "config": {"engines": list(cfg.engines), "precisions": list(cfg.precisions), "variant": variant,
                   "checkpoint": cfg.checkpoint, "persons": list(cfg.persons), "input_hw": list(cfg.input_hw),
                   "clip": [1, 3, CLIP_LEN, *cfg.input_hw], "warmup": cfg.warmup, "iters": cfg.iters,
                   "device": cfg.device, "seed": cfg.seed, "calib": cfg.calib,
                   **({"calib_clips": cfg.calib_clips, "gate_clips": cfg.gate_clips,
                       "int8_options": _int8_options(cfg.int8)} if cfg.calib else {})},
        "peak_flops_per_s": peaks,
        "results": results,
        "environment": {**environment(), "openvino": module_version("openvino")},
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
