"""An artifact of one fixed clip geometry with sources of other sizes: their clips are resized to it.

A real onnxruntime artifact of ``vit_micro`` exported for 160×120 sources (clips 256×352) streams a
160×120 video and a portrait 96×128 video (clips 352×256) in one run: the run completes, the
portrait source is said once, its logits equal the engine on its clip resized by hand (frame by
frame, boxes scaled by the same factors), and its boxes stay in its own pixels.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vmaedet.data.video import write_video
from vmaedet.engines import create_engine
from vmaedet.export.onnx import export_onnx
from vmaedet.ops.boxes import make_rois
from vmaedet.persons.base import create_person_detector
from vmaedet.runtime.batcher import resize_clip
from vmaedet.runtime.buffer import ClipRing
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.sources import Frame
from helpers.models import micro_detector


def _frames(n: int, w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.repeat(rng.integers(20, 80, (h, w, 3), dtype=np.uint8)[None], n, axis=0)  # [n, h, w, 3]
    for i in range(n):
        x = (3 * i) % (w - 32)
        out[i, h // 4: 3 * h // 4, x: x + 24] = (200, 130, 60)  # a moving "person"
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fixed")
    art = export_onnx(micro_detector(), root / "m.onnx", source_wh=(160, 120), max_persons=4).path
    cam = write_video(root / "cam.mp4", _frames(24, 160, 120, 0))
    tall = write_video(root / "tall.mp4", _frames(24, 96, 128, 1))
    props = root / "proposals.csv"
    props.write_text("".join(f"{vid},{t},0.1,0.2,0.6,0.9,,0.9\n{vid},{t},0.4,0.05,0.95,0.7,,0.8\n"
                             for vid in ("cam", "tall") for t in (0, 1)))
    return {"artifact": art, "cam": cam, "tall": tall, "proposals": props}


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_other_sizes_are_resized_to_the_artifact_and_said_once(setup: dict[str, Path]) -> None:
    engine = create_engine("onnxruntime", setup["artifact"])
    assert engine.input_hw == (256, 352)
    warned: list[str] = []
    got = list(stream({"cam": setup["cam"], "tall": setup["tall"]}, engine, StreamConfig(),
                      person_detector=f"boxes:{setup['proposals']}", on_warning=warned.append))
    assert sorted((r.source, r.frame_index) for r in got) == [(s, k) for s in ("cam", "tall") for k in (0, 8, 16)]
    said = [w for w in warned if "resized" in w]
    assert len(said) == 1 and "tall" in said[0] and "352×256" in said[0] and "256×352" in said[0], warned

    frames = _decoded(setup["tall"])
    ring = ClipRing(capacity=len(frames), short_side=engine.short_side)
    for i, image in enumerate(frames):
        ring.push(Frame(i, i / 25.0, image, 0.0))
    boxes_file = create_person_detector(f"boxes:{setup['proposals']}")
    (h, w) = engine.input_hw
    for r in (r for r in got if r.source == "tall"):
        # boxes in the portrait source's pixels (96×128), as the detector gives them on its frames
        expected = boxes_file.detect(frames[r.frame_index], timestamp=r.timestamp, video_id="tall")
        assert r.image_wh == (96, 128) and len(r) == 2
        np.testing.assert_allclose(r.boxes, expected.boxes, rtol=0, atol=1e-5)
        # the engine on this keyframe's clip resized by hand, frame by frame, rois scaled by the same factors
        clip, _ = ring.clip(np.zeros(16), np.asarray(r.clip_frames))  # [1, 3, 16, 352, 256]
        assert clip.shape[-2:] == (352, 256)
        rois = make_rois(r.boxes, ring.resized_wh, src_wh=r.image_wh)  # [2, 5] in the 352×256 clip
        planes = [[cv2.resize(clip[0, ch, t].numpy(), (w, h), interpolation=cv2.INTER_LINEAR) for t in range(16)]
                  for ch in range(3)]  # bilinear, frame by frame and channel by channel
        resized = torch.from_numpy(np.asarray(planes, np.float32))[None]  # [1, 3, 16, 256, 352]
        scaled = rois * torch.tensor([1.0, w / 256, h / 352, w / 256, h / 352])
        logits = engine.infer(resized, scaled)  # [2, 80]
        raw = torch.sigmoid(logits).numpy() * r.person_scores[:, None]
        np.testing.assert_allclose(r.raw_scores, raw, rtol=0, atol=1e-5)


def test_resize_clip_is_bilinear_as_torch_resizes() -> None:
    gen = torch.Generator().manual_seed(0)
    clip = torch.randn((2, 3, 16, 64, 48), generator=gen)  # [B, 3, T, H, W]
    for hw in ((96, 128), (32, 40)):  # up and down
        out, _ = resize_clip(clip, torch.zeros((0, 5)), hw)
        ref = torch.stack([F.interpolate(clip[:, :, t], size=hw, mode="bilinear", align_corners=False)
                           for t in range(16)], dim=2)  # [2, 3, 16, H', W']
        torch.testing.assert_close(out, ref, atol=1e-3, rtol=0)


def test_resize_clip_keeps_boxes_on_the_people() -> None:
    clip = torch.zeros(2, 3, 4, 64, 48)  # [B, 3, T, H, W]
    clip[0, :, :, 10:30, 8:20] = 1.0  # a "person" in clip 0
    clip[1, :, :, 40:60, 30:44] = 1.0  # and one in clip 1
    rois = torch.tensor([[0, 8, 10, 20, 30], [1, 30, 40, 44, 60]], dtype=torch.float32)  # [2, 5] on them
    out, scaled = resize_clip(clip, rois, (96, 128))
    assert out.shape == (2, 3, 4, 96, 128)
    torch.testing.assert_close(scaled[:, 0], rois[:, 0])  # batch indices untouched
    for b, (_, x1, y1, x2, y2) in enumerate(scaled.round().long().tolist()):
        inside = out[b, :, :, y1 + 2:y2 - 2, x1 + 2:x2 - 2]
        assert inside.min() > 0.99  # the scaled box lies on the resized person
        assert float(out[b].sum()) == pytest.approx((x2 - x1) * (y2 - y1) * 3 * 4, rel=0.1)  # and covers all of it
