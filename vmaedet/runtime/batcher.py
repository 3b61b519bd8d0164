"""The action stage of a run: one thread that batches keyframe jobs of every source into engine calls.

Each source's worker hands over an :class:`ActionJob` (its clip ``[1, 3, 16, H, W]`` and rois
``[K, 5]``, batch index 0) and goes on with the next frames; the :class:`Batcher` takes the oldest
job, waits at most ``max_wait`` seconds (counted from that job's hand-over) for more, up to
``max_batch`` jobs, groups them by clip geometry and calls the engine **once per group** with the
clips stacked ``[B, 3, 16, H, W]`` and the rois concatenated ``[ΣK, 5]`` (column 0 the batch index
into the clips).  The logits ``[ΣK, 80]`` are split back per job, in the order the jobs came, and
each job's ``done`` callback gets its ``[K, 80]`` (or the engine's error).

A batch also stops before its rois would exceed the engine's ``max_persons`` (the K of one call
over all its clips).  ``max_batch = 1`` calls the engine with each job's own clip and rois, unchanged (no waiting).
The engine's ``max_batch`` attribute caps the batch (an engine without it takes one clip per call).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from vmaedet.engines.base import Engine
from vmaedet.errors import StreamError, VmaedetError
from vmaedet.runtime.stats import StreamStats


def engine_max_batch(engine: Engine) -> int:
    """The most clips one call of ``engine`` accepts (1 for an engine that does not say)."""
    value = getattr(engine, "max_batch", 1)
    if value is None:  # no limit
        return 1 << 16
    return max(1, int(value))


@dataclass
class ActionJob:
    """One keyframe's engine input and where its logits go."""

    clip: torch.Tensor  #: [1, 3, 16, H, W]
    rois: torch.Tensor  #: [K, 5] (0, x1, y1, x2, y2) in clip pixels
    done: Callable[[torch.Tensor | None, BaseException | None], None]  #: logits [K, 80] or the error
    cancelled: threading.Event | None = None  #: set: the source stopped, the job is skipped
    submitted: float = field(default_factory=time.perf_counter)


class Batcher(threading.Thread):
    """The action-engine thread shared by every source of a run.

    Args:
        engine: the action engine.
        stats: the run's stats (the ``action`` stage: one sample per engine call).
        max_batch: most keyframe jobs per engine call (capped by the engine's ``max_batch``).
        max_wait: seconds the oldest job may wait for others to fill a batch.
    """

    def __init__(self, engine: Engine, stats: StreamStats, max_batch: int = 1, max_wait: float = 0.005) -> None:
        super().__init__(name="vmaedet-action", daemon=True)
        self.engine, self.stats = engine, stats
        self.requested = max_batch
        self.max_batch = max(1, min(int(max_batch), engine_max_batch(engine)))
        self.max_wait = max(0.0, float(max_wait))
        self.error: BaseException | None = None
        self.histogram: Counter[int] = Counter()  #: clips per engine call → calls
        self._waits: deque[float] = deque(maxlen=4096)
        self._jobs: deque[ActionJob] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def submit(self, job: ActionJob) -> None:
        """Queue a job (after an engine error the job fails at once with that error)."""
        with self._cond:
            error = self.error
            if error is None:
                self._jobs.append(job)
                self._cond.notify_all()
        if error is not None:
            job.done(None, error)

    def close(self) -> None:
        """No more jobs: the thread ends once the queued ones ran."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take(self) -> list[ActionJob] | None:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait(0.05)
            if not self._jobs:
                return None
            batch = [self._jobs.popleft()]
            deadline = batch[0].submitted + self.max_wait
            persons = int(batch[0].rois.shape[0])
            limit = self.engine.max_persons  # an engine's person limit counts the rois of all clips of a call
            while len(batch) < self.max_batch:
                if self._jobs:
                    k = int(self._jobs[0].rois.shape[0])
                    if limit is not None and persons + k > limit:
                        break
                    persons += k
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
                self._run(batch)

    def _run(self, batch: list[ActionJob]) -> None:
        now = time.perf_counter()
        for job in batch:
            self._waits.append(now - job.submitted)
        groups: dict[tuple[Any, ...], list[ActionJob]] = {}
        for job in batch:  # one engine call per clip geometry (and device)
            groups.setdefault((tuple(job.clip.shape[1:]), str(job.clip.device)), []).append(job)
        for jobs in groups.values():
            try:
                logits = self._infer(jobs)
            except BaseException as exc:  # noqa: BLE001 - every source's worker gets it
                error = exc if isinstance(exc, VmaedetError) else StreamError(
                    f"the stream worker failed: {type(exc).__name__}: {exc}", fix="outputs written so far are complete")
                if error is not exc:
                    error.__cause__ = exc
                with self._cond:
                    self.error = error
                    pending = list(self._jobs)
                    self._jobs.clear()
                for job in [*jobs, *pending]:
                    job.done(None, error)
                continue
            for job, part in zip(jobs, logits):
                job.done(part, None)

    def _infer(self, jobs: list[ActionJob]) -> list[torch.Tensor]:
        """One engine call for jobs of one geometry; their logits ``[K_i, 80]`` in job order."""
        self.histogram[len(jobs)] += 1
        if len(jobs) == 1:
            with self.stats.time("action"):
                return [self.engine.infer(jobs[0].clip, jobs[0].rois)]  # [K, 80]
        clips = torch.cat([j.clip for j in jobs], dim=0)  # [B, 3, 16, H, W]
        rois = []
        for b, job in enumerate(jobs):
            r = job.rois.clone()  # [K_b, 5]
            r[:, 0] = float(b)
            rois.append(r)
        with self.stats.time("action"):
            logits = self.engine.infer(clips, torch.cat(rois, dim=0))  # [ΣK, 80]
        return list(torch.split(logits, [int(j.rois.shape[0]) for j in jobs], dim=0))

    def summary(self) -> dict[str, Any]:
        """Batch sizes (clips per call → calls), the batch limit, and the wait of jobs before their call."""
        waits = np.asarray(self._waits, dtype=np.float64) * 1e3
        calls = sum(self.histogram.values())
        return {
            "max_batch": self.max_batch, "max_batch_requested": self.requested, "max_wait_ms": self.max_wait * 1e3,
            "engine_max_batch": engine_max_batch(self.engine), "calls": calls,
            "batch_sizes": {str(k): v for k, v in sorted(self.histogram.items())},
            "mean_batch": (sum(k * v for k, v in self.histogram.items()) / calls) if calls else 0.0,
            "wait_ms": ({"mean": float(waits.mean()), "p50": float(np.percentile(waits, 50)),
                         "p95": float(np.percentile(waits, 95)), "max": float(waits.max())} if waits.size else {}),
        }
