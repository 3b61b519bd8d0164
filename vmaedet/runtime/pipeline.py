"""The streaming pipeline: reader → worker → writer threads, and the ``stream()`` generator.

* **reader** (:class:`~vmaedet.runtime.sources.SourceReader`): source → bounded mailbox;
  live sources are latest-frame-wins (drops counted), files are lossless (blocking hand-over).
* **worker** (:class:`StreamWorker`): each frame is preprocessed once into the clip ring (if any
  keyframe can sample it); on keyframes the person detector and the tracker run; when a
  keyframe's clip is complete the action engine runs **once** with all K persons, then scores are
  smoothed per track and events close.
* **writer** (:class:`~vmaedet.runtime.sinks.SinkWriter`): overlay, window, mp4, JSONL, CSV.

For lossless sources every frame is written, drawn with the result of the latest keyframe at or
before it (frames wait in a bounded display ring until that result exists); for live sources
frames are drawn at once with the newest result.  All queues are bounded, one ``stop`` event is
shared, and an error in any thread ends the run with that error (never a hang).

The options of a run are one frozen :class:`~vmaedet.runtime.config.StreamConfig`; messages name
options by the caller's words (``names``: the CLI passes its flags), never by CLI flags of their own.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from vmaedet.engines.base import Engine, artifact_backend, list_engines, open_engine
from vmaedet.errors import ConfigError, OutputError, StreamError, VmaedetError
from vmaedet.ops.boxes import make_rois
from vmaedet.persons.base import PersonDetector, create_person_detector, spec_input_file
from vmaedet.runtime.buffer import ClipRing, DisplayRing
from vmaedet.runtime.config import DEFAULT_NAMES, StreamConfig
from vmaedet.runtime.scheduler import KeyJob, Scheduler
from vmaedet.runtime.sinks import (AvaCsvSink, JsonlSink, PendingOutput, SinkWriter, WindowSink, check_video_container,
                                   check_writable, write_stats_json)
from vmaedet.runtime.smoothing import ScoreSmoother
from vmaedet.runtime.sources import Closed, Frame, Mailbox, Source, SourceReader, open_source
from vmaedet.runtime.stats import StreamStats
from vmaedet.runtime.tracking import PersonTracker
from vmaedet.safeio import check_outputs, os_error_reason
from vmaedet.structures import ActionDetections

__all__ = ["StreamConfig", "StreamWarning", "StreamWorker", "stream"]

#: Suffixes of checkpoints (a path with another suffix and a backend other than torch is an artifact).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
#: The file name suggested when an output names a folder.
_EXAMPLE_SUFFIX = {"save": ".mp4", "jsonl": ".jsonl", "csv": ".csv", "stats": ".json"}


@dataclass(frozen=True)
class RunContext:
    """What the reader, worker and writer threads of one run share."""

    source: Source
    config: StreamConfig
    stats: StreamStats
    live: bool  #: latest-frame-wins (drops frames) instead of lossless
    stop: threading.Event
    frames: Mailbox[Frame]
    out: Mailbox[tuple[str, Any]]
    results: Mailbox[ActionDetections]

    @classmethod
    def create(cls, source: Source, config: StreamConfig, stats: StreamStats, live: bool) -> "RunContext":
        stop = threading.Event()
        return cls(source, config, stats, live, stop,
                   frames=Mailbox(1 if live else config.queue_size, "latest" if live else "wait", stop),
                   out=Mailbox(config.queue_size, "wait", stop, wait_for_close=True),
                   results=Mailbox(256, "wait", stop))


class StreamWorker(threading.Thread):
    """Worker thread: ring, schedule, detect, track, infer (one call per keyframe), smooth.

    Args:
        ctx: the run's source, options, stats and mailboxes.
        engine: the action engine.
        detector: the person detector.
        draws: frames go to the writer (something draws them: a video output or a window).
    """

    def __init__(self, ctx: RunContext, engine: Engine, detector: PersonDetector, draws: bool) -> None:
        super().__init__(name="vmaedet-worker", daemon=True)
        source, cfg = ctx.source, ctx.config
        self.source, self.frames, self.out, self.results = source, ctx.frames, ctx.out, ctx.results
        self.engine, self.detector, self.cfg, self.stats = engine, detector, cfg, ctx.stats
        self.lossless, self.draws = not ctx.live, draws
        self.sched = Scheduler(cfg.mode, cfg.stride, source.fps, lossless=self.lossless)
        span = self.sched.offsets[-1] - self.sched.offsets[0]
        self.ring = ClipRing(capacity=math.ceil(span * source.fps) + cfg.stride + 4, device=engine.device,
                             short_side=engine.short_side)
        lead = max(0.0, float(self.sched.offsets[-1]))
        self.display = DisplayRing(capacity=math.ceil(lead * source.fps) + 2 * cfg.stride + 4)
        self.tracker = PersonTracker(keyframe_rate=source.fps / cfg.stride)
        self.smoother = ScoreSmoother(alpha=cfg.ema_alpha, on=cfg.threshold,
                                      max_missed=max(1, round(2.0 * source.fps / cfg.stride)))
        self.pending: list[KeyJob] = []
        self.last: Frame | None = None
        self.max_ring_bytes = 0
    # -- per frame ---------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        self.stats.incr("frames_processed")
        self.last = frame
        if self.sched.wants(frame.index):
            with self.stats.time("preprocess"):
                self.ring.push(frame)
        if self.sched.is_keyframe(frame.index):
            self.pending.append(self._keyjob(frame))
        if self.draws:  # frames go to the writer only when something draws them
            self._show(self.display.push(frame) if self.lossless else [frame])
        while self.pending and self.sched.is_ready(self.pending[0], frame.time):
            self._run(self.pending.pop(0))
        self.ring.evict_before(self.sched.horizon(self.pending, frame.time))
        self.max_ring_bytes = max(self.max_ring_bytes, self.ring.nbytes())
        if self.lossless:
            self._show(self.display.release(self.pending[0].index if self.pending else None))

    def _keyjob(self, frame: Frame) -> KeyJob:
        with self.stats.time("detect"):
            det = self.detector.detect(frame.image, frame_index=frame.index, timestamp=frame.time, video_id=self.source.name)
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
        with self.stats.time("preprocess"):
            idx = job.index + self.sched.index_offsets if self.sched.lossless else None
            clip, picks = self.ring.clip(job.targets, idx)  # [1, 3, 16, Hp, Wp]
        with self.stats.time("action"):
            logits = self.engine.infer(clip, self._rois(job))  # [N, 80]
        with self.stats.time("post"):
            raw = torch.sigmoid(logits.float()).numpy() * job.person_scores[:, None]  # [N, 80]
            smoothed, closed = self.smoother.update(job.track_ids, raw, job.time, job.index)
        latency = time.monotonic() - job.captured
        self.stats.add("glass_to_result", latency)
        result = ActionDetections(job.boxes, job.person_scores, smoothed, track_ids=job.track_ids,
                                  raw_scores=raw.astype(np.float32), frame_index=job.index, timestamp=job.time,
                                  latency=latency, image_wh=job.image_wh, clip_frames=picks)
        self.out.put(("result", result))
        if closed:
            self.out.put(("events", closed))
        self.results.put(result)

    def _show(self, frames: list[Frame]) -> None:
        for f in frames:
            self.out.put(("frame", f))

    def _finish(self) -> None:
        """End of a source: clips beyond the last frame take the last frame (the seed's clamp)."""
        if self.last is not None and self.last.index not in self.ring:
            self.ring.push(self.last)
        for job in self.pending:
            self._run(job)
        self.pending.clear()

    def run(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                try:
                    frame = self.frames.get()
                except Closed:
                    break
                self._on_frame(frame)
            if not self.frames.stop.is_set():
                self._finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            error = exc if isinstance(exc, VmaedetError) else StreamError(
                f"the stream worker failed: {type(exc).__name__}: {exc}", fix="outputs written so far are complete")
            if error is not exc:
                error.__cause__ = exc
            self.frames.stop.set()
        finally:
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
            export = (f"vmaedet export {path} --format onnx --out exports/" if backend == "onnxruntime" else
                      f"vmaedet export {path} --trt --out exports/")
            raise ConfigError(f"the {backend} backend runs an exported artifact, not a checkpoint", received=str(path),
                              expected="a checkpoint with the torch backend, or an exported artifact",
                              fix=f"run the checkpoint with the torch backend, or export it first ({export}) "
                                  "and run the file it writes")
        return open_engine(path, "torch", device=_auto_device() if device == "auto" else device)
    chosen = None if backend == "torch" else backend  # torch (the default): the artifact's manifest decides
    name = (artifact_backend(path) or backend) if chosen is None else chosen
    if device == "auto":
        if name == "onnxruntime":  # the engine picks CUDA only where its provider exists and a GPU is seen
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


def stream(source: str | int | Path | Source, engine: Engine | str | Path, config: StreamConfig | None = None, *,
           person_detector: PersonDetector | str = "ssdlite", stats: StreamStats | None = None,
           on_warning: Callable[[str], None] | None = None,
           names: Mapping[str, str] | None = None) -> Iterator[ActionDetections]:
    """Run action detection on a stream; yields one :class:`~vmaedet.structures.ActionDetections` per keyframe.

    Args:
        source: camera index, URL (rtsp://, http://), video file, image folder, or a Source.
        engine: an :class:`~vmaedet.engines.base.Engine`, a checkpoint (``.safetensors``; torch) or an
            exported artifact (``.onnx``, TensorRT plan).
        config: the run's options and outputs (:class:`~vmaedet.runtime.config.StreamConfig`; default: its defaults).
        person_detector: a :class:`~vmaedet.persons.base.PersonDetector` or its spec ("ssdlite",
            "motion", "onnx:PATH", "boxes:FILE"), created with ``config.max_persons`` and the run's device.
        stats: a StreamStats to fill (e.g. to watch the counters while the run goes); the JSON summary
            goes to ``config.stats``.
        on_warning: called with each warning of the run (a source cut short, proposals without this video);
            default: :func:`warnings.warn` with :class:`StreamWarning`. Warnings also go to the stats.
        names: how messages name the options (keys of :data:`~vmaedet.runtime.config.DEFAULT_NAMES`: the
            outputs, ``source``, ``engine``, ``person_detector`` and ``overwrite``); the CLI passes its flags.

    Each result carries ``frame_index``, ``timestamp``, ``latency``, ``image_wh``, ``clip_frames``;
    ``action_scores`` are smoothed per track (raw for track id −1), ``raw_scores`` are the seed's.

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
    """
    run = _Run(source, engine, config or StreamConfig(), person_detector, stats or StreamStats(), on_warning,
               {**DEFAULT_NAMES, **(names or {})})
    run.start()
    yield from run.results()


class StreamWarning(UserWarning):
    """A stream ran, but something about its input deserves a word (a file cut short, no proposals)."""


class _Run:
    """One run of :func:`stream`: checks, opens, starts the threads, hands out results, finalises outputs."""

    def __init__(self, source: str | int | Path | Source, engine: Engine | str | Path, cfg: StreamConfig,
                 person_detector: PersonDetector | str, st: StreamStats, on_warning: Callable[[str], None] | None,
                 names: Mapping[str, str]) -> None:
        self.source_arg, self.engine_arg, self.detector_arg = source, engine, person_detector
        self.cfg, self.st, self.names = cfg, st, names
        self.warn = _warner(st, on_warning)
        self.opened = _Opened()

    def what(self, key: str) -> str:
        """How messages name an output (``"the --jsonl output"`` from the CLI, ``"the jsonl output"`` here)."""
        return f"the {self.names[key]} JSON" if key == "stats" else f"the {self.names[key]} output"

    # -- before the threads ------------------------------------------------------------------
    def start(self) -> None:
        """Check the options and outputs, open engine, detector, outputs and source, start the threads."""
        cfg = self.cfg
        Scheduler(cfg.mode, cfg.stride)  # validate options before opening anything
        self._check_outputs()
        self.src = open_source(self.source_arg, fps=cfg.fps)
        self.engine = _open_engine(self.engine_arg, cfg.backend, cfg.device)
        device = str(self.engine.device) if cfg.device == "auto" else cfg.device  # ring and detector follow the engine
        self.detector = _resolve_detector(self.detector_arg, cfg.max_persons, device)
        window = WindowSink() if cfg.show else None
        try:  # outputs first, then the source; on any failure close what was opened and delete the temporary files
            self._open_outputs_and_source()
            self._build_threads(window)
        except BaseException:
            self.opened.close()
            self.opened.discard()
            raise
        for t in (self.writer, self.worker, self.reader):
            t.start()

    def _check_outputs(self) -> None:
        """Refuse bad output paths before the engine, the source or any output file is opened.

        Unwritable folders, a folder named as a file, a video suffix that is no container, an output that
        is also an input (it would be destroyed while read), two outputs naming one file, and an existing
        output without ``overwrite``.
        """
        outputs = self.cfg.outputs()
        for key, path in outputs.items():
            check_writable(path, self.what(key), _EXAMPLE_SUFFIX[key])
        if "save" in outputs:
            check_video_container(outputs["save"], self.what("save"))
        check_outputs({self.names[k]: v for k, v in outputs.items()}, self._input_files(),
                      overwrite=self.cfg.overwrite, overwrite_hint=self.names["overwrite"])

    def _input_files(self) -> dict[str, Path]:
        """The files a run reads, by their names in messages (an output naming one of them is refused)."""
        inputs: dict[str, Path] = {}
        source = self.source_arg
        if isinstance(source, (str, Path)) and not str(source).isdigit() and "://" not in str(source):
            inputs[self.names["source"]] = Path(source)
        if isinstance(self.engine_arg, (str, Path)):
            inputs[self.names["engine"]] = Path(self.engine_arg)
        if isinstance(self.detector_arg, str) and (path := spec_input_file(self.detector_arg)) is not None:
            inputs[self.names["person_detector"]] = path
        return inputs

    def _open_outputs_and_source(self) -> None:
        opened, cfg = self.opened, self.cfg
        for key, path in cfg.outputs().items():  # one at a time: a later failure still discards the earlier ones
            if key != "stats":  # the stats JSON is written atomically at the end
                opened.pending[key] = PendingOutput(path, self.what(key))
        if "jsonl" in opened.pending:
            opened.jsonl = JsonlSink(opened.pending["jsonl"].tmp, what=self.what("jsonl"))
        if "csv" in opened.pending:
            opened.csv = AvaCsvSink(opened.pending["csv"].tmp, self.src.name, what=self.what("csv"))
        opened.source = self.src  # closing is idempotent, also after a failed open
        self.src.open()
        if msg := self.detector.coverage_warning(self.src.name):
            self.warn(msg)

    def _build_threads(self, window: WindowSink | None) -> None:
        cfg, src, st, opened = self.cfg, self.src, self.st, self.opened
        live = src.live if cfg.realtime is None else cfg.realtime
        self.ctx = RunContext.create(src, cfg, st, live)
        rate = getattr(src, "rate", None) or Fraction(src.fps).limit_denominator(1001)
        if opened.csv is not None:
            opened.csv.keyframe_spacing = cfg.stride / src.fps
        self.writer = SinkWriter(self.ctx.out, st, cfg.threshold, mp4=(Path(cfg.save), rate) if cfg.save else None,
                                 window=window, jsonl=opened.jsonl, csv=opened.csv, outputs=opened.pending)
        self.worker = StreamWorker(self.ctx, self.engine, self.detector, draws=self.writer.draws)
        self.reader = SourceReader(src, self.ctx.frames, st, realtime=live)
        st.info.update({"source": str(self.source_arg), "video_id": src.name, "fps": src.fps, "live": live,
                        "mode": cfg.mode, "stride": cfg.stride, "engine": self.engine.describe(),
                        "ring_capacity": self.worker.ring.capacity, "frame_count": None if live else src.frame_count})

    # -- while and after the threads run -----------------------------------------------------
    def results(self) -> Iterator[ActionDetections]:
        """Yield each keyframe's result; on any exit stop the threads, finalise the outputs, write the stats."""
        completed = False
        try:
            while True:
                try:
                    yield self.ctx.results.get()
                except Closed:
                    completed = True
                    break
        finally:
            final_error = self._finish(completed)
        writer = self.writer
        if writer.error is not None:
            raise writer.error if isinstance(writer.error, VmaedetError) else StreamError(
                f"an output failed: {type(writer.error).__name__}: {writer.error}") from writer.error
        if final_error is not None:
            raise final_error

    def _finish(self, completed: bool) -> BaseException | None:
        """Join the threads, rename complete outputs into place, record what became of each; the first output error."""
        st, src = self.st, self.src
        if not completed:  # consumer stopped early, Ctrl-C, or a worker error
            self.ctx.stop.set()
        _shutdown(self.reader, self.worker, self.writer, self.ctx.stop)
        src.close()
        st.finish()
        st.info["frames_written"] = self.writer.mp4.frames if self.writer.mp4 is not None else 0
        if completed and self.reader.ended and (msg := _shortfall(src)):
            st.info["source_truncated"] = {"frames_read": st.counters.get("frames_read", 0),
                                           "frames_declared": src.frame_count}
            self.warn(msg)
        final_error = self.opened.finalise(self.writer, self.warn, self.names)
        # What became of each output, also for a run stopped early (Ctrl-C, ``close()``), where the errors
        # are not raised: ``info["outputs_written"]`` lists the targets renamed into place,
        # ``info["output_errors"]`` maps each failed output to its error in words. The stats JSON is added
        # after its own write (so its JSON lists the other outputs).
        written = [str(p) for p in self.opened.written]
        failures = {label: _in_words(exc) for label, exc in self.opened.errors.items()}
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
