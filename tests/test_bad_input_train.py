"""Bad input and faults around ``vmaedet train`` and checkpoints (issue 14).

Each case asserts, through :mod:`helpers.badinput`: no traceback, the exit code, the words of the message, every
file that existed before byte-identical after, and no file left behind. Classes covered: checkpoints
(content detection, metadata, shapes, resume of another variant/config), training accepting what
``data check`` rejects, config values, the run folder rule, full disk / read-only folder, Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.badinput import Case, run_case, run_cli, snapshot
from vmaedet.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

#: A tiny CLI run: micro model, batch 2, a few iterations, no progress bar.
TINY = ["--set", "model.arch=vit_micro", "--set", "train.batch_size=2", "--set", "data.num_workers=0",
        "--set", "runtime.threads=1", "--set", "data.kwargs={short_side: 64, crop_size: 48}"]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data, broken copies of it, checkpoints good and bad, and one finished run."""
    from safetensors.torch import save_file

    from vmaedet.data.synthetic import generate
    from vmaedet.models import create_detector
    from vmaedet.models.checkpoints import FORMAT, detector_config, save_detector

    w = tmp_path_factory.mktemp("badtrain")
    generate(w / "syn", videos=3, seconds=6, seed=1)
    # label 33 is inside 1..80 but not in the synthetic label map; keyframe 40 s lies beyond a 6 s video
    for name, row in (("label33", "synth_000,3,0.1,0.1,0.5,0.5,33,5"), ("far_keyframe", "synth_001,40,0.1,0.1,0.5,0.5,12,6")):
        shutil.copytree(w / "syn", w / name)
        with open(w / name / "annotations" / "train.csv", "a") as fh:
            fh.write(row + "\n")

    ck = w / "ck"
    ck.mkdir()
    m = create_detector("vit_micro")
    save_detector(m, ck / "good.safetensors")
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    torch.save({"model": sd}, ck / "pth_named.safetensors")  # a real .pth under a .safetensors name
    import pickle

    (ck / "pickle.safetensors").write_bytes(pickle.dumps({"a": 1}))
    save_file(sd, str(ck / "meta_not_json.safetensors"), metadata={"format": FORMAT, "config": "{not json"})
    save_file(sd, str(ck / "meta_no_config.safetensors"), metadata={"format": FORMAT})
    c = detector_config(m)
    c["backbone"]["bogus_field"] = 1
    save_file(sd, str(ck / "meta_unknown_field.safetensors"), metadata={"format": FORMAT, "config": json.dumps(c)})
    c = detector_config(m)
    c["short_side"] = 0
    save_file(sd, str(ck / "short_side0.safetensors"), metadata={"format": FORMAT, "config": json.dumps(c)})
    head10 = dict(sd, **{"head.weight": sd["head.weight"][:10].clone(), "head.bias": sd["head.bias"][:10].clone()})
    save_file(head10, str(ck / "head10.safetensors"), metadata={"format": FORMAT, "config": json.dumps(detector_config(m))})
    torch.save({"model": head10}, ck / "head10.pth")

    # one finished run (the real CLI), its resume checkpoint reused below
    code, text = run_cli(["train", "--data", str(w / "syn"), "--out", str(w / "done"), *TINY,
                          "--set", "train.max_steps=2", "--set", "runtime.progress=false"])
    assert code == 0, text
    return w


def _case(case: Case, tmp: Path, work: Path) -> str:
    """Run a case whose argv may name ``{work}`` (the module's shared folder); watch that folder too."""
    case = Case(case.id, [a.replace("{work}", str(work)) for a in case.argv], case.code, case.words, case.may_create)
    return run_case(case, tmp, watch=[work])


# -- checkpoints ------------------------------------------------------------------------------
CHECKPOINT_CASES = [
    Case("pickle-named-safetensors", ["info", "{work}/ck/pickle.safetensors"], 2, ["pickle.safetensors", "unpickle"]),
    Case("meta-not-json", ["info", "{work}/ck/meta_not_json.safetensors"], 2, ["'config'", "not valid JSON"]),
    Case("meta-no-config", ["info", "{work}/ck/meta_no_config.safetensors"], 2, ["no 'config' entry", "fix:"]),
    Case("meta-unknown-field", ["info", "{work}/ck/meta_unknown_field.safetensors"], 2, ["unknown field", "bogus_field"]),
    Case("short-side-0", ["info", "{work}/ck/short_side0.safetensors"], 2, ["short_side", "16..4096"]),
    Case("head-10-classes-safetensors", ["info", "{work}/ck/head10.safetensors"], 2,
         ["head.weight: file (10, 64) vs model (80, 64)", "10 classes"]),
    Case("head-10-classes-pth", ["info", "{work}/ck/head10.pth"], 2, ["head.bias: file (10,) vs model (80,)"]),
    Case("convert-bad-meta-writes-nothing", ["convert", "{work}/ck/meta_not_json.safetensors", "{tmp}/out.safetensors"],
         2, ["not valid JSON"]),
    Case("eval-checkpoint-head10", ["eval", "--checkpoint", "{work}/ck/head10.safetensors", "--data", "{work}/syn",
                                    "--out", "{tmp}/ev", "--device", "cpu"], 2, ["head.weight", "10 classes"]),
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=lambda c: c.id)
def test_checkpoint_cases(case: Case, tmp_path: Path, work: Path) -> None:
    _case(case, tmp_path, work)


def test_pth_named_safetensors_is_read_by_content(tmp_path: Path, work: Path) -> None:
    """Detected by content (a torch zip), not by its name: a correct result, not an error."""
    text = _case(Case("pth-named-safetensors", ["info", "{work}/ck/pth_named.safetensors"], 0, ["ava", "vit_micro"]),
                 tmp_path, work)
    assert "error" not in text.lower()


@pytest.mark.parametrize("name, words", [
    ("pickle.safetensors", ["refused to unpickle"]),
    ("meta_not_json.safetensors", ["not valid JSON"]),
    ("meta_no_config.safetensors", ["no 'config' entry"]),
    ("meta_unknown_field.safetensors", ["bogus_field"]),
    ("short_side0.safetensors", ["short_side"]),
    ("head10.safetensors", ["head.weight: file (10, 64) vs model (80, 64)"]),
])
def test_load_detector_raises_checkpoint_error(name: str, words: list[str], work: Path) -> None:
    from vmaedet.models.checkpoints import load_detector

    with pytest.raises(CheckpointError) as exc:
        load_detector(work / "ck" / name)
    for w in words:
        assert w in str(exc.value)
    assert exc.value.fix  # every error says how to fix it


# -- resume -----------------------------------------------------------------------------------
RESUME_CASES = [
    Case("resume-other-batch-size", ["train", "--data", "{work}/syn", "--out", "{work}/done", *TINY,
                                     "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--resume", "auto"], 2,
         ["train.batch_size: checkpoint 2 vs now 4", "same values"]),
    Case("resume-other-schedule", ["train", "--data", "{work}/syn", "--out", "{work}/done", *TINY,
                                   "--set", "train.max_steps=2", "--set", "schedule.epochs=7", "--resume", "auto"], 2,
         ["schedule.epochs: checkpoint 20 vs now 7"]),
    Case("resume-other-variant", ["train", "--data", "{work}/syn", "--out", "{work}/done", *TINY,
                                  "--set", "model.arch=vit_tiny", "--set", "train.max_steps=2", "--resume", "auto"], 2,
         ["model.arch: checkpoint 'vit_micro' vs now 'vit_tiny'", "patch_embed.proj.weight: file (64"]),
    Case("resume-not-a-resume-checkpoint", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY,
                                            "--resume", "{work}/ck/good.safetensors"], 2, ["not a vmaedet resume checkpoint", "model.init"]),
    Case("resume-and-overwrite", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--resume", "auto",
                                  "--overwrite"], 2, ["contradict", "--resume auto", "--overwrite"]),
]


@pytest.mark.parametrize("case", RESUME_CASES, ids=lambda c: c.id)
def test_resume_cases(case: Case, tmp_path: Path, work: Path) -> None:
    _case(case, tmp_path, work)


# -- config values ----------------------------------------------------------------------------
CONFIG_CASES = [
    Case("batch-size-0", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "train.batch_size=0"], 2,
         ["train.batch_size", "at least 1"]),
    Case("epochs-negative", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "schedule.epochs=-1"], 2,
         ["schedule.epochs", "at least 1 epoch"]),
    Case("lr-nan", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "optim.lr=.nan"], 2, ["optim.lr"]),
    Case("drop-path-1", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "model.drop_path=1.0"], 2,
         ["model.drop_path", "[0, 1)"]),
    Case("device-unknown", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "runtime.device=gpu"], 2,
         ["runtime.device", "auto | cpu | cuda"]),
    Case("short-side-0-config", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY,
                                 "--set", "data.kwargs={short_side: 0}"], 2, ["data.kwargs.short_side"]),
    Case("data-kwargs-typo", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY,
                              "--set", "data.kwargs={shortside: 64}"], 2, ["shortside", "data.kwargs.short_side'?"]),
    Case("unknown-variant", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY, "--set", "model.arch=vit_mirco"], 2,
         ["unknown model variant", "vit_micro"]),
    Case("malformed-yaml", ["train", "--config", "{tmp}/bad.yaml", "--data", "{work}/syn", "--out", "{tmp}/r"], 2,
         ["bad.yaml:3", "line 3", "column"]),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_config_cases(case: Case, tmp_path: Path, work: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model:\n  arch: vit_micro\n optim:\n  lr: 1\n")
    _case(case, tmp_path, work)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: device=cuda is valid here")
def test_device_cuda_without_gpu(tmp_path: Path, work: Path) -> None:
    _case(Case("device-cuda-no-gpu", ["train", "--data", "{work}/syn", "--out", "{tmp}/r", *TINY,
                                      "--set", "runtime.device=cuda"], 2, ["no CUDA GPU", "'cpu'"]), tmp_path, work)


# -- data that `data check` rejects -----------------------------------------------------------
DATA_CASES = [
    Case("label-not-in-labelmap", ["train", "--data", "{work}/label33", "--out", "{tmp}/r", *TINY], 2,
         ["1 error(s)", "unknown action id 33", "train.csv:10", "data check"]),
    Case("keyframe-outside-video", ["train", "--data", "{work}/far_keyframe", "--out", "{tmp}/r", *TINY], 2,
         ["keyframe synth_001,40", "outside the video", "train.csv:10"]),
    Case("data-root-missing", ["train", "--data", "{tmp}/nope", "--out", "{tmp}/r", *TINY], 2, ["dataset root not found"]),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.id)
def test_data_cases(case: Case, tmp_path: Path, work: Path) -> None:
    _case(case, tmp_path, work)
    assert not (tmp_path / "r" / "config.yaml").exists()  # refused before anything was written


# -- the run folder ---------------------------------------------------------------------------
def test_finished_run_is_refused_without_resume_or_overwrite(tmp_path: Path, work: Path) -> None:
    text = _case(Case("finished-run", ["train", "--data", "{work}/syn", "--out", "{work}/done", *TINY,
                                       "--set", "train.max_steps=2"], 2,
                      ["already holds a finished run", "last.pth", "final.safetensors", "--resume auto", "--overwrite"]),
                 tmp_path, work)
    assert "metrics.jsonl" in text


def test_started_run_is_refused(tmp_path: Path, work: Path) -> None:
    run = tmp_path / "started"
    run.mkdir()
    shutil.copy(work / "done" / "last.pth", run / "checkpoint-7.pth")  # a leftover a later resume would pick
    _case(Case("started-run", ["train", "--data", "{work}/syn", "--out", "{tmp}/started", *TINY], 2,
               ["already holds a started run", "checkpoint-7.pth"]), tmp_path, work)


def test_overwrite_clears_only_the_runs_files(tmp_path: Path, work: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(work / "done", run)
    shutil.copy(run / "last.pth", run / "checkpoint-9.pth")  # from a longer earlier run
    (run / "notes.txt").write_text("mine")
    old_final = (run / "final.safetensors").read_bytes()
    code, text = run_cli(["train", "--data", str(work / "syn"), "--out", str(run), *TINY, "--set", "train.max_steps=1",
                          "--set", "runtime.progress=false", "--overwrite"])
    assert code == 0 and "Traceback" not in text, text
    assert not (run / "checkpoint-9.pth").exists()  # the old run's leftover is gone
    assert (run / "notes.txt").read_text() == "mine"  # not a file train writes: kept
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in metrics) == 1  # one run's lines, not two runs appended
    assert (run / "final.safetensors").read_bytes() != old_final


@pytest.mark.parametrize("case", [
    Case("data-missing-new-folder", ["train", "--data", "{tmp}/nope", "--out", "{tmp}/new/r", *TINY], 2,
         ["dataset root not found"]),
    Case("bad-resume-new-folder", ["train", "--data", "{work}/syn", "--out", "{tmp}/new/r", *TINY,
                                   "--resume", "{work}/ck/good.safetensors"], 2, ["not a vmaedet resume checkpoint"]),
], ids=lambda c: c.id)
def test_a_refused_run_creates_no_output_folder(case: Case, tmp_path: Path, work: Path) -> None:
    """Nothing is written before every check passed: not even the (empty) run folder or its parents."""
    _case(case, tmp_path, work)
    assert not (tmp_path / "new").exists()


def test_resume_from_another_folder_is_refused_in_a_folder_holding_a_run(tmp_path: Path, work: Path) -> None:
    """Its last.pth would be replaced and its metrics.jsonl trimmed: the run folder rule applies."""
    shutil.copytree(work / "done", tmp_path / "other")  # another run; resume names work/done's checkpoint
    _case(Case("resume-from-elsewhere", ["train", "--data", "{work}/syn", "--out", "{tmp}/other", *TINY,
                                         "--set", "train.max_steps=2", "--resume", "{work}/done/last.pth"], 2,
               ["already holds a finished run", "lies outside it", "--resume auto", "--overwrite"]), tmp_path, work)


def test_resume_from_a_checkpoint_inside_the_folder_continues_its_run(tmp_path: Path, work: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(work / "done", run)
    code, text = run_cli(["train", "--data", str(work / "syn"), "--out", str(run), *TINY, "--set", "train.max_steps=2",
                          "--set", "runtime.progress=false", "--resume", str(run / "last.pth")])
    assert code == 0 and "Traceback" not in text, text


# -- full disk, read-only folder --------------------------------------------------------------
def _mount_tmpfs(folder: Path, opts: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True).returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_full_disk_names_the_file_and_keeps_earlier_files(tmp_path: Path, work: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "size=256k")
    try:
        if not mounted:  # not root: a torch.save that fails as it does on a full disk
            import errno

            from vmaedet.train import checkpointing

            def full(obj: object, fh: object) -> None:
                fh.write(b"PK\x03\x04partial")  # type: ignore[attr-defined]
                try:
                    raise OSError(errno.ENOSPC, "No space left on device")
                except OSError as exc:
                    raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64 vs 0") from exc

            disk.mkdir(exist_ok=True)
            monkeypatch.setattr(checkpointing.torch, "save", full)
        (disk / "notes.txt").write_text("earlier file")
        text = run_case(Case("full-disk", ["train", "--data", str(work / "syn"), "--out", "{tmp}/disk/run", *TINY,
                                           "--set", "train.max_steps=2", "--set", "runtime.progress=false"], 2,
                             ["no space left", "disk/run/", ".pth"],
                             may_create=("disk/run/config.yaml", "disk/run/metrics.jsonl",
                                         "disk/run/eval/detections_epoch000.csv")),
                        tmp_path, watch=[work])
        assert "could not write the checkpoint" in text
        assert (disk / "notes.txt").read_text() == "earlier file"
        assert not [p for p in (disk / "run").iterdir() if ".tmp" in p.name]
    finally:
        if mounted:
            _umount(disk)


def test_read_only_output_fails_fast(tmp_path: Path, work: Path) -> None:
    ro = tmp_path / "ro"
    mounted = _mount_tmpfs(ro, "ro,size=64k")
    try:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("cannot mount a tmpfs here and root ignores folder permissions")
            ro.mkdir()
            ro.chmod(0o555)
        words = ["the file system is read-only"] if mounted else ["permission denied"]
        run_case(Case("read-only-out", ["train", "--data", str(work / "syn"), "--out", "{tmp}/ro/run", *TINY], 2,
                      ["could not write into the run folder", *words]), tmp_path, watch=[work])
    finally:
        if mounted:
            _umount(ro)
        elif ro.is_dir():
            ro.chmod(0o755)


# -- Ctrl-C -----------------------------------------------------------------------------------
def test_ctrl_c_exits_130_keeps_checkpoint_and_resumes(tmp_path: Path, work: Path) -> None:
    """A real SIGINT to a real ``vmaedet train`` process once it has trained a few iterations."""
    run = tmp_path / "run"
    args = ["--data", str(work / "syn"), "--out", str(run), *TINY, "--set", "schedule.epochs=50",
            "--set", "runtime.log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([PY, "-m", "vmaedet.cli.main", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            metrics = run / "metrics.jsonl"
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text, text
    assert "interrupted" in text and "--resume auto" in text, text
    assert text.count("interrupted") == 1, text  # the command's own report, not a second bare line
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no temporary file left
    from vmaedet.train.checkpointing import load_resume

    state = load_resume(run / "last.pth")  # complete, readable
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert state["step"] == max(steps) >= 2  # saved at the iteration it stopped after
    before = snapshot([run])
    # --resume auto continues from that iteration (same config; max_steps may change)
    code, text = run_cli(["train", *args, "--set", f"train.max_steps={state['step'] + 1}",
                          "--set", "runtime.progress=false", "--resume", "auto"])
    assert code == 0, text
    assert load_resume(run / "last.pth")["step"] == state["step"] + 1
    assert before[run / "last.pth"] != snapshot([run])[run / "last.pth"]


@pytest.mark.parametrize("kw, words", [({"short_side": 0}, "short_side"), ({"crop_size": -5}, "crop_size"),
                                       ({"box_threshold": 1.5}, "box_threshold")])
def test_dataset_geometry_is_checked_before_opencv(kw: dict, words: str, work: Path) -> None:
    """``short_side`` ≤ 0 used to fail later inside OpenCV's resize; the dataset refuses it up front."""
    from vmaedet.data.ava import build_dataset
    from vmaedet.errors import DataError

    with pytest.raises(DataError, match=words):
        build_dataset(work / "syn", "val", False, **kw)
