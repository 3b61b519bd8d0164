"""Frame sources (video / clips / frames), AVA readers, the dataset and its collate."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vmaedet.data.annotations import read_annotations, read_proposals
from vmaedet.data.ava import AVADataset, collate_clips
from vmaedet.data.layouts import (ClipsSource, FramesDirSource, VideoFileSource, write_clips_layout,
                                  write_frames_layout)
from vmaedet.data.sampling import frame_offsets
from vmaedet.data.video import decode_all, write_video
from vmaedet.errors import DataError

N, W, H = 125, 64, 48  # 5 s at 25 fps


def coded_frames(n: int = N, w: int = W, h: int = H) -> np.ndarray:
    """Frame i: left half grey (i % 16)·16 + 8, right half grey (i // 16)·16 + 8 (robust to H.264 loss)."""
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i, :, : w // 2] = (i % 16) * 16 + 8
        f[i, :, w // 2:] = (i // 16) * 16 + 8
    return f


def decode_index(frames: np.ndarray) -> list[int]:
    w = frames.shape[2]
    lo = np.round((frames[:, 4:-4, 4: w // 2 - 4].mean(axis=(1, 2, 3)) - 8) / 16)
    hi = np.round((frames[:, 4:-4, w // 2 + 4: -4].mean(axis=(1, 2, 3)) - 8) / 16)
    return [int(a + 16 * b) for a, b in zip(lo, hi)]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layouts")
    write_video(root / "videos" / "vid_a.mp4", coded_frames(), fps=25)
    write_clips_layout(root / "videos" / "vid_a.mp4", root / "clips", "vid_a")
    write_frames_layout(root / "videos" / "vid_a.mp4", root / "frames", "vid_a", fps=30)
    return root


def seed_expect(key: int, n: int, lo: int | None = None, hi: int | None = None) -> list[int]:
    """Hand rule: key + (−31 + 4k), clamped to [lo, hi] (default the video)."""
    lo = 0 if lo is None else lo
    hi = n - 1 if hi is None else hi
    return [min(max(key - 31 + 4 * k, lo), hi) for k in range(16)]


def test_offsets_hand_values():
    assert frame_offsets(25) == [-31, -27, -23, -19, -15, -11, -7, -3, 1, 5, 9, 13, 17, 21, 25, 29]
    # 30 fps "time": round(o·30/25) = round(1.2·o): −37.2 → −37, −32.4 → −32, …, 34.8 → 35
    assert frame_offsets(30, "time") == [-37, -32, -28, -23, -18, -13, -8, -4, 1, 6, 11, 16, 20, 25, 30, 35]
    assert frame_offsets(30, "frames") == frame_offsets(25)
    with pytest.raises(DataError, match="temporal rule"):
        frame_offsets(30, "nearest")


@pytest.mark.parametrize("ts", [2, 3, 0, 4])
def test_video_source_samples_seed_frames(layouts, ts):
    src = VideoFileSource(layouts / "videos")
    assert decode_index(src.clip("vid_a", ts)) == seed_expect(25 * ts, N)


def test_video_source_seek_backward_matches_full_decode_and_caches(layouts):
    ref, fps = decode_all(layouts / "videos" / "vid_a.mp4")
    assert fps == 25 and len(ref) == N
    src = VideoFileSource(layouts / "videos", cache_frames=80)
    for ts in (2, 3, 4, 2):
        got = src.clip("vid_a", ts)
        np.testing.assert_array_equal(got, ref[seed_expect(25 * ts, N)])
    r = src.reader("vid_a")
    assert len(r.cache) <= 80
    # 4 windows of 61 frames; a re-decode per call would be ≥ 4·61 = 244 frames.
    assert r.decoded < 244


def test_clips_source_concatenates_like_seed(layouts):
    assert sorted(p.name for p in (layouts / "clips" / "vid_a").iterdir()) == [f"{s}.mp4" for s in range(5)]
    src = ClipsSource(layouts / "clips")
    assert decode_index(src.clip("vid_a", 2)) == seed_expect(50, N)
    # t = 4: right side is clip 4 alone (25 frames, no 5.mp4), left = clips 3, 2 → m = 25; offsets
    # clamp to [−25, 24] around frame 100 → frames 75..124.
    assert decode_index(src.clip("vid_a", 4)) == seed_expect(100, N, lo=75, hi=124)
    with pytest.raises(DataError, match="keyframe clip not found"):
        src.clip("vid_a", 9)


def test_frames_source_time_and_frames_rules(layouts):
    d = layouts / "frames" / "vid_a"
    assert len(list(d.glob("*.jpg"))) == 150 and (d / "vid_a_000001.jpg").is_file()
    # frame j (0-based) of the 30 fps folder is the source frame nearest to time j/30; a tie (j·25/30 = k + ½,
    # e.g. j = 33) takes the earlier frame — the one tie rule of vmaedet.data.sampling (was: the later frame)
    src_of = lambda j: min(range(N), key=lambda k: (abs(Fraction(k, 25) - Fraction(j, 30)), k))  # noqa: E731
    time_src = FramesDirSource(layouts / "frames", timestamp_start=0)  # auto → "time" at 30 fps
    got = decode_index(time_src.clip("vid_a", 2))
    want = [src_of(60 + round(o * 1.2)) for o in range(-31, 30, 4)]
    assert got == want
    # the frames picked are within half a 30 fps frame (±1 source frame) of the seed's 25 fps frames
    assert max(abs(g - (50 + o)) for g, o in zip(got, range(-31, 30, 4))) <= 1
    frames_src = FramesDirSource(layouts / "frames", timestamp_start=0, temporal_rule="frames")
    assert decode_index(frames_src.clip("vid_a", 2)) == [src_of(60 + o) for o in range(-31, 30, 4)]
    # AVA convention: timestamp 902 with start 900 is 1-based frame (902 − 900)·30 + 1 = 61
    assert FramesDirSource(layouts / "frames").keyframe_index(902) + 1 == 61


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_dataset_all_sources_same_boxes(layouts, tmp_path):
    gt = _write_csv(tmp_path / "gt.csv", "vid_a,2,0.25,0.125,0.75,0.875,12,0\nvid_a,2,0.25,0.125,0.75,0.875,14,0\n"
                                         "vid_a,0003,0.5,0.5,1.0,1.0,80,1\n")
    for kind, root in (("video", "videos"), ("clips", "clips"), ("frames", "frames")):
        ds = AVADataset(layouts / root, gt, split_train=False, frame_source=kind, timestamp_start=0)
        assert ds.keys == [("vid_a", 2), ("vid_a", 3)]
        s = ds[0]
        # 64×48 → seed resize: oh = 256, ow = int(256·64/48) = 341
        assert s["size"] == (341, 256) and s["orig_size"] == (64, 48)
        assert s["clip"].shape == (3, 16, 256, 341)
        # one box (two action rows merged): the seed's pixels (16, 6, 0.75·64 − 1, 0.875·48 − 1), scaled ·341/64, ·256/48
        torch.testing.assert_close(s["boxes"], torch.tensor([[16 * 341 / 64, 6 * 256 / 48, 47 * 341 / 64, 41 * 256 / 48]]))
        assert s["labels"].shape == (1, 80) and s["labels"].sum() == 0  # test: no labels
    tr = AVADataset(layouts / "videos", gt, split_train=True, crop_size=128)
    s = tr[0]
    assert s["clip"].shape == (3, 16, 128, 128) and s["labels"][0].nonzero().flatten().tolist() == [11, 13]
    assert s["scores"].tolist() == [1.0]


def test_train_randomness_seeded_by_epoch_and_index(layouts, tmp_path):
    gt = _write_csv(tmp_path / "gt.csv", "vid_a,2,0.25,0.125,0.75,0.875,12,0\n")
    ds = AVADataset(layouts / "videos", gt, split_train=True, crop_size=160, seed=3)
    a = ds[0]["clip"]
    ds2 = AVADataset(layouts / "videos", gt, split_train=True, crop_size=160, seed=3)
    torch.testing.assert_close(ds2[0]["clip"], a, rtol=0, atol=0)
    ds2.set_epoch(1)
    assert not torch.equal(ds2[0]["clip"], a)


def test_collate_pads_to_16_and_builds_rois():
    def sample(h: int, w: int, n: int) -> dict:
        return {"clip": torch.ones(3, 16, h, w), "boxes": torch.arange(4 * n, dtype=torch.float32).reshape(n, 4),
                "labels": torch.zeros(n, 80), "scores": torch.ones(n), "video_id": "v", "timestamp": 2,
                "orig_size": (640, 360), "size": (w, h)}
    b = collate_clips([sample(256, 455, 2), sample(250, 300, 1)])
    assert b["clip"].shape == (2, 3, 16, 256, 464)  # max 455 → 464, 256 stays
    assert b["clip"][0, :, :, :, 455:].abs().sum() == 0 and b["clip"][1, :, :, 250:].abs().sum() == 0
    assert b["rois"][:, 0].tolist() == [0, 0, 1] and b["rois"][2, 1:].tolist() == [0, 1, 2, 3]
    assert b["sizes"] == [(455, 256), (300, 250)] and b["meta"][1]["timestamp"] == 2


@pytest.mark.parametrize("text, match", [
    ("vid_a,2,0.1,0.1,0.5\n", r"gt.csv:1: 5 columns"),
    ("vid_a,2,0.1,0.1,0.5,0.5,12,0\nvid_a,2,0.1,abc,0.5,0.5,12,0\n", r"gt.csv:2: y1 'abc' is not a number"),
    ("vid_a,2,0.1,0.1,0.5,0.5,12,0\n\nvid_a,2,0.6,0.1,0.5,0.5,12,0\n", r"gt.csv:3: .*inverted"),
    ("vid_a,2,0.1,0.1,1.5,0.5,12,0\n", r"gt.csv:1: .*outside \[0, 1\]"),
    ("vid_a,2,0.1,0.1,0.5,0.5,81,0\n", r"gt.csv:1: action_id 81"),
])
def test_malformed_gt_names_file_and_line(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_annotations(_write_csv(tmp_path / "gt.csv", text))


def test_unknown_and_unreadable_video(layouts, tmp_path):
    gt = _write_csv(tmp_path / "gt.csv", "vid_a,2,0.1,0.1,0.5,0.5,12,0\nnope,2,0.1,0.1,0.5,0.5,12,0\n")
    with pytest.raises(DataError, match=r"gt.csv:2 names video 'nope'"):
        AVADataset(layouts / "videos", gt, split_train=True)
    bad = tmp_path / "vids"
    bad.mkdir()
    (bad / "vid_a.mp4").write_bytes(b"not a video at all" * 10)
    ds = AVADataset(bad, _write_csv(tmp_path / "g2.csv", "vid_a,2,0.1,0.1,0.5,0.5,12,0\n"), split_train=True)
    with pytest.raises(DataError, match="cannot be opened"):
        ds[0]


def test_proposals_csv_threshold_and_coco_json(layouts, tmp_path):
    gt = _write_csv(tmp_path / "gt.csv", "vid_a,2,0.1,0.1,0.5,0.5,12,0\n")
    props = _write_csv(tmp_path / "p.csv", "vid_a,2,0.1,0.1,0.5,0.5,,0.9\nvid_a,2,0.2,0.2,0.6,0.6,,0.5\n"
                                           "vid_a,3,0.1,0.1,0.5,0.5,,0.79\n")
    ds = AVADataset(layouts / "videos", gt, split_train=False, proposals=props)
    assert ds.keys == [("vid_a", 2)] and ds.entries[("vid_a", 2)].scores == [0.9]
    with pytest.raises(DataError, match=r"p2.csv:1: 7 columns"):
        read_proposals(_write_csv(tmp_path / "p2.csv", "vid_a,2,0.1,0.1,0.5,0.5,0.9\n"))
    images = tmp_path / "images.json"
    images.write_text(json.dumps({"images": [{"id": 10002, "movie": "vid_a", "timestamp": 2, "width": 64, "height": 48}]}))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 10002, "bbox": [16, 12, 32, 24], "score": 0.95}]))
    rows = read_proposals(dets, coco_images=images)
    # xyxy = (16, 12, 16 + 32 − 1, 12 + 24 − 1) = (16, 12, 47, 35) in 64×48 px
    assert rows[0].key == ("vid_a", 2)
    # pixels (16, 12, 16 + 32 − 1, 12 + 24 − 1), stored like a CSV box: x2 as (47 + 1) / 64
    np.testing.assert_allclose(rows[0].box, (16 / 64, 12 / 48, 48 / 64, 36 / 48))
    ds = AVADataset(layouts / "videos", gt, split_train=False, proposals=dets, coco_images=images)
    s = ds[0]
    torch.testing.assert_close(s["boxes"], torch.tensor([[16 * 341 / 64, 12 * 256 / 48, 47 * 341 / 64, 35 * 256 / 48]]))
    dets.write_text(json.dumps([{"image_id": 5, "bbox": [1, 1, 2, 2], "score": 0.9}]))
    with pytest.raises(DataError, match="unknown image_id"):
        read_proposals(dets, coco_images=images)


def test_build_dataset_on_synthetic(tmp_path):
    from vmaedet.data import synthetic
    from vmaedet.data.ava import build_dataset

    synthetic.generate(tmp_path / "syn", videos=2, seconds=5, seed=1, width=160, height=120)
    tr = build_dataset(tmp_path / "syn", "train", True, crop_size=96, short_side=128)
    va = build_dataset(tmp_path / "syn", "val", False, short_side=128)
    assert len(tr) > 0 and len(va) > 0 and tr.labelmap is not None
    b = collate_clips([va[i] for i in range(len(va))])
    assert b["clip"].shape[-2:] == (128, 176)  # 160×120 → int(128·160/120) = 170 → 176
    # val keys are those with a proposal ≥ 0.8 (read independently from the CSV)
    text = (tmp_path / "syn" / "annotations" / "proposals_val.csv").read_text().split()
    want = sorted({(r.split(",")[0], int(r.split(",")[1])) for r in text if float(r.split(",")[7]) >= 0.8})
    assert va.keys == want
