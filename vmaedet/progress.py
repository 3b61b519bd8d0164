"""Progress for long jobs: a rich bar on a terminal, plain lines in logs and pipes.

One helper for every long job (demo, train, eval, export, synth, stream)::

    from vmaedet.progress import progress, track

    with progress(total=len(videos), desc="videos", stage="synth") as bar:
        for v in videos:
            render(v)
            bar.advance(detail=v.name)          # detail: free text shown after the counts

    for batch in track(loader, desc="batches", stage="eval"):   # the iterable form
        ...

How it shows depends on where the output goes (``console``, by default standard output):

* a terminal: a rich progress bar (``transient`` removes it at the end);
* anything else (``make demo | tee log``, a CI log, a file): plain lines
  ``[stage] desc step/total (pct%) elapsed 0:01:23 ETA 0:02:00 detail`` at the start, then at most every
  ``interval`` seconds (10 s by default) while the job runs — also when it makes no step, so a log is
  never silent for longer — and once at the end. The same lines go to the ``logging`` logger
  ``vmaedet.progress`` at level INFO.

The environment variable ``VMAEDET_PROGRESS`` chooses explicitly: ``auto`` (the default), ``bar``,
``plain`` or ``off``; ``VMAEDET_PROGRESS_INTERVAL`` sets the seconds between plain lines.

Nesting works: a ``progress`` opened while a bar is shown adds a row to that bar (rich allows one live
display at a time) and removes it when it ends; in plain mode each prints its own lines with its stage.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from typing import Any, Iterable, Iterator, TypeVar

from rich.console import Console

__all__ = ["Progress", "progress", "track", "resolve_mode", "format_seconds"]

log = logging.getLogger("vmaedet.progress")

T = TypeVar("T")

#: Seconds between plain progress lines unless ``interval`` or ``VMAEDET_PROGRESS_INTERVAL`` says otherwise.
DEFAULT_INTERVAL = 10.0

_MODES = ("auto", "bar", "plain", "off")

# The rich Progress currently shown in this process (nested bars join it) and how many users it has.
_shared_lock = threading.RLock()
_shared: dict[str, Any] = {"bar": None, "users": 0}


def format_seconds(seconds: float | None) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def resolve_mode(console: Console | None = None, enabled: bool = True) -> str:
    """``"bar"``, ``"plain"`` or ``"off"`` for output to ``console`` (see the module docstring)."""
    if not enabled:
        return "off"
    env = os.environ.get("VMAEDET_PROGRESS", "auto").strip().lower() or "auto"
    if env not in _MODES:
        env = "auto"
    if env != "auto":
        return env
    console = console or Console()
    if console.is_terminal and not console.is_dumb_terminal:
        return "bar"
    return "plain"


def _interval(value: float | None) -> float:
    if value is not None:
        return max(float(value), 0.05)
    env = os.environ.get("VMAEDET_PROGRESS_INTERVAL")
    if env:
        with contextlib.suppress(ValueError):
            return max(float(env), 0.05)
    return DEFAULT_INTERVAL


class Progress:
    """The progress of one job; made by :func:`progress` (use that), updated by the job.

    Attributes:
        total: number of steps (``None``: unknown, no ETA).
        completed: steps done.
        desc: what is counted (``"videos"``, ``"batches"``).
        stage: the job's name in plain lines (``[synth]``).
        mode: ``"bar"``, ``"plain"`` or ``"off"``.
    """

    def __init__(self, total: int | None, desc: str, stage: str | None = None, *, completed: int = 0,
                 enabled: bool = True, interval: float | None = None, console: Console | None = None,
                 transient: bool = False) -> None:
        self.total = total if total is None else max(int(total), 0)
        self.completed = int(completed)
        self.desc = desc
        self.stage = stage or desc
        self.detail = ""
        shared = _shared["bar"]
        if console is None and shared is not None and enabled:  # nested in a bar shown now: join it
            self.console, self.mode = shared.console, "bar"
        else:
            self.console = console or Console()
            self.mode = resolve_mode(self.console, enabled)
        self.interval = _interval(interval)
        self.transient = transient
        self._start_completed = self.completed
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None
        self._owner = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Progress":
        """Show the bar or print the first plain line (and start the heartbeat)."""
        self._t0 = time.monotonic()
        if self.mode == "bar":
            self._start_bar()
        elif self.mode == "plain":
            self._emit("started")
            self._thread = threading.Thread(target=self._heartbeat, name=f"progress-{self.stage}", daemon=True)
            self._thread.start()
        return self

    def close(self, *, failed: bool = False) -> None:
        """Remove the bar or print the last plain line (``done`` or ``stopped``)."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._stop_bar()
        elif self.mode == "plain":
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self._emit("stopped" if failed else "done")

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(failed=exc_type is not None)

    # -- updates -----------------------------------------------------------------------------
    def advance(self, n: int = 1, *, detail: str | None = None) -> None:
        """``n`` more steps done; ``detail`` replaces the free text after the counts."""
        self.update(completed=self.completed + n, detail=detail)

    def update(self, completed: int | None = None, *, total: int | None = None, desc: str | None = None,
               detail: str | None = None) -> None:
        """Set the steps done, the total, the description or the detail text."""
        with self._lock:
            if completed is not None:
                self.completed = int(completed)
            if total is not None:
                self.total = max(int(total), 0)
            if desc is not None:
                self.desc = desc
            if detail is not None:
                self.detail = detail
        if self.mode == "bar" and self._bar is not None:
            kw: dict[str, Any] = {"completed": self.completed, "description": self.desc, "detail": self.detail}
            if total is not None:
                kw["total"] = self.total
            self._bar.update(self._task, **kw)
        elif self.mode == "plain":
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._emit()

    def message(self, text: str) -> None:
        """Print a line of the command's own output (rich markup allowed) above the bar, or as is.

        Shown in every mode (also ``off``): it is output, not progress.
        """
        console = self._bar.console if self.mode == "bar" and self._bar is not None else self.console
        console.print(text, highlight=False, soft_wrap=True)

    # -- figures -----------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return time.monotonic() - self._t0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the rate since :meth:`start`; ``None`` when unknown."""
        done = self.completed - self._start_completed
        if self.total is None or done <= 0:
            return None
        return max(self.elapsed / done * (self.total - self.completed), 0.0)

    def line(self, status: str | None = None) -> str:
        """The plain progress line: ``[stage] desc step/total (pct%) elapsed … ETA … detail``."""
        with self._lock:
            parts = [f"[{self.stage}]"]
            if self.desc and self.desc != self.stage:
                parts.append(self.desc)
            if self.total:
                pct = 100.0 * self.completed / self.total
                parts.append(f"{self.completed}/{self.total} ({pct:.0f}%)")
            else:
                parts.append(f"{self.completed}/{'?' if self.total is None else self.total}")
            parts.append(f"elapsed {format_seconds(self.elapsed)}")
            if status in ("done", "stopped"):
                parts.append(status)
            else:
                parts.append(f"ETA {format_seconds(self.eta)}")
                if status:
                    parts.append(status)
            if self.detail:
                parts.append(self.detail)
            return " ".join(parts)

    # -- internals ---------------------------------------------------------------------------
    def _emit(self, status: str | None = None) -> None:
        self._last_line = time.monotonic()
        self._write(self.line(status))

    def _write(self, text: str) -> None:
        log.info(text)
        with contextlib.suppress(Exception):  # a closed or broken pipe must not stop the job
            f = self.console.file
            f.write(text + "\n")
            f.flush()

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            if time.monotonic() - self._last_line >= self.interval:
                self._emit()

    def _start_bar(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress
        from rich.progress import TimeRemainingColumn

        with _shared_lock:
            bar = _shared["bar"]
            if bar is None:
                bar = RichProgress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]}"),
                                   TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                                   console=self.console, transient=self.transient)
                bar.start()
                _shared["bar"] = bar
                self._owner = True
            _shared["users"] += 1
            self._bar = bar
            self._task = bar.add_task(self.desc, total=self.total, completed=self.completed, stage=self.stage,
                                      detail=self.detail)

    def _stop_bar(self) -> None:
        with _shared_lock:
            bar = self._bar
            if bar is None:
                return
            _shared["users"] -= 1
            if _shared["users"] > 0 and not self._owner:
                with contextlib.suppress(Exception):
                    bar.remove_task(self._task)
            if _shared["users"] <= 0:
                bar.stop()
                _shared["bar"] = None
                _shared["users"] = 0
            self._bar = None


def progress(total: int | None, desc: str, stage: str | None = None, *, completed: int = 0, enabled: bool = True,
             interval: float | None = None, console: Console | None = None, transient: bool = False) -> Progress:
    """A :class:`Progress` to use as a context manager (``with progress(n, "videos", "synth") as p``).

    Args:
        total: number of steps; ``None`` when unknown (no ETA).
        desc: what is counted (``"videos"``, ``"steps"``).
        stage: the job's name (``"synth"``, ``"train"``); plain lines start with ``[stage]``.
        completed: steps already done (a resumed run); the ETA counts only steps done from here.
        enabled: ``False`` shows nothing (e.g. on ranks other than 0).
        interval: seconds between plain lines (default 10, or ``VMAEDET_PROGRESS_INTERVAL``).
        console: where to show it; by default standard output. Pass ``Console(stderr=True)`` when
            standard output carries data (JSON to ``-``).
        transient: remove the bar from the terminal when done.
    """
    return Progress(total, desc, stage, completed=completed, enabled=enabled, interval=interval, console=console,
                    transient=transient)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", stage: str | None = None,
          **kwargs: Any) -> Iterator[T]:
    """Yield from ``iterable`` while showing its progress (``total`` defaults to ``len(iterable)``)."""
    if total is None:
        with contextlib.suppress(TypeError):
            total = len(iterable)  # type: ignore[arg-type]
    with progress(total, desc, stage, **kwargs) as p:
        for item in iterable:
            yield item
            p.advance()
