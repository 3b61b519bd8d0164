"""Safe outputs: every file the toolkit writes goes through here.

Three rules, the same for every command and the Python API:

1. An output that is also an input is refused before anything is opened (:func:`check_outputs`).
2. An existing output is replaced only when the caller says so (``overwrite=True``; the CLI's
   ``--overwrite``).
3. A write either completes or leaves nothing: data goes to a temporary file beside the target and is
   renamed over it at the end (:func:`atomic_path`, :func:`atomic_write`); a failure removes the
   temporary file and raises :class:`~vmaedet.errors.OutputError` naming the file and the cause in
   words (no space left, read-only file system, permission denied).

The library never names CLI flags: callers pass ``overwrite_hint`` (the CLI passes ``"--overwrite"``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping

from vmaedet.errors import OutputError

PathLike = str | os.PathLike

#: errno → the cause in words.
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder, not a file",
    errno.EFBIG: "the file is too large for the file system",
    errno.ENAMETOOLONG: "the file name is too long",
}

#: Below this many free bytes a write failure without an errno is taken to be a full disk.
_FULL_DISK_BYTES = 1 << 20


def find_os_error(exc: BaseException) -> OSError | None:
    """The first :class:`OSError` in ``exc`` or its chain (``__cause__`` / ``__context__``).

    Some writers hide the cause: ``torch.save`` on a full disk raises ``RuntimeError: [enforce fail
    at inline_container.cc] unexpected pos`` with the ``OSError`` chained, or with none at all.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def os_error_reason(exc: BaseException, path: PathLike | None = None) -> str:
    """The cause of a failed write in words (``"no space left on the device"``, …)."""
    os_exc = find_os_error(exc)
    if os_exc is not None:
        return _REASONS.get(os_exc.errno, os_exc.strerror or str(os_exc))
    if path is not None:  # a writer that swallowed the errno: look at the disk itself
        folder = Path(path).parent
        with contextlib.suppress(OSError):
            if shutil.disk_usage(folder if folder.exists() else Path.cwd()).free < _FULL_DISK_BYTES:
                return "no space left on the device"
    return f"{type(exc).__name__}: {exc}".strip()


def output_error(path: PathLike, exc: BaseException, *, what: str = "the output") -> OutputError:
    """An :class:`OutputError` for a failed write of ``path`` (the caller raises it ``from exc``)."""
    reason = os_error_reason(exc, path)
    fixes = {
        "no space left on the device": "free some space or write to another disk",
        "the disk quota is exceeded": "free some space or write to another disk",
        "the file system is read-only": "write to a folder on a writable file system",
        "the folder does not exist": "create the folder first or choose another path",
    }
    fix = fixes.get(reason, "choose a path you can write to, or fix the folder's permissions")
    return OutputError(f"could not write {what} {path}: {reason}", received=f"{type(exc).__name__}: {exc}",
                       expected="a writable path with free space", fix=fix + "; nothing was written there")


def nearest_existing(path: PathLike) -> Path:
    """``path`` if it exists, else its nearest existing parent (the current folder for a relative path)."""
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable_dir(folder: PathLike, *, create: bool = True, what: str = "the output folder") -> Path:
    """Prove that files can be written into ``folder`` by writing (and removing) a probe file.

    Args:
        folder: the folder outputs will go to.
        create: create ``folder`` (and its parents) first.  With ``False`` nothing is created: the
            probe goes into the nearest folder of the path that exists (``folder`` itself, else its
            nearest existing parent), for a check before a job may write anything.
        what: how messages name the folder ("into the run folder", "the export folder").

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the folder cannot be created or written (read-only, full, permissions, a file
            where a folder should be), in words, with the fix.
    """
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder
        else:
            probe = nearest_existing(folder)
            if not probe.is_dir():  # a file where a folder of the path should be
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        fd, name = tempfile.mkstemp(prefix=".vmaedet-write-test.", suffix=".tmp", dir=probe)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise output_error(folder, exc, what=what) from exc
    return folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None] | None = None,
    *,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> None:
    """Refuse outputs that are inputs, that collide, or that exist without ``overwrite``.

    Args:
        outputs: label → path of every file the job will write (``None`` entries are skipped).
        inputs: label → path of every file the job reads.
        overwrite: whether existing outputs may be replaced.
        overwrite_hint: how the caller's user says "overwrite" (the CLI passes ``"--overwrite"``).

    Raises:
        OutputError: before anything is opened, naming the path and the fix.
    """
    outs = {k: Path(v) for k, v in outputs.items() if v is not None and str(v) != "-"}
    ins = {k: Path(v) for k, v in (inputs or {}).items() if v is not None and str(v) != "-"}
    for out_label, out in outs.items():
        for in_label, inp in ins.items():
            if _same_file(out, inp):
                raise OutputError(
                    f"the output {out_label} is the same file as the input {in_label}; writing it would destroy the input",
                    received=f"{out_label} {out} and {in_label} {inp}", expected="an output path that is not an input",
                    fix=f"choose another path for {out_label}")
    labels = list(outs)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if _same_file(outs[a], outs[b]):
                raise OutputError(f"two outputs name the same file: {a} and {b}", received=str(outs[a]),
                                  expected="a different path for each output", fix=f"choose another path for {b}")
    if not overwrite:
        for label, out in outs.items():
            if out.exists():
                raise OutputError(f"the output {label} already exists and would be replaced", received=str(out),
                                  expected="a path that does not exist yet, or permission to replace it",
                                  fix=f"choose another path, or pass {overwrite_hint} to replace it")
    for label, out in outs.items():
        if out.is_dir():
            raise OutputError(f"the output {label} is a folder, not a file", received=str(out),
                              expected="a file path", fix=f"name a file inside it, e.g. {out / 'out'}")


def ensure_parent(path: PathLike, *, what: str = "the output") -> Path:
    """Create ``path``'s folder; an :class:`OutputError` in words if that is not possible."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(p, exc, what=what) from exc
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike, *, what: str = "the output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure delete it.

    For writers that take a path (``torch.save``, ``onnx.save``, PyAV, safetensors). Any exception
    inside the block removes the temporary file; an ``OSError`` (also one chained inside another
    exception, as ``torch.save`` chains it) becomes an :class:`OutputError` naming ``path``.
    The old ``path``, if any, is untouched until the final rename.
    """
    target = ensure_parent(path, what=what)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(target, exc, what=what) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, final_mode(target))  # mkstemp makes 0600; a new file gets the umask's mode
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OutputError) or not isinstance(exc, Exception):
            raise
        if find_os_error(exc) is not None or _looks_like_write_failure(exc):
            raise output_error(target, exc, what=what) from exc
        raise


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", *, what: str = "the output",
                 encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename over ``path`` when the block ends.

    Same guarantees as :func:`atomic_path`; the data is flushed and fsynced before the rename.
    """
    with atomic_path(path, what=what) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def final_mode(target: PathLike) -> int:
    """The mode a finished output gets: the replaced file's, else what ``open()`` would give (0666 & ~umask).

    Temporary files (``mkstemp``) are 0600; renaming one unchanged would hide the output from the group.
    """
    try:
        return Path(target).stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _looks_like_write_failure(exc: BaseException) -> bool:
    """A writer's failure that carries no errno (torch.save's ``inline_container.cc`` messages)."""
    text = str(exc).lower()
    return any(s in text for s in ("unexpected pos", "file write failed", "no space left", "read-only file system"))
