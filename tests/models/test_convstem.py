"""The demo variant's conv stem: its grid, its checkpoints, and BatchNorm statistics across ranks (gloo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vmaedet.models.checkpoints import load_detector, save_detector
from vmaedet.models.detector import create_detector, list_models, variant_config
from vmaedet.models.videomae import ConvStem, GlobalBatchNorm3d, PatchEmbed


@pytest.mark.parametrize("hw", [(32, 32), (112, 144), (64, 48)])
def test_conv_stem_has_the_tubelet_grid(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 3, 16, *hw)  # [B, 3, 16, H, W]
    a = PatchEmbed(24, "tubelet")(x)
    b = PatchEmbed(24, "conv")(x)
    assert a.shape == b.shape == (2, 24, 8, hw[0] // 16, hw[1] // 16)
    assert (b >= 0).all() and (b > 0).any()  # ends in BatchNorm + ReLU


def test_unknown_stem_rejected() -> None:
    with pytest.raises(ValueError, match="unknown stem 'patch'"):
        PatchEmbed(8, "patch")


def test_only_the_demo_variant_has_a_conv_stem() -> None:
    conv = [m for m in list_models() if variant_config(m).stem == "conv"]
    assert conv == ["vit_tiny_convstem"]
    seed = create_detector("vit_tiny").state_dict()
    assert [k for k in seed if k.startswith("patch_embed")] == ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    m = create_detector("tiny-convstem")
    assert m.variant == "vit_tiny_convstem" and isinstance(m.patch_embed.proj, ConvStem)
    # same blocks and head as vit_tiny; the head is not shrunk by the seed's 0.001 for this from-scratch model
    assert m.head.weight.std() > 0.005 > create_detector("vit_tiny").head.weight.std()


@pytest.mark.parametrize("with_config", [True, False])
def test_checkpoint_round_trip(tmp_path: Path, with_config: bool) -> None:
    torch.manual_seed(0)
    m = create_detector("vit_tiny_convstem")
    m.train()
    with torch.no_grad():  # a few training-mode passes give non-trivial running statistics
        for _ in range(3):
            m.forward_features(torch.randn(2, 3, 16, 32, 48) * 2 + 1)
    m.eval()
    if with_config:
        path = save_detector(m, tmp_path / "m.safetensors")
    else:  # a bare state dict: the stem and the variant are inferred from the keys and shapes
        path = tmp_path / "m.pth"
        torch.save(m.state_dict(), path)
    loaded = load_detector(path)
    assert loaded.variant == "vit_tiny_convstem"
    clip, rois = torch.randn(1, 3, 16, 32, 48), torch.tensor([[0, 2.0, 3.0, 40.0, 30.0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip, rois), m(clip, rois), rtol=0, atol=0)


def test_global_batch_norm_is_batch_norm_in_one_process() -> None:
    torch.manual_seed(0)
    ref, ours = nn.BatchNorm3d(4), GlobalBatchNorm3d(4)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 2, 5, 5) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)


def _rank(rank: int, world: int, store: str, x: torch.Tensor, w: torch.Tensor, q: "mp.Queue") -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        bn = GlobalBatchNorm3d(x.shape[1])
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 2.0, x.shape[1]))
            bn.bias.copy_(torch.linspace(-1.0, 1.0, x.shape[1]))
        part = x.chunk(world)[rank].clone().requires_grad_(True)
        y = bn(part)  # [B/world, C, T, H, W]
        (y * w.chunk(world)[rank]).sum().backward()
        # numpy arrays travel by value: tensors would travel as shared-memory handles, which the parent
        # cannot open once this process has exited (a race under load)
        q.put((rank, *(t.detach().numpy().copy() for t in (y, part.grad, bn.weight.grad, bn.running_mean,
                                                           bn.running_var))))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_global_batch_norm_across_two_gloo_ranks_equals_one_process(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks with half the batch each: the outputs, input gradients, summed weight gradients and
    running statistics of one BatchNorm over the whole batch (float64 reference)."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 4, 4) * 2 + 0.5  # [B, C, T, H, W]
    w = torch.randn_like(x)  # a fixed upstream gradient
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, str(tmp_path / "store"), x, w, q)) for r in range(2)]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the spawned ranks
    for p in procs:
        p.start()
    results = sorted(((r[0], *map(torch.from_numpy, r[1:])) for r in (q.get(timeout=120) for _ in procs)),
                     key=lambda r: r[0])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0

    ref = nn.BatchNorm3d(3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.linspace(0.5, 2.0, 3))
        ref.bias.copy_(torch.linspace(-1.0, 1.0, 3))
    xr = x.double().requires_grad_(True)
    yr = ref(xr)
    (yr * w.double()).sum().backward()
    y = torch.cat([r[1] for r in results]).double()
    gx = torch.cat([r[2] for r in results]).double()
    gw = (results[0][3] + results[1][3]).double()  # DDP would average these; the sum is the full gradient
    torch.testing.assert_close(y, yr.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, xr.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, ref.weight.grad, atol=1e-4, rtol=1e-5)
    for r in results:
        torch.testing.assert_close(r[4].double(), ref.running_mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(r[5].double(), ref.running_var, atol=1e-6, rtol=1e-6)
    # and not what per-rank statistics would give
    local = nn.BatchNorm3d(3).double()
    with torch.no_grad():
        local.weight.copy_(torch.linspace(0.5, 2.0, 3))
        local.bias.copy_(torch.linspace(-1.0, 1.0, 3))
    assert (local(x[:2].double()) - yr[:2]).abs().max() > 1e-2
