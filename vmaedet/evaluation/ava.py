"""AVA frame-mAP@0.5 (PASCAL VOC style), vectorised with numpy.

Two protocols:

``official``
    The ActivityNet AVA evaluator used for v2.1/v2.2 (``ava_eval.py`` with
    ``PascalDetectionEvaluator``): ground truth and detections are filtered to the label map's
    classes; detections are capped at the 50 highest-scoring rows per frame (a size-50 min-heap
    of ``(score, action_id, y1, x1, y2, x2)`` fed in file order, as ``read_csv(..., capacity=50)``
    does); excluded frames are dropped from both.
``seed``
    The same without the 50-row cap (AlphAction's copy, which VideoMAE used for its numbers).

Then, per frame and class: detections with ``x1 >= x2`` or ``y1 >= y2`` are removed; the rest are
taken in descending score order, each one is matched to its argmax-IoU ground-truth box of that
class (IoU on normalised boxes, no +1; no fallback to the second best) and is a true positive when
that IoU is >= 0.5 and the box is not yet matched; a detection on a frame without ground truth is a
false positive.  Per class, detections of all frames are ranked by score, precision/recall are
accumulated and AP is the VOC all-point area under the monotone precision envelope; a class with
ground truth but no detections has AP 0, a class without ground truth has no AP (None) and is left
out of the mean.

Ties in score are ordered exactly as the official code orders them (``np.argsort(...)[::-1]`` on
arrays built in the same order), so results equal the official evaluator run with the same numpy.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmaedet.errors import ConfigError, DataError
from vmaedet.data.annotations import AvaRows, check_gt_boxes, read_ava_csv, read_exclusions, read_labelmap

__all__ = ["EvalResult", "EvalWarning", "PROTOCOLS", "check_detection_rows", "evaluate_frame_map"]

#: Protocol names accepted by :func:`evaluate_frame_map`.
PROTOCOLS: tuple[str, ...] = ("official", "seed")
#: The official evaluator keeps this many highest-scoring detection rows per frame.
OFFICIAL_MAX_ROWS_PER_FRAME = 50
#: PASCAL matching threshold (IoU >= this is a match).
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class EvalResult:
    """Frame-mAP and per-class results.

    Attributes:
        mAP: mean AP over the label-map classes that have ground truth.
        per_class_ap: ``{action_id: AP}`` for every label-map class; None when it has no ground truth.
        protocol: ``"official"`` or ``"seed"``.
        labelmap: ``{action_id: name}`` used for the evaluation.
        num_gt: ground-truth boxes per class after filtering and exclusions.
        num_detections: detections per class that entered the ranking (after cap, exclusions and
            invalid-box removal).
    """

    mAP: float
    per_class_ap: dict[int, float | None]
    protocol: str
    labelmap: dict[int, str] = field(default_factory=dict)
    num_gt: dict[int, int] = field(default_factory=dict)
    num_detections: dict[int, int] = field(default_factory=dict)
    #: one sentence per oddity of the inputs (scores outside [0, 1], duplicated rows, …)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"mAP", "per_class_ap" (string keys, null = no ground truth), "protocol", counts}``."""
        return {
            "mAP": self.mAP,
            "per_class_ap": {str(k): v for k, v in self.per_class_ap.items()},
            "protocol": self.protocol,
            "num_gt": {str(k): v for k, v in self.num_gt.items()},
            "num_detections": {str(k): v for k, v in self.num_detections.items()},
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


def evaluate_frame_map(
    gt: AvaRows | str | Path,
    detections: AvaRows | str | Path,
    labelmap: Mapping[int, str] | Iterable[int] | str | Path,
    exclusions: Iterable[tuple[str, int]] | str | Path | None = None,
    protocol: str = "official",
) -> EvalResult:
    """Compute AVA frame-mAP@0.5.

    Args:
        gt: ground-truth rows, or the path of a ground-truth CSV.
        detections: detection rows (with scores), or the path of a detection CSV.
        labelmap: ``{id: name}``, an iterable of evaluated ids, or the path of a ``.pbtxt`` label map.
        exclusions: ``(video_id, timestamp)`` frames to ignore, or the path of an exclusions CSV.
        protocol: ``"official"`` (50-row cap per frame) or ``"seed"`` (no cap).

    Returns:
        An :class:`EvalResult`.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError("unknown evaluation protocol", received=protocol, expected=" or ".join(PROTOCOLS),
                          fix="pass protocol='official' (ActivityNet) or 'seed' (VideoMAE's published numbers)")
    gt_rows = gt if isinstance(gt, AvaRows) else read_ava_csv(gt, with_scores=False)
    det_rows = detections if isinstance(detections, AvaRows) else read_ava_csv(detections, with_scores=True)
    if det_rows.scores is None:
        raise DataError("the detections have no scores", received=det_rows.source or "AvaRows without scores",
                        expected="detection rows video_id,timestamp,x1,y1,x2,y2,action_id,score",
                        fix="pass the detection CSV as detections and the ground truth as gt")
    if isinstance(gt, AvaRows):  # a file is checked as it is read
        check_gt_boxes(gt_rows)
    input_warnings = check_detection_rows(det_rows, gt_rows)
    for message in input_warnings:
        warnings.warn(message, EvalWarning, stacklevel=2)
    names = _labelmap_dict(labelmap)
    excluded = read_exclusions(exclusions) if isinstance(exclusions, (str, Path)) else set(exclusions or ())

    vocab = _video_vocabulary(gt_rows, det_rows, excluded)
    excluded_keys = _frame_key(np.array([vocab[v] for v, _ in excluded], dtype=np.int64),
                               np.array([t for _, t in excluded], dtype=np.int64))
    class_ids = np.array(sorted(names), dtype=np.int64)

    g = _prepare_gt(gt_rows, vocab, class_ids, excluded_keys, protocol)
    d, tp = _prepare_detections(det_rows, vocab, class_ids, excluded_keys, protocol, g)
    num_gt = np.bincount(g.cls, minlength=int(class_ids.max()) + 1)
    ap, n_det = _per_class_ap(d, tp, num_gt, class_ids)

    per_class = {int(c): ap.get(int(c)) for c in class_ids}
    valid = [v for v in per_class.values() if v is not None]
    if not valid:
        raise DataError("no ground-truth box is left to evaluate", received=_describe(gt_rows, names),
                        expected="ground-truth rows whose action ids are in the label map and frames not excluded",
                        fix="check that the ground truth (gt) and the label map (labelmap) belong together")
    return EvalResult(
        mAP=float(np.mean(valid)),
        per_class_ap=per_class,
        protocol=protocol,
        labelmap={int(c): names[int(c)] for c in class_ids},
        num_gt={int(c): int(num_gt[c]) for c in class_ids},
        num_detections={int(c): n_det.get(int(c), 0) for c in class_ids},
        warnings=input_warnings,
    )


class EvalWarning(UserWarning):
    """The evaluation inputs are legal but odd (scores outside [0, 1], duplicated rows)."""


#: Detections whose integer "scores" sit on ground-truth boxes for at least this fraction of rows are
#: taken for a ground-truth file (its 8th column, the person id, read as a score).
GT_LIKE_FRACTION = 0.5


def check_detection_rows(det: AvaRows, gt: AvaRows | None = None) -> list[str]:
    """Oddities of detection rows, one sentence each (warnings: the evaluation still runs).

    * scores that are varying integers on rows that are mostly exactly ground-truth rows (video, time,
      box, action): the ground truth was passed as detections (its person ids read as scores);
    * scores outside [0, 1] (legal for the ranking, but not the probabilities the toolkit writes);
    * duplicated rows (the same video, time, box, action and score more than once).
    """
    out: list[str] = []
    scores = det.scores
    if scores is None or not len(det):
        return out
    source = det.source or "the detections"
    integral = bool(np.all(scores == np.round(scores)))
    if integral and gt is not None and len(gt) and len(np.unique(scores)) > 1:
        # an "oracle" file (ground-truth rows, one constant score) is a legitimate sanity check; varying
        # integer scores on ground-truth rows are the person-id column of a ground-truth file
        on_gt = _rows_in(det, gt)
        if on_gt >= GT_LIKE_FRACTION * len(det):
            out.append(f"{source} looks like a ground-truth file, not detections: every score is an integer "
                       f"({_range(scores)}) and {on_gt} of {len(det)} rows are exactly ground-truth rows, so its "
                       "person ids are read as scores and the mAP means nothing; pass the model's detection CSV "
                       "(what `vmaedet eval --checkpoint CKPT --data ROOT` or "
                       "`vmaedet stream --source VIDEO --csv OUT.csv` writes)")
    outside = int(np.count_nonzero((scores < 0) | (scores > 1)))
    if outside:
        note = " (all integers ≥ 1: person ids rather than scores?)" if integral and scores.min() >= 1 else ""
        out.append(f"{source}: {outside} of {len(det)} scores lie outside [0, 1] ({_range(scores)}){note}; "
                   "only their order counts for AP")
    dup = _duplicate_rows(det)
    if dup:
        out.append(f"{source}: {dup} of {len(det)} rows repeat an earlier row exactly (same video, time, box, "
                   "action and score); each copy counts as a separate detection (false positives)")
    return out


def _range(x: np.ndarray) -> str:
    return f"from {float(x.min()):g} to {float(x.max()):g}"


def _row_hash(rows: AvaRows, videos: dict[str, int], with_scores: bool) -> np.ndarray:
    """``[N]`` uint64 hash of (video, timestamp, box, action[, score]) per row (collisions are re-checked)."""
    vid = np.array([videos.setdefault(v, len(videos)) for v in rows.videos], dtype=np.uint64)[rows.video_index]
    cols = [vid, rows.timestamps.astype(np.uint64), *(np.ascontiguousarray(rows.boxes[:, i]).view(np.uint64)
                                                        for i in range(4)), rows.action_ids.astype(np.uint64)]
    if with_scores and rows.scores is not None:
        cols.append(np.ascontiguousarray(rows.scores, dtype=np.float64).view(np.uint64))
    h = np.full(len(rows), np.uint64(1469598103934665603))
    with np.errstate(over="ignore"):
        for c in cols:
            h = (h ^ c) * np.uint64(1099511628211)
            h ^= h >> np.uint64(29)
    return h


def _row_matrix(rows: AvaRows, videos: dict[str, int], idx: np.ndarray, with_scores: bool) -> np.ndarray:
    vid = np.array([videos[v] for v in rows.videos], dtype=np.float64)[rows.video_index[idx]]
    cols = [vid, rows.timestamps[idx].astype(np.float64), *rows.boxes[idx].T, rows.action_ids[idx].astype(np.float64)]
    if with_scores and rows.scores is not None:
        cols.append(rows.scores[idx])
    return np.stack(cols, axis=1)  # [n, 7 or 8]


def _duplicate_rows(det: AvaRows) -> int:
    """How many rows repeat an earlier row exactly (hash first, then an exact check of the candidates)."""
    videos: dict[str, int] = {}
    h = _row_hash(det, videos, True)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    cand = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    if not len(cand):
        return 0
    m = _row_matrix(det, videos, cand, True)
    return int(len(m) - len(np.unique(m, axis=0)))


def _rows_in(det: AvaRows, gt: AvaRows) -> int:
    """How many detection rows equal a ground-truth row in video, timestamp, box and action."""
    videos: dict[str, int] = {}
    hd, hg = _row_hash(det, videos, False), _row_hash(gt, videos, False)
    cand = np.flatnonzero(np.isin(hd, hg))
    if not len(cand):
        return 0
    gm = {tuple(r) for r in _row_matrix(gt, videos, np.flatnonzero(np.isin(hg, hd[cand])), False).tolist()}
    return sum(tuple(r) in gm for r in _row_matrix(det, videos, cand, False).tolist())


# ----------------------------------------------------------------------------------------------
# preparation


@dataclass
class _Boxes:
    """Filtered rows of one side. ``yxyx`` is the official (ymin, xmin, ymax, xmax) order."""

    frame: np.ndarray  # [N] int64 frame key
    cls: np.ndarray  # [N] int64 action id
    yxyx: np.ndarray  # [N, 4] float64
    scores: np.ndarray | None = None  # [N] float64


def _labelmap_dict(labelmap: Mapping[int, str] | Iterable[int] | str | Path) -> dict[int, str]:
    if isinstance(labelmap, (str, Path)):
        return read_labelmap(labelmap)
    if isinstance(labelmap, Mapping):
        names = {int(k): str(v) for k, v in labelmap.items()}
    else:
        names = {int(k): str(k) for k in labelmap}
    if not names or min(names) < 1:
        raise ConfigError("the label map must list at least one positive action id", received=sorted(names)[:5],
                          expected="ids like 1, 3, 4, ...", fix="pass the AVA label map .pbtxt")
    return names


def _describe(rows: AvaRows, names: Mapping[int, str]) -> str:
    ids = np.unique(rows.action_ids)
    return f"{len(rows)} rows in {rows.source or 'memory'}, action ids {ids[:10].tolist()}; label map ids {sorted(names)[:10]}"


def _video_vocabulary(gt: AvaRows, det: AvaRows, excluded: set[tuple[str, int]]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for name in (*gt.videos, *det.videos, *(v for v, _ in excluded)):
        vocab.setdefault(name, len(vocab))
    return vocab


def _frame_key(video: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """``[N]`` one int64 per (video index, timestamp); timestamps are < 2**32 seconds."""
    return (video.astype(np.int64) << 32) + timestamp.astype(np.int64)


def _row_keys(rows: AvaRows, vocab: dict[str, int]) -> np.ndarray:
    to_global = np.array([vocab[v] for v in rows.videos], dtype=np.int64)
    return _frame_key(to_global[rows.video_index] if len(rows) else np.zeros(0, np.int64), rows.timestamps)  # [N]


def _yxyx(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, [1, 0, 3, 2]]  # [N, 4] (y1, x1, y2, x2)


def _prepare_gt(rows: AvaRows, vocab: dict[str, int], class_ids: np.ndarray, excluded: np.ndarray,
                protocol: str) -> _Boxes:
    """Ground truth filtered to evaluated classes and non-excluded frames, in the protocol's order.

    The order of a frame's boxes decides which one ``np.argmax`` picks when a detection has exactly
    the same IoU with two of them: the seed keeps file order, the official code reads the ground
    truth through the same heap as the detections (without a cap) and keeps the heap's list order.
    """
    keys = _row_keys(rows, vocab)
    keep = np.isin(rows.action_ids, class_ids) & ~np.isin(keys, excluded)
    keys, cls, yxyx = keys[keep], rows.action_ids[keep], _yxyx(rows.boxes[keep])
    if protocol == "official" and len(keys):
        pos = np.arange(len(keys))
        o = np.lexsort((cls, keys))
        same = (keys[o][1:] == keys[o][:-1]) & (cls[o][1:] == cls[o][:-1])
        ones = np.ones(len(keys))  # the official reader gives ground truth the score 1.0
        for frame_rows in _split_by_frame(np.flatnonzero(np.isin(keys, keys[o][1:][same])), keys):
            listed = _replay_heap(frame_rows, cls, yxyx, ones, cap=0)
            pos[listed] = np.arange(len(listed))
        order = np.lexsort((pos, keys))
        keys, cls, yxyx = keys[order], cls[order], yxyx[order]
    return _Boxes(frame=keys, cls=cls, yxyx=yxyx)


def _prepare_detections(rows: AvaRows, vocab: dict[str, int], class_ids: np.ndarray, excluded: np.ndarray,
                        protocol: str, g: _Boxes) -> tuple[_Boxes, np.ndarray]:
    """Detections filtered, capped (official), excluded, cleaned, put in evaluation order and matched.

    The returned rows are sorted by (class, frame order of first appearance, processing order in the
    frame), i.e. exactly the order in which the official code concatenates each class's scores;
    the second value is ``[D]`` bool, true positive.
    """
    keep = np.isin(rows.action_ids, class_ids)
    keys, cls = _row_keys(rows, vocab)[keep], rows.action_ids[keep]
    yxyx, scores = _yxyx(rows.boxes[keep]), rows.scores[keep]  # type: ignore[index]
    image_rank = _rank_of_first_appearance(keys)
    best_gt = _best_gt(keys, cls, yxyx, g)  # order-independent: argmax-IoU GT if IoU >= 0.5, else -1
    cand = best_gt >= 0
    if protocol == "official":
        sel, list_pos = _official_read_order(keys, cls, yxyx, scores, cand)
    else:
        sel, list_pos = np.arange(len(keys)), np.arange(len(keys))
    sel_keep = ~np.isin(keys[sel], excluded)
    sel, list_pos = sel[sel_keep], list_pos[sel_keep]
    b = yxyx[sel]
    valid = (b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3])
    sel, list_pos = sel[valid], list_pos[valid]
    sel = sel[_evaluation_order(cls[sel], image_rank[sel], scores[sel], list_pos, cand[sel])]
    # In processing order the first candidate of each GT box claims it; later ones are FPs.
    tp = np.zeros(len(sel), dtype=bool)
    claims = np.flatnonzero(cand[sel])
    _, first = np.unique(best_gt[sel][claims], return_index=True)
    tp[claims[first]] = True
    d = _Boxes(frame=keys[sel], cls=cls[sel], yxyx=yxyx[sel], scores=scores[sel])
    return d, tp


def _rank_of_first_appearance(keys: np.ndarray) -> np.ndarray:
    """``[N]`` for each row, the rank of its frame when frames are ordered by first appearance."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank_of_uniq = np.empty(len(first), dtype=np.int64)
    rank_of_uniq[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank_of_uniq[inverse.reshape(-1)]


def _official_read_order(keys: np.ndarray, cls: np.ndarray, yxyx: np.ndarray, scores: np.ndarray,
                         cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept by the official ``read_csv(capacity=50)`` and their position in the frame's list.

    Most frames are handled in closed form: when the 50th and 51st highest scores differ the heap
    keeps exactly the top 50, and the list order inside a frame only matters among rows of one
    class with equal scores of which one can be a true positive (``cand``).  The remaining frames
    (a tie at the cut, or such a tie) are replayed with the same heap as the official code.
    """
    n = len(keys)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cap = OFFICIAL_MAX_ROWS_PER_FRAME
    by_score = np.lexsort((-scores, keys))  # frame, then score descending (stable: file order)
    k_sorted = keys[by_score]
    starts = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)  # rank of by_score[i] inside its frame
    keep_sorted = rank < cap
    big = counts > cap
    cut_tie = np.zeros(len(starts), dtype=bool)
    cut_tie[big] = scores[by_score[starts[big] + cap - 1]] == scores[by_score[starts[big] + cap]]
    replay = cut_tie | np.isin(k_sorted[starts], _frames_with_relevant_ties(keys, cls, scores, cand))
    keep = np.zeros(n, dtype=bool)
    keep[by_score[keep_sorted]] = True
    list_pos = np.arange(n)
    replay_rows = np.isin(keys, k_sorted[starts[replay]])
    keep[replay_rows] = False
    for frame_rows in _split_by_frame(np.flatnonzero(replay_rows), keys):
        kept = _replay_heap(frame_rows, cls, yxyx, scores, cap)
        keep[kept] = True
        list_pos[kept] = np.arange(len(kept))
    sel = np.flatnonzero(keep)
    return sel, list_pos[sel]


def _frames_with_relevant_ties(keys: np.ndarray, cls: np.ndarray, scores: np.ndarray,
                               cand: np.ndarray) -> np.ndarray:
    """Frame keys with two rows of one class and equal score, one of them a match candidate.

    Ties among rows that can only be false positives need no exact order: swapping them changes
    neither the scores nor the labels that reach the ranking.
    """
    frame_index = np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)
    group = frame_index * (int(cls.max()) + 1) + cls  # [N] one id per (frame, class)
    rows = np.flatnonzero(np.isin(group, group[cand]))  # only groups holding a candidate can matter
    if not len(rows):
        return np.zeros(0, dtype=keys.dtype)
    o = rows[np.lexsort((scores[rows], group[rows]))]
    k, c, sc = keys[o], cls[o], scores[o]
    tie_next = (k[1:] == k[:-1]) & (c[1:] == c[:-1]) & (sc[1:] == sc[:-1])
    run_start = np.flatnonzero(np.r_[True, ~tie_next])
    run_len = np.diff(np.r_[run_start, len(o)])
    run_cand = np.logical_or.reduceat(cand[o], run_start)
    return np.unique(k[run_start[(run_len > 1) & run_cand]])


def _split_by_frame(rows: np.ndarray, keys: np.ndarray) -> list[np.ndarray]:
    """Split row indices (ascending = file order) into per-frame groups, file order kept."""
    if not len(rows):
        return []
    o = np.argsort(keys[rows], kind="stable")
    r = rows[o]
    cuts = np.flatnonzero(keys[r][1:] != keys[r][:-1]) + 1
    return np.split(r, cuts)


class _HeapEntry:
    """A heap item that compares like the official tuple ``(score, action_id, y1, x1, y2, x2)``."""

    __slots__ = ("key", "row")

    def __init__(self, key: tuple[float, int, float, float, float, float], row: int) -> None:
        self.key, self.row = key, row

    def __lt__(self, other: _HeapEntry) -> bool:
        return self.key < other.key


def _replay_heap(frame_rows: np.ndarray, cls: np.ndarray, yxyx: np.ndarray, scores: np.ndarray,
                 cap: int) -> np.ndarray:
    """Row indices kept for one frame, in the official list order (heap, then sort by -score).

    ``cap < 1`` means no cap, as in the official ``read_csv``.
    """
    heap: list[_HeapEntry] = []
    for r in frame_rows.tolist():
        entry = _HeapEntry((float(scores[r]), int(cls[r]), *map(float, yxyx[r])), r)
        if cap < 1 or len(heap) < cap:
            heapq.heappush(heap, entry)
        elif entry.key[0] > heap[0].key[0]:
            heapq.heapreplace(heap, entry)
    return np.array([e.row for e in sorted(heap, key=lambda e: -e.key[0])], dtype=np.int64)


def _evaluation_order(cls: np.ndarray, image_rank: np.ndarray, scores: np.ndarray, list_pos: np.ndarray,
                      cand: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (class, image rank, processing order within the image).

    Within an image and class the official code sorts with ``np.argsort(scores)[::-1]`` over the
    rows in list order; groups with tied scores involving a match candidate are sorted with that
    very call (other ties cannot change the result).
    """
    o = np.lexsort((list_pos, -scores, image_rank, cls))  # ties in list order
    same_group = (cls[o][1:] == cls[o][:-1]) & (image_rank[o][1:] == image_rank[o][:-1])
    tie_next = same_group & (scores[o][1:] == scores[o][:-1])
    tied = np.flatnonzero(tie_next & (cand[o][1:] | cand[o][:-1]))
    if len(tied):  # a candidate tied with its neighbour: a run of equal scores holding a candidate
        run_start = np.flatnonzero(np.r_[True, ~tie_next])
        run_cand = np.logical_or.reduceat(cand[o], run_start)
        in_run = np.repeat(run_cand & (np.diff(np.r_[run_start, len(o)]) > 1), np.diff(np.r_[run_start, len(o)]))
        tied = np.flatnonzero(in_run[:-1] & tie_next)
    if not len(tied):
        return o
    group_start = np.flatnonzero(np.r_[True, ~same_group])
    group_end = np.r_[group_start[1:], len(o)]
    for g in np.unique(np.searchsorted(group_start, tied, side="right") - 1).tolist():
        s, e = group_start[g], group_end[g]
        rows = o[s:e][np.argsort(list_pos[o[s:e]], kind="stable")]  # the list order
        o[s:e] = rows[np.argsort(scores[rows])[::-1]]
    return o


# ----------------------------------------------------------------------------------------------
# matching and AP


def _best_gt(frame: np.ndarray, cls: np.ndarray, yxyx: np.ndarray, g: _Boxes) -> np.ndarray:
    """``[D]`` index into ``g`` of each detection's argmax-IoU GT box when that IoU is >= 0.5, else -1.

    Only boxes of the same frame and class compete; the first maximum wins, as with ``np.argmax``
    over the ground truth in ``g``'s order.  This does not depend on the detection order.
    """
    best = np.full(len(frame), -1, dtype=np.int64)
    if not len(frame) or not len(g.frame):
        return best
    max_cls = int(max(cls.max(), g.cls.max())) + 1
    frames = np.unique(np.concatenate([frame, g.frame]))
    g_group = np.searchsorted(frames, g.frame) * max_cls + g.cls
    d_group = np.searchsorted(frames, frame) * max_cls + cls
    g_order = np.argsort(g_group, kind="stable")  # ground truth of a group keeps its order
    g_sorted = g_group[g_order]
    first = np.searchsorted(g_sorted, d_group, side="left")
    n_cand = np.searchsorted(g_sorted, d_group, side="right") - first  # [D] GT boxes of the same class/frame
    has = np.flatnonzero(n_cand)
    if not len(has):
        return best
    counts = n_cand[has]
    seg_start = np.r_[0, np.cumsum(counts)[:-1]]
    pair_det = np.repeat(has, counts)  # [P]
    pair_gt = g_order[np.repeat(first[has], counts) + np.arange(counts.sum()) - np.repeat(seg_start, counts)]
    iou = _pair_iou(yxyx[pair_det], g.yxyx[pair_gt])  # [P]
    seg_max = np.maximum.reduceat(iou, seg_start)  # [H] NaN-propagating like np.argmax
    first_max = np.flatnonzero(_first_true_in_segment(iou == np.repeat(seg_max, counts), pair_det))
    hit = first_max[iou[first_max] >= IOU_THRESHOLD]
    best[pair_det[hit]] = pair_gt[hit]
    return best


def _first_true_in_segment(mask: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """``[P]`` bool: position is the first True of ``mask`` within its run of equal ``seg``."""
    idx = np.flatnonzero(mask)
    out = np.zeros(len(mask), dtype=bool)
    if len(idx):
        out[idx[np.r_[True, seg[idx][1:] != seg[idx][:-1]]]] = True
    return out


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[P]`` IoU of row-aligned (y1, x1, y2, x2) boxes, with the official formula and operation order."""
    h = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    w = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = h * w
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a + area_b - inter)


def _per_class_ap(d: _Boxes, tp: np.ndarray, num_gt: np.ndarray,
                  class_ids: np.ndarray) -> tuple[dict[int, float], dict[int, int]]:
    """VOC all-point AP for every class with ground truth, and the detection count per class."""
    starts = np.searchsorted(d.cls, class_ids, side="left")
    ends = np.searchsorted(d.cls, class_ids, side="right")
    ap: dict[int, float] = {}
    n_det: dict[int, int] = {}
    for c, s, e in zip(class_ids.tolist(), starts.tolist(), ends.tolist()):
        n_det[c] = e - s
        if num_gt[c] > 0:
            ap[c] = _voc_ap(d.scores[s:e], tp[s:e], int(num_gt[c]))  # type: ignore[index]
    return ap, n_det


def _voc_ap(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """AP from scores in the official concatenation order (ranked with ``np.argsort(...)[::-1]``)."""
    if not len(scores):
        return 0.0
    ranked = tp[np.argsort(scores)[::-1]]
    cum_tp = np.cumsum(ranked)
    cum_fp = np.cumsum(~ranked)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    idx = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))
