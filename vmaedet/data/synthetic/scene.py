"""Synthetic data, part 1: the scene — actions as motion, per-video scripts and the figures' kinematics.

A :class:`VideoScript` (drawn by :func:`make_video_script` from ``(seed, video index)``) fixes
everything about a video: its size, palette, render seed and the figures with their action timelines.
:func:`action_params` turns an action into pose parameters over time; ``_track`` turns a figure's
script into per-frame joints and tight boxes in pixels, which :mod:`.render` draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vmaedet.constants import SEED_FPS

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
    seed: int, index: int, *, width: int = 320, height: int = 240, fps: int = SEED_FPS, seconds: int = 12,
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

