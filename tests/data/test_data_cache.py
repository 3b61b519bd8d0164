"""The decoded-clip cache of AVADataset: same samples as the uncached path, one decode per keyframe."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vmaedet.data.ava import AVADataset, build_dataset
from vmaedet.data.synthetic import generate
from vmaedet.data.layouts import VideoFileSource


class CountingSource(VideoFileSource):
    """A real PyAV video source that counts the clips it is asked to decode."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: Counter[tuple[str, int]] = Counter()

    def clip(self, video_id: str, timestamp: int) -> np.ndarray:
        self.calls[(video_id, timestamp)] += 1
        return super().clip(video_id, timestamp)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache") / "data"
    generate(root, videos=3, seconds=7, seed=4)
    return root


def _same(a: dict, b: dict) -> None:
    assert torch.equal(a["clip"], b["clip"])
    assert torch.equal(a["boxes"], b["boxes"])
    assert torch.equal(a["labels"], b["labels"])
    assert torch.equal(a["scores"], b["scores"])
    for k in ("video_id", "timestamp", "orig_size", "size"):
        assert a[k] == b[k]


@pytest.mark.parametrize("train", [True, False])
def test_cache_gives_identical_samples(synth: Path, train: bool) -> None:
    kw = {"short_side": 128, "crop_size": 112, "seed": 7}
    plain = build_dataset(synth, "train", train=train, **kw)
    cached = build_dataset(synth, "train", train=train, cache=True, **kw)
    assert len(plain) == len(cached) >= 4
    for epoch in (0, 1, 0):  # epoch 0 again: served from the cache, must match the first pass
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            _same(plain[i], cached[i])


def test_cache_decodes_each_keyframe_once_and_keeps_augmenting(synth: Path) -> None:
    base = build_dataset(synth, "train", train=True)
    src = CountingSource(synth / "videos")
    ds = AVADataset(src, synth / "annotations" / "train.csv", split_train=True, timestamp_start=0,
                    short_side=128, crop_size=112, cache=True)
    ds[0]
    first_video = {k for k in base.keys if k[0] == ds.keys[0][0]}
    # A miss decodes the keyframes of the whole video (in time order), not those of other videos.
    assert first_video < set(base.keys) and set(src.calls) == first_video
    clips = {}
    for epoch in range(3):
        ds.set_epoch(epoch)
        clips[epoch] = [ds[i]["clip"] for i in range(len(ds))]
    assert set(src.calls) == set(base.keys)
    assert set(src.calls.values()) == {1}
    # Augmentation still changes with the epoch (crop/jitter/flip are redrawn, not cached).
    assert any(not torch.equal(a, b) for a, b in zip(clips[0], clips[1]))
    # Memory: 16 frames of the seed-resized 320×240 source (short side 128 → 170×128) per keyframe.
    assert ds.cache_bytes == len(ds) * 16 * 128 * int(128 * 320 / 240) * 3


def test_no_cache_keeps_nothing(synth: Path) -> None:
    src = CountingSource(synth / "videos")
    ds = AVADataset(src, synth / "annotations" / "train.csv", split_train=True, timestamp_start=0,
                    short_side=128, crop_size=112)
    for _ in range(2):
        ds[0]
    assert src.calls[ds.keys[0]] == 2
    assert ds.cache_bytes == 0
