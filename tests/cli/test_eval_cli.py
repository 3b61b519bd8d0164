"""``vmaedet eval``: table + JSON output, error exits, the checkpoint mode's delegation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmaedet.cli.main import main


def _files(fixtures_dir: Path, case: str) -> list[str]:
    root = fixtures_dir / "ava-eval-case"
    return ["--gt", str(root / case / "gt.csv"), "--detections", str(root / case / "det.csv"),
            "--labelmap", str(root / "labelmap.pbtxt"), "--exclusions", str(root / case / "exclusions.csv")]


@pytest.mark.parametrize("protocol", ["official", "seed"])
def test_eval_prints_table_and_writes_json(fixtures_dir: Path, tmp_path: Path, protocol: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res" / "map.json"
    assert main(["eval", *_files(fixtures_dir, "dense"), "--protocol", protocol, "--json", str(out)]) == 0
    expected = json.loads((fixtures_dir / "ava-eval-case" / "dense" / "expected.json").read_text())[protocol]
    written = json.loads(out.read_text())
    assert written["mAP"] == pytest.approx(expected["mAP"], abs=1e-9)
    assert written["per_class_ap"].keys() == expected["per_class_ap"].keys()
    for cid, ap in expected["per_class_ap"].items():
        assert written["per_class_ap"][cid] == (None if ap is None else pytest.approx(ap, abs=1e-9))
    printed = capsys.readouterr().out
    assert f"{expected['mAP']:.5f}" in printed
    assert "talk to" in printed  # the per-class table names the classes


def test_eval_default_protocol_is_official(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "map.json"
    assert main(["eval", *_files(fixtures_dir, "dense"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == pytest.approx(0.2669140657917166, abs=1e-9)


def test_eval_malformed_csv_exits_2_naming_the_line(fixtures_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    lines = (fixtures_dir / "ava-eval-case" / "dense" / "det.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",", ",oops,", 1)
    bad = tmp_path / "det.csv"
    bad.write_text("\n".join(lines) + "\n")
    args = _files(fixtures_dir, "dense")
    args[3] = str(bad)
    out = tmp_path / "map.json"
    out.write_text("previous result")
    assert main(["eval", *args, "--json", str(out)]) == 2  # an existing --json needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["eval", *args, "--json", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4" in err and "Traceback" not in err
    assert out.read_text() == "previous result"  # nothing already written is lost


def test_eval_missing_inputs_and_bad_protocol(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--gt", str(fixtures_dir / "ava-eval-case" / "dense" / "gt.csv")]) == 2
    assert "--detections" in capsys.readouterr().err
    assert main(["eval", *_files(fixtures_dir, "dense"), "--protocol", "voc"]) == 2
    assert "official or" in capsys.readouterr().err


def test_checkpoint_mode_needs_both_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert main(["eval", "--checkpoint", str(ckpt)]) == 2
    assert "go together" in capsys.readouterr().err


def test_checkpoint_mode_runs_the_model_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vmaedet.data.synthetic import generate
    from vmaedet.data.annotations import read_ava_csv, read_labelmap
    from vmaedet.models import PreprocessConfig, create_detector
    from vmaedet.models.checkpoints import save_detector

    data = tmp_path / "data"
    generate(data, videos=2, seconds=6, seed=1, overwrite=True)
    model = create_detector("vit_micro", preprocess=PreprocessConfig(short_side=128))
    ckpt = save_detector(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(data), "--protocol", "seed", "--json", str(out),
                 "--out", str(tmp_path / "ev"), "--device", "cpu", "--batch-size", "2"]) == 0
    result = json.loads(out.read_text())
    assert 0.0 <= result["mAP"] <= 1.0
    evaluated = {str(i) for i in read_labelmap(data / "annotations" / "labelmap.pbtxt")}
    assert set(result["per_class_ap"]) <= evaluated
    det = read_ava_csv(tmp_path / "ev" / "detections.csv", with_scores=True)
    assert len(det.action_ids) > 0 and len(det.action_ids) % 80 == 0  # all 80 classes per kept proposal
    assert "frame-mAP@0.5" in capsys.readouterr().out
