#!/usr/bin/env bash
# Run every benchmark on this machine and refresh benchmarks/results/*.json (+ the bench plot).
# Takes about 10-15 minutes on a 2-core CPU; run it on a quiet machine and note the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
uptime
$PY -m vmaedet.cli.main bench --engines torch,onnxruntime,tensorrt --precision fp32,bf16 \
    --persons 1,8,32 --out benchmarks/results/bench.json
$PY benchmarks/bench_engines.py
$PY benchmarks/bench_stream.py
$PY benchmarks/bench_roi_align.py
$PY benchmarks/bench_data.py
$PY benchmarks/bench_detector.py --iters 20
$PY benchmarks/bench_eval.py
$PY benchmarks/bench_train.py
$PY benchmarks/bench_tiny_learning.py
uptime
