"""Training loop mechanics on a toy dataset that obeys the AVA dataset contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers.toytrain import ToyAVADataset, toy_collate, toy_config
from vmaedet.config import load_config
from vmaedet.errors import ConfigError, DataError, VmaedetError
from vmaedet.train.checkpointing import load_resume


def _no_eval(*args: Any, **kwargs: Any) -> dict[str, Any]:
    raise AssertionError("evaluation should not run without a val set")


def test_loop_trains_and_writes_artifacts(tmp_path: Path) -> None:
    from vmaedet.models.checkpoints import load_detector
    from vmaedet.train.loop import train

    cfg = toy_config(tmp_path, "schedule.epochs=6")
    res = train(cfg, train_dataset=ToyAVADataset(8), collate_fn=toy_collate, evaluate_fn=_no_eval)
    assert res.steps == 6 * 4
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert len(losses) == 24 and all(r["lr"] >= 0 for r in lines)
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])  # it learns the toy task
    state = load_resume(tmp_path / "last.pth")  # weights_only=True
    assert state["step"] == 24 and state["epoch"] == 6 and state["step_in_epoch"] == 0
    assert (tmp_path / "checkpoint-3.pth").is_file() and (tmp_path / "config.yaml").is_file()
    final = load_detector(res.final_checkpoint)
    for k, v in final.state_dict().items():
        assert torch.equal(v, state["model"][k]), k


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path: Path) -> None:
    from vmaedet.train.loop import train

    cfg = toy_config(tmp_path, "train.seed=3")
    with pytest.raises(VmaedetError, match=r"iteration \d+") as exc:
        train(cfg, train_dataset=ToyAVADataset(8, nan_at=5), collate_fn=toy_collate, evaluate_fn=_no_eval)
    assert "last good checkpoint" in str(exc.value)


def test_missing_data_and_config_typo_are_clear(tmp_path: Path) -> None:
    from vmaedet.cli.main import main
    from vmaedet.train.loop import train

    with pytest.raises(DataError, match="dataset root not found"):
        train(toy_config(tmp_path, f"data.root={tmp_path / 'nope'}"))
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        load_config(None, ["optim.lrr=1"])
    assert main(["train", "--config", "tiny", "--set", "schedule.epoch=3"]) == 2


@pytest.mark.slow
def test_cli_train_then_evaluate_checkpoint_on_synthetic_data(tmp_path: Path) -> None:
    from vmaedet.cli.main import main
    from vmaedet.data.annotations import read_exclusions, read_proposals
    from vmaedet.data.synthetic import generate
    from vmaedet.train.evaluate import evaluate_checkpoint

    data = tmp_path / "data"
    generate(data, videos=3, seconds=6, seed=1)
    out = tmp_path / "run"
    rc = main(["train", "--config", "tiny", "--data", str(data), "--out", str(out), "--set", "model.arch=vit_micro",
               "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "data.num_workers=0",
               "--set", "runtime.progress=false"])
    assert rc == 0
    assert [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]["step"] == 2
    res = evaluate_checkpoint(out / "final.safetensors", data, out_dir=tmp_path / "ev", batch_size=2, num_workers=0)
    assert 0.0 <= res["mAP"] <= 1.0
    excl = data / "annotations" / "excluded_val.csv"
    excluded = read_exclusions(excl) if excl.is_file() else set()
    kept = [r for r in read_proposals(data / "annotations" / "proposals_val.csv") if r.score >= 0.8 and r.key not in excluded]
    rows = (tmp_path / "ev" / "detections.csv").read_text().splitlines()
    assert len(rows) == 80 * len(kept)  # every proposal ≥ 0.8 scored for all 80 classes


def test_initial_model_is_the_weights_train_starts_from(tmp_path: Path) -> None:
    """With lr 0 the trained weights stay the initial ones: ``initial_model`` must reproduce them."""
    from vmaedet.train.loop import initial_model, train

    cfg = toy_config(tmp_path, "schedule.epochs=1", "optim.lr=0", "optim.min_lr=0")
    res = train(cfg, train_dataset=ToyAVADataset(8), collate_fn=toy_collate, evaluate_fn=_no_eval)
    start = initial_model(cfg).state_dict()
    other = initial_model(toy_config(tmp_path / "o", "train.seed=5")).state_dict()
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert any(not torch.equal(v, other[k]) for k, v in start.items())  # the seed does matter
