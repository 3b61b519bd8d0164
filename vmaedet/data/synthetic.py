"""Synthetic AVA-format data: articulated stick figures whose actions are visible in motion.

Every video is a procedurally rendered scene: a background made of a gradient, smooth texture and
rectangles, per-frame sensor noise, a small global camera shake, and one to ``max_persons`` stick
figures of different sizes and colours.  Each figure performs a sequence of *pose* actions (AVA
person-movement ids, exactly one at a time) in segments of 2–5 s, sometimes with one extra
object-free action (hand wave, hand clap).  Figure colour and size are drawn per figure, never per
action, so an action can only be recognised from the motion and pose of the figure.

Outputs follow the shared dataset layout (``meta.json``, ``videos/<vid>.mp4`` in H.264,
``annotations/{train,val}.csv``, ``labelmap.pbtxt``, ``proposals_*.csv``, ``excluded_*.csv``).

Randomness: a video's script (figures, action segments) and its rendering (background, noise,
shake) are drawn from generators seeded by ``(seed, video index)``, so a seed gives the same CSV
bytes and the same pixels.  Rendering does not depend on the figures, so the same script without
figures renders the exact background a test needs to find the figure pixels.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vmaedet.errors import DataError
from vmaedet.labels import action_name
from vmaedet.data.video import encode_h264

# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------

#: Pose actions (AVA ids, person-movement group): exactly one per person and keyframe.
POSE_ACTIONS: tuple[int, ...] = (12, 14, 10, 7, 11, 1, 5)  # stand, walk, run/jog, jump/leap, sit, bend/bow, fall down
#: Extra object-free actions (AVA ids, person-interaction group): zero or one per person and keyframe.
EXTRA_ACTIONS: tuple[int, ...] = (69, 67)  # hand wave, hand clap
#: Pose actions that leave the arms free for an extra action.
ARMS_FREE_POSES: frozenset[int] = frozenset({12, 14, 11})
#: Every action id this generator writes, ascending.
ACTION_IDS: tuple[int, ...] = tuple(sorted(POSE_ACTIONS + EXTRA_ACTIONS))

_LABEL_TYPES = {**{a: "PERSON_MOVEMENT" for a in POSE_ACTIONS}, **{a: "PERSON_INTERACTION" for a in EXTRA_ACTIONS}}

#: Horizontal speed of each pose action in figure heights per second (0 for actions in place).  Slow
#: enough that a figure stays largely inside its keyframe box over the ~2.6 s clip window: the seed's
#: detector averages its features over time before pooling a box, so a figure that crosses several
#: body widths in a clip leaves little of itself in its own box (and other figures pass through it).
_SPEED = {14: 0.15, 10: 0.4}

FORMAT = "vmaedet-synth-2"
MIN_SECONDS = 5

# Pose parameter vector (angles in radians, lengths in figure heights):
# 0 torso lean (forward +), 1/2 far hip/knee, 3/4 near hip/knee, 5/6 far shoulder/elbow,
# 7/8 near shoulder/elbow, 9 lift of the feet above the ground, 10 whole-body forward rotation.
_P = 11
# Body segment lengths in units of the standing height (legs 0.5, torso 0.28, neck 0.06, head 0.16).
_THIGH, _SHIN, _TORSO, _NECK, _HEAD_R, _UPPER_ARM, _FOREARM = 0.25, 0.25, 0.28, 0.06, 0.08, 0.17, 0.16


def _wave(t: np.ndarray, hz: float, phase: float) -> np.ndarray:
    """Phase angle of a periodic motion of frequency ``hz`` at times ``t``."""
    return 2.0 * math.pi * hz * t + phase


def _pose_stand(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    w = _wave(t, 0.3, ph)
    p[:, 0] = 0.03 * np.sin(w)
    p[:, [1, 3]] = 0.03
    p[:, [5, 7]] = 0.08 + 0.02 * np.sin(w)[:, None]
    p[:, [6, 8]] = 0.12
    return p


def _pose_walk(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    w = _wave(t, 0.95, ph)
    s, c = np.sin(w), np.cos(w)
    p[:, 0] = 0.05
    p[:, 1], p[:, 3] = 0.45 * s, -0.45 * s
    p[:, 2], p[:, 4] = 0.1 + 0.5 * np.maximum(0, c), 0.1 + 0.5 * np.maximum(0, -c)
    p[:, 5], p[:, 7] = -0.4 * s, 0.4 * s
    p[:, [6, 8]] = 0.25
    p[:, 9] = 0.012 * np.abs(s)
    return p


def _pose_run(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    w = _wave(t, 1.7, ph)
    s, c = np.sin(w), np.cos(w)
    p[:, 0] = 0.28
    p[:, 1], p[:, 3] = 0.85 * s, -0.85 * s
    p[:, 2], p[:, 4] = 0.3 + 1.1 * np.maximum(0, c), 0.3 + 1.1 * np.maximum(0, -c)
    p[:, 5], p[:, 7] = -0.8 * s, 0.8 * s
    p[:, [6, 8]] = 1.5
    p[:, 9] = 0.05 * np.abs(s)
    return p


def _pose_jump(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    u = np.mod(t / 0.9 + ph / (2 * math.pi), 1.0)
    crouch = np.where(u < 0.25, np.sin(math.pi * u / 0.25), 0.0) + np.where(
        u > 0.8, np.sin(math.pi * (u - 0.8) / 0.2), 0.0)
    air = np.where((u >= 0.25) & (u <= 0.8), (u - 0.25) / 0.55, 0.0)
    p[:, 0] = 0.45 * crouch
    p[:, [1, 3]] = (0.9 * crouch)[:, None]
    p[:, [2, 4]] = (1.5 * crouch + 0.15 * (air > 0))[:, None]
    arms = np.where(air > 0, 2.6 * np.sin(math.pi * air), -0.6 * crouch)
    p[:, [5, 7]] = arms[:, None]
    p[:, [6, 8]] = 0.2
    p[:, 9] = 0.3 * 4.0 * air * (1.0 - air)
    return p


def _pose_sit(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    w = _wave(t, 0.4, ph)
    p[:, 0] = -0.08 + 0.04 * np.sin(w)
    p[:, [1, 3]] = math.pi / 2
    p[:, [2, 4]] = math.pi / 2
    p[:, 3] += 0.08
    p[:, [5, 7]] = (0.45 + 0.1 * np.sin(w))[:, None]
    p[:, [6, 8]] = 0.9
    return p


def _pose_bend(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    lean = 1.35 * (0.5 - 0.5 * np.cos(_wave(t, 1 / 2.2, ph)))
    p[:, 0] = lean
    p[:, [1, 3]] = -0.05
    p[:, [2, 4]] = 0.1
    p[:, [5, 7]] = (0.25 * lean)[:, None]
    p[:, 5] += 0.1
    p[:, [6, 8]] = 0.1
    return p


def _pose_fall(t: np.ndarray, ph: float) -> np.ndarray:
    p = np.zeros((t.size, _P))  # [n, P]
    u = np.mod(t / 2.6 + ph / (2 * math.pi), 1.0)
    flat = math.pi / 2 - 0.1
    down = flat * np.clip(u / 0.35, 0, 1) ** 2
    up = flat * (0.5 + 0.5 * np.cos(math.pi * np.clip((u - 0.65) / 0.35, 0, 1)))
    rot = np.where(u < 0.35, down, np.where(u < 0.65, flat, up))
    k = rot / flat
    p[:, 10] = rot
    p[:, [1, 3]] = (0.5 * k)[:, None]
    p[:, [2, 4]] = (0.8 * k)[:, None]
    p[:, [5, 7]] = (2.2 * k)[:, None]
    p[:, 5] += 0.3 * k
    p[:, [6, 8]] = 0.3
    return p


_POSE_FNS: dict[int, Callable[[np.ndarray, float], np.ndarray]] = {
    12: _pose_stand, 14: _pose_walk, 10: _pose_run, 7: _pose_jump, 11: _pose_sit, 1: _pose_bend, 5: _pose_fall,
}


def _extra_wave(p: np.ndarray, t: np.ndarray, ph: float) -> None:
    """Hand wave: near upper arm raised in front, forearm swinging about the vertical at 2.2 Hz (in place)."""
    p[:, 7] = 2.2
    p[:, 8] = (math.pi - 2.55) + 0.6 * np.sin(_wave(t, 2.2, ph))


def _extra_clap(p: np.ndarray, t: np.ndarray, ph: float) -> None:
    """Hand clap: both arms in front, opening and closing at 2.5 Hz (in place)."""
    s = np.sin(_wave(t, 2.5, ph))
    p[:, 5] = 1.1 + 0.3 * s
    p[:, 7] = 1.0 + 0.3 * s
    p[:, [6, 8]] = (0.9 + 0.6 * s)[:, None]


_EXTRA_FNS: dict[int, Callable[[np.ndarray, np.ndarray, float], None]] = {69: _extra_wave, 67: _extra_clap}


def action_params(pose: int, extra: int | None, t: np.ndarray, phase: float) -> np.ndarray:
    """Pose parameters of a figure doing ``pose`` (+ ``extra``) at times ``t`` (seconds into the segment).

    Returns an array ``[len(t), 11]``: torso lean, far hip/knee, near hip/knee, far shoulder/elbow,
    near shoulder/elbow (radians), foot lift (figure heights) and whole-body forward rotation.
    """
    p = _POSE_FNS[pose](np.asarray(t, dtype=np.float64), phase)  # [n, P]
    if extra is not None:
        _EXTRA_FNS[extra](p, t, phase)
    return p


# --------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One stretch of a figure's timeline: ``pose`` (+ ``extra``) from ``start`` to ``end`` seconds."""

    start: float
    end: float
    pose: int
    extra: int | None = None


@dataclass(frozen=True)
class PersonScript:
    """A figure: identity, look (independent of its actions) and its action timeline."""

    person_id: int
    height_px: float          # standing height in pixels
    ground_y: float           # y of the feet (pixels)
    x0: float                 # initial horizontal position (pixels)
    facing: int               # +1 right, -1 left (initial)
    color: tuple[int, int, int]
    thickness: int            # limb line width in pixels
    phase: float              # gait phase offset (radians)
    segments: tuple[Segment, ...]
    lane: tuple[float, float] | None = None  # x range (pixels) the figure walks in; None: the whole frame

    def segment_at(self, t: float) -> Segment:
        """The segment active at time ``t`` seconds."""
        for seg in self.segments:
            if seg.start <= t < seg.end:
                return seg
        return self.segments[-1]


@dataclass(frozen=True)
class VideoScript:
    """Everything that defines a video; :func:`render_video` turns it into frames deterministically."""

    video_id: str
    width: int
    height: int
    fps: int
    seconds: int
    render_seed: int          # background texture, noise and camera shake
    palette: tuple[tuple[int, int, int], ...]  # background gradient ends and floor colour (RGB)
    persons: tuple[PersonScript, ...]

    @property
    def frames(self) -> int:
        """Number of frames (``fps * seconds``)."""
        return self.fps * self.seconds

    @property
    def keyframe_seconds(self) -> tuple[int, ...]:
        """Annotated timestamps: ``2 .. seconds - 2``."""
        return tuple(range(2, self.seconds - 1))

    def labels_at(self, t: float) -> dict[int, tuple[int, ...]]:
        """Action ids active at time ``t`` per person id (pose first, then the extra action if any)."""
        out = {}
        for p in self.persons:
            seg = p.segment_at(t)
            out[p.person_id] = (seg.pose,) if seg.extra is None else (seg.pose, seg.extra)
        return out


def _segments(rng: np.random.Generator, seconds: int) -> tuple[Segment, ...]:
    """Action segments of 2–5 s (the first one 1.5–4.5 s) with boundaries at half seconds.

    Every integer-second keyframe is therefore at least 0.5 s away from a change of action.
    """
    segs: list[Segment] = []
    start, end = 0.0, 0.5 + float(rng.integers(1, 5))
    prev = None
    while start < seconds:
        choices = [a for a in POSE_ACTIONS if a != prev]
        pose = int(choices[rng.integers(len(choices))])
        extra = None
        if pose in ARMS_FREE_POSES and rng.random() < 0.5:
            extra = int(EXTRA_ACTIONS[rng.integers(len(EXTRA_ACTIONS))])
        segs.append(Segment(start, min(end, float(seconds)), pose, extra))
        prev, start, end = pose, end, end + float(rng.integers(2, 6))
    return tuple(segs)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour of random hue; a third of them darkened."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(170, 256)]]], dtype=np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    if rng.random() < 0.3:
        rgb = rgb // 4
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _figure_color(rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...]) -> tuple[int, int, int]:
    """A figure colour (never tied to an action) that stands out from the background's main colours."""
    candidates = [_random_color(rng) for _ in range(6)]
    pal = np.array(palette, dtype=np.float64)  # [C, 3]
    gap = [np.abs(pal - np.array(c)).sum(axis=1).min() for c in candidates]
    return candidates[int(np.argmax(gap))]


def make_video_script(
    seed: int, index: int, *, width: int = 320, height: int = 240, fps: int = 25, seconds: int = 12,
    max_persons: int = 4,
) -> VideoScript:
    """The script of video ``index`` of a dataset generated with ``seed`` (deterministic)."""
    ss = np.random.SeedSequence([seed, index])
    rng = np.random.default_rng(ss.spawn(1)[0])
    render_seed = int(ss.generate_state(1)[0])
    palette = tuple(tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(3))
    n = int(rng.integers(1, max_persons + 1))
    lanes = rng.permutation(n)  # figure i walks in lane lanes[i] of n equal vertical strips: few overlaps
    persons = []
    for pid in range(n):
        h = float(rng.uniform(0.3, 0.8)) * height
        ground = float(rng.uniform(min(h * 1.05, height - 4), height - 4))
        lane = (float(lanes[pid]) * width / n, float(lanes[pid] + 1) * width / n)
        persons.append(PersonScript(
            person_id=pid, height_px=h, ground_y=ground, x0=float(rng.uniform(*lane)),
            facing=int(rng.choice([-1, 1])), color=_figure_color(rng, palette),
            thickness=max(2, int(round(0.045 * h))), phase=float(rng.uniform(0, 2 * math.pi)),
            segments=_segments(rng, seconds), lane=lane,
        ))
    return VideoScript(f"synth_{index:03d}", width, height, fps, seconds, render_seed, palette, tuple(persons))


# --------------------------------------------------------------------------------------------
# Kinematics
# --------------------------------------------------------------------------------------------

# Joint indices of the skeleton returned by _skeleton.
_HIP, _NECK_J, _HEAD, _FAR_KNEE, _FAR_FOOT, _NEAR_KNEE, _NEAR_FOOT = 0, 1, 2, 3, 4, 5, 6
_FAR_ELBOW, _FAR_HAND, _NEAR_ELBOW, _NEAR_HAND = 7, 8, 9, 10
#: Limbs drawn as lines: (joint a, joint b, near side?) in drawing order (far limbs first).
_LIMBS = ((_HIP, _FAR_KNEE, False), (_FAR_KNEE, _FAR_FOOT, False), (_NECK_J, _FAR_ELBOW, False),
          (_FAR_ELBOW, _FAR_HAND, False), (_HIP, _NECK_J, True), (_HIP, _NEAR_KNEE, True),
          (_NEAR_KNEE, _NEAR_FOOT, True), (_NECK_J, _NEAR_ELBOW, True), (_NEAR_ELBOW, _NEAR_HAND, True))


def _direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors (x forward, y up) of limbs at ``angle`` from straight down, forward positive."""
    return np.stack([np.sin(angle), -np.cos(angle)], axis=-1)  # [n, 2]


def _skeleton(p: np.ndarray) -> np.ndarray:
    """Joint positions in figure heights (x forward, y up, feet on y = lift) from pose parameters.

    ``p`` is ``[n, 11]``; returns ``[n, 11, 2]``.
    """
    n = p.shape[0]
    j = np.zeros((n, 11, 2))  # [n, J, 2]
    up = np.stack([np.sin(p[:, 0]), np.cos(p[:, 0])], axis=-1)  # [n, 2] torso direction
    j[:, _NECK_J] = _TORSO * up
    j[:, _HEAD] = (_TORSO + _NECK + _HEAD_R) * up
    for hip_i, knee_j, foot_j in ((1, _FAR_KNEE, _FAR_FOOT), (3, _NEAR_KNEE, _NEAR_FOOT)):
        j[:, knee_j] = _THIGH * _direction(p[:, hip_i])
        j[:, foot_j] = j[:, knee_j] + _SHIN * _direction(p[:, hip_i] - p[:, hip_i + 1])
    shoulder = j[:, _NECK_J] - 0.03 * up
    for sh_i, elbow_j, hand_j in ((5, _FAR_ELBOW, _FAR_HAND), (7, _NEAR_ELBOW, _NEAR_HAND)):
        j[:, elbow_j] = shoulder + _UPPER_ARM * _direction(p[:, sh_i])
        j[:, hand_j] = j[:, elbow_j] + _FOREARM * _direction(p[:, sh_i] + p[:, sh_i + 1])
    # Put the lowest foot on the ground (plus the lift), then rotate forward about that foot.
    foot_i = np.where(j[:, _FAR_FOOT, 1] < j[:, _NEAR_FOOT, 1], _FAR_FOOT, _NEAR_FOOT)  # [n]
    pivot = j[np.arange(n), foot_i]  # [n, 2]
    j -= pivot[:, None, :]
    c, s = np.cos(p[:, 10])[:, None], np.sin(p[:, 10])[:, None]  # [n, 1]
    x, y = j[..., 0].copy(), j[..., 1].copy()  # [n, J]
    j[..., 0], j[..., 1] = x * c + y * s, -x * s + y * c
    j[..., 1] += p[:, 9:10]
    return j


def _timeline(person: PersonScript, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose parameters ``[n, 11]`` and pose action id ``[n]`` at frame times ``t``, blended at segment starts."""
    params = np.zeros((t.size, _P))  # [n, P]
    pose = np.zeros(t.size, dtype=np.int64)
    blend = 0.3
    prev_end: np.ndarray | None = None
    for seg in person.segments:
        m = (t >= seg.start) & (t < seg.end)
        if seg is person.segments[-1]:
            m |= t >= seg.end
        tau = t[m] - seg.start
        p = action_params(seg.pose, seg.extra, tau, person.phase)  # [m, P]
        if prev_end is not None:
            w = np.clip(tau / blend, 0, 1)[:, None]
            w = w * w * (3 - 2 * w)
            p = w * p + (1 - w) * prev_end
        params[m], pose[m] = p, seg.pose
        prev_end = action_params(seg.pose, seg.extra, np.array([seg.end - seg.start]), person.phase)[0]
    return params, pose


def _trajectory(person: PersonScript, t: np.ndarray, pose: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal position and facing per frame: walking and running move, turning at the edges of the
    figure's lane (or of the frame)."""
    x = np.empty(t.size)
    facing = np.empty(t.size)
    pos, face = person.x0, float(person.facing)
    margin = 0.25 * person.height_px
    lo, hi = margin, width - margin
    if person.lane is not None:
        lo, hi = max(lo, person.lane[0]), min(hi, person.lane[1])
        if lo > hi:  # a lane narrower than the figure: stay at its centre
            lo = hi = float(np.clip(0.5 * (person.lane[0] + person.lane[1]), margin, width - margin))
        pos = float(np.clip(pos, lo, hi))
    dt = float(t[1] - t[0]) if t.size > 1 else 0.0
    prev_pose = -1
    for i in range(t.size):
        a = int(pose[i])
        if a != prev_pose and a == 5:  # fall towards the side with room to lie down
            face = 1.0 if pos < width / 2 else -1.0
        pos += _SPEED.get(a, 0.0) * person.height_px * dt * face
        if pos < lo or pos > hi:
            face = 1.0 if pos < lo else -1.0
            pos = float(np.clip(pos, lo, hi))
        x[i], facing[i], prev_pose = pos, face, a
    return x, facing


@dataclass
class _PersonTrack:
    """Per-frame screen geometry of one figure."""

    joints: np.ndarray        # [N, 11, 2] pixels (x right, y down), before camera shake
    boxes: np.ndarray         # [N, 4] tight box x1, y1, x2, y2 in pixels, before camera shake
    head_r: float
    thickness: int
    color: tuple[int, int, int]
    far_color: tuple[int, int, int]


def _track(person: PersonScript, script: VideoScript) -> _PersonTrack:
    t = np.arange(script.frames) / script.fps  # [N]
    params, pose = _timeline(person, t)
    body = _skeleton(params)  # [N, J, 2] figure heights
    x, facing = _trajectory(person, t, pose, script.width)
    h = person.height_px
    joints = np.empty_like(body)
    joints[..., 0] = x[:, None] + facing[:, None] * body[..., 0] * h
    joints[..., 1] = person.ground_y - body[..., 1] * h
    r = _HEAD_R * h
    # cv2 puts pixel centres at integers (edges at +-0.5) and its anti-aliased fringe reaches ~1.5 px
    # beyond a line's half width or a disc's radius; boxes are in pixel-edge coordinates.
    half = person.thickness / 2 + 1.5
    lo = joints.min(axis=1) + 0.5 - half  # [N, 2]
    hi = joints.max(axis=1) + 0.5 + half
    head = joints[:, _HEAD] + 0.5  # [N, 2]
    lo = np.minimum(lo, head - r - 1.5)
    hi = np.maximum(hi, head + r + 1.5)
    far = tuple(int(c * 0.65) for c in person.color)
    return _PersonTrack(joints, np.concatenate([lo, hi], axis=1), r, person.thickness, person.color, far)


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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def encode_mp4(frames: Iterator[np.ndarray], path: Path, width: int, height: int, fps: int) -> int:
    """Encode RGB frames to H.264 (libx264 ultrafast, crf 23, yuv420p via OpenCV's I420 conversion, one
    thread: deterministic bytes) with :func:`vmaedet.data.video.encode_h264`; returns the frame count."""
    return encode_h264(path, frames, fps, crf=23, preset="ultrafast", threads=1, yuv="cv2", size=(width, height))


def _fmt(v: float) -> str:
    return f"{v:.3f}"


@dataclass
class _Rows:
    gt: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def _annotation_rows(script: VideoScript, boxes: dict[int, np.ndarray], rng: np.random.Generator,
                     hist: Counter[int]) -> tuple[_Rows, int]:
    """GT, proposal and exclusion rows of a video; returns them and the number of GT boxes."""
    rows, n_boxes = _Rows(), 0
    w, h, vid = script.width, script.height, script.video_id
    scale = np.array([w, h, w, h], dtype=np.float64)
    for t in script.keyframe_seconds:
        f = int(round(t * script.fps))
        labels = script.labels_at(t)
        for pid in sorted(labels):
            box = boxes[pid][f] / scale  # [4] normalised
            coords = ",".join(_fmt(v) for v in box)
            n_boxes += 1
            for a in sorted(labels[pid]):
                rows.gt.append(f"{vid},{t},{coords},{a},{pid}")
                hist[a] += 1
            if rng.random() < 0.05:  # a missed detection
                continue
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            jit = np.clip(box + rng.normal(0, 0.03, 4) * size, 0, 1)
            jit = np.concatenate([np.minimum(jit[:2], jit[2:] - 1e-3), np.maximum(jit[2:], jit[:2] + 1e-3)])
            rows.proposals.append(f"{vid},{t},{','.join(_fmt(v) for v in np.clip(jit, 0, 1))},,"
                                  f"{rng.uniform(0.8, 1.0):.4f}")
        for _ in range(int(rng.random() < 0.2) + int(rng.random() < 0.05)):  # false positives
            cx, cy = rng.uniform(0.1, 0.9, 2)
            bw, bh = rng.uniform(0.05, 0.3), rng.uniform(0.15, 0.6)
            fp = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, 1)
            rows.proposals.append(f"{vid},{t},{','.join(_fmt(v) for v in fp)},,{rng.uniform(0.3, 0.85):.4f}")
        if rng.random() < 0.03:
            rows.excluded.append(f"{vid},{t}")
    return rows, n_boxes


def labelmap_text(action_ids: tuple[int, ...] = ACTION_IDS) -> str:
    """The AVA v2.2 label map (``label { name: … label_id: … label_type: … }``) for ``action_ids``."""
    return "".join(f'label {{ name: "{action_name(a)}" label_id: {a} label_type: {_LABEL_TYPES[a]} }}\n'
                   for a in action_ids)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote, with the measured generation speed."""

    out_dir: Path
    videos: int
    train_videos: tuple[str, ...]
    val_videos: tuple[str, ...]
    keyframes: int
    boxes: int
    rows: int
    class_histogram: dict[int, int]
    video_seconds: float
    cpu_seconds: float
    wall_seconds: float

    @property
    def throughput(self) -> float:
        """Video seconds generated per CPU second (rendering + H.264 encoding + CSVs)."""
        return self.video_seconds / max(self.cpu_seconds, 1e-9)


def _check_int(name: str, value: object, lo: int, hi: int, fix: str) -> int:
    """``value`` as an int in ``[lo, hi]``, else a :class:`DataError` naming the option."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi
    if not ok:
        raise DataError(f"invalid synthetic data option {name}", received=value,
                        expected=f"an integer in [{lo}, {hi}]", fix=fix)
    return int(value)


def _validate(videos: object, seconds: object, width: object, height: object, fps: object,
              max_persons: object, val_fraction: object) -> None:
    _check_int("videos", videos, 1, 100_000, "pass --videos 1 or more")
    _check_int("seconds", seconds, MIN_SECONDS, 3600,
               f"pass --seconds {MIN_SECONDS} or more: keyframes are t = 2 .. S-2 and the clip window "
               "(about ±1.2 s) around each must lie inside the video")
    for name, v in (("width", width), ("height", height)):
        _check_int(name, v, 64, 4096, f"pass an even --{name} between 64 and 4096")
        if int(v) % 2:  # type: ignore[call-overload]
            raise DataError(f"{name} must be even for H.264 yuv420p", received=v, expected="an even integer",
                            fix=f"pass --{name} {int(v) + 1}")  # type: ignore[call-overload]
    _check_int("fps", fps, 1, 240, "pass --fps 25 (the AVA convention)")
    _check_int("max_persons", max_persons, 1, 8, "pass --max-persons between 1 and 8")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
        raise DataError("invalid val fraction", received=val_fraction, expected="a number in [0, 1)",
                        fix="pass --val-fraction 0.2")


_OUTPUTS = ("meta.json", "videos", "annotations")
_STAGING_PREFIX = ".vmaedet-synth-"


def _prepare_out(out: Path, overwrite: bool) -> bool:
    """Check ``out`` (refuse a non-empty one unless ``overwrite``) and create it; True when it was created."""
    if out.exists() and not out.is_dir():
        raise DataError("the output path is a file, not a directory", received=str(out),
                        expected="a new or empty directory", fix="choose another OUT path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("the output directory is not empty; refusing to overwrite it", received=str(out),
                        expected="a new or empty directory",
                        fix="choose another OUT path or pass --overwrite (replaces meta.json, videos/, "
                            "annotations/ and nothing else)")
    from vmaedet.safeio import output_error

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc, what="the dataset folder") from exc
    return created


def _commit(staging: Path, out: Path) -> None:
    """Move the staged ``meta.json``, ``videos/``, ``annotations/`` into ``out``, replacing old ones.

    Old outputs are first renamed aside (cheap, same folder), then the new ones renamed in, then the
    old ones deleted; a failure in between puts the old ones back.
    """
    trash = staging / ".old"
    trash.mkdir()
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in _OUTPUTS:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, trash / name)
                moved.append(name)
        for name in _OUTPUTS:
            os.replace(staging / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            with contextlib.suppress(OSError):
                os.replace(out / name, staging / name)
        for name in moved:
            with contextlib.suppress(OSError):
                os.replace(trash / name, out / name)
        raise


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def generate(
    out_dir: str | Path, *, videos: int = 8, seconds: int = 12, seed: int = 0, width: int = 320,
    height: int = 240, fps: int = 25, max_persons: int = 4, val_fraction: float = 0.2,
    overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic AVA-format dataset to ``out_dir`` and return a summary.

    Everything is written to a hidden staging folder inside ``out_dir`` first and moved into place
    only when complete: a failure (no space left, a read-only folder, Ctrl-C) leaves no partial
    dataset and, with ``overwrite``, the previous one intact.

    Args:
        out_dir: dataset root (created; must be empty unless ``overwrite``).
        videos: number of videos; the first ~(1 - val_fraction) are "train", the rest "val"
            (at least one val video when ``videos >= 2`` and ``val_fraction > 0``).
        seconds: length of each video (integer, >= 5); keyframes are ``2 .. seconds - 2``.
        seed: seed of everything (same seed: same CSV bytes and the same pixels).
        width, height, fps: video geometry (even sizes for yuv420p).
        max_persons: at most this many figures per video (1..8).
        val_fraction: fraction of videos in the val split.
        overwrite: replace ``meta.json``, ``videos/`` and ``annotations/`` of a non-empty ``out_dir``.
        progress: called as ``progress(done, total)`` after each video.

    Raises:
        DataError: a bad option, or a non-empty ``out_dir`` without ``overwrite``.
        OutputError: the dataset cannot be written (names the file and the cause in words).
    """
    from vmaedet.errors import OutputError
    from vmaedet.safeio import find_os_error, output_error

    _validate(videos, seconds, width, height, fps, max_persons, val_fraction)
    out = Path(out_dir)
    created = _prepare_out(out, overwrite)
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise output_error(out, exc, what="the dataset folder") from exc
    current = staging
    try:
        (staging / "videos").mkdir()
        (staging / "annotations").mkdir()
        summary = _generate_into(staging, out, videos=videos, seconds=seconds, seed=seed, width=width,
                                 height=height, fps=fps, max_persons=max_persons, val_fraction=val_fraction,
                                 progress=progress)
        current = out
        _commit(staging, out)
    except BaseException as exc:
        if isinstance(exc, Exception) and not isinstance(exc, OutputError) and find_os_error(exc) is not None:
            os_exc = find_os_error(exc)
            name = getattr(os_exc, "filename", None)
            target = out / Path(name).relative_to(staging) if name and _is_under(Path(name), staging) else current
            err = output_error(target, exc, what="the synthetic dataset file")
            _cleanup(staging, out, created)
            raise err from exc
        _cleanup(staging, out, created)
        raise
    _cleanup(staging, out, False)
    return summary


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _cleanup(staging: Path, out: Path, created: bool) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty: nothing of ours is left


def _generate_into(stage: Path, out: Path, *, videos: int, seconds: int, seed: int, width: int, height: int,
                   fps: int, max_persons: int, val_fraction: float,
                   progress: Callable[[int, int], None] | None) -> SynthSummary:
    """Render, encode and write the dataset into ``stage``; the summary names ``out``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n_val = max(1, int(round(videos * val_fraction))) if videos >= 2 and val_fraction > 0 else 0
    n_train = videos - n_val
    rows = {"train": _Rows(), "val": _Rows()}
    hist: Counter[int] = Counter()
    meta_videos, n_boxes, n_key = {}, 0, 0
    for i in range(videos):
        script = make_video_script(seed, i, width=width, height=height, fps=fps, seconds=seconds,
                                   max_persons=max_persons)
        rendered = render_video(script)
        n = encode_mp4(rendered.frames, stage / "videos" / f"{script.video_id}.mp4", width, height, fps)
        split = "train" if i < n_train else "val"
        ann_rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        r, nb = _annotation_rows(script, rendered.boxes, ann_rng, hist)
        for attr in ("gt", "proposals", "excluded"):
            getattr(rows[split], attr).extend(getattr(r, attr))
        n_boxes += nb
        n_key += len(script.keyframe_seconds)
        meta_videos[script.video_id] = {"split": split, "seconds": seconds, "frames": n}
        if progress is not None:
            progress(i + 1, videos)
    ann = stage / "annotations"
    for split, r in rows.items():
        _write_lines(ann / f"{split}.csv", r.gt)
        _write_lines(ann / f"proposals_{split}.csv", r.proposals)
        _write_lines(ann / f"excluded_{split}.csv", r.excluded)
    (ann / "labelmap.pbtxt").write_text(labelmap_text(), encoding="utf-8")
    meta = {"format": FORMAT, "fps": fps, "width": width, "height": height, "seed": seed,
            "videos": meta_videos, "action_ids": list(ACTION_IDS)}
    (stage / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    vids = list(meta_videos)
    return SynthSummary(
        out_dir=out, videos=videos, train_videos=tuple(vids[:n_train]), val_videos=tuple(vids[n_train:]),
        keyframes=n_key, boxes=n_boxes, rows=sum(len(r.gt) for r in rows.values()),
        class_histogram={a: hist.get(a, 0) for a in ACTION_IDS}, video_seconds=float(videos * seconds),
        cpu_seconds=time.process_time() - cpu0, wall_seconds=time.perf_counter() - wall0,
    )


__all__ = [
    "ACTION_IDS", "EXTRA_ACTIONS", "POSE_ACTIONS", "PersonScript", "RenderedVideo", "Segment", "SynthSummary",
    "VideoScript", "action_params", "encode_mp4", "generate", "labelmap_text", "make_video_script",
    "render_video",
]
