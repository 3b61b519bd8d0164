"""``detect_batch``: one result per frame, equal to ``detect`` frame by frame.

SSDLite on torch (the real embedded weights) and an ONNX YOLO graph with a dynamic batch axis run
one forward for frames of different sizes; the detectors that keep state or have no batched forward
(motion, proposals, a one-image ONNX graph) loop over ``detect`` and say they are not batchable.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from vmaedet.errors import DataError
from vmaedet.persons import ssdlite
from vmaedet.persons.base import create_person_detector


def _frames() -> list[np.ndarray]:
    """Frames of three sizes with bright upright blobs on textured backgrounds (a low threshold finds boxes)."""
    rng = np.random.default_rng(0)
    out = []
    for (h, w), seed in (((120, 160), 0), ((128, 96), 1), ((240, 320), 2), ((120, 160), 3)):
        frame = rng.integers(30, 90, (h, w, 3), dtype=np.uint8)
        x = 10 + 7 * seed
        frame[h // 5: 4 * h // 5, x: x + w // 5] = (190, 140 - 20 * seed, 90)
        frame[h // 5 - h // 10: h // 5, x + w // 20: x + w // 5 - w // 20] = (220, 180, 150)  # a "head"
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def torch_detector() -> ssdlite.SSDLiteDetector:
    return create_person_detector("ssdlite", score_threshold=0.05)  # type: ignore[return-value]


def test_ssdlite_torch_batch_equals_one_by_one(torch_detector: ssdlite.SSDLiteDetector) -> None:
    frames = _frames()
    assert torch_detector.batchable
    together = torch_detector.detect_batch(frames)
    alone = [torch_detector.detect(f) for f in frames]
    assert len(together) == len(frames) and sum(len(d) for d in alone) >= 2  # boxes to compare
    for a, b, f in zip(together, alone, frames):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
        if len(a):  # boxes in each frame's own pixels
            assert a.boxes[:, 2].max() <= f.shape[1] and a.boxes[:, 3].max() <= f.shape[0]
    enc, logits = torch_detector.raw_outputs_batch(frames)  # [4, 1917, 4], [4, 1917, 2]: one forward
    assert enc.shape == (4, 1917, 4) and logits.shape == (4, 1917, 2)
    one = torch_detector.raw_outputs(frames[2])
    np.testing.assert_allclose(enc[2], one[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits[2], one[1], rtol=0, atol=1e-5)


def test_ssdlite_batch_runs_one_forward(torch_detector: ssdlite.SSDLiteDetector) -> None:
    shapes: list[tuple[int, ...]] = []
    handle = torch_detector.net.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    try:
        torch_detector.detect_batch(_frames()[:3])
    finally:
        handle.remove()
    assert shapes == [(3, 3, 300, 300)]


def test_stateful_and_unbatched_detectors_loop(tmp_path: pathlib.Path) -> None:
    frames = [np.full((48, 64, 3), 40, np.uint8) for _ in range(10)]
    for i, f in enumerate(frames[6:], 6):
        f[10:40, 4 * i: 4 * i + 12] = 220  # a blob moving in the last frames
    loop, batch = create_person_detector("motion", warmup=2), create_person_detector("motion", warmup=2)
    assert not loop.batchable
    expected = [loop.detect(f) for f in frames]
    got = batch.detect_batch(frames)  # the background model sees the frames in order, as detect() does
    assert any(len(d) for d in expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    csv = tmp_path / "p.csv"
    csv.write_text("a,0,0.1,0.1,0.5,0.9,,0.9\nb,1,0.2,0.2,0.6,0.8,,0.8\n")
    boxes = create_person_detector(f"boxes:{csv}")
    assert not boxes.batchable
    got = boxes.detect_batch(frames[:2], [0, 25], [0.0, 1.0], ["a", "b"])  # per frame: its time and its video
    for det, t, vid in zip(got, (0.0, 1.0), ("a", "b")):
        np.testing.assert_array_equal(det.boxes, boxes.detect(frames[0], timestamp=t, video_id=vid).boxes)
    assert len(got[0]) == len(got[1]) == 1 and not np.array_equal(got[0].boxes, got[1].boxes)


def test_detect_batch_refuses_bad_input(torch_detector: ssdlite.SSDLiteDetector) -> None:
    good = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(DataError, match="RGB uint8"):
        torch_detector.detect_batch([good, np.zeros((32, 32), np.uint8)])
    with pytest.raises(DataError, match="one frame index"):
        torch_detector.detect_batch([good, good], frame_indices=[0])
    assert torch_detector.detect_batch([]) == []


class _PerImage(torch.nn.Module):
    """A YOLOv8-layout graph whose person scores scale with each image's mean brightness (per batch item)."""

    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("value", torch.from_numpy(value.astype(np.float32)))  # [1, 6, N]
        mask = torch.zeros_like(self.value)
        mask[:, 4] = 1.0  # the person-score row
        self.register_buffer("mask", mask)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        brightness = image.mean(dim=(1, 2, 3)).reshape(-1, 1, 1)  # [B, 1, 1]
        return self.value * (brightness * self.mask + (1.0 - self.mask))  # [B, 6, N]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter
def test_onnx_yolo_with_a_dynamic_batch_runs_once(tmp_path: pathlib.Path) -> None:
    value = np.zeros((1, 6, 4), np.float32)
    value[0, :, 0] = [32, 32, 20, 10, 1.0, 0.0]
    value[0, :, 1] = [10, 20, 8, 8, 0.8, 0.0]
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(_PerImage(value), (torch.zeros(2, 3, 64, 64),), str(path), input_names=["images"],
                      output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}})
    det = create_person_detector(f"onnx:{path}:yolov8", score_threshold=0.5)
    assert det.batchable
    frames = [np.full((32, 64, 3), 240, np.uint8), np.full((64, 48, 3), 150, np.uint8),
              np.full((64, 128, 3), 60, np.uint8)]  # different sizes (letterboxes) and brightness (scores)
    runs: list[int] = []
    inner = det.session

    class Spy:  # the real session, counting its runs
        def run(self, names, feeds):  # type: ignore[no-untyped-def]
            runs.append(int(next(iter(feeds.values())).shape[0]))
            return inner.run(names, feeds)

    alone = [det.detect(f) for f in frames]
    det.session = Spy()
    together = det.detect_batch(frames)
    assert runs == [3]
    assert [len(d) for d in alone] != [len(alone[0])] * 3  # the frames really differ
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_yolo_of_one_image_per_call_is_not_batchable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "one.onnx"
    value = np.zeros((1, 6, 4), np.float32)
    value[0, :, 0] = [32, 32, 20, 10, 1.0, 0.0]
    torch.onnx.export(_PerImage(value), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["images"],
                      output_names=["output"], opset_version=17, dynamo=False)
    det = create_person_detector(f"onnx:{path}:yolov8", score_threshold=0.2)
    assert not det.batchable
    frames = [np.full((32, 64, 3), 240, np.uint8), np.full((64, 48, 3), 100, np.uint8)]
    for a, f in zip(det.detect_batch(frames), frames):  # one run per frame, the same results
        np.testing.assert_array_equal(a.boxes, det.detect(f).boxes)
