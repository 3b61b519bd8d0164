"""One way to time a call: warm-up runs, timed repeats, one percentile definition.

Every latency the project reports (``vmaedet bench``, the scripts under ``benchmarks/``) comes from
:func:`time_calls`, so "p95" means the same everywhere: the linearly interpolated percentile of
the timed runs (``numpy.percentile``'s default; with 5 runs, p95 lies between the 4th and 5th
slowest).  A ``sync`` callable (``torch.cuda.synchronize`` on a GPU) runs before the clock starts
and before it stops, so asynchronous work is inside the measurement.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Timing", "percentile", "time_calls"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, linearly interpolated (``numpy.percentile``)."""
    if not len(values):
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass(frozen=True)
class Timing:
    """Wall times of the timed runs of one call (seconds), with the statistics every report uses.

    Attributes:
        times_s: the timed runs, in the order they ran.
        warmup: untimed runs before them.
        result: what the last run returned (for an accuracy check on the same call).
    """

    times_s: tuple[float, ...]
    warmup: int
    result: Any = None

    @property
    def runs(self) -> int:
        return len(self.times_s)

    @property
    def p50_s(self) -> float:
        """Median (the 50th percentile, interpolated between the two middle runs when even)."""
        return percentile(self.times_s, 50)

    @property
    def p95_s(self) -> float:
        return percentile(self.times_s, 95)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    def ms(self) -> dict[str, float]:
        """``{"p50": …, "p95": …, "mean": …, "min": …}`` in milliseconds."""
        return {"p50": 1e3 * self.p50_s, "p95": 1e3 * self.p95_s, "mean": 1e3 * self.mean_s, "min": 1e3 * self.min_s}


def time_calls(fn: Callable[[], Any], *, repeats: int, warmup: int = 1,
               sync: Callable[[], None] | None = None) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``time.perf_counter``).

    Args:
        fn: the call to time (no arguments; wrap with a lambda).
        repeats: timed runs (≥ 1).
        warmup: untimed runs first (kernel selection, lazy initialisation, caches).
        sync: called before starting and before stopping the clock (e.g. ``torch.cuda.synchronize``).

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_calls needs repeats ≥ 1 and warmup ≥ 0 (got repeats={repeats}, warmup={warmup})")
    result = None
    for _ in range(warmup):
        result = fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        result = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return Timing(tuple(times), warmup, result)
