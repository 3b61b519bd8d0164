"""User-supplied ONNX person detectors with a YOLOv8 or YOLOX output layout (spec ``onnx:PATH[:fmt]``).

``yolov8``: output ``[1, 4+C, N]`` (cx, cy, w, h in input pixels, then C class scores; no
objectness), input RGB/255, letterbox centred with grey 114. ``yolox``: output ``[1, N, 5+C]`` raw
grid outputs of strides 8/16/32 (x, y offsets in cells, log w/h, objectness and class
probabilities), input BGR 0–255, letterbox at the top-left with 114 (the YOLOX ONNX demo's
conventions). Score = class score (× objectness for YOLOX) of the person class (index 0 unless
``person_class`` is given); NMS per detector. The format is inferred from the output shape when
unambiguous; otherwise add the suffix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vmaedet.errors import ConfigError, DataError
from vmaedet.persons.base import SPEC_HELP, PersonDetector, onnx_session, register_detector, unknown_spec
from vmaedet.persons.nms import select_boxes
from vmaedet.structures import PersonDetections

YOLO_FORMATS = ("yolov8", "yolox")
YOLOX_STRIDES = (8, 16, 32)
LETTERBOX_FILL = 114


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


@register_detector("onnx")
class OnnxYoloDetector(PersonDetector):
    """A user-supplied ONNX detector with a YOLOv8 or YOLOX output layout (see module doc).

    Stateless; :attr:`~vmaedet.persons.base.PersonDetector.batchable` when the graph's batch axis is
    dynamic (``[N, 3, H, W]``, e.g. exported with a dynamic batch): ``detect_batch`` then runs all
    frames in one session run; a graph of ``[1, 3, H, W]`` runs one frame per call.

    Args:
        path: the ``.onnx`` file (input ``[1, 3, H, W]`` or ``[N, 3, H, W]``, fixed H and W).
        fmt: "yolov8", "yolox" or None to infer it from the output shape.
        person_class: index of the person class among the C classes (0 for COCO).
        nms_iou: IoU threshold of NMS.
        device: "cpu" or "cuda[:N]" (onnxruntime's CUDA provider where it is usable, else the CPU).
    """

    def __init__(self, path: str | Path, fmt: str | None = None, score_threshold: float = 0.5,
                 max_persons: int = 32, person_class: int = 0, nms_iou: float = 0.45, device: str = "cpu") -> None:
        super().__init__(score_threshold, max_persons)
        path = Path(path)
        if not path.is_file():
            raise ConfigError("The detector ONNX file does not exist.", received=str(path),
                              expected="an existing .onnx file", fix=f"name an existing file in the spec onnx:PATH ({SPEC_HELP})")
        if fmt is not None and fmt not in YOLO_FORMATS:
            raise ConfigError("Unknown ONNX detector output format.", received=fmt, expected=" or ".join(YOLO_FORMATS),
                              fix="write onnx:PATH:yolov8 or onnx:PATH:yolox")
        self.session = onnx_session(path, device, expected="an ONNX detector graph (.onnx) with a YOLOv8 or YOLOX output layout")
        self.input_name = self.session.get_inputs()[0].name
        self.input_hw = self._input_hw(self.session.get_inputs()[0].shape, path)
        #: a graph exported with a dynamic batch axis runs several frames in one run (``detect_batch``)
        self.batchable = not isinstance(self.session.get_inputs()[0].shape[0], int)
        out_shape = list(self.session.get_outputs()[0].shape)
        self.fmt = fmt or self._infer_format(out_shape, path)
        self.num_classes = self._num_classes(out_shape)
        if not 0 <= person_class < self.num_classes:
            raise ConfigError("person_class is outside the model's classes.", received=person_class,
                              expected=f"0 … {self.num_classes - 1}", fix="pass the index of 'person' in your label map")
        self.person_class = person_class
        self.nms_iou = nms_iou

    @staticmethod
    def _split(argument: str) -> tuple[str, str | None]:
        """``PATH[:yolov8|yolox]`` → (path, format or None)."""
        head, _, tail = argument.rpartition(":")
        return (head, tail) if head and tail in YOLO_FORMATS else (argument, None)

    @classmethod
    def from_spec(cls, argument: str, *, score_threshold: float, max_persons: int, backend: str, device: str,
                  **options: Any) -> "OnnxYoloDetector":
        if not argument:
            raise unknown_spec("onnx:")
        path, fmt = cls._split(argument)
        return cls(path, fmt, score_threshold, max_persons, device=device, **options)

    @classmethod
    def input_file(cls, argument: str) -> Path | None:
        return Path(cls._split(argument)[0]) if argument else None

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

    def _prepare(self, frame: np.ndarray) -> tuple[Letterbox, np.ndarray]:
        """The frame's letterbox and its network input ``[3, ih, iw]`` float32 (the layout's colours and scale)."""
        yolov8 = self.fmt == "yolov8"
        box = Letterbox.fit(frame.shape[:2], self.input_hw, centred=yolov8)
        image = box.apply(frame, self.input_hw)  # [ih, iw, 3] uint8 RGB
        if yolov8:
            return box, image.transpose(2, 0, 1).astype(np.float32) / 255.0  # [3, ih, iw] RGB 0..1
        return box, image[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)  # [3, ih, iw] BGR 0..255

    def _select(self, output: np.ndarray, box: Letterbox, frame_hw: tuple[int, int]) -> PersonDetections:
        """One frame's persons from its output (``[1, 4+C, N]`` or ``[1, N, 5+C]``), in the frame's pixels."""
        if self.fmt == "yolov8":
            boxes, scores = decode_yolov8(output, self.person_class)
        else:
            boxes, scores = decode_yolox(output, self.input_hw, self.person_class)
        boxes, scores = select_boxes(boxes, scores, self.score_threshold, self.max_persons, self.nms_iou)
        return PersonDetections(box.to_frame(boxes, frame_hw), scores)

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        box, tensor = self._prepare(frame)  # [3, ih, iw]
        output = self.session.run(None, {self.input_name: np.ascontiguousarray(tensor[None])})[0]  # [1, …]
        return self._select(output, box, frame.shape[:2])

    def _detect_batch(self, frames: list[np.ndarray], frame_indices: list[int | None], timestamps: list[float | None],
                      video_ids: list[str | None]) -> list[PersonDetections]:
        if not self.batchable:  # a graph of one image per call
            return super()._detect_batch(frames, frame_indices, timestamps, video_ids)
        prepared = [self._prepare(f) for f in frames]
        batch = np.ascontiguousarray(np.stack([t for _, t in prepared]))  # [B, 3, ih, iw]
        output = self.session.run(None, {self.input_name: batch})[0]  # [B, …]: one run for the B frames
        return [self._select(output[b:b + 1], box, f.shape[:2]) for b, ((box, _), f) in enumerate(zip(prepared, frames))]
