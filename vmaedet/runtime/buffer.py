"""Bounded rings: preprocessed frames for clips, raw frames for display.

Each frame is preprocessed once when it enters the :class:`ClipRing` (the Predictor's test path:
``seed_resize_size`` → cv2 INTER_LINEAR resize → normalise → zero-pad to multiples of 16) and
kept as ``[3, Hp, Wp]`` on the engine's device; a clip is a stack of 16 of them.  Frames no
keyframe can still sample are evicted, and a hard capacity bounds memory whatever the run length.

On the CPU the ring does this without torch operators: the normalisation of a uint8 value is one of
256 numbers per channel, so it is a table lookup (``cv2.LUT``) into a table computed once by
:func:`~vmaedet.data.transforms.normalize_clip` itself — the same float32 values, bit for bit — and a
clip is stacked with numpy.  The worker thread then never starts a team of torch (OpenMP) threads of
its own that would fight the action engine's threads for the cores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vmaedet.data.transforms import normalize_clip, pad_to_multiple, padded_size, resize_frames, seed_resize_size
from vmaedet.errors import StreamError
from vmaedet.runtime.sources import Frame


@dataclass
class RingEntry:
    index: int
    time: float
    tensor: torch.Tensor  #: [3, Hp, Wp] float32 normalised, padded


class ClipRing:
    """Preprocessed frames ordered by time.

    Args:
        capacity: most frames held (oldest evicted first).
        device: where the tensors live (the engine's device).
        seed_quirk: the seed's transposed resize for frames whose short side is already 256.
    """

    def __init__(self, capacity: int, device: str | torch.device = "cpu", seed_quirk: bool = True,
                 short_side: int = 256) -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.seed_quirk = seed_quirk
        self.short_side = short_side
        self._entries: deque[RingEntry] = deque()
        self._nbytes = 0  #: running total of the entries' tensor bytes
        self.source_wh: tuple[int, int] | None = None
        self.resized_wh: tuple[int, int] | None = None
        #: per channel, the normalised float32 value of each uint8 level (CPU rings only; built at the first frame)
        self._lut: np.ndarray | None = None  # [3, 256]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, index: int) -> bool:
        return any(e.index == index for e in self._entries)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``[H, W, 3]`` uint8 RGB → ``[3, Hp, Wp]`` float32 (resize, normalise, pad)."""
        h, w = image.shape[:2]
        if self.source_wh is None:
            self.source_wh = (w, h)
            self.resized_wh = seed_resize_size(w, h, short_side=self.short_side, seed_quirk=self.seed_quirk)
        elif (w, h) != self.source_wh:
            raise StreamError("the source changed its frame size mid-stream", received=f"{w}×{h}",
                              expected=f"{self.source_wh[0]}×{self.source_wh[1]}", fix="restart the stream")
        assert self.resized_wh is not None
        resized = resize_frames(image[None], self.resized_wh)  # [1, h', w', 3]
        if self.device.type == "cpu":
            return torch.from_numpy(self._normalize_pad(resized[0]))  # [3, Hp, Wp]
        x = torch.from_numpy(resized).to(self.device)  # [1, h', w', 3] uint8
        return pad_to_multiple(normalize_clip(x))[:, 0]  # [3, Hp, Wp]

    def _normalize_pad(self, resized: np.ndarray) -> np.ndarray:
        """``[h', w', 3]`` uint8 → ``[3, Hp, Wp]`` float32: ``normalize_clip`` then ``pad_to_multiple``, by lookup.

        Equal bit for bit to the torch path: the table is ``normalize_clip`` of the 256 levels, and the
        padding is zeros.
        """
        if self._lut is None:
            levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256, 1).expand(1, 1, 256, 3)  # [1, 1, 256, 3]
            self._lut = np.ascontiguousarray(normalize_clip(levels)[:, 0, 0].numpy())  # [3, 256]
        h, w = resized.shape[:2]
        pw, ph = padded_size(w, h)
        out = np.zeros((3, ph, pw), np.float32)  # [3, Hp, Wp]
        for c, plane in enumerate(cv2.split(resized)):  # 3 × [h', w'] uint8
            out[c, :h, :w] = cv2.LUT(plane, self._lut[c])  # [h', w'] float32
        return out

    def push(self, frame: Frame) -> None:
        """Preprocess and append a frame (evicting the oldest beyond capacity)."""
        tensor = self.preprocess(frame.image)  # [3, Hp, Wp]
        self._entries.append(RingEntry(frame.index, frame.time, tensor))
        self._nbytes += _tensor_bytes(tensor)
        while len(self._entries) > self.capacity:
            self._pop_oldest()

    def evict_before(self, horizon: float) -> None:
        """Drop frames that cannot be the nearest frame to any sampling time ≥ ``horizon``."""
        while len(self._entries) > 1 and self._entries[1].time <= horizon:
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        self._nbytes -= _tensor_bytes(self._entries.popleft().tensor)

    def _positions(self, targets: np.ndarray, indices: np.ndarray | None) -> list[int]:
        """Positions in the ring of a clip's frames (see :meth:`clip`)."""
        if not self._entries:
            raise StreamError("no frames buffered for a clip", received="empty ring", expected="≥ 1 frame")
        if indices is not None:
            pos = {e.index: i for i, e in enumerate(self._entries)}
            first, last = self._entries[0].index, self._entries[-1].index
            wanted = [min(max(int(i), first), last) for i in indices]
            missing = [i for i in wanted if i not in pos]
            if missing:
                raise StreamError("the clip ring lacks frames a keyframe needs", received=f"missing {missing[:4]}",
                                  expected=f"frames {first}..{last} kept by the scheduler")
            return [pos[i] for i in wanted]
        times = np.array([e.time for e in self._entries])  # [R]
        return [int(np.argmin(np.abs(times - t))) for t in targets]  # argmin returns the first (earlier) tie

    def picks(self, targets: np.ndarray, indices: np.ndarray | None = None) -> list[int]:
        """The frame indices :meth:`clip` would take, without building the clip (a keyframe without persons)."""
        return [self._entries[i].index for i in self._positions(targets, indices)]

    def clip(self, targets: np.ndarray, indices: np.ndarray | None = None,
             out: np.ndarray | None = None) -> tuple[torch.Tensor, list[int]]:
        """The clip ``[1, 3, T, Hp, Wp]`` and the frame indices it took.

        Live sources: the nearest buffered frame (ties → earlier) to each sampling time in ``targets``.
        Lossless sources pass the exact frame ``indices`` (keyframe + the scheduler's offsets), which
        are taken as they are, clamped to the first and last frame like the seed clamps to the video.

        ``out``: a CPU ring stacks the clip into this float32 ``[3, T, Hp, Wp]`` array when its shape
        fits (the clip shares its memory) instead of a new one — a caller that recycles the arrays of
        finished clips spares the allocator a clip-sized block per keyframe.  Ignored on other devices.
        """
        positions = self._positions(targets, indices)
        frames = [self._entries[i].tensor for i in positions]  # T × [3, Hp, Wp]
        if self.device.type == "cpu":  # numpy: no torch thread team in the worker (module docstring)
            shape = (frames[0].shape[0], len(frames), *frames[0].shape[1:])  # (3, T, Hp, Wp)
            fits = out is not None and out.shape == shape and out.dtype == np.float32
            stacked = np.stack([f.numpy() for f in frames], axis=1, out=out if fits else None)  # [3, T, Hp, Wp]
            clip = torch.from_numpy(stacked)
        else:
            clip = torch.stack(frames, dim=1)  # [3, T, Hp, Wp]
        return clip[None], [self._entries[i].index for i in positions]  # [1, 3, T, Hp, Wp]

    def last_tensor(self) -> torch.Tensor | None:
        """The newest buffered frame ``[3, Hp, Wp]`` (None when empty)."""
        return self._entries[-1].tensor if self._entries else None

    def nbytes(self) -> int:
        """Bytes held by the buffered tensors (a running total: O(1), called once per frame)."""
        return self._nbytes


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class DisplayRing:
    """Raw frames waiting for the result they are drawn with (bounded; overflow releases the oldest)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: deque[Frame] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: Frame) -> list[Frame]:
        """Add a frame; returns the frames forced out by the capacity (to be drawn now)."""
        self._frames.append(frame)
        out = []
        while len(self._frames) > self.capacity:
            out.append(self._frames.popleft())
        return out

    def release(self, before_index: int | None) -> list[Frame]:
        """Frames with index < ``before_index`` (all when None), oldest first."""
        out = []
        while self._frames and (before_index is None or self._frames[0].index < before_index):
            out.append(self._frames.popleft())
        return out

    @property
    def last(self) -> Frame | None:
        return self._frames[-1] if self._frames else None
