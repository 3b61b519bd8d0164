"""Several sources in one run, the batched action stage, the JSONL schema and first-keyframe track ids.

Real mp4 files (:func:`vmaedet.data.video.write_video`), the ``vit_micro`` model with random weights,
proposals through the ``boxes:FILE`` person detector, so every output is deterministic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
import torch

from vmaedet.data.video import write_video
from vmaedet.engines import Engine, create_engine
from vmaedet.errors import ConfigError, StreamError
from vmaedet.models.checkpoints import save_detector
from vmaedet.models.detector import create_detector
from vmaedet.runtime.batcher import engine_max_batch
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.multi import name_sources, read_sources_file, source_output
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.stats import StreamStats
from tests.helpers.sources import DyingSource

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = jsonschema.Draft202012Validator(json.loads((ROOT / "docs" / "stream-jsonl.schema.json").read_text()))


def _frames(n: int, w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 80, (h, w, 3), dtype=np.uint8)
    out = np.repeat(base[None], n, axis=0)  # [n, h, w, 3]
    for i in range(n):
        x = 10 + (2 + seed) * i % (w - 40)
        out[i, h // 4: 3 * h // 4, x: x + 30] = (200, 120 + 10 * seed, 60)  # a moving "person"
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi")
    return {"cam_a": write_video(root / "cam_a.mp4", _frames(48, 160, 120, 0)),
            "cam_b": write_video(root / "cam_b.mp4", _frames(40, 160, 120, 1)),
            "wide": write_video(root / "wide.mp4", _frames(40, 224, 96, 2))}


@pytest.fixture(scope="module")
def proposals(videos: dict[str, Path]) -> Path:
    path = videos["cam_a"].with_name("proposals.csv")
    path.write_text("".join(f"{vid},{t},0.1,0.2,0.5,0.85,,0.9\n{vid},{t},0.55,0.1,0.9,0.9,,0.7\n"
                            for vid in videos for t in range(3)))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_detector("vit_micro")
    with torch.no_grad():  # a head with visible, varied scores
        model.head.weight.normal_(0, 0.5)
    return save_detector(model, tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _jsonl(path: Path) -> list[dict]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for line in lines:
        SCHEMA.validate(line)
    return lines


def _no_latency(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "latency_ms"} for line in lines]


class BatchEngine(Engine):
    """The real vit_micro model behind an engine that takes up to 4 clips per call and records each call.

    The torch engine accepts ``[B, 3, 16, H, W]`` once the engines' batch contract lands (helper H17b);
    this one calls the same model's ``forward`` so the runtime's batching is tested today.
    """

    name = "batch-test"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(max_batch=4)
        self.model = model.eval()
        self.calls: list[int] = []
        self.shapes: list[tuple[int, ...]] = []

    def check_inputs(self, clip: torch.Tensor, rois: torch.Tensor) -> None:
        assert clip.ndim == 5 and clip.shape[0] <= self.max_batch and rois.shape[1] == 5

    def _infer_impl(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(clip.shape[0]))
        self.shapes.append(tuple(clip.shape[2:]))
        with torch.inference_mode():
            return self.model(clip, rois).float()  # [K, 80]


def test_batched_logits_equal_one_by_one_and_batches_form(videos: dict[str, Path], proposals: Path,
                                                          checkpoint: Path) -> None:
    from vmaedet.models.checkpoints import load_detector

    engine = BatchEngine(load_detector(checkpoint))
    src = {"cam_a": videos["cam_a"], "cam_b": videos["cam_b"], "wide": videos["wide"]}  # two clip geometries
    st = StreamStats()
    batched = list(stream(src, engine, StreamConfig(max_batch=4, max_wait_ms=200), person_detector=f"boxes:{proposals}",
                          stats=st))
    assert max(engine.calls) > 1, engine.calls  # keyframes of several sources shared engine calls
    assert len({shape[1:] for shape in engine.shapes}) == 2  # the two geometries (H, W) went to separate calls
    hist = st.summary()["batcher"]["batch_sizes"]
    assert sum(int(k) * v for k, v in hist.items()) == len(batched) and any(int(k) > 1 for k in hist)
    assert "detect_batcher" not in st.summary()  # proposals (boxes:FILE) are not batchable: one call per keyframe
    engine.calls.clear()
    single = list(stream(src, engine, StreamConfig(max_batch=1), person_detector=f"boxes:{proposals}"))
    assert set(engine.calls) == {1}
    key = lambda r: (r.source, r.frame_index)  # noqa: E731
    batched, single = sorted(batched, key=key), sorted(single, key=key)
    assert [key(r) for r in batched] == [key(r) for r in single]
    assert all(len(r) == 2 for r in batched)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.raw_scores, b.raw_scores, atol=1e-5, rtol=0)


def test_batched_torch_engine_equals_one_by_one(checkpoint: Path) -> None:
    engine = create_engine("torch", checkpoint)
    if engine_max_batch(engine) < 2:
        pytest.skip("the torch engine takes one clip per call until the engines' batch contract (helper H17b) lands")
    gen = torch.Generator().manual_seed(0)
    clips = torch.randn((3, 3, 16, 128, 160), generator=gen)  # [3, 3, 16, H, W]
    rois = torch.tensor([[0, 10, 10, 80, 100], [1, 20, 5, 90, 120], [1, 50, 30, 150, 110], [2, 0, 0, 159, 127]],
                        dtype=torch.float32)  # [4, 5]
    together = engine.infer(clips, rois)  # [4, 80]
    alone = torch.cat([engine.infer(clips[int(r[0])][None], torch.cat([torch.zeros(1), r[1:]])[None]) for r in rois])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_batched_onnxruntime_engine_equals_one_by_one(checkpoint: Path, tmp_path: Path) -> None:
    import inspect

    from vmaedet.export.onnx import export_onnx
    from vmaedet.models.checkpoints import load_detector

    if "max_batch" not in inspect.signature(export_onnx).parameters:
        pytest.skip("export_onnx(..., max_batch=N) (dynamic batch, helper H17b) is not there yet")
    art = export_onnx(load_detector(checkpoint), tmp_path / "m.onnx", source_wh=(160, 120), max_persons=4,
                      max_batch=4).path
    engine = create_engine("onnxruntime", art)
    ref = create_engine("torch", checkpoint)
    gen = torch.Generator().manual_seed(1)
    hw = tuple(engine.input_hw) if engine.input_hw is not None else (128, 160)
    clips = torch.randn((2, 3, 16, *hw), generator=gen)  # [2, 3, 16, H, W]
    rois = torch.tensor([[0, 10, 10, 80, 100], [1, 20, 5, 90, 120]], dtype=torch.float32)  # [2, 5]
    together = engine.infer(clips, rois)
    alone = torch.cat([ref.infer(clips[i][None], torch.cat([torch.zeros(1), rois[i, 1:]])[None]) for i in range(2)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)


def test_each_source_gets_the_outputs_of_its_own_single_run(videos: dict[str, Path], proposals: Path,
                                                            checkpoint: Path, tmp_path: Path) -> None:
    names = ["cam_a", "cam_b", "wide"]  # two geometries: 160×120 twice, 224×96 once
    multi = tmp_path / "multi"  # one engine call per keyframe: every output byte-identical to the source's own run
    st = StreamStats()
    got = list(stream([videos[n] for n in names], checkpoint,
                      StreamConfig(save=multi, jsonl=multi / "{name}.jsonl", csv=str(multi) + os.sep,
                                   stats=tmp_path / "s.json"),
                      person_detector=f"boxes:{proposals}", stats=st))
    assert {r.source for r in got} == set(names)
    for name in names:  # each source's keyframes come in order
        idx = [r.frame_index for r in got if r.source == name]
        assert idx == sorted(idx) and idx[0] == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert set(stats["sources"]) == set(names)
    assert stats["sources"]["wide"]["frames_processed"] == 40 and stats["sources"]["cam_a"]["frames_processed"] == 48
    assert stats["counters"]["frames_processed"] == 48 + 40 + 40
    for name in names:  # fps: what the run processed per second of its wall time; source_fps: the source's own rate
        src = stats["sources"][name]
        assert src["fps"] == pytest.approx(src["frames_processed"] / src["wall_s"]) and src["source_fps"] == 25
    assert stats["fps"] == pytest.approx(stats["counters"]["frames_processed"] / stats["wall_s"])
    assert stats["batcher"]["calls"] >= 1 and stats["batcher"]["batch_sizes"]
    for name in names:
        one = tmp_path / name
        list(stream(videos[name], checkpoint, StreamConfig(save=one / "o.mp4", jsonl=one / "o.jsonl", csv=one / "o.csv"),
                    person_detector=f"boxes:{proposals}"))
        assert _frame_count(multi / f"{name}.mp4") == _frame_count(one / "o.mp4") == _frame_count(videos[name])
        assert _no_latency(_jsonl(multi / f"{name}.jsonl")) == _no_latency(_jsonl(one / "o.jsonl"))
        assert (multi / f"{name}.csv").read_bytes() == (one / "o.csv").read_bytes()
        assert (one / "o.csv").read_text().count("\n") > 0


@pytest.mark.timeout(120)
def test_a_dying_source_is_reported_and_the_others_finish(videos: dict[str, Path], proposals: Path,
                                                         checkpoint: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 2048)  # not a video: fails to open
    warned: list[str] = []
    st = StreamStats()
    out = tmp_path / "out"
    got = []
    with pytest.raises(StreamError, match="2 of 3 sources failed") as info:
        for r in stream({"ok": videos["cam_b"], "dies": DyingSource(videos["cam_a"], 20, "cam_a"), "bad": corrupt},
                        checkpoint, StreamConfig(save=out, jsonl=out, csv=out), person_detector=f"boxes:{proposals}",
                        stats=st, on_warning=warned.append):
            got.append(r)
    assert "camera unplugged" in str(info.value) and "cannot open video file" in str(info.value)
    assert any("dies failed" in w for w in warned) and any("bad failed" in w for w in warned)
    assert _frame_count(out / "ok.mp4") == 40  # the healthy source is complete
    assert [x["frame_index"] for x in _jsonl(out / "ok.jsonl") if x["type"] == "keyframe"] == list(range(0, 40, 8))
    assert _frame_count(out / "dies.mp4") == 20  # the dead one keeps what it processed
    assert not (out / "bad.mp4").exists() and not [p for p in out.iterdir() if ".tmp" in p.name]
    summary = st.summary()
    assert summary["sources"]["ok"]["error"] is None and "camera unplugged" in summary["sources"]["dies"]["error"]


def test_track_ids_are_given_on_the_first_keyframe(videos: dict[str, Path], proposals: Path, checkpoint: Path) -> None:
    got = list(stream(videos["cam_a"], checkpoint, StreamConfig(), person_detector=f"boxes:{proposals}"))
    assert len(got[0]) == 2 and (got[0].track_ids >= 0).all()
    assert all((r.track_ids == got[0].track_ids).all() for r in got)  # the same two persons keep their ids


def test_names_sources_file_and_output_paths(tmp_path: Path) -> None:
    assert [n for n, _ in name_sources(["a/clip.mp4", "b/clip.mp4", 0, "rtsp://cam.local:554/x", "frames/"])] == \
        ["clip", "clip-2", "camera0", "cam.local", "frames"]
    listing = tmp_path / "s.txt"
    listing.write_text("# cameras\ndoor\trtsp://10.0.0.2/s  # front\nhall 0\n\nyard.mp4\n")
    assert read_sources_file(listing) == {"door": "rtsp://10.0.0.2/s", "hall": "0", "yard": "yard.mp4"}
    plain = tmp_path / "p.txt"
    plain.write_text("a.mp4\nb.mp4\n")
    assert read_sources_file(plain) == ["a.mp4", "b.mp4"]
    assert source_output(tmp_path / "o" / "{name}.mp4", "save", "door", 2, "x") == tmp_path / "o" / "door.mp4"
    assert source_output(tmp_path, "jsonl", "door", 2, "x") == tmp_path / "door.jsonl"
    assert source_output(tmp_path / "o.mp4", "save", "door", 0, "x") == tmp_path / "o.mp4"
    with pytest.raises(ConfigError, match="several sources"):
        source_output(tmp_path / "o.mp4", "save", "door", 2, "the save output")
    for text, words in (("", "names no source"), ("a b c\n", "3 fields"), ("x a.mp4\nx b.mp4\n", "two sources 'x'")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=words):
            read_sources_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_sources_file(tmp_path / "missing.txt")


def test_a_plain_file_output_with_two_sources_is_refused_before_anything_opens(
        videos: dict[str, Path], proposals: Path, checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="several sources") as info:
        list(stream([videos["cam_a"], videos["cam_b"]], checkpoint, StreamConfig(save=tmp_path / "out.mp4"),
                    person_detector=f"boxes:{proposals}"))
    assert "{name}" in str(info.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.timeout(180)
def test_ctrl_c_with_several_sources_keeps_every_output(videos: dict[str, Path], proposals: Path, checkpoint: Path,
                                                        tmp_path: Path) -> None:
    long = write_video(tmp_path / "cam_a.mp4", _frames(200, 160, 120, 0))
    other = write_video(tmp_path / "cam_b.mp4", _frames(200, 160, 120, 1))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vmaedet.cli.main", "stream", "--source", str(long), "--source", str(other),
           "--checkpoint", str(checkpoint), "--detector", f"boxes:{proposals}", "--realtime", "--threshold", "0",
           "--save", str(out), "--jsonl", str(out), "--csv", str(out / "{name}.csv"), "--stats", str(tmp_path / "s.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VMAEDET_PROGRESS": "plain"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until both sources have keyframes out
        seen.append(line)
        if {s.split()[0] for s in seen if " frame " in s} >= {"cam_a", "cam_b"} or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted" in text
    for name in ("cam_a", "cam_b"):
        assert 0 < _frame_count(out / f"{name}.mp4") < 200, text
        assert [x for x in _jsonl(out / f"{name}.jsonl") if x["type"] == "keyframe"], text
        rows = (out / f"{name}.csv").read_text().splitlines()
        assert rows and all(len(r.split(",")) == 8 and r.startswith(name) for r in rows)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert set(stats["sources"]) == {"cam_a", "cam_b"}
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_cli_several_sources_from_a_list_file(videos: dict[str, Path], proposals: Path, checkpoint: Path,
                                              tmp_path: Path) -> None:
    from vmaedet.cli.main import main

    listing = tmp_path / "sources.txt"
    listing.write_text(f"# two cameras\nfront\t{videos['cam_a']}\nback {videos['cam_b']}\n")
    rc = main(["stream", "--sources", str(listing), "--checkpoint", str(checkpoint), "--detector", f"boxes:{proposals}",
               "--jsonl", str(tmp_path / "{name}.jsonl"), "--max-batch", "2", "--quiet"])
    assert rc == 0
    for name, n in (("front", 48), ("back", 40)):
        lines = _jsonl(tmp_path / f"{name}.jsonl")
        assert {x["source"] for x in lines} == {name}
        assert [x["frame_index"] for x in lines if x["type"] == "keyframe"] == list(range(0, n, 8))
