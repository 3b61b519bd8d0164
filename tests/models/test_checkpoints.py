"""Checkpoint layouts, the pickle allowlist and error messages."""

from __future__ import annotations

import argparse
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from vmaedet.errors import CheckpointError
from vmaedet.models import PreprocessConfig, create_detector
from vmaedet.models.checkpoints import convert_checkpoint, load_detector, load_detector_with_report, save_detector


def _sd(name: str = "vit_micro") -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    m = create_detector(name)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.1)
    return m.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> None:
    for k in keys or a:
        assert torch.equal(a[k], b[k]), k


def test_official_ava_layouts(fixtures_dir: Path) -> None:
    d = fixtures_dir / "seed-parity-tiny"
    ref = torch.load(d / "checkpoint.pth", weights_only=True)["model"]
    for name, layout in (("checkpoint.pth", "ava"), ("checkpoint_full_layout.pth", "ava-full")):
        m, rep = load_detector_with_report(d / name)
        assert rep.layout == layout and rep.initialised == [] and rep.ignored == []
        assert set(m.state_dict()) == set(ref)  # no missing or unexpected keys
        _same(ref, m.state_dict())
        assert not m.training


def test_namespace_needs_allowlist_and_other_globals_refused(tmp_path: Path, fixtures_dir: Path) -> None:
    full = fixtures_dir / "seed-parity-tiny" / "checkpoint_full_layout.pth"
    with pytest.raises(pickle.UnpicklingError, match="Namespace"):  # plain weights_only refuses it: the allowlist is needed
        torch.load(full, weights_only=True)
    bad = tmp_path / "evil.pth"
    torch.save({"model": _sd(), "extra": subprocess.Popen, "args": argparse.Namespace(a=1)}, bad)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_detector(bad)


def test_pretrain_layout(tmp_path: Path) -> None:
    sd = _sd()
    enc = {f"encoder.{k}": v for k, v in sd.items() if not k.startswith("head.")}
    enc["decoder.blocks.0.norm1.weight"] = torch.ones(32)
    enc["encoder_to_decoder.weight"] = torch.ones(32, 64)
    enc["mask_token"] = torch.zeros(1, 1, 32)
    p = tmp_path / "pretrain.pth"
    torch.save({"model": enc, "optimizer": {}, "epoch": 1599}, p)
    m, rep = load_detector_with_report(p)
    assert rep.layout == "pretrain" and rep.variant == "vit_micro"
    assert set(rep.initialised) == {"head.weight", "head.bias"}
    assert {"decoder.blocks.0.norm1.weight", "encoder_to_decoder.weight", "mask_token"} <= set(rep.ignored)
    _same(sd, m.state_dict(), [k for k in sd if not k.startswith("head.")])


def test_kinetics_layout_drops_head_and_keeps_norm_at_init(tmp_path: Path) -> None:
    sd = _sd()
    k400 = {k: v for k, v in sd.items() if not k.startswith(("norm.", "head."))}
    k400["fc_norm.weight"] = torch.full((64,), 2.0)
    k400["fc_norm.bias"] = torch.full((64,), 3.0)
    k400["head.weight"] = torch.randn(400, 64)
    k400["head.bias"] = torch.randn(400)
    p = tmp_path / "k400.pth"
    torch.save({"module": k400}, p)
    m, rep = load_detector_with_report(p)
    assert rep.layout == "kinetics"
    assert set(rep.initialised) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert torch.equal(m.norm.weight, torch.ones(64)) and torch.equal(m.norm.bias, torch.zeros(64))
    assert m.head.weight.shape == (80, 64)


def test_vmaedet_roundtrip_and_convert(tmp_path: Path, fixtures_dir: Path) -> None:
    src = fixtures_dir / "seed-parity-tiny" / "checkpoint_full_layout.pth"
    dst = tmp_path / "model.safetensors"
    rep = convert_checkpoint(src, dst)
    assert rep.layout == "ava-full"
    a = load_detector(src)
    b, rep2 = load_detector_with_report(dst)
    assert rep2.layout == "vmaedet" and rep2.variant == "vit_seed_tiny"
    _same(a.state_dict(), b.state_dict())
    assert b.cfg == a.cfg


def test_variant_inferred_and_shape_mismatch_named(tmp_path: Path) -> None:
    sd = _sd("vit_tiny")
    p = tmp_path / "tiny.pth"
    torch.save({"model": sd}, p)
    assert load_detector(p).variant == "vit_tiny"
    with pytest.raises(CheckpointError, match=r"patch_embed.proj.weight: file \(128, 3, 2, 16, 16\) vs model \(64"):
        load_detector(p, arch="vit_micro")


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_detector(empty)
    text = tmp_path / "notes.pth"
    text.write_text("hello, this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_detector(text)
    good = tmp_path / "good.pth"
    torch.save({"model": _sd()}, good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_detector(trunc)
    other = tmp_path / "resnet.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointError, match="not a VideoMAE"):
        load_detector(other)
    unknown = tmp_path / "unknown.pth"
    torch.save({"weights": [1, 2]}, unknown)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        load_detector(unknown)
    sd = _sd()
    sd.pop("blocks.1.mlp.fc2.weight")
    missing = tmp_path / "missing.pth"
    torch.save({"model": sd}, missing)
    with pytest.raises(CheckpointError, match="blocks.1.mlp.fc2.weight"):
        load_detector(missing, arch="vit_micro")
    sd = _sd()
    sd["blocks.0.attn.k_bias"] = torch.zeros(64)
    extra = tmp_path / "extra.pth"
    torch.save({"model": sd}, extra)
    with pytest.raises(CheckpointError, match="k_bias"):
        load_detector(extra)
    st = tmp_path / "t.safetensors"
    save_detector(create_detector("vit_micro"), st)
    st.write_bytes(st.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_detector(st)
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_detector(create_detector("vit_micro"), tmp_path / "x.pth")


def test_short_side_travels_with_the_checkpoint(tmp_path: Path) -> None:
    from vmaedet import Predictor
    import numpy as np

    assert create_detector("vit_micro").preprocess == PreprocessConfig(short_side=256)
    m = create_detector("vit_micro", preprocess=PreprocessConfig(short_side=128))
    b = load_detector(save_detector(m, tmp_path / "s.safetensors"))
    assert b.preprocess == m.preprocess and b.preprocess.short_side == 128
    clip, rois, size = Predictor(b).preprocess(np.zeros((16, 240, 320, 3), np.uint8), np.zeros((0, 4)))
    assert size == (170, 128) and clip.shape == (1, 3, 16, 128, 176)


def test_safetensors_header_length_starting_with_a_pickle_byte(tmp_path: Path) -> None:
    """A header length ≡ 0x80 (mod 256) starts the file like a pickle; it must still load as safetensors."""
    model = create_detector("vit_micro")
    for pad in range(300):
        path = save_detector(model, tmp_path / f"m{pad}.safetensors", extra={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    loaded, rep = load_detector_with_report(path)
    assert rep.layout == "vmaedet" and rep.extra["pad"] == "x" * pad
    _same(model.state_dict(), loaded.state_dict())


def test_preprocess_is_typed_frozen_and_carried(tmp_path: Path) -> None:
    """The preprocessing facts: set at construction, frozen, saved as ``config.preprocess``, overridable at load."""
    import dataclasses
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from vmaedet.errors import ConfigError
    from vmaedet.models.checkpoints import FORMAT, detector_config

    pre = PreprocessConfig(short_side=160, frame_stride=2)
    m = create_detector("vit_micro", preprocess=pre)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.preprocess.short_side = 64  # type: ignore[misc]
    path = save_detector(m, tmp_path / "p.safetensors")
    with safe_open(str(path), framework="pt") as f:
        saved = json.loads(f.metadata()["config"])
    assert saved["preprocess"] == pre.to_dict() and "short_side" not in saved
    assert load_detector(path).preprocess == pre
    assert load_detector(path, preprocess=PreprocessConfig(short_side=96)).preprocess.short_side == 96
    assert load_detector(path, arch="vit_micro").preprocess == PreprocessConfig()  # shapes only: the seed's facts
    # a file written before `preprocess` existed: the top-level short_side
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    old = {k: v for k, v in detector_config(m).items() if k != "preprocess"} | {"short_side": 128}
    save_file(sd, str(tmp_path / "old.safetensors"), metadata={"format": FORMAT, "config": json.dumps(old)})
    assert load_detector(tmp_path / "old.safetensors").preprocess == PreprocessConfig(short_side=128)
    bad = dict(detector_config(m), preprocess={**pre.to_dict(), "clip_len": 8})
    save_file(sd, str(tmp_path / "bad.safetensors"), metadata={"format": FORMAT, "config": json.dumps(bad)})
    with pytest.raises(CheckpointError, match="preprocessing config is invalid"):
        load_detector(tmp_path / "bad.safetensors")
    for kw in ({"short_side": 8}, {"clip_len": 8}, {"frame_stride": 0}, {"std": (1.0, 0.0, 1.0)}):
        with pytest.raises(ConfigError):
            PreprocessConfig(**kw)  # type: ignore[arg-type]


def test_load_detector_returns_the_model_and_the_report_comes_separately(tmp_path: Path) -> None:
    import dataclasses

    from vmaedet.models.detector import ActionDetector

    path = save_detector(create_detector("vit_micro"), tmp_path / "m.safetensors")
    model = load_detector(path)
    assert type(model) is ActionDetector and not hasattr(model, "load_report")
    model2, report = load_detector_with_report(path)
    assert report.layout == "vmaedet" and report.loaded_keys == len(model2.state_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.layout = "x"  # type: ignore[misc]
