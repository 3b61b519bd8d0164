"""AVA frame-mAP evaluator and AVA CSV / label-map I/O.

Expected values are either the official evaluators' numbers shipped with the shared fixtures, or
hand-computed APs whose arithmetic is written next to each case, or an independent loop-based
reading of the protocol (for random inputs without score ties).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vmaedet.errors import ConfigError, DataError
from vmaedet.evaluation import (
    AvaRows,
    evaluate_frame_map,
    read_ava_csv,
    read_exclusions,
    read_labelmap,
    write_ava_csv,
)

V21 = 'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "crouch/kneel"\n  id: 3\n}\n' \
      'item {\n  name: "dance"\n  id: 4\n}\n'
V22 = 'label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n  label_type: PERSON_MOVEMENT\n}\n' \
      'label {\n  name: "crouch/kneel"\n  label_id: 3\n  label_type: PERSON_MOVEMENT\n}\n' \
      'label {\n  name: "dance"\n  label_id: 4\n  label_type: PERSON_MOVEMENT\n}\n'
LABELS = {1: "bend/bow (at the waist)", 3: "crouch/kneel", 4: "dance"}


def _csv(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _run(tmp_path: Path, gt: list[str], det: list[str], excl: list[str] | None = None,
         protocol: str = "official", labelmap: object = LABELS) -> dict[int, float | None]:
    result = evaluate_frame_map(_csv(tmp_path, "gt.csv", gt), _csv(tmp_path, "det.csv", det), labelmap,
                                None if excl is None else _csv(tmp_path, "excl.csv", excl), protocol)
    return result.per_class_ap


# ------------------------------------------------------------------------------------------------
# official numbers from the shared fixtures


@pytest.mark.parametrize("case", ["capped", "dense"])
@pytest.mark.parametrize("protocol", ["official", "seed"])
def test_fixture_cases_match_official_evaluators(fixtures_dir: Path, case: str, protocol: str) -> None:
    root = fixtures_dir / "ava-eval-case"
    expected = json.loads((root / case / "expected.json").read_text())[protocol]
    result = evaluate_frame_map(root / case / "gt.csv", root / case / "det.csv", root / "labelmap.pbtxt",
                                root / case / "exclusions.csv", protocol=protocol)
    assert result.mAP == pytest.approx(expected["mAP"], abs=1e-9)
    assert set(map(str, result.per_class_ap)) == set(expected["per_class_ap"])
    for cid, ap in expected["per_class_ap"].items():
        got = result.per_class_ap[int(cid)]
        assert (got is None) == (ap is None), cid
        if ap is not None:
            assert got == pytest.approx(ap, abs=1e-9), cid


def test_dense_fixture_protocols_differ(fixtures_dir: Path) -> None:
    """> 50 rows per frame: the cap changes the result (0.2669 official vs 0.3152 seed)."""
    root = fixtures_dir / "ava-eval-case"
    args = (root / "dense" / "gt.csv", root / "dense" / "det.csv", root / "labelmap.pbtxt")
    official = evaluate_frame_map(*args, protocol="official")
    seed = evaluate_frame_map(*args, protocol="seed")
    assert official.mAP < seed.mAP - 0.01
    assert all(official.num_detections[c] <= seed.num_detections[c] for c in official.num_detections)


# ------------------------------------------------------------------------------------------------
# hand-built traps (boxes are x1,y1,x2,y2; every GT box here has height 1 or exactly representable
# coordinates so that IoUs are exact in float64)


def test_iou_exactly_half_matches_and_just_below_does_not(tmp_path: Path) -> None:
    # One GT box (0,0,1,0.5) (area 0.5) per class; one detection (0,0,1,h) per class.
    # IoU = (1*h) / (0.5 + h - h) = 2h.  h=0.25 -> 0.5 exactly (match, AP 1);
    # h=0.2499 -> 0.4998 (no match: 1 FP, AP 0); h=0.2501 -> 0.5002 (match, AP 1).
    gt = [f"v,1000,0,0,1,0.5,{c},0" for c in (1, 3, 4)]
    det = ["v,1000,0,0,1,0.25,1,0.9", "v,1000,0,0,1,0.2499,3,0.9", "v,1000,0,0,1,0.2501,4,0.9"]
    for protocol in ("official", "seed"):
        assert _run(tmp_path, gt, det, protocol=protocol) == {1: 1.0, 3: 0.0, 4: 1.0}


def test_duplicate_detection_is_a_false_positive(tmp_path: Path) -> None:
    # GT A=(0,0,0.5,1), B=(0.5,0,1,1). Detections: A@0.9 (TP), A@0.8 (duplicate -> FP), B@0.7 (TP).
    # Ranked TP, FP, TP with 2 GT: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # Envelope at recall 1/2 -> 1, at recall 1 -> 2/3.  AP = 1/2*1 + 1/2*2/3 = 5/6.
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0.5,0,1,1,1,1"]
    det = ["v,1000,0,0,0.5,1,1,0.9", "v,1000,0,0,0.5,1,1,0.8", "v,1000,0.5,0,1,1,1,0.7"]
    assert _run(tmp_path, gt, det, labelmap={1: "a"})[1] == pytest.approx(5 / 6, abs=1e-12)


def test_best_gt_already_matched_gives_false_positive_without_fallback(tmp_path: Path) -> None:
    # GT A=(0,0,0.5,1), B=(0.25,0,0.75,1) (heights 1, so IoU is the 1-D overlap ratio in x).
    # D1@0.9 = A: IoU(A)=1 -> TP, claims A.
    # D2@0.8 = (0.1,0,0.6,1): IoU(A)=0.4/0.6=0.667 (argmax), IoU(B)=0.35/0.65=0.538 >= 0.5,
    #   but A is taken and there is no fallback to B -> FP.
    # D3@0.7 = B: TP.  Ranked TP, FP, TP with 2 GT -> AP = 1/2 + 1/2*2/3 = 5/6
    # (with a fallback it would be TP, TP, FP -> AP 1).
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0.25,0,0.75,1,1,1"]
    det = ["v,1000,0,0,0.5,1,1,0.9", "v,1000,0.1,0,0.6,1,1,0.8", "v,1000,0.25,0,0.75,1,1,0.7"]
    for protocol in ("official", "seed"):
        assert _run(tmp_path, gt, det, protocol=protocol, labelmap={1: "a"})[1] == pytest.approx(5 / 6, abs=1e-12)


def test_classes_without_gt_or_without_detections(tmp_path: Path) -> None:
    # class 1: GT + matching detection -> AP 1.
    # class 3: detections but no GT -> AP None, left out of the mean.
    # class 4: GT but no detections -> AP 0, counted in the mean.
    # mAP = (1 + 0) / 2 = 0.5.
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0,0,0.5,1,4,0"]
    det = ["v,1000,0,0,0.5,1,1,0.9", "v,1000,0,0,0.5,1,3,0.95"]
    result = evaluate_frame_map(_csv(tmp_path, "gt.csv", gt), _csv(tmp_path, "det.csv", det), LABELS)
    assert result.per_class_ap == {1: 1.0, 3: None, 4: 0.0}
    assert result.mAP == 0.5
    assert result.num_gt == {1: 1, 3: 0, 4: 1}
    assert result.num_detections == {1: 1, 3: 1, 4: 0}


def test_detection_on_frame_without_gt_is_false_positive(tmp_path: Path) -> None:
    # class 1: frame 1000 has GT A and detection A@0.8 (TP); frame 1001 has no GT at all but a
    # detection @0.9 (FP).  Ranked FP, TP: precision 0, 1/2; recall 0, 1 -> AP = 1 * 1/2 = 0.5.
    gt = ["v,1000,0,0,0.5,1,1,0"]
    det = ["v,1000,0,0,0.5,1,1,0.8", "v,1001,0,0,0.5,1,1,0.9"]
    assert _run(tmp_path, gt, det, labelmap={1: "a"})[1] == 0.5


def test_non_evaluated_classes_are_ignored_and_do_not_use_the_cap(tmp_path: Path) -> None:
    # Class 2 is not in the label map: its GT and its 60 high-scoring detections on the same frame
    # are dropped before the official 50-row cap, so the class-1 detection @0.1 still counts (AP 1).
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0,0,0.5,1,2,0"]
    det = [f"v,1000,0.5,0,1,1,2,0.{90 + i % 10}{i:02d}" for i in range(60)] + ["v,1000,0,0,0.5,1,1,0.1"]
    for protocol in ("official", "seed"):
        assert _run(tmp_path, gt, det, protocol=protocol) == {1: 1.0, 3: None, 4: None}


def test_excluded_frames_are_dropped_from_gt_and_detections(tmp_path: Path) -> None:
    # Frame 1000: GT A, detection A@0.9 (TP).  Frame 0902 (excluded, written 902 in the GT/detections):
    # GT A (unmatched) and a detection (0.5,0,1,1)@0.95 that misses it.
    # With the exclusion: one TP -> AP 1.
    # Without: 2 GT, ranked FP(0.95), TP(0.9): precision 0, 1/2; recall 0, 1/2 -> AP = 1/2 * 1/2 = 0.25.
    gt = ["v,1000,0,0,0.5,1,1,0", "v,902,0,0,0.5,1,1,0"]
    det = ["v,1000,0,0,0.5,1,1,0.9", "v,902,0.5,0,1,1,1,0.95"]
    assert _run(tmp_path, gt, det, excl=["v,0902"], labelmap={1: "a"})[1] == 1.0
    assert _run(tmp_path, gt, det, labelmap={1: "a"})[1] == 0.25


def test_timestamps_with_and_without_zero_padding_are_the_same_frame(tmp_path: Path) -> None:
    assert _run(tmp_path, ["v,0902,0,0,0.5,1,1,0"], ["v,902,0,0,0.5,1,1,0.5"], labelmap={1: "a"})[1] == 1.0


def test_zero_width_detections_are_dropped(tmp_path: Path) -> None:
    # GT A.  Detections: zero-width (0.2,0,0.2,1)@0.95, zero-height (0,0.3,0.5,0.3)@0.94, A@0.9.
    # Invalid boxes are removed before matching, so only the TP remains -> AP 1
    # (if they were kept as FPs: precision 0, 0, 1/3 at recall 1 -> AP 1/3).
    gt = ["v,1000,0,0,0.5,1,1,0"]
    det = ["v,1000,0.2,0,0.2,1,1,0.95", "v,1000,0,0.3,0.5,0.3,1,0.94", "v,1000,0,0,0.5,1,1,0.9"]
    result = evaluate_frame_map(_csv(tmp_path, "gt.csv", gt), _csv(tmp_path, "det.csv", det), {1: "a"})
    assert result.per_class_ap[1] == 1.0
    assert result.num_detections[1] == 1


def test_zero_width_ground_truth_still_counts(tmp_path: Path) -> None:
    # As in the official code only detections are cleaned: a zero-width GT box can never be
    # matched (IoU 0) but is in the recall denominator.  1 TP out of 2 GT: precision 1 at
    # recall 1/2 -> AP = 0.5.
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0.7,0,0.7,1,1,1"]
    assert _run(tmp_path, gt, ["v,1000,0,0,0.5,1,1,0.9"], labelmap={1: "a"})[1] == 0.5


def test_more_than_50_rows_per_frame_official_versus_seed(tmp_path: Path) -> None:
    # One frame: 50 class-3 detections with scores 0.900..0.949 (class 3 has no GT), then a class-1
    # detection @0.5 on the class-1 GT box.  Official keeps the 50 highest rows, so the class-1
    # detection is dropped -> class 1 AP 0, mAP 0.  Seed keeps it -> AP 1, mAP 1.
    gt = ["v,1000,0,0,0.5,1,1,0"]
    det = [f"v,1000,0.5,0,1,1,3,{0.9 + i / 1000:.3f}" for i in range(50)] + ["v,1000,0,0,0.5,1,1,0.5"]
    assert _run(tmp_path, gt, det, protocol="official") == {1: 0.0, 3: None, 4: None}
    assert _run(tmp_path, gt, det, protocol="seed") == {1: 1.0, 3: None, 4: None}
    # 49 class-3 rows: the class-1 row is the 50th and survives the cap.
    assert _run(tmp_path, gt, det[1:], protocol="official")[1] == 1.0


def test_cap_tie_at_the_cut_follows_the_official_heap(tmp_path: Path) -> None:
    # 49 class-3 rows @0.9, then class-4 @0.5 (A), then class-1 @0.5 (A): 51 rows, a tie at the cut.
    # The official heap holds (score, action_id, ...) tuples; when the class-1 row arrives the heap
    # is full with minimum 0.5 and 0.5 > 0.5 is false, so the class-1 row is rejected and the
    # class-4 row is kept: class 1 AP 0, class 4 AP 1.  In the other file order (class 1 first) the
    # class-1 row is kept and the class-4 row rejected.
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0,0,0.5,1,4,0"]
    high = [f"v,1000,0.5,0,1,1,3,0.9{i:02d}" for i in range(49)]
    c4, c1 = "v,1000,0,0,0.5,1,4,0.5", "v,1000,0,0,0.5,1,1,0.5"
    assert _run(tmp_path, gt, high + [c4, c1]) == {1: 0.0, 3: None, 4: 1.0}
    assert _run(tmp_path, gt, high + [c1, c4]) == {1: 1.0, 3: None, 4: 0.0}


@pytest.mark.parametrize("text", [V21, V22])
def test_both_label_map_layouts(tmp_path: Path, text: str) -> None:
    path = tmp_path / "labelmap.pbtxt"
    path.write_text(text)
    assert read_labelmap(path) == LABELS
    gt = ["v,1000,0,0,0.5,1,1,0", "v,1000,0,0,0.5,1,3,0"]
    det = ["v,1000,0,0,0.5,1,1,0.9", "v,1000,0.5,0,1,1,3,0.9"]
    assert _run(tmp_path, gt, det, labelmap=path) == {1: 1.0, 3: 0.0, 4: None}


def test_official_labelmap_fixture_has_the_60_classes(fixtures_dir: Path) -> None:
    from vmaedet.labels import AVA_ACTIONS, AVA_EVAL_IDS

    labelmap = read_labelmap(fixtures_dir / "ava-eval-case" / "labelmap.pbtxt")
    assert tuple(labelmap) == AVA_EVAL_IDS
    assert all(labelmap[i] == AVA_ACTIONS[i - 1] for i in labelmap)


# ------------------------------------------------------------------------------------------------
# independent reading on random data (continuous scores, so no ties)


def _reference_ap(gt: AvaRows, det: AvaRows, classes: list[int], excluded: set, cap: int | None) -> dict:
    """Loop-by-loop reading of the protocol: per frame cap, per class greedy matching, VOC AP."""
    def key(rows: AvaRows, i: int) -> tuple[str, int]:
        return rows.videos[rows.video_index[i]], int(rows.timestamps[i])

    frames: dict = {}
    for i in range(len(det)):
        if int(det.action_ids[i]) in classes:
            frames.setdefault(key(det, i), []).append(i)
    gts: dict = {}
    for i in range(len(gt)):
        if int(gt.action_ids[i]) in classes and key(gt, i) not in excluded:
            gts.setdefault((key(gt, i), int(gt.action_ids[i])), []).append(gt.boxes[i])
    ranked: dict = {c: [] for c in classes}
    for fkey, rows in frames.items():
        if fkey in excluded:
            continue
        rows = sorted(rows, key=lambda i: -det.scores[i])[:cap]
        for c in classes:
            boxes = gts.get((fkey, c), [])
            taken = [False] * len(boxes)
            for i in [i for i in rows if det.action_ids[i] == c]:
                x1, y1, x2, y2 = det.boxes[i]
                if x1 >= x2 or y1 >= y2:
                    continue
                ious = []
                for gx1, gy1, gx2, gy2 in boxes:
                    iw = max(0.0, min(x2, gx2) - max(x1, gx1))
                    ih = max(0.0, min(y2, gy2) - max(y1, gy1))
                    ious.append(iw * ih / ((x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - iw * ih))
                j = int(np.argmax(ious)) if ious else -1
                hit = j >= 0 and ious[j] >= 0.5 and not taken[j]
                if hit:
                    taken[j] = True
                ranked[c].append((det.scores[i], hit))
    out = {}
    for c in classes:
        n_gt = sum(len(b) for (f, cc), b in gts.items() if cc == c)
        if not n_gt:
            out[c] = None
            continue
        tp, ap, prev_recall = 0, 0.0, 0.0
        hits = [h for _, h in sorted(ranked[c], key=lambda t: -t[0])]
        precisions = [sum(hits[: k + 1]) / (k + 1) for k in range(len(hits))]
        for k, h in enumerate(hits):  # all-point AP: at each new recall, the best precision to the right
            if h:
                tp += 1
                ap += (tp / n_gt - prev_recall) * max(precisions[k:])
                prev_recall = tp / n_gt
        out[c] = ap
    return out


def _random_case(seed: int) -> tuple[AvaRows, AvaRows, set]:
    rng = np.random.default_rng(seed)
    gv, gt_, gb, ga = [], [], [], []
    dv, dt, db, da, ds = [], [], [], [], []
    for vid in ("a", "b", "c"):
        for ts in range(900, 912):
            persons = rng.uniform(0, 0.5, (rng.integers(1, 5), 2))
            persons = np.concatenate([persons, persons + rng.uniform(0.2, 0.5, persons.shape)], axis=1)
            for p in persons:
                for c in rng.choice([1, 2, 3, 4, 5], size=rng.integers(1, 3), replace=False):
                    gv.append(vid), gt_.append(ts), gb.append(p), ga.append(int(c))
            for p in persons:  # detections jittered around every person, every class
                for c in (1, 2, 3, 4, 5):
                    box = p + rng.normal(0, 0.04, 4)
                    if rng.random() < 0.05:
                        box[2] = box[0]  # a few zero-width boxes
                    dv.append(vid), dt.append(ts), db.append(box), da.append(c), ds.append(rng.random())
            for _ in range(rng.integers(0, 4)):  # stray detections
                box = np.sort(rng.random(4).reshape(2, 2), axis=0).T.reshape(4)[[0, 2, 1, 3]]
                dv.append(vid), dt.append(ts), db.append(box), da.append(int(rng.integers(1, 6))), ds.append(rng.random())
    gt = AvaRows.from_columns(gv, gt_, gb, ga, person_ids=range(len(gv)))
    det = AvaRows.from_columns(dv, dt, db, da, scores=ds)
    return gt, det, {("b", 903), ("c", 911)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("protocol,cap", [("official", 50), ("seed", None), ("official", None)])
def test_random_cases_match_a_loop_reading_of_the_protocol(seed: int, protocol: str, cap: int | None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from vmaedet.evaluation import ava

    if cap is None and protocol == "official":  # a small cap so that it bites on these frames
        cap = 7
        monkeypatch.setattr(ava, "OFFICIAL_MAX_ROWS_PER_FRAME", 7)
    gt, det, excluded = _random_case(seed)
    classes = [1, 3, 4, 5]  # class 2 is not evaluated
    result = evaluate_frame_map(gt, det, classes, excluded, protocol)
    expected = _reference_ap(gt, det, classes, excluded, cap)
    assert result.per_class_ap.keys() == expected.keys()
    for c in classes:
        if expected[c] is None:
            assert result.per_class_ap[c] is None
        else:
            assert result.per_class_ap[c] == pytest.approx(expected[c], abs=1e-12), c
    assert 0 < result.mAP < 1


# ------------------------------------------------------------------------------------------------
# I/O


def test_read_ava_csv_columns(tmp_path: Path) -> None:
    gt = read_ava_csv(_csv(tmp_path, "gt.csv", ["vidA,0902,0.1,0.2,0.3,0.4,12,7", "", "vidB,1798,0,0,1,1,80,0"]),
                      with_scores=False)
    assert gt.videos == ("vidA", "vidB")
    assert gt.video_ids().tolist() == ["vidA", "vidB"]
    assert gt.timestamps.tolist() == [902, 1798]
    assert gt.boxes.tolist() == [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0]]
    assert gt.action_ids.tolist() == [12, 80]
    assert gt.person_ids.tolist() == [7, 0] and gt.scores is None
    seven = read_ava_csv(_csv(tmp_path, "gt7.csv", ["vidA,902,0.1,0.2,0.3,0.4,12"]), with_scores=False)
    assert seven.person_ids is None and seven.action_ids.tolist() == [12]
    det = read_ava_csv(_csv(tmp_path, "det.csv", ["a-very-long-video-id_0123456789,902,0.1,0.2,0.3,0.4,12,0.12345"]),
                       with_scores=True)
    assert det.videos == ("a-very-long-video-id_0123456789",)
    assert det.scores.tolist() == [0.12345]
    empty = read_ava_csv(_csv(tmp_path, "empty.csv", []), with_scores=True)
    assert len(empty) == 0 and empty.scores.shape == (0,)


@pytest.mark.parametrize("lines,with_scores,line_no,words", [
    (["v,902,0.1,0.2,0.3,0.4,12,0.5", "v,902,0.1,0.2,0.3,0.4,12"], True, 2, "columns"),
    (["v,902,0.1,0.2,0.3,0.4,12,0.5", "", "v,902,0.1,abc,0.3,0.4,12,0.5"], True, 3, "'y1'"),
    (["v,0902.5,0.1,0.2,0.3,0.4,12,0.5"], True, 1, "'timestamp'"),
    (["v,902,0.1,0.2,0.3,0.4,walk,0.5"], True, 1, "'action_id'"),
    (["v,902,0.1,0.2,0.3,0.4,12,0.5", "v,902,0.1,0.2,0.3,0.4,12,nan"], True, 2, "invalid value"),
    (["video_id,timestamp,x1,y1,x2,y2,action_id,person_id"], False, 1, "'timestamp'"),
    (["v,902,0.1,0.2,0.3,0.4"], False, 1, "columns"),
    (["v,902,0.1,0.2,0.3,0.4,1,0", "v,902,0.1,0.2,0.3,0.4,1,0,9"], False, 2, "columns"),
])
def test_malformed_csv_names_file_and_line(tmp_path: Path, lines: list[str], with_scores: bool,
                                           line_no: int, words: str) -> None:
    path = _csv(tmp_path, "bad.csv", lines)
    with pytest.raises(DataError) as info:
        read_ava_csv(path, with_scores=with_scores)
    message = str(info.value)
    assert f"{path}:{line_no}:" in message
    assert words in message
    assert "expected:" in message and "fix:" in message


def test_malformed_labelmap_and_exclusions(tmp_path: Path) -> None:
    bad_map = tmp_path / "map.pbtxt"
    bad_map.write_text('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n}\n')
    with pytest.raises(DataError, match=rf"{bad_map}:5"):
        read_labelmap(bad_map)
    bad_map.write_text("nothing here\n")
    with pytest.raises(DataError, match="no label entries"):
        read_labelmap(bad_map)
    excl = _csv(tmp_path, "excl.csv", ["v,0902", "v,09x2"])
    with pytest.raises(DataError, match=rf"{excl}:2"):
        read_exclusions(excl)
    assert read_exclusions(_csv(tmp_path, "ok.csv", ["v,0902", "", "w,1000"])) == {("v", 902), ("w", 1000)}
    with pytest.raises(DataError, match="cannot read"):
        read_labelmap(tmp_path / "missing.pbtxt")


def test_bad_arguments(tmp_path: Path) -> None:
    gt = _csv(tmp_path, "gt.csv", ["v,1000,0,0,0.5,1,1,0"])
    det = _csv(tmp_path, "det.csv", ["v,1000,0,0,0.5,1,1,0.9"])
    with pytest.raises(ConfigError, match="protocol"):
        evaluate_frame_map(gt, det, {1: "a"}, protocol="voc")
    with pytest.raises(DataError, match="no ground-truth box"):
        evaluate_frame_map(gt, det, {3: "c"})
    no_det = _csv(tmp_path, "none.csv", ["v,1000,0,0,0.5,1,3,0.9"])  # no detection of an evaluated class
    for protocol in ("official", "seed"):
        assert evaluate_frame_map(gt, no_det, {1: "a"}, protocol=protocol).per_class_ap == {1: 0.0}
    with pytest.raises(DataError, match="no scores"):
        evaluate_frame_map(gt, read_ava_csv(gt, with_scores=False), {1: "a"})


def test_write_ava_csv_matches_the_seed_format(tmp_path: Path) -> None:
    rows = AvaRows.from_columns(["vid", "vid"], [902, 1798], [[0.123456, 0.5, 1.0, 0.0000049], [0, 0, 1, 1]],
                                [12, 80], scores=[0.999996, 1e-7])
    path = write_ava_csv(tmp_path / "out" / "result.csv", rows)
    # '{:.5f}'.format: 0.123456 -> 0.12346, 0.0000049 -> 0.00000, 0.999996 -> 1.00000, 1e-7 -> 0.00000
    assert path.read_text() == ("vid,0902,0.12346,0.50000,1.00000,0.00000,12,1.00000\n"
                                "vid,1798,0.00000,0.00000,1.00000,1.00000,80,0.00000\n")
    back = read_ava_csv(path, with_scores=True)
    assert back.timestamps.tolist() == [902, 1798] and back.action_ids.tolist() == [12, 80]
    gt = AvaRows.from_columns(["v"], [1], [[0, 0, 1, 1]], [1], person_ids=[3])
    assert write_ava_csv(tmp_path / "gt.csv", gt).read_text() == "v,0001,0.00000,0.00000,1.00000,1.00000,1,3\n"
    assert read_ava_csv(tmp_path / "gt.csv", with_scores=False).person_ids.tolist() == [3]


def test_write_ava_csv_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    path.write_text("old\n")
    rows = AvaRows.from_columns(["v"], [1], [[0, 0, 1, 1]], [1], scores=[0.5])
    object.__setattr__(rows, "timestamps", np.array(["x"], dtype=object))  # '%04d' % 'x' fails mid-write
    with pytest.raises(TypeError):
        write_ava_csv(path, rows)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]


@pytest.mark.parametrize("protocol", ["official", "seed"])
def test_tie_shortcuts_equal_a_full_replay(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores rounded to 2 decimals (many ties): replaying every frame through the official heap and
    sorting every tied group with np.argsort gives the same APs as the shortcut that only does so
    where a tied row can be a true positive."""
    from vmaedet.evaluation import ava

    gt, det, excluded = _random_case(3)
    det = AvaRows(det.videos, det.video_index, det.timestamps, det.boxes, det.action_ids,
                  scores=np.round(det.scores, 2))
    monkeypatch.setattr(ava, "OFFICIAL_MAX_ROWS_PER_FRAME", 9)
    fast = evaluate_frame_map(gt, det, [1, 3, 4, 5], excluded, protocol)
    monkeypatch.setattr(ava, "_frames_with_relevant_ties", lambda keys, *_: np.unique(keys))
    evaluation_order = ava._evaluation_order
    monkeypatch.setattr(ava, "_evaluation_order",
                        lambda c, r, s, p, cand: evaluation_order(c, r, s, p, np.ones_like(cand)))
    full = evaluate_frame_map(gt, det, [1, 3, 4, 5], excluded, protocol)
    assert fast.per_class_ap == full.per_class_ap
    assert fast.num_detections == full.num_detections


def test_oracle_detections_are_not_taken_for_ground_truth() -> None:
    """Ground-truth rows with one constant score (an oracle sanity check) evaluate to 1.0 without a
    ground-truth-layout warning; varying integer scores on the same rows (person ids) get the warning."""
    from vmaedet.evaluation.ava import check_detection_rows
    from vmaedet.data.annotations import read_ava_csv

    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    rows = [f"v1,{900 + t},0.{t}1,0.1,0.{t + 4},0.8,{a}" for t in range(4) for a in (1, 2)]
    (d / "gt.csv").write_text("".join(f"{r},{i % 3}\n" for i, r in enumerate(rows)))
    (d / "oracle.csv").write_text("".join(f"{r},1.0\n" for r in rows))
    gt = read_ava_csv(d / "gt.csv", with_scores=False)
    assert not any("ground-truth file" in w for w in check_detection_rows(read_ava_csv(d / "oracle.csv", with_scores=True), gt))
    assert any("ground-truth file" in w for w in check_detection_rows(read_ava_csv(d / "gt.csv", with_scores=True), gt))
