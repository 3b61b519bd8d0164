"""Triton RoIAlign+max kernel = float64 reference = torch composition; its AOT PTX = TensorRT's call.

On the CPU the kernel runs in Triton's interpreter, which needs ``TRITON_INTERPRET=1`` before
``import triton``: the cases run in a subprocess (this file executed as a script) so the variable
applies cleanly and the rest of the suite keeps a normal Triton.  With a CUDA GPU the same cases
run in-process on the device.  The cases include exact-multiple boxes (112·k px at 1/16 = 7k cells:
``ceil(7k / 7)`` must be k, which approximate GPU division can break; the interpreter divides
exactly, so on the CPU they guard the reference and layout, on a GPU the rounding) and the
channels-last layout the kernel reads.

The AOT compile (``compile_roi_align_max_aot``, what the plugin's ``aot_impl`` returns) runs on the
CPU for explicit CUDA targets: its PTX ``.entry`` must take exactly TensorRT's arguments, and
Triton's bundled ``ptxas`` must accept it.

Tolerances: FP32 features ≤ 1e-5 absolute (FP32 coordinates and accumulation vs float64; values
of order 1–25); FP16 features ≤ 4e-3 (the output is rounded to FP16: half an ulp at |x| < 4 is
1e-3, plus FP16 inputs read exactly); hand-computed cases ≤ 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

BORDER_ROIS = [
    [0, 0.0, 0.0, 127.0, 95.0],  # whole image
    [1, -40.0, -30.0, 300.0, 200.0],  # larger than the map
    [0, 60.0, 40.0, 61.0, 40.5],  # tiny
    [1, 120.0, 90.0, 160.0, 140.0],  # past the bottom-right edge
    [0, 17.3, 33.9, 88.1, 71.2],  # fractional
    [1, -50.0, -50.0, -20.0, -18.0],  # entirely outside: every bin 0
]
#: 112·k px at scale 1/16 = 7k cells (k = 1..4), on a 24×32-cell map (a 384×512 input).
EXACT_MULTIPLE_ROIS = [
    [0, 16.0, 32.0, 16.0 + 336, 32.0 + 224],  # 21 × 14 cells: ceil(21/7) = 3, ceil(14/7) = 2
    [1, 0.0, 0.0, 448.0, 336.0],  # 28 × 21
    [0, 64.0, 48.0, 64.0 + 112, 48.0 + 112],  # 7 × 7
    [1, 32.0, 16.0, 32.0 + 224, 16.0 + 336],  # 14 × 21
    [0, 80.0, 0.0, 80.0 + 336, 336.0],  # 21 × 21
]


def run_cases(device: str) -> dict[str, tuple[float, float]]:
    """Every case → (max |error|, tolerance); the kernel on ``device``."""
    from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference, roi_align_max_triton

    results: dict[str, tuple[float, float]] = {}

    def record(name: str, got: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        err = (got.double().cpu() - expected.double().cpu()).abs().max().item() if got.numel() else 0.0
        results[name] = (err, tol)

    # Hand-computed: f(y, x) = 5y + x on 5×5 (see test_roi_align.py for the derivations).
    arange = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5).to(device)  # [1, 1, 5, 5]
    boxes = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 2.0, 2.0, 2.1, 2.1], [0, -1.0, -1.0, 0.4, 0.4],
                          [0, 0.0, 0.0, 8.0, 8.0]], device=device)
    hand = torch.tensor([[6 * 6.5 * 4 / 7], [6 * (2 + 6.5 / 7)], [6 * 0.3], [6 * (26 / 7 + 4) / 2]])
    record("hand_computed", roi_align_max_triton(arange, boxes, 1.0), hand, 1e-5)
    record("outside_gives_zero", roi_align_max_triton(arange - 100, boxes[:0].new_tensor([[0, -3.0, -3.0, -1.0, -1.0]]), 1.0),
           torch.zeros(1, 1), 0.0)

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 6, 8, generator=gen)  # [B, C, h, w]: a 96×128 input at 1/16
    xy = torch.rand(10, 2, generator=gen) * torch.tensor([140.0, 110.0]) - 10
    wh = torch.rand(10, 2, generator=gen) * torch.tensor([110.0, 80.0]) + 0.5
    idx = torch.randint(0, 2, (10, 1), generator=gen).float()
    rois = torch.cat([torch.tensor(BORDER_ROIS), torch.cat([idx, xy, xy + wh], dim=1)])  # [K, 5]
    ref = roi_align_max_reference(feats, rois)  # [K, C] float64
    f_dev, r_dev = feats.to(device), rois.to(device)
    out = roi_align_max_triton(f_dev, r_dev)  # [K, C]
    record("fp32_vs_reference", out, ref, 1e-5)
    record("fp32_vs_torch_composition", out, roi_align_max(feats, rois), 1e-5)
    half = feats.half()
    out_half = roi_align_max_triton(half.to(device), r_dev)
    assert out_half.dtype == torch.float16
    record("fp16_vs_reference", out_half, roi_align_max_reference(half, rois), 4e-3)
    record("aligned_ratio2_vs_reference", roi_align_max_triton(f_dev, r_dev, sampling_ratio=2, aligned=True),
           roi_align_max_reference(feats, rois, sampling_ratio=2, aligned=True), 1e-5)
    record("odd_channels", roi_align_max_triton(f_dev[:, :5], r_dev), ref[:, :5], 1e-5)
    record("empty_rois", roi_align_max_triton(f_dev, r_dev[:0]), torch.zeros(0, 16), 0.0)

    # exact multiples (7k cells): the sampling grid is exactly k × k per bin, as in torchvision
    big = torch.randn(2, 24, 24, 32, generator=gen)  # [B, C, h, w]
    exact = torch.tensor(EXACT_MULTIPLE_ROIS)
    ref_exact = roi_align_max_reference(big, exact)
    out_exact = roi_align_max_triton(big.to(device), exact.to(device))
    record("exact_multiples_fp32_vs_reference", out_exact, ref_exact, 1e-5)
    record("exact_multiples_fp32_vs_torchvision", out_exact, roi_align_max(big, exact), 1e-5)
    record("exact_multiples_fp16_vs_reference", roi_align_max_triton(big.half().to(device), exact.to(device)),
           roi_align_max_reference(big.half(), exact), 4e-3)

    # channels-last: a torch.channels_last map is read in place; the launcher takes [B, h, w, C]
    from vmaedet.ops.triton_roi_align import launch_roi_align_max

    record("channels_last_memory_format", roi_align_max_triton(f_dev.to(memory_format=torch.channels_last), r_dev),
           out, 0.0)
    nhwc = f_dev.permute(0, 2, 3, 1).contiguous()  # [B, h, w, C]
    raw = torch.full((rois.shape[0], 16), 7.0, device=device)
    launch_roi_align_max(nhwc, r_dev, raw, spatial_scale=1 / 16, pooled_size=7, sampling_ratio=0, aligned=False)
    record("launcher_on_nhwc", raw, ref, 1e-5)
    return results


def _check(results: dict[str, tuple[float, float]]) -> None:
    failures = {k: v for k, v in results.items() if not v[0] <= v[1]}
    assert not failures, f"cases over tolerance (max error, tolerance): {failures}"


@pytest.mark.slow
def test_triton_kernel_in_interpreter_on_cpu() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {k: tuple(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    assert len(results) == 13
    _check(results)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_triton_kernel_on_gpu() -> None:
    _check(run_cases("cuda"))


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.errors import BackendUnavailable
    from vmaedet.ops.roi_align import roi_align_max_triton

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="TRITON_INTERPRET"):
        roi_align_max_triton(torch.zeros(1, 4, 5, 6), torch.tensor([[0, 0.0, 0.0, 8.0, 8.0]]))


# -- the AOT compile (what aot_impl returns), on the CPU for explicit CUDA targets -------------------
def _ptxas(ptx: str) -> tuple[str, str] | None:
    """(Triton's bundled ptxas, the PTX's --gpu-name), or None when Triton ships none here."""
    import re

    try:
        from triton.backends.nvidia.compiler import get_ptxas
    except Exception:  # noqa: BLE001
        return None
    target = re.search(r"^\.target\s+(sm_\w+)", ptx, flags=re.M)
    try:
        path = get_ptxas(int(re.sub(r"\D", "", target.group(1)))).path if target else None  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001
        return None
    return (path, target.group(1)) if path and target else None  # type: ignore[union-attr]


@pytest.mark.parametrize("capability,dtype", [(90, "fp32"), (80, "fp16"), (89, "fp32")])
def test_aot_ptx_takes_exactly_tensorrts_arguments(capability: int, dtype: str, tmp_path: Path) -> None:
    """inputs (2 pointers), SymInt32 scalars (B, H, W, C, K), output (1 pointer): nothing more."""
    import re

    from vmaedet.ops.triton_roi_align import AOT_PARAM_ORDER, AOT_SCALARS, compile_roi_align_max_aot, ptx_entry_params

    kernel = compile_roi_align_max_aot(dtype, 1 / 16, 7, 0, False, target=("cuda", capability, 32))
    params = ptx_entry_params(kernel.ptx, kernel.name)
    assert len(params) == 2 + len(AOT_SCALARS) + 1 == len(AOT_PARAM_ORDER) == len(kernel.param_order)
    decls = re.search(r"\.entry\s+\w+\s*\((.*?)\)", kernel.ptx, flags=re.S).group(1).split(",")  # type: ignore[union-attr]
    assert [".u64" in d for d in decls] == [True, True, False, False, False, False, False, True]
    assert all(".u32" in d for d in decls[2:7])
    assert kernel.ptx_version == "8.0"  # loads on any driver that runs CUDA 12 TensorRT
    assert re.search(rf"^\.target\s+sm_{capability}a?\b", kernel.ptx, flags=re.M)
    assert kernel.block_c == 64 and kernel.num_warps * 32 == 256 and kernel.shared_mem >= 0
    assert "div.full" not in kernel.ptx and "div.approx" not in kernel.ptx  # round-to-nearest division only
    assert "div.rn.f32" in kernel.ptx
    # what Triton appended and the compile removed (Triton >= 3.3: global_scratch, >= 3.5: profile_scratch)
    assert all(p not in kernel.ptx.split(kernel.name, 2)[-1] for p in kernel.stripped_params)
    found = _ptxas(kernel.ptx)
    if found is None:
        pytest.skip("Triton ships no ptxas here: the PTX was checked textually only")
    path, arch = found
    src = tmp_path / "k.ptx"
    src.write_text(kernel.ptx)
    proc = subprocess.run([path, "--gpu-name", arch, str(src), "-o", str(tmp_path / "k.cubin")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_kernel_compiles_for_a_gpu_when_sizes_are_one(dtype: str) -> None:
    """On a GPU, Triton's JIT turns an int argument equal to 1 into a constant; the kernel must compile
    then too (a 1-pixel-high map, one image).  The JIT is told not to (one kernel for every size, as the
    AOT one); compiled here for sm_90 with B = H = W = 1 as constants, as a JIT without that would."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vmaedet.ops import triton_roi_align as t

    unspecialised = {t.AOT_PARAM_ORDER[x] if isinstance(x, int) else x for x in t.roi_align_max_kernel.do_not_specialize}
    assert unspecialised >= set(t.AOT_SCALARS)
    signature = dict(zip(t.AOT_PARAM_ORDER, (f"*{dtype}", "*fp32", "i32", "i32", "i32", "i32", "i32", f"*{dtype}")))
    signature.update({name: "constexpr" for name in (*t._CONSTEXPRS, "B", "H", "W")})
    constexprs = {"SPATIAL_SCALE": 1 / 16, "POOLED": 7, "SAMPLING_RATIO": 0, "ALIGNED": False, "BLOCK": t.BLOCK_C,
                  "BINS": t.bins_for(7), "B": 1, "H": 1, "W": 1}
    compiled = triton.compile(ASTSource(fn=t.roi_align_max_kernel, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert ".entry " + compiled.metadata.name in compiled.asm["ptx"]


def test_strip_refuses_a_kernel_that_reads_the_extra_parameters() -> None:
    from vmaedet.ops.triton_roi_align import AotCompileError, strip_unused_trailing_params

    ptx = (".visible .entry k(\n\t.param .u64 .ptr .global .align 1 k_param_0,\n\t.param .u32 k_param_1,\n"
           "\t.param .u64 .ptr .global .align 1 k_param_2\n)\n{\n\tld.param.b64 %rd1, [k_param_0];\n}\n")
    stripped, extra = strip_unused_trailing_params(ptx, "k", keep=2)
    assert extra == ["k_param_2"] and "k_param_2" not in stripped and "k_param_1" in stripped
    with pytest.raises(AotCompileError, match="reads"):
        strip_unused_trailing_params(ptx.replace("[k_param_0]", "[k_param_2]"), "k", keep=2)
    with pytest.raises(AotCompileError, match="fewer"):
        strip_unused_trailing_params(ptx, "k", keep=4)


def test_gpu_check_steps_skip_with_a_reason_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/gpu_check_roi.py: step_triton / step_aot return "skipped" + why, never raise."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check_roi_t", ROOT / "benchmarks" / "gpu_check_roi.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for fn in (mod.step_triton, mod.step_aot):
        res = fn(device="cuda")
        assert res["status"] == "skipped" and "CUDA" in res["reason"], res
    res = mod.step_triton(device="cpu")
    assert res["status"] == "skipped" and "not a CUDA device" in res["reason"]


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (the interpreter must be on before triton is imported)")
    print(json.dumps(run_cases("cpu")))
