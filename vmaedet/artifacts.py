"""The sidecar manifest every exported artifact carries (``<artifact>.json``), typed.

The manifest is the artifact's contract: clip geometry, clip length and stride, normalisation,
label names, opset, RoIAlign mode, precision, library versions, the artifact's sha256, the
tolerances it was verified to, and where its weights came from.  On disk it is plain JSON (never
evaluated); in the package it is an :class:`ArtifactManifest`, a frozen tree of dataclasses read
by attribute (``manifest.input.clip_hw``, ``manifest.tensorrt.gpu.name``), built once by
:func:`read_manifest` / :meth:`ArtifactManifest.from_dict`, which refuse a manifest of another
format or one missing a field engines need.

This module is the one home of the engine-compatibility checks that need no backend: format
version (:func:`read_manifest`), artifact bytes (:func:`check_artifact_hash`), geometry / precision /
person capacity (:func:`check_expectations`) and artifact format (:func:`open_artifact`).  The
TensorRT version / GPU check lives with the TensorRT runtime (``vmaedet.engines.trt_runtime``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE, NUM_CLASSES, SHORT_SIDE
from vmaedet.errors import EngineError

#: Bumped when a field changes meaning; engines refuse other formats.
MANIFEST_FORMAT = "vmaedet-artifact-1"


def manifest_path(artifact: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an artifact depends on (None when not installed)."""
    from vmaedet.envinfo import module_version as _version

    return {"python": platform.python_version(),
            **{name: _version(name) for name in ("vmaedet", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt")}}


# -- the typed manifest ---------------------------------------------------------------------------
_OMIT = {"omit_if_none": True}  # field metadata: leave the key out of the JSON when the value is None


def _json(value: Any) -> Any:
    """Dataclasses → dicts (keys in field order; ``omit_if_none`` fields dropped when None), tuples → lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            if f.name == "extra":
                continue
            v = getattr(value, f.name)
            if v is None and f.metadata.get("omit_if_none"):
                continue
            out[f.metadata.get("key", f.name)] = _json(v)
        out.update(copy.deepcopy(dict(getattr(value, "extra", None) or {})))
        return out
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


class _Reader:
    """Reads one JSON object of a manifest with errors naming the manifest and the missing key."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            self.fail(f"is not an object ({type(data).__name__})")
        self.data = data

    def fail(self, problem: str) -> None:
        raise EngineError(f"the manifest {self.source} is not a valid artifact manifest: {self.where or 'the top level'} "
                          f"{problem}", expected=f"a manifest written by `vmaedet export` ({MANIFEST_FORMAT})",
                          fix="re-export the model with this vmaedet version")

    def req(self, key: str, kind: type | tuple[type, ...] = object) -> Any:
        if key not in self.data:
            self.fail(f"has no {key!r}")
        return self._check(key, self.data[key], kind)

    def opt(self, key: str, kind: type | tuple[type, ...] = object, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else self._check(key, value, kind)

    def _check(self, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(f"{key!r} is a boolean")
        if not isinstance(value, kind):
            self.fail(f"{key!r} has the wrong type ({type(value).__name__})")
        return value

    def child(self, key: str, required: bool = True) -> "_Reader | None":
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(f"has no {key!r}")
            return None
        return _Reader(self.data[key], f"{self.where}.{key}" if self.where else key, self.source)

    def ints(self, key: str, n: int | None = None, required: bool = True) -> tuple[int, ...] | None:
        value = self.req(key, (list, tuple)) if required else self.opt(key, (list, tuple))
        if value is None:
            return None
        if (n is not None and len(value) != n) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            self.fail(f"{key!r} is not a list of {n or 'some'} integers ({value!r})")
        return tuple(int(v) for v in value)

    def rest(self, known: Sequence[str]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.data.items() if k not in known}


@dataclass(frozen=True)
class ExternalData:
    """The external-data file of an ONNX graph over 2 GB (beside the artifact)."""

    file: str
    sha256: str


@dataclass(frozen=True)
class ArtifactFile:
    """The artifact file itself: name, kind (``"onnx"`` or ``"tensorrt"``), bytes and sha256.

    A TensorRT engine also records the ONNX file it was built from (``onnx_file``, ``onnx_sha256``).
    """

    file: str
    format: str
    sha256: str
    bytes: int | None = field(default=None, metadata=_OMIT)
    external_data: ExternalData | None = None
    onnx_file: str | None = field(default=None, metadata=_OMIT)
    onnx_sha256: str | None = field(default=None, metadata=_OMIT)

    @classmethod
    def _read(cls, r: _Reader) -> "ArtifactFile":
        ext = r.child("external_data", required=False)
        return cls(file=r.req("file", str), format=r.req("format", str), sha256=r.req("sha256", str),
                   bytes=r.opt("bytes", int),
                   external_data=ExternalData(ext.req("file", str), ext.req("sha256", str)) if ext else None,
                   onnx_file=r.opt("onnx_file", str), onnx_sha256=r.opt("onnx_sha256", str))


def _artifact_json(a: ArtifactFile) -> dict[str, Any]:
    out = _json(a)
    if a.external_data is None and a.format != "onnx":  # only ONNX artifacts record (a missing) external data
        out.pop("external_data")
    return out


@dataclass(frozen=True)
class TensorNames:
    """Graph names of the clip input, the rois input and the logits output."""

    clip: str = "clip"
    rois: str = "rois"
    output: str = "logits"

    def as_dict(self) -> dict[str, str]:
        """``{"clip": …, "rois": …, "output": …}``."""
        return {"clip": self.clip, "rois": self.rois, "output": self.output}


@dataclass(frozen=True)
class Geometry:
    """The manifest's ``input``: what the artifact takes (1 … ``max_batch`` clips of a fixed geometry,
    up to ``max_persons`` rois per call in all).

    ``clip_shape`` is the shape of one clip (``[1, 3, 16, H, W]``); an artifact exported with
    ``max_batch`` > 1 has a dynamic batch axis on ``clip`` and takes ``[B, 3, 16, H, W]`` for any
    1 ≤ B ≤ ``max_batch``.  ``max_batch`` is absent from manifests written before batching existed:
    they read as 1.
    """

    names: TensorNames
    clip_shape: tuple[int, ...]  #: [1, 3, 16, H, W] (one clip; the batch axis is dynamic when max_batch > 1)
    clip_hw: tuple[int, int]  #: (H, W), multiples of 16
    max_persons: int  #: the largest K of one call (over all its clips)
    clip_len: int = field(default=CLIP_LEN, metadata=_OMIT)
    frame_stride: int = field(default=FRAME_STRIDE, metadata=_OMIT)
    source_wh: tuple[int, int] | None = None
    resized_wh: tuple[int, int] | None = None
    short_side: int = SHORT_SIDE
    rois: str | None = field(default=None, metadata=_OMIT)  #: a description of the rois layout
    max_batch: int = 1  #: the largest number of clips B of one call
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _read(cls, r: _Reader) -> "Geometry":
        names = r.child("names")
        hw = r.ints("clip_hw", 2)
        return cls(names=TensorNames(names.req("clip", str), names.req("rois", str), names.req("output", str)),  # type: ignore[union-attr]
                   clip_shape=r.ints("clip_shape"), clip_hw=hw, max_persons=r.req("max_persons", int),  # type: ignore[arg-type]
                   clip_len=r.opt("clip_len", int, CLIP_LEN), frame_stride=r.opt("frame_stride", int, FRAME_STRIDE),
                   source_wh=r.ints("source_wh", 2, required=False), resized_wh=r.ints("resized_wh", 2, required=False),  # type: ignore[arg-type]
                   short_side=r.opt("short_side", int, SHORT_SIDE), rois=r.opt("rois", str),
                   max_batch=_positive(r, "max_batch"),
                   extra=r.rest(("names", "clip_shape", "clip_hw", "clip_len", "frame_stride", "source_wh", "resized_wh",
                                 "max_persons", "max_batch", "short_side", "rois")))


def _positive(r: _Reader, key: str, default: int = 1) -> int:
    """An optional integer ≥ 1 (``default`` when absent)."""
    value = r.opt(key, int, default)
    if value < 1:
        r.fail(f"{key!r} must be at least 1 ({value!r})")
    return int(value)


def _geometry_json(g: Geometry, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    out = _json(g)
    order = ["names", "clip_shape", "clip_hw", "clip_len", "frame_stride", "source_wh", "resized_wh", "max_persons",
             "max_batch", "short_side", "rois"]
    out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
    if raw is not None:  # keys a hand-written (older, minimal) manifest did not have stay absent
        for key in ("clip_len", "frame_stride", "source_wh", "resized_wh", "short_side", "max_batch"):
            if key not in raw:
                out.pop(key, None)
    return out


@dataclass(frozen=True)
class ModelInfo:
    """Which detector the artifact holds."""

    variant: str | None
    embed_dim: int
    depth: int
    num_heads: int
    num_classes: int = NUM_CLASSES

    @classmethod
    def _read(cls, r: _Reader) -> "ModelInfo":
        return cls(r.opt("variant", str), r.req("embed_dim", int), r.req("depth", int), r.req("num_heads", int),
                   r.opt("num_classes", int, NUM_CLASSES))


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint file the weights came from (absolute path at export, sha256)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ParityCase:
    """Errors of the artifact vs PyTorch fp32 on random clips with ``k`` rois in all.

    ``batch``: the number of clips of the call (absent = 1); a batched case is compared with
    PyTorch run one clip at a time.
    """

    k: int
    max_abs_logit: float
    mean_abs_logit: float
    max_abs_score: float
    top5_agreement: float
    batch: int | None = field(default=None, metadata=_OMIT)
    mean_abs_score: float | None = field(default=None, metadata=_OMIT)  #: absent in manifests before the task gates


@dataclass(frozen=True)
class Parity:
    """The manifest's ``verification``: the export's parity gate, per K and worst case."""

    max_abs_logit: float
    mean_abs_logit: float
    max_abs_score: float
    top5_agreement: float
    cases: tuple[ParityCase, ...] = ()
    reference: str | None = None
    runtime: str | None = None
    inputs: str | None = None
    mean_abs_score: float | None = None  #: mean |Δ sigmoid score| (absent in manifests before the task gates)

    @classmethod
    def _read(cls, r: _Reader) -> "Parity":
        num = (int, float)
        cases = []
        for i, c in enumerate(r.opt("cases", list, [])):
            cr = _Reader(c, f"{r.where}.cases[{i}]", r.source)
            mean_score = cr.opt("mean_abs_score", num)
            cases.append(ParityCase(cr.req("k", int), float(cr.req("max_abs_logit", num)),
                                    float(cr.req("mean_abs_logit", num)), float(cr.req("max_abs_score", num)),
                                    float(cr.req("top5_agreement", num)), cr.opt("batch", int),
                                    None if mean_score is None else float(mean_score)))
        mean_score = r.opt("mean_abs_score", num)
        return cls(float(r.req("max_abs_logit", num)), float(r.req("mean_abs_logit", num)),
                   float(r.req("max_abs_score", num)), float(r.req("top5_agreement", num)), tuple(cases),
                   r.opt("reference", str), r.opt("runtime", str), r.opt("inputs", str),
                   None if mean_score is None else float(mean_score))

    def stats(self) -> dict[str, float]:
        """The worst-case statistics (the keys of :func:`vmaedet.export.parity.error_stats`)."""
        return {"max_abs_logit": self.max_abs_logit, "mean_abs_logit": self.mean_abs_logit,
                "max_abs_score": self.max_abs_score, "top5_agreement": self.top5_agreement}


def _parity_json(p: Parity) -> dict[str, Any]:
    head = {k: v for k, v in (("reference", p.reference), ("runtime", p.runtime), ("inputs", p.inputs)) if v is not None}
    tail = {"mean_abs_score": p.mean_abs_score} if p.mean_abs_score is not None else {}
    return {**head, "cases": [_json(c) for c in p.cases], **p.stats(), **tail}


@dataclass(frozen=True)
class QuantizationInfo:
    """The manifest's ``quantization`` (int8 artifacts): how the graph was quantized and what it passed.

    ``scheme`` names the graph form (``"QDQ"``: QuantizeLinear → DequantizeLinear pairs on
    activations, DequantizeLinear on int8 weights, what onnxruntime, OpenVINO and TensorRT's
    explicit quantization read); ``weights`` / ``activations`` the granularity and symmetry;
    ``quantized`` / ``excluded`` the node names (excluded: name → reason); ``calibration`` the
    method, clip count, data root and split, memory and time; ``gates`` the task-gate figures on
    the held-back clips and whether each passed.
    """

    scheme: str
    library: str
    weights: str
    activations: str
    quantized: tuple[str, ...] = ()
    quantized_op_types: tuple[str, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)
    gates: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "manifest") -> "QuantizationInfo":
        """Read a ``quantization`` section (scheme, library, weights, activations required)."""
        r = _Reader(data, "quantization", source)
        names = r.opt("quantized", list, [])
        types = r.opt("quantized_op_types", list, [])
        if not all(isinstance(n, str) for n in [*names, *types]):
            r.fail("'quantized' / 'quantized_op_types' are not lists of names")
        return cls(scheme=r.req("scheme", str), library=r.req("library", str), weights=r.req("weights", str),
                   activations=r.req("activations", str), quantized=tuple(names), quantized_op_types=tuple(types),
                   excluded=dict(r.opt("excluded", Mapping, {})), calibration=copy.deepcopy(dict(r.opt("calibration", Mapping, {}))),
                   gates=copy.deepcopy(dict(r.opt("gates", Mapping, {}))),
                   extra=r.rest(("scheme", "library", "weights", "activations", "quantized", "quantized_op_types",
                                 "excluded", "calibration", "gates")))


@dataclass(frozen=True)
class GpuIdentity:
    """A CUDA device as an engine is bound to it: name and compute capability (``"9.0"``)."""

    name: str | None
    compute_capability: str | None


@dataclass(frozen=True)
class TrtRoiAlign:
    """How the engine computes RoIAlign: ``mode`` plugin/builtin, and for the plugin AOT or JIT."""

    mode: str | None = None
    plugin: str | None = field(default=None, metadata=_OMIT)
    plugin_version: str | None = field(default=None, metadata=_OMIT)
    aot: bool | None = None
    implementation: str | None = field(default=None, metadata=_OMIT)

    @property
    def kind(self) -> str:
        """``"aot"``, ``"jit"`` or ``"builtin"`` (older manifests: from ``aot``; unknown → JIT, the safe side)."""
        if self.mode != "plugin":
            return "builtin"
        if self.implementation in ("aot", "jit"):
            return self.implementation
        return "aot" if self.aot is True else "jit"


@dataclass(frozen=True)
class TensorRTInfo:
    """The manifest's ``tensorrt``: what binds a plan to a TensorRT version and a GPU, and how it was built."""

    version: str | None = None
    gpu: GpuIdentity | None = None
    strongly_typed: bool | None = field(default=None, metadata=_OMIT)
    version_compatible: bool = False
    roi_align: TrtRoiAlign = field(default_factory=TrtRoiAlign)
    parsed_onnx_sha256: str | None = field(default=None, metadata=_OMIT)
    profile_persons: tuple[int, int, int] | None = field(default=None, metadata=_OMIT)
    #: the optimisation profile over the clips of one call, (min, opt, max) B; absent before batching
    profile_batch: tuple[int, int, int] | None = field(default=None, metadata=_OMIT)
    workspace_gb: float | None = field(default=None, metadata=_OMIT)
    build_seconds: float | None = field(default=None, metadata=_OMIT)
    num_layers: int | None = None
    attention: Mapping[str, Any] = field(default_factory=lambda: {"fused_attention": None})
    timing_cache: Mapping[str, Any] | None = field(default=None, metadata=_OMIT)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fused_attention(self) -> bool | None:
        """Whether the engine's layers show fused attention (None: unknown)."""
        return self.attention.get("fused_attention")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "manifest") -> "TensorRTInfo":
        """Read a ``tensorrt`` section (missing keys take their defaults; an empty one means nothing is known)."""
        r = _Reader(data or {}, "tensorrt", source)
        gpu = r.child("gpu", required=False)
        roi = r.child("roi_align", required=False)
        version = r.data.get("version")
        return cls(
            version=None if version is None else str(version),
            gpu=GpuIdentity(gpu.opt("name", str), gpu.opt("compute_capability", str)) if gpu else None,
            strongly_typed=r.opt("strongly_typed", bool), version_compatible=bool(r.data.get("version_compatible")),
            roi_align=TrtRoiAlign(roi.opt("mode", str), roi.opt("plugin", str), roi.opt("plugin_version", str),
                                  roi.opt("aot", bool), roi.opt("implementation", str)) if roi else TrtRoiAlign(),
            parsed_onnx_sha256=r.opt("parsed_onnx_sha256", str), profile_persons=r.ints("profile_persons", 3, required=False),  # type: ignore[arg-type]
            profile_batch=r.ints("profile_batch", 3, required=False),  # type: ignore[arg-type]
            workspace_gb=r.opt("workspace_gb", (int, float)), build_seconds=r.opt("build_seconds", (int, float)),
            num_layers=r.opt("num_layers", int), attention=dict(r.opt("attention", Mapping, {"fused_attention": None})),
            timing_cache=dict(r.data["timing_cache"]) if isinstance(r.data.get("timing_cache"), Mapping) else None,
            extra=r.rest(("version", "gpu", "strongly_typed", "version_compatible", "roi_align", "parsed_onnx_sha256",
                          "profile_persons", "profile_batch", "workspace_gb", "build_seconds", "num_layers", "attention", "timing_cache")),
        )


_TOP = ("format", "created", "artifact", "model", "checkpoint", "input", "normalization", "labels", "opset",
        "roi_align", "precision", "fp16", "tolerances", "verification", "versions", "tensorrt", "quantization")


@dataclass(frozen=True)
class ArtifactManifest:
    """An artifact's manifest, typed and frozen.

    ``input`` is the artifact's :class:`Geometry`; ``verification`` the export's :class:`Parity`
    gate; ``tensorrt`` the :class:`TensorRTInfo` of an engine (None for ONNX).  Sections that are
    records for people rather than inputs to code (``normalization``, ``labels``, ``roi_align``,
    ``fp16``, ``versions``) stay mappings.  :meth:`to_dict` gives the JSON written to disk (the same
    keys :meth:`from_dict` reads); keys this version does not know are kept in ``extra``.
    """

    artifact: ArtifactFile
    input: Geometry
    precision: str
    format: str = MANIFEST_FORMAT
    created: str | None = None
    model: ModelInfo | None = None
    checkpoint: CheckpointRef | None = None
    normalization: Mapping[str, Any] | None = None
    labels: Mapping[str, Any] | None = None
    opset: int | None = None
    roi_align: Mapping[str, Any] | None = None
    fp16: Mapping[str, Any] | None = None
    tolerances: Mapping[str, float] = field(default_factory=dict)
    verification: Parity | None = None
    versions: Mapping[str, str | None] = field(default_factory=dict)
    tensorrt: TensorRTInfo | None = None
    quantization: QuantizationInfo | None = None  #: int8 artifacts: the scheme, calibration and gates
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: keys present in the JSON read (None when built in code): absent optional sections stay absent
    present: frozenset[str] | None = field(default=None, compare=False, repr=False)
    _raw_input: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        """Classes of the logits (the model's, default 80)."""
        return self.model.num_classes if self.model is not None else NUM_CLASSES

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> "ArtifactManifest":
        """Build from parsed JSON; refuses another format or a missing/mistyped field engines need.

        Raises:
            EngineError: naming ``source``, the key and the fix (re-export).
        """
        if not isinstance(data, Mapping) or data.get("format") != MANIFEST_FORMAT:
            received = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise EngineError(f"the manifest {source} has an unknown format", received=received,
                              expected=MANIFEST_FORMAT, fix="re-export the model with this vmaedet version")
        r = _Reader(data, "", source)
        model, ckpt, ver = r.child("model", False), r.child("checkpoint", False), r.child("verification", False)
        tol = r.opt("tensorrt", Mapping)
        quant = r.opt("quantization", Mapping)
        return cls(
            artifact=ArtifactFile._read(r.child("artifact")),  # type: ignore[arg-type]
            input=Geometry._read(r.child("input")),  # type: ignore[arg-type]
            precision=r.req("precision", str), format=MANIFEST_FORMAT, created=r.opt("created", str),
            model=ModelInfo._read(model) if model else None,
            checkpoint=CheckpointRef(ckpt.req("path", str), ckpt.req("sha256", str)) if ckpt else None,
            normalization=r.opt("normalization", Mapping), labels=r.opt("labels", Mapping), opset=r.opt("opset", int),
            roi_align=r.opt("roi_align", Mapping), fp16=r.opt("fp16", Mapping),
            tolerances={k: float(v) for k, v in r.opt("tolerances", Mapping, {}).items()},
            verification=Parity._read(ver) if ver else None, versions=dict(r.opt("versions", Mapping, {})),
            tensorrt=TensorRTInfo.from_dict(tol, source) if tol is not None else None,
            quantization=QuantizationInfo.from_dict(quant, source) if quant is not None else None,
            extra=r.rest(_TOP), present=frozenset(data), _raw_input=dict(data["input"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk (same keys and order as ``vmaedet export`` writes)."""
        out: dict[str, Any] = {
            "format": self.format, "created": self.created, "artifact": _artifact_json(self.artifact),
            "model": _json(self.model), "checkpoint": _json(self.checkpoint),
            "input": _geometry_json(self.input, self._raw_input), "normalization": _json(self.normalization),
            "labels": _json(self.labels), "opset": self.opset, "roi_align": _json(self.roi_align),
            "precision": self.precision, "fp16": _json(self.fp16), "tolerances": dict(self.tolerances),
            "verification": _parity_json(self.verification) if self.verification is not None else None,
            "versions": dict(self.versions),
        }
        if self.tensorrt is not None or (self.present is not None and "tensorrt" in self.present):
            out["tensorrt"] = _json(self.tensorrt)
        if self.quantization is not None or (self.present is not None and "quantization" in self.present):
            out["quantization"] = _json(self.quantization)
        if self.present is not None:  # read from a file: optional sections it did not have stay out
            out = {k: v for k, v in out.items() if k in self.present}
        out.update(copy.deepcopy(dict(self.extra)))
        return out

    def replace(self, **changes: Any) -> "ArtifactManifest":
        """A copy with ``changes`` (``dataclasses.replace``); a new manifest written in code keeps every section."""
        return dataclasses.replace(self, present=None, **changes)


def write_manifest(artifact: str | Path, manifest: ArtifactManifest | Mapping[str, Any],
                   path: str | Path | None = None) -> Path:
    """Write ``manifest`` next to ``artifact`` (or to ``path``) atomically: temp file + rename.

    ``manifest`` is an :class:`ArtifactManifest` (or its JSON object, validated first: what is
    written can be read back).

    Raises:
        EngineError: a mapping that is not a valid manifest.
        OutputError: the file cannot be written (names it and the cause: no space left, read-only, …);
            nothing partial is left and an earlier manifest stays as it was.
    """
    from vmaedet.safeio import atomic_write

    if not isinstance(manifest, ArtifactManifest):
        manifest = ArtifactManifest.from_dict(dict(manifest), source=f"for {Path(artifact).name}")
    path = Path(path) if path is not None else manifest_path(artifact)
    with atomic_write(path, what="the manifest") as fh:
        fh.write(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(artifact: str | Path) -> ArtifactManifest:
    """Read, validate and type the manifest of ``artifact``.

    Raises:
        EngineError: the artifact or its manifest is missing, the manifest is not JSON, of another
            format, or lacks a field engines need.
    """
    artifact = Path(artifact)
    path = manifest_path(artifact)
    if not artifact.exists():
        raise EngineError(f"artifact not found: {artifact}", fix="check the path or run `vmaedet export` first")
    if not path.exists():
        raise EngineError(
            f"{artifact} has no manifest",
            received=f"no file {path}",
            expected="the sidecar manifest `<artifact>.json` written by `vmaedet export`",
            fix="re-export the model with `vmaedet export CKPT --format onnx` (the manifest records geometry, "
                "precision and verified tolerances; an artifact without it is not trusted)",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineError(f"the manifest {path} is unreadable", received=str(exc),
                          expected="a JSON manifest written by `vmaedet export`", fix="re-export the model") from exc
    return ArtifactManifest.from_dict(data, source=str(path))


def validate(manifest: ArtifactManifest | Mapping[str, Any], source: str = "manifest") -> ArtifactManifest:
    """An :class:`ArtifactManifest` from a manifest or its JSON object; raises EngineError when invalid."""
    return manifest if isinstance(manifest, ArtifactManifest) else ArtifactManifest.from_dict(manifest, source)


def check_artifact_hash(artifact: str | Path, manifest: ArtifactManifest) -> None:
    """Refuse an artifact (or its external-data file) whose bytes are not the ones the manifest describes."""
    artifact = Path(artifact)
    record = manifest.artifact
    files = [(artifact, record.sha256)]
    if record.external_data is not None:
        files.append((artifact.parent / record.external_data.file, record.external_data.sha256))
    for path, recorded in files:
        actual = sha256_file(path) if path.exists() else "missing"
        if recorded != actual:
            raise EngineError(
                f"{path} does not match its manifest (the file was changed, replaced or removed after export)",
                received=f"sha256 {actual[:16]}…", expected=f"sha256 {str(recorded)[:16]}…",
                fix="re-export the model so artifact and manifest are written together",
            )


def check_expectations(manifest: ArtifactManifest, *, input_hw: tuple[int, int] | None = None,
                       precision: str | None = None, max_persons: int | None = None,
                       max_batch: int | None = None, source: str = "artifact") -> None:
    """Refuse a manifest whose geometry / precision / person or clip capacity differ from what is asked."""
    got_hw = tuple(manifest.input.clip_hw)
    if input_hw is not None and tuple(input_hw) != got_hw:
        raise EngineError(f"the {source} was exported for another clip geometry",
                          received=f"{got_hw[0]}×{got_hw[1]}", expected=f"{input_hw[0]}×{input_hw[1]}",
                          fix="re-export for this input (the clip geometry input_hw, or the source size source_wh "
                              "it is derived from)")
    if precision is not None and precision != manifest.precision:
        raise EngineError(f"the {source} has another precision", received=manifest.precision,
                          expected=precision, fix=f"re-export in {precision} (precision={precision!r})")
    if max_persons is not None and max_persons > manifest.input.max_persons:
        raise EngineError(f"the {source} accepts fewer persons than asked",
                          received=manifest.input.max_persons, expected=f"≥ {max_persons}",
                          fix=f"re-export for at least {max_persons} persons (max_persons={max_persons})")
    if max_batch is not None and max_batch > manifest.input.max_batch:
        raise EngineError(f"the {source} accepts fewer clips per call than asked",
                          received=f"max_batch {manifest.input.max_batch}", expected=f"≥ {max_batch}",
                          fix=f"re-export for at least {max_batch} clips per call (max_batch={max_batch})")


#: Artifact format (``manifest.artifact.format``) → the engines that run it, the default first.
FORMAT_ENGINES: dict[str, tuple[str, ...]] = {"onnx": ("onnxruntime", "openvino"), "tensorrt": ("tensorrt",)}
#: Artifact format → the engine that runs it when none is named (the first of :data:`FORMAT_ENGINES`).
FORMAT_ENGINE = {fmt: engines[0] for fmt, engines in FORMAT_ENGINES.items()}
_FORMAT_LABEL = {"onnx": "an ONNX artifact", "tensorrt": "a TensorRT engine artifact"}


def open_artifact(path: Path, fmt: str, *, input_hw: tuple[int, int] | None = None, precision: str | None = None,
                  max_persons: int | None = None, max_batch: int | None = None) -> ArtifactManifest:
    """Read and check an artifact's manifest before an engine opens it.

    Refuses a missing manifest, an artifact of another format, a changed file (sha256) and a
    geometry / precision / capacity (persons, clips per call) other than asked.  Returns the manifest.
    """
    manifest = read_manifest(path)
    got = manifest.artifact.format
    if got != fmt:
        raise EngineError(f"{path} is not {_FORMAT_LABEL.get(fmt, fmt)}", received=got, expected=fmt,
                          fix=f"open it with the {FORMAT_ENGINE.get(got, got)} engine")
    check_artifact_hash(path, manifest)
    check_expectations(manifest, input_hw=input_hw, precision=precision, max_persons=max_persons, max_batch=max_batch,
                       source=str(path))
    return manifest
