"""INT8 on the CPU: torch fp32 vs onnxruntime fp32 / int8 (QDQ) vs OpenVINO fp32 / int8, one model at a time.

For each variant (random weights, the head rescaled so logits have std ≈ 3 and a N(0, 1) bias, like
``benchmarks/gpu_check.py::realistic_head``) at one clip geometry with ``--persons`` rois:

* exports the fp32 ONNX (parity-gated as always) and the int8 QDQ ONNX (``export_onnx(precision=
  "int8")``: calibrated on ``--calib-clips`` keyframes of a synthetic AVA-format dataset at the source
  size that gives the geometry, gated on held-back keyframes: top-5 agreement, mean |Δ score|, and
  the frame-mAP difference);
* measures the calibration alone in a fresh process (time, and peak RSS above the process's RSS once
  the graph is loaded: what calibrating one clip at a time costs);
* times ``Engine.infer`` (median of ``--repeats`` after one warm-up, ``vmaedet.tools.timing``) for
  torch fp32, onnxruntime fp32, onnxruntime int8, OpenVINO fp32 and OpenVINO int8;
* compares every engine with torch fp32: top-5 agreement per person, mean / max |Δ score| (pooled over
  the timed input and the held-back keyframes).

Writes ``--out`` (default ``benchmarks/results/int8.json``) with ``vmaedet.envinfo.environment()`` (CPU
model, flags, versions).  ``--smoke``: vit_micro at 64×96, 2 clips — a check that the script runs.

    OMP_NUM_THREADS=2 python benchmarks/bench_int8.py --variants vit_small_patch16_224,vit_base_patch16_224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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


def calibrate_only(onnx_path: str, data: str, calib_clips: int, hw: tuple[int, int], persons: int,
                   threads: int) -> dict[str, Any]:
    """In this (fresh) process: load the fp32 graph, then calibrate; RSS before and the peak after."""
    import onnx

    from vmaedet.export.int8 import calibrate, plan_clips, select_targets

    from vmaedet.engines.onnxruntime_engine import create_session

    graph = onnx.load(onnx_path)
    calib, _ = plan_clips(data, calib_clips=calib_clips, gate_clips=1, input_hw=hw, short_side=256,
                          max_persons=persons)
    selection = select_targets(graph)
    rss0, hwm0 = vm_status("VmRSS"), vm_status("VmHWM")
    # the baseline: one plain fp32 inference of one clip (a session of the same graph, no extra outputs)
    session = create_session(onnx_path, device="cpu", threads=threads)
    clip, rois = next(iter(calib))
    session.run(["logits"], {"clip": clip, "rois": rois})
    del session
    hwm_infer = vm_status("VmHWM")
    t0 = time.perf_counter()
    cal = calibrate(graph, selection.activation_tensors(), calib, threads=threads)
    return {**cal.to_dict(), "wall_s": round(time.perf_counter() - t0, 2), "rss_before_mib": round(rss0, 1),
            "hwm_before_mib": round(hwm0, 1), "peak_above_loaded_mib": round(cal.peak_rss_mib - rss0, 1),
            "plain_inference_peak_above_loaded_mib": round(hwm_infer - rss0, 1),
            "note": "VmHWM is the process peak: calibration adds nothing above one plain inference when the two peaks "
                    "are equal",
            "graph_bytes": os.path.getsize(onnx_path)}


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


def bench_variant(variant: str, hw: tuple[int, int], args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    from vmaedet.engines import open_engine
    from vmaedet.errors import ExportError
    from vmaedet.export.int8 import plan_clips
    from vmaedet.export.onnx import export_onnx
    from vmaedet.export.parity import error_stats, pooled_stats, random_clip, random_rois
    from vmaedet.models import create_detector
    from vmaedet.tools.timing import time_calls

    say = lambda msg: print(f"[{variant}] {msg}", flush=True)  # noqa: E731
    torch.manual_seed(0)
    model = create_detector(variant).eval()
    g = torch.Generator().manual_seed(0)
    clip, rois = random_clip(hw, g), random_rois(args.persons, hw, g)  # [1, 3, 16, H, W], [K, 5]
    realistic_head(model, clip, rois)
    rec: dict[str, Any] = {"variant": variant, "input_hw": list(hw), "persons": args.persons, "threads": args.threads}
    t0 = time.perf_counter()
    fp32 = export_onnx(model, work / f"{variant}_fp32.onnx", input_hw=hw, max_persons=max(args.persons, 8)).path
    rec["export_fp32_s"] = round(time.perf_counter() - t0, 1)
    say(f"fp32 export {rec['export_fp32_s']} s")
    t0 = time.perf_counter()
    try:
        result = export_onnx(model, work / f"{variant}_int8.onnx", input_hw=hw, max_persons=max(args.persons, 8),
                             precision="int8", calib=data, calib_clips=args.calib_clips, gate_clips=args.gate_clips)
    except ExportError as exc:  # the gates refused it: a result too (the figures are in the message)
        rec["export_int8_s"] = round(time.perf_counter() - t0, 1)
        rec["int8_refused"] = {"message": exc.what, "received": str(exc.received), "expected": str(exc.expected)}
        say(f"int8 export refused by its gates: {exc.received}")
        return rec
    rec["export_int8_s"] = round(time.perf_counter() - t0, 1)
    quant = result.manifest.quantization
    rec["int8_manifest"] = {"quantized": len(quant.quantized), "excluded": dict(quant.excluded),
                            "calibration": dict(quant.calibration), "gates": dict(quant.gates)}
    say(f"int8 export {rec['export_int8_s']} s; gates {dict(quant.gates)}")
    out = subprocess.run([sys.executable, __file__, "--calibrate-only", str(fp32), str(data), str(args.calib_clips),
                          f"{hw[0]}x{hw[1]}", str(args.persons), str(args.threads)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if out.returncode != 0:
        raise RuntimeError(f"calibration subprocess failed:\n{out.stderr[-2000:]}")
    rec["calibration_fresh_process"] = json.loads(out.stdout.strip().splitlines()[-1])
    say(f"calibration alone: {rec['calibration_fresh_process']}")

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
        outs = [eng.infer(torch.from_numpy(c), torch.from_numpy(r)) for c, r in held_inputs]
        timed = error_stats(ref_timed, timing.result)
        pooled = pooled_stats([ref_timed, *ref_held], [timing.result, *outs])
        eng.close()
        rows[name] = {"median_s": round(timing.p50_s, 3), "times_s": [round(t, 3) for t in timing.times_s],
                      "load_s": round(load_s, 2),
                      "vs_torch_fp32": {k: pooled[k] for k in ("top5_agreement", "mean_abs_score", "max_abs_score",
                                                                "max_abs_logit")},
                      "vs_torch_fp32_timed_input": {k: timed[k] for k in ("top5_agreement", "mean_abs_score",
                                                                          "max_abs_score")}}
        say(f"{name}: {rows[name]['median_s']} s/clip; {rows[name]['vs_torch_fp32']}")
    rec["engines"] = rows
    rec["accuracy_inputs"] = (f"the timed input (random clip, {args.persons} rois) + {len(held_inputs)} held-back "
                              "synthetic keyframes, pooled over persons")
    base = rows["onnxruntime fp32"]["median_s"]
    rec["speedup_vs_onnxruntime_fp32"] = {k: round(base / v["median_s"], 2) for k, v in rows.items()}
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="vit_small_patch16_224")
    parser.add_argument("--input-size", default="256x464", help="clip HxW")
    parser.add_argument("--persons", type=int, default=8)
    parser.add_argument("--calib-clips", type=int, default=32)
    parser.add_argument("--gate-clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (made when missing)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8.json")
    parser.add_argument("--smoke", action="store_true", help="vit_micro at 64x96, 2 calibration clips")
    parser.add_argument("--calibrate-only", nargs=6, metavar=("ONNX", "DATA", "CLIPS", "HxW", "PERSONS", "THREADS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calibrate_only:
        onnx_path, data, clips, size, persons, threads = args.calibrate_only
        h, w = (int(v) for v in size.split("x"))
        print(json.dumps(calibrate_only(onnx_path, data, int(clips), (h, w), int(persons), int(threads))))
        return 0
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.variants, args.input_size, args.calib_clips, args.gate_clips, args.repeats = "vit_micro", "64x96", 2, 2, 1
    h, w = (int(v) for v in args.input_size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp:
        data = make_data(args.data or Path(tmp) / "data", (h, w), args.smoke)
        results = []
        for variant in filter(None, args.variants.split(",")):
            results.append(bench_variant(variant, (h, w), args, data, Path(tmp)))
            doc = {"benchmark": "int8", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                   "results": results, "cpu": cpu_record(), "environment": environment()}
            write_json(args.out, doc)  # after each variant: a later one that runs out of time keeps the first
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
