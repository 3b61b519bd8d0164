"""The AVA keyframe-clip dataset (spec §2, §4): GT boxes or person proposals with their 16-frame clips.

The files (GT CSV, proposals as CSV or the seed's COCO json, excluded timestamps, label map) are
read by :mod:`vmaedet.data.annotations`; the frames come from a layout of
:mod:`vmaedet.data.layouts`.

Boxes are kept normalised; the dataset turns them into pixels with the seed's convention
(``vmaedet.ops.boxes.normalized_to_pixels``: x1·W, y1·H, x2·W − 1, y2·H − 1 — csv2COCO followed by
BoxList's xywh → xyxy with TO_REMOVE = 1). COCO-json proposals are stored so that the same
conversion gives back the seed's (x, y, x + w − 1, y + h − 1).

Dataset contract: :class:`AVADataset`, :func:`collate_clips`, :func:`build_dataset`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vmaedet.constants import NUM_CLASSES, PATCH_SIZE, SHORT_SIDE
from vmaedet.errors import DataError
from vmaedet.data.annotations import BoxRow, read_annotations, read_exclusions, read_json, read_labelmap, read_proposals
from vmaedet.data.layouts import FrameSource, make_source
from vmaedet.data.transforms import (augment, normalize_clip, resize_boxes, resize_clip, resize_frames,
                                     seed_resize_size, train_transform)
from vmaedet.ops.boxes import normalized_to_pixels

Key = tuple[str, int]
#: (clip [3, 16, h, w], boxes [N, 4] in clip pixels, clip (w, h), source (w, h)) of one sample.
_Sample = tuple[torch.Tensor, np.ndarray, tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------- dataset


@dataclass
class _Entry:
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # normalised xyxy
    labels: list[np.ndarray] = field(default_factory=list)  # [80] multi-hot each
    scores: list[float] = field(default_factory=list)
    line: int = 0  # first row of this keyframe (for error messages)


def _group_gt(rows: list[BoxRow]) -> dict[Key, _Entry]:
    """One box per (keyframe, person_id, box) with the union of its action ids."""
    entries: dict[Key, _Entry] = {}
    index: dict[tuple, int] = {}
    for r in rows:
        e = entries.setdefault(r.key, _Entry(line=r.line))
        k = (r.key, r.person_id, r.box)
        if k not in index:
            index[k] = len(e.boxes)
            e.boxes.append(r.box)
            e.labels.append(np.zeros(NUM_CLASSES, np.float32))
            e.scores.append(1.0)
        e.labels[index[k]][r.action_id - 1] = 1.0
    return entries


def _group_proposals(rows: list[BoxRow], threshold: float) -> dict[Key, _Entry]:
    entries: dict[Key, _Entry] = {}
    for r in rows:
        if r.score < threshold:
            continue
        e = entries.setdefault(r.key, _Entry(line=r.line))
        e.boxes.append(r.box)
        e.labels.append(np.zeros(NUM_CLASSES, np.float32))
        e.scores.append(r.score)
    return entries


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for one sample's random transforms, independent of workers and resume position."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0])


class AVADataset(Dataset):
    """Keyframe clips with boxes for training (GT) or inference (proposals).

    Args:
        root_or_frames_source: frames root for ``frame_source`` or a ready :class:`FrameSource`.
        annotations_csv: AVA GT CSV.
        split_train: True → keyframes with ≥ 1 GT box, random train transforms; False → keyframes
            with ≥ 1 proposal scoring ≥ ``box_threshold``, test transforms.
        proposals: CSV or COCO json (``coco_images`` then names the images json). Without proposals a
            test dataset uses the GT boxes with score 1 (oracle boxes).
        labelmap: pbtxt label map, exposed as ``.labelmap`` (``{id: name}``) for evaluation.
        exclusions: keys listed there are left out (the seed drops them at evaluation anyway).
        frame_source: "video" | "clips" | "frames".
        fps: frame rate of a frames folder (default 30) / override for video files.
        box_threshold: minimum proposal score (0.8 as the seed).
        seed: base seed of the random transforms (``set_epoch`` changes the epoch part).
        temporal_rule: "auto" | "frames" | "time" (see :mod:`vmaedet.data.sampling`).
        timestamp_start: first timestamp of a frames folder (900 for real AVA, 0 for synthetic).
        crop_size, short_side, seed_quirk: transform geometry (spec §2).
        cache: keep each keyframe's 16 *resized* uint8 frames in memory after their first decode, so
            later epochs decode nothing (16·w'·h'·3 bytes per keyframe: 1.0 MiB at short side 128 for
            320×240 sources). A miss decodes all keyframes of that video in time order (~2.5× faster
            than shuffled seeking). Crop / jitter / flip are still drawn per (seed, epoch, index) from
            the cached frames, so samples equal the uncached path's. The cache lives in the process
            that reads the dataset: use ``num_workers=0`` (fresh workers each epoch start empty).
    """

    def __init__(
        self,
        root_or_frames_source: str | Path | FrameSource,
        annotations_csv: str | Path,
        *,
        split_train: bool,
        proposals: str | Path | None = None,
        coco_images: str | Path | None = None,
        labelmap: str | Path | None = None,
        exclusions: str | Path | None = None,
        frame_source: str = "video",
        fps: float | None = None,
        box_threshold: float = 0.8,
        seed: int = 0,
        temporal_rule: str = "auto",
        timestamp_start: int = 900,
        crop_size: int = 224,
        short_side: int = SHORT_SIDE,
        seed_quirk: bool = True,
        cache: bool = False,
    ) -> None:
        for name, value in (("short_side", short_side), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise DataError(f"{name} is out of range", received=repr(value), expected="an integer in 16..4096 pixels",
                                fix=f"pass {name}= a positive size (the seed uses short_side=256, crop_size=224)")
        if not 0.0 <= float(box_threshold) <= 1.0:
            raise DataError("box_threshold is out of range", received=repr(box_threshold), expected="a score in [0, 1]",
                            fix="pass box_threshold=0.8 (the seed's)")
        if isinstance(root_or_frames_source, FrameSource):
            self.source = root_or_frames_source
        else:
            self.source = make_source(frame_source, root_or_frames_source, fps=fps, temporal_rule=temporal_rule,
                                      timestamp_start=timestamp_start)
        self.split_train = split_train
        self.seed, self.epoch = seed, 0
        self.crop_size, self.short_side, self.seed_quirk = crop_size, short_side, seed_quirk
        self.cache = bool(cache)
        self._resized: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}  # index → ([16, h', w', 3], source (w, h))
        self.labelmap = read_labelmap(labelmap) if labelmap is not None else None
        excluded = read_exclusions(exclusions) if exclusions is not None else set()
        gt_path = Path(annotations_csv)
        gt = read_annotations(gt_path)
        if split_train or proposals is None:
            entries, src_path = _group_gt(gt), gt_path
        else:
            entries = _group_proposals(read_proposals(proposals, coco_images), box_threshold)
            src_path = Path(proposals)
        self.entries = {k: e for k, e in entries.items() if k not in excluded and e.boxes}
        self.keys: list[Key] = sorted(self.entries)
        self._check_videos(src_path)

    def _check_videos(self, src_path: Path) -> None:
        first_line: dict[str, int] = {}
        for (vid, _), e in sorted(self.entries.items(), key=lambda kv: kv[1].line):
            first_line.setdefault(vid, e.line)
        for vid, line in first_line.items():
            if not self.source.has_video(vid):
                raise DataError(f"{src_path}:{line} names video {vid!r}, which the {self.source.kind} source lacks",
                                received=str(self.source.location(vid)),
                                expected=f"that video under {self.source.root}",
                                fix="fix the video id, add the video, or point the dataset at the right root")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random transforms ``__getitem__`` draws (seeded by (seed, epoch, index))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the decoded-clip cache (0 without ``cache``)."""
        return sum(frames.nbytes for frames, _ in self._resized.values())

    def _decode_resized(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        """``([16, h', w', 3]`` uint8 frames resized by the seed rule, source (w, h)) of sample ``i``."""
        frames = self.source.clip(*self.keys[i])  # [16, H, W, 3] uint8
        h, w = frames.shape[1:3]
        size = seed_resize_size(w, h, short_side=self.short_side, seed_quirk=self.seed_quirk)
        return resize_frames(frames, size), (w, h)  # [16, h', w', 3]

    def _resized_frames(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The cached resized frames of sample ``i``; a miss decodes every keyframe of its video in time
        order (forward decoding, no seek per keyframe), each exactly once."""
        if i not in self._resized:
            vid = self.keys[i][0]
            for j in range(len(self.keys)):  # keys are sorted: a video's keyframes are contiguous, in time order
                if self.keys[j][0] == vid and j not in self._resized:
                    self._resized[j] = self._decode_resized(j)
        return self._resized[i]

    def _transform(self, i: int, boxes_norm: np.ndarray) -> _Sample:
        """(clip ``[3, 16, h, w]``, boxes ``[N, 4]`` clip px, clip (w, h), source (w, h)) of sample ``i``."""
        return self._transform_cached(i, boxes_norm) if self.cache else self._transform_decoded(i, boxes_norm)

    def _transform_decoded(self, i: int, boxes_norm: np.ndarray) -> _Sample:
        frames = self.source.clip(*self.keys[i])  # [16, H, W, 3] uint8
        h, w = frames.shape[1:3]
        boxes = normalized_to_pixels(boxes_norm.astype(np.float32), (w, h))  # [N, 4] source px (seed: x2·W − 1)
        if self.split_train:
            rng = random.Random(sample_seed(self.seed, self.epoch, i))
            clip, out_boxes, size = train_transform(frames, boxes, rng, self.crop_size, self.short_side,
                                                    self.seed_quirk)
            return clip, out_boxes, size, (w, h)
        resized, _, size = resize_clip(frames, self.short_side, self.seed_quirk)  # [16, h', w', 3]
        return normalize_clip(resized), resize_boxes(boxes, (w, h), size), size, (w, h)

    def _transform_cached(self, i: int, boxes_norm: np.ndarray) -> _Sample:
        resized, (w, h) = self._resized_frames(i)  # [16, h', w', 3]
        size = (resized.shape[2], resized.shape[1])
        boxes = resize_boxes(normalized_to_pixels(boxes_norm.astype(np.float32), (w, h)), (w, h), size)  # [N, 4]
        if not self.split_train:
            return normalize_clip(resized), boxes, size, (w, h)
        rng = random.Random(sample_seed(self.seed, self.epoch, i))  # the draws train_transform makes
        clip, boxes, size = augment(resized, boxes, rng, self.crop_size)
        return clip, boxes, size, (w, h)

    def __getitem__(self, i: int) -> dict:
        vid, ts = self.keys[i]
        e = self.entries[(vid, ts)]
        boxes_norm = np.asarray(e.boxes, np.float64).reshape(-1, 4)  # [N, 4] normalised
        clip, out_boxes, size, (w, h) = self._transform(i, boxes_norm)
        labels = np.stack(e.labels) if self.split_train else np.zeros((len(e.boxes), NUM_CLASSES))
        return {
            "clip": clip,
            "boxes": torch.from_numpy(np.asarray(out_boxes, np.float32)),  # [N, 4]
            "labels": torch.from_numpy(np.asarray(labels, np.float32)),  # [N, 80]
            "scores": torch.tensor(e.scores, dtype=torch.float32),  # [N]
            "video_id": vid,
            "timestamp": ts,
            "orig_size": (w, h),
            "size": tuple(size),
        }


def collate_clips(batch: list[dict], size_divisible: int = PATCH_SIZE) -> dict:
    """Stack samples, zero-pad clips bottom/right to the batch max rounded up to ``size_divisible``.

    Returns ``clip [B, 3, 16, Hp, Wp]``, ``rois [K, 5]`` (batch index, x1, y1, x2, y2),
    ``labels [K, 80]``, ``scores [K]``, ``sizes`` [(w, h)] and ``meta`` [{video_id, timestamp, orig_size, size}].
    """
    if not batch:
        raise DataError("cannot collate an empty batch", received="[]", expected="≥ 1 sample",
                        fix="check the sampler / dataset length")
    hp = -(-max(s["clip"].shape[-2] for s in batch) // size_divisible) * size_divisible
    wp = -(-max(s["clip"].shape[-1] for s in batch) // size_divisible) * size_divisible
    c, t = batch[0]["clip"].shape[:2]
    clip = torch.zeros((len(batch), c, t, hp, wp), dtype=torch.float32)  # [B, 3, T, Hp, Wp]
    rois = []
    for b, s in enumerate(batch):
        x = s["clip"]  # [3, T, h, w]
        clip[b, :, :, : x.shape[-2], : x.shape[-1]] = x
        idx = torch.full((len(s["boxes"]), 1), float(b))
        rois.append(torch.cat([idx, s["boxes"].reshape(-1, 4)], dim=1))  # [N, 5]
    return {
        "clip": clip,
        "rois": torch.cat(rois).float(),  # [K, 5]
        "labels": torch.cat([s["labels"].reshape(-1, NUM_CLASSES) for s in batch]).float(),  # [K, 80]
        "scores": torch.cat([s["scores"].reshape(-1) for s in batch]).float(),  # [K]
        "sizes": [tuple(s["size"]) for s in batch],
        "meta": [{k: s[k] for k in ("video_id", "timestamp", "orig_size", "size")} for s in batch],
    }


SOURCE_DIRS = {"video": "videos", "clips": "clips", "frames": "frames"}


def build_dataset(root: str | Path, split: str, train: bool, **kw) -> AVADataset:
    """An :class:`AVADataset` over the synthetic/AVA-format layout (``vmaedet synth OUT``).

    Reads ``root/meta.json`` (fps, format), ``annotations/{split}.csv``, ``proposals_{split}.csv``
    (test only), ``excluded_{split}.csv`` and ``labelmap.pbtxt`` when present, and frames from
    ``root/videos`` (``frame_source="video"``), ``root/clips`` or ``root/frames``
    (``frames_root=`` overrides). Other keyword arguments go to :class:`AVADataset`.
    """
    root = Path(root)
    if split not in ("train", "val"):
        raise DataError("unknown split", received=split, expected="train | val", fix="pass split='train' or 'val'")
    meta_path = root / "meta.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    ann = root / "annotations"
    kind = kw.pop("frame_source", "video")
    frames_root = Path(kw.pop("frames_root", root / SOURCE_DIRS.get(kind, kind)))
    if str(meta.get("format", "")).startswith("vmaedet-synth"):
        kw.setdefault("timestamp_start", 0)
    optional = {"labelmap": ann / "labelmap.pbtxt", "exclusions": ann / f"excluded_{split}.csv"}
    if not train:
        optional["proposals"] = ann / f"proposals_{split}.csv"
    for name, path in optional.items():
        if path.is_file():
            kw.setdefault(name, path)
    return AVADataset(frames_root, ann / f"{split}.csv", split_train=train, frame_source=kind, **kw)
