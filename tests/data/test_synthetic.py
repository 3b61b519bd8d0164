"""Synthetic AVA-format data: layout and CSV formats, boxes against pixels, motion, determinism, speed."""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vmaedet.cli.main import main
from vmaedet.data.synthetic import (
    FORMAT, PersonScript, Segment, VideoScript, generate, make_video_script, render_video,
)
from vmaedet.errors import DataError
from vmaedet.labels import AVA_ACTIONS

SEED, VIDEOS, SECONDS, MAX_PERSONS = 7, 3, 8, 4
W, H, FPS = 320, 240, 25
POSE_IDS = {12, 14, 10, 7, 11, 1, 5}          # stand, walk, run/jog, jump/leap, sit, bend/bow, fall down
EXTRA_IDS = {69, 67}                            # hand wave, hand clap


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, videos=VIDEOS, seconds=SECONDS, seed=SEED, max_persons=MAX_PERSONS)
    return out


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _gt(root: Path) -> dict[str, list[list[str]]]:
    return {s: _read_csv(root / "annotations" / f"{s}.csv") for s in ("train", "val")}


def _decode(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, stream


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------------------------------ layout


def test_meta_and_layout(dataset: Path) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["format"] == FORMAT == "vmaedet-synth-2"
    assert (meta["fps"], meta["width"], meta["height"], meta["seed"]) == (FPS, W, H, SEED)
    assert list(meta["videos"]) == [f"synth_{i:03d}" for i in range(VIDEOS)]
    splits = [v["split"] for v in meta["videos"].values()]
    assert splits[0] == "train" and splits[-1] == "val" and splits == sorted(splits)  # train first, then val
    for vid, v in meta["videos"].items():
        assert v["seconds"] == SECONDS and v["frames"] == FPS * SECONDS
        assert (dataset / "videos" / f"{vid}.mp4").stat().st_size > 0
    assert set(meta["action_ids"]) == POSE_IDS | EXTRA_IDS
    for name in ("train.csv", "val.csv", "labelmap.pbtxt", "proposals_train.csv", "proposals_val.csv",
                 "excluded_train.csv", "excluded_val.csv"):
        assert (dataset / "annotations" / name).is_file(), name


def test_labelmap(dataset: Path) -> None:
    text = (dataset / "annotations" / "labelmap.pbtxt").read_text()
    pat = re.compile(r'label \{ name: "([^"]+)" label_id: (\d+) label_type: ([A-Z_]+) \}')
    lines = text.strip().splitlines()
    entries = [pat.fullmatch(line) for line in lines]
    assert all(entries), lines
    ids = {int(m.group(2)) for m in entries}
    assert ids == set(json.loads((dataset / "meta.json").read_text())["action_ids"])
    for m in entries:
        i = int(m.group(2))
        assert m.group(1) == AVA_ACTIONS[i - 1]
        # AVA v2.2 groups: ids 1-14 person movement, 64-80 person interaction.
        assert m.group(3) == ("PERSON_MOVEMENT" if i <= 14 else "PERSON_INTERACTION")


def test_ground_truth_rows(dataset: Path) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    for split, rows in _gt(dataset).items():
        assert rows, split
        per_key: dict[tuple[str, int, int], list[int]] = {}
        box_of: dict[tuple[str, int, int], tuple[str, ...]] = {}
        for r in rows:
            assert len(r) == 8, r
            vid, t, pid = r[0], int(r[1]), int(r[7])
            assert meta["videos"][vid]["split"] == split
            assert 2 <= t <= SECONDS - 2
            x1, y1, x2, y2 = (float(v) for v in r[2:6])
            assert all(re.fullmatch(r"\d\.\d{3}", v) for v in r[2:6]), r
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, r
            per_key.setdefault((vid, t, pid), []).append(int(r[6]))
            assert box_of.setdefault((vid, t, pid), tuple(r[2:6])) == tuple(r[2:6])  # one box per person
        for key, actions in per_key.items():
            assert len([a for a in actions if a in POSE_IDS]) == 1, (key, actions)
            assert len([a for a in actions if a in EXTRA_IDS]) <= 1, (key, actions)
            assert set(actions) <= POSE_IDS | EXTRA_IDS
        # Every keyframe 2..S-2 of every video of the split is annotated, with the same persons.
        for vid in (v for v, m in meta["videos"].items() if m["split"] == split):
            persons = [sorted(p for (v, t, p) in per_key if v == vid and t == tt) for tt in range(2, SECONDS - 1)]
            assert persons[0] and all(p == persons[0] for p in persons), (vid, persons)
            assert 1 <= len(persons[0]) <= MAX_PERSONS


def test_actions_persist_for_seconds(dataset: Path) -> None:
    """Pose segments last >= 2 s: inside a person's keyframe sequence every run of a label is >= 2 long."""
    rows = [r for rows in _gt(dataset).values() for r in rows]
    seqs: dict[tuple[str, int], dict[int, int]] = {}
    for r in rows:
        if int(r[6]) in POSE_IDS:
            seqs.setdefault((r[0], int(r[7])), {})[int(r[1])] = int(r[6])
    for key, seq in seqs.items():
        labels = [seq[t] for t in sorted(seq)]
        runs = [1]
        for a, b in zip(labels, labels[1:]):
            runs[-1:] = [runs[-1] + 1] if a == b else [runs[-1], 1]
        assert all(n >= 2 for n in runs[1:-1]), (key, labels)


def test_proposals_and_exclusions(dataset: Path) -> None:
    gt_boxes: dict[tuple[str, int], list[np.ndarray]] = {}
    for rows in _gt(dataset).values():
        for r in rows:
            box = np.array([float(v) for v in r[2:6]])
            boxes = gt_boxes.setdefault((r[0], int(r[1])), [])
            if not any(np.array_equal(box, b) for b in boxes):
                boxes.append(box)
    proposals = []
    for split in ("train", "val"):
        for r in _read_csv(dataset / "annotations" / f"proposals_{split}.csv"):
            assert len(r) == 8 and r[6] == "", r
            box = np.array([float(v) for v in r[2:6]])
            assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1, r
            assert 2 <= int(r[1]) <= SECONDS - 2
            proposals.append(((r[0], int(r[1])), box, float(r[7])))
        for r in _read_csv(dataset / "annotations" / f"excluded_{split}.csv"):
            assert len(r) == 2 and 2 <= int(r[1]) <= SECONDS - 2, r
    matched_gt = 0
    n_gt = sum(len(b) for b in gt_boxes.values())
    for key, boxes in gt_boxes.items():
        for g in boxes:
            ious = [(_iou(g, p), s) for k, p, s in proposals if k == key]
            best = max(ious, default=(0.0, 0.0))
            if best[0] > 0.6:
                matched_gt += 1
                assert 0.8 <= best[1] < 1.0
    assert 0.8 * n_gt <= matched_gt <= n_gt  # ~5 % misses
    for key, p, s in proposals:
        if max((_iou(p, g) for g in gt_boxes[key]), default=0.0) < 0.3:  # a false positive
            assert 0.3 <= s < 0.85


# ------------------------------------------------------------------------------------------ videos


def test_videos_decode_with_fps_and_frame_count(dataset: Path) -> None:
    for i in range(VIDEOS):
        frames, stream = _decode(dataset / "videos" / f"synth_{i:03d}.mp4")
        assert len(frames) == FPS * SECONDS
        assert stream.average_rate == FPS
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert frames[0].shape == (H, W, 3)


def test_decoded_frames_are_the_rendered_frames(dataset: Path) -> None:
    """Decoded frame i is closest to rendered frame i (no off-by-one between labels and pixels)."""
    script = make_video_script(SEED, 0, seconds=SECONDS, max_persons=MAX_PERSONS)
    rendered = list(render_video(script).frames)
    decoded, _ = _decode(dataset / "videos" / "synth_000.mp4")
    for f in (50, 75, 100):
        err = [np.abs(decoded[f].astype(np.float64) - rendered[g]).mean() for g in (f - 1, f, f + 1)]
        assert err[1] < min(err[0], err[2]) and err[1] < 8.0, err


def test_boxes_contain_figure_pixels_in_decoded_video(dataset: Path) -> None:
    """Every pixel that differs from the figure-free background lies inside a GT box (± 3 px)."""
    rows = [r for rows in _gt(dataset).values() for r in rows]
    for i in range(VIDEOS):
        script = make_video_script(SEED, i, seconds=SECONDS, max_persons=MAX_PERSONS)
        background = list(render_video(replace(script, persons=())).frames)
        decoded, _ = _decode(dataset / "videos" / f"{script.video_id}.mp4")
        for t in range(2, SECONDS - 1):
            f = round(t * FPS)
            luma = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.int64) for x in (decoded[f], background[f])]
            mask = np.abs(luma[0] - luma[1]) > 30  # [H, W] figure pixels (luma avoids 4:2:0 chroma ringing)
            inside = np.zeros_like(mask)
            for r in rows:
                if r[0] == script.video_id and int(r[1]) == t:
                    x1, y1, x2, y2 = (float(v) for v in r[2:6])
                    inside[max(0, math.floor(y1 * H) - 3):math.ceil(y2 * H) + 3,
                           max(0, math.floor(x1 * W) - 3):math.ceil(x2 * W) + 3] = True
            assert mask.sum() > 100, (script.video_id, t)
            assert not (mask & ~inside).any(), (script.video_id, t, int((mask & ~inside).sum()))


def test_figures_keep_to_their_lanes() -> None:
    """Figures walk in disjoint vertical strips (few overlaps), and a runner turns at its lane's edges
    rather than crossing the frame, so it stays near its keyframe box over a clip window."""
    from vmaedet.data.synthetic.scene import _timeline, _trajectory

    def positions(p: PersonScript, script: VideoScript) -> np.ndarray:
        t = np.arange(script.frames) / script.fps
        return _trajectory(p, t, _timeline(p, t)[1], script.width)[0]  # [N] x of the figure's pivot foot

    seen_multi = False
    for i in range(6):
        script = make_video_script(SEED, i, seconds=SECONDS, max_persons=4)
        lanes = sorted(p.lane for p in script.persons)
        assert lanes[0][0] == 0.0 and lanes[-1][1] == W
        assert all(a[1] == b[0] for a, b in zip(lanes, lanes[1:]))  # disjoint, covering the width
        seen_multi |= len(lanes) > 1
        for p in script.persons:
            x = positions(p, script)
            lo = max(p.lane[0], 0.25 * p.height_px) - 1e-6
            hi = min(p.lane[1], W - 0.25 * p.height_px) + 1e-6
            if lo <= hi:
                assert lo <= x.min() and x.max() <= hi, (i, p.person_id, p.lane, x.min(), x.max())
    assert seen_multi
    runner = replace(_one_person(10, seconds=8, x0=100.0, height_px=100.0).persons[0], lane=(60.0, 140.0))
    x = positions(runner, replace(_one_person(10, seconds=8), persons=(runner,)))
    assert 60.0 <= x.min() and x.max() <= 140.0 and np.ptp(x) > 40.0  # it runs, and turns inside its lane


def _one_person(pose: int, extra: int | None = None, *, seconds: int = 6, x0: float = 160.0,
                height_px: float = 150.0) -> VideoScript:
    person = PersonScript(person_id=0, height_px=height_px, ground_y=225.0, x0=x0, facing=1,
                          color=(20, 20, 230), thickness=6, phase=0.3,
                          segments=(Segment(0.0, float(seconds), pose, extra),))
    return VideoScript("probe", W, H, FPS, seconds, render_seed=123, palette=((200, 200, 90),) * 3,
                       persons=(person,))


def _masks(script: VideoScript, *, steady: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact figure masks ``[N, H, W]`` (rendered vs figure-free) and the rendered boxes ``[N, 4]``.

    ``steady`` shifts each mask back by the camera shake, so that only the figure's own motion remains.
    """
    rendered = render_video(script)
    frames = np.stack(list(rendered.frames)).astype(np.int16)  # [N, H, W, 3]
    bg = np.stack(list(render_video(replace(script, persons=())).frames)).astype(np.int16)
    masks = (frames != bg).any(-1)  # [N, H, W]
    if steady:
        masks = np.stack([np.roll(m, (-int(dy), -int(dx)), axis=(0, 1)) for m, (dx, dy) in zip(masks, rendered.shake)])
    return masks, rendered.boxes[0]


@pytest.mark.parametrize("pose", sorted(POSE_IDS))
def test_boxes_are_tight_in_memory(pose: int) -> None:
    masks, boxes = _masks(_one_person(pose, seconds=5))
    for f in range(0, masks.shape[0], 7):
        ys, xs = np.nonzero(masks[f])
        drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)  # pixel edges
        assert np.all(np.abs(boxes[f] - drawn) <= 2.0), (pose, f, boxes[f], drawn)


def _centroid_speed(masks: np.ndarray) -> float:
    ys, xs = np.mgrid[:H, :W]
    area = masks.sum((1, 2))
    c = np.stack([(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], 1)  # [N, 2]
    return float(np.linalg.norm(np.diff(c, axis=0), axis=1).mean())


def _pixel_flux(masks: np.ndarray) -> float:
    return float((masks[1:] ^ masks[:-1]).sum((1, 2)).mean())


def test_motion_statistics_differ_between_actions() -> None:
    """From rendered pixels: centroid speed run > walk > stand; limbs move more in walk than stand;
    jumping moves the figure vertically, bending and falling change its box shape."""
    stats = {}
    for pose in (12, 14, 10, 7, 1, 5):
        masks, boxes = _masks(_one_person(pose, seconds=5, x0=60.0, height_px=110.0), steady=True)
        ys = np.array([np.nonzero(m)[0].max() for m in masks])  # lowest drawn pixel per frame
        aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
        stats[pose] = dict(speed=_centroid_speed(masks), flux=_pixel_flux(masks), feet=np.ptp(ys),
                           aspect=np.ptp(aspect))
    print({k: {n: round(float(v), 2) for n, v in s.items()} for k, s in stats.items()})
    stand, walk, run = stats[12], stats[14], stats[10]
    assert run["speed"] > 1.5 * walk["speed"] > 1.5 * 2 * stand["speed"]
    assert walk["flux"] > 3 * stand["flux"]
    assert stats[7]["feet"] > 20 > stand["feet"] + 5           # the feet leave the ground when jumping
    assert stats[1]["aspect"] > 0.3 > stand["aspect"] + 0.1     # bowing changes the box shape
    assert stats[5]["aspect"] > 1.0                              # falling: upright -> lying


def test_extra_actions_move_the_arms() -> None:
    stand = _pixel_flux(_masks(_one_person(12, seconds=5), steady=True)[0])
    for extra in (69, 67):
        assert _pixel_flux(_masks(_one_person(12, extra, seconds=5), steady=True)[0]) > 3 * stand, extra


# ------------------------------------------------------------------------------------------ runs


def test_same_seed_same_bytes_and_pixels(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        generate(out, videos=2, seconds=5, seed=seed, max_persons=2)
    for name in ("train.csv", "val.csv", "proposals_train.csv", "proposals_val.csv", "excluded_train.csv"):
        assert (a / "annotations" / name).read_bytes() == (b / "annotations" / name).read_bytes(), name
    assert (a / "meta.json").read_text() == (b / "meta.json").read_text()
    fa, _ = _decode(a / "videos" / "synth_001.mp4")
    fb, _ = _decode(b / "videos" / "synth_001.mp4")
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    assert (a / "annotations" / "train.csv").read_bytes() != (c / "annotations" / "train.csv").read_bytes()


def test_throughput(tmp_path: Path) -> None:
    """At least 5 video-seconds per CPU-second at 320x240 including H.264 (target 10; loose for a busy machine)."""
    cpu0 = time.process_time()
    summary = generate(tmp_path / "speed", videos=2, seconds=10, seed=0)
    cpu = time.process_time() - cpu0
    speed = 20.0 / cpu
    print(f"synthetic throughput: {speed:.1f} video-s per CPU-s ({cpu:.2f} CPU-s for 20 video-s at 320x240)")
    assert speed >= 5.0
    assert summary.video_seconds == 20.0 and summary.throughput > 0


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="overwrite=True") as info:  # the library names its parameter
        generate(out, videos=1, seconds=5)
    assert "--" not in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main(["synth", str(out), "--videos", "1", "--seconds", "5"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", str(out), "--videos", "1", "--seconds", "5", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "vmaedet data check" in printed and "video-s per CPU-s" in printed
    assert (out / "keep.txt").read_text() == "mine" and (out / "videos" / "synth_000.mp4").is_file()
    # One video: all of it is train; the val files exist and are empty.
    assert json.loads((out / "meta.json").read_text())["videos"]["synth_000"]["split"] == "train"
    assert (out / "annotations" / "val.csv").read_text() == ""


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"videos": -1}, "videos"),
    ({"videos": 0}, "videos"),
    ({"seconds": 4}, "seconds"),
    ({"seconds": 2.5}, "seconds"),
    ({"width": 321}, "width"),
    ({"max_persons": 0}, "max_persons"),
    ({"val_fraction": 1.0}, "val fraction"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], word: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(DataError, match=word) as info:
        generate(out, **kwargs)  # type: ignore[arg-type]
    assert "fix:" in str(info.value) and "received:" in str(info.value)
    assert not out.exists()


def test_cli_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "x"), "--videos", "-2"]) == 2
    assert "videos" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--seconds", "3"]) == 2
    assert "--seconds 5 or more" in capsys.readouterr().err
