"""The parity ladder: the same inputs through a float64 reference and every engine.

Rungs: the PyTorch model in float64 (the reference) → torch fp32 → extra torch precisions
(``torch-bf16``, ``torch-fp16``) → each exported artifact through its engine (onnxruntime for
``.onnx``, TensorRT for ``.engine``/``.plan``) → each artifact again through the other engines
asked for that run its format (``artifact_engines``: OpenVINO for ``.onnx``, in fp32 or bf16).
Every rung is compared with the reference on logits and on sigmoid scores; a rung fails when it
exceeds its gates (:func:`vmaedet.export.parity.rung_gates`): fp32 rungs the 1e-4 logit bound
(an fp32 artifact: the tolerance recorded in its manifest at export); lower-precision rungs (torch
bf16/fp16, OpenVINO bf16, fp16 and int8 artifacts) the task gates — top-5 agreement per person
≥ 0.95 and mean |Δ score| ≤ 5e-3, both pooled over every person of every clip as at export, with
the max |Δ score| reported (an artifact's recorded bounds, e.g. fp16's 1e-2 on the max, are kept
on top; the frame-mAP gate needs labelled data: it is checked at export, not here).  The figures
are against the float64 reference, which torch fp32 matches to 1e-4 on logits.  An int8 artifact
runs on every engine of its format in int8 (OpenVINO: int8 layers, the rest in f32), whatever
precision the extra rung names.

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

from vmaedet.constants import PRECISIONS
from vmaedet.errors import CheckpointError, VmaedetError
from vmaedet.export.parity import (TOLERANCES, error_stats, merge_stats, random_clip, random_rois, rung_gates,
                                   task_stats, within)

__all__ = ["LadderInputs", "Rung", "TOLERANCES", "checkpoint_from_manifests", "error_stats", "make_inputs",
           "merge_stats", "random_clip", "random_rois", "rung_gates", "run_ladder", "run_rung", "within"]

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
    """Run every input through ``engine`` (an :class:`~vmaedet.engines.Engine`) and compare.

    The figures (:func:`~vmaedet.export.parity.task_stats`): max |Δ logit| and max |Δ score| the
    worst over the clips; top-5 agreement and mean |Δ score| pooled over every person.  A figure
    beyond ``tolerances`` is a failure, in words with the figure (``Rung.failures``).
    """
    outs, times = [], []
    for clip, rois in zip(inputs.clips, inputs.rois):
        out = engine.infer(clip, rois)  # warm-up and first measurement
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = engine.infer(clip, rois)  # [K, 80]
            times.append(time.perf_counter() - t0)
        outs.append(out)
    merged = task_stats(inputs.reference, outs)
    return Rung(label, engine.precision, merged, 1000 * statistics.median(times), dict(tolerances),
                within(merged, tolerances))


def checkpoint_from_manifests(artifacts: Sequence[Path]) -> Path:
    """The checkpoint recorded at export (same path and sha256 in every manifest, file unchanged)."""
    from vmaedet.artifacts import read_manifest, sha256_file

    refs = [read_manifest(a).checkpoint for a in artifacts]
    recorded = {(r.path if r else None): (r.sha256 if r else None) for r in refs}
    if len(recorded) != 1 or None in recorded:
        raise CheckpointError(
            "cannot tell which checkpoint to verify against",
            received=f"checkpoints recorded in the manifests: {sorted(map(str, recorded))}",
            expected="artifacts exported from one checkpoint file",
            fix="name the checkpoint to compare with (checkpoint=CKPT)",
        )
    (path_str, sha), = recorded.items()
    path = Path(path_str)
    if not path.exists():
        raise CheckpointError(f"the checkpoint recorded at export is gone: {path}",
                              fix="name the checkpoint to compare with (checkpoint=CKPT)")
    if sha256_file(path) != sha:
        raise CheckpointError(f"the checkpoint {path} changed since export (sha256 differs)",
                              fix="name the checkpoint file used at export (checkpoint=CKPT), or re-export")
    return path


def run_ladder(model: torch.nn.Module, artifacts: Sequence[Path] = (), torch_precisions: Sequence[str] = ("fp32",),
               input_hw: tuple[int, int] | None = None, ks: Sequence[int] = (1, 7), seed: int = 0,
               repeats: int = 1, artifact_engines: Sequence[tuple[str, str]] = ()) -> list[Rung]:
    """Run the ladder and return one :class:`Rung` per engine (float64 reference excluded).

    Args:
        model: the detector (any dtype; copied for the float64 reference and the torch rungs).
        artifacts: exported artifacts with manifests; their geometry must agree.
        torch_precisions: torch engine precisions to include ("fp32" always first).
        input_hw: clip geometry when no artifact fixes it.
        ks: person counts, one random clip per entry (capped at the artifacts' max_persons).
        artifact_engines: further (engine, precision) rungs for every artifact of a format the engine
            runs (:data:`~vmaedet.artifacts.FORMAT_ENGINES`), e.g. ``[("openvino", "fp32")]``; a rung
            in the artifact's precision is held to its recorded tolerances (plus the task gates
            below fp32), another precision to that precision's gates (:func:`rung_gates`).

    Raises:
        VmaedetError: geometries disagree, no geometry, an unknown precision, or an artifact engine
            without an artifact it can run.
        BackendUnavailable: an artifact engine that is not installed or cannot run here (e.g. bf16
            without native bf16).
    """
    from vmaedet.artifacts import FORMAT_ENGINES, read_manifest
    from vmaedet.engines import open_engine

    manifests = [read_manifest(a) for a in artifacts]
    for engine, prec in artifact_engines:
        formats = [fmt for fmt, engines in FORMAT_ENGINES.items() if engine in engines]
        if not any(m.artifact.format in formats for m in manifests):
            raise VmaedetError(f"the {engine} rung runs an exported artifact and none of the artifacts is one it runs",
                               received=[m.artifact.format for m in manifests] or "no artifact",
                               expected=f"an artifact of format {' or '.join(formats) or '(none: unknown engine)'}",
                               fix="pass the artifact, e.g. the one written by `vmaedet export CKPT --format onnx`")
        if prec not in PRECISIONS:
            raise VmaedetError(f"unknown {engine} precision {prec!r}", received=prec, expected=", ".join(PRECISIONS))
    geometries = {tuple(m.input.clip_hw) for m in manifests}
    if len(geometries) > 1:
        raise VmaedetError("the artifacts have different clip geometries", received=sorted(geometries),
                           fix="verify artifacts exported for one source size together")
    if geometries:
        hw = geometries.pop()
        if input_hw is not None and tuple(input_hw) != hw:
            raise VmaedetError("the clip geometry asked for (input_hw) disagrees with the artifacts",
                               received=input_hw, expected=hw, fix="leave input_hw out: the artifacts fix it")
        input_hw = hw  # type: ignore[assignment]
        cap = min(m.input.max_persons for m in manifests)
        ks = [min(k, cap) for k in ks]
    if input_hw is None:
        raise VmaedetError("no clip geometry given", expected="input_hw=(H, W) or an artifact",
                           fix="give the clip geometry (input_hw) or an artifact")
    inputs = make_inputs(model, input_hw, ks, seed)
    rungs = []
    for prec in dict.fromkeys(["fp32", *torch_precisions]):
        if prec not in PRECISIONS:
            raise VmaedetError(f"unknown torch precision {prec!r}", received=prec, expected=", ".join(PRECISIONS))
        with open_engine(copy.deepcopy(model).float(), "torch", precision=prec) as eng:
            rungs.append(run_rung(eng, "torch", inputs, rung_gates(prec), repeats))
    for i, (path, manifest) in enumerate(zip(artifacts, manifests), 1):
        with open_engine(Path(path)) as eng:  # the engine the artifact's manifest names
            gates = rung_gates(manifest.precision, manifest.tolerances)
            rungs.append(run_rung(eng, f"{eng.name} #{i}", inputs, gates, repeats))
        done: set[tuple[str, str]] = set()
        for engine, prec in artifact_engines:
            if engine not in FORMAT_ENGINES.get(manifest.artifact.format, ()):
                continue
            if manifest.precision == "int8":  # an int8 export runs in int8 on every engine of its format
                prec = "int8"
            if (engine, prec) in done:
                continue
            done.add((engine, prec))
            tolerances = rung_gates(prec, manifest.tolerances if prec == manifest.precision else None)
            with open_engine(Path(path), engine, precision=prec) as eng:
                rungs.append(run_rung(eng, f"{engine} #{i}", inputs, tolerances, repeats))
    return rungs
