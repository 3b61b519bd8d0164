"""Synthetic AVA-format data: articulated stick figures whose actions are visible in motion.

Every video is a procedurally rendered scene: a background made of a gradient, smooth texture and
rectangles, per-frame sensor noise, a small global camera shake, and one to ``max_persons`` stick
figures of different sizes and colours.  Each figure performs a sequence of *pose* actions (AVA
person-movement ids, exactly one at a time) in segments of 2–5 s, sometimes with one extra
object-free action (hand wave, hand clap).  Figure colour and size are drawn per figure, never per
action, so an action can only be recognised from the motion and pose of the figure.

Outputs follow the shared dataset layout (``meta.json``, ``videos/<vid>.mp4`` in H.264,
``annotations/{train,val}.csv``, ``labelmap.pbtxt``, ``proposals_*.csv``, ``excluded_*.csv``).

Modules: :mod:`.scene` (actions as motion, scripts, kinematics), :mod:`.render` (frames and the
H.264 encoding), :mod:`.write` (annotation rows, label map, the staged output folder); this package
holds the entry point :func:`generate` and re-exports the public names.

Randomness: a video's script (figures, action segments) and its rendering (background, noise,
shake) are drawn from generators seeded by ``(seed, video index)``, so a seed gives the same CSV
bytes and the same pixels.  Rendering does not depend on the figures, so the same script without
figures renders the exact background a test needs to find the figure pixels.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from vmaedet.constants import SEED_FPS
from vmaedet.data.synthetic.render import RenderedVideo, encode_mp4, render_video
from vmaedet.data.synthetic.scene import (ACTION_IDS, EXTRA_ACTIONS, FORMAT, MIN_SECONDS, POSE_ACTIONS, PersonScript,
                                          Segment, VideoScript, action_params, make_video_script)
from vmaedet.data.synthetic.write import (_STAGING_PREFIX, SynthSummary, _annotation_rows, _cleanup, _commit,
                                          _is_under, _prepare_out, _Rows, _validate, _write_lines, labelmap_text)


def generate(
    out_dir: str | Path, *, videos: int = 8, seconds: int = 12, seed: int = 0, width: int = 320,
    height: int = 240, fps: int = SEED_FPS, max_persons: int = 4, val_fraction: float = 0.2,
    overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
    option_names: Mapping[str, str] | None = None,
) -> SynthSummary:
    """Write a synthetic AVA-format dataset to ``out_dir`` and return a summary.

    Everything is written to a hidden staging folder inside ``out_dir`` first and moved into place
    only when complete: a failure (no space left, a read-only folder, Ctrl-C) leaves no partial
    dataset and, with ``overwrite``, the previous one intact.

    Args:
        out_dir: dataset root (created; must be empty unless ``overwrite``).
        videos: number of videos; the first ~(1 - val_fraction) are "train", the rest "val"
            (at least one val video when ``videos >= 2`` and ``val_fraction > 0``).
        seconds: length of each video (integer, >= 5); keyframes are ``2 .. seconds - 2``.
        seed: seed of everything (same seed: same CSV bytes and the same pixels).
        width, height, fps: video geometry (even sizes for yuv420p).
        max_persons: at most this many figures per video (1..8).
        val_fraction: fraction of videos in the val split.
        overwrite: replace ``meta.json``, ``videos/`` and ``annotations/`` of a non-empty ``out_dir``.
        progress: called as ``progress(done, total)`` after each video.
        option_names: how error messages name the options, ``{parameter: name}`` (the CLI passes its
            flags, e.g. ``{"seconds": "--seconds", "overwrite": "--overwrite"}``); by default the
            parameters themselves ("pass seconds=5 or more").

    Raises:
        DataError: a bad option, or a non-empty ``out_dir`` without ``overwrite``.
        OutputError: the dataset cannot be written (names the file and the cause in words).
    """
    from vmaedet.errors import OutputError
    from vmaedet.safeio import find_os_error, output_error

    _validate(videos, seconds, width, height, fps, max_persons, val_fraction, option_names)
    out = Path(out_dir)
    created = _prepare_out(out, overwrite, option_names)
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise output_error(out, exc, what="the dataset folder") from exc
    current = staging
    try:
        (staging / "videos").mkdir()
        (staging / "annotations").mkdir()
        summary = _generate_into(staging, out, videos=videos, seconds=seconds, seed=seed, width=width,
                                 height=height, fps=fps, max_persons=max_persons, val_fraction=val_fraction,
                                 progress=progress)
        current = out
        _commit(staging, out)
    except BaseException as exc:
        if isinstance(exc, Exception) and not isinstance(exc, OutputError) and find_os_error(exc) is not None:
            os_exc = find_os_error(exc)
            name = getattr(os_exc, "filename", None)
            target = out / Path(name).relative_to(staging) if name and _is_under(Path(name), staging) else current
            err = output_error(target, exc, what="the synthetic dataset file")
            _cleanup(staging, out, created)
            raise err from exc
        _cleanup(staging, out, created)
        raise
    _cleanup(staging, out, False)
    return summary



def _generate_into(stage: Path, out: Path, *, videos: int, seconds: int, seed: int, width: int, height: int,
                   fps: int, max_persons: int, val_fraction: float,
                   progress: Callable[[int, int], None] | None) -> SynthSummary:
    """Render, encode and write the dataset into ``stage``; the summary names ``out``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n_val = max(1, int(round(videos * val_fraction))) if videos >= 2 and val_fraction > 0 else 0
    n_train = videos - n_val
    rows = {"train": _Rows(), "val": _Rows()}
    hist: Counter[int] = Counter()
    meta_videos, n_boxes, n_key = {}, 0, 0
    for i in range(videos):
        script = make_video_script(seed, i, width=width, height=height, fps=fps, seconds=seconds,
                                   max_persons=max_persons)
        rendered = render_video(script)
        n = encode_mp4(rendered.frames, stage / "videos" / f"{script.video_id}.mp4", width, height, fps)
        split = "train" if i < n_train else "val"
        ann_rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        r, nb = _annotation_rows(script, rendered.boxes, ann_rng, hist)
        for attr in ("gt", "proposals", "excluded"):
            getattr(rows[split], attr).extend(getattr(r, attr))
        n_boxes += nb
        n_key += len(script.keyframe_seconds)
        meta_videos[script.video_id] = {"split": split, "seconds": seconds, "frames": n}
        if progress is not None:
            progress(i + 1, videos)
    ann = stage / "annotations"
    for split, r in rows.items():
        _write_lines(ann / f"{split}.csv", r.gt)
        _write_lines(ann / f"proposals_{split}.csv", r.proposals)
        _write_lines(ann / f"excluded_{split}.csv", r.excluded)
    (ann / "labelmap.pbtxt").write_text(labelmap_text(), encoding="utf-8")
    meta = {"format": FORMAT, "fps": fps, "width": width, "height": height, "seed": seed,
            "videos": meta_videos, "action_ids": list(ACTION_IDS)}
    (stage / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    vids = list(meta_videos)
    return SynthSummary(
        out_dir=out, videos=videos, train_videos=tuple(vids[:n_train]), val_videos=tuple(vids[n_train:]),
        keyframes=n_key, boxes=n_boxes, rows=sum(len(r.gt) for r in rows.values()),
        class_histogram={a: hist.get(a, 0) for a in ACTION_IDS}, video_seconds=float(videos * seconds),
        cpu_seconds=time.process_time() - cpu0, wall_seconds=time.perf_counter() - wall0,
    )


__all__ = [
    "ACTION_IDS", "EXTRA_ACTIONS", "FORMAT", "MIN_SECONDS", "POSE_ACTIONS", "PersonScript", "RenderedVideo", "Segment", "SynthSummary",
    "VideoScript", "action_params", "encode_mp4", "generate", "labelmap_text", "make_video_script",
    "render_video",
]
