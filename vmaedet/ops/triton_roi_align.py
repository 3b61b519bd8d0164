"""Triton kernel of ``RoIAlignMax``: legacy RoIAlign (7×7, adaptive sampling) fused with the max.

Layout: **channels-last** features ``[B, H, W, C]`` (the token layout of the backbone, before the
transpose to ``[B, C, H, W]``), so the channels a program handles are contiguous in memory and
every gather is one coalesced row of ``BLOCK_C`` values.

One program per (roi, block of ``BLOCK_C`` channels) works on a ``[BINS, BLOCK_C]`` tile: all
``pooled²`` bins at once (padded to a power of two), looping only over the adaptive ``gh × gw``
samples of a bin.  Samples outside ``[-1, size]`` (and the padding bins) issue no loads (masked).
Averages in FP32, then the max over the bins.  The coordinate and boundary rules are those of
torchvision's kernel (spec §1.8); the float64 transcription is
:func:`vmaedet.ops.roi_align.roi_align_max_reference`.  Every FP32 division is
round-to-nearest (``tl.math.div_rn``): Triton's ``/`` compiles to approximate division on a GPU,
and ``ceil(roi / 7)`` must give exactly 3 for a 21-cell (336-px) box, as torchvision's does.

Kernel parameters are in the order TensorRT's AOT plugins pass them: input pointers, the int32
scalars of ``SymIntExprs`` (``B, H, W, C, K``), output pointer; constexprs last (baked into the
PTX).  :func:`compile_roi_align_max_aot` is *the* AOT compile: the plugin's ``aot_impl`` and the
GPU check both call it.

This module imports Triton at import time; import it lazily (``vmaedet.ops.roi_align`` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vmaedet.errors import ExportError

#: Channels per program: 64 lanes read one contiguous 256-byte (FP32) / 128-byte (FP16) row.
BLOCK_C = 64
#: Warps per program.  The tile is ``[BINS=64, BLOCK_C=64]`` = 4096 FP32 accumulators; 8 warps
#: give 16 per thread, and the accumulator plus four gathers fit in registers without spills
#: (ptxas 12.9: 175-183 registers on sm_80/89/90a; 4 warps spill ~110 bytes at 255, 16 warps use
#: ~101).  The plugin README records these figures; the GPU check times 4, 8 and 16 warps.
NUM_WARPS = 8
#: What TensorRT passes, in order: inputs, the ``SymIntExprs`` scalars, outputs.
AOT_PARAM_ORDER = ("feat_ptr", "rois_ptr", "B", "H", "W", "C", "K", "out_ptr")
#: The scalars among them (``trtp.SymInt32`` each, in this order).
AOT_SCALARS = ("B", "H", "W", "C", "K")
_CONSTEXPRS = ("SPATIAL_SCALE", "POOLED", "SAMPLING_RATIO", "ALIGNED", "BLOCK", "BINS")


@triton.jit(do_not_specialize=list(AOT_SCALARS))  # one kernel per dtype whatever the sizes, as the AOT one
def roi_align_max_kernel(
    feat_ptr,  # [B, H, W, C] fp16/fp32, contiguous (channels-last)
    rois_ptr,  # [K, 5] fp32
    B,  # int32
    H,  # int32
    W,  # int32
    C,  # int32
    K,  # int32: number of rois (programs with k >= K exit: the AOT grid is max(K, 1))
    out_ptr,  # [K, C], dtype of feat
    SPATIAL_SCALE: tl.constexpr,
    POOLED: tl.constexpr,
    SAMPLING_RATIO: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,  # channels per program
    BINS: tl.constexpr,  # next power of two ≥ POOLED²
):
    k = tl.program_id(0)
    if k < K:
        cb = tl.program_id(1)
        ch = cb * BLOCK + tl.arange(0, BLOCK)  # [BLOCK]
        cmask = ch < C
        bins = tl.arange(0, BINS)  # [BINS]
        bmask = bins < POOLED * POOLED
        ph = (bins // POOLED).to(tl.float32)  # [BINS]
        pw = (bins % POOLED).to(tl.float32)  # [BINS]

        roi = rois_ptr + k.to(tl.int64) * 5
        bidx = tl.load(roi).to(tl.int32)
        bvalid = (bidx >= 0) & (bidx < B)
        bidx = tl.where(bvalid, bidx, 0)
        offset: tl.constexpr = 0.5 if ALIGNED else 0.0
        start_w = tl.load(roi + 1) * SPATIAL_SCALE - offset
        start_h = tl.load(roi + 2) * SPATIAL_SCALE - offset
        roi_w = tl.load(roi + 3) * SPATIAL_SCALE - offset - start_w
        roi_h = tl.load(roi + 4) * SPATIAL_SCALE - offset - start_h
        if not ALIGNED:
            roi_w = tl.maximum(roi_w, 1.0)
            roi_h = tl.maximum(roi_h, 1.0)
        pooled_f = tl.full((), POOLED, tl.float32)
        bin_w = tl.math.div_rn(roi_w, pooled_f)
        bin_h = tl.math.div_rn(roi_h, pooled_f)
        if SAMPLING_RATIO > 0:
            grid_h = SAMPLING_RATIO + tl.zeros((), dtype=tl.int32)
            grid_w = SAMPLING_RATIO + tl.zeros((), dtype=tl.int32)
        else:
            grid_h = tl.ceil(tl.math.div_rn(roi_h, pooled_f)).to(tl.int32)
            grid_w = tl.ceil(tl.math.div_rn(roi_w, pooled_f)).to(tl.int32)
        grid_hf = grid_h.to(tl.float32)
        grid_wf = grid_w.to(tl.float32)
        count = tl.maximum(grid_h * grid_w, 1).to(tl.float32)
        Hf = H * 1.0  # fp32; H may be a compile-time 1 (a JIT specialises ints equal to 1): no .to() on it
        Wf = W * 1.0
        y0 = start_h + ph * bin_h  # [BINS]
        x0 = start_w + pw * bin_w  # [BINS]

        base = feat_ptr + bidx.to(tl.int64) * H * W * C  # image bidx, [H, W, C]
        acc = tl.zeros((BINS, BLOCK), dtype=tl.float32)
        for iy in range(0, grid_h):
            y = y0 + tl.math.div_rn((iy + 0.5) * bin_h, grid_hf)  # [BINS]
            for ix in range(0, grid_w):
                x = x0 + tl.math.div_rn((ix + 0.5) * bin_w, grid_wf)  # [BINS]
                live = bmask & (y >= -1.0) & (y <= Hf) & (x >= -1.0) & (x <= Wf)  # [BINS]
                yc = tl.maximum(y, 0.0)
                xc = tl.maximum(x, 0.0)
                y_lo = yc.to(tl.int32)
                x_lo = xc.to(tl.int32)
                y_edge = y_lo >= H - 1
                x_edge = x_lo >= W - 1
                y_lo = tl.where(y_edge, H - 1, y_lo)
                x_lo = tl.where(x_edge, W - 1, x_lo)
                y_hi = tl.where(y_edge, y_lo, y_lo + 1)
                x_hi = tl.where(x_edge, x_lo, x_lo + 1)
                ly = tl.where(y_edge, 0.0, yc - y_lo.to(tl.float32))
                lx = tl.where(x_edge, 0.0, xc - x_lo.to(tl.float32))
                hy = 1.0 - ly
                hx = 1.0 - lx
                m = live[:, None] & cmask[None, :]  # [BINS, BLOCK]: dead samples load nothing
                col = ch[None, :]
                v00 = tl.load(base + ((y_lo * W + x_lo) * C)[:, None] + col, mask=m, other=0.0).to(tl.float32)
                v01 = tl.load(base + ((y_lo * W + x_hi) * C)[:, None] + col, mask=m, other=0.0).to(tl.float32)
                v10 = tl.load(base + ((y_hi * W + x_lo) * C)[:, None] + col, mask=m, other=0.0).to(tl.float32)
                v11 = tl.load(base + ((y_hi * W + x_hi) * C)[:, None] + col, mask=m, other=0.0).to(tl.float32)
                acc += ((hy * hx)[:, None] * v00 + (hy * lx)[:, None] * v01
                        + (ly * hx)[:, None] * v10 + (ly * lx)[:, None] * v11)
        avg = tl.math.div_rn(acc, count + tl.zeros((BINS, BLOCK), dtype=tl.float32))
        avg = tl.where(bmask[:, None], avg, float("-inf"))
        best = tl.max(avg, axis=0)  # [BLOCK]
        best = tl.where(bvalid, best, 0.0)
        tl.store(out_ptr + k.to(tl.int64) * C + ch, best.to(out_ptr.dtype.element_ty), mask=cmask)


def bins_for(pooled_size: int) -> int:
    """The ``BINS`` constexpr: the next power of two ≥ ``pooled_size²``."""
    return triton.next_power_of_2(max(int(pooled_size) ** 2, 1))


def launch_roi_align_max(
    features: torch.Tensor,
    rois: torch.Tensor,
    out: torch.Tensor,
    *,
    spatial_scale: float,
    pooled_size: int,
    sampling_ratio: int,
    aligned: bool,
    block: int = BLOCK_C,
    num_warps: int = NUM_WARPS,
) -> None:
    """Launch the kernel: ``features [B, H, W, C]`` (channels-last, contiguous) + ``rois [K, 5]`` fp32 → ``out [K, C]``."""
    b, h, w, c = features.shape
    k = rois.shape[0]
    if k == 0 or c == 0:
        return
    block = min(block, triton.next_power_of_2(max(c, 1)))
    grid = (k, triton.cdiv(c, block))
    roi_align_max_kernel[grid](
        features, rois, b, h, w, c, k, out,
        SPATIAL_SCALE=float(spatial_scale), POOLED=int(pooled_size), SAMPLING_RATIO=int(sampling_ratio),
        ALIGNED=bool(aligned), BLOCK=block, BINS=bins_for(pooled_size), num_warps=num_warps,
    )


# -- ahead-of-time compilation (TensorRT aot_impl, GPU check) -------------------------------------
#: Lowest PTX ISA the AOT kernel is written as, per GPU generation (as low as the target allows,
#: so that any driver that runs CUDA 12 TensorRT can JIT it); None = Triton's default (its ptxas's).
_PTX_FLOOR = 80  # PTX 8.0 = CUDA 12.0 drivers (≥ 525), enough for sm_80 … sm_90a


def aot_ptx_version(capability: int) -> int | None:
    """PTX ISA version (×10) used for ``capability``: 8.0 up to Hopper, Triton's default after."""
    return _PTX_FLOOR if capability < 100 else None


@dataclass(frozen=True)
class AotKernel:
    """One AOT-compiled kernel, as ``aot_impl`` hands it to TensorRT.

    ``param_order`` is the ``.entry`` parameter list of ``ptx``, exactly what TensorRT passes
    (inputs, the ``SymInt32`` scalars ``scalars``, outputs); ``stripped_params`` are Triton's
    trailing scratch pointers removed from the PTX (unused by this kernel, never passed by TensorRT).
    """

    name: str
    ptx: str
    num_warps: int
    shared_mem: int
    block_c: int
    param_order: tuple[str, ...]
    scalars: tuple[str, ...]
    target: tuple[str, int, int]  # (backend, capability, warp size)
    ptx_version: str
    stripped_params: tuple[str, ...]
    triton_version: str


_AOT_FIX = ("build the engine with the JIT plugin (aot=False) or the built-in RoiAlign (roi_align='builtin'), "
            "and report the Triton version")


class AotCompileError(ExportError):
    """The compiled PTX cannot be launched with TensorRT's arguments (says why)."""


def ptx_entry_params(ptx: str, name: str) -> list[str]:
    """Parameter names of ``.entry name(...)`` in ``ptx``, in order."""
    match = re.search(r"\.entry\s+" + re.escape(name) + r"\s*\((.*?)\)", ptx, flags=re.S)
    if match is None:
        raise AotCompileError(f"no .entry {name} in the PTX", fix=_AOT_FIX)
    return re.findall(r"\.param\s+[^,]*?([A-Za-z_$][\w$]*)\s*(?:,|$)", match.group(1).strip())


def strip_unused_trailing_params(ptx: str, name: str, keep: int) -> tuple[str, list[str]]:
    """Remove the ``.entry`` parameters after the first ``keep``, refusing if the body reads them.

    Recent Triton appends ``global_scratch`` (since about 3.3) and ``profile_scratch`` (since about
    3.5) pointers to every kernel; its own launcher passes them, TensorRT's AOT launcher passes only
    inputs, scalars and outputs, and ``cuLaunchKernel`` reads as many arguments as the ``.entry``
    declares.  A kernel that needs no scratch never reads them, so dropping them from the signature
    makes the ``.entry`` take exactly TensorRT's arguments.
    """
    match = re.search(r"(\.entry\s+" + re.escape(name) + r"\s*\()(.*?)(\))", ptx, flags=re.S)
    if match is None:
        raise AotCompileError(f"no .entry {name} in the PTX", fix=_AOT_FIX)
    decls = [d.strip() for d in match.group(2).split(",") if d.strip()]
    params = ptx_entry_params(ptx, name)
    if len(params) != len(decls):
        raise AotCompileError(f"could not parse the .entry parameters of {name}: {decls}", fix=_AOT_FIX)
    if len(params) < keep:
        raise AotCompileError(f".entry {name} has {len(params)} parameters, fewer than the {keep} TensorRT passes",
                              fix=_AOT_FIX)
    extra = params[keep:]
    body = ptx[match.end():]
    used = [p for p in extra if re.search(r"\b" + re.escape(p) + r"\b", body)]
    if used:
        raise AotCompileError(f"the kernel reads Triton's extra parameters {used}; TensorRT would not pass them",
                              fix=_AOT_FIX)
    new_decls = "\n\t" + ",\n\t".join(decls[:keep]) + "\n"
    return ptx[:match.start(2)] + new_decls + ptx[match.end(2):], extra


def compile_roi_align_max_aot(
    dtype: str,
    spatial_scale: float,
    pooled: int,
    sampling_ratio: int,
    aligned: bool,
    *,
    target: tuple[str, int, int] | None = None,
    ptx_version: int | None = -1,
    num_warps: int = NUM_WARPS,
) -> AotKernel:
    """Compile the kernel to PTX for TensorRT's AOT launcher (what ``aot_impl`` returns).

    Args:
        dtype: ``"fp32"`` or ``"fp16"`` (features and output; rois are always FP32).
        spatial_scale, pooled, sampling_ratio, aligned: the op's attributes (baked in as constexprs).
        target: ``("cuda", capability, warp_size)``, e.g. ``("cuda", 90, 32)``; default the current GPU.
        ptx_version: PTX ISA ×10; ``-1`` = :func:`aot_ptx_version` of the target, ``None`` = Triton's default.
        num_warps: warps per program (the launch's ``block_x`` is ``num_warps · 32``).

    Returns:
        :class:`AotKernel` whose PTX ``.entry`` takes exactly :data:`AOT_PARAM_ORDER`.

    Raises:
        AotCompileError: Triton's kernel needs scratch memory or reads parameters TensorRT would not pass.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if dtype not in ("fp32", "fp16"):
        raise AotCompileError("the AOT kernel is compiled for FP32 or FP16 features", received=dtype,
                              expected="'fp32' or 'fp16'")
    if target is None:
        current = triton.runtime.driver.active.get_current_target()
        target = (current.backend, int(current.arch), int(current.warp_size))
    backend, capability, warp_size = target
    gpu_target = GPUTarget(backend, int(capability), int(warp_size))
    signature = dict(zip(AOT_PARAM_ORDER, (f"*{dtype}", "*fp32", "i32", "i32", "i32", "i32", "i32", f"*{dtype}")))
    signature.update({name: "constexpr" for name in _CONSTEXPRS})
    constexprs = {"SPATIAL_SCALE": float(spatial_scale), "POOLED": int(pooled), "SAMPLING_RATIO": int(sampling_ratio),
                  "ALIGNED": bool(aligned), "BLOCK": BLOCK_C, "BINS": bins_for(pooled)}
    options: dict[str, object] = {"num_warps": int(num_warps)}
    version = aot_ptx_version(int(capability)) if ptx_version == -1 else ptx_version
    if version is not None:
        options["ptx_version"] = int(version)
    compiled = triton.compile(ASTSource(fn=roi_align_max_kernel, signature=signature, constexprs=constexprs),
                              target=gpu_target, options=options)
    meta = compiled.metadata
    for what in ("global_scratch_size", "profile_scratch_size"):
        if int(getattr(meta, what, 0) or 0) != 0:
            raise AotCompileError(f"the compiled kernel needs Triton {what.replace('_size', '')} memory "
                                  f"({getattr(meta, what)} bytes), which TensorRT's AOT launcher does not provide",
                                  fix=_AOT_FIX)
    name = meta.name
    ptx, stripped = strip_unused_trailing_params(compiled.asm["ptx"], name, keep=len(AOT_PARAM_ORDER))
    params = ptx_entry_params(ptx, name)
    if len(params) != len(AOT_PARAM_ORDER):
        raise AotCompileError(f".entry {name} takes {len(params)} parameters, TensorRT passes {len(AOT_PARAM_ORDER)}",
                              received=params, expected=AOT_PARAM_ORDER, fix=_AOT_FIX)
    ver = re.search(r"^\.version\s+(\S+)", ptx, flags=re.M)
    return AotKernel(
        name=name, ptx=ptx, num_warps=int(meta.num_warps), shared_mem=int(meta.shared), block_c=BLOCK_C,
        param_order=AOT_PARAM_ORDER, scalars=AOT_SCALARS, target=(backend, int(capability), int(warp_size)),
        ptx_version=ver.group(1) if ver else "?", stripped_params=tuple(stripped), triton_version=triton.__version__,
    )
