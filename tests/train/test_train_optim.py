"""Layer-decay groups, the lr schedule, AdamW steps, the loss and the config, against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from timm.models import group_parameters

from vmaedet.config import TrainConfig, load_config, parse_override
from vmaedet.errors import ConfigError
from vmaedet.models import create_detector
from vmaedet.ops.boxes import random_aug
from vmaedet.train.loop import detection_loss, jitter_rois, sample_generator
from vmaedet.train.optim import actual_lr, build_optimizer, param_groups, set_lr
from vmaedet.train.schedule import CosineSchedule

CONFIGS = Path(__file__).resolve().parents[2] / "vmaedet" / "configs"


def test_layer_ids_and_scales_by_hand() -> None:
    model = create_detector("vit_micro")  # depth 2 → layer ids 0..3, scales ld^(3 − i)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    where = {n: g for g in groups for n in g["param_names"]}
    expect = {  # name: (layer id, lr scale, weight decay) written out by hand
        "patch_embed.proj.weight": (0, 0.125, 0.05), "patch_embed.proj.bias": (0, 0.125, 0.0),
        "blocks.0.norm1.weight": (1, 0.25, 0.0), "blocks.0.attn.q_bias": (1, 0.25, 0.0),
        "blocks.0.attn.v_bias": (1, 0.25, 0.0), "blocks.0.attn.qkv.weight": (1, 0.25, 0.05),
        "blocks.0.mlp.fc2.bias": (1, 0.25, 0.0), "blocks.1.attn.proj.weight": (2, 0.5, 0.05),
        "blocks.1.mlp.fc1.weight": (2, 0.5, 0.05), "norm.weight": (3, 1.0, 0.0), "norm.bias": (3, 1.0, 0.0),
        "head.weight": (3, 1.0, 0.05), "head.bias": (3, 1.0, 0.0),
    }
    layer_of = group_parameters(model, model.group_matcher(), reverse=True)  # timm's layer ids
    for name, (lid, scale, wd) in expect.items():
        g = where[name]
        assert (layer_of[name], g["lr_scale"], g["weight_decay"]) == (lid, scale, wd), name
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each exactly once
    assert [(g["lr_scale"], g["weight_decay"]) for g in groups[:3]] == [(0.125, 0.05), (0.125, 0.0), (0.25, 0.0)]  # first-seen
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim > 1}
    for g in groups:  # every parameter of a group is its own (the names travel with the tensors)
        assert [id(p) for p in g["params"]] == [id(dict(model.named_parameters())[n]) for n in g["param_names"]]


def _seed_cosine(base: float, final: float, epochs: int, niter: int, warmup_epochs: int) -> np.ndarray:
    """Transcription of the seed's utils.cosine_scheduler (numpy)."""
    warmup_iters = warmup_epochs * niter
    warm = np.linspace(0, base, warmup_iters) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter - warmup_iters)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warm, cos))


def test_schedule_hand_values_and_seed_transcription() -> None:
    lr, mn = actual_lr(1e-3, 128), actual_lr(1e-6, 128)  # the S-pretrain run
    assert (lr, mn) == (5e-4, 5e-7)
    s = CosineSchedule.from_epochs(lr, mn, epochs=3, iters_per_epoch=4, warmup_epochs=1)
    hand = [0.0, 5e-4 / 3, 1e-3 / 3, 5e-4,  # linspace(0, lr, 4)
            5e-4,  # cosine i = 0
            mn + 0.5 * (lr - mn) * (1 + math.cos(math.pi / 8)),
            mn + 0.5 * (lr - mn) * (1 + math.cos(math.pi / 4)),
            mn + 0.5 * (lr - mn) * (1 + math.cos(3 * math.pi / 8)),
            mn + 0.5 * (lr - mn),  # i = 4 of 8: halfway
            mn + 0.5 * (lr - mn) * (1 - math.cos(3 * math.pi / 8)),
            mn + 0.5 * (lr - mn) * (1 - math.cos(math.pi / 4)),
            mn + 0.5 * (lr - mn) * (1 - math.cos(math.pi / 8))]
    got = [s(i) for i in range(12)]
    assert got == pytest.approx(hand, rel=1e-12, abs=1e-18)
    seed = _seed_cosine(5e-4, 5e-7, 30, 7, 5)
    s30 = CosineSchedule.from_epochs(5e-4, 5e-7, 30, 7, 5)
    assert [s30(i) for i in range(len(seed))] == pytest.approx(seed.tolist(), rel=1e-12, abs=1e-18)


def test_adamw_first_step_by_hand() -> None:
    torch.manual_seed(0)
    model = create_detector("vit_micro")
    cfg = load_config(None, ["optim.layer_decay=0.5"]).optim
    opt = build_optimizer(model, cfg)
    set_lr(opt, 1e-2)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    assert lr_of["blocks.0.attn.qkv.weight"] == pytest.approx(1e-2 * 0.25)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    for name, lr_i, wd in (("blocks.0.attn.qkv.weight", 2.5e-3, 0.05), ("blocks.0.norm1.bias", 2.5e-3, 0.0),
                           ("head.weight", 1e-2, 0.05), ("patch_embed.proj.weight", 1.25e-3, 0.05)):
        # AdamW step 1: m̂ = g, v̂ = g², p ← p(1 − lr·wd) − lr·g/(|g| + eps)
        expect = w0[name] * (1 - lr_i * wd) - lr_i * 0.5 / (0.5 + 1e-8)
        assert torch.allclose(dict(model.named_parameters())[name].detach(), expect, atol=1e-7), name


def test_loss_is_mean_bce_times_k() -> None:
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(5, 80, generator=g), (torch.rand(5, 80, generator=g) > 0.9).float()
    p = torch.sigmoid(logits.double())
    by_hand = -(labels * p.log() + (1 - labels) * (1 - p).log()).sum() / 80
    assert detection_loss(logits, labels).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert F.binary_cross_entropy_with_logits(logits, labels).item() * 5 == pytest.approx(by_hand.item(), rel=1e-5)


def test_jitter_uses_each_samples_size_and_generator() -> None:
    rois = torch.tensor([[0, 10, 10, 50, 90], [1, 5, 5, 60, 40], [1, 20, 20, 30, 30.0]])  # [K, 5]
    sizes, idx = [(112, 112), (64, 48)], [7, 3]
    out = jitter_rois(rois, sizes, idx, seed=0, step=5)
    assert torch.equal(out[:1, 1:], random_aug(rois[:1, 1:], (112, 112), generator=sample_generator(0, 5, 7)))
    assert torch.equal(out[1:, 1:], random_aug(rois[1:, 1:], (64, 48), generator=sample_generator(0, 5, 3)))
    assert torch.equal(out[:, 0], rois[:, 0]) and (out[1:, 3] <= 63).all() and (out[1:, 4] <= 47).all()
    assert not torch.equal(out, jitter_rois(rois, sizes, idx, seed=0, step=6))


def test_config_yaml_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_config("tiny", ["optim.lr=1e-3", "model.init=null", "optim.betas=[0.8, 0.9]", "train.batch_size=4"])
    assert isinstance(cfg, TrainConfig) and cfg.optim.lr == 1e-3 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.model.arch == "vit_tiny_convstem" and cfg.train.batch_size == 4
    assert parse_override("a.b=1e-3") == ("a.b", "1e-3") and load_config(None, ["optim.lr=1e-3"]).optim.lr == 1e-3
    with pytest.raises(ConfigError, match="did you mean 'schedule.epochs'"):
        load_config(None, ["schedule.epoch=3"])
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(None, ["train.batch_size=many"])
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_config("tinny")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  layer_decy: 0.5\n")
    with pytest.raises(ConfigError, match="layer_decay"):
        load_config(bad)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


def test_data_kwargs_are_typed_dataset_options() -> None:
    """``data.kwargs`` is a frozen, typed :class:`DatasetOptions` (no free dict), and YAML/dumps keep its shape."""
    import dataclasses
    import inspect

    from vmaedet.config import DatasetOptions, config_from_dict, dump_config
    from vmaedet.data.ava import AVADataset, build_dataset

    cfg = load_config("tiny")
    assert isinstance(cfg.data.kwargs, DatasetOptions)
    assert cfg.data.kwargs.given() == {"short_side": 128, "crop_size": 112, "cache": True}
    assert cfg.to_dict()["data"]["kwargs"] == {"short_side": 128, "crop_size": 112, "cache": True}  # only what was set
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg  # the run's config.yaml reads back the same
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.kwargs.short_side = 64  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"did you mean 'data.kwargs.short_side'\?"):
        load_config(None, ["data.kwargs={shortside: 64}"])
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(None, ["data.kwargs={short_side: big}"])
    # every option is one the dataset takes (build_dataset's frames_root, AVADataset's keywords)
    takes = set(inspect.signature(AVADataset.__init__).parameters) | {"frames_root"}
    assert {f.name for f in dataclasses.fields(DatasetOptions)} <= takes
    assert "frames_root" in inspect.getsource(build_dataset)


@pytest.mark.parametrize("name, arch, lr, ld, epochs, ckpt", [
    ("vit_s_pretrain", "vit_small_patch16_224", 1e-3, 0.6, 30, False),
    ("vit_s_k400ft", "vit_small_patch16_224", 5e-4, 0.6, 30, False),
    ("vit_b_pretrain", "vit_base_patch16_224", 2.5e-4, 0.75, 30, False),
    ("vit_b_k400ft", "vit_base_patch16_224", 5e-4, 0.75, 30, False),
    ("vit_l_pretrain", "vit_large_patch16_224", 2.5e-4, 0.75, 30, True),
    ("vit_l_k400ft", "vit_large_patch16_224", 5e-4, 0.8, 20, True),
    ("vit_h_k400ft", "vit_huge_patch16_224", 5e-4, 0.8, 20, True),
])
def test_shipped_configs_match_the_spec_table(name: str, arch: str, lr: float, ld: float, epochs: int, ckpt: bool) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert load_config(name) == cfg  # built-in name resolves to the packaged file
    assert (cfg.model.arch, cfg.optim.lr, cfg.optim.layer_decay, cfg.schedule.epochs, cfg.model.grad_checkpointing) == \
        (arch, lr, ld, epochs, ckpt)
    assert (cfg.train.batch_size, cfg.optim.weight_decay, cfg.model.drop_path, cfg.schedule.warmup_epochs) == (128, 0.05, 0.2, 5)
    assert actual_lr(cfg.optim.min_lr, cfg.train.batch_size) == pytest.approx(5e-7)
