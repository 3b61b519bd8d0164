"""Detections → AVA CSV as the seed's prepare_for_ava_detection + write_csv (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmaedet.data.detections import detections_to_rows, write_detections_csv
from vmaedet.errors import DataError


def test_rows_hand_computed_and_csv_format(tmp_path):
    boxes = torch.tensor([[100.0, 50.0, 200.0, 150.0], [0.0, 0.0, 454.0, 255.0]])
    scores = torch.linspace(0, 1, 160).reshape(2, 80)
    rows = detections_to_rows(boxes, scores, "vid", 902, (455, 256), (640, 360))
    assert len(rows) == 160 and [r[6] for r in rows[:80]] == list(range(1, 81))
    # x1 = 100·(640/455)/640 = 100/455; x2 = (200·640/455 + 1)/640; y likewise with 360/256
    want = (100 / 455, 50 / 256, 200 / 455 + 1 / 640, 150 / 256 + 1 / 360)
    np.testing.assert_allclose(rows[0][2:6], want, rtol=1e-6)
    # second box: x2 = (454·640/455 + 1)/640 = 0.99936…, y2 = (255·360/256 + 1)/360 = 0.99887… (< 1)
    np.testing.assert_allclose(rows[80][4:6], (454 / 455 + 1 / 640, 255 / 256 + 1 / 360), rtol=1e-6)
    path = write_detections_csv(tmp_path / "det.csv", rows)
    lines = path.read_text().splitlines()
    assert len(lines) == 160
    assert lines[0] == f"vid,0902,{want[0]:.5f},{want[1]:.5f},{want[2]:.5f},{want[3]:.5f},1,0.00000"
    assert lines[159].endswith(",80,1.00000")


def test_clip_to_unit_range():
    rows = detections_to_rows(np.array([[-5.0, -5.0, 455.0, 256.0]]), np.ones((1, 80)), "v", 3, (455, 256), (640, 360))
    assert rows[0][2:6] == (0.0, 0.0, 1.0, 1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(DataError, match="one row per box"):
        detections_to_rows(np.zeros((2, 4)), np.zeros((3, 80)), "v", 3, (455, 256), (640, 360))
