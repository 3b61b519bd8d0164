"""AVA annotation I/O, the one home of it: box CSVs, proposals, excluded timestamps, label maps, result CSVs.

The CSV layout is the AVA one, with no header::

    video_id,timestamp,x1,y1,x2,y2,action_id[,person_id | ,score]

Boxes are normalised ``[0, 1]`` corner coordinates; timestamps are integer seconds, written ``902`` or
``0902`` (both are the same frame). Every malformed input raises :class:`vmaedet.errors.DataError`
naming the file and the line.

Two readers of the same files, for two jobs (both use :data:`GT_FORMAT` / :data:`DETECTION_FORMAT` /
:data:`PROPOSAL_FORMAT` and the helpers below):

* **columns** — :func:`read_ava_csv` → :class:`AvaRows` (numpy columns) for evaluation and results.
  Large files are parsed with numpy's C ``loadtxt`` (about a second per million rows); when that
  parser rejects a file, a line-by-line pass finds the first bad line. Detections need an action id
  and a score; values must be finite, timestamps ≥ 0, action ids ≥ 1; inverted ground-truth boxes
  are refused (:func:`check_gt_boxes`).
* **records** — :func:`read_annotations` / :func:`read_proposals` → :class:`BoxRow` per row for the
  dataset and the person-proposal detector, with the dataset's stricter checks: boxes inside
  [0, 1] and non-empty (:func:`box_problems`), ground-truth action ids in 1..80, and proposals whose
  action column may be blank. Also reads the seed's COCO-json proposals (:func:`read_coco_proposals`).
  :func:`iter_csv` + :func:`parse_row` are the same row parser for the dataset validator, which
  collects every bad row instead of stopping at the first.

The two readers differ on purpose where their jobs differ: a proposal row may leave the action blank
(records) while a detection row must name one (columns); the record reader accepts a quoted field
and an integer written as ``902.0``, and checks the box range, which a results file the evaluator
ranks does not need. Both skip blank lines and accept 7 or 8 ground-truth columns (the 8th the
person id).

Writing: :func:`write_ava_csv` (the seed's ``write_csv`` format, :data:`AVA_ROW_FORMAT`), atomically.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmaedet.constants import NUM_CLASSES
from vmaedet.errors import DataError

__all__ = [
    "AVA_ROW_FORMAT",
    "DETECTION_FORMAT",
    "GT_FORMAT",
    "PROPOSAL_FORMAT",
    "AvaRows",
    "BoxRow",
    "box_problems",
    "check_gt_boxes",
    "format_ava_rows",
    "iter_csv",
    "parse_row",
    "read_annotations",
    "read_ava_csv",
    "read_coco_images",
    "read_coco_proposals",
    "read_exclusions",
    "read_json",
    "read_labelmap",
    "read_proposals",
    "read_rows",
    "write_ava_csv",
]

#: Ground-truth rows: the 8th column, when present, is the person id.
GT_FORMAT = "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]"
#: Detection (result) rows: 8 columns, the score last.
DETECTION_FORMAT = "video_id,timestamp,x1,y1,x2,y2,action_id,score"
#: Person-proposal rows: 8 columns, the action column may be blank, the score last.
PROPOSAL_FORMAT = "video_id,timestamp,x1,y1,x2,y2,[action_id],score"
#: ``%``-format of one written row (the seed's ``write_csv``): 4-digit timestamp, 5 decimals.
AVA_ROW_FORMAT = "%s,%04d,%.5f,%.5f,%.5f,%.5f,%d,%.5f"

_CSV_LAYOUT_GT = GT_FORMAT
_CSV_LAYOUT_DET = DETECTION_FORMAT



@dataclass(frozen=True)
class AvaRows:
    """The rows of one AVA CSV as columns (compact numpy arrays, file order kept).

    Attributes:
        videos: distinct video ids; ``video_index`` indexes into it.
        video_index: ``[N]`` int32, the video of each row.
        timestamps: ``[N]`` int64 keyframe timestamps in seconds.
        boxes: ``[N, 4]`` float64 normalised ``x1, y1, x2, y2``.
        action_ids: ``[N]`` int64 1-based AVA action ids.
        scores: ``[N]`` float64 detection scores, or None for ground truth.
        person_ids: ``[N]`` int64 person ids (ground truth with 8 columns), or None.
        source: the file the rows came from (for messages), or None.
    """

    videos: tuple[str, ...]
    video_index: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    action_ids: np.ndarray
    scores: np.ndarray | None = None
    person_ids: np.ndarray | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        n = len(self.video_index)
        shapes = {
            "video_index": self.video_index.shape, "timestamps": self.timestamps.shape,
            "boxes": self.boxes.shape, "action_ids": self.action_ids.shape,
        }
        expected = {"video_index": (n,), "timestamps": (n,), "boxes": (n, 4), "action_ids": (n,)}
        for name, arr in (("scores", self.scores), ("person_ids", self.person_ids)):
            if arr is not None:
                shapes[name], expected[name] = arr.shape, (n,)
        if shapes != expected:
            raise DataError("AvaRows columns have inconsistent shapes", received=shapes, expected=expected,
                            fix="build AvaRows with one entry per row in every column (boxes [N, 4])")
        if n and (self.video_index.min() < 0 or self.video_index.max() >= len(self.videos)):
            raise DataError("AvaRows.video_index points outside AvaRows.videos",
                            received=f"indices {self.video_index.min()}..{self.video_index.max()}",
                            expected=f"0..{len(self.videos) - 1}", fix="index into the videos tuple")

    def __len__(self) -> int:
        return len(self.video_index)

    @classmethod
    def from_columns(
        cls,
        video_ids: Iterable[str],
        timestamps: Iterable[int],
        boxes: Iterable[Iterable[float]],
        action_ids: Iterable[int],
        scores: Iterable[float] | None = None,
        person_ids: Iterable[int] | None = None,
    ) -> AvaRows:
        """Build rows from per-row Python sequences (video id strings, not indices)."""
        names = [str(v) for v in video_ids]
        vocab: dict[str, int] = {}
        index = np.array([vocab.setdefault(v, len(vocab)) for v in names], dtype=np.int32)
        return cls(
            videos=tuple(vocab),
            video_index=index,
            timestamps=np.asarray(list(timestamps), dtype=np.int64).reshape(len(names)),
            boxes=np.asarray(list(boxes), dtype=np.float64).reshape(len(names), 4),
            action_ids=np.asarray(list(action_ids), dtype=np.int64).reshape(len(names)),
            scores=None if scores is None else np.asarray(list(scores), dtype=np.float64),
            person_ids=None if person_ids is None else np.asarray(list(person_ids), dtype=np.int64),
        )

    def video_ids(self) -> np.ndarray:
        """``[N]`` the video id string of each row (object array; for small outputs and tests)."""
        return np.asarray(self.videos, dtype=object)[self.video_index]



# ----------------------------------------------------------------------------------------------
# label maps


_BLOCK = re.compile(r"(\w+)\s*\{([^{}]*)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s\"']+)")


def read_labelmap(path: str | Path) -> dict[int, str]:
    """Read an AVA label map in either layout and return ``{action_id: name}`` in file order.

    Layouts: v2.1 ``item { name: "..." id: N }`` and v2.2
    ``label { name: "..." label_id: N label_type: ... }``.  ``display_name`` is accepted as a
    name.  Comments (``#``) are ignored.
    """
    path = Path(path)
    text = _read_text(path, "label map")
    text = re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)  # keep offsets for line numbers
    labelmap: dict[int, str] = {}
    for block in _BLOCK.finditer(text):
        line = text.count("\n", 0, block.start()) + 1
        fields = {k: v for k, v in _FIELD.findall(block.group(2))}
        raw_id = fields.get("id", fields.get("label_id"))
        name = fields.get("name", fields.get("display_name"))
        where = f"{path}:{line}"
        if raw_id is None or name is None:
            raise DataError(f"label map entry at {where} lacks an id or a name",
                            received=f"{block.group(1)} {{{' '.join(block.group(2).split())}}}",
                            expected='item { name: "walk" id: 14 } or label { name: "walk" label_id: 14 }',
                            fix="add the missing field to the entry")
        try:
            action_id = int(raw_id)
        except ValueError:
            raise DataError(f"label map entry at {where} has a non-integer id", received=raw_id,
                            expected="a positive integer", fix="write the id as an integer") from None
        if action_id < 1 or action_id in labelmap:
            raise DataError(f"label map entry at {where} has an invalid or repeated id", received=action_id,
                            expected="distinct positive integers", fix="give each class one positive id")
        labelmap[action_id] = name[1:-1] if name[:1] in "\"'" else name
    if not labelmap:
        raise DataError(f"no label entries found in {path}", received=text[:80].strip() or "(empty file)",
                        expected='entries like item { name: "walk" id: 14 } or label { ... label_id: 14 }',
                        fix="pass the AVA action list .pbtxt")
    return labelmap


# ----------------------------------------------------------------------------------------------
# files


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the {what} {path}", received=f"{type(exc).__name__}: {exc}",
                        expected="a readable file", fix="check the path") from None


def _read_text(path: Path, what: str) -> str:
    return _read_bytes(path, what).decode("utf-8", errors="replace")


def _require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found", received=str(p), expected=f"an existing {what}",
                        fix="check the path (or the dataset root layout: vmaedet data check ROOT)")
    return p



def read_json(p: Path) -> object:
    """The parsed contents of a JSON file; :class:`DataError` when it is not valid UTF-8 JSON."""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON", received=str(exc), expected="a JSON file",
                        fix="regenerate the file") from None



# ----------------------------------------------------------------------------------------------
# box CSVs


def read_ava_csv(path: str | Path, with_scores: bool) -> AvaRows:
    """Read an AVA box CSV: ground truth (``with_scores=False``) or detections (``True``).

    Ground truth has 7 columns or 8 (the 8th is the person id); detections have 8 (the 8th is the
    score).  Blank lines are skipped.  Raises :class:`DataError` naming the file and the line for a
    wrong column count, a non-numeric field or a non-finite value.
    """
    path = Path(path)
    data = _read_bytes(path, "AVA CSV")
    lines_present = data.strip()
    layout = _CSV_LAYOUT_DET if with_scores else _CSV_LAYOUT_GT
    if not lines_present:
        return _empty_rows(with_scores, str(path))
    first = lines_present.split(b"\n", 1)[0]
    ncols = first.count(b",") + 1
    if ncols not in ((8,) if with_scores else (7, 8)):
        _raise_bad_line(path, data, with_scores, ncols_expected=None)
    width = _max_line_length(data)  # bounds the byte length of every video id
    dtype = _csv_dtype(ncols, with_scores, width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(path, delimiter=",", dtype=dtype, comments=None, encoding="latin-1", ndmin=1)
    except ValueError:
        _raise_bad_line(path, data, with_scores, ncols_expected=ncols)
        raise  # unreachable: _raise_bad_line always raises
    rows = _rows_from_table(table, ncols, with_scores, str(path))
    _check_values(rows, path, data, layout)
    if not with_scores:
        check_gt_boxes(rows, data)
    return rows


def check_gt_boxes(rows: AvaRows, data: bytes | None = None) -> None:
    """Refuse ground truth with an inverted box (x1 > x2 or y1 > y2), naming the lines and the count.

    Such a box can never be matched (its area is negative), so it silently lowers the AP of its class.
    ``data`` (the file's bytes) turns row numbers into line numbers.
    """
    b = rows.boxes
    bad = np.flatnonzero((b[:, 0] > b[:, 2]) | (b[:, 1] > b[:, 3]))
    if not len(bad):
        return
    if data is not None:
        where = [f"line {_nonblank_line(data, int(r))[0]}" for r in bad[:5]]
    else:
        where = [f"row {int(r)}" for r in bad[:5]]
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    first = int(bad[0])
    raise DataError(f"{rows.source or 'the ground truth'}: {len(bad)} of {len(rows)} ground-truth boxes are inverted "
                    f"(x1 > x2 or y1 > y2): {', '.join(where)}{more}",
                    received=f"x1, y1, x2, y2 = {', '.join(f'{v:g}' for v in b[first])}",
                    expected="normalised corners with x1 <= x2 and y1 <= y2 (columns video_id,timestamp,x1,y1,x2,y2,…)",
                    fix="correct those rows (swapped corners?) or remove them; an inverted box can never be matched")


def _csv_dtype(ncols: int, with_scores: bool, width: int) -> np.dtype:
    fields = [("v", f"S{width}"), ("t", "i8"), ("x1", "f8"), ("y1", "f8"), ("x2", "f8"), ("y2", "f8"), ("a", "i8")]
    if ncols == 8:
        fields.append(("s", "f8") if with_scores else ("p", "i8"))
    return np.dtype(fields)


def _max_line_length(data: bytes) -> int:
    """Length in bytes of the longest line of ``data`` (at least 1)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.concatenate([np.flatnonzero(buf == 10), [len(buf)]])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return max(int((ends - starts).max()), 1)


def _rows_from_table(table: np.ndarray, ncols: int, with_scores: bool, source: str) -> AvaRows:
    names = table["v"]  # [N] bytes
    change = np.ones(len(names), dtype=bool)
    change[1:] = names[1:] != names[:-1]
    heads = np.flatnonzero(change)  # rows starting a run of one video (files are grouped by video)
    run_names, run_index = np.unique(names[heads], return_inverse=True)
    run_of_row = np.cumsum(change) - 1
    video_index = run_index.reshape(-1)[run_of_row].astype(np.int32)
    videos = tuple(n.decode("utf-8", errors="replace").strip() for n in run_names)
    boxes = np.stack([table["x1"], table["y1"], table["x2"], table["y2"]], axis=1)  # [N, 4]
    return AvaRows(
        videos=videos,
        video_index=video_index,
        timestamps=np.ascontiguousarray(table["t"]),
        boxes=boxes,
        action_ids=np.ascontiguousarray(table["a"]),
        scores=np.ascontiguousarray(table["s"]) if with_scores else None,
        person_ids=np.ascontiguousarray(table["p"]) if (ncols == 8 and not with_scores) else None,
        source=source,
    )


def _empty_rows(with_scores: bool, source: str) -> AvaRows:
    return AvaRows(
        videos=(), video_index=np.zeros(0, np.int32), timestamps=np.zeros(0, np.int64),
        boxes=np.zeros((0, 4), np.float64), action_ids=np.zeros(0, np.int64),
        scores=np.zeros(0, np.float64) if with_scores else None, source=source,
    )


def _check_values(rows: AvaRows, path: Path, data: bytes, layout: str) -> None:
    """Reject non-finite coordinates/scores, negative timestamps and action ids < 1, naming the line."""
    bad = ~np.isfinite(rows.boxes).all(axis=1) | (rows.timestamps < 0) | (rows.action_ids < 1)
    if rows.scores is not None:
        bad |= ~np.isfinite(rows.scores)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        lineno, text = _nonblank_line(data, row)
        raise DataError(f"{path}:{lineno}: invalid value (non-finite number, negative timestamp or action id < 1)",
                        received=text, expected=f"{layout} with finite numbers, timestamp >= 0, action id >= 1",
                        fix="correct or remove that line")


def _nonblank_line(data: bytes, row: int) -> tuple[int, str]:
    """1-based line number and text of the ``row``-th non-blank line."""
    seen = -1
    for lineno, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno, line.decode("utf-8", errors="replace")
    return -1, ""


def _raise_bad_line(path: Path, data: bytes, with_scores: bool, ncols_expected: int | None) -> None:
    """Find the first malformed line with a slow, precise pass and raise a DataError naming it."""
    layout = _CSV_LAYOUT_DET if with_scores else _CSV_LAYOUT_GT
    allowed = (8,) if with_scores else ((7, 8) if ncols_expected is None else (ncols_expected,))
    parsers = [("video_id", str), ("timestamp", int)] + [(c, float) for c in ("x1", "y1", "x2", "y2")]
    parsers += [("action_id", int), ("score", float) if with_scores else ("person_id", int)]
    for lineno, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split(",")
        if len(fields) not in allowed:
            raise DataError(f"{path}:{lineno}: expected {' or '.join(map(str, allowed))} columns, found {len(fields)}",
                            received=raw, expected=layout,
                            fix="give every line the same AVA columns (no header line)")
        for (name, parse), value in zip(parsers, fields):
            try:
                parse(value.strip())
                if parse is str and not value.strip():
                    raise ValueError
            except ValueError:
                kind = {int: "an integer", float: "a number", str: "a non-empty id"}[parse]
                raise DataError(f"{path}:{lineno}: column {name!r} is not {kind}", received=raw,
                                expected=layout, fix="correct or remove that line (AVA CSVs have no header)") from None
    raise DataError(f"{path}: numpy could not parse this CSV", received=f"{len(data)} bytes",
                    expected=layout, fix="check the encoding and the delimiters (commas, one row per line)")


# ----------------------------------------------------------------------------------------------
# box CSVs as records (datasets, proposals)


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
    def key(self) -> tuple[str, int]:
        """``(video_id, timestamp)``: the keyframe of this row."""
        return self.video_id, self.timestamp



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

# ----------------------------------------------------------------------------------------------
# person proposals


def read_coco_images(path: str | Path) -> dict[int, tuple[str, int, int, int]]:
    """``image_id → (movie, timestamp, width, height)`` from a COCO-style json's ``images`` list."""
    p = _require_file(path, "COCO images json")
    data = read_json(p)
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



def read_coco_proposals(path: str | Path, images: dict[int, tuple[str, int, int, int]]) -> list[BoxRow]:
    """The seed's person detections ``[{image_id, bbox: [x, y, w, h] px, score}]`` as normalised rows.

    xyxy = (x, y, x + w − 1, y + h − 1) (the seed's BoxList convention), clipped to the json
    image [0, W − 1] × [0, H − 1], then stored normalised like a CSV box: (x1 / W, y1 / H,
    (x2 + 1) / W, (y2 + 1) / H), so that the dataset's ``normalized_to_pixels`` gives these pixels
    back.  Entry numbers stand in for line numbers.
    """
    p = _require_file(path, "proposal json")
    data = read_json(p)
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

# ----------------------------------------------------------------------------------------------
# excluded timestamps and results


def read_exclusions(path: str | Path) -> set[tuple[str, int]]:
    """Read an AVA excluded-timestamps CSV (``video_id,timestamp``) into a set of frame keys."""
    path = Path(path)
    text = _read_text(path, "exclusions CSV")
    keys: set[tuple[str, int]] = set()
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise DataError(f"{path}:{lineno}: expected 2 columns, found {len(row)}", received=",".join(row),
                            expected="video_id,timestamp", fix="one excluded keyframe per line")
        try:
            keys.add((row[0].strip(), int(row[1])))
        except ValueError:
            raise DataError(f"{path}:{lineno}: the timestamp is not an integer", received=",".join(row),
                            expected="video_id,timestamp (e.g. abc,0902)", fix="correct that line") from None
    return keys



def write_ava_csv(path: str | Path, rows: AvaRows) -> Path:
    """Write rows as the seed's ``write_csv`` does: ``movie,TTTT,x1,y1,x2,y2,action_id,score``.

    The timestamp is zero-padded to 4 digits, coordinates and scores use ``'{:.5f}'``.  Rows without
    scores (ground truth) get their person id as an integer 8th column, or 7 columns without one.
    The file is written to a temporary name and renamed, so an existing file is replaced only when
    complete; a failed write (no space left, read-only folder) leaves nothing behind and raises
    :class:`~vmaedet.errors.OutputError` naming the file and the cause.
    """
    path = Path(path)
    names = np.asarray(rows.videos, dtype=object)
    cols = [names[rows.video_index].tolist(), rows.timestamps.tolist(), *rows.boxes.T.tolist(),
            rows.action_ids.tolist()]
    fmt = AVA_ROW_FORMAT.rsplit(",", 1)[0]  # the 7 columns before the score
    if rows.scores is not None:
        cols.append(rows.scores.tolist())
        fmt += ",%.5f"
    elif rows.person_ids is not None:
        cols.append(rows.person_ids.tolist())
        fmt += ",%d"
    fmt += "\n"
    from vmaedet.safeio import atomic_path

    with atomic_path(path, what="the CSV") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.writelines(fmt % row for row in zip(*cols))
            f.flush()
            os.fsync(f.fileno())
    return path



def format_ava_rows(rows: Iterable[tuple[str, int, float, float, float, float, int, float]]) -> list[str]:
    """Detection rows ``(video_id, timestamp, x1, y1, x2, y2, action_id, score)`` as CSV lines (no newline)
    in the seed's format (:data:`AVA_ROW_FORMAT`: ``movie,TTTT,x1,y1,x2,y2,action_id,score``)."""
    return [AVA_ROW_FORMAT % tuple(row) for row in rows]
