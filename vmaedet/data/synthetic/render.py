"""Synthetic data, part 2: rendering a :class:`~.scene.VideoScript` into frames, and encoding them.

The background, sensor noise and camera shake depend only on the script's ``render_seed``, so the
same script without figures renders the exact background.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vmaedet.data.synthetic.scene import _HEAD, _LIMBS, VideoScript, _PersonTrack, _track
from vmaedet.data.video import encode_h264

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_SHAKE = 4          # camera shake margin in pixels (max translation)
_SHIFT = 2          # cv2 sub-pixel bits
_NOISE_BANK = 8


def _background(rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...], w: int, h: int) -> np.ndarray:
    """A varied static background ``[h, w, 3]`` uint8: gradient, smooth texture, rectangles, floor."""
    c0, c1, c_floor = (np.array(c, dtype=np.float64) for c in palette)
    if rng.random() < 0.5:
        ramp = np.linspace(0, 1, h)[:, None, None] * np.ones((1, w, 1))
    else:
        ramp = np.linspace(0, 1, w)[None, :, None] * np.ones((h, 1, 1))
    bg = c0 * (1 - ramp) + c1 * ramp  # [h, w, 3]
    coarse = rng.normal(0, 1, (int(rng.integers(3, 12)), int(rng.integers(3, 12)), 3)).astype(np.float32)
    bg += float(rng.uniform(10, 45)) * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 10))):
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = x1 + int(rng.integers(8, w // 2)), y1 + int(rng.integers(8, h // 2))
        bg[y1:y2, x1:x2] = 0.3 * bg[y1:y2, x1:x2] + 0.7 * rng.integers(0, 256, 3)
    if rng.random() < 0.6:
        floor = int(rng.uniform(0.45, 0.8) * h)
        bg[floor:] = 0.4 * bg[floor:] + 0.6 * c_floor
    fine = rng.normal(0, float(rng.uniform(2, 10)), (h, w, 1))
    return np.clip(bg + fine, 0, 255).astype(np.uint8)


def _shake(rng: np.random.Generator, n: int, fps: int) -> np.ndarray:
    """Smooth integer camera translation per frame ``[n, 2]`` within ±``_SHAKE`` pixels."""
    t = np.arange(n) / fps
    out = np.zeros((n, 2))
    for k in range(2):
        amp = rng.uniform(0, 2.5, 2)
        freq = rng.uniform(0.2, 2.0, 2)
        ph = rng.uniform(0, 2 * math.pi, 2)
        out[:, k] = (amp[:, None] * np.sin(2 * math.pi * freq[:, None] * t + ph[:, None])).sum(0)
    out += rng.integers(-1, 2, (n, 2)) * (rng.random((n, 2)) < 0.2)
    return np.clip(np.round(out), -_SHAKE, _SHAKE).astype(np.int64)


def _draw_figure(img: np.ndarray, tr: _PersonTrack, f: int, off: np.ndarray) -> None:
    """Draw figure ``tr`` at frame ``f`` with camera offset ``off`` (anti-aliased lines, filled head)."""
    pts = np.round((tr.joints[f] + off) * (1 << _SHIFT)).astype(np.int64)  # [J, 2] fixed point
    for a, b, near in _LIMBS:
        cv2.line(img, (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1])),
                 tr.color if near else tr.far_color, tr.thickness, cv2.LINE_AA, _SHIFT)
    head = pts[_HEAD]
    cv2.circle(img, (int(head[0]), int(head[1])), int(round(tr.head_r * (1 << _SHIFT))), tr.color, -1,
               cv2.LINE_AA, _SHIFT)


@dataclass
class RenderedVideo:
    """Frames and per-frame tight boxes of a rendered script (boxes include the camera shake)."""

    frames: Iterator[np.ndarray]                 # each [H, W, 3] uint8 RGB
    boxes: dict[int, np.ndarray]                 # person id -> [N, 4] x1, y1, x2, y2 pixels, clipped
    shake: np.ndarray                            # [N, 2] camera translation (pixels)
    script: VideoScript = field(repr=False)


def render_video(script: VideoScript) -> RenderedVideo:
    """Render ``script`` lazily: ``frames`` yields ``[H, W, 3]`` uint8 RGB frames in order.

    The background, noise and shake depend only on ``script.render_seed``, so
    ``render_video(dataclasses.replace(script, persons=()))`` gives the same frames without figures.
    """
    rng = np.random.default_rng(script.render_seed)
    w, h, m = script.width, script.height, _SHAKE
    bg = _background(rng, script.palette, w + 2 * m, h + 2 * m)  # [H+2m, W+2m, 3]
    shake = _shake(rng, script.frames, script.fps)  # [N, 2]
    sigma = float(rng.uniform(1.5, 6.0))
    bank = np.clip(rng.normal(sigma * 2, sigma, (_NOISE_BANK, h, w, 3)), 0, 255).astype(np.uint8)  # [K, H, W, 3]
    picks = rng.integers(0, _NOISE_BANK, (script.frames, 2))
    persons = sorted(script.persons, key=lambda p: p.ground_y)  # far (higher) figures first
    tracks = [_track(p, script) for p in persons]
    boxes = {}
    for p, tr in zip(persons, tracks):
        b = tr.boxes + np.concatenate([shake, shake], axis=1)  # [N, 4]
        boxes[p.person_id] = np.clip(b, 0, [w, h, w, h])

    def frames() -> Iterator[np.ndarray]:
        for f in range(script.frames):
            dx, dy = shake[f]
            img = bg[m + dy:m + dy + h, m + dx:m + dx + w].copy()  # [H, W, 3]
            for tr in tracks:
                _draw_figure(img, tr, f, shake[f])
            img = cv2.add(img, bank[picks[f, 0]])
            yield cv2.subtract(img, bank[picks[f, 1]])

    return RenderedVideo(frames(), boxes, shake, script)



def encode_mp4(frames: Iterator[np.ndarray], path: Path, width: int, height: int, fps: int) -> int:
    """Encode RGB frames to H.264 (libx264 ultrafast, crf 23, yuv420p via OpenCV's I420 conversion, one
    thread: deterministic bytes) with :func:`vmaedet.data.video.encode_h264`; returns the frame count."""
    return encode_h264(path, frames, fps, crf=23, preset="ultrafast", threads=1, yuv="cv2", size=(width, height))
