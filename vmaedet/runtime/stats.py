"""Per-stage latency and frame counters of a streaming run (thread-safe, bounded memory).

Stages: ``decode`` (source read), ``preprocess`` (resize + normalise into the ring), ``detect_prepare``
(a shared batched detector's per-keyframe preparation in the source's thread), ``detect``
(person detector, one sample per keyframe), ``track``, ``action`` (action engine, one sample per
keyframe with persons), ``post`` (sigmoid, smoothing, events), ``draw`` (overlay + sinks).
``glass_to_result`` is the time from a keyframe's capture (``time.monotonic()`` stamp) to its result
being ready.

Batched calls (several keyframes in one engine or detector call, :mod:`vmaedet.runtime.batcher`):
``action_batch`` / ``detect_batch`` hold one sample per call (its time), and each keyframe's
``action`` / ``detect`` sample is its share of its call (the call's time ÷ its keyframes), so the
per-keyframe row's mean × count is the time spent in the engine / detector and its p50 and mean
describe the same samples.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

STAGES = ("decode", "preprocess", "detect_prepare", "detect", "detect_batch", "track", "action", "action_batch",
          "post", "draw", "glass_to_result")
#: The per-call rows of the batched stages, by their per-keyframe row.
BATCH_ROWS = {"detect": "detect_batch", "action": "action_batch"}
#: Samples kept per stage for percentiles (older ones only feed count/mean).
WINDOW = 2048


class StreamStats:
    """Latency samples per stage plus processed/dropped counters."""

    def __init__(self) -> None:
        #: warnings of the run (a source cut short, proposals without this video, …), also in the JSON
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self._totals: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self.counters: dict[str, int] = defaultdict(int)
        self.started = time.monotonic()
        self.ended: float | None = None
        self.info: dict[str, Any] = {}

    def add(self, stage: str, seconds: float) -> None:
        """Record one latency sample of ``stage``."""
        with self._lock:
            self._samples[stage].append(seconds)
            self._totals[stage] += seconds
            self._counts[stage] += 1

    def incr(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self.counters[counter] += n

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Context manager timing one ``stage`` sample."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def finish(self) -> None:
        self.ended = time.monotonic()

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict: per-stage count/mean/p50/p95/max in ms, counters, wall time, fps."""
        with self._lock:
            stages = {}
            for name in [*STAGES, *sorted(set(self._samples) - set(STAGES))]:
                if not self._counts.get(name):
                    continue
                arr = np.asarray(self._samples[name]) * 1e3
                stages[name] = {
                    "count": self._counts[name],
                    "mean_ms": self._totals[name] * 1e3 / self._counts[name],
                    "p50_ms": float(np.percentile(arr, 50)),
                    "p95_ms": float(np.percentile(arr, 95)),
                    "max_ms": float(arr.max()),
                }
            counters = dict(self.counters)
        wall = (self.ended or time.monotonic()) - self.started
        processed = counters.get("frames_processed", 0)
        out = {
            "wall_s": wall,
            "fps": processed / wall if wall > 0 else 0.0,  #: frames processed per second of wall time
            "counters": counters,
            "stages": stages,
        }
        out.update((key, value) for key, value in self.info.items() if key not in out)  # never over a measured figure
        out["warnings"] = list(self.warnings)
        return out

    def source_summary(self) -> dict[str, Any]:
        """The short per-source view: wall time, frames/s processed, the source's own frame rate, read/processed/dropped frames, keyframes."""
        s = self.summary()
        c = s["counters"]
        return {"wall_s": s["wall_s"], "fps": s["fps"], "source_fps": self.info.get("source_fps"),
                "frames_read": c.get("frames_read", 0),
                "frames_processed": c.get("frames_processed", 0), "frames_dropped": c.get("frames_dropped", 0),
                "keyframes": c.get("keyframes", 0)}

    def write_json(self, path: str | Path, what: str = "the stats JSON") -> Path:
        """Write :meth:`summary` as JSON (through a temporary file renamed over ``path``: never half a file)."""
        from vmaedet.safeio import atomic_write

        path = Path(path)
        with atomic_write(path, what=what) as fh:
            fh.write(json.dumps(self.summary(), indent=2, default=str))
        return path

    def table(self) -> Any:
        """A rich Table of the summary (a ``*_batch`` row only where calls held several keyframes)."""
        from rich.table import Table

        s = self.summary()
        t = Table(title=f"stream: {s['wall_s']:.2f} s wall, {s['fps']:.1f} frames/s")
        for col in ("stage", "count", "mean ms", "p50 ms", "p95 ms", "max ms"):
            t.add_column(col, justify="left" if col == "stage" else "right", no_wrap=col == "stage")
        stages = s["stages"]
        for name, st in stages.items():
            per_keyframe = next((k for k, v in BATCH_ROWS.items() if v == name), None)
            if per_keyframe is not None and stages.get(per_keyframe, {}).get("count") == st["count"]:
                continue  # one keyframe per call: the same figures as the per-keyframe row
            t.add_row(name, str(st["count"]), f"{st['mean_ms']:.1f}", f"{st['p50_ms']:.1f}",
                      f"{st['p95_ms']:.1f}", f"{st['max_ms']:.1f}")
        for name, value in sorted(s["counters"].items()):
            t.add_row(name, str(value), "", "", "", "")
        sources = s.get("sources") or {}
        for name, src in sources.items() if len(sources) > 1 else ():
            t.add_row(f"source {name}", f"{src['frames_processed']} frames", f"{src['fps']:.1f} fps",
                      f"{src['frames_dropped']} dropped", f"{src['keyframes']} keyframes", src.get("error") or "")
        for key, label in (("batcher", "action"), ("detect_batcher", "detect")):
            batcher = s.get(key)
            if not batcher or not (batcher["max_batch"] > 1 or len(sources) > 1):
                continue
            wait = batcher["wait_ms"]
            if wait:
                t.add_row(f"{label} wait", str(batcher["jobs"]),
                          f"{wait['mean']:.1f}", f"{wait['p50']:.1f}", f"{wait['p95']:.1f}", f"{wait['max']:.1f}")
            for size, calls in batcher["batch_sizes"].items():  # one row per batch size: never a long cell
                t.add_row(f"{label} calls ×{size}", str(calls), "", "", "", "")
        return t


class SourceStats(StreamStats):
    """The stats of one source of a run over several: every sample and counter also goes to ``parent``."""

    def __init__(self, parent: StreamStats) -> None:
        super().__init__()
        self.parent = parent

    def add(self, stage: str, seconds: float) -> None:
        super().add(stage, seconds)
        self.parent.add(stage, seconds)

    def incr(self, counter: str, n: int = 1) -> None:
        super().incr(counter, n)
        self.parent.incr(counter, n)

    def finish(self) -> None:
        """The source's end (its worker's): the first call counts, the run's end does not move it."""
        if self.ended is None:
            super().finish()
