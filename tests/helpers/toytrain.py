"""A toy AVA-contract dataset, its collate function and a micro training config, shared by the training
tests (``tests/train/``) and by the child processes they start (which put ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vmaedet.config import load_config


class ToyAVADataset(Dataset):
    """Random clips [3, 16, S, S] with two GT boxes each; the label depends on the box brightness.

    Items follow the AVA dataset contract (clip, boxes, labels, scores, video_id, timestamp,
    orig_size, size).  Content depends only on the index, so every process sees the same item.
    """

    def __init__(self, n: int = 8, size: int = 64, delay_s: float = 0.0, nan_at: int | None = None) -> None:
        self.n, self.size, self.delay_s, self.nan_at = n, size, delay_s, nan_at

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.delay_s:
            time.sleep(self.delay_s)
        g = torch.Generator().manual_seed(1000 + i)
        s = self.size
        clip = torch.randn(3, 16, s, s, generator=g) * 0.1  # [3, 16, S, S]
        boxes = torch.tensor([[4.0, 4.0, s / 2 - 2, s - 6], [s / 2 + 2, 8.0, s - 4, s - 4]])  # [2, 4]
        labels = torch.zeros(2, 80)
        for j, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            bright = (i + j) % 2 == 0
            clip[:, :, y1:y2, x1:x2] += 1.5 if bright else -1.5
            labels[j, 11 if bright else 13] = 1.0  # stand / walk
        if self.nan_at is not None and i == self.nan_at:
            clip[:] = float("nan")
        return {"clip": clip, "boxes": boxes, "labels": labels, "scores": torch.ones(2),
                "video_id": f"toy_{i:03d}", "timestamp": 2, "orig_size": (s, s), "size": (s, s)}


def toy_collate(batch: list[dict[str, Any]], size_divisible: int = 16) -> dict[str, Any]:
    """The ``collate_clips`` contract for equally sized toy clips."""
    clip = torch.stack([b["clip"] for b in batch])  # [B, 3, 16, S, S]
    rois = torch.cat([torch.cat((torch.full((len(b["boxes"]), 1), float(k)), b["boxes"]), 1)
                      for k, b in enumerate(batch)])  # [K, 5]
    return {"clip": clip, "rois": rois, "labels": torch.cat([b["labels"] for b in batch]),
            "scores": torch.cat([b["scores"] for b in batch]), "sizes": [b["size"] for b in batch],
            "meta": [{"video_id": b["video_id"], "timestamp": b["timestamp"]} for b in batch]}


def toy_config(out_dir: Path, *extra: str) -> Any:
    """micro model, 64² clips, total batch 2, 2 epochs × 4 iterations, no evaluation."""
    return load_config(None, [
        "model.arch=vit_micro", "model.drop_path=0.1", f"train.out_dir={out_dir}", "train.batch_size=2",
        "schedule.epochs=2", "schedule.warmup_epochs=1", "optim.lr=0.3", "data.num_workers=0",
        "runtime.progress=false", "runtime.log_every=1", "train.ckpt_every=1", "runtime.threads=1", *extra])
