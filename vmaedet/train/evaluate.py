"""Sharded inference + frame-mAP evaluation (during training and for ``vmaedet eval --checkpoint``).

Each rank infers a contiguous shard of the test set; rows are gathered on every rank and rank 0
writes the detections CSV and computes the mAP once.  Test-time path (spec §1, §3): proposals with
score ≥ 0.8 → ``extend_boxes`` against the resized, unpadded size → model → sigmoid × person score
→ rows in original-image normalised coordinates (un-extended boxes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vmaedet.config import TrainConfig
from vmaedet.errors import DataError
from vmaedet.ops.boxes import make_rois
from vmaedet.train.distributed import DistInfo, ShardSampler, all_gather_objects, init_distributed

BOX_THRESH = 0.8  # the seed's box_thresh for test proposals


def autocast_for(device: torch.device, amp: bool, cpu_bf16: bool) -> Any:
    """fp16 autocast on CUDA when ``amp`` (the seed); bf16 on CPU when ``cpu_bf16``; else none."""
    import contextlib

    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _KeepItems:
    """Picklable collate returning (items, collated batch)."""

    def __init__(self, collate: Any, size_divisible: int) -> None:
        self.collate, self.size_divisible = collate, size_divisible

    def __call__(self, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return items, self.collate(items, size_divisible=self.size_divisible)


@torch.no_grad()
def infer_rows(model: nn.Module, dataset: Dataset, info: DistInfo, batch_size: int, num_workers: int = 0,
               amp: bool = True, cpu_bf16: bool = False, size_divisible: int = 16,
               box_thresh: float = BOX_THRESH) -> list[Any]:
    """This rank's detection rows over its shard of ``dataset`` (an AVA test dataset).

    Args:
        model: the detector (eval mode is set here).
        batch_size: clips per forward on this rank.
    """
    from vmaedet.data.ava import collate_clips
    from vmaedet.data.detections import detections_to_rows

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), info),  # type: ignore[arg-type]
                        num_workers=num_workers, collate_fn=_KeepItems(collate_clips, size_divisible))
    rows: list[Any] = []
    for items, batch in loader:
        clip = batch["clip"].to(info.device)  # [B, 3, 16, Hp, Wp]
        keep = [item["scores"] >= box_thresh for item in items]  # per sample [N]
        rois = []
        for b, item in enumerate(items):
            size = tuple(int(v) for v in item["size"])
            rois.append(make_rois(item["boxes"][keep[b]], size, batch_index=b))  # [n, 5]
        rois_t = torch.cat(rois).to(info.device) if rois else torch.zeros(0, 5)  # [K, 5]
        if rois_t.shape[0] == 0:
            continue
        with autocast_for(info.device, amp, cpu_bf16):
            logits = model(clip, rois_t)  # [K, 80]
        probs = torch.sigmoid(logits.float()).cpu()  # [K, 80]
        start = 0
        for b, item in enumerate(items):
            n = int(keep[b].sum())
            person = item["scores"][keep[b]].float()  # [n]
            scores = probs[start:start + n] * person[:, None]  # [n, 80]
            start += n
            if n == 0:
                continue
            rows.extend(detections_to_rows(item["boxes"][keep[b]], scores, item["video_id"], item["timestamp"],
                                           tuple(item["size"]), tuple(item["orig_size"])))
    return rows


def _annotation_paths(dataset: Dataset, data_root: str | Path | None, split: str) -> dict[str, Any]:
    """GT CSV, label map and exclusions of ``split`` in the AVA-format layout (``vmaedet synth``)."""
    from vmaedet.labels import AVA_EVAL_IDS

    ann = Path(data_root or ".") / "annotations"
    gt = ann / f"{split}.csv"
    if not gt.is_file():
        raise DataError(f"ground-truth CSV for split {split!r} not found", received=str(gt),
                        expected=f"{ann}/{split}.csv", fix="point the dataset root (data_root) at an AVA-format folder (`vmaedet synth OUT` writes one)")
    labelmap: Any = getattr(dataset, "labelmap", None)
    if not labelmap:
        labelmap = ann / "labelmap.pbtxt" if (ann / "labelmap.pbtxt").is_file() else list(AVA_EVAL_IDS)
    excl = ann / f"excluded_{split}.csv"
    return {"gt": gt, "labelmap": labelmap, "exclusions": excl if excl.is_file() else None}


def score_rows(rows: list[Any], csv_path: Path, paths: dict[str, Any], protocol: str = "official") -> dict[str, Any]:
    """Write the detections CSV (5-decimal rounding) and compute frame-mAP from it, as the seed does."""
    from vmaedet.data.detections import write_detections_csv
    from vmaedet.evaluation.ava import evaluate_frame_map

    from vmaedet.safeio import ensure_parent

    ensure_parent(csv_path, what="the detections CSV")
    write_detections_csv(csv_path, rows)
    result = evaluate_frame_map(paths["gt"], csv_path, labelmap=paths["labelmap"], exclusions=paths["exclusions"],
                                protocol=protocol)
    out = result.to_json()
    out["detections_csv"] = str(csv_path)
    return out


def evaluate_model(model: nn.Module, dataset: Dataset, info: DistInfo, cfg: TrainConfig, epoch: int,
                   protocol: str = "official") -> dict[str, Any]:
    """Sharded evaluation during training; every rank gets the same result dict."""
    per_rank = cfg.train.batch_size // info.world_size
    bs = cfg.train.eval_batch_size or max(1, int(1.5 * per_rank))
    rows = infer_rows(model, dataset, info, bs, num_workers=cfg.data.num_workers, amp=cfg.runtime.amp,
                      cpu_bf16=cfg.runtime.cpu_bf16, size_divisible=cfg.data.size_divisible)
    gathered = all_gather_objects(rows, info)
    result: dict[str, Any] = {}
    if info.is_main:
        all_rows = [r for part in gathered for r in part]
        paths = _annotation_paths(dataset, cfg.data.root, cfg.data.val_split)
        result = score_rows(all_rows, Path(cfg.train.out_dir) / "eval" / f"detections_epoch{epoch:03d}.csv",
                            paths, protocol)
    return all_gather_objects(result, info)[0]


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, split: str = "val",
                        out_dir: str | Path | None = None, protocol: str = "official", batch_size: int = 8,
                        frame_source: str | None = None, device: str = "auto", cpu_bf16: bool = False,
                        num_workers: int = 2) -> dict[str, Any]:
    """Infer a checkpoint over a split and evaluate it (``vmaedet eval --checkpoint``).

    Runs sharded under torchrun, single-process otherwise.

    Args:
        checkpoint: any checkpoint ``load_detector`` reads (vmaedet, AVA, resume ``.pth`` model).
        data_root: AVA-format root.
        split: split to evaluate.
        out_dir: where ``detections.csv`` goes (default: next to the checkpoint).
        protocol: evaluator protocol ("official" or "seed").
        batch_size: clips per forward per rank.
        frame_source: data reader option forwarded to ``build_dataset`` (None = its default).

    Returns:
        The evaluator's result dict plus ``"mAP"`` and ``"detections_csv"``.
    """
    from vmaedet.data.ava import build_dataset
    from vmaedet.models.checkpoints import load_detector

    if not Path(data_root).is_dir():
        raise DataError(f"dataset root not found: {data_root}", fix="create one with `vmaedet synth DIR`")
    info = init_distributed(device)
    model = load_detector(checkpoint, device=info.device)
    kw: dict[str, Any] = {"short_side": model.preprocess.short_side}  # the model's test geometry
    if frame_source is not None:
        kw["frame_source"] = frame_source
    dataset = build_dataset(str(data_root), split, train=False, **kw)
    rows = infer_rows(model, dataset, info, batch_size, num_workers=num_workers, cpu_bf16=cpu_bf16)  # type: ignore[arg-type]
    gathered = all_gather_objects(rows, info)
    result: dict[str, Any] = {}
    if info.is_main:
        out = Path(out_dir) if out_dir is not None else Path(checkpoint).parent
        result = score_rows([r for part in gathered for r in part], out / "detections.csv",
                            _annotation_paths(dataset, data_root, split), protocol)
    return all_gather_objects(result, info)[0]


__all__ = ["infer_rows", "score_rows", "evaluate_model", "evaluate_checkpoint", "BOX_THRESH"]
