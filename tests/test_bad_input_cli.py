"""Bad input and faults for export, eval, synth, convert, data, info, verify, bench, demo, doctor (issue 14).

Every case runs the real entry point in this process through :mod:`helpers.badinput` and asserts: no traceback,
the exit code (0 ok, 1 a check failed, 2 bad input or usage, 130 interrupted), the words of the
message, every file that existed before byte-identical after, and no temporary or partial file left.

Classes: usage mistakes (unknown option / command, missing argument, out-of-range value) on every
command; an output that is also an input; an existing output without ``--overwrite``; a full disk and a
read-only folder under every writer (a small tmpfs when the tests run as root, else a fake that raises
ENOSPC / EROFS at the write); missing inputs; Ctrl-C; plain progress lines when not on a terminal.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from rich.console import Console

from helpers.badinput import Case, run_case, run_cli

LABELMAP = 'label { name: "stand" label_id: 12 label_type: PERSON_MOVEMENT }\n' \
           'label { name: "walk" label_id: 14 label_type: PERSON_MOVEMENT }\n'
GT = "vid_a,0902,0.100,0.100,0.500,0.500,12,0\nvid_a,0902,0.500,0.500,0.900,0.900,14,1\n"
DET = "vid_a,0902,0.10000,0.10000,0.50000,0.50000,12,0.90000\nvid_a,0902,0.50000,0.50000,0.90000,0.90000,14,0.20000\n"


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny detector checkpoint (vit_micro), shared by the cases (watched: it must never change)."""
    import torch

    from vmaedet.models import create_detector
    from vmaedet.models.checkpoints import save_detector

    torch.manual_seed(0)
    return save_detector(create_detector("vit_micro"), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """``{tmp}/in``: gt.csv, det.csv, labelmap.pbtxt, an earlier result old.json, a dataset-like folder."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "gt.csv").write_text(GT)
    (d / "det.csv").write_text(DET)
    (d / "labelmap.pbtxt").write_text(LABELMAP)
    (d / "old.json").write_text('{"mAP": 0.5, "earlier": true}\n')
    (d / "old.safetensors").write_bytes(b"an earlier conversion")
    ds = d / "dataset"  # a previous dataset (synth --overwrite must keep it when the new one fails)
    (ds / "videos").mkdir(parents=True)
    (ds / "annotations").mkdir()
    (ds / "meta.json").write_text('{"previous": true}\n')
    (ds / "videos" / "synth_000.mp4").write_bytes(b"previous video bytes")
    (ds / "annotations" / "train.csv").write_text("synth_000,2,0.1,0.1,0.5,0.5,12,0\n")
    (ds / "my_notes.txt").write_text("the user's own file\n")
    return d


def _mount(path: Path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root only; ``VMAEDET_TEST_FAKE_DISK=1`` forces the fake instead)."""
    if os.geteuid() != 0 or os.environ.get("VMAEDET_TEST_FAKE_DISK"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _fill(path: Path) -> None:
    """Write a filler file until the file system is full."""
    fd = os.open(path / "filler.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size) == size:
                    pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.sync()


@contextlib.contextmanager
def faulty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> Iterator[tuple[Path, str]]:
    """A folder whose writes fail: ``kind`` "full" (ENOSPC) or "ro" (EROFS).

    As root: a 64 KiB tmpfs, filled to the brim or mounted read-only. Otherwise (or when mounting is
    not allowed): a plain folder and a fake that raises the error when a file is moved into it (the
    last step of every atomic write), or created there.
    """
    d = tmp_path / f"disk_{kind}"
    if _mount(d, "size=64k" + (",ro" if kind == "ro" else "")):
        try:
            if kind == "full":
                _fill(d)
            yield d, "tmpfs"
        finally:
            subprocess.run(["umount", str(d)], capture_output=True)
            if os.path.ismount(d):
                subprocess.run(["umount", "-l", str(d)], capture_output=True)
        return
    d.mkdir(parents=True, exist_ok=True)
    code = errno.ENOSPC if kind == "full" else errno.EROFS
    real_replace, real_mkdir = os.replace, os.mkdir

    def _under(p: object) -> bool:
        try:
            return Path(os.fspath(p)).resolve().is_relative_to(d.resolve())  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def replace(src: object, dst: object, *a: object, **k: object) -> None:
        if _under(dst):
            raise OSError(code, os.strerror(code), os.fspath(dst))  # type: ignore[arg-type]
        real_replace(src, dst, *a, **k)  # type: ignore[arg-type]

    def mkdir(p: object, *a: object, **k: object) -> None:
        if kind == "ro" and _under(p):
            raise OSError(code, os.strerror(code), os.fspath(p))  # type: ignore[arg-type]
        real_mkdir(p, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "mkdir", mkdir)
    yield d, "fake"


def _eval_args(tmp: str = "{tmp}") -> list[str]:
    return ["eval", "--gt", f"{tmp}/in/gt.csv", "--detections", f"{tmp}/in/det.csv",
            "--labelmap", f"{tmp}/in/labelmap.pbtxt"]


# -- usage mistakes: short usage message, exit 2, never a traceback ------------------------------
USAGE = [
    Case("unknown-command", ["frobnicate"], 2, ["Usage:", "No such command"]),
    Case("train-unknown-option", ["train", "--bogus"], 2, ["Usage:", "No such option", "--bogus"]),
    Case("export-missing-argument", ["export"], 2, ["Usage:", "Missing argument"]),
    Case("eval-missing-detections", ["eval", "--detections", "{tmp}/missing.csv"], 2, ["--detections", "does not exist"]),
    Case("stream-stride-0", ["stream", "--stride", "0"], 2, ["--stride", "Usage:"]),
    Case("stream-threshold-2", ["stream", "--threshold", "2"], 2, ["--threshold", "Usage:"]),
    Case("synth-missing-argument", ["synth"], 2, ["Missing argument"]),
    Case("synth-not-a-number", ["synth", "{tmp}/d", "--videos", "many"], 2, ["Usage: vmaedet synth", "--videos"]),
    Case("convert-one-argument", ["convert", "{tmp}/in/det.csv"], 2, ["Missing argument"]),
    Case("info-unknown-option", ["info", "--bogus"], 2, ["No such option"]),
    Case("verify-repeats-0", ["verify", "--repeats", "0"], 2, ["--repeats"]),
    Case("bench-iters-0", ["bench", "--iters", "0"], 2, ["--iters"]),
    Case("demo-videos-1", ["demo", "--videos", "1"], 2, ["--videos"]),
    Case("doctor-unknown-option", ["doctor", "--bogus"], 2, ["No such option"]),
    Case("data-unknown-subcommand", ["data", "frobnicate"], 2, ["No such command"]),
    Case("data-check-missing-root", ["data", "check"], 2, ["Missing argument"]),
    Case("data-check-fps-0", ["data", "check", "{tmp}/in/dataset", "--fps", "0"], 2, ["--fps", "positive"]),
    Case("eval-batch-size-0", ["eval", "--batch-size", "0"], 2, ["--batch-size"]),
    Case("eval-bad-protocol", [*_eval_args(), "--protocol", "voc"], 2, ["--protocol", "official"]),
    Case("synth-videos-0", ["synth", "{tmp}/d", "--videos", "0"], 2, ["videos", "1 or more"]),
    Case("synth-odd-width", ["synth", "{tmp}/d", "--width", "65"], 2, ["even"]),
    Case("export-format-bogus", ["export", "{tmp}/in/det.csv", "--format", "zip"], 2, ["--format", "zip"]),
]


@pytest.mark.parametrize("case", USAGE, ids=lambda c: c.id)
def test_usage_errors(case: Case, tmp_path: Path, files: Path) -> None:
    text = run_case(case, tmp_path)
    assert len(text.splitlines()) < 15, f"{case.id}: a usage error is a short message:\n{text}"


# -- missing inputs -------------------------------------------------------------------------------
MISSING = [
    Case("info-missing-checkpoint", ["info", "{tmp}/missing.pth"], 2, ["not found"]),
    Case("export-missing-checkpoint", ["export", "{tmp}/missing.safetensors", "--out", "{tmp}/out"], 2, ["not found"]),
    Case("convert-missing-source", ["convert", "{tmp}/missing.pth", "{tmp}/out.safetensors"], 2, ["not found"]),
    Case("data-check-missing-root", ["data", "check", "{tmp}/nothing"], 2, ["dataset root not found", "vmaedet synth"]),
    Case("eval-missing-checkpoint", ["eval", "--checkpoint", "{tmp}/missing.safetensors", "--data", "{tmp}/in"], 2,
         ["--checkpoint", "does not exist"]),
    Case("eval-missing-labelmap", ["eval", "--gt", "{tmp}/in/gt.csv", "--detections", "{tmp}/in/det.csv"], 2,
         ["--labelmap"]),
]


@pytest.mark.parametrize("case", MISSING, ids=lambda c: c.id)
def test_missing_inputs(case: Case, tmp_path: Path, files: Path) -> None:
    run_case(case, tmp_path)


# -- outputs: never an input, never an existing file without --overwrite -------------------------
def _outputs_cases() -> list[Case]:
    e = _eval_args()
    return [
        Case("eval-json-is-gt", [*e, "--json", "{tmp}/in/gt.csv"], 2, ["same file", "--gt"]),
        Case("eval-json-is-gt-even-with-overwrite", [*e, "--json", "{tmp}/in/gt.csv", "--overwrite"], 2, ["same file"]),
        Case("eval-json-is-detections", [*e, "--json", "{tmp}/in/det.csv", "--overwrite"], 2, ["same file", "--detections"]),
        Case("eval-json-exists", [*e, "--json", "{tmp}/in/old.json"], 2, ["already exists", "--overwrite"]),
        Case("convert-dst-is-src", ["convert", "{ckpt}", "{ckpt}", "--overwrite"], 2, ["same file", "SRC"]),
        Case("convert-dst-exists", ["convert", "{ckpt}", "{tmp}/in/old.safetensors"], 2, ["already exists", "--overwrite"]),
        Case("convert-dst-exists-refused-before-src-is-read",
             ["convert", "{tmp}/in/det.csv", "{tmp}/in/old.safetensors"], 2, ["--overwrite"]),
        Case("synth-non-empty", ["synth", "{tmp}/in/dataset", "--videos", "1", "--seconds", "5"], 2,
             ["not empty", "--overwrite"]),
        Case("synth-out-is-a-file", ["synth", "{tmp}/in/gt.csv", "--videos", "1", "--seconds", "5"], 2, ["not a directory"]),
        Case("export-artifact-exists", ["export", "{ckpt}", "--input-size", "64x96", "--max-persons", "2",
                                        "--out", "{tmp}/exp"], 2, ["already exists", "--overwrite"]),
        Case("export-out-is-a-file", ["export", "{ckpt}", "--input-size", "64x96", "--out", "{tmp}/in/gt.csv"], 2,
             ["folder"]),
        Case("bench-out-exists", ["bench", "--out", "{tmp}/in/old.json", "--engines", "torch"], 2,
             ["already exists", "--overwrite"]),
        Case("bench-out-is-checkpoint", ["bench", "--checkpoint", "{ckpt}", "--out", "{ckpt}", "--overwrite"], 2,
             ["same file", "--checkpoint"]),
        Case("verify-json-exists", ["verify", "--checkpoint", "{ckpt}", "--json", "{tmp}/in/old.json"], 2,
             ["already exists", "--overwrite"]),
        Case("verify-json-is-checkpoint", ["verify", "--checkpoint", "{ckpt}", "--json", "{ckpt}", "--overwrite"], 2,
             ["same file"]),
        Case("demo-previous-results", ["demo", "--out", "{tmp}/prev_demo"], 2, ["previous demo", "--overwrite"]),
    ]


@pytest.mark.parametrize("case", _outputs_cases(), ids=lambda c: c.id)
def test_outputs_are_never_inputs_nor_replaced_silently(case: Case, tmp_path: Path, files: Path, ckpt: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "micro_64x96_fp32.onnx").write_bytes(b"an earlier export")
    (tmp_path / "prev_demo").mkdir()
    (tmp_path / "prev_demo" / "summary.json").write_text('{"previous": true}\n')
    case = Case(case.id, [a.replace("{ckpt}", str(ckpt)) for a in case.argv], case.code, case.words)
    run_case(case, tmp_path, watch=[ckpt.parent])


def test_overwrite_replaces_and_old_force_spelling_works(tmp_path: Path, files: Path, ckpt: Path) -> None:
    """The same flag everywhere replaces the output; convert's old --force still does."""
    code, text = run_cli([*_eval_args(str(tmp_path)), "--json", str(files / "old.json"), "--overwrite"])
    assert code == 0, text
    assert "earlier" not in (files / "old.json").read_text()
    code, text = run_cli(["convert", str(ckpt), str(files / "old.safetensors"), "--force"])
    assert code == 0, text
    assert (files / "old.safetensors").read_bytes() != b"an earlier conversion"
    assert not [p for p in files.iterdir() if ".tmp" in p.name]


# -- full disk and read-only folders: which file, the cause in words, exit 2, nothing left ------
def _fault_cases(kind: str) -> list[Case]:
    word = "no space left" if kind == "full" else "read-only"
    e = _eval_args()
    return [
        Case(f"eval-json-{kind}", [*e, "--json", "{disk}/map.json"], 2, [word, "map.json"]),
        Case(f"synth-{kind}", ["synth", "{disk}/data", "--videos", "1", "--seconds", "5", "--width", "64",
                                "--height", "64"], 2, [word]),
        Case(f"convert-{kind}", ["convert", "{ckpt}", "{disk}/m.safetensors"], 2, [word, "m.safetensors"]),
        Case(f"export-{kind}", ["export", "{ckpt}", "--input-size", "64x96", "--max-persons", "2", "--out", "{disk}"],
             2, [word]),
        Case(f"verify-json-{kind}", ["verify", "--checkpoint", "{ckpt}", "--input-size", "64x96", "--persons", "1",
                                     "--json", "{disk}/v.json"], 2, [word, "v.json"]),
    ]


@pytest.mark.parametrize("kind", ["full", "ro"])
@pytest.mark.parametrize("index", range(5))
def test_full_disk_and_read_only(kind: str, index: int, tmp_path: Path, files: Path, ckpt: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    case = _fault_cases(kind)[index]
    with faulty_dir(tmp_path, monkeypatch, kind) as (disk, how):
        argv = [a.replace("{disk}", str(disk)).replace("{ckpt}", str(ckpt)) for a in case.argv]
        text = run_case(Case(f"{case.id}-{how}", argv, case.code, case.words), tmp_path, watch=[ckpt.parent])
        assert "could not write" in text.lower() or "cannot write" in text.lower(), text


def test_synth_overwrite_on_a_full_disk_keeps_the_previous_dataset(tmp_path: Path, files: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite replaces a dataset only once the new one is complete: a failed run keeps the old one."""
    real_replace = os.replace
    with faulty_dir(tmp_path, monkeypatch, "full") as (disk, how):
        if how == "tmpfs":  # the previous dataset lives on the full disk itself
            subprocess.run(["umount", str(disk)], check=True)
            assert _mount(disk, "size=256k")
            import shutil

            shutil.copytree(files / "dataset", disk / "dataset")
            _fill(disk)
            target = disk / "dataset"
        else:
            import vmaedet.data.synthetic as syn

            target = files / "dataset"
            monkeypatch.setattr(os, "replace", real_replace)  # the fake below fails at the write itself
            monkeypatch.setattr(syn, "encode_mp4", _enospc)
        run_case(Case(f"synth-overwrite-full-{how}", ["synth", str(target), "--videos", "1", "--seconds", "5",
                                                       "--width", "64", "--height", "64", "--overwrite"],
                      2, ["no space left"]), tmp_path)
        assert (target / "meta.json").read_text() == '{"previous": true}\n'
        assert sorted(p.name for p in target.iterdir()) == ["annotations", "meta.json", "my_notes.txt", "videos"]


def _enospc(frames: object, path: Path, *a: object) -> int:
    with open(path, "wb") as fh:  # a partial file, then the disk is full
        fh.write(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


# -- exit codes: 1 a check failed, 130 interrupted ---------------------------------------------
def test_data_check_errors_exit_1(tmp_path: Path) -> None:
    from vmaedet.data.synthetic import generate

    generate(tmp_path / "ds", videos=1, seconds=5, width=64, height=64)
    with open(tmp_path / "ds" / "annotations" / "train.csv", "a") as fh:
        fh.write("synth_000,3,0.9,0.1,0.5,0.5,12,0\n")  # x1 > x2
    run_case(Case("data-check-finds-an-error", ["data", "check", "{tmp}/ds"], 1, ["error"]), tmp_path)


def test_ctrl_c_during_synth_exits_130_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vmaedet.data.synthetic as syn

    real = syn.render_video
    calls = []

    def render(script):  # noqa: ANN001, ANN202
        calls.append(script)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(script)

    monkeypatch.setattr(syn, "render_video", render)
    run_case(Case("synth-ctrl-c", ["synth", "{tmp}/data", "--videos", "3", "--seconds", "5", "--width", "64",
                                   "--height", "64"], 130, ["interrupted"]), tmp_path)
    assert not (tmp_path / "data").exists()


def test_interrupt_inside_click_abort_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Older Typer (click's own main) turns Ctrl-C into ``Abort``: still 130."""
    from vmaedet.cli import main as cli_main

    class Abort(RuntimeError):
        pass

    Abort.__module__ = "click.exceptions"

    def app(*a: object, **k: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise Abort() from exc

    monkeypatch.setattr(cli_main, "app", app)
    assert run_cli(["synth"])[0] == 130


def test_click_usage_error_from_either_click_is_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Duck-typed: a usage error of click itself (older Typer) and of Typer's bundled copy alike."""
    import click

    from vmaedet.cli import main as cli_main

    for exc in (click.UsageError("No such option: --x"), click.BadParameter("bad value")):
        def app(*a: object, _e: Exception = exc, **k: object) -> None:
            raise _e

        monkeypatch.setattr(cli_main, "app", app)
        code, text = run_cli(["x"])
        assert code == 2 and "Error" in text and "Traceback" not in text


# -- progress: plain lines when not on a terminal ----------------------------------------------
def test_synth_prints_plain_progress_lines_in_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMAEDET_PROGRESS", "auto")
    code, text = run_cli(["synth", str(tmp_path / "d"), "--videos", "2", "--seconds", "5", "--width", "64",
                          "--height", "64"])
    assert code == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("[synth]")]
    assert lines[0].startswith("[synth] videos 0/2") and "elapsed" in lines[0]
    assert lines[-1].startswith("[synth] videos 2/2 (100%)") and "done" in lines[-1]


def test_progress_plain_lines_periodic_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    import time

    from vmaedet.progress import progress, track

    buf = io.StringIO()
    with caplog.at_level(logging.INFO, logger="vmaedet.progress"):
        with progress(4, "steps", "train", console=Console(file=buf), interval=0.05) as p:
            for _ in range(4):
                time.sleep(0.06)
                p.advance(detail="loss 0.1")
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[train] steps 0/4 (0%) elapsed 0:00 ETA ?")
    assert any(ln.startswith("[train] steps ") and "ETA 0:0" in ln and "loss 0.1" in ln for ln in lines[1:-1])
    assert lines[-1].startswith("[train] steps 4/4 (100%)") and " done" in lines[-1]
    assert [r.getMessage() for r in caplog.records if r.name == "vmaedet.progress"] == lines
    # a step-less wait still shows up in the log (the heartbeat)
    buf = io.StringIO()
    with progress(None, "waiting", "eval", console=Console(file=buf), interval=0.05):
        time.sleep(0.3)
    assert len(buf.getvalue().splitlines()) >= 3
    # iterable form; off prints nothing
    buf = io.StringIO()
    assert list(track(range(3), desc="b", stage="x", console=Console(file=buf))) == [0, 1, 2]
    assert "[x] b 3/3 (100%)" in buf.getvalue()
    buf = io.StringIO()
    with progress(3, "s", "y", console=Console(file=buf), enabled=False) as p:
        p.advance(3)
    assert buf.getvalue() == ""


def test_progress_bar_on_a_terminal_and_nesting() -> None:
    from vmaedet.progress import progress

    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=120)
    with progress(2, "steps", "demo", console=term) as outer:
        assert outer.mode == "bar"
        with progress(3, "batches", "train") as inner:  # joins the bar shown now
            assert inner.mode == "bar"
            inner.advance(3)
        outer.advance(2)
    assert "[demo]" not in buf.getvalue()  # no plain lines on a terminal
