"""Time AVA frame-mAP evaluation of about 1 M detection rows (CSV parse + official and seed protocols).

Synthetic but AVA-shaped: ``--frames`` keyframes with 3–7 persons, every person scored for all 80
classes (as the seed's ``write_csv`` does), scores = sigmoid(logit) × person score written with
5 decimals (so ties are frequent, as in real result files), ground truth with 1–3 actions per
person (their logits raised by 4).  Writes ``benchmarks/results/bench_eval.json`` with the environment.

    python benchmarks/bench_eval.py [--frames 2500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, environment, write_json  # noqa: E402

from vmaedet.evaluation import AvaRows, evaluate_frame_map, read_ava_csv, write_ava_csv  # noqa: E402
from vmaedet.labels import AVA_ACTIONS, AVA_EVAL_IDS  # noqa: E402


def make_case(frames: int, seed: int = 0) -> tuple[AvaRows, AvaRows]:
    """Ground truth and all-class detections for ``frames`` keyframes spread over 60 videos."""
    rng = np.random.default_rng(seed)
    persons = rng.integers(3, 8, frames)  # [F]
    frame_of_person = np.repeat(np.arange(frames), persons)  # [P]
    n_p = len(frame_of_person)
    xy = rng.uniform(0, 0.6, (n_p, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.4, (n_p, 2))], axis=1)  # [P, 4]
    video = frame_of_person % 60
    ts = 902 + frame_of_person // 60
    n_act = rng.integers(1, 4, n_p)
    gt_person = np.repeat(np.arange(n_p), n_act)
    gt = AvaRows(videos=tuple(f"video{v:03d}xyz" for v in range(60)),
                 video_index=video[gt_person].astype(np.int32), timestamps=ts[gt_person].astype(np.int64),
                 boxes=boxes[gt_person], action_ids=rng.choice(np.array(AVA_EVAL_IDS), len(gt_person)),
                 person_ids=gt_person.astype(np.int64))
    det_box = np.clip(boxes + rng.normal(0, 0.03, boxes.shape), 0, 1)  # [P, 4]
    person_score = rng.uniform(0.8, 1.0, n_p)
    logits = rng.normal(-4.0, 2.0, (n_p, 80))  # [P, 80]
    logits[gt_person, gt.action_ids - 1] += 4.0  # a model that is right more often than not
    scores = 1 / (1 + np.exp(-logits)) * person_score[:, None]  # [P, 80]
    det_person = np.repeat(np.arange(n_p), 80)
    det = AvaRows(videos=gt.videos, video_index=video[det_person].astype(np.int32),
                  timestamps=ts[det_person].astype(np.int64), boxes=det_box[det_person],
                  action_ids=np.tile(np.arange(1, 81), n_p), scores=scores.reshape(-1))
    return gt, det


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    from vmaedet.tools.timing import time_calls

    t = time_calls(fn, repeats=repeats, warmup=0)  # the project's one timing loop; every run is recorded
    return list(t.times_s), t.result


def main() -> None:
    """Run the benchmark and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "bench_eval.json")
    args = parser.parse_args()

    gt, det = make_case(args.frames)
    labelmap = {i: AVA_ACTIONS[i - 1] for i in AVA_EVAL_IDS}
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_csv, det_csv = Path(tmp) / "gt.csv", Path(tmp) / "det.csv"
        t0 = time.perf_counter()
        write_ava_csv(det_csv, det)
        results["write_csv_s"] = time.perf_counter() - t0
        write_ava_csv(gt_csv, gt)
        read_times, det_rows = _timed(lambda: read_ava_csv(det_csv, with_scores=True), args.repeats)
        gt_rows = read_ava_csv(gt_csv, with_scores=False)
        results["read_csv_s"] = read_times
        for protocol in ("official", "seed"):
            times, res = _timed(lambda: evaluate_frame_map(gt_rows, det_rows, labelmap, protocol=protocol),
                                args.repeats)
            results[f"evaluate_{protocol}_s"] = times
            results[f"mAP_{protocol}"] = res.mAP  # type: ignore[attr-defined]
        results["end_to_end_cli_equivalent_s"] = statistics.median(read_times) + statistics.median(
            results["evaluate_official_s"])  # type: ignore[arg-type]
    payload = {
        "benchmark": "ava_frame_map_eval",
        "config": {"frames": args.frames, "detection_rows": len(det), "gt_rows": len(gt),
                   "evaluated_classes": len(labelmap), "repeats": args.repeats},
        "results": results,
        "environment": {**environment(), "numpy": np.__version__},
    }
    path = write_json(args.out, payload)
    print(f"{len(det):,} detection rows: read {statistics.median(read_times):.2f} s, "
          f"official {statistics.median(results['evaluate_official_s']):.2f} s, "  # type: ignore[arg-type]
          f"seed {statistics.median(results['evaluate_seed_s']):.2f} s -> {path}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
