"""torch.distributed helpers: process group from torchrun's environment, sharding, gathering.

``torchrun --nproc_per_node=N -m vmaedet.cli.main train …`` sets RANK / WORLD_SIZE / LOCAL_RANK;
without them the run is a single process.  NCCL on GPUs, gloo on the CPU.

Sharding keeps a step's samples independent of the world size: the shuffled order comes from
(seed, epoch) (``DistributedSampler``), and at step s rank r takes positions
``r, r + W, r + 2W, …`` of the chunk ``[s·B, (s + 1)·B)`` of that order (B = total batch), so the
union over ranks is the same B clips a single process would take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun job if the environment describes one (NCCL on CUDA, else gloo).

    Args:
        device: "auto" (CUDA if available), "cpu" or "cuda".
    """
    from vmaedet.errors import ConfigError

    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"unknown device {device!r}", received=device, expected="auto | cpu | cuda | cuda:N",
                          fix="use 'auto' (the GPU when there is one), 'cpu' or 'cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"the device {device!r} was requested but no CUDA GPU is usable here",
                          received=f"torch {torch.__version__}: torch.cuda.is_available() is False",
                          expected="a CUDA GPU with its driver and a CUDA build of PyTorch, or the CPU",
                          fix="use the device 'auto' (the GPU when there is one) or 'cpu'")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup() -> None:
    """Destroy the process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list without a process group)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a float over the ranks."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


class ResumableDistributedSampler(Sampler[int]):
    """``DistributedSampler`` (shuffled from (seed, epoch), no padding) that can start mid-epoch.

    Each rank yields ``steps_per_epoch · per_rank_batch`` indices; ``set_position(epoch, step)``
    skips the first ``step`` batches of that epoch, so a resumed run sees exactly the clips an
    uninterrupted one would.
    """

    def __init__(self, dataset: Dataset, info: DistInfo, per_rank_batch: int, seed: int, shuffle: bool = True) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                        shuffle=shuffle, seed=seed, drop_last=True)
        self.per_rank_batch = per_rank_batch
        self.steps_per_epoch = len(self.inner) // per_rank_batch
        self.start_step = 0

    def set_position(self, epoch: int, step_in_epoch: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.start_step = step_in_epoch

    def __iter__(self) -> Iterator[int]:
        idx = list(self.inner)[: self.steps_per_epoch * self.per_rank_batch]
        return iter(idx[self.start_step * self.per_rank_batch:])

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.per_rank_batch


class ShardSampler(Sampler[int]):
    """Contiguous, unshuffled shard of ``range(n)`` for rank r (evaluation)."""

    def __init__(self, n: int, info: DistInfo) -> None:
        per = -(-n // info.world_size)
        self.indices = list(range(info.rank * per, min(n, (info.rank + 1) * per)))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


__all__ = ["DistInfo", "init_distributed", "cleanup", "barrier", "all_gather_objects", "broadcast_object",
           "all_reduce_mean", "ResumableDistributedSampler", "ShardSampler"]
