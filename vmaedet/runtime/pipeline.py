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
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vmaedet.engines.base import Engine, create_engine, list_engines
from vmaedet.errors import ConfigError, OutputError, StreamError, VmaedetError
from vmaedet.ops.boxes import make_rois
from vmaedet.safeio import check_outputs, os_error_reason
from vmaedet.runtime.buffer import ClipRing, DisplayRing
from vmaedet.runtime.scheduler import KeyJob, Scheduler
from vmaedet.runtime.sinks import (AvaCsvSink, JsonlSink, PendingOutput, SinkWriter, WindowSink, check_video_container, check_writable,
                    top_actions, write_stats_json)
from vmaedet.runtime.smoothing import ScoreSmoother
from vmaedet.runtime.sources import Closed, Frame, Mailbox, Source, SourceReader, open_source
from vmaedet.runtime.stats import StreamStats
from vmaedet.runtime.tracking import PersonTracker


@dataclass
class StreamResult:
    """The action detections of one keyframe.

    Boxes are xyxy pixels of the source frame; ``scores`` are smoothed per track (raw for track
    id −1), ``raw_scores`` = sigmoid(logit) × person score (the seed's post-processing).
    """

    frame_index: int
    timestamp: float  #: seconds
    boxes: np.ndarray  #: [N, 4] float32
    track_ids: np.ndarray  #: [N] int64, −1 = not tracked yet
    scores: np.ndarray  #: [N, 80] float32 smoothed
    raw_scores: np.ndarray  #: [N, 80] float32
    person_scores: np.ndarray  #: [N] float32
    image_wh: tuple[int, int] = (0, 0)
    latency: float = 0.0  #: glass-to-result seconds (capture of the keyframe → result)
    clip_frames: list[int] = field(default_factory=list)  #: source indices of the 16 sampled frames

    def __post_init__(self) -> None:
        n = len(self.boxes)
        expected = {"boxes": (n, 4), "track_ids": (n,), "scores": (n, 80), "raw_scores": (n, 80), "person_scores": (n,)}
        for name, shape in expected.items():
            got = tuple(np.shape(getattr(self, name)))
            if got != shape:
                raise StreamError(f"StreamResult.{name} has the wrong shape", received=got, expected=shape)

    def __len__(self) -> int:
        return len(self.boxes)

    def top_actions(self, threshold: float = 0.4, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per person, the ≤ k best (name, smoothed score) pairs ≥ ``threshold``."""
        return [top_actions(s, threshold, k) for s in self.scores]

    def to_json(self, threshold: float = 0.0) -> str:
        """One JSON line: keyframe, persons with track id, box, person score and actions ≥ threshold."""
        persons = []
        for i in range(len(self)):
            ids = np.flatnonzero(self.scores[i] >= threshold)
            persons.append({
                "track_id": int(self.track_ids[i]),
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "person_score": round(float(self.person_scores[i]), 5),
                "actions": {int(a) + 1: round(float(self.scores[i, a]), 5) for a in ids},
            })
        return json.dumps({"type": "keyframe", "frame_index": self.frame_index, "timestamp": round(self.timestamp, 4),
                           "latency_ms": round(self.latency * 1e3, 2), "persons": persons})

    def to_csv_rows(self, video_id: str, timestamp: int | None = None, smoothed: bool = False) -> list[str]:
        """AVA rows ``video,TTTT,x1,y1,x2,y2,action_id,score`` in the seed's format.

        Boxes are normalised by the frame size with the seed's +1 on x2/y2 and clipped to [0, 1];
        all 80 actions per person; ``'{:.5f}'``; the timestamp is ``%04d`` of ``timestamp`` (default:
        the keyframe time rounded to whole seconds).  Scores are the raw seed scores unless ``smoothed``.
        """
        w, h = self.image_wh
        if w <= 0 or h <= 0:
            raise StreamError("to_csv_rows needs the frame size", received=self.image_wh, expected="(W, H) > 0")
        from vmaedet.data.detections import detections_to_rows

        ts = int(round(self.timestamp)) if timestamp is None else int(timestamp)
        scores = self.scores if smoothed else self.raw_scores
        # Boxes are already in original pixels: the seed's conversion with resized = original size.
        rows = detections_to_rows(self.boxes, scores, video_id, ts, (w, h), (w, h))
        return [f"{v},{t:04d},{x1:.5f},{y1:.5f},{x2:.5f},{y2:.5f},{a},{sc:.5f}" for v, t, x1, y1, x2, y2, a, sc in rows]


@dataclass
class StreamConfig:
    """Options of one streaming run (see :func:`stream`)."""

    stride: int = 8  #: frames between keyframes
    threshold: float = 0.4  #: action score shown/turned on (hysteresis off at 0.75·threshold)
    mode: str = "centered"  #: "centered" (seed alignment) or "causal" (clip ends at the keyframe)
    max_persons: int = 32  #: persons per keyframe (highest detector scores kept)
    realtime: bool | None = None  #: latest-frame-wins; None = live sources only
    ema_alpha: float = 0.6  #: EMA weight of the newest score
    queue_size: int = 32  #: capacity of the lossless frame/writer queues


class StreamWorker(threading.Thread):
    """Worker thread: ring, schedule, detect, track, infer (one call per keyframe), smooth."""

    def __init__(self, source: Source, frames: Mailbox[Frame], out: Mailbox[tuple[str, Any]], results: Mailbox[StreamResult],
                 engine: Engine, detector: Any, cfg: StreamConfig, stats: StreamStats, lossless: bool, draws: bool) -> None:
        super().__init__(name="vmaedet-worker", daemon=True)
        self.source, self.frames, self.out, self.results = source, frames, out, results
        self.engine, self.detector, self.cfg, self.stats = engine, detector, cfg, stats
        self.lossless, self.draws = lossless, draws
        self.sched = Scheduler(cfg.mode, cfg.stride, source.fps, lossless=lossless)
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
        result = StreamResult(job.index, job.time, job.boxes, job.track_ids, smoothed, raw.astype(np.float32),
                              job.person_scores, job.image_wh, latency, picks)
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


def _resolve_engine(checkpoint: str | Path | None, engine: Engine | str | Path | None, backend: str, device: str) -> Engine:
    if isinstance(engine, Engine):
        return engine
    if (checkpoint is None) == (engine is None):
        raise ConfigError("give exactly one of a checkpoint or an engine artifact",
                          received=f"checkpoint={checkpoint}, engine={engine}",
                          expected="--checkpoint model.safetensors or --engine model.onnx")
    known = list_engines()
    if backend not in known:  # before any suggestion that names it
        fix = (f"drop --backend: the torch backend runs {checkpoint} as it is" if checkpoint is not None else
               f"use --backend onnxruntime for {engine} if it is an .onnx file, or --backend tensorrt for a TensorRT plan")
        raise ConfigError(f"unknown backend {backend!r}", received=backend, expected=" | ".join(known), fix=fix)
    if checkpoint is not None:
        if backend != "torch":
            artifact = "FILE.onnx" if backend == "onnxruntime" else "FILE.engine"
            how = "--format onnx" if backend == "onnxruntime" else "--trt"
            raise ConfigError(f"the {backend} backend runs an exported artifact, not a checkpoint", received=str(checkpoint),
                              expected="--checkpoint with --backend torch, or --engine ARTIFACT",
                              fix=f"drop --backend {backend} to run the checkpoint with torch, or export it first "
                                  f"(vmaedet export {checkpoint} {how} --out exports/) and pass the file it writes "
                                  f"as --engine exports/{artifact} --backend {backend}")
        return create_engine("torch", checkpoint, device=_auto_device() if device == "auto" else device)
    path = Path(str(engine))
    suffix_backend = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}.get(path.suffix)
    name = suffix_backend if backend == "torch" and suffix_backend else backend
    if device == "auto":
        if name == "onnxruntime":  # the engine picks CUDA only where its provider exists and a GPU is seen
            return create_engine(name, path, device=None)
        device = _auto_device()
        received = "device 'auto' and no CUDA GPU is visible to torch"
    else:
        received = f"device {device!r}"
    if name == "tensorrt" and not str(device).startswith("cuda"):
        raise ConfigError("a TensorRT engine runs on a CUDA GPU, not on the CPU", received=received,
                          expected="device cuda or cuda:N on a machine with an NVIDIA GPU",
                          fix=f"run {path.name} on a GPU machine, or run the .onnx export on the CPU")
    # the artifact runs where --device says: onnxruntime's CUDA provider on cuda[:N], its CPU provider on
    # cpu (refusing, never falling back, when the GPU provider cannot run); TensorRT on that GPU
    return create_engine(name, path, device=device)


def _resolve_detector(detector: Any, max_persons: int, device: str) -> Any:
    if hasattr(detector, "detect"):
        return detector
    from vmaedet.persons.base import create_person_detector

    return create_person_detector(str(detector), max_persons=max_persons, device=device)


def stream(source: str | int | Path | Source, *, checkpoint: str | Path | None = None, engine: Engine | str | Path | None = None,
           backend: str = "torch", detector: Any = "ssdlite", stride: int = 8, threshold: float = 0.4,
           mode: str = "centered", max_persons: int = 32, realtime: bool | None = None, save: str | Path | None = None,
           jsonl: str | Path | None = None, csv: str | Path | None = None, show: bool = False,
           stats: str | Path | StreamStats | None = None, device: str = "auto", fps: float = 25.0,
           overwrite: bool = False, overwrite_hint: str = "overwrite=True",
           on_warning: Callable[[str], None] | None = None) -> Iterator[StreamResult]:
    """Run action detection on a stream; yields one :class:`StreamResult` per keyframe.

    Args:
        source: camera index, URL (rtsp://, http://), video file, image folder, or a Source.
        checkpoint: model checkpoint (torch backend) — or ``engine``: an exported artifact or an Engine.
        backend: torch, onnxruntime or tensorrt.
        detector: person detector spec ("ssdlite", "motion", "onnx:PATH", "boxes:FILE") or an
            object with ``detect(frame_rgb, frame_index=, timestamp=, video_id=)``.
        stride: frames between keyframes (one action inference per keyframe).
        threshold: action score threshold (overlay, hysteresis on).
        mode: "centered" (the seed's alignment, results ~1.2 s late) or "causal".
        max_persons: persons per keyframe.
        realtime: latest-frame-wins with dropping; default True for cameras/URLs, False for files.
        save / jsonl / csv: video with overlays (.mp4, .mkv, .mov, .avi, .ts), JSONL events, AVA CSV rows (1 Hz).
        show: display a window.
        stats: path of a JSON stats file, or a StreamStats to fill (written to its ``path``, if any).
        device: device of the clip ring and the engine: ``"cpu"``, ``"cuda[:N]"`` or ``"auto"`` (the default:
            a given Engine's own device, else CUDA when a GPU is visible, else the CPU).
        fps: frame rate of an image folder.
        overwrite: replace existing output files (otherwise an existing output is refused before anything opens).
        overwrite_hint: how the caller's user says "overwrite" in the refusal (the CLI passes ``"--overwrite"``).
        on_warning: called with each warning of the run (a source cut short, proposals without this video);
            default: :func:`warnings.warn` with :class:`StreamWarning`. Warnings also go to the stats.

    Outputs are written under temporary names beside their targets and renamed when the run ends —
    also when it is stopped early (Ctrl-C, ``close()`` of the generator, a source failing mid-stream),
    then with everything processed so far. An output whose own write fails (no space left, read-only)
    is removed and the :class:`~vmaedet.errors.OutputError` names it; an existing file is replaced only
    at the final rename, and only with ``overwrite``. A run stopped early raises no output error; the
    StreamStats (``stats``) then says what happened: ``info["outputs_written"]`` (the files renamed into
    place) and ``info["output_errors"]`` (each failed output → its error in words).

    Example:
        >>> for r in stream("video.mp4", checkpoint="model.safetensors", detector="ssdlite"):  # doctest: +SKIP
        ...     print(r.frame_index, r.track_ids, r.top_actions())
    """
    cfg = StreamConfig(stride=stride, threshold=threshold, mode=mode, max_persons=max_persons, realtime=realtime)
    Scheduler(mode, stride)  # validate options before opening anything
    st = stats if isinstance(stats, StreamStats) else StreamStats(stats)
    stats_path = st.path
    files = {"--save": save, "--jsonl": jsonl, "--csv": csv}
    _check_outputs(files, stats_path, _input_files(source, checkpoint, engine, detector), overwrite, overwrite_hint)
    warn = _warner(st, on_warning)
    src = open_source(source, fps=fps)
    eng = _resolve_engine(checkpoint, engine, backend, device)
    if device == "auto":  # the ring and the person detector follow the engine
        device = str(eng.device)
    det = _resolve_detector(detector, max_persons, device)
    window = WindowSink() if show else None
    sinks = _Opened()
    try:  # outputs first, then the source; on any failure close what was opened and delete the temporary files
        for label, path in files.items():  # one at a time: a later failure still discards the earlier ones
            if path:
                sinks.pending[label] = _PendingOutput(path, label)
        sinks.jsonl = JsonlSink(sinks.pending["--jsonl"].tmp) if jsonl else None
        sinks.csv = AvaCsvSink(sinks.pending["--csv"].tmp, src.name) if csv else None
        sinks.source = src  # closing is idempotent, also after a failed open
        src.open()
        live = src.live if realtime is None else realtime
        coverage = getattr(det, "coverage_warning", None)
        if callable(coverage) and (msg := coverage(src.name)):
            warn(msg)
        stop = threading.Event()
        frames: Mailbox[Frame] = Mailbox(1 if live else cfg.queue_size, "latest" if live else "wait", stop)
        out: Mailbox[tuple[str, Any]] = Mailbox(cfg.queue_size, "wait", stop, wait_for_close=True)
        results: Mailbox[StreamResult] = Mailbox(256, "wait", stop)
        rate = getattr(src, "rate", None) or Fraction(src.fps).limit_denominator(1001)
        if sinks.csv is not None:
            sinks.csv.keyframe_spacing = stride / src.fps
        writer = SinkWriter(out, st, threshold, mp4=(Path(save), rate) if save else None, window=window,
                            jsonl=sinks.jsonl, csv=sinks.csv, outputs=sinks.pending)
        worker = StreamWorker(src, frames, out, results, eng, det, cfg, st, lossless=not live, draws=writer.draws)
        reader = SourceReader(src, frames, st, realtime=live)
        st.info.update({"source": str(source), "video_id": src.name, "fps": src.fps, "live": live, "mode": mode,
                        "stride": stride, "engine": eng.describe(), "ring_capacity": worker.ring.capacity,
                        "frame_count": None if live else src.frame_count})
    except BaseException:
        sinks.close()
        sinks.discard()
        raise
    threads = (writer, worker, reader)
    for t in threads:
        t.start()
    completed = False
    final_error: BaseException | None = None
    try:
        while True:
            try:
                yield results.get()
            except Closed:
                completed = True
                break
    finally:
        if not completed:  # consumer stopped early, Ctrl-C, or a worker error
            stop.set()
        _shutdown(reader, worker, writer, stop)
        src.close()
        st.finish()
        st.info["frames_written"] = writer.mp4.frames if writer.mp4 is not None else 0
        if completed and reader.ended and (msg := _shortfall(src)):
            st.info["source_truncated"] = {"frames_read": st.counters.get("frames_read", 0),
                                           "frames_declared": src.frame_count}
            warn(msg)
        final_error = sinks.finalise(writer, warn)
        # What became of each output, also for a run stopped early (Ctrl-C, ``close()``), where the errors
        # below are not raised: ``info["outputs_written"]`` lists the targets renamed into place,
        # ``info["output_errors"]`` maps each failed output to its error in words. ``--stats`` is added
        # after its own write (so its JSON lists the other outputs).
        written = [str(p) for p in sinks.written]
        failures = {label: _in_words(exc) for label, exc in sinks.errors.items()}
        st.info["outputs_written"], st.info["output_errors"] = written, failures
        if stats_path is not None:
            try:
                write_stats_json(st, stats_path)
            except VmaedetError as exc:  # raised below unless another error is already on its way
                final_error = final_error or exc
                failures["--stats"] = _in_words(exc)
            else:
                written.append(str(stats_path))
    if writer.error is not None:
        raise writer.error if isinstance(writer.error, VmaedetError) else StreamError(
            f"an output failed: {type(writer.error).__name__}: {writer.error}") from writer.error
    if final_error is not None:
        raise final_error


class StreamWarning(UserWarning):
    """A stream ran, but something about its input deserves a word (a file cut short, no proposals)."""


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


def _input_files(source: Any, checkpoint: Any, engine: Any, detector: Any) -> dict[str, Path]:
    """The files a run reads, by option name (an output naming one of them is refused)."""
    inputs: dict[str, Path] = {}
    if isinstance(source, (str, Path)) and not str(source).isdigit() and "://" not in str(source):
        inputs["--source"] = Path(source)
    if isinstance(checkpoint, (str, Path)):
        inputs["--checkpoint"] = Path(checkpoint)
    if isinstance(engine, (str, Path)):
        inputs["--engine"] = Path(engine)
    if isinstance(detector, str) and ":" in detector:
        kind, _, rest = detector.partition(":")
        if kind == "onnx":
            head, _, tail = rest.rpartition(":")
            rest = head if head and tail in ("yolov8", "yolox") else rest
        if kind in ("onnx", "boxes"):
            inputs["--detector"] = Path(rest)
    return inputs


class _PendingOutput(PendingOutput):
    """A :class:`PendingOutput` that keeps the error that marked it failed (reported after a Ctrl-C)."""

    def __init__(self, target: str | Path, label: str) -> None:
        super().__init__(target, label)
        self.last_error: OutputError | None = None

    def error(self, exc: BaseException) -> OutputError:
        err = super().error(exc)
        if self.last_error is None:  # the first failure is the cause; later ones (closing) follow from it
            self.last_error = err
        return err


def _in_words(exc: BaseException) -> str:
    """One line for an output's error: an OutputError's sentence (file and cause), else the cause in words."""
    if isinstance(exc, VmaedetError):
        return exc.what
    return f"an output failed: {os_error_reason(exc)}"


@dataclass
class _Opened:
    """What ``stream()`` opened before its threads own it (closed if the set-up fails)."""

    jsonl: JsonlSink | None = None
    csv: AvaCsvSink | None = None
    source: Source | None = None
    pending: dict[str, PendingOutput] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)  #: targets renamed into place by :meth:`finalise`
    errors: dict[str, BaseException] = field(default_factory=dict)  #: output label → its error

    def close(self) -> None:
        for part in (self.jsonl, self.csv, self.source):
            if part is not None:
                part.close()

    def discard(self) -> None:
        for pending in self.pending.values():
            pending.discard()

    def finalise(self, writer: SinkWriter, warn: Callable[[str], None]) -> BaseException | None:
        """Rename each complete output over its target; delete failed ones (and a video with no frame)."""
        error: BaseException | None = None
        for label, pending in self.pending.items():
            if pending.failed:
                pending.discard()
                self.errors[label] = getattr(pending, "last_error", None) or OutputError(
                    f"could not write the {label} output {pending.target}", received=repr(writer.error),
                    expected="a writable path with free space", fix="nothing was written there")
            elif label == "--save" and writer.mp4 is None:
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


def _check_outputs(files: dict[str, str | Path | None], stats: Path | None, inputs: dict[str, Path],
                   overwrite: bool, overwrite_hint: str) -> None:
    """Refuse bad output paths before the engine, the source or any output file is opened.

    Unwritable folders, a folder named as a file, a video suffix that is no container, an output that
    is also an input (it would be destroyed while read), two outputs naming one file, and an existing
    output without ``overwrite``.
    """
    outputs = {**files, "--stats": stats}
    for option, path in outputs.items():
        if path:
            check_writable(path, option)
    if files.get("--save"):
        check_video_container(files["--save"], "--save")  # type: ignore[arg-type]
    check_outputs({k: v for k, v in outputs.items() if v}, inputs, overwrite=overwrite, overwrite_hint=overwrite_hint)


def _shutdown(reader: SourceReader, worker: StreamWorker, writer: SinkWriter, stop: threading.Event) -> None:
    """Join the threads in data order; a reader blocked inside a source read is left (daemon)."""
    worker.join(timeout=120)
    if worker.is_alive():
        stop.set()
        worker.join(timeout=30)
    writer.join(timeout=120)
    stop.set()
    reader.join(timeout=2)
