"""benchmarks/bench_precision_map.py --smoke: every engine × precision row, ΔmAP from two real evaluations.

Real onnxruntime and OpenVINO, vit_micro (random weights, a head of realistic logit scale) on a
2-video synthetic dataset: the script exports fp32 and int8 (calibrated on train), evaluates val
with each engine and writes the JSON.  The test re-evaluates the detection CSVs the rows name with
the official evaluator, independently of the script, and checks that each ΔmAP is the difference of
those two evaluations.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers.scripts import load_script
from vmaedet.evaluation.ava import evaluate_frame_map

bench = load_script("benchmarks/bench_precision_map.py", "bench_precision_map")


@pytest.mark.slow
def test_smoke_rows_and_delta_map_from_two_evaluations(tmp_path: Path) -> None:
    out = tmp_path / "pm.json"
    assert bench.main(["--smoke", "--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["smoke"] is True and doc["environment"]["cpu"] and doc["map_abs_bound"] == 0.01
    rows = {(r["engine"], r["precision"]): r for r in doc["rows"]}
    assert list(rows) == list(bench.ROWS)  # every engine × precision, the reference first
    assert doc["int8_export"]["calibration"]["split"] == "train" and doc["val"]["keyframes"] >= 1

    ref = rows[("torch", "fp32")]
    data = Path(doc["data"]) / "annotations"
    gt = data / "val.csv"
    labelmap = data / "labelmap.pbtxt"
    excl = data / "excluded_val.csv"

    def official(csv_path: str) -> float:
        return evaluate_frame_map(gt, csv_path, labelmap=labelmap, exclusions=excl if excl.is_file() else None).mAP

    ref_map = official(ref["detections_csv"])
    assert ref["mAP"] == pytest.approx(ref_map, abs=1e-12) and ref["delta_mAP"] == 0.0
    assert doc["torch_fp32_cross_check"]["abs_difference"] <= 1e-9  # the demo's own evaluation agrees

    def scores(csv_path: str) -> list[float]:
        with open(csv_path) as fh:
            return [float(r[7]) for r in csv.reader(fh)]

    for key, row in rows.items():
        if "refused" in row:  # only OpenVINO bf16, and only on a CPU without native bf16
            assert key == ("openvino", "bf16") and "bf16" in row["refused"]
            continue
        mine = official(row["detections_csv"])
        assert row["mAP"] == pytest.approx(mine, abs=1e-12)
        assert row["delta_mAP"] == pytest.approx(mine - ref_map, abs=1e-12)
        assert row["abs_delta_mAP"] == pytest.approx(abs(mine - ref_map), abs=1e-12)
        assert row["passed"] is (row["abs_delta_mAP"] <= 0.01)
        assert row["detection_rows"] == len(scores(row["detections_csv"])) > 0
    # the int8 rows ran the int8 graph: their detection files differ from the fp32 ones (not a copy)
    int8_scores, fp32_scores = scores(rows[("onnxruntime", "int8")]["detections_csv"]), scores(ref["detections_csv"])
    assert len(int8_scores) == len(fp32_scores) and int8_scores != fp32_scores
    assert rows[("onnxruntime", "int8")]["vs_torch_fp32"]["mean_abs_score"] > 0
