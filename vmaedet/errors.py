"""Project error classes.

Every user-facing error states what was wrong, what was received, what was expected and how to
fix it.  The CLI catches :class:`VmaedetError` and prints it without a traceback.
"""

from __future__ import annotations


class VmaedetError(Exception):
    """Base class of every error the toolkit raises on bad input or a missing capability.

    Args:
        what: one sentence saying what is wrong.
        received: what the toolkit got (a value, a path, a shape).
        expected: what it needs instead.
        fix: how the user can fix it.
    """

    def __init__(
        self,
        what: str,
        *,
        received: object | None = None,
        expected: object | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.received = received
        self.expected = expected
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        lines = [self.what]
        if self.received is not None:
            lines.append(f"  received: {self.received}")
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.fix is not None:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


class CheckpointError(VmaedetError, ValueError):
    """A checkpoint file is missing, unreadable, of an unknown layout or does not fit the model."""


class ConfigError(VmaedetError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(VmaedetError, ValueError):
    """A data file (CSV, label map, video, frames) is malformed or missing."""


class ExportError(VmaedetError, RuntimeError):
    """An export failed or its artifact did not match PyTorch within tolerance."""


class EngineError(VmaedetError, RuntimeError):
    """An inference engine cannot be created or run (missing backend, manifest mismatch)."""


class BackendUnavailable(EngineError):
    """An optional backend (onnxruntime-gpu, TensorRT, CUDA) is not installed or not usable here."""


class StreamError(VmaedetError, RuntimeError):
    """A streaming source, sink or worker failed."""


class OutputError(VmaedetError, RuntimeError):
    """An output cannot be written: it is also an input, it exists without permission to replace it,
    or the write failed (no space left, read-only file system, permission). Nothing partial is left."""


class UsageError(VmaedetError, ValueError):
    """A value given on the command line or to the Python API is out of range or inconsistent."""


class EngineWarning(UserWarning):
    """An engine runs, but not as well as it could here (e.g. a precision this CPU only emulates)."""
