"""`vmaedet data check`: every planted defect is reported with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from typer.testing import CliRunner

from vmaedet.cli.main import app, main
from vmaedet.data import synthetic
from vmaedet.data.validate import check_dataset, load_config


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "d"
    synthetic.generate(root, videos=2, seconds=5, seed=2, width=96, height=64)
    return root


def test_clean_dataset_passes(clean, capsys):
    report = check_dataset(clean)
    assert report.errors == [] and report.warnings == []
    train_rows = (clean / "annotations" / "train.csv").read_text().split()
    assert report.summary["train"]["rows"] == len(train_rows)
    assert sum(report.summary["train"]["class_histogram"].values()) == len(train_rows)
    assert main(["data", "check", str(clean)]) == 0
    assert "summary" in capsys.readouterr().out


def test_planted_defects_reported_with_lines(clean, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(clean, root)
    ann = root / "annotations" / "train.csv"
    lines = ann.read_text().splitlines()
    n = len(lines)
    vid = lines[0].split(",")[0]
    planted = [
        f"{vid},2,0.1,0.1,0.5",                    # n+1 missing columns
        f"{vid},2,0.1,zz,0.5,0.5,12,0",            # n+2 non-numeric
        f"{vid},2,0.1,0.1,1.2,0.5,12,0",           # n+3 outside [0, 1]
        f"{vid},2,0.6,0.1,0.5,0.5,12,0",           # n+4 inverted
        f"{vid},2,0.1,0.1,0.5,0.5,2,0",            # n+5 action 2 not in the label map
        "ghost_video,2,0.1,0.1,0.5,0.5,12,0",      # n+6 missing video
        f"{vid},0,0.1,0.1,0.5,0.5,12,0",           # n+7 keyframe at 0 s: no left context (warning)
        f"{vid},9,0.1,0.1,0.5,0.5,12,0",           # n+8 keyframe past the end of the 5 s video
    ]
    ann.write_text("\n".join(lines + planted) + "\n")
    report = check_dataset(root, "train")
    found = {(i.line, i.severity) for i in report.issues if i.file == str(ann)}
    for k in range(1, 9):
        sev = "warning" if k == 7 else "error"
        assert (n + k, sev) in found, (n + k, report.issues)
    msgs = {i.line: i.message for i in report.issues}
    assert "columns" in msgs[n + 1] and "'zz'" in msgs[n + 2] and "outside [0, 1]" in msgs[n + 3]
    assert "inverted" in msgs[n + 4] and "unknown action id 2" in msgs[n + 5] and "missing" in msgs[n + 6]
    assert "lacks context" in msgs[n + 7] and "outside the video" in msgs[n + 8]
    # exit code through Typer's runner (standalone mode keeps typer.Exit's code)
    result = CliRunner().invoke(app, ["data", "check", str(root), "--split", "train", "--max-rows", "3"])
    assert result.exit_code == 1 and "7 error(s)" in result.output and "more (raise --max-rows" in result.output


def test_unreadable_video_and_config(clean, tmp_path):
    import shutil

    root = tmp_path / "bad2"
    shutil.copytree(clean, root)
    val_vid = (root / "annotations" / "val.csv").read_text().split(",")[0]
    (root / "videos" / f"{val_vid}.mp4").write_bytes(b"\x00garbage" * 50)
    (root / "cfg.yaml").write_text("frame_source: video\nsplits:\n  val: {annotations: annotations/val.csv}\n")
    report = check_dataset(root, "val", load_config(root, root / "cfg.yaml"))
    assert any("unreadable video" in i.message and i.file.endswith(f"{val_vid}.mp4") for i in report.errors)
    (root / "cfg2.yaml").write_text("frame_sauce: video\n")
    assert main(["data", "check", str(root), "--config", str(root / "cfg2.yaml")]) == 2
