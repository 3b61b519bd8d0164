"""Is the synthetic task learnable, and by which backbone?  Same clips, same boxes, same RoI head.

Why the tiny ViT does not learn (README, *Training*) has three candidate answers: the data carry no
usable signal, the pipeline around the model (boxes, RoI head, loss) is broken, or a ViT trained from
scratch cannot pick the signal up from a few hundred clips.  This script separates them on one
synthetic dataset, decoded once (test geometry: whole frame at the short side, GT boxes):

* ``vit``    — the detector of ``--arch`` (the seed's ViT + RoIAlign-max head), real action labels;
* ``cnn``    — a 4-layer 3D CNN feature map (stride 16, like the ViT's) under the *same* head
  (``roi_align_max`` + linear), real action labels: can a backbone with locality learn the task?
* ``pseudo`` — the ViT again, but labels computed from the box's pixels (mean red, mean green,
  mean absolute frame difference, each thresholded at its training median): does the pipeline
  learn what is plainly in the box?

Each trains with AdamW, a one-epoch warm-up and cosine decay, horizontal flips, BCE over the
dataset's action ids, and reports the val AP per class (mean over classes with a positive) on the GT
boxes after every epoch; the last epoch's figure goes to the JSON.

    python benchmarks/probe_learnability.py [--videos 30] [--epochs 12] [--learners vit,cnn,pseudo]

Measured here (2 cores, 30 videos, 12 epochs; see ``benchmarks/results/probe_learnability.json``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from vmaedet.data.ava import build_dataset  # noqa: E402
from vmaedet.data.synthetic import ACTION_IDS, generate  # noqa: E402
from vmaedet.data.transforms import normalize_clip, pad_to_multiple, resize_boxes  # noqa: E402
from vmaedet.envinfo import environment, write_json  # noqa: E402
from vmaedet.evaluation.ava import _voc_ap  # noqa: E402  (the evaluator's VOC AP)
from vmaedet.models.detector import create_detector  # noqa: E402
from vmaedet.ops.boxes import normalized_to_pixels  # noqa: E402
from vmaedet.ops.roi_align import roi_align_max  # noqa: E402

Split = dict[str, list[torch.Tensor]]


def load_split(root: Path, split: str, short_side: int) -> Split:
    """Resized uint8 frames ``[16, h, w, 3]``, GT boxes ``[N, 4]`` (clip px) and labels ``[N, A]`` per keyframe."""
    ds = build_dataset(root, split, train=True, short_side=short_side, crop_size=0, cache=True)
    cols = [a - 1 for a in ACTION_IDS]
    out: Split = {"frames": [], "boxes": [], "labels": []}
    for i in range(len(ds)):
        frames, (w, h) = ds._resized_frames(i)  # [16, h', w', 3]
        entry = ds.entries[ds.keys[i]]
        size = (frames.shape[2], frames.shape[1])
        norm = np.asarray(entry.boxes, np.float32).reshape(-1, 4)
        boxes = resize_boxes(normalized_to_pixels(norm, (w, h)), (w, h), size)  # [N, 4]
        out["frames"].append(torch.from_numpy(frames))
        out["boxes"].append(torch.from_numpy(np.asarray(boxes, np.float32)))
        out["labels"].append(torch.from_numpy(np.stack(entry.labels)[:, cols].astype(np.float32)))
    return out


def pixel_labels(data: Split, medians: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per box: [mean red, mean green, mean |frame difference|] > the (training) medians, as 0/1."""
    stats = []
    for frames, boxes in zip(data["frames"], data["boxes"]):
        rows = []
        for b in boxes:
            x1, y1, x2, y2 = (int(round(float(v))) for v in b)
            c = frames[:, max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].float()  # [16, h, w, 3]
            rows.append([c[..., 0].mean(), c[..., 1].mean(), (c[1:] - c[:-1]).abs().mean()])
        stats.append(torch.tensor(rows))
    med = torch.cat(stats).median(0).values if medians is None else medians  # [3]
    return [(s > med).float() for s in stats], med


class CNNFeatures(nn.Module):
    """``[B, 3, 16, H, W]`` → ``[B, D, H/16, W/16]``: four 3D conv layers, then the mean over time."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        chans = (3, 32, 64, 64, dim)
        layers: list[nn.Module] = []
        for i in range(4):
            k, s = ((3, 5, 5), (1, 2, 2)) if i == 0 else ((3, 3, 3), (2, 2, 2))
            layers += [nn.Conv3d(chans[i], chans[i + 1], k, s, tuple(x // 2 for x in k)),
                       nn.BatchNorm3d(chans[i + 1]), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.net(clip).mean(dim=2)  # [B, D, H/16, W/16]


class CNNDetector(nn.Module):
    """The CNN feature map under the detector's head: ``roi_align_max`` + linear."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = CNNFeatures()
        self.head = nn.Linear(128, num_classes)

    def forward(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.head(roi_align_max(self.features(clip), rois))  # [K, C]


def make_batch(data: Split, labels: list[torch.Tensor], idx: list[int], flip: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips ``[B, 3, 16, Hp, Wp]`` (normalised, padded), rois ``[K, 5]`` and labels ``[K, A]``."""
    clips, rois, ys = [], [], []
    for j, i in enumerate(idx):
        frames, boxes = data["frames"][i], data["boxes"][i].clone()  # [16, h, w, 3], [N, 4]
        if flip is not None and torch.rand(1, generator=flip).item() < 0.5:
            w = frames.shape[2]
            frames = frames.flip(2)
            boxes = torch.stack([w - 1 - boxes[:, 2], boxes[:, 1], w - 1 - boxes[:, 0], boxes[:, 3]], 1)
        clips.append(pad_to_multiple(normalize_clip(frames)))  # [3, 16, Hp, Wp]
        rois.append(torch.cat([torch.full((len(boxes), 1), float(j)), boxes], 1))  # [N, 5]
        ys.append(labels[i])
    return torch.stack(clips), torch.cat(rois), torch.cat(ys)


def mean_ap(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """Mean over classes with a positive of the AP of ``scores[:, k]`` (``[K, A]``)."""
    aps = [_voc_ap(scores[:, k].numpy(), labels[:, k].numpy().astype(bool), int(labels[:, k].sum()))
           for k in range(labels.shape[1]) if labels[:, k].sum() > 0]
    return float(np.mean(aps)), aps


def run_learner(name: str, train: Split, val: Split, arch: str, epochs: int, lr: float, batch: int,
                seed: int) -> dict[str, Any]:
    """Train one learner; return its per-epoch val mAP, final per-class AP and wall time."""
    torch.manual_seed(seed)
    if name == "pseudo":
        y_train, med = pixel_labels(train)
        y_val, _ = pixel_labels(val, med)
    else:
        y_train, y_val = train["labels"], val["labels"]
    n_cls = y_train[0].shape[1]
    # the detector's logit i is AVA id i + 1; the CNN and the pseudo-label run use the first n_cls outputs
    cols = [a - 1 for a in ACTION_IDS] if name == "vit" else list(range(n_cls))
    model: nn.Module = CNNDetector(n_cls) if name == "cnn" else create_detector(arch)
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=0.05)
    n = len(train["frames"])
    per_epoch = max(n // batch, 1)
    total = epochs * per_epoch
    gen = torch.Generator().manual_seed(seed)
    history, step, t0 = [], 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).tolist()
        losses = []
        for i in range(per_epoch):
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * step / total))
            clip, rois, y = make_batch(train, y_train, perm[i * batch:(i + 1) * batch], gen)
            loss = F.binary_cross_entropy_with_logits(model(clip, rois)[:, cols], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(*make_batch(val, y_val, list(range(i, min(i + batch, len(val["frames"])))),
                                                  None)[:2])[:, cols]
                                for i in range(0, len(val["frames"]), batch)]).sigmoid()
        m, aps = mean_ap(scores, torch.cat(y_val))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_mAP": m})
        print(f"{name:6s} epoch {epoch:2d}  loss {np.mean(losses):.4f}  val mAP {m:.3f}", flush=True)
    return {"val_mAP": history[-1]["val_mAP"], "per_class_AP": aps, "history": history,
            "wall_s": time.perf_counter() - t0, "classes": len(aps)}


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the data, run the learners, print and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--short-side", type=int, default=128)
    ap.add_argument("--arch", default="vit_tiny")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--learners", default="vit,cnn,pseudo")
    ap.add_argument("--data", type=Path, default=None, help="an existing synthetic dataset (default: generate one)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe_learnability.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "data"
            generate(root, videos=args.videos, seconds=args.seconds, seed=args.seed)
        train, val = load_split(root, "train", args.short_side), load_split(root, "val", args.short_side)
        val_prevalence = torch.cat(val["labels"]).mean(0)  # [A]
        figures: dict[str, Any] = {
            "videos": args.videos, "seconds": args.seconds, "seed": args.seed, "short_side": args.short_side,
            "arch": args.arch, "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
            "train_keyframes": len(train["frames"]), "train_boxes": int(sum(len(b) for b in train["boxes"])),
            "val_boxes": int(sum(len(b) for b in val["boxes"])),
            # a random scorer's expected AP is the class prevalence
            "random_mAP": float(val_prevalence[val_prevalence > 0].mean()),
            "learners": {},
        }
        for name in args.learners.split(","):
            figures["learners"][name] = run_learner(name, train, val, args.arch, args.epochs, args.lr, args.batch,
                                                    args.seed)
    print(f"val mAP — random scorer (class prevalence) {figures['random_mAP']:.3f}; " + "; ".join(
        f"{k} {v['val_mAP']:.3f}" for k, v in figures["learners"].items()))
    write_json(args.out, {"benchmark": "probe_learnability", **figures, "environment": environment()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
