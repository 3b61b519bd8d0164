"""Environment capture for benchmark JSON: CPU model, cores, GPU, versions, date, git commit.

Missing pieces are recorded as ``None`` rather than failing the benchmark.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout, for the git commit


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux) or platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


#: /proc/cpuinfo flags that mean native arithmetic in a reduced precision (AVX-512 BF16 / FP16, AMX tiles).
NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_flags() -> set[str] | None:
    """The CPU feature flags of /proc/cpuinfo; None where there is no such file (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def _git_commit() -> str | None:
    """The current commit of the repository (with ``-dirty`` when the tree has edits)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def module_version(module: str) -> str | None:
    """``module.__version__`` (``"installed"`` when it has none), or None when it cannot be imported."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return str(getattr(mod, "__version__", "installed"))


def _gpu() -> dict[str, Any] | None:
    """Name, memory and CUDA version of GPU 0 when torch sees one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
    }


def environment() -> dict[str, Any]:
    """Everything needed to interpret a benchmark number, as a JSON-serialisable dict."""
    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch_threads,
        "gpu": _gpu(),
        "python": platform.python_version(),
        "torch": module_version("torch"),
        "torchvision": module_version("torchvision"),
        "onnx": module_version("onnx"),
        "onnxruntime": module_version("onnxruntime"),
        "tensorrt": module_version("tensorrt"),
        "vmaedet": module_version("vmaedet"),
        "git_commit": _git_commit(),
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``environment`` if absent) as indented JSON, creating parent dirs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload.setdefault("environment", environment())
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


