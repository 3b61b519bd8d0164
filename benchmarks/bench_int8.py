"""INT8 on the CPU: torch fp32 vs onnxruntime fp32 / int8 (QDQ) vs OpenVINO fp32 / int8, one model at a time.

For each variant (random weights, the head rescaled so logits have std ≈ 3 and a N(0, 1) bias, like
``benchmarks/gpu_check.py::realistic_head``) at one clip geometry with ``--persons`` rois:

* exports the fp32 ONNX (parity-gated as always) and the int8 QDQ ONNX (``export_onnx(precision=
  "int8")``: calibrated on ``--calib-clips`` keyframes of a synthetic AVA-format dataset at the source
  size that gives the geometry, gated on held-back keyframes: top-5 agreement, mean |Δ score|, and
  the frame-mAP difference);
* measures the calibration alone in a child process (wall time; its peak RSS from the kernel's
  accounting of that child, ``os.wait4``'s ``ru_maxrss``, and from its own VmHWM; and the peak above
  the process's RSS once the graph is loaded: what calibrating one clip at a time costs);
* times ``Engine.infer`` (median of ``--repeats`` after one warm-up, ``vmaedet.tools.timing``) for
  torch fp32, onnxruntime fp32, onnxruntime int8, OpenVINO fp32 and OpenVINO int8;
* compares every engine with torch fp32: top-5 agreement per person, mean / max |Δ score| (pooled over
  the timed input and the held-back keyframes);
* measures the matmul rate of each engine × precision on one GEMM of the model's fc1 shape (tokens ×
  D → 4D): torch / onnxruntime / OpenVINO fp32 ``MatMul``, onnxruntime ``MatMulInteger`` (u8 × s8 →
  s32) and the QDQ ``MatMul`` form of the int8 graph in onnxruntime and OpenVINO; and reports each
  engine's achieved GFLOP/s (FLOPs counted by ``vmaedet.tools.bench.count_flops``) and its % of the
  measured rate: the time the model's FLOPs would take at the measured GEMM rates (int8: the
  quantized linear layers at the int8 rate, everything else at the fp32 rate) ÷ the measured time.

The int8 options are the library's defaults (``Int8Options()``) unless ``--float-groups`` /
``--method`` say otherwise; the manifest's ``quantization`` section is recorded per variant.
``--keep-others`` keeps the rows of variants not run now from the previous ``--out`` (marked with
the run they came from).

Writes ``--out`` (default ``benchmarks/results/int8.json``) with ``vmaedet.envinfo.environment()`` (CPU
model, flags, versions).  ``--smoke``: vit_micro at 64×96, 2 clips — a check that the script runs.

    OMP_NUM_THREADS=2 python benchmarks/bench_int8.py --variants vit_small_patch16_224,vit_base_patch16_224
    OMP_NUM_THREADS=2 python benchmarks/bench_int8.py --variants vit_base_patch16_224 --keep-others
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_check import realistic_head  # noqa: E402 - the one realistic-logit head (same draws)
from vmaedet.envinfo import environment, write_json  # noqa: E402


def vm_status(key: str) -> float:
    """A /proc/self/status figure (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def int8_options(args: argparse.Namespace) -> Any:
    """The Int8Options of this run: the library's defaults unless the flags say otherwise."""
    from vmaedet.export.int8 import Int8Options

    default = Int8Options()
    groups = default.float_groups if args.float_groups is None else tuple(filter(None, args.float_groups.split(",")))
    options = Int8Options(float_groups=groups, method=args.method or default.method,
                          percentile=args.percentile if args.percentile is not None else default.percentile)
    options.check()
    return options


def calibrate_only(onnx_path: str, data: str, calib_clips: int, hw: tuple[int, int], persons: int,
                   threads: int, options_json: str) -> dict[str, Any]:
    """In this (fresh) process: load the fp32 graph, then calibrate; RSS before and the peak after."""
    import onnx

    from vmaedet.engines.onnxruntime_engine import create_session
    from vmaedet.export.int8 import Int8Options, calibrate, plan_clips, select_targets

    opts = json.loads(options_json)
    options = Int8Options(float_groups=tuple(opts["float_groups"]), method=opts["method"],
                          percentile=opts["percentile"])
    graph = onnx.load(onnx_path)
    calib, _ = plan_clips(data, calib_clips=calib_clips, gate_clips=1, input_hw=hw, short_side=256,
                          max_persons=persons)
    selection = select_targets(graph, options)
    rss0, hwm0 = vm_status("VmRSS"), vm_status("VmHWM")
    # the baseline: one plain fp32 inference of one clip (a session of the same graph, no extra outputs)
    session = create_session(onnx_path, device="cpu", threads=threads)
    clip, rois = next(iter(calib))
    session.run(["logits"], {"clip": clip, "rois": rois})
    del session
    hwm_infer = vm_status("VmHWM")
    t0 = time.perf_counter()
    cal = calibrate(graph, selection.activation_tensors(), calib, method=options.method,
                    percentile=options.percentile, bins=options.bins, threads=threads)
    return {**cal.to_dict(), "wall_s": round(time.perf_counter() - t0, 2), "rss_before_mib": round(rss0, 1),
            "hwm_before_mib": round(hwm0, 1), "peak_above_loaded_mib": round(cal.peak_rss_mib - rss0, 1),
            "plain_inference_peak_above_loaded_mib": round(hwm_infer - rss0, 1),
            "note": "VmHWM is the process peak: calibration adds nothing above one plain inference when the two peaks "
                    "are equal",
            "graph_bytes": os.path.getsize(onnx_path)}


def calibrate_in_child(fp32: Path, data: Path, hw: tuple[int, int], args: argparse.Namespace,
                       options: Any, work: Path) -> dict[str, Any]:
    """:func:`calibrate_only` in a child process; its peak RSS polled from ``/proc/<pid>/status`` (VmHWM).

    The child's ``ru_maxrss`` (``os.wait4``) is recorded too, but it is an upper bound only: Linux
    carries the high-water mark of the memory the child had before ``exec`` (the parent's pages, shared
    at the spawn) into it.
    """
    opts = json.dumps({"float_groups": list(options.float_groups), "method": options.method,
                       "percentile": options.percentile})
    out_path, err_path = work / "calibrate.stdout", work / "calibrate.stderr"
    t0 = time.perf_counter()
    hwm_kib = 0
    with open(out_path, "w") as out, open(err_path, "w") as err:
        child = subprocess.Popen([sys.executable, __file__, "--calibrate-only", str(fp32), str(data),
                                  str(args.calib_clips), f"{hw[0]}x{hw[1]}", str(args.persons), str(args.threads), opts],
                                 stdout=out, stderr=err, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        while True:
            try:  # VmHWM of the child's own address space (reset at exec), read until it exits
                for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm_kib = max(hwm_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.2)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        raise RuntimeError(f"calibration subprocess failed:\n{err_path.read_text()[-2000:]}")
    rec = json.loads(out_path.read_text().strip().splitlines()[-1])
    rec["child_peak_rss_mb"] = round(hwm_kib * 1024 / 1e6, 1)  # polled VmHWM (KiB)
    rec["child_peak_rss_mib"] = round(hwm_kib / 1024, 1)
    rec["child_ru_maxrss_mib_upper_bound"] = round(usage.ru_maxrss / 1024, 1)  # KiB on Linux
    rec["child_wall_s"] = round(wall, 1)  # start-up, imports, loading the graph and calibrating
    rec["peak_goal_mb"] = 8000
    rec["peak_within_goal"] = rec["child_peak_rss_mb"] <= 8000
    return rec


def cpu_record() -> dict[str, Any]:
    """The SIMD features that decide int8 speed (from /proc/cpuinfo) and the OpenVINO version."""
    from vmaedet.engines.openvino_engine import cpu_flags
    from vmaedet.envinfo import module_version

    flags = cpu_flags()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {"flags": {f: f in flags for f in wanted}, "openvino": module_version("openvino")}


def make_data(root: Path, hw: tuple[int, int], smoke: bool) -> Path:
    """A synthetic AVA-format dataset whose sources resize (short side 256) to exactly ``hw``."""
    from vmaedet.data.synthetic import generate

    if (root / "annotations" / "train.csv").is_file():
        return root
    h, w = hw
    if smoke:
        generate(root, videos=2, seconds=6, seed=0)
    else:
        generate(root, videos=8, seconds=12, seed=0, width=w, height=h, max_persons=8, val_fraction=0.25)
    return root


# -- FLOPs and the measured matmul rates -----------------------------------------------------------------
def model_flops(model: torch.nn.Module, clip: torch.Tensor, rois: torch.Tensor) -> dict[str, Any]:
    """FLOPs of one forward (``count_flops``) and those of the block linears by group, with the fc1 GEMM shape."""
    from vmaedet.export.int8 import LAYER_GROUPS
    from vmaedet.tools.bench import count_flops

    by_group = dict.fromkeys(LAYER_GROUPS, 0)
    fc1_shape: list[int] = []
    hooks = []

    def add(group: str, rows: int, fan_in: int, fan_out: int) -> None:
        by_group[group] += 2 * rows * fan_in * fan_out
        if group == "fc1" and not fc1_shape:
            fc1_shape.extend([rows, fan_in, fan_out])

    for name, module in model.named_modules():
        if ".blocks." not in f".{name}.":
            continue
        last = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and last in ("proj", "fc1", "fc2"):
            hooks.append(module.register_forward_hook(
                lambda mod, inputs, _out, group=last: add(group, inputs[0].numel() // mod.in_features,
                                                          mod.in_features, mod.out_features)))
        elif last == "attn" and isinstance(getattr(module, "qkv", None), torch.nn.Linear):
            # qkv is a functional linear with the module's weight (the q/v biases): counted from the input
            hooks.append(module.register_forward_hook(
                lambda mod, inputs, _out: add("qkv", inputs[0].numel() // mod.qkv.in_features,
                                              mod.qkv.in_features, mod.qkv.out_features)))
    try:
        total = count_flops(model, clip, rois)
    finally:
        for h in hooks:
            h.remove()
    return {"total": total, "linear_by_group": by_group, "fc1_gemm_mkn": fc1_shape}


def gemm_graph(kind: str, m: int, k: int, n: int, seed: int = 0) -> Any:
    """One ``[m, k] @ [k, n]`` GEMM as ONNX: "fp32" MatMul, "matmulinteger" (u8 × s8 → s32) or "qdq"
    (float in and out, per-tensor Q→DQ on the input, per-channel int8 weight: the int8 graph's layer form)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)  # [k, n]
    nodes, inits = [], []
    x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    if kind == "fp32":
        inits.append(numpy_helper.from_array(w, "W"))
        nodes.append(helper.make_node("MatMul", ["X", "W"], ["Y"]))
    elif kind == "matmulinteger":
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "W"),
                  numpy_helper.from_array(np.array(0, np.uint8), "xz"), numpy_helper.from_array(np.array(0, np.int8), "wz")]
        nodes.append(helper.make_node("MatMulInteger", ["X", "W", "xz", "wz"], ["Y"]))
    else:
        scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)  # [n]
        inits += [numpy_helper.from_array(np.clip(np.rint(w / scale), -127, 127).astype(np.int8), "Wq"),
                  numpy_helper.from_array(scale, "ws"), numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
                  numpy_helper.from_array(np.array(4.0 / 127, np.float32), "xs"),
                  numpy_helper.from_array(np.array(0, np.int8), "xz")]
        nodes += [helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["W"], axis=1),
                  helper.make_node("QuantizeLinear", ["X", "xs", "xz"], ["Xq"]),
                  helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"]),
                  helper.make_node("MatMul", ["Xd", "W"], ["Y"])]
    graph = helper.make_graph(nodes, f"gemm_{kind}", [helper.make_tensor_value_info("X", x_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def matmul_rates(m: int, k: int, n: int, threads: int, repeats: int, work: Path) -> dict[str, Any]:
    """GFLOP/s (best of ``repeats`` after a warm-up) of one [m, k] @ [k, n] GEMM per engine × precision."""
    import onnx

    from vmaedet.engines.onnxruntime_engine import create_session, session_kwargs
    from vmaedet.engines.openvino_engine import PRECISION_HINTS, shared_core
    from vmaedet.tools.timing import time_calls

    flop = 2.0 * m * k * n
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, k)).astype(np.float32)  # [m, k]
    xu8 = rng.integers(0, 256, (m, k)).astype(np.uint8)  # [m, k]
    rates: dict[str, Any] = {"gemm_mkn": [m, k, n], "threads": threads, "statistic": f"best of {repeats}"}

    def rate(fn: Callable[[], Any]) -> float:
        return round(flop / min(time_calls(fn, repeats=repeats, warmup=1).times_s) / 1e9, 1)

    a, b = torch.from_numpy(x), torch.randn(k, n)  # [m, k], [k, n]
    rates["torch fp32"] = rate(lambda: torch.matmul(a, b))
    for kind, key, feed in (("fp32", "onnxruntime fp32", x), ("matmulinteger", "onnxruntime int8 MatMulInteger", xu8),
                            ("qdq", "onnxruntime int8", x)):
        session = create_session(gemm_graph(kind, m, k, n).SerializeToString(), device="cpu", threads=threads,
                                 **session_kwargs("fp32" if kind == "fp32" else "int8"))
        rates[key] = rate(lambda: session.run(["Y"], {"X": feed}))
        del session
    core = shared_core()
    for kind, key in (("fp32", "openvino fp32"), ("qdq", "openvino int8")):
        path = work / f"gemm_{kind}.onnx"
        onnx.save(gemm_graph(kind, m, k, n), str(path))
        compiled = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                         "INFERENCE_PRECISION_HINT": PRECISION_HINTS["fp32"]})
        request = compiled.create_infer_request()
        rates[key] = rate(lambda: request.infer({0: x}))
        del request, compiled
    rates["unit"] = "GFLOP/s (2·m·k·n per product)"
    return rates


def pct_of_rate(name: str, seconds: float, flops: dict[str, Any], rates: dict[str, Any],
                quantized_groups: tuple[str, ...]) -> dict[str, Any]:
    """Achieved GFLOP/s and % of what the measured GEMM rates allow (int8 rows: the quantized linears
    at the engine's int8 rate, the rest at its fp32 rate)."""
    engine, precision = name.split(" ")
    total = float(flops["total"])
    fp32_rate = rates[f"{engine} fp32"] * 1e9
    bound = total / fp32_rate
    rec: dict[str, Any] = {"gflop": round(total / 1e9, 1), "achieved_gflop_s": round(total / seconds / 1e9, 1),
                           "pct_of_fp32_matmul_rate": round(100 * total / seconds / fp32_rate, 1)}
    if precision == "int8":
        q = float(sum(flops["linear_by_group"][g] for g in quantized_groups))
        int8_rate = rates[f"{engine} int8"] * 1e9
        bound = q / int8_rate + (total - q) / fp32_rate
        rec.update({"int8_gflop": round(q / 1e9, 1), "pct_of_int8_matmul_rate": round(100 * total / seconds / int8_rate, 1)})
    rec["bound_s"] = round(bound, 3)
    rec["pct_of_measured_rate"] = round(100 * bound / seconds, 1)
    return rec


# -- one variant ---------------------------------------------------------------------------------------
def bench_variant(variant: str, hw: tuple[int, int], args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    from vmaedet.engines import open_engine
    from vmaedet.errors import ExportError
    from vmaedet.export.int8 import LAYER_GROUPS, plan_clips
    from vmaedet.export.onnx import export_onnx
    from vmaedet.export.parity import error_stats, pooled_stats, random_clip, random_rois
    from vmaedet.models import create_detector
    from vmaedet.tools.timing import time_calls

    say = lambda msg: print(f"[{variant}] {msg}", flush=True)  # noqa: E731
    options = int8_options(args)
    torch.manual_seed(0)
    model = create_detector(variant).eval()
    g = torch.Generator().manual_seed(0)
    clip, rois = random_clip(hw, g), random_rois(args.persons, hw, g)  # [1, 3, 16, H, W], [K, 5]
    realistic_head(model, clip, rois)
    rec: dict[str, Any] = {"variant": variant, "input_hw": list(hw), "persons": args.persons, "threads": args.threads,
                           "int8_options": {"float_groups": list(options.float_groups), "method": options.method,
                                            "percentile": options.percentile if options.method == "percentile" else None},
                           "load_average_start": list(os.getloadavg())}
    t0 = time.perf_counter()
    fp32 = export_onnx(model, work / f"{variant}_fp32.onnx", input_hw=hw, max_persons=max(args.persons, 8)).path
    rec["export_fp32_s"] = round(time.perf_counter() - t0, 1)
    say(f"fp32 export {rec['export_fp32_s']} s")
    t0 = time.perf_counter()
    try:
        result = export_onnx(model, work / f"{variant}_int8.onnx", input_hw=hw, max_persons=max(args.persons, 8),
                             precision="int8", calib=data, calib_clips=args.calib_clips, gate_clips=args.gate_clips,
                             int8=options)
    except ExportError as exc:  # the gates refused it: a result too (the figures are in the message)
        rec["export_int8_s"] = round(time.perf_counter() - t0, 1)
        rec["int8_refused"] = {"message": exc.what, "received": str(exc.received), "expected": str(exc.expected)}
        say(f"int8 export refused by its gates: {exc.received}")
        return rec
    rec["export_int8_s"] = round(time.perf_counter() - t0, 1)
    quant = result.manifest.quantization
    rec["int8_manifest"] = {"quantized": len(quant.quantized), "excluded": dict(quant.excluded),
                            "calibration": dict(quant.calibration), "gates": dict(quant.gates),
                            "options": dict(quant.extra.get("options", {}))}
    say(f"int8 export {rec['export_int8_s']} s; gates {dict(quant.gates)}")
    rec["calibration_child_process"] = calibrate_in_child(fp32, data, hw, args, options, work)
    say(f"calibration alone: {rec['calibration_child_process']}")

    flops = model_flops(model, clip, rois)
    rec["flops"] = flops
    m, k, n = flops["fc1_gemm_mkn"]
    rec["matmul_rates"] = matmul_rates(m, k, n, args.threads, max(args.repeats, 3), work)
    say(f"FLOPs {flops['total'] / 1e9:.0f} G; matmul rates {rec['matmul_rates']}")
    quantized_groups = tuple(grp for grp in LAYER_GROUPS if grp not in options.float_groups)

    _, held = plan_clips(data, calib_clips=args.calib_clips, gate_clips=args.gate_clips, input_hw=hw, short_side=256,
                         max_persons=args.persons)
    held_inputs = [(c, r) for c, r in held]
    with torch.no_grad():
        ref_timed = model(clip, rois)  # [K, 80]
        ref_held = [model(torch.from_numpy(c), torch.from_numpy(r)) for c, r in held_inputs]
    engines = {
        "torch fp32": lambda: open_engine(model, "torch", precision="fp32"),
        "onnxruntime fp32": lambda: open_engine(fp32, "onnxruntime", device="cpu", threads=args.threads),
        "onnxruntime int8": lambda: open_engine(result.path, "onnxruntime", device="cpu", threads=args.threads),
        "openvino fp32": lambda: open_engine(fp32, "openvino", precision="fp32", threads=args.threads, cache=False),
        "openvino int8": lambda: open_engine(result.path, "openvino", precision="int8", threads=args.threads,
                                             cache=False),
    }
    rows = {}
    for name, make in engines.items():
        t0 = time.perf_counter()
        eng = make()
        load_s = time.perf_counter() - t0
        timing = time_calls(lambda: eng.infer(clip, rois), repeats=args.repeats, warmup=1)
        held_here = held_inputs if (args.held_engines == "all" or name.endswith(" int8")) else []
        outs = [eng.infer(torch.from_numpy(c), torch.from_numpy(r)) for c, r in held_here]
        timed = error_stats(ref_timed, timing.result)
        pooled = pooled_stats([ref_timed, *ref_held[:len(outs)]], [timing.result, *outs])
        eng.close()
        rows[name] = {"median_s": round(timing.p50_s, 3), "times_s": [round(t, 3) for t in timing.times_s],
                      "load_s": round(load_s, 2),
                      "vs_torch_fp32": {k: pooled[k] for k in ("top5_agreement", "mean_abs_score", "max_abs_score",
                                                                "max_abs_logit")},
                      "vs_torch_fp32_timed_input": {k: timed[k] for k in ("top5_agreement", "mean_abs_score",
                                                                          "max_abs_score")},
                      "accuracy_inputs": f"the timed input + {len(outs)} held-back keyframes",
                      "rate": pct_of_rate(name, timing.p50_s, flops, rec["matmul_rates"], quantized_groups)}
        say(f"{name}: {rows[name]['median_s']} s/clip; {rows[name]['vs_torch_fp32']}; {rows[name]['rate']}")
    rec["engines"] = rows
    rec["accuracy_inputs"] = (f"the timed input (random clip, {args.persons} rois) + {len(held_inputs)} held-back "
                              "synthetic keyframes, pooled over persons"
                              + ("" if args.held_engines == "all" else " (int8 rows; the fp32 rows: the timed input only)"))
    base = rows["onnxruntime fp32"]["median_s"]
    rec["speedup_vs_onnxruntime_fp32"] = {k: round(base / v["median_s"], 2) for k, v in rows.items()}
    rec["vs_torch_fp32_speed"] = {k: round(rows["torch fp32"]["median_s"] / v["median_s"], 2) for k, v in rows.items()}
    rec["load_average_end"] = list(os.getloadavg())
    return rec


def remeasure_rates(out: Path, threads: int, repeats: int) -> None:
    """``--rates-only``: measure the GEMM rates of each variant in ``out`` again and recompute every
    row's % of rate against the best rate seen (both kept): a rate measured while other jobs loaded
    the CPU understates what the machine does, and then a row reads above 100 %."""
    from vmaedet.export.int8 import LAYER_GROUPS

    doc = json.loads(out.read_text())
    for rec in doc["results"]:
        if "engines" not in rec or "kept_from" in rec:
            continue
        first = rec.get("matmul_rates_first", rec["matmul_rates"])
        with tempfile.TemporaryDirectory(prefix="bench_int8_rates_") as tmp:
            again = matmul_rates(*rec["flops"]["fc1_gemm_mkn"], threads, repeats, Path(tmp))
        again["load_average"] = list(os.getloadavg())
        best = {k: max(v, again[k]) if isinstance(v, float) else v for k, v in first.items()}
        best["statistic"] = "the higher of two measurements (matmul_rates_first, matmul_rates_again)"
        rec.update({"matmul_rates_first": first, "matmul_rates_again": again, "matmul_rates": best})
        groups = tuple(g for g in LAYER_GROUPS if g not in rec.get("int8_options", {}).get("float_groups", []))
        for name, row in rec["engines"].items():
            row["rate"] = pct_of_rate(name, row["median_s"], rec["flops"], best, groups)
        print(f"[{rec['variant']}] rates again {again}", flush=True)
    doc["rates_remeasured"] = {"date": environment()["date"], "load_average": list(os.getloadavg())}
    write_json(out, doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="vit_small_patch16_224")
    parser.add_argument("--input-size", default="256x464", help="clip HxW")
    parser.add_argument("--persons", type=int, default=8)
    parser.add_argument("--calib-clips", type=int, default=32)
    parser.add_argument("--gate-clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    parser.add_argument("--float-groups", default=None,
                        help="linear-layer groups kept in float, comma-separated (qkv,proj,fc1,fc2; '' = none); "
                             "default: the library's")
    parser.add_argument("--method", choices=("absmax", "percentile"), default=None, help="default: the library's")
    parser.add_argument("--percentile", type=float, default=None)
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (made when missing)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8.json")
    parser.add_argument("--held-engines", choices=("all", "int8"), default="all",
                        help="the engines whose accuracy includes the held-back keyframes (int8: the int8 rows only)")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the previous --out's rows of variants not run now")
    parser.add_argument("--smoke", action="store_true", help="vit_micro at 64x96, 2 calibration clips")
    parser.add_argument("--rates-only", action="store_true",
                        help="measure the GEMM rates of --out's variants again and recompute the % of rate")
    parser.add_argument("--calibrate-only", nargs=7,
                        metavar=("ONNX", "DATA", "CLIPS", "HxW", "PERSONS", "THREADS", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calibrate_only:
        onnx_path, data, clips, size, persons, threads, opts = args.calibrate_only
        h, w = (int(v) for v in size.split("x"))
        print(json.dumps(calibrate_only(onnx_path, data, int(clips), (h, w), int(persons), int(threads), opts)))
        return 0
    torch.set_num_threads(args.threads)
    if args.rates_only:
        remeasure_rates(args.out, args.threads, max(args.repeats, 3))
        return 0
    if args.smoke:
        args.variants, args.input_size, args.calib_clips, args.gate_clips, args.repeats = "vit_micro", "64x96", 2, 2, 1
    h, w = (int(v) for v in args.input_size.split("x"))
    variants = list(filter(None, args.variants.split(",")))
    kept: list[dict[str, Any]] = []
    if args.keep_others and args.out.is_file():
        previous = json.loads(args.out.read_text())
        origin = {"date": previous.get("environment", {}).get("date"), "command": previous.get("command"),
                  "git_commit": previous.get("environment", {}).get("git_commit")}
        kept = [{**r, "kept_from": r.get("kept_from", origin)} for r in previous.get("results", [])
                if r.get("variant") not in variants]
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp:
        data = make_data(args.data or Path(tmp) / "data", (h, w), args.smoke)
        results: list[dict[str, Any]] = []
        for variant in variants:
            results.append(bench_variant(variant, (h, w), args, data, Path(tmp)))
            doc = {"benchmark": "int8", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                   "results": kept + results, "cpu": cpu_record(), "environment": environment()}
            write_json(args.out, doc)  # after each variant: a later one that runs out of time keeps the first
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
