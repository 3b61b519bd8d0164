"""CLI skeleton: --help, --version, info, convert, doctor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vmaedet.cli.main import main

VMAEDET = [sys.executable, "-m", "vmaedet.cli.main"]


def test_help_and_version() -> None:
    out = subprocess.run(VMAEDET + ["--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "info" in out.stdout and "doctor" in out.stdout
    out = subprocess.run(VMAEDET + ["--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().startswith("vmaedet ")


def test_info_and_convert(tmp_path: Path, fixtures_dir: Path, capsys) -> None:
    src = fixtures_dir / "seed-parity-tiny" / "checkpoint_full_layout.pth"
    assert main(["info", str(src)]) == 0
    assert "vit_seed_tiny" in capsys.readouterr().out
    dst = tmp_path / "m.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    assert dst.exists()
    assert main(["convert", str(src), str(dst)]) == 2  # exists without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(dst), "--force"]) == 0  # the old spelling still works


def test_info_missing_file_is_clean_error() -> None:
    out = subprocess.run(VMAEDET + ["info", "/nonexistent/x.pth"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "checkpoint not found" in out.stderr and "Traceback" not in out.stderr


def test_doctor_truthful() -> None:
    out = subprocess.run(VMAEDET + ["doctor", "--json"], capture_output=True, text=True)
    assert out.returncode == 0
    rows = {r["component"]: r for r in json.loads(out.stdout)}
    import torch

    assert (rows["CUDA GPU"]["status"] == "ok") == torch.cuda.is_available()
    try:
        import tensorrt  # noqa: F401
        has_trt = True
    except Exception:
        has_trt = False
    if not has_trt:
        assert rows["TensorRT"]["status"] == "missing" and "not importable" in rows["TensorRT"]["detail"]
    assert "libx264" in rows["PyAV"]["detail"]
