"""The streaming pipeline: reader → worker → action → writer threads, and the ``stream()`` generator.

Per source (one or several in a run):

* **reader** (:class:`~vmaedet.runtime.sources.SourceReader`): decode; source → bounded mailbox;
  live sources are latest-frame-wins (drops counted), files are lossless (blocking hand-over).
* **worker** (:class:`StreamWorker`): each frame is preprocessed once into the clip ring (if any
  keyframe can sample it); on keyframes the person detector and the tracker run; when a
  keyframe's clip is complete it goes to the action stage with all K persons, and the worker goes on.
* **action** (:class:`~vmaedet.runtime.batcher.Batcher`, one for the run): batches ready keyframes
  of every source into engine calls (``max_batch``), splits the logits back; each source then
  smooths its scores per track and closes events.  Clips of another geometry than a fixed-geometry
  engine's (an artifact exported for one source size) are resized to it in the worker.
* **detect** (:class:`~vmaedet.runtime.batcher.DetectBatcher`, several sources with a batchable
  person detector and ``max_batch`` > 1): the keyframes of every source share detector calls.
* **writer** (:class:`~vmaedet.runtime.sinks.SinkWriter`): overlay, window, mp4, JSONL, CSV.

For lossless sources every frame is written, drawn with the result of the latest keyframe at or
before it (frames wait in a bounded display ring until that result exists); for live sources
frames are drawn at once with the newest result.  All queues are bounded, one ``stop`` event is
shared, and an error in any thread ends the run with that error (never a hang).

The options of a run are one frozen :class:`~vmaedet.runtime.config.StreamConfig`; messages name
options by the caller's words (``names``: the CLI passes its flags), never by CLI flags of their own.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
import time
import warnings
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from vmaedet.engines.base import Engine, artifact_backend, list_engines, open_engine
from vmaedet.errors import ConfigError, OutputError, StreamError, VmaedetError
from vmaedet.ops.boxes import make_rois
from vmaedet.persons.base import PersonDetector, create_person_detector, spec_input_file
from vmaedet.runtime.batcher import ActionJob, Batcher, DetectBatcher, engine_fixed_hw, resize_clip
from vmaedet.runtime.buffer import ClipRing, DisplayRing
from vmaedet.runtime.config import DEFAULT_NAMES, StreamConfig
from vmaedet.runtime.multi import is_multi, name_sources, source_output
from vmaedet.runtime.scheduler import KeyJob, Scheduler
from vmaedet.runtime.sinks import (AvaCsvSink, JsonlSink, PendingOutput, SinkWriter, WindowSink, check_video_container,
                                   check_writable, write_stats_json)
from vmaedet.runtime.smoothing import ScoreSmoother
from vmaedet.runtime.sources import Closed, Frame, Mailbox, Source, SourceReader, open_source
from vmaedet.runtime.stats import SourceStats, StreamStats
from vmaedet.runtime.tracking import PersonTracker
from vmaedet.safeio import check_outputs, os_error_reason
from vmaedet.structures import ActionDetections, PersonDetections

__all__ = ["StreamConfig", "StreamWarning", "StreamWorker", "stream"]

#: Suffixes of checkpoints (a path with another suffix and a backend other than torch is an artifact).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
#: The file name suggested when an output names a folder.
_EXAMPLE_SUFFIX = {"save": ".mp4", "jsonl": ".jsonl", "csv": ".csv", "stats": ".json"}


@dataclass(frozen=True)
class RunContext:
    """What the reader, worker and writer threads of one source share."""

    source: Source
    config: StreamConfig
    stats: StreamStats
    live: bool  #: latest-frame-wins (drops frames) instead of lossless
    stop: threading.Event
    frames: Mailbox[Frame]
    out: Mailbox[tuple[str, Any]]
    results: Any  #: ``put(result)`` and ``close(error)``: a Mailbox[ActionDetections] or a run's results hub
    name: str | None = None  #: the source's name, tagged on its results

    @classmethod
    def create(cls, source: Source, config: StreamConfig, stats: StreamStats, live: bool, results: Any = None,
               name: str | None = None) -> "RunContext":
        stop = threading.Event()
        return cls(source, config, stats, live, stop,
                   frames=Mailbox(1 if live else config.queue_size, "latest" if live else "wait", stop),
                   out=Mailbox(config.queue_size, "wait", stop, wait_for_close=True),
                   results=results if results is not None else Mailbox(256, "wait", stop), name=name)


#: the clip of a keyframe without persons: none is built (the batcher answers such a job without the engine)
_NO_CLIP = torch.empty((1, 3, 0, 0, 0))  # [1, 3, 0, 0, 0]


class StreamWorker(threading.Thread):
    """Worker thread of one source: ring, schedule, detect, track, build clips; the action stage is the batcher's.

    Each ready keyframe's clip and rois go to the :class:`~vmaedet.runtime.batcher.Batcher` (the run's
    one action-engine thread) and the worker goes on with the next frames; the batcher calls
    :meth:`_complete` with the keyframe's logits, which smooths the scores, emits the result and its
    events and releases the frames drawn with it.  At most ``inflight`` keyframes of a source are with
    the batcher at once (1 for live sources: latest-frame-wins keeps the lag at about one inference).

    An engine of one fixed clip geometry (``input_hw``: an artifact exported for one source size) gets
    this source's clips resized to it (:func:`~vmaedet.runtime.batcher.resize_clip`, the rois scaled
    alike; results keep the source's pixels), said once through ``warn``.

    Args:
        ctx: the source, options, stats and mailboxes.
        engine: the action engine (its device and short side shape the ring).
        detector: the person detector.
        draws: frames go to the writer (something draws them: a video output or a window).
        batcher: the action stage; None: a private one-job batcher is made (and run) for this worker.
        detect_lock: held around the person detector (a detector shared by several sources).
        detect_batcher: the run's person-detection stage (a batchable detector shared by the sources):
            keyframes go there instead of to ``detector``; this worker is one of its producers.
        warn: how the worker reports a warning (the run's); None: :func:`warnings.warn`.
    """

    def __init__(self, ctx: RunContext, engine: Engine, detector: PersonDetector, draws: bool,
                 batcher: Batcher | None = None, detect_lock: threading.Lock | None = None,
                 detect_batcher: DetectBatcher | None = None, warn: Callable[[str], None] | None = None) -> None:
        super().__init__(name="vmaedet-worker" if ctx.name is None else f"vmaedet-worker-{ctx.name}", daemon=True)
        source, cfg = ctx.source, ctx.config
        self.ctx = ctx
        self.source, self.frames, self.out, self.results = source, ctx.frames, ctx.out, ctx.results
        self.engine, self.detector, self.cfg, self.stats = engine, detector, cfg, ctx.stats
        self.lossless, self.draws = not ctx.live, draws
        self.own_batcher = batcher is None
        self.batcher = batcher if batcher is not None else Batcher(engine, ctx.stats)
        self.detect_lock = detect_lock
        self.detect_batcher = detect_batcher
        self.left_detection = False
        self.warn = warn or (lambda message: warnings.warn(message, StreamWarning, stacklevel=2))
        self.fixed_hw = engine_fixed_hw(engine)  #: the engine's one clip geometry (H, W), or None for any
        self.resized: tuple[int, int] | None = None  #: this source's clip geometry when it is resized (said once)
        self.inflight_cap = 1 if ctx.live else self.batcher.max_batch + 1
        self.sched = Scheduler(cfg.mode, cfg.stride, source.fps, lossless=self.lossless)
        span = self.sched.offsets[-1] - self.sched.offsets[0]
        self.ring = ClipRing(capacity=math.ceil(span * source.fps) + cfg.stride + 4, device=engine.device,
                             short_side=engine.short_side)
        lead = max(0.0, float(self.sched.offsets[-1]))
        # frames wait for the keyframes ahead of them: the scheduler's lead plus the keyframes with the batcher
        self.display = DisplayRing(capacity=math.ceil(lead * source.fps) + (2 + self.inflight_cap) * cfg.stride + 4)
        self.tracker = PersonTracker(keyframe_rate=source.fps / cfg.stride)
        self.smoother = ScoreSmoother(alpha=cfg.ema_alpha, on=cfg.threshold,
                                      max_missed=max(1, round(2.0 * source.fps / cfg.stride)))
        self.pending: list[KeyJob] = []
        self.inflight: deque[int] = deque()  #: keyframe indices with the batcher, oldest first
        #: CPU clip arrays [3, 16, Hp, Wp] of finished keyframes, reused by the next clips (at most inflight_cap + 1)
        self.spare: list[np.ndarray] = []
        self.prefault: threading.Thread | None = None  #: fills the spares once the clip geometry is known
        self.prefault_due = self.ring.device.type == "cpu"  #: a CPU ring, before its first frame
        self.failure: BaseException | None = None  #: the action stage's error for this source
        self.closed = False  #: the worker ended: late results are dropped
        self.lock = threading.Condition()
        self.last: Frame | None = None
        self.max_ring_bytes = 0

    # -- per frame ---------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        self.stats.incr("frames_processed")
        self.last = frame
        if self.sched.wants(frame.index):
            with self.stats.time("preprocess"):
                self.ring.push(frame)
            if self.prefault_due:
                self.prefault_due = False
                self._start_prefault()
        if self.sched.is_keyframe(frame.index):
            self.pending.append(self._keyjob(frame))
        if self.draws:  # frames go to the writer only when something draws them
            with self.lock:
                self._show(self.display.push(frame) if self.lossless else [frame])
        while self.pending and self.sched.is_ready(self.pending[0], frame.time):
            self._run(self.pending.pop(0))
        self.ring.evict_before(self.sched.horizon(self.pending, frame.time))
        self.max_ring_bytes = max(self.max_ring_bytes, self.ring.nbytes())
        if self.lossless:
            with self.lock:
                self._release()

    def _start_prefault(self) -> None:
        """Have the first clips' arrays allocated and touched beside the frames that fill the ring (CPU rings).

        A clip is tens of MB; memory the process touches for the first time costs page faults (where a
        VM hands freed pages back to its host, a fault is host work: ~250 ms for one ViT-B clip was
        measured on such a machine).  Touched here, on a thread of its own that holds no GIL while it
        writes, the first keyframe's clip is a plain copy when its frames are in.
        """
        entry = self.ring.last_tensor()  # [3, Hp, Wp], just pushed
        assert entry is not None
        shape = (entry.shape[0], len(self.sched.offsets), *entry.shape[1:])  # (3, T, Hp, Wp)

        def touch() -> None:
            for _ in range(min(2, self.inflight_cap + 1)):
                buffer = np.empty(shape, np.float32)  # [3, T, Hp, Wp]
                buffer.fill(0.0)  # the page faults happen here, without the GIL
                with self.lock:
                    if self.closed:
                        return
                    self.spare.append(buffer)
                    self.lock.notify_all()

        self.prefault = threading.Thread(target=touch, name=f"{self.name}-prefault", daemon=True)
        self.prefault.start()

    def _prefaulting(self) -> bool:
        return self.prefault is not None and self.prefault.is_alive()

    def _release(self) -> None:
        """Hand the writer the frames before the oldest keyframe without a result (call with the lock held)."""
        bounds = [self.pending[0].index] if self.pending else []
        if self.inflight:
            bounds.append(self.inflight[0])
        self._show(self.display.release(min(bounds) if bounds else None))

    def _detect(self, frame: Frame) -> PersonDetections:
        """The persons of a keyframe: through the run's detection stage (timed there), else the detector (timed here)."""
        if self.detect_batcher is not None:  # the stage records this keyframe's share of its batched call
            return self.detect_batcher.detect(frame.image, frame_index=frame.index, timestamp=frame.time,
                                              video_id=self.source.name, cancelled=self.ctx.stop)
        with self.stats.time("detect"), self.detect_lock or contextlib.nullcontext():
            return self.detector.detect(frame.image, frame_index=frame.index, timestamp=frame.time,
                                        video_id=self.source.name)

    def _keyjob(self, frame: Frame) -> KeyJob:
        det = self._detect(frame)
        boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(det.scores, np.float32).reshape(-1)
        keep = np.argsort(-scores, kind="stable")[: self.cfg.max_persons]
        boxes, scores = boxes[keep], scores[keep]
        with self.stats.time("track"):
            ids = self.tracker.update(boxes, scores)
        self.stats.incr("keyframes")
        h, w = frame.image.shape[:2]
        return KeyJob(frame.index, frame.time, frame.captured, boxes, scores, ids, (w, h), self.sched.targets(frame.time))

    def _rois(self, job: KeyJob) -> torch.Tensor:
        assert self.ring.resized_wh is not None
        return make_rois(job.boxes, self.ring.resized_wh, src_wh=job.image_wh)  # [N, 5]

    def _run(self, job: KeyJob) -> None:
        """Build the keyframe's clip and hand it to the batcher (waits while too many are in flight).

        A keyframe without persons gets no clip (the engine is not called for it; the batcher answers it
        in its turn, so results stay in order): only the frame indices it would take are looked up.
        """
        with self.stats.time("preprocess"):
            idx = job.index + self.sched.index_offsets if self.sched.lossless else None
            rois = self._rois(job)  # [N, 5]
            buffer = None
            if not rois.shape[0]:
                clip, picks = _NO_CLIP, self.ring.picks(job.targets, idx)
            else:
                with self.lock:  # a clip allocated now would fault its pages beside the prefault's: wait for it
                    while not self.spare and self._prefaulting() and not self._stopping():
                        self.lock.wait(0.05)
                    spare = self.spare.pop() if self.spare else None
                clip, picks = self.ring.clip(job.targets, idx, out=spare)  # [1, 3, 16, Hp, Wp]
                buffer = clip[0].numpy() if clip.device.type == "cpu" else None  # [3, 16, Hp, Wp], back at _complete
            if self.fixed_hw is not None and rois.shape[0] and tuple(clip.shape[-2:]) != self.fixed_hw:
                self._say_resized(tuple(clip.shape[-2:]))  # type: ignore[arg-type]
                clip, rois = resize_clip(clip, rois, self.fixed_hw)  # [1, 3, 16, H, W], [N, 5] in its pixels
        with self.lock:
            while len(self.inflight) >= self.inflight_cap and not self._stopping():
                self.lock.wait(0.05)
            if self._stopping():
                self._raise_failure()
                return
            self.inflight.append(job.index)
        self.batcher.submit(ActionJob(clip, rois,
                                      lambda logits, error: self._complete(job, picks, logits, error, buffer),
                                      cancelled=self.ctx.stop))

    def _leave_detection(self) -> None:
        """Tell the run's detection stage (once) that this source has no more keyframes for it."""
        if self.detect_batcher is not None and not self.left_detection:
            self.left_detection = True
            self.detect_batcher.add_producer(-1)

    def _say_resized(self, hw: tuple[int, int]) -> None:
        """Warn once that this source's clips (``hw``) are resized to the engine's one geometry."""
        if self.resized is not None:
            return
        self.resized = hw
        assert self.fixed_hw is not None
        (h, w), (eh, ew) = hw, self.fixed_hw
        name = self.ctx.name or self.source.name
        sw, sh = self.ring.source_wh or (0, 0)
        self.warn(f"the source {name} ({sw}×{sh}) gives clips of {h}×{w}, but the engine takes {eh}×{ew} only; "
                  f"its clips are resized to {eh}×{ew} (boxes scaled alike, results stay in the source's pixels), "
                  f"which costs some accuracy. For this source's own geometry, export for it "
                  f"(vmaedet export CKPT --source-size {sw}x{sh}) or run the checkpoint")

    def _stopping(self) -> bool:
        return self.failure is not None or self.ctx.stop.is_set()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _complete(self, job: KeyJob, picks: list[int], logits: torch.Tensor | None, error: BaseException | None,
                  buffer: np.ndarray | None = None) -> None:
        """The batcher's answer for one keyframe: smooth, emit the result and its events, release frames.

        ``buffer``: the CPU array the keyframe's clip was stacked into; the engine call is over, so it
        goes back to the spares for a later clip.
        """
        with self.lock:
            if buffer is not None and len(self.spare) <= self.inflight_cap:
                self.spare.append(buffer)
            try:
                if self.closed:
                    return
                if error is not None:
                    self.failure = self.failure or error
                    self.ctx.stop.set()
                    return
                assert logits is not None
                self._emit(job, picks, logits)
                if job.index in self.inflight:  # the oldest (the batcher answers in order); never left behind
                    self.inflight.remove(job.index)
                if self.lossless:
                    self._release()
            except BaseException as exc:  # noqa: BLE001 - this source ends with it
                self.failure = self.failure or exc
                self.ctx.stop.set()
            finally:
                self.lock.notify_all()

    def _emit(self, job: KeyJob, picks: list[int], logits: torch.Tensor) -> None:
        with self.stats.time("post"):
            raw = torch.sigmoid(logits.float()).numpy() * job.person_scores[:, None]  # [N, 80]
            smoothed, closed = self.smoother.update(job.track_ids, raw, job.time, job.index)
        latency = time.monotonic() - job.captured
        self.stats.add("glass_to_result", latency)
        result = ActionDetections(job.boxes, job.person_scores, smoothed, track_ids=job.track_ids,
                                  raw_scores=raw.astype(np.float32), frame_index=job.index, timestamp=job.time,
                                  latency=latency, image_wh=job.image_wh, clip_frames=picks, source=self.ctx.name)
        self.out.put(("result", result))
        if closed:
            self.out.put(("events", closed))
        self.results.put(result)

    def _show(self, frames: list[Frame]) -> None:
        for f in frames:
            self.out.put(("frame", f))

    def _finish(self) -> None:
        """End of a source: clips beyond the last frame take the last frame (the seed's clamp); wait for the results."""
        if self.last is not None and self.last.index not in self.ring:
            self.ring.push(self.last)
        for job in self.pending:
            self._run(job)
        self.pending.clear()
        with self.lock:
            while self.inflight and not self._stopping():
                self.lock.wait(0.05)
        self._raise_failure()

    def run(self) -> None:
        error: BaseException | None = None
        if self.own_batcher:
            self.batcher.start()
        try:
            source_error: StreamError | None = None
            while True:
                try:
                    frame = self.frames.get()
                except Closed:
                    break
                except StreamError as exc:  # the source failed (the reader's error, after the frames it gave)
                    if self.frames.stop.is_set():
                        raise
                    source_error = exc
                    break
                self._raise_failure()
                self._on_frame(frame)
            self._leave_detection()  # no more keyframes to detect: detection batches stop waiting for this source
            self._raise_failure()
            if not self.frames.stop.is_set():
                self._finish()  # a source that failed is finished like one that ended: every keyframe it gave
            if source_error is not None:
                raise source_error
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            error = exc if isinstance(exc, VmaedetError) else StreamError(
                f"the stream worker failed: {type(exc).__name__}: {exc}", fix="outputs written so far are complete")
            if error is not exc:
                error.__cause__ = exc
            self.frames.stop.set()
        finally:
            with self.lock:
                self.closed = True
                self.lock.notify_all()
            self._leave_detection()
            if self.own_batcher:
                self.batcher.close()
                self.batcher.join(timeout=60)
            self.out.put(("events", self.smoother.flush()), force=True)
            for f in self.display.release(None):
                self.out.put(("frame", f), force=True)
            self.stats.info["max_ring_bytes"] = self.max_ring_bytes
            self.out.close()
            self.results.close(error)


def _auto_device() -> str:
    """CUDA when torch sees a GPU, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _open_engine(engine: Engine | str | Path, backend: str, device: str) -> Engine:
    """An :class:`Engine` as it is; a checkpoint runs on torch; an exported artifact on its manifest's engine.

    A path is a checkpoint when it has no artifact manifest and either the backend is torch or its
    suffix is a checkpoint's (:data:`CHECKPOINT_SUFFIXES`).  ``device="auto"``: CUDA when torch sees a
    GPU (onnxruntime: its own provider choice), else the CPU.
    """
    if isinstance(engine, Engine):
        return engine
    known = list_engines()
    if backend not in known:  # before any suggestion that names it
        raise ConfigError(f"unknown backend {backend!r}", received=backend, expected=" | ".join(known),
                          fix="use the torch backend for a checkpoint, onnxruntime for an .onnx file, "
                              "or tensorrt for a TensorRT plan")
    path = Path(engine)
    if artifact_backend(path) is None and (backend == "torch" or path.suffix.lower() in CHECKPOINT_SUFFIXES):
        if backend != "torch":
            export = (f"vmaedet export {path} --format onnx --out exports/" if backend in ("onnxruntime", "openvino") else
                      f"vmaedet export {path} --trt --out exports/")
            raise ConfigError(f"the {backend} backend runs an exported artifact, not a checkpoint", received=str(path),
                              expected="a checkpoint with the torch backend, or an exported artifact",
                              fix=f"run the checkpoint with the torch backend, or export it first ({export}) "
                                  "and run the file it writes")
        return open_engine(path, "torch", device=_auto_device() if device == "auto" else device)
    chosen = None if backend == "torch" else backend  # torch (the default): the artifact's manifest decides
    name = (artifact_backend(path) or backend) if chosen is None else chosen
    if device == "auto":
        if name in ("onnxruntime", "openvino"):  # the engine picks: onnxruntime CUDA where it can, openvino the CPU
            return open_engine(path, chosen, device=None)
        device = _auto_device()
        received = "device 'auto' and no CUDA GPU is visible to torch"
    else:
        received = f"device {device!r}"
    if name == "tensorrt" and not str(device).startswith("cuda"):
        raise ConfigError("a TensorRT engine runs on a CUDA GPU, not on the CPU", received=received,
                          expected="device cuda or cuda:N on a machine with an NVIDIA GPU",
                          fix=f"run {path.name} on a GPU machine, or run the .onnx export on the CPU")
    # the artifact runs where the device says: onnxruntime's CUDA provider on cuda[:N], its CPU provider on
    # cpu (refusing, never falling back, when the GPU provider cannot run); TensorRT on that GPU
    return open_engine(path, chosen, device=device)


def _resolve_detector(detector: PersonDetector | str, max_persons: int, device: str) -> PersonDetector:
    """A detector as it is; a spec (``"ssdlite"``, ``"boxes:FILE"``, …) through the person-detector registry."""
    if isinstance(detector, PersonDetector):
        return detector
    if not isinstance(detector, str):
        raise ConfigError("person_detector must be a PersonDetector or a spec string", received=type(detector).__name__,
                          expected="e.g. 'ssdlite', 'motion', 'onnx:PATH', 'boxes:FILE', or a PersonDetector subclass",
                          fix="subclass vmaedet.persons.base.PersonDetector, or pass its spec")
    return create_person_detector(detector, max_persons=max_persons, device=device)


def stream(source: str | int | Path | Source | Sequence[Any] | Mapping[str, Any], engine: Engine | str | Path,
           config: StreamConfig | None = None, *,
           person_detector: PersonDetector | str = "ssdlite", stats: StreamStats | None = None,
           on_warning: Callable[[str], None] | None = None,
           names: Mapping[str, str] | None = None) -> Iterator[ActionDetections]:
    """Run action detection on one or several streams; yields one :class:`~vmaedet.structures.ActionDetections` per keyframe.

    Args:
        source: camera index, URL (rtsp://, http://), video file, image folder, or a Source; or several
            of them: a list (names derived: a file's stem, ``camera<N>``, a URL's host, made unique) or a
            dict name → source.  Each result's ``source`` is its source's name.
        engine: an :class:`~vmaedet.engines.base.Engine`, a checkpoint (``.safetensors``; torch) or an
            exported artifact (``.onnx``, TensorRT plan).
        config: the run's options and outputs (:class:`~vmaedet.runtime.config.StreamConfig`; default: its defaults).
            With several sources each output (``save``, ``jsonl``, ``csv``) is a folder (one file per
            source, ``<name>.mp4`` …) or a path holding ``{name}``; ``stats`` is one file for the run.
        person_detector: a :class:`~vmaedet.persons.base.PersonDetector` or its spec ("ssdlite",
            "motion", "onnx:PATH", "boxes:FILE"), created with ``config.max_persons`` and the run's device
            (a spec: one detector per source; a detector object is shared, one call at a time).  A
            :attr:`~vmaedet.persons.base.PersonDetector.batchable` detector (``ssdlite`` on torch, ``onnx:PATH``
            with a dynamic batch axis) with several
            sources and ``config.max_batch`` > 1 is one detector for all of them: keyframes of several
            sources within ``config.max_wait_ms`` share one detector call (at most ``max_batch`` frames).
        stats: a StreamStats to fill (e.g. to watch the counters while the run goes); the JSON summary
            goes to ``config.stats``.
        on_warning: called with each warning of the run (a source cut short, proposals without this video);
            default: :func:`warnings.warn` with :class:`StreamWarning`. Warnings also go to the stats.
        names: how messages name the options (keys of :data:`~vmaedet.runtime.config.DEFAULT_NAMES`: the
            outputs, ``source``, ``engine``, ``person_detector`` and ``overwrite``); the CLI passes its flags.

    Each result carries ``source``, ``frame_index``, ``timestamp``, ``latency``, ``image_wh``, ``clip_frames``;
    ``action_scores`` are smoothed per track (raw for track id −1), ``raw_scores`` are the seed's.

    Every source keeps its own clock, keyframe schedule, clip ring, tracker, smoother and policy (live
    sources latest-frame-wins, files lossless); their keyframe clips go to one action-engine thread that
    batches up to ``config.max_batch`` of them per call.  With several sources, one that fails (cannot be
    opened, errors mid-stream) is closed and reported (a warning) while the others go on; the others'
    outputs are complete, and at the end a :class:`~vmaedet.errors.StreamError` names every failed source.

    Outputs are written under temporary names beside their targets and renamed when the run ends —
    also when it is stopped early (Ctrl-C, ``close()`` of the generator, a source failing mid-stream),
    then with everything processed so far. An output whose own write fails (no space left, read-only)
    is removed and the :class:`~vmaedet.errors.OutputError` names it; an existing file is replaced only
    at the final rename, and only with ``config.overwrite``. A run stopped early raises no output error;
    the StreamStats then says what happened: ``info["outputs_written"]`` (the files renamed into place)
    and ``info["output_errors"]`` (each failed output, by its name in messages → its error in words).

    Example:
        >>> cfg = StreamConfig(stride=8, save="out.mp4")
        >>> for r in stream("video.mp4", "model.safetensors", cfg, person_detector="ssdlite"):  # doctest: +SKIP
        ...     print(r.frame_index, r.track_ids, r.top_actions())
        >>> cfg = StreamConfig(save="out/", jsonl="out/{name}.jsonl", max_batch=4)
        >>> for r in stream({"door": "door.mp4", "hall": 0}, "model.safetensors", cfg):  # doctest: +SKIP
        ...     print(r.source, r.frame_index, r.top_actions())
    """
    run = _Run(source, engine, config or StreamConfig(), person_detector, stats or StreamStats(), on_warning,
               {**DEFAULT_NAMES, **(names or {})})
    run.start()
    yield from run.results()


class StreamWarning(UserWarning):
    """A stream ran, but something about its input deserves a word (a file cut short, no proposals)."""


class _Lane:
    """One source of a run: its name, options (its own output files), source, detector, threads and stats."""

    def __init__(self, name: str, arg: Any, cfg: StreamConfig, stats: StreamStats) -> None:
        self.name, self.arg, self.cfg, self.stats = name, arg, cfg, stats
        self.opened = _Opened()
        self.src: Source | None = None
        self.detector: PersonDetector | None = None
        self.error: BaseException | None = None  #: why this source failed (opening, mid-stream, an output)
        self.ctx: RunContext | None = None
        self.reader: SourceReader | None = None
        self.worker: StreamWorker | None = None
        self.writer: SinkWriter | None = None


def _source_text(lane: _Lane) -> str:
    """A source as messages and the stats name it: its path, URL or camera index; a Source object by its name."""
    if isinstance(lane.arg, (str, Path, int)):
        return str(lane.arg)
    return f"{lane.name} (a {type(lane.arg).__name__})"


class _ResultsHub:
    """The results of every source in one mailbox; it closes when the last source's worker closes.

    One source: the worker's error goes to the consumer as it is.  Several: a source's error is
    recorded and reported (a warning) while the others go on.
    """

    def __init__(self, lanes: list[_Lane], stop: threading.Event, warn: Callable[[str], None],
                 engine_error: Callable[[], BaseException | None] = lambda: None) -> None:
        self.mailbox: Mailbox[ActionDetections] = Mailbox(256, "wait", stop)
        self.left, self.multi, self.warn = len(lanes), len(lanes) > 1, warn
        self.engine_error = engine_error  #: the action engine's error (it ends every source, not one)
        self._lock = threading.Lock()

    def put(self, result: ActionDetections) -> bool:
        return self.mailbox.put(result)

    def done(self, lane: _Lane, error: BaseException | None) -> None:
        """A source's worker ended (``error``: why, None at its end or on a stop); its clock stops here."""
        with self._lock:
            self.left -= 1
            if isinstance(lane.stats, SourceStats):
                lane.stats.finish()
            if error is not None:
                lane.error = lane.error or error
                if self.multi and error is not self.engine_error():  # an engine error is said once, at the end
                    self.warn(f"the source {lane.name} failed: {_in_words(error)}; the other sources go on")
            if self.left <= 0:
                self.mailbox.close(None if self.multi else error)

    def lane(self, lane: _Lane) -> "_LaneResults":
        return _LaneResults(self, lane)


@dataclass
class _LaneResults:
    hub: _ResultsHub
    lane: _Lane

    def put(self, result: ActionDetections) -> bool:
        return self.hub.put(result)

    def close(self, error: BaseException | None = None) -> None:
        self.hub.done(self.lane, error)


class _Run:
    """One run of :func:`stream`: checks, opens, starts the threads, hands out results, finalises outputs."""

    def __init__(self, source: Any, engine: Engine | str | Path, cfg: StreamConfig,
                 person_detector: PersonDetector | str, st: StreamStats, on_warning: Callable[[str], None] | None,
                 names: Mapping[str, str]) -> None:
        self.engine_arg, self.detector_arg = engine, person_detector
        self.cfg, self.st, self.names = cfg, st, names
        self.multi = is_multi(source)
        self.lanes = [_Lane(name, arg, cfg, SourceStats(st) if self.multi else st) for name, arg in name_sources(source)]
        self.warn = _warner(st, on_warning)
        self.stop_all = threading.Event()
        self.started: list[_Lane] = []

    def what(self, key: str, lane: _Lane | None = None) -> str:
        """How messages name an output (``"the --jsonl output"`` from the CLI, ``"the jsonl output"`` here)."""
        if key == "stats":
            return f"the {self.names[key]} JSON"
        return f"the {self.names[key]} output" + (f" of {lane.name}" if self.multi and lane is not None else "")

    def _label(self, key: str, lane: _Lane) -> str:
        return f"{self.names[key]} ({lane.name})" if self.multi and key != "stats" else self.names[key]

    # -- before the threads ------------------------------------------------------------------
    def start(self) -> None:
        """Check the options and outputs, open engine, detectors, outputs and sources, start the threads."""
        cfg = self.cfg
        Scheduler(cfg.mode, cfg.stride)  # validate options before opening anything
        self._check_batching()
        for lane in self.lanes:
            count = len(self.lanes) if self.multi else 0  # one source in a list takes a plain file too
            lane.cfg = replace(cfg, stats=None, **{key: source_output(getattr(cfg, key), key, lane.name, count,
                                                                        self.what(key))
                                                   for key in ("save", "jsonl", "csv")})
        self._check_outputs()
        for lane in self.lanes:
            lane.src = open_source(lane.arg, fps=cfg.fps)
        self.engine = _open_engine(self.engine_arg, cfg.backend, cfg.device)
        cfg = self._cap_persons(cfg)
        device = str(self.engine.device) if cfg.device == "auto" else cfg.device  # ring and detector follow the engine
        first = _resolve_detector(self.detector_arg, cfg.max_persons, device)
        # several sources share one detection stage where the detector batches (one forward, no state) and
        # the run batches (max_batch > 1); else a detector object is shared one call at a time, a spec makes one per source
        batched = self.multi and first.batchable and cfg.max_batch > 1
        shared = batched or isinstance(self.detector_arg, PersonDetector) or not self.multi
        self.detect_lock = threading.Lock() if shared and self.multi and not batched else None
        self.detect_batcher = DetectBatcher(first, self.st, min(cfg.max_batch, len(self.lanes)),
                                            cfg.max_wait_ms / 1e3) if batched else None
        for i, lane in enumerate(self.lanes):
            lane.detector = first if shared or i == 0 else _resolve_detector(self.detector_arg, cfg.max_persons, device)
        window = WindowSink() if cfg.show else None
        self.batcher = Batcher(self.engine, self.st, cfg.max_batch, cfg.max_wait_ms / 1e3)
        self.hub = _ResultsHub(self.lanes, self.stop_all, self.warn, engine_error=lambda: self.batcher.error)
        try:  # outputs first, then the source; on any failure close what was opened and delete the temporary files
            for lane in self.lanes:
                try:
                    self._open_outputs_and_source(lane)
                    self._build_threads(lane, window)
                except VmaedetError as exc:
                    if not self.multi:
                        raise
                    lane.opened.close()
                    lane.opened.discard()
                    lane.error = exc
                    self.warn(f"the source {lane.name} failed: {_in_words(exc)}; the other sources go on")
                    continue
                self.started.append(lane)
            if not self.started:
                raise self.lanes[0].error  # type: ignore[misc]
        except BaseException:
            for lane in self.lanes:
                lane.opened.close()
                lane.opened.discard()
            raise
        self.hub.left = len(self.started)
        self._record_info()
        self.batcher.start()
        if self.detect_batcher is not None:
            self.detect_batcher.add_producer(len(self.started))
            self.detect_batcher.start()
        for lane in self.started:
            if isinstance(lane.stats, SourceStats):
                lane.stats.started = time.monotonic()  # a source's clock runs from its threads' start to its end
            for t in (lane.writer, lane.worker, lane.reader):
                t.start()  # type: ignore[union-attr]

    def _cap_persons(self, cfg: StreamConfig) -> StreamConfig:
        """Keep at most as many persons per keyframe as the engine takes in one call (said once), not fail on a crowd."""
        limit = self.engine.max_persons
        if limit is None or cfg.max_persons <= limit:
            return cfg
        self.warn(f"the engine takes at most {limit} persons per call (its max_persons), fewer than the "
                  f"{cfg.max_persons} asked ({self.names['max_persons']}); each keyframe keeps its {limit} "
                  f"highest-scoring persons. For more, export again with max_persons ≥ {cfg.max_persons} "
                  f"(vmaedet export CKPT --max-persons {cfg.max_persons})")
        self.cfg = cfg = replace(cfg, max_persons=limit)
        for lane in self.lanes:
            lane.cfg = replace(lane.cfg, max_persons=limit)
        return cfg

    def _check_batching(self) -> None:
        cfg = self.cfg
        if not isinstance(cfg.max_batch, int) or cfg.max_batch < 1:
            raise ConfigError("the batch size (max_batch) must be at least 1", received=cfg.max_batch,
                              expected="an integer ≥ 1 (1: one engine call per keyframe)",
                              fix=f"set {self.names['max_batch']} to 1 or more")
        if not cfg.max_wait_ms >= 0:
            raise ConfigError("the batch wait (max_wait_ms) must not be negative", received=cfg.max_wait_ms,
                              expected="milliseconds ≥ 0", fix=f"set {self.names['max_wait_ms']} to 0 or more, e.g. 5")

    def _check_outputs(self) -> None:
        """Refuse bad output paths before the engine, the source or any output file is opened.

        Unwritable folders, a folder named as a file, a video suffix that is no container, an output that
        is also an input (it would be destroyed while read), two outputs naming one file, and an existing
        output without ``overwrite``.
        """
        outputs: dict[str, Path] = {}
        for lane in self.lanes:
            for key, path in lane.cfg.outputs().items():
                check_writable(path, self.what(key, lane), _EXAMPLE_SUFFIX[key])
                outputs[self._label(key, lane)] = path
        if self.cfg.stats:
            check_writable(self.cfg.stats, self.what("stats"), _EXAMPLE_SUFFIX["stats"])
            outputs[self.names["stats"]] = Path(self.cfg.stats)
        for lane in self.lanes:
            if lane.cfg.save:
                check_video_container(lane.cfg.save, self.what("save", lane))
        check_outputs(outputs, self._input_files(), overwrite=self.cfg.overwrite, overwrite_hint=self.names["overwrite"])

    def _input_files(self) -> dict[str, Path]:
        """The files a run reads, by their names in messages (an output naming one of them is refused)."""
        inputs: dict[str, Path] = {}
        for lane in self.lanes:
            source = lane.arg
            if isinstance(source, (str, Path)) and not str(source).isdigit() and "://" not in str(source):
                inputs[self._label("source", lane)] = Path(source)
        if isinstance(self.engine_arg, (str, Path)):
            inputs[self.names["engine"]] = Path(self.engine_arg)
        if isinstance(self.detector_arg, str) and (path := spec_input_file(self.detector_arg)) is not None:
            inputs[self.names["person_detector"]] = path
        return inputs

    def _open_outputs_and_source(self, lane: _Lane) -> None:
        opened, cfg, src = lane.opened, lane.cfg, lane.src
        assert src is not None and lane.detector is not None
        for key, path in cfg.outputs().items():  # one at a time: a later failure still discards the earlier ones
            opened.pending[key] = PendingOutput(path, self.what(key, lane))
        if "jsonl" in opened.pending:
            opened.jsonl = JsonlSink(opened.pending["jsonl"].tmp, what=self.what("jsonl", lane))
        if "csv" in opened.pending:
            opened.csv = AvaCsvSink(opened.pending["csv"].tmp, src.name, what=self.what("csv", lane))
        opened.source = src  # closing is idempotent, also after a failed open
        src.open()
        if msg := lane.detector.coverage_warning(src.name):
            self.warn(msg)

    def _build_threads(self, lane: _Lane, window: WindowSink | None) -> None:
        cfg, src, st, opened = lane.cfg, lane.src, lane.stats, lane.opened
        assert src is not None and lane.detector is not None
        live = src.live if cfg.realtime is None else cfg.realtime
        lane.ctx = RunContext.create(src, cfg, st, live, results=self.hub.lane(lane), name=lane.name)
        rate = getattr(src, "rate", None) or Fraction(src.fps).limit_denominator(1001)
        if opened.csv is not None:
            opened.csv.keyframe_spacing = cfg.stride / src.fps
        lane.writer = SinkWriter(lane.ctx.out, st, cfg.threshold, mp4=(Path(cfg.save), rate) if cfg.save else None,
                                 window=window, jsonl=opened.jsonl, csv=opened.csv, outputs=opened.pending,
                                 source=lane.name, save_preset=cfg.save_preset)
        lane.worker = StreamWorker(lane.ctx, self.engine, lane.detector, draws=lane.writer.draws, batcher=self.batcher,
                                   detect_lock=self.detect_lock, detect_batcher=self.detect_batcher, warn=self.warn)
        lane.reader = SourceReader(src, lane.ctx.frames, st, realtime=live)
        info = {"source": _source_text(lane), "video_id": src.name, "source_fps": src.fps, "live": live,
                "ring_capacity": lane.worker.ring.capacity, "frame_count": None if live else src.frame_count}
        if self.multi:
            st.info.update(info)
        else:
            st.info.update({**info, "mode": cfg.mode, "stride": cfg.stride, "engine": self.engine.describe()})

    def _record_info(self) -> None:
        if not self.multi:
            return
        counts = [lane.stats.info.get("frame_count") for lane in self.started]
        self.st.info.update({"sources": {}, "mode": self.cfg.mode, "stride": self.cfg.stride,
                             "engine": self.engine.describe(),
                             "frame_count": sum(counts) if counts and all(c for c in counts) else None})  # type: ignore[misc]

    # -- while and after the threads run -----------------------------------------------------
    def results(self) -> Iterator[ActionDetections]:
        """Yield each keyframe's result; on any exit stop the threads, finalise the outputs, write the stats."""
        completed = False
        try:
            while True:
                try:
                    yield self.hub.mailbox.get()
                except Closed:
                    completed = True
                    break
        finally:
            final_error = self._finish(completed)
        if not self.multi:
            writer = self.lanes[0].writer
            assert writer is not None
            if writer.error is not None:
                raise writer.error if isinstance(writer.error, VmaedetError) else StreamError(
                    f"an output failed: {type(writer.error).__name__}: {writer.error}") from writer.error
            if final_error is not None:
                raise final_error
            return
        failed = [lane for lane in self.lanes if lane.error is not None]
        engine_error = self.batcher.error
        if engine_error is not None and any(lane.error is engine_error for lane in failed):
            raise engine_error  # the action engine failed: every source stopped with it, not because of itself
        if failed:
            raise StreamError(f"{len(failed)} of {len(self.lanes)} sources failed: "
                              + "; ".join(f"{lane.name}: {_in_words(lane.error)}" for lane in failed),  # type: ignore[arg-type]
                              received=", ".join(_source_text(lane) for lane in failed),
                              expected="every source readable to its end",
                              fix="the other sources' outputs are complete; check the failed sources") from failed[0].error
        if final_error is not None:
            raise final_error

    def _finish(self, completed: bool) -> BaseException | None:
        """Join the threads, rename complete outputs into place, record what became of each; the first output error."""
        st = self.st
        if not completed:  # consumer stopped early, Ctrl-C, or a worker error
            self.stop_all.set()
            for lane in self.started:
                lane.ctx.stop.set()  # type: ignore[union-attr]
        for lane in self.started:
            _shutdown(lane.reader, lane.worker, lane.writer, lane.ctx.stop)  # type: ignore[arg-type, union-attr]
            lane.src.close()  # type: ignore[union-attr]
        self.batcher.close()
        self.batcher.join(timeout=30)
        if self.detect_batcher is not None:
            self.detect_batcher.close()
            self.detect_batcher.join(timeout=30)
        st.finish()
        final_error: BaseException | None = None
        written: list[str] = []
        failures: dict[str, str] = {}
        sources: dict[str, Any] = {}
        for lane in self.lanes:
            writer = lane.writer
            if lane in self.started:
                assert writer is not None and lane.reader is not None and lane.src is not None
                if self.multi:
                    lane.stats.finish()
                    if writer.error is not None:
                        lane.error = lane.error or writer.error
                lane.stats.info["frames_written"] = writer.mp4.frames if writer.mp4 is not None else 0
                if completed and lane.reader.ended and lane.error is None and (msg := _shortfall(lane.src)):
                    lane.stats.info["source_truncated"] = {"frames_read": lane.stats.counters.get("frames_read", 0),
                                                           "frames_declared": lane.src.frame_count}
                    self.warn(msg)
                error = lane.opened.finalise(writer, self.warn, {k: self._label(k, lane) for k in self.names})
                final_error = final_error or error
            written += [str(p) for p in lane.opened.written]
            failures.update({label: _in_words(exc) for label, exc in lane.opened.errors.items()})
            sources[lane.name] = {**lane.stats.source_summary(), "video_id": lane.stats.info.get("video_id"),
                                  "frames_written": lane.stats.info.get("frames_written", 0),
                                  "error": None if lane.error is None else _in_words(lane.error)}
        if self.multi:
            st.info["frames_written"] = sum(src["frames_written"] for src in sources.values())
        st.info["sources"], st.info["batcher"] = sources, self.batcher.summary()
        if self.detect_batcher is not None:
            st.info["detect_batcher"] = self.detect_batcher.summary()
        # What became of each output, also for a run stopped early (Ctrl-C, ``close()``), where the errors
        # are not raised: ``info["outputs_written"]`` lists the targets renamed into place,
        # ``info["output_errors"]`` maps each failed output to its error in words. The stats JSON is added
        # after its own write (so its JSON lists the other outputs).
        st.info["outputs_written"], st.info["output_errors"] = written, failures
        if self.cfg.stats:
            try:
                write_stats_json(st, self.cfg.stats, what=self.what("stats"))
            except VmaedetError as exc:  # raised unless another error is already on its way
                final_error = final_error or exc
                failures[self.names["stats"]] = _in_words(exc)
            else:
                written.append(str(self.cfg.stats))
        return final_error


def _warner(st: StreamStats, on_warning: Callable[[str], None] | None) -> Callable[[str], None]:
    def warn(message: str) -> None:
        st.warnings.append(message)
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(message, StreamWarning, stacklevel=3)

    return warn


def _shortfall(src: Source) -> str | None:
    fn = getattr(src, "shortfall", None)
    return fn() if callable(fn) else None


def _in_words(exc: BaseException) -> str:
    """One line for an output's error: an OutputError's sentence (file and cause), else the cause in words."""
    if isinstance(exc, VmaedetError):
        return exc.what
    return f"an output failed: {os_error_reason(exc)}"


@dataclass
class _Opened:
    """What a run opened before its threads own it (closed if the set-up fails)."""

    jsonl: JsonlSink | None = None
    csv: AvaCsvSink | None = None
    source: Source | None = None
    pending: dict[str, PendingOutput] = field(default_factory=dict)  #: output key (``save``, …) → its file
    written: list[Path] = field(default_factory=list)  #: targets renamed into place by :meth:`finalise`
    errors: dict[str, BaseException] = field(default_factory=dict)  #: output's name in messages → its error

    def close(self) -> None:
        for part in (self.jsonl, self.csv, self.source):
            if part is not None:
                part.close()

    def discard(self) -> None:
        for pending in self.pending.values():
            pending.discard()

    def finalise(self, writer: SinkWriter, warn: Callable[[str], None], names: Mapping[str, str]) -> BaseException | None:
        """Rename each complete output over its target; delete failed ones (and a video with no frame)."""
        error: BaseException | None = None
        for key, pending in self.pending.items():
            label = names[key]
            if pending.failed:
                pending.discard()
                self.errors[label] = pending.last_error or OutputError(
                    f"could not write {pending.what} {pending.target}", received=repr(writer.error),
                    expected="a writable path with free space", fix="nothing was written there")
            elif key == "save" and writer.mp4 is None:
                pending.discard()
                if writer.error is None:
                    warn(f"no frame reached the video output, so {pending.target} was not written")
            else:
                try:
                    self.written.append(pending.commit())
                except VmaedetError as exc:
                    error = error or exc
                    self.errors[label] = exc
        if writer.error is not None and not any(e is writer.error for e in self.errors.values()):
            self.errors["writer"] = writer.error  # not an output's own write (e.g. the window)
        return error


def _shutdown(reader: SourceReader, worker: StreamWorker, writer: SinkWriter, stop: threading.Event) -> None:
    """Join the threads in data order; a reader blocked inside a source read is left (daemon)."""
    worker.join(timeout=120)
    if worker.is_alive():
        stop.set()
        worker.join(timeout=30)
    writer.join(timeout=120)
    stop.set()
    reader.join(timeout=2)
