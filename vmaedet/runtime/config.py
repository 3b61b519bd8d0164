"""The options of one streaming run: a typed, frozen :class:`StreamConfig` (see :func:`vmaedet.runtime.pipeline.stream`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from vmaedet.data.video import X264_PRESETS
from vmaedet.errors import ConfigError

#: libx264 preset of the stream's video output: real time on a small CPU (the dataset writer keeps libx264's
#: default, medium). ``veryfast`` takes about half of ``medium``'s encoding time at a similar file size.
DEFAULT_SAVE_PRESET = "veryfast"

#: How messages name each option of a run unless the caller says otherwise (the CLI passes its flags):
#: the outputs and inputs by their :class:`StreamConfig` field or :func:`stream` parameter, and how to allow
#: replacing an existing output.
DEFAULT_NAMES: Mapping[str, str] = {
    "save": "save", "jsonl": "jsonl", "csv": "csv", "stats": "stats",
    "source": "source", "engine": "engine", "person_detector": "person_detector",
    "overwrite": "overwrite=True", "max_batch": "max_batch", "max_wait_ms": "max_wait_ms",
    "save_preset": "save_preset", "max_persons": "max_persons",
}


@dataclass(frozen=True)
class StreamConfig:
    """Options of one streaming run; every field has a default.

    Attributes:
        stride: frames between keyframes (one action inference per keyframe).
        threshold: action score shown and turned on (hysteresis off at 0.75·threshold).
        mode: "centered" (the seed's alignment, results ~1.2 s late) or "causal" (clip ends at the keyframe).
        max_persons: persons per keyframe (highest detector scores kept).
        realtime: latest-frame-wins with dropping; None: True for cameras/URLs, False for files.
        ema_alpha: EMA weight of the newest score.
        queue_size: capacity of the lossless frame/writer queues.
        backend: torch (a checkpoint; an artifact's suffix picks its backend), onnxruntime or tensorrt.
        device: device of the clip ring, the engine and the person detector: ``"cpu"``, ``"cuda[:N]"`` or
            ``"auto"`` (a given Engine's own device, else CUDA when a GPU is visible, else the CPU).
        fps: frame rate of an image folder.
        max_batch: keyframe jobs (of any source) per action-engine call; 1 = one call per keyframe. Capped
            by the engine's own ``max_batch``.
        max_wait_ms: how long the oldest ready keyframe job waits for others to fill a batch.
        save: video with overlays (.mp4, .mkv, .mov, .avi, .ts), or None. With several sources: a folder
            (one ``<name>.mp4`` per source) or a path holding ``{name}``.
        save_preset: libx264 preset of the ``save`` video (:data:`vmaedet.data.video.X264_PRESETS`; default
            ``"veryfast"``: real time beside the action engine; ``"medium"`` is libx264's own default, about twice
            the encoding time). An unknown name is refused when the config is made, before anything opens.
        jsonl: JSON lines, one per keyframe (``"type": "keyframe"``) and per closed action event
            (``"type": "event"``), or None; per source like ``save``.
        csv: AVA CSV rows (1 Hz), or None; per source like ``save``.
        stats: JSON stats summary (per-stage latencies, counters, per-source figures, batch sizes, warnings,
            outputs), or None: one file for the whole run.
        show: display a window.
        overwrite: replace existing output files (otherwise an existing output is refused before anything opens).
    """

    stride: int = 8
    threshold: float = 0.4
    mode: str = "centered"
    max_persons: int = 32
    realtime: bool | None = None
    ema_alpha: float = 0.6
    queue_size: int = 32
    backend: str = "torch"
    device: str = "auto"
    fps: float = 25.0
    max_batch: int = 1
    max_wait_ms: float = 5.0
    save: str | Path | None = None
    jsonl: str | Path | None = None
    csv: str | Path | None = None
    stats: str | Path | None = None
    show: bool = False
    overwrite: bool = False
    save_preset: str = DEFAULT_SAVE_PRESET

    def __post_init__(self) -> None:
        if self.save_preset not in X264_PRESETS:
            raise ConfigError("unknown libx264 preset for the video output (save_preset)",
                              received=repr(self.save_preset), expected=" | ".join(X264_PRESETS),
                              fix=f"set save_preset to {DEFAULT_SAVE_PRESET!r} (real time, the default) or 'medium' "
                                  "(smaller files, twice the encoding time)")

    def outputs(self) -> dict[str, Path]:
        """The files the run writes, by field name (``save``, ``jsonl``, ``csv``, ``stats``); unset ones left out."""
        files = {"save": self.save, "jsonl": self.jsonl, "csv": self.csv, "stats": self.stats}
        return {key: Path(path) for key, path in files.items() if path}
