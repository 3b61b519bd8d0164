"""The project's fixed vocabulary, in one home: clip geometry, class count, precisions, plugin ids.

Everything here is a plain value (no imports beyond the standard library), so every layer of the
package — and the tests and benchmarks — can import it.  Tolerance tables that depend on a
precision live beside the precisions.
"""

from __future__ import annotations

from typing import Final

# --- the clip: the seed's 16 frames at stride 4 (AVA at 30 fps → 2.13 s around the keyframe) ---------
#: Frames per clip (the seed's ``num_frames``).
CLIP_LEN: Final = 16
#: Source-frame stride between sampled frames (the seed's ``sampling_rate``).
FRAME_STRIDE: Final = 4
#: Frame rate the seed's clip offsets were written for (AVA clips are extracted at 25 or 30 fps).
SEED_FPS: Final = 25
#: Short side of the seed's test-time resize (``ResizeShort(256)``), pixels.
SHORT_SIDE: Final = 256
#: The input's spatial size must be a multiple of the patch size.
PATCH_SIZE: Final = 16

# --- labels ----------------------------------------------------------------------------------------
#: AVA v2.2 action classes (ids 1..80 in the label map; logits index 0..79).
NUM_CLASSES: Final = 80

# --- precisions ------------------------------------------------------------------------------------
#: Every precision name the project knows, in the order tables show them.
PRECISIONS: Final = ("fp32", "bf16", "fp16")
#: Precisions an ONNX artifact can be exported in.
EXPORT_PRECISIONS: Final = ("fp32", "fp16", "int8")

# --- the TensorRT RoIAlign + max plugin: ids shared by the graph surgery, the builder and the engine --
#: ONNX op type = TensorRT plugin name of the fused RoIAlign + max.
ROI_ALIGN_MAX_OP: Final = "RoIAlignMax"
#: ONNX domain of the node = TensorRT plugin namespace.
PLUGIN_NAMESPACE: Final = "vmaedet"
#: Plugin version (``plugin_version`` attribute of the ONNX node).
PLUGIN_VERSION: Final = "1"
#: QDP plugin id, ``"<namespace>::<name>"``.
ROI_ALIGN_MAX_ID: Final = f"{PLUGIN_NAMESPACE}::{ROI_ALIGN_MAX_OP}"
