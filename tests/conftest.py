"""Shared fixtures and markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Reference outputs the parity tests compare against, kept in the repository (tests/fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _has_tensorrt() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"TensorRT is not importable here ({type(exc).__name__}: {exc})"
    if not _has_cuda():
        return False, "TensorRT imports but no CUDA GPU is present"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = _has_cuda()
    trt_ok, trt_why = _has_tensorrt()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is present on this machine"))
        if "trt" in item.keywords and not trt_ok:
            item.add_marker(pytest.mark.skip(reason=trt_why))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures``; a missing folder fails the test (the fixtures ship with the repository)."""
    if not FIXTURES.is_dir():
        pytest.fail(f"test fixtures not found at {FIXTURES}: they are part of the repository; restore tests/fixtures "
                    "(e.g. git checkout -- tests/fixtures)", pytrace=False)
    return FIXTURES
