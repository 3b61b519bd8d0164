"""vmaedet.safeio: the output rules every writer shares."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from vmaedet.errors import OutputError
from vmaedet.safeio import atomic_path, atomic_write, check_outputs, find_os_error


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json") as fh:
            fh.write("{}")
        open(tmp_path / "b.json", "w").close()  # what a plain open() gives under the same umask
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "b.json") == 0o644


def test_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pth"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="no space left"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("unexpected pos 64") from OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_an_unrelated_error_is_not_blamed_on_the_output(tmp_path: Path) -> None:
    """A read error inside the block (no write failure) propagates as it is."""
    with pytest.raises(ValueError, match="errno 5 in the input"):
        with atomic_path(tmp_path / "x.json"):
            raise ValueError("errno 5 in the input")
    assert list(tmp_path.iterdir()) == []


def test_find_os_error_walks_the_chain() -> None:
    inner = OSError(errno.EROFS, "Read-only file system")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("writer failed") from exc
    except RuntimeError as outer:
        assert find_os_error(outer) is inner


def test_check_outputs_rules(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="same file as the input"):
        check_outputs({"save": src}, {"source": src}, overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        check_outputs({"save": src}, {})
    check_outputs({"save": src}, {}, overwrite=True)
    with pytest.raises(OutputError, match="two outputs"):
        check_outputs({"a": tmp_path / "o.json", "b": tmp_path / "o.json"})
