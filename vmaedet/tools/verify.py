"""The parity ladder: the same inputs through a float64 reference and every engine.

Rungs: the PyTorch model in float64 (the reference) → torch fp32 → extra torch precisions
(``torch-bf16``, ``torch-fp16``) → each exported artifact through its engine (onnxruntime for
``.onnx``, TensorRT for ``.engine``/``.plan``).  Every rung is compared with the reference on
logits and on sigmoid scores; a rung fails when it exceeds its tolerance (for an artifact: the
tolerance recorded in its manifest at export).

Inputs are drawn at a realistic scale: clips are random uint8 RGB frames normalised exactly as
the seed does (so values span about −2.1…2.6), rois are random boxes inside the clip.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from vmaedet.data.transforms import MEAN_RGB, STD_RGB
from vmaedet.errors import CheckpointError, EngineError, VmaedetError

#: Default tolerances per torch precision (vs the float64 reference).
TORCH_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"logits_max_abs": 1e-4},
    "bf16": {"scores_max_abs": 5e-2},
    "fp16": {"scores_max_abs": 1e-2},
}


# -- inputs -----------------------------------------------------------------------------------
def random_clip(input_hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Random uint8 RGB frames normalised as the seed does: ``[1, 3, 16, H, W]`` float32."""
    h, w = input_hw
    frames = torch.randint(0, 256, (1, 3, 16, h, w), generator=generator).float()  # [1, 3, 16, H, W]
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1, 1)
    return (frames - mean) / std  # [1, 3, 16, H, W]


def random_rois(k: int, input_hw: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``k`` random boxes inside an H×W clip, at least 16 px on a side: ``[K, 5]`` float32."""
    h, w = input_hw
    u = torch.rand((k, 4), generator=generator)  # [K, 4]
    x1 = u[:, 0] * (w - 16)
    y1 = u[:, 1] * (h - 16)
    x2 = x1 + 16 + u[:, 2] * (w - 16 - x1)
    y2 = y1 + 16 + u[:, 3] * (h - 16 - y1)
    return torch.stack([torch.zeros(k), x1, y1, x2, y2], dim=1)  # [K, 5]


# -- statistics -------------------------------------------------------------------------------
def error_stats(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Errors of ``other`` vs ``reference`` logits ``[K, C]``.

    Returns max/mean |Δ logit|, max |Δ sigmoid score| and top-5 agreement (the mean over rois of
    |top-5 classes of reference ∩ top-5 of other| / 5; 1.0 when K = 0).
    """
    ref = reference.double()
    oth = other.double()
    if ref.shape != oth.shape:
        raise EngineError("outputs have different shapes", received=tuple(oth.shape), expected=tuple(ref.shape))
    if ref.numel() == 0:
        return {"max_abs_logit": 0.0, "mean_abs_logit": 0.0, "max_abs_score": 0.0, "top5_agreement": 1.0}
    diff = (ref - oth).abs()
    score_diff = (ref.sigmoid() - oth.sigmoid()).abs()
    k = min(5, ref.shape[1])
    top_ref = ref.topk(k, dim=1).indices  # [K, 5]
    top_oth = oth.topk(k, dim=1).indices  # [K, 5]
    overlap = (top_ref.unsqueeze(2) == top_oth.unsqueeze(1)).any(dim=2).sum(dim=1).double() / k  # [K]
    return {
        "max_abs_logit": float(diff.max()),
        "mean_abs_logit": float(diff.mean()),
        "max_abs_score": float(score_diff.max()),
        "top5_agreement": float(overlap.mean()),
    }


def merge_stats(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """Worst case over several comparisons (mean of means, min of agreements)."""
    if not stats:
        return error_stats(torch.zeros(0, 80), torch.zeros(0, 80))
    return {
        "max_abs_logit": max(s["max_abs_logit"] for s in stats),
        "mean_abs_logit": statistics.fmean(s["mean_abs_logit"] for s in stats),
        "max_abs_score": max(s["max_abs_score"] for s in stats),
        "top5_agreement": min(s["top5_agreement"] for s in stats),
    }


def within(stats: dict[str, float], tolerances: dict[str, float]) -> list[str]:
    """Violations of ``tolerances`` (keys ``logits_max_abs``, ``scores_max_abs``, ``top5_min``)."""
    bad = []
    if "logits_max_abs" in tolerances and stats["max_abs_logit"] > tolerances["logits_max_abs"]:
        bad.append(f"max |Δ logit| {stats['max_abs_logit']:.3g} > {tolerances['logits_max_abs']:.3g}")
    if "scores_max_abs" in tolerances and stats["max_abs_score"] > tolerances["scores_max_abs"]:
        bad.append(f"max |Δ score| {stats['max_abs_score']:.3g} > {tolerances['scores_max_abs']:.3g}")
    if "top5_min" in tolerances and stats["top5_agreement"] < tolerances["top5_min"]:
        bad.append(f"top-5 agreement {stats['top5_agreement']:.3f} < {tolerances['top5_min']:.3f}")
    return bad


# -- the ladder -------------------------------------------------------------------------------
@dataclass
class Rung:
    """One row of the ladder."""

    engine: str
    precision: str
    stats: dict[str, float]
    latency_ms: float
    tolerances: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "precision": self.precision, **self.stats, "latency_ms": self.latency_ms,
                "tolerances": self.tolerances, "ok": self.ok, "failures": self.failures}


@dataclass
class LadderInputs:
    """Shared inputs of one ladder run and the float64 reference logits."""

    clips: list[torch.Tensor]
    rois: list[torch.Tensor]
    reference: list[torch.Tensor]


def make_inputs(model: torch.nn.Module, input_hw: tuple[int, int], ks: Sequence[int], seed: int = 0) -> LadderInputs:
    """Random clips/rois (one clip per K) and their float64 reference logits."""
    gen = torch.Generator().manual_seed(seed)
    clips = [random_clip(input_hw, gen) for _ in ks]
    rois = [random_rois(k, input_hw, gen) for k in ks]
    ref_model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        reference = [ref_model(c.double(), r.double()) for c, r in zip(clips, rois)]  # [K, 80] float64
    return LadderInputs(clips, rois, reference)


def run_rung(engine: Any, label: str, inputs: LadderInputs, tolerances: dict[str, float], repeats: int = 1) -> Rung:
    """Run every input through ``engine`` (an :class:`~vmaedet.engines.Engine`) and compare."""
    stats, times = [], []
    for clip, rois, ref in zip(inputs.clips, inputs.rois, inputs.reference):
        out = engine.infer(clip, rois)  # warm-up and first measurement
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = engine.infer(clip, rois)  # [K, 80]
            times.append(time.perf_counter() - t0)
        stats.append(error_stats(ref, out))
    merged = merge_stats(stats)
    return Rung(label, engine.precision, merged, 1000 * statistics.median(times), tolerances, within(merged, tolerances))


def _artifact_engine(path: Path) -> tuple[str, Any]:
    """(engine name, engine) for an artifact, chosen by its manifest's format."""
    from vmaedet.engines import create_engine
    from vmaedet.artifacts import read_manifest

    fmt = read_manifest(path)["artifact"]["format"]
    name = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "engine": "tensorrt"}.get(fmt)
    if name is None:
        raise EngineError(f"unknown artifact format {fmt!r} in the manifest of {path}", expected="onnx or tensorrt")
    return name, create_engine(name, path)


def checkpoint_from_manifests(artifacts: Sequence[Path]) -> Path:
    """The checkpoint recorded at export (same path and sha256 in every manifest, file unchanged)."""
    from vmaedet.artifacts import read_manifest, sha256_file

    recorded = {(m.get("checkpoint") or {}).get("path"): (m.get("checkpoint") or {}).get("sha256")
                for m in (read_manifest(a) for a in artifacts)}
    if len(recorded) != 1 or None in recorded:
        raise CheckpointError(
            "cannot tell which checkpoint to verify against",
            received=f"checkpoints recorded in the manifests: {sorted(map(str, recorded))}",
            expected="artifacts exported from one checkpoint file",
            fix="pass --checkpoint CKPT",
        )
    (path_str, sha), = recorded.items()
    path = Path(path_str)
    if not path.exists():
        raise CheckpointError(f"the checkpoint recorded at export is gone: {path}", fix="pass --checkpoint CKPT")
    if sha256_file(path) != sha:
        raise CheckpointError(f"the checkpoint {path} changed since export (sha256 differs)",
                              fix="pass --checkpoint with the file used at export, or re-export")
    return path


def run_ladder(model: torch.nn.Module, artifacts: Sequence[Path] = (), torch_precisions: Sequence[str] = ("fp32",),
               input_hw: tuple[int, int] | None = None, ks: Sequence[int] = (1, 7), seed: int = 0,
               repeats: int = 1) -> list[Rung]:
    """Run the ladder and return one :class:`Rung` per engine (float64 reference excluded).

    Args:
        model: the detector (any dtype; copied for the float64 reference and the torch rungs).
        artifacts: exported artifacts with manifests; their geometry must agree.
        torch_precisions: torch engine precisions to include ("fp32" always first).
        input_hw: clip geometry when no artifact fixes it.
        ks: person counts, one random clip per entry (capped at the artifacts' max_persons).
    """
    from vmaedet.engines.torch_engine import TorchEngine
    from vmaedet.artifacts import read_manifest

    manifests = [read_manifest(a) for a in artifacts]
    geometries = {tuple(m["input"]["clip_hw"]) for m in manifests}
    if len(geometries) > 1:
        raise VmaedetError("the artifacts have different clip geometries", received=sorted(geometries),
                           fix="verify artifacts exported for one source size together")
    if geometries:
        hw = geometries.pop()
        if input_hw is not None and tuple(input_hw) != hw:
            raise VmaedetError("--input-size disagrees with the artifacts", received=input_hw, expected=hw)
        input_hw = hw  # type: ignore[assignment]
        cap = min(m["input"]["max_persons"] for m in manifests)
        ks = [min(k, cap) for k in ks]
    if input_hw is None:
        raise VmaedetError("no clip geometry given", fix="pass --input-size HxW or an artifact")
    inputs = make_inputs(model, input_hw, ks, seed)
    rungs = []
    for prec in dict.fromkeys(["fp32", *torch_precisions]):
        if prec not in TORCH_TOLERANCES:
            raise VmaedetError(f"unknown torch precision {prec!r}", expected=", ".join(TORCH_TOLERANCES))
        with TorchEngine(copy.deepcopy(model).float(), precision=prec) as eng:
            rungs.append(run_rung(eng, "torch", inputs, TORCH_TOLERANCES[prec], repeats))
    for i, (path, manifest) in enumerate(zip(artifacts, manifests), 1):
        name, eng = _artifact_engine(Path(path))
        with eng:
            rungs.append(run_rung(eng, f"{name} #{i}", inputs, dict(manifest["tolerances"]), repeats))
    return rungs
