"""Synthetic data, part 3: the dataset files — annotation rows, label map, options, the staged output folder.

:func:`vmaedet.data.synthetic.generate` renders the videos and uses these to write the rest: a hidden
staging folder inside the output is filled, then moved into place (:func:`_commit`), so a failure
leaves no partial dataset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vmaedet.data.synthetic.scene import _LABEL_TYPES, ACTION_IDS, MIN_SECONDS, VideoScript
from vmaedet.constants import SEED_FPS
from vmaedet.errors import DataError
from vmaedet.labels import action_name

def _fmt(v: float) -> str:
    return f"{v:.3f}"


@dataclass
class _Rows:
    gt: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def _annotation_rows(script: VideoScript, boxes: dict[int, np.ndarray], rng: np.random.Generator,
                     hist: Counter[int]) -> tuple[_Rows, int]:
    """GT, proposal and exclusion rows of a video; returns them and the number of GT boxes."""
    rows, n_boxes = _Rows(), 0
    w, h, vid = script.width, script.height, script.video_id
    scale = np.array([w, h, w, h], dtype=np.float64)
    for t in script.keyframe_seconds:
        f = int(round(t * script.fps))
        labels = script.labels_at(t)
        for pid in sorted(labels):
            box = boxes[pid][f] / scale  # [4] normalised
            coords = ",".join(_fmt(v) for v in box)
            n_boxes += 1
            for a in sorted(labels[pid]):
                rows.gt.append(f"{vid},{t},{coords},{a},{pid}")
                hist[a] += 1
            if rng.random() < 0.05:  # a missed detection
                continue
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            jit = np.clip(box + rng.normal(0, 0.03, 4) * size, 0, 1)
            jit = np.concatenate([np.minimum(jit[:2], jit[2:] - 1e-3), np.maximum(jit[2:], jit[:2] + 1e-3)])
            rows.proposals.append(f"{vid},{t},{','.join(_fmt(v) for v in np.clip(jit, 0, 1))},,"
                                  f"{rng.uniform(0.8, 1.0):.4f}")
        for _ in range(int(rng.random() < 0.2) + int(rng.random() < 0.05)):  # false positives
            cx, cy = rng.uniform(0.1, 0.9, 2)
            bw, bh = rng.uniform(0.05, 0.3), rng.uniform(0.15, 0.6)
            fp = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, 1)
            rows.proposals.append(f"{vid},{t},{','.join(_fmt(v) for v in fp)},,{rng.uniform(0.3, 0.85):.4f}")
        if rng.random() < 0.03:
            rows.excluded.append(f"{vid},{t}")
    return rows, n_boxes


def labelmap_text(action_ids: tuple[int, ...] = ACTION_IDS) -> str:
    """The AVA v2.2 label map (``label { name: … label_id: … label_type: … }``) for ``action_ids``."""
    return "".join(f'label {{ name: "{action_name(a)}" label_id: {a} label_type: {_LABEL_TYPES[a]} }}\n'
                   for a in action_ids)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote, with the measured generation speed."""

    out_dir: Path
    videos: int
    train_videos: tuple[str, ...]
    val_videos: tuple[str, ...]
    keyframes: int
    boxes: int
    rows: int
    class_histogram: dict[int, int]
    video_seconds: float
    cpu_seconds: float
    wall_seconds: float

    @property
    def throughput(self) -> float:
        """Video seconds generated per CPU second (rendering + H.264 encoding + CSVs)."""
        return self.video_seconds / max(self.cpu_seconds, 1e-9)


def _check_int(name: str, value: object, lo: int, hi: int, fix: str) -> int:
    """``value`` as an int in ``[lo, hi]``, else a :class:`DataError` naming the option."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi
    if not ok:
        raise DataError(f"invalid synthetic data option {name}", received=value,
                        expected=f"an integer in [{lo}, {hi}]", fix=fix)
    return int(value)


def _opt(names: Mapping[str, str] | None, param: str) -> str:
    """How messages name option ``param``: the caller's name for it (the CLI's flag) or the parameter."""
    return (names or {}).get(param, param)


def _set(names: Mapping[str, str] | None, param: str, value: str | None = None) -> str:
    """How messages say "set ``param`` to ``value``": ``--flag value`` / ``--switch`` when the caller names
    its flags in ``names``, else ``param=value`` (a switch: ``param=True``)."""
    if names and param in names:
        return names[param] if value is None else f"{names[param]} {value}"
    return f"{param}={'True' if value is None else value}"


def _validate(videos: object, seconds: object, width: object, height: object, fps: object,
              max_persons: object, val_fraction: object, names: Mapping[str, str] | None = None) -> None:
    """Refuse a bad option of :func:`generate` (:class:`DataError` naming it as ``names`` says)."""
    _check_int("videos", videos, 1, 100_000, f"pass {_set(names, 'videos', '1')} or more")
    _check_int("seconds", seconds, MIN_SECONDS, 3600,
               f"pass {_set(names, 'seconds', str(MIN_SECONDS))} or more: keyframes are t = 2 .. S-2 and the clip "
               "window (about ±1.2 s) around each must lie inside the video")
    for name, v in (("width", width), ("height", height)):
        _check_int(name, v, 64, 4096, f"pass an even {_opt(names, name)} between 64 and 4096")
        if int(v) % 2:  # type: ignore[call-overload]
            raise DataError(f"{name} must be even for H.264 yuv420p", received=v, expected="an even integer",
                            fix=f"pass {_set(names, name, str(int(v) + 1))}")  # type: ignore[call-overload]
    _check_int("fps", fps, 1, 240, f"pass {_set(names, 'fps', str(SEED_FPS))} (the AVA convention)")
    _check_int("max_persons", max_persons, 1, 8, f"pass {_opt(names, 'max_persons')} between 1 and 8")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
        raise DataError("invalid val fraction", received=val_fraction, expected="a number in [0, 1)",
                        fix=f"pass {_set(names, 'val_fraction', '0.2')}")


_OUTPUTS = ("meta.json", "videos", "annotations")
_STAGING_PREFIX = ".vmaedet-synth-"


def _prepare_out(out: Path, overwrite: bool, names: Mapping[str, str] | None = None) -> bool:
    """Check ``out`` (refuse a non-empty one unless ``overwrite``) and create it; True when it was created."""
    if out.exists() and not out.is_dir():
        raise DataError("the output path is a file, not a directory", received=str(out),
                        expected="a new or empty directory", fix="choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("the output directory is not empty; refusing to overwrite it", received=str(out),
                        expected="a new or empty directory",
                        fix=f"choose another output folder or pass {_set(names, 'overwrite')} (replaces "
                            "meta.json, videos/, annotations/ and nothing else)")
    from vmaedet.safeio import output_error

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc, what="the dataset folder") from exc
    return created


def _commit(staging: Path, out: Path) -> None:
    """Move the staged ``meta.json``, ``videos/``, ``annotations/`` into ``out``, replacing old ones.

    Old outputs are first renamed aside (cheap, same folder), then the new ones renamed in, then the
    old ones deleted; a failure in between puts the old ones back.
    """
    trash = staging / ".old"
    trash.mkdir()
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in _OUTPUTS:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, trash / name)
                moved.append(name)
        for name in _OUTPUTS:
            os.replace(staging / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            with contextlib.suppress(OSError):
                os.replace(out / name, staging / name)
        for name in moved:
            with contextlib.suppress(OSError):
                os.replace(trash / name, out / name)
        raise


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")



def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _cleanup(staging: Path, out: Path, created: bool) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty: nothing of ours is left

