"""GPU checks of the RoIAlignMax kernel: steps 2 and 3 of ``benchmarks/gpu_check.py``.

* :func:`step_triton` — the Triton kernel on CUDA against the float64 reference and torchvision
  (``roi_align`` + ``amax``), FP32 and FP16 features, exact-multiple boxes (112·k px at 1/16, where
  approximate division would round ``ceil(roi/7)`` up) included; then its time against torchvision
  at ViT-B geometry (768 channels, 16×29 map, K = 8 and 64), median over repeats, and a sweep of
  ``num_warps`` (4, 8, 16) for the record.
* :func:`step_aot` — the PTX that ``aot_impl`` returns, compiled by the same function with the same
  arguments (:func:`vmaedet.ops.triton_roi_align.compile_roi_align_max_aot`, target = this GPU),
  loaded with the driver API (cuda-python ``cuModuleLoadData`` + ``cuLaunchKernel``, or CuPy) and
  launched exactly as TensorRT launches it: grid ``(max(K, 1), ⌈C/64⌉)``, block ``num_warps·32``,
  arguments (features, rois, B, H, W, C, K, output) and nothing else; compared with the JIT kernel
  and the reference, K = 0 included (the output must stay untouched).

Each returns ``{"status": "ok"|"failed"|"skipped", "reason": str, "summary": str, ...figures}`` and
never raises (a missing GPU, Triton, cuda-python/CuPy is a "skipped" with the reason).  Runnable on
its own: ``python benchmarks/gpu_check_roi.py`` prints both results as JSON.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import statistics
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runs from a checkout without an install, too
    sys.path.insert(0, str(REPO_ROOT))

#: ViT-B at 256×464: 768 channels on a 16×29 map.
VITB_C, VITB_H, VITB_W = 768, 16, 29
#: Tolerances (as tests/ops/test_roi_align_triton.py): FP32 vs float64; FP16 features (FP16 output rounding).
TOL_FP32, TOL_FP16 = 1e-5, 4e-3


def _result(status: str, reason: str = "", summary: str = "", **figures: Any) -> dict[str, Any]:
    return {"status": status, "reason": reason, "summary": summary or reason, **figures}


def _cuda_or_skip(device: str) -> tuple[Any, str | None]:
    """``(torch.device, None)`` or ``(None, why not)``."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return None, f"torch is not importable ({type(exc).__name__}: {exc})"
    dev = torch.device(device)
    if dev.type != "cuda":
        return None, f"device {device!r} is not a CUDA device"
    if not torch.cuda.is_available():
        return None, "no CUDA GPU (torch.cuda.is_available() is False)"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return None, f"{device} does not exist ({torch.cuda.device_count()} GPU(s))"
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on"):
        return None, "TRITON_INTERPRET is set: Triton would run its CPU interpreter, not the GPU"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return None, f"Triton is not importable ({type(exc).__name__}: {exc})"
    return dev, None


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:600] + " | " + "".join(traceback.format_exc(limit=4))[-900:]


def _median_ms(fn: Callable[[], Any], dev: Any, repeats: int = 15, inner: int = 20) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` back-to-back calls (CUDA events)."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize(dev)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return round(statistics.median(times), 5)


def check_rois(n_random: int = 12, seed: int = 0) -> Any:
    """``[K, 5]`` rois on a 384×512 input (24×32 cells at 1/16): exact multiples, borders, random."""
    import torch

    exact = [  # 112·k px at 1/16 = 7k cells: ceil(7k/7) must be k, not k+1
        [0, 16.0, 32.0, 16.0 + 336, 32.0 + 224],  # 21 × 14 cells
        [1, 0.0, 0.0, 448.0, 336.0],  # 28 × 21
        [0, 64.0, 48.0, 64.0 + 112, 48.0 + 112],  # 7 × 7
        [1, 32.0, 16.0, 32.0 + 224, 16.0 + 336],  # 14 × 21
        [0, 80.0, 0.0, 80.0 + 336, 336.0],  # 21 × 21
    ]
    border = [[0, 0.0, 0.0, 511.0, 383.0], [1, -40.0, -30.0, 600.0, 500.0], [0, 60.0, 40.0, 61.0, 40.5],
              [1, 480.0, 360.0, 560.0, 420.0], [0, -50.0, -50.0, -20.0, -18.0], [1, 17.3, 33.9, 88.1, 71.2]]
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_random, 2, generator=gen) * torch.tensor([520.0, 390.0]) - 20
    wh = torch.rand(n_random, 2, generator=gen) * torch.tensor([300.0, 300.0]) + 0.5
    idx = torch.randint(0, 2, (n_random, 1), generator=gen).float()
    return torch.cat([torch.tensor(exact + border), torch.cat([idx, xy, xy + wh], dim=1)]), len(exact)


def person_rois(k: int, hw: tuple[int, int] = (VITB_H * 16, VITB_W * 16), seed: int = 0) -> Any:
    """``[k, 5]`` person-like boxes (≥ 16 px) inside an ``hw`` frame, batch index 0."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    h, w = hw
    bw = torch.rand(k, generator=gen) * 170 + 30
    bh = torch.rand(k, generator=gen) * (h - 60) + 60
    x1 = torch.rand(k, generator=gen) * (w - bw)
    y1 = torch.rand(k, generator=gen) * (h - bh)
    return torch.stack([torch.zeros(k), x1, y1, x1 + bw, y1 + bh], dim=1)


# -- step 2 -------------------------------------------------------------------------------------------
def step_triton(device: str = "cuda") -> dict[str, Any]:
    """Triton RoIAlignMax on CUDA vs float64 reference and torchvision; time vs torchvision at ViT-B."""
    dev, why = _cuda_or_skip(device)
    if dev is None:
        return _result("skipped", why or "")
    figures: dict[str, Any] = {}
    try:
        import torch

        from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference, roi_align_max_triton
        from vmaedet.ops.triton_roi_align import NUM_WARPS, launch_roi_align_max

        torch.cuda.set_device(dev)
        figures["gpu"] = torch.cuda.get_device_name(dev)
        rois, n_exact = check_rois()
        gen = torch.Generator().manual_seed(1)
        feats = torch.randn(2, 64, 24, 32, generator=gen)  # [B, C, h, w]
        ref = roi_align_max_reference(feats, rois)  # [K, C] float64
        f_dev, r_dev = feats.to(dev), rois.to(dev)
        errors: dict[str, float] = {}
        tolerances: dict[str, float] = {}

        def record(name: str, got: Any, expected: Any, tol: float) -> None:
            errors[name] = float((got.double().cpu() - expected.double().cpu()).abs().max())
            tolerances[name] = tol

        tv = roi_align_max(f_dev, r_dev)  # torchvision on CUDA
        out = roi_align_max_triton(f_dev, r_dev)
        out_cl = roi_align_max_triton(f_dev.to(memory_format=torch.channels_last), r_dev)
        record("fp32_vs_reference", out, ref, TOL_FP32)
        record("fp32_exact_multiples_vs_reference", out[:n_exact], ref[:n_exact], TOL_FP32)
        record("fp32_vs_torchvision_cuda", out, tv, TOL_FP32)
        record("torchvision_cuda_vs_reference", tv, ref, TOL_FP32)
        record("fp32_channels_last_input_same", out_cl, out, 0.0)
        half = feats.half()
        out_h = roi_align_max_triton(half.to(dev), r_dev)
        ref_h = roi_align_max_reference(half, rois)
        record("fp16_vs_reference", out_h, ref_h, TOL_FP16)
        record("fp16_exact_multiples_vs_reference", out_h[:n_exact], ref_h[:n_exact], TOL_FP16)
        # torchvision's fp16 kernel rounds the roi coordinates and its arithmetic to fp16 (6e-2 off the float64
        # reference on these rois, measured on the CPU): the kernel is compared with it in fp32 on the fp16 map
        record("fp16_vs_torchvision_cuda_fp32", out_h, roi_align_max(half.to(dev).float(), r_dev), TOL_FP16)
        record("aligned_ratio2_vs_reference", roi_align_max_triton(f_dev, r_dev, sampling_ratio=2, aligned=True),
               roi_align_max_reference(feats, rois, sampling_ratio=2, aligned=True), TOL_FP32)
        figures["errors"] = {k: float(f"{v:.3g}") for k, v in errors.items()}
        figures["tolerances"] = tolerances
        bad = {k: v for k, v in errors.items() if not v <= tolerances[k]}

        # timing at ViT-B geometry: Triton on the channels-last map, torchvision on NCHW
        timing: dict[str, Any] = {"num_warps_default": NUM_WARPS}
        fmap = torch.randn(1, VITB_C, VITB_H, VITB_W, generator=gen).to(dev)  # [1, C, h, w]
        for k in (8, 64):
            boxes = person_rois(k).to(dev)
            for name, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
                nchw = fmap.to(dt)
                nhwc = nchw.permute(0, 2, 3, 1).contiguous()  # [1, h, w, C]
                out_k = torch.empty(k, VITB_C, dtype=dt, device=dev)
                attrs = dict(spatial_scale=1 / 16, pooled_size=7, sampling_ratio=0, aligned=False)
                t_tri = _median_ms(lambda: launch_roi_align_max(nhwc, boxes, out_k, **attrs), dev)
                t_tv = _median_ms(lambda: roi_align_max(nchw, boxes), dev)
                timing[f"K{k}_{name}"] = {"triton_ms": t_tri, "torchvision_roi_align_amax_ms": t_tv,
                                          "speedup": round(t_tv / t_tri, 2) if t_tri > 0 else None}
            sweep = {}
            nhwc32 = fmap.permute(0, 2, 3, 1).contiguous()
            out32 = torch.empty(k, VITB_C, device=dev)
            for nw in (4, 8, 16):
                sweep[str(nw)] = _median_ms(lambda: launch_roi_align_max(
                    nhwc32, boxes, out32, spatial_scale=1 / 16, pooled_size=7, sampling_ratio=0, aligned=False,
                    num_warps=nw), dev, repeats=7)
            timing[f"K{k}_fp32_num_warps_ms"] = sweep
        figures["timing_vitb_768x16x29"] = timing
        t8 = timing["K8_fp32"]
        summary = (f"max err fp32 {errors['fp32_vs_reference']:.2g} (exact multiples "
                   f"{errors['fp32_exact_multiples_vs_reference']:.2g}), fp16 {errors['fp16_vs_reference']:.2g}; "
                   f"ViT-B K=8 fp32 Triton {t8['triton_ms'] * 1000:.1f} µs vs torchvision "
                   f"{t8['torchvision_roi_align_amax_ms'] * 1000:.1f} µs")
        if bad:
            return _result("failed", f"over tolerance (max error): {bad}", summary, **figures)
        return _result("ok", "", summary, **figures)
    except Exception as exc:  # noqa: BLE001
        return _result("failed", _error(exc), **figures)


# -- step 3 -------------------------------------------------------------------------------------------
class _DriverLoader:
    """cuda-python (``cuda.bindings.driver`` or the older ``cuda.cuda``): load PTX, launch with raw args."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import driver as drv
            self.name = "cuda-python (cuda.bindings.driver)"
        except ImportError:
            from cuda import cuda as drv  # type: ignore[no-redef]
            self.name = "cuda-python (cuda.cuda)"
        self.drv = drv
        self._check(drv.cuInit(0), "cuInit")

    def _check(self, ret: Any, what: str) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            _, msg = self.drv.cuGetErrorString(err)
            raise RuntimeError(f"{what} failed: {err} {msg.decode() if isinstance(msg, bytes) else msg}")
        return rest[0] if len(rest) == 1 else rest

    def driver_version(self) -> int:
        return int(self._check(self.drv.cuDriverGetVersion(), "cuDriverGetVersion"))

    def load(self, ptx: str, name: str) -> Any:
        self.module = self._check(self.drv.cuModuleLoadData(ptx.encode() + b"\0"), "cuModuleLoadData")
        return self._check(self.drv.cuModuleGetFunction(self.module, name.encode()), "cuModuleGetFunction")

    def param_count(self, fn: Any) -> int | None:
        get = getattr(self.drv, "cuFuncGetParamInfo", None)  # CUDA ≥ 12.4 drivers
        if get is None:
            return None
        n = 0
        while True:
            ret = get(fn, n)
            if ret[0] != self.drv.CUresult.CUDA_SUCCESS:
                return n
            n += 1
            if n > 64:
                return None

    def launch(self, fn: Any, grid: tuple[int, int, int], block: int, shared: int, stream: int, args: list[Any]) -> None:
        # kernelParams: an array of N pointers, each to one argument's bytes (N = the .entry's count)
        ptrs = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        self._check(self.drv.cuLaunchKernel(fn, *grid, block, 1, 1, shared, self.drv.CUstream(stream),
                                            ctypes.addressof(ptrs), 0), "cuLaunchKernel")


class _CupyLoader:
    """CuPy: ``RawModule(path=<ptx>)`` and a launch with the same raw arguments."""

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        self.name = f"CuPy {cupy.__version__}"

    def driver_version(self) -> int:
        return int(self.cupy.cuda.runtime.driverGetVersion())

    def load(self, ptx: str, name: str) -> Any:
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ptx)
        self.module = self.cupy.RawModule(path=f.name)
        return self.module.get_function(name)

    def param_count(self, fn: Any) -> int | None:
        return None

    def launch(self, fn: Any, grid: tuple[int, int, int], block: int, shared: int, stream: int, args: list[Any]) -> None:
        import numpy as np

        conv = [np.uint64(a.value or 0) if isinstance(a, ctypes.c_void_p) else np.int32(a.value) for a in args]
        with self.cupy.cuda.ExternalStream(stream):
            fn(grid, (block, 1, 1), tuple(conv), shared_mem=shared)


def _loader() -> tuple[Any, str | None]:
    errors = []
    for cls in (_DriverLoader, _CupyLoader):
        try:
            return cls(), None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
    return None, "neither cuda-python nor CuPy can load a module here (" + "; ".join(errors)[:400] + ")"


def _trt_args(feats: Any, rois: Any, out: Any, k: int) -> list[Any]:
    """TensorRT's AOT arguments: input pointers, SymInt32 scalars B, H, W, C, K, output pointer."""
    b, h, w, c = feats.shape
    return [ctypes.c_void_p(feats.data_ptr()), ctypes.c_void_p(rois.data_ptr() if rois.numel() else 0),
            ctypes.c_int32(b), ctypes.c_int32(h), ctypes.c_int32(w), ctypes.c_int32(c), ctypes.c_int32(k),
            ctypes.c_void_p(out.data_ptr())]


def step_aot(device: str = "cuda") -> dict[str, Any]:
    """The AOT PTX (as ``aot_impl`` compiles it) launched in TensorRT's argument order = the JIT kernel."""
    dev, why = _cuda_or_skip(device)
    if dev is None:
        return _result("skipped", why or "")
    loader, why = _loader()
    if loader is None:
        return _result("skipped", why or "")
    figures: dict[str, Any] = {"loader": loader.name}
    try:
        import torch

        from vmaedet.ops.roi_align import roi_align_max_reference
        from vmaedet.ops.triton_roi_align import (AOT_PARAM_ORDER, compile_roi_align_max_aot, launch_roi_align_max,
                                                  ptx_entry_params)

        torch.cuda.set_device(dev)
        torch.zeros(1, device=dev)  # the primary context is current from here on
        figures["driver_version"] = loader.driver_version()
        attrs = dict(spatial_scale=1 / 16, pooled_size=7, sampling_ratio=0, aligned=False)
        failures: list[str] = []
        cases: dict[str, Any] = {}
        rois_chk, _ = check_rois()
        gen = torch.Generator().manual_seed(2)
        maps = {"check_64x24x32": torch.randn(2, 64, 24, 32, generator=gen),
                "vitb_768x16x29": torch.randn(1, VITB_C, VITB_H, VITB_W, generator=gen)}
        for dtype_name, dt, tol in (("fp32", torch.float32, TOL_FP32), ("fp16", torch.float16, TOL_FP16)):
            # exactly aot_impl's call: compile_roi_align_max_aot(dtype, *attributes), target = this GPU
            kernel = compile_roi_align_max_aot(dtype_name, attrs["spatial_scale"], attrs["pooled_size"],
                                               attrs["sampling_ratio"], attrs["aligned"])
            entry = ptx_entry_params(kernel.ptx, kernel.name)
            fn = loader.load(kernel.ptx, kernel.name)
            info = {"name": kernel.name, "target": list(kernel.target), "ptx_version": kernel.ptx_version,
                    "num_warps": kernel.num_warps, "shared_mem": kernel.shared_mem, "entry_params": len(entry),
                    "driver_param_count": loader.param_count(fn), "stripped_params": list(kernel.stripped_params),
                    "triton": kernel.triton_version}
            if len(entry) != len(AOT_PARAM_ORDER):
                failures.append(f"{dtype_name}: .entry takes {len(entry)} parameters, TensorRT passes {len(AOT_PARAM_ORDER)}")
            stream = torch.cuda.current_stream(dev).cuda_stream
            for map_name, fmap in maps.items():
                for k_name, rois in (("check", rois_chk), ("K8", person_rois(8)), ("K64", person_rois(64)),
                                     ("K0", rois_chk[:0])):
                    if map_name == "vitb_768x16x29" and k_name == "check":
                        continue
                    if map_name == "check_64x24x32" and k_name in ("K8", "K64"):
                        continue
                    nchw = fmap.to(dt)
                    nhwc = nchw.permute(0, 2, 3, 1).contiguous().to(dev)  # [B, h, w, C]
                    r_dev = rois.to(dev, torch.float32).contiguous()
                    k = r_dev.shape[0]
                    sentinel = 12345.0
                    out = torch.full((max(k, 1), nhwc.shape[3]), sentinel, dtype=dt, device=dev)
                    grid = (max(k, 1), math.ceil(nhwc.shape[3] / kernel.block_c), 1)  # TensorRT's launch parameters
                    loader.launch(fn, grid, kernel.num_warps * 32, kernel.shared_mem, stream, _trt_args(nhwc, r_dev, out, k))
                    torch.cuda.synchronize(dev)
                    label = f"{dtype_name}_{map_name}_{k_name}"
                    if k == 0:
                        untouched = bool((out == sentinel).all())
                        cases[label] = {"output_untouched": untouched}
                        if not untouched:
                            failures.append(f"{label}: K = 0 launch wrote to the output")
                        continue
                    jit = torch.empty(k, nhwc.shape[3], dtype=dt, device=dev)
                    launch_roi_align_max(nhwc, r_dev, jit, **attrs)
                    ref = roi_align_max_reference(nchw, rois)
                    vs_jit = float((out.double() - jit.double()).abs().max())
                    vs_ref = float((out.double().cpu() - ref).abs().max())
                    cases[label] = {"max_abs_vs_jit": float(f"{vs_jit:.3g}"), "max_abs_vs_reference": float(f"{vs_ref:.3g}")}
                    if not vs_jit <= (1e-6 if dt == torch.float32 else 1e-3) or not vs_ref <= tol:
                        failures.append(f"{label}: vs JIT {vs_jit:.3g}, vs reference {vs_ref:.3g}")
            figures[f"kernel_{dtype_name}"] = info
        figures["cases"] = cases
        k_info = figures["kernel_fp32"]
        summary = (f"{loader.name}; .entry {k_info['entry_params']} params (TensorRT passes {len(AOT_PARAM_ORDER)}), "
                   f"PTX {k_info['ptx_version']} for sm_{k_info['target'][1]}, stripped {k_info['stripped_params']}; "
                   f"{len(cases)} launches")
        if failures:
            return _result("failed", "; ".join(failures)[:1500], summary, **figures)
        return _result("ok", "", summary, **figures)
    except Exception as exc:  # noqa: BLE001
        return _result("failed", _error(exc), **figures)


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    print(json.dumps({"step_triton": step_triton(device), "step_aot": step_aot(device)}, indent=2, default=str))
