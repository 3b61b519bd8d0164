"""AVA-format annotations, person proposals and the keyframe-clip dataset (spec §2, §4).

Readers (every malformed row raises :class:`vmaedet.errors.DataError` naming ``file:line``):

* GT rows ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`` (normalised boxes);
* proposals as AVA-style CSV ``video_id,timestamp,x1,y1,x2,y2,[action],score`` or the seed's COCO
  results list ``[{"image_id", "bbox": [x, y, w, h] px, "score"}]`` (with the COCO ``images`` index
  that maps ``image_id`` → movie, timestamp, width, height);
* excluded timestamps and label maps via :mod:`vmaedet.data.annotations`; timestamps may be written
  ``902`` or ``0902``.

Boxes are kept normalised; the dataset turns them into pixels with the seed's convention
(``vmaedet.ops.boxes.normalized_to_pixels``: x1·W, y1·H, x2·W − 1, y2·H − 1 — csv2COCO followed by
BoxList's xywh → xyxy with TO_REMOVE = 1). COCO-json proposals are stored so that the same
conversion gives back the seed's (x, y, x + w − 1, y + h − 1).

Dataset contract: :class:`AVADataset`, :func:`collate_clips`, :func:`build_dataset`.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vmaedet.constants import NUM_CLASSES
from vmaedet.errors import DataError
from vmaedet.data.annotations import read_exclusions, read_labelmap
from vmaedet.ops.boxes import normalized_to_pixels
from vmaedet.data.transforms import augment, normalize_clip, resize_boxes, resize_clip, resize_frames, seed_resize_size, train_transform
from vmaedet.data.video import FrameSource, make_source

Key = tuple[str, int]
#: (clip [3, 16, h, w], boxes [N, 4] in clip pixels, clip (w, h), source (w, h)) of one sample.
_Sample = tuple[torch.Tensor, np.ndarray, tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class BoxRow:
    """One parsed CSV row: a normalised box of one keyframe with its action id / score."""

    video_id: str
    timestamp: int
    box: tuple[float, float, float, float]
    action_id: int | None
    person_id: int | None = None
    score: float = 1.0
    line: int = 0

    @property
    def key(self) -> Key:
        return self.video_id, self.timestamp


def _require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found", received=str(p), expected=f"an existing {what}",
                        fix="check the path (or the dataset root layout: vmaedet data check ROOT)")
    return p


def iter_csv(path: str | Path, what: str = "CSV file") -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` for every non-blank line (1-based line numbers)."""
    p = _require_file(path, what)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            for lineno, fields in enumerate(csv.reader(fh), start=1):
                if fields and any(f.strip() for f in fields):
                    yield lineno, [f.strip() for f in fields]
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not UTF-8 text", received=f"{p} ({exc})", expected="a CSV text file",
                        fix="check that the path names the CSV, not a binary file") from None


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
        if not f.is_integer():
            raise ValueError(f"{name} {text!r} is not an integer") from None
        return int(f)


def _float(text: str, name: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} {text!r} is not finite")
    return v


def box_problems(box: Sequence[float]) -> list[str]:
    """Messages for a normalised box outside [0, 1] or inverted/empty (empty list when fine)."""
    x1, y1, x2, y2 = box
    msgs = []
    if min(box) < 0 or max(box) > 1:
        msgs.append(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside [0, 1]")
    if x2 <= x1 or y2 <= y1:
        msgs.append(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is inverted or empty (needs x1 < x2 and y1 < y2)")
    return msgs


GT_FORMAT = "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]"
PROPOSAL_FORMAT = "video_id,timestamp,x1,y1,x2,y2,[action_id],score"


def parse_row(fields: list[str], kind: str, line: int = 0) -> BoxRow:
    """Parse one GT (``kind="gt"``) or proposal (``kind="proposal"``) row; ValueError says what is wrong.

    Box range/order is not checked here (see :func:`box_problems`).
    """
    n = len(fields)
    if kind == "gt" and n not in (7, 8):
        raise ValueError(f"{n} columns, expected 7 or 8 ({GT_FORMAT})")
    if kind == "proposal" and n != 8:
        raise ValueError(f"{n} columns, expected 8 ({PROPOSAL_FORMAT})")
    if not fields[0]:
        raise ValueError("empty video_id")
    ts = _int(fields[1], "timestamp")
    box = tuple(_float(fields[2 + i], name) for i, name in enumerate(("x1", "y1", "x2", "y2")))
    if kind == "gt":
        action = _int(fields[6], "action_id")
        person = _int(fields[7], "person_id") if n == 8 and fields[7] else None
        return BoxRow(fields[0], ts, box, action, person, 1.0, line)
    action = _int(fields[6], "action_id") if fields[6] else None
    return BoxRow(fields[0], ts, box, action, None, _float(fields[7], "score"), line)


def _row_error(path: Path, line: int, msg: str, fmt: str) -> DataError:
    return DataError(f"malformed row in {path}:{line}: {msg}", received=f"{path}:{line}", expected=fmt,
                     fix="correct or delete that line (vmaedet data check ROOT lists every bad row)")


def read_rows(path: str | Path, kind: str) -> list[BoxRow]:
    """All rows of a GT or proposal CSV; the first bad row raises DataError with file:line."""
    p = Path(path)
    fmt = GT_FORMAT if kind == "gt" else PROPOSAL_FORMAT
    rows = []
    for line, fields in iter_csv(p, "annotation CSV" if kind == "gt" else "proposal CSV"):
        try:
            row = parse_row(fields, kind, line)
        except ValueError as exc:
            raise _row_error(p, line, str(exc), fmt) from None
        problems = box_problems(row.box)
        if problems:
            raise _row_error(p, line, "; ".join(problems), fmt)
        if kind == "gt" and not 1 <= row.action_id <= NUM_CLASSES:
            raise _row_error(p, line, f"action_id {row.action_id} outside 1..{NUM_CLASSES}", fmt)
        rows.append(row)
    return rows


def read_annotations(path: str | Path) -> list[BoxRow]:
    """GT rows of an AVA CSV (``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``)."""
    return read_rows(path, "gt")


def read_coco_images(path: str | Path) -> dict[int, tuple[str, int, int, int]]:
    """``image_id → (movie, timestamp, width, height)`` from a COCO-style json's ``images`` list."""
    p = _require_file(path, "COCO images json")
    data = _load_json(p)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError("COCO json has no 'images' list", received=str(p),
                        expected='{"images": [{"id", "movie", "timestamp", "width", "height"}, …]}',
                        fix="pass the seed's ava_val_v2.2_min.json (AlphAction csv2COCO output)")
    out = {}
    for i, im in enumerate(images):
        try:
            out[int(im["id"])] = (str(im["movie"]), int(im["timestamp"]), int(im["width"]), int(im["height"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad image entry #{i} in {p}", received=repr(im)[:200],
                            expected="id, movie, timestamp, width, height", fix="regenerate the json") from exc
    return out


def _load_json(p: Path) -> object:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON", received=str(exc), expected="a JSON file",
                        fix="regenerate the file") from None


def read_coco_proposals(path: str | Path, images: dict[int, tuple[str, int, int, int]]) -> list[BoxRow]:
    """The seed's person detections ``[{image_id, bbox: [x, y, w, h] px, score}]`` as normalised rows.

    xyxy = (x, y, x + w − 1, y + h − 1) (the seed's BoxList convention), clipped to the json
    image [0, W − 1] × [0, H − 1], then stored normalised like a CSV box: (x1 / W, y1 / H,
    (x2 + 1) / W, (y2 + 1) / H), so that the dataset's ``normalized_to_pixels`` gives these pixels
    back.  Entry numbers stand in for line numbers.
    """
    p = _require_file(path, "proposal json")
    data = _load_json(p)
    if not isinstance(data, list):
        raise DataError("proposal json must be a list of detections", received=f"{p} ({type(data).__name__})",
                        expected='[{"image_id": int, "bbox": [x, y, w, h], "score": float}, …]',
                        fix="pass the COCO results list (e.g. ava_val_det_person_bbox.json)")
    rows = []
    for i, det in enumerate(data):
        try:
            image_id, (x, y, w, h), score = int(det["image_id"]), map(float, det["bbox"]), float(det["score"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"malformed detection #{i} in {p}", received=repr(det)[:200],
                            expected='{"image_id": int, "bbox": [x, y, w, h], "score": float}',
                            fix="correct or delete that entry") from None
        if image_id not in images:
            raise DataError(f"detection #{i} in {p} names an unknown image_id", received=image_id,
                            expected="an id of the COCO images json", fix="pass the matching images json")
        movie, ts, iw, ih = images[image_id]
        x1, y1 = min(max(x, 0.0), iw - 1), min(max(y, 0.0), ih - 1)
        x2, y2 = min(max(x + w - 1, 0.0), iw - 1), min(max(y + h - 1, 0.0), ih - 1)
        rows.append(BoxRow(movie, ts, (x1 / iw, y1 / ih, (x2 + 1) / iw, (y2 + 1) / ih), None, None, score, i + 1))
    return rows


def read_proposals(path: str | Path, coco_images: str | Path | None = None) -> list[BoxRow]:
    """Person proposals from an AVA-style CSV or (``.json``) the seed's COCO results list."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        if coco_images is None:
            raise DataError("COCO-json proposals need the images index that maps image_id to movie/timestamp",
                            received=str(p), expected="coco_images=<ava_val_v2.2_min.json>",
                            fix="pass coco_images=… (or convert the proposals to CSV)")
        return read_coco_proposals(p, read_coco_images(coco_images))
    return read_rows(p, "proposal")


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
        temporal_rule: "auto" | "frames" | "time" (see :mod:`vmaedet.data.video`).
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
        short_side: int = 256,
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


def collate_clips(batch: list[dict], size_divisible: int = 16) -> dict:
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
    meta = _load_json(meta_path) if meta_path.is_file() else {}
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
