"""The action batcher's stats: one ``action_batch`` sample per engine call, each keyframe's share as ``action``.

A real torch engine (``vit_micro``, random weights) behind :class:`~vmaedet.runtime.batcher.Batcher`:
three keyframe jobs handed over together form one call (a job without persons needs none); the
table shows a ``*_batch`` row only where calls held several keyframes.
"""

from __future__ import annotations

import io
import threading

import pytest
import torch
from rich.console import Console

from vmaedet.engines import open_engine
from vmaedet.runtime.batcher import ActionJob, Batcher
from vmaedet.runtime.stats import StreamStats
from helpers.models import micro_detector


def _rows(st: StreamStats) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(st.table())
    return [ln.split("│")[1].strip() for ln in out.getvalue().splitlines() if ln.startswith("│")]


def test_one_call_sample_and_a_share_per_keyframe() -> None:
    engine = open_engine(micro_detector(), "torch")
    st = StreamStats()
    batcher = Batcher(engine, st, max_batch=3, max_wait=5.0)  # three jobs queued before it starts: one full batch
    gen = torch.Generator().manual_seed(0)
    answers: dict[int, torch.Tensor] = {}
    done = threading.Event()

    def answer(i: int):  # type: ignore[no-untyped-def]
        def on(logits, error):  # type: ignore[no-untyped-def]
            assert error is None
            answers[i] = logits
            if len(answers) == 3:
                done.set()
        return on

    rois = [torch.tensor([[0, 4, 4, 40, 60]], dtype=torch.float32), torch.zeros((0, 5)),
            torch.tensor([[0, 8, 2, 30, 50], [0, 20, 10, 60, 62]], dtype=torch.float32)]
    clips = [torch.randn((1, 3, 16, 64, 64), generator=gen) for _ in rois]  # [1, 3, 16, H, W] each
    for i, (clip, r) in enumerate(zip(clips, rois)):
        batcher.submit(ActionJob(clip, r, answer(i)))
    batcher.start()
    assert done.wait(60)
    batcher.close()
    batcher.join(10)
    assert [tuple(answers[i].shape) for i in range(3)] == [(1, 80), (0, 80), (2, 80)]
    for i in (0, 2):  # the batched logits are each clip's own
        torch.testing.assert_close(answers[i], engine.infer(clips[i], rois[i]), atol=1e-5, rtol=0)
    s = st.summary()
    call, share = s["stages"]["action_batch"], s["stages"]["action"]
    assert call["count"] == 1 and share["count"] == 2  # the keyframe without persons needs no call
    assert share["mean_ms"] == pytest.approx(call["mean_ms"] / 2) and share["max_ms"] == pytest.approx(share["p50_ms"])
    summary = batcher.summary()
    assert summary["batch_sizes"] == {"2": 1} and summary["keyframes_without_persons"] == 1 and summary["jobs"] == 3
    st.info["batcher"], st.info["sources"] = summary, {}
    rows = _rows(st)
    assert "action" in rows and "action_batch" in rows and "action calls ×2" in rows and "action wait" in rows


def test_the_table_leaves_out_a_batch_row_of_single_calls() -> None:
    st = StreamStats()
    for seconds in (0.01, 0.02, 0.03):
        st.add("action_batch", seconds)
        st.add("action", seconds)
    rows = _rows(st)
    assert "action" in rows and "action_batch" not in rows  # one keyframe per call: the same figures
    assert "action_batch" in st.summary()["stages"]  # the JSON keeps it
