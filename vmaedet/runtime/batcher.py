"""The batched stages of a run: threads that gather the jobs of every source into one call each.

:class:`BatchQueue` is the mechanism: producers :meth:`~BatchQueue.submit` jobs; the thread takes the
oldest job, waits at most ``max_wait`` seconds (counted from that job's hand-over) for more, up to
``max_batch`` jobs (and, when it knows how many producers there are, no longer than until each of
them has a job in), and runs them as one batch.  Two stages use it:

* :class:`Batcher` — the **action** stage.  Each source's worker hands over an :class:`ActionJob`
  (its clip ``[1, 3, 16, H, W]`` and rois ``[K, 5]``, batch index 0) and goes on with the next
  frames; the jobs of one batch are grouped by clip geometry and the engine is called **once per
  group** with the clips stacked ``[B, 3, 16, H, W]`` and the rois concatenated ``[ΣK, 5]`` (column
  0 the batch index into the clips).  The logits ``[ΣK, 80]`` are split back per job, in the order
  the jobs came, and each job's ``done`` callback gets its ``[K, 80]`` (or the engine's error).  A
  batch also stops before its rois would exceed the engine's ``max_persons`` (the K of one call over
  all its clips).  ``max_batch = 1`` calls the engine with each job's own clip and rois, unchanged
  (no waiting).  The engine's ``max_batch`` attribute caps the batch (an engine without it takes one
  clip per call).  A keyframe without persons needs no engine call: its job gets ``[0, 80]`` at once.
* :class:`DetectBatcher` — the **person-detection** stage of a run whose detector is
  :attr:`~vmaedet.persons.base.PersonDetector.batchable` (several sources, ``max_batch`` > 1): each
  worker's keyframe goes in with :meth:`DetectBatcher.detect` (the worker waits for its boxes), and
  the keyframes of several sources share one ``detect_batch`` call.

Stats (the run's :class:`~vmaedet.runtime.stats.StreamStats`): ``action_batch`` / ``detect_batch``
one sample per engine / detector call (its time), ``action`` / ``detect`` one sample per keyframe
(its share of its call: the call's time ÷ the keyframes in it), so that the per-keyframe rows'
mean × count is the time spent in the engine / the detector.

:func:`resize_clip` fits a clip and its rois to an engine of a fixed clip geometry.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from vmaedet.engines.base import Engine
from vmaedet.errors import StreamError, VmaedetError
from vmaedet.persons.base import PersonDetector
from vmaedet.runtime.stats import StreamStats
from vmaedet.structures import PersonDetections


def engine_max_batch(engine: Engine) -> int:
    """The most clips one call of ``engine`` accepts (1 for an engine that does not say)."""
    value = getattr(engine, "max_batch", 1)
    if value is None:  # no limit
        return 1 << 16
    return max(1, int(value))


def engine_fixed_hw(engine: Engine) -> tuple[int, int] | None:
    """The one clip geometry ``(H, W)`` ``engine`` accepts (an artifact exported for one size), or None for any."""
    hw = getattr(engine, "input_hw", None)
    return None if hw is None else (int(hw[0]), int(hw[1]))


def resize_clip(clip: torch.Tensor, rois: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A preprocessed clip ``[B, 3, T, H, W]`` resized to ``hw`` (bilinear, frame by frame) and its rois scaled alike.

    Bilinear with half-pixel centres and no antialiasing: on the CPU OpenCV's ``INTER_LINEAR`` plane by
    plane (fast, and the worker thread starts no torch thread team; its fixed-point weights put it
    within about 1e-3 of torch's), elsewhere ``F.interpolate(..., mode="bilinear", align_corners=False)``.
    ``rois`` ``[K, 5]`` (batch index, x1, y1, x2, y2) in the clip's pixels come back in the resized
    clip's pixels (x by ``W'/W``, y by ``H'/H``), so the boxes stay on the same people.
    """
    b, c, t, h, w = clip.shape
    if clip.device.type == "cpu" and clip.dtype == torch.float32:
        import cv2

        planes = clip.contiguous().reshape(b * c * t, h, w).numpy()  # [B·3·T, H, W]
        out_np = np.empty((b * c * t, hw[0], hw[1]), np.float32)  # [B·3·T, H', W']
        for i, plane in enumerate(planes):  # plane by plane: no channel shuffling copies
            cv2.resize(plane, (hw[1], hw[0]), dst=out_np[i], interpolation=cv2.INTER_LINEAR)
        out = torch.from_numpy(out_np).reshape(b, c, t, hw[0], hw[1])  # [B, 3, T, H', W']
    else:
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)  # [B·T, 3, H, W]
        out = F.interpolate(frames, size=hw, mode="bilinear", align_corners=False)  # [B·T, 3, H', W']
        out = out.reshape(b, t, c, hw[0], hw[1]).transpose(1, 2).contiguous()  # [B, 3, T, H', W']
    scaled = rois.clone()  # [K, 5]
    scaled[:, 1::2] *= hw[1] / w  # x1, x2
    scaled[:, 2::2] *= hw[0] / h  # y1, y2
    return out, scaled


class _Job(Protocol):
    submitted: float
    cancelled: threading.Event | None


J = TypeVar("J", bound=_Job)


class BatchQueue(threading.Thread, Generic[J]):
    """A thread that runs the jobs of several producers in batches (see the module doc).

    Args:
        name: the thread's name.
        max_batch: most jobs per batch.
        max_wait: seconds the oldest job may wait for others to fill a batch.
    """

    def __init__(self, name: str, max_batch: int = 1, max_wait: float = 0.005) -> None:
        super().__init__(name=name, daemon=True)
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait))
        self.histogram: Counter[int] = Counter()  #: jobs per call → calls
        self.producers: int | None = None  #: when set: a batch waits no longer than one job per producer
        self.jobs_run = 0  #: jobs handed to :meth:`_run` (cancelled ones are skipped)
        self._waits: deque[float] = deque(maxlen=4096)
        self._jobs: deque[J] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def submit(self, job: J) -> None:
        """Queue a job."""
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()

    def close(self) -> None:
        """No more jobs: the thread ends once the queued ones ran."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def add_producer(self, n: int = 1) -> None:
        """A producer joins (``n`` > 0) or leaves (``n`` < 0); a batch waits for at most one job of each."""
        with self._cond:
            self.producers = max(0, (self.producers or 0) + n)
            self._cond.notify_all()

    def _fits(self, batch: list[J], job: J) -> bool:
        """Whether ``job`` may join ``batch`` (before the ``max_batch`` count)."""
        return True

    def _full(self, batch: list[J]) -> bool:
        return len(batch) >= self.max_batch or (self.producers is not None and len(batch) >= self.producers)

    def _take(self) -> list[J] | None:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait(0.05)
            if not self._jobs:
                return None
            batch = [self._jobs.popleft()]
            deadline = batch[0].submitted + self.max_wait
            while not self._full(batch):
                if self._jobs:
                    if not self._fits(batch, self._jobs[0]):
                        break
                    batch.append(self._jobs.popleft())
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            return batch

    def run(self) -> None:
        while (batch := self._take()) is not None:
            batch = [j for j in batch if j.cancelled is None or not j.cancelled.is_set()]
            if batch:
                now = time.perf_counter()
                self.jobs_run += len(batch)
                for job in batch:
                    self._waits.append(now - job.submitted)
                self._run(batch)

    @abstractmethod
    def _run(self, batch: list[J]) -> None:
        """Run one batch and answer each of its jobs."""

    def _pending(self) -> list[J]:
        """Take every queued job out (to fail them)."""
        with self._cond:
            pending = list(self._jobs)
            self._jobs.clear()
        return pending

    def _timed(self, stats: StreamStats, stage: str, jobs: int, seconds: float) -> None:
        """One call of ``jobs`` jobs took ``seconds``: a ``<stage>_batch`` sample and each job's share as ``<stage>``."""
        self.histogram[jobs] += 1
        stats.add(f"{stage}_batch", seconds)
        for _ in range(jobs):
            stats.add(stage, seconds / jobs)

    def summary(self) -> dict[str, Any]:
        """Batch sizes (jobs per call → calls), the batch limit, the jobs run and their wait before their call (ms)."""
        waits = np.asarray(self._waits, dtype=np.float64) * 1e3
        calls = sum(self.histogram.values())
        return {
            "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1e3, "calls": calls, "jobs": self.jobs_run,
            "batch_sizes": {str(k): v for k, v in sorted(self.histogram.items())},
            "mean_batch": (sum(k * v for k, v in self.histogram.items()) / calls) if calls else 0.0,
            "wait_ms": ({"mean": float(waits.mean()), "p50": float(np.percentile(waits, 50)),
                         "p95": float(np.percentile(waits, 95)), "max": float(waits.max())} if waits.size else {}),
        }


def _as_stream_error(exc: BaseException, stage: str) -> BaseException:
    if isinstance(exc, VmaedetError):
        return exc
    error = StreamError(f"the {stage} failed: {type(exc).__name__}: {exc}", fix="outputs written so far are complete")
    error.__cause__ = exc
    return error


@dataclass
class ActionJob:
    """One keyframe's engine input and where its logits go."""

    clip: torch.Tensor  #: [1, 3, 16, H, W]
    rois: torch.Tensor  #: [K, 5] (0, x1, y1, x2, y2) in clip pixels
    done: Callable[[torch.Tensor | None, BaseException | None], None]  #: logits [K, 80] or the error
    cancelled: threading.Event | None = None  #: set: the source stopped, the job is skipped
    submitted: float = field(default_factory=time.perf_counter)


class Batcher(BatchQueue[ActionJob]):
    """The action-engine thread shared by every source of a run.

    Args:
        engine: the action engine.
        stats: the run's stats (``action_batch``: one sample per engine call; ``action``: each keyframe's
            share of its call).
        max_batch: most keyframe jobs per engine call (capped by the engine's ``max_batch``).
        max_wait: seconds the oldest job may wait for others to fill a batch.
    """

    def __init__(self, engine: Engine, stats: StreamStats, max_batch: int = 1, max_wait: float = 0.005) -> None:
        super().__init__("vmaedet-action", min(int(max_batch), engine_max_batch(engine)), max_wait)
        self.engine, self.stats = engine, stats
        self.requested = max_batch
        self.error: BaseException | None = None
        self.without_persons = 0  #: keyframes answered without an engine call (no person)

    def submit(self, job: ActionJob) -> None:
        """Queue a job (after an engine error the job fails at once with that error)."""
        with self._cond:
            error = self.error
            if error is None:
                self._jobs.append(job)
                self._cond.notify_all()
        if error is not None:
            job.done(None, error)

    def _fits(self, batch: list[ActionJob], job: ActionJob) -> bool:
        limit = self.engine.max_persons  # an engine's person limit counts the rois of all clips of a call
        return limit is None or sum(int(j.rois.shape[0]) for j in batch) + int(job.rois.shape[0]) <= limit

    def _run(self, batch: list[ActionJob]) -> None:
        """One engine call per clip geometry (and device), none for a keyframe without persons; then each job
        is answered **in the batch's order** (a source's keyframes come in order: its results, smoother and
        outputs rely on it), a job without persons with empty logits."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, job in enumerate(batch):
            if job.rois.shape[0]:
                groups.setdefault((tuple(job.clip.shape[1:]), str(job.clip.device)), []).append(i)
        answers: list[tuple[torch.Tensor | None, BaseException | None]] = [
            (torch.zeros((0, 80), dtype=torch.float32), None)] * len(batch)
        failed: BaseException | None = None
        for members in groups.values():
            if failed is None:  # after an engine error no more calls: the rest get the same error
                try:
                    logits = self._infer([batch[i] for i in members])
                except BaseException as exc:  # noqa: BLE001 - every source's worker gets it
                    failed = _as_stream_error(exc, "action engine")
                    with self._cond:
                        self.error = failed
                else:
                    for i, part in zip(members, logits):
                        answers[i] = (part, None)
                    continue
            for i in members:
                answers[i] = (None, failed)
        self.without_persons += sum(1 for job in batch if not job.rois.shape[0])
        for job, (logits, error) in zip(batch, answers):
            job.done(logits, error)
        if failed is not None:
            for job in self._pending():
                job.done(None, failed)

    def _infer(self, jobs: list[ActionJob]) -> list[torch.Tensor]:
        """One engine call for jobs of one geometry; their logits ``[K_i, 80]`` in job order."""
        if len(jobs) == 1:
            t0 = time.perf_counter()
            logits = self.engine.infer(jobs[0].clip, jobs[0].rois)  # [K, 80]
            self._timed(self.stats, "action", 1, time.perf_counter() - t0)
            return [logits]
        clips = torch.cat([j.clip for j in jobs], dim=0)  # [B, 3, 16, H, W]
        rois = []
        for b, job in enumerate(jobs):
            r = job.rois.clone()  # [K_b, 5]
            r[:, 0] = float(b)
            rois.append(r)
        t0 = time.perf_counter()
        logits = self.engine.infer(clips, torch.cat(rois, dim=0))  # [ΣK, 80]
        self._timed(self.stats, "action", len(jobs), time.perf_counter() - t0)
        return list(torch.split(logits, [int(j.rois.shape[0]) for j in jobs], dim=0))

    def summary(self) -> dict[str, Any]:
        """Batch sizes (clips per call → calls), the batch limits, the jobs' wait, keyframes without persons."""
        return {**super().summary(), "max_batch_requested": self.requested,
                "engine_max_batch": engine_max_batch(self.engine), "keyframes_without_persons": self.without_persons}


@dataclass
class DetectJob:
    """One keyframe's frame for the person detector and where its boxes go."""

    frame: np.ndarray  #: [H, W, 3] uint8 RGB
    frame_index: int | None
    timestamp: float | None
    video_id: str | None
    done: Callable[[PersonDetections | None, BaseException | None], None]  #: the persons or the error
    cancelled: threading.Event | None = None  #: set: the source stopped, the job is skipped
    submitted: float = field(default_factory=time.perf_counter)
    prepared: Any = None  #: the detector's :meth:`~vmaedet.persons.base.PersonDetector.prepare` of the frame


class DetectBatcher(BatchQueue[DetectJob]):
    """The person-detection thread of a run whose sources share one batchable detector.

    Each worker calls :meth:`detect` on a keyframe and waits for its persons; keyframes of several
    sources that arrive within ``max_wait`` of each other go to one ``detector.detect_batch`` call.
    A batch waits no longer than until every producer (a source's worker, :meth:`add_producer`) has
    its keyframe in.  A detector error fails the keyframes of that call (their sources end with it).

    Args:
        detector: a :attr:`~vmaedet.persons.base.PersonDetector.batchable` detector (stateless).
        stats: the run's stats (``detect_batch``: one sample per detector call; ``detect``: each
            keyframe's share of its call).
        max_batch: most keyframes per detector call.
        max_wait: seconds the oldest keyframe may wait for others.
    """

    def __init__(self, detector: PersonDetector, stats: StreamStats, max_batch: int = 2, max_wait: float = 0.005) -> None:
        super().__init__("vmaedet-detect", max_batch, max_wait)
        self.detector, self.stats = detector, stats

    def detect(self, frame: np.ndarray, frame_index: int | None = None, timestamp: float | None = None,
               video_id: str | None = None, cancelled: threading.Event | None = None) -> PersonDetections:
        """The persons in ``frame`` (blocks until its batch ran); no persons when ``cancelled`` is set first.

        Raises:
            VmaedetError: the detector's error for this frame's call (others as a StreamError), or the
                stage ended without answering.
        """
        ready = threading.Event()
        answer: list[Any] = []

        def done(det: PersonDetections | None, error: BaseException | None) -> None:
            answer.append((det, error))
            ready.set()

        t0 = time.perf_counter()  # the per-frame work (the resize) runs here, in the source's thread, beside the others'
        prepared = self.detector.prepare(frame)
        self.stats.add("detect_prepare", time.perf_counter() - t0)
        self.submit(DetectJob(frame, frame_index, timestamp, video_id, done, cancelled, prepared=prepared))
        while not ready.wait(0.05):
            if cancelled is not None and cancelled.is_set():
                return PersonDetections.empty()  # the source stops: its keyframe is not used
            if not self.is_alive() and not ready.is_set():
                raise StreamError("the person-detection stage ended before this keyframe's persons were found",
                                  received=f"frame {frame_index} of {video_id}", expected="a running detection stage",
                                  fix="outputs written so far are complete; report this with the run's stats")
        det, error = answer[0]
        if error is not None:
            raise error
        return det

    def _run(self, batch: list[DetectJob]) -> None:
        t0 = time.perf_counter()
        try:
            found = self.detector.detect_prepared([j.prepared for j in batch], [j.frame.shape[:2] for j in batch],
                                                  [j.frame_index for j in batch], [j.timestamp for j in batch],
                                                  [j.video_id for j in batch])
        except BaseException as exc:  # noqa: BLE001 - the workers of this call get it
            error = _as_stream_error(exc, "person detector")
            for job in batch:
                job.done(None, error)
            return
        self._timed(self.stats, "detect", len(batch), time.perf_counter() - t0)
        for job, det in zip(batch, found):
            job.done(det, None)


__all__ = ["ActionJob", "BatchQueue", "Batcher", "DetectBatcher", "DetectJob", "engine_fixed_hw",
                          "engine_max_batch", "resize_clip"]
