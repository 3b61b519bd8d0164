"""Bad input and faults for ``stream``, ``eval`` and the Python ``Predictor`` (issue 14).

Every CLI case runs the real entry point through :mod:`helpers.badinput` and asserts: no traceback, the
exit code, the words of the message, every file that existed before byte-identical after, and no file
left behind (no temporary file, no partial output). The API cases assert a ``ValueError`` that names
what was received. Ctrl-C is sent to a real ``vmaedet stream`` subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers.badinput import Case, run_case

W, H, N_FRAMES = 64, 48, 40

# --------------------------------------------------------------------------------------------------
# fixtures: a tiny video, a vit_micro checkpoint, proposals, a label map and ground truth


def _write_video(path: Path, n: int, faststart: bool = False) -> Path:
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            img = np.full((H, W, 3), 40, np.uint8)
            img[10:40, 5 + i % 30:20 + i % 30] = (200, 120, 60)
            img[:, :, 2] = (40 + 7 * i) % 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vmaedet.models.checkpoints import save_detector
    from vmaedet.models.detector import create_detector

    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    ckpt = save_detector(create_detector("vit_micro"), root / "micro.safetensors")
    video = _write_video(root / "clip.mp4", N_FRAMES)
    full = _write_video(root / "long.mp4", 100, faststart=True)
    cut = root / "cut.mp4"  # a fast-start mp4 (frame count declared up front) missing its second half
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    props = root / "props.csv"
    props.write_text("".join(f"{v},{t},0.1,0.2,0.6,0.9,,0.9\n" for v in ("clip", "cut") for t in range(4)))
    other = root / "other_props.csv"
    other.write_text("".join(f"another_video,{t},0.1,0.2,0.6,0.9,,0.9\n" for t in range(4)))
    not_onnx = root / "detector.onnx"
    not_onnx.write_text("this is not an ONNX graph\n")
    labelmap = root / "labelmap.pbtxt"
    labelmap.write_text("".join(f'item {{ name: "action {i}" id: {i} }}\n' for i in (1, 2, 3)))
    gt_rows = [f"v1,{900 + t},0.{t}1,0.1,0.{t + 4},0.8,{a},{p}" for t in range(4) for a, p in ((1, 0), (2, 1))]
    gt = root / "gt.csv"
    gt.write_text("\n".join(gt_rows) + "\n")
    det = root / "det.csv"
    det.write_text("".join(f"v1,{900 + t},0.{t}1,0.1,0.{t + 4},0.8,{a},0.{5 + t}\n" for t in range(4) for a in (1, 2, 3)))
    return {"ckpt": ckpt, "video": video, "cut": cut, "props": props, "other": other, "not_onnx": not_onnx,
            "labelmap": labelmap, "gt": gt, "det": det, "root": root}


def _fill(case: Case, assets: dict[str, Path]) -> Case:
    argv = list(case.argv)
    for key, path in assets.items():
        argv = [a.replace("{" + key + "}", str(path)) for a in argv]
    return replace(case, argv=argv)


def _stream(*extra: str) -> list[str]:
    return ["stream", "--source", "{video}", "--checkpoint", "{ckpt}", "--detector", "boxes:{props}", "--stride", "25",
            "--quiet", *extra]


# --------------------------------------------------------------------------------------------------
# stream: usage, inputs, outputs


STREAM_CASES = [
    Case("save-is-the-source", ["stream", "--source", "{tmp}/in.mp4", "--checkpoint", "{ckpt}", "--save", "{tmp}/in.mp4"],
         2, ["same file", "--save", "--source", "destroy"]),
    Case("jsonl-is-the-source", ["stream", "--source", "{tmp}/in.mp4", "--checkpoint", "{ckpt}", "--jsonl", "{tmp}/in.mp4"],
         2, ["same file", "--jsonl", "--source"]),
    Case("csv-is-the-proposals", ["stream", "--source", "{video}", "--checkpoint", "{ckpt}", "--detector",
                                  "boxes:{tmp}/props.csv", "--csv", "{tmp}/props.csv"], 2, ["same file", "--csv", "--detector"]),
    Case("stats-is-the-checkpoint", _stream("--stats", "{ckpt}"), 2, ["same file", "--stats", "--checkpoint"]),
    Case("save-exists", _stream("--save", "{tmp}/old.mp4"), 2, ["already exists", "--overwrite"]),
    Case("jsonl-exists", _stream("--jsonl", "{tmp}/old.jsonl"), 2, ["already exists", "--overwrite"]),
    Case("stats-exists", _stream("--stats", "{tmp}/old.json"), 2, ["already exists", "--overwrite"]),
    Case("two-outputs-one-file", _stream("--jsonl", "{tmp}/x.out", "--csv", "{tmp}/x.out"), 2, ["same file", "--csv"]),
    Case("save-txt", _stream("--save", "{tmp}/out.txt"), 2, ["not a video container", ".mp4"]),
    Case("save-no-suffix", _stream("--save", "{tmp}/out"), 2, ["not a video container", "no suffix"]),
    Case("save-a-folder", _stream("--save", "{tmp}"), 2, ["folder", "out.mp4"]),
    Case("backend-tflite", _stream("--backend", "tflite"), 2, ["unknown backend", "tflite", "drop --backend"]),
    Case("backend-onnxruntime-with-checkpoint", _stream("--backend", "onnxruntime"), 2,
         ["exported artifact", "vmaedet export", "--engine"]),
    Case("source-dev-zero", ["stream", "--source", "/dev/zero", "--checkpoint", "{ckpt}"], 2,
         ["character device", "not a video file"]),
    Case("source-missing", ["stream", "--source", "{tmp}/missing.mp4", "--checkpoint", "{ckpt}"], 2, ["source not found"]),
    Case("source-not-a-video", ["stream", "--source", "{tmp}/fake.mp4", "--checkpoint", "{ckpt}", "--detector", "boxes:{props}",
                                "--jsonl", "{tmp}/e.jsonl", "--save", "{tmp}/e.mp4"],  # opened, then removed: nothing left
         2, ["cannot open video file", "ffprobe"]),
    Case("camera-missing", ["stream", "--camera", "7", "--checkpoint", "{ckpt}", "--detector", "boxes:{props}"], 2,
         ["cannot open camera 7"]),
    Case("detector-not-onnx", _stream("--detector", "onnx:{not_onnx}"), 2, ["not an ONNX model", "detector.onnx"]),
    Case("detector-proposals-missing", _stream("--detector", "boxes:{tmp}/nope.csv"), 2, ["not found", "nope.csv"]),
    Case("no-source", ["stream", "--checkpoint", "{ckpt}"], 2, ["no source", "--source", "--sources"]),
    # several sources: a dead camera is reported, the file source still finishes, the exit status says it failed
    Case("source-and-missing-camera", _stream("--camera", "7", "--jsonl", "{tmp}/{name}.jsonl"), 2,
         ["camera7 failed", "cannot open camera 7", "1 of 2 sources failed"], may_create=["clip.jsonl"]),
    Case("save-one-file-for-two-sources", _stream("--source", "{video}", "--save", "{tmp}/out.mp4"), 2,
         ["--save", "several sources", "{name}"]),
    Case("sources-file-missing", ["stream", "--sources", "{tmp}/nope.txt", "--checkpoint", "{ckpt}"], 2,
         ["--sources", "does not exist", "nope.txt"]),
    Case("sources-file-empty", ["stream", "--sources", "{tmp}/empty.txt", "--checkpoint", "{ckpt}"], 2,
         ["--sources", "names no source"]),
    Case("sources-file-bad-line", ["stream", "--sources", "{tmp}/bad.txt", "--checkpoint", "{ckpt}"], 2,
         ["line 2", "3 fields", "name uri"]),
    Case("stride-zero", _stream("--stride", "0"), 2, ["--stride"]),
    Case("proposals-without-this-video", _stream("--detector", "boxes:{other}"), 0,
         ["warning", "no rows for the video 'clip'", "0 persons", "[stream] frames 40/40", "elapsed"]),
    Case("file-cut-short", ["stream", "--source", "{cut}", "--checkpoint", "{ckpt}", "--detector", "boxes:{props}",
                            "--stride", "25", "--quiet"], 0, ["warning", "ended after", "of 100 frames", "cut short"]),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", STREAM_CASES, ids=[c.id for c in STREAM_CASES])
def test_stream_bad_input(case: Case, assets: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(assets["video"], tmp_path / "in.mp4")
    shutil.copy(assets["props"], tmp_path / "props.csv")
    (tmp_path / "fake.mp4").write_text("not a video, despite the name\n")
    (tmp_path / "empty.txt").write_text("# no source here\n\n")
    (tmp_path / "bad.txt").write_text(f"front\t{assets['video']}\nback two {assets['video']}\n")
    for name in ("old.mp4", "old.jsonl", "old.json"):
        (tmp_path / name).write_text("written by an earlier run\n")
    text = run_case(_fill(case, assets), tmp_path, watch=[assets["root"]])
    if case.id == "camera-missing":  # OpenCV's own warnings are silenced; one clear error remains
        assert "WARN" not in text and "obsensor" not in text


def test_a_missing_camera_gives_one_error_without_opencv_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    from vmaedet.errors import StreamError
    from vmaedet.runtime.sources import CaptureSource

    with pytest.raises(StreamError, match="cannot open camera 7"):
        CaptureSource(7).open()
    err = capfd.readouterr().err  # OpenCV logs to file descriptor 2 directly, not through sys.stderr
    assert "WARN" not in err and "ERROR" not in err, err


def _fault(exc_errno: int) -> OSError:
    return OSError(exc_errno, os.strerror(exc_errno))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("output, words", [
    ("--jsonl", ["--jsonl", "no space left"]),
    ("--save", ["--save", "no space left"]),
    ("--csv", ["--csv", "no space left"]),
])
def test_a_full_disk_names_the_output_and_leaves_no_partial_file(output: str, words: list[str], assets: dict[str, Path],
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vmaedet.runtime.sinks as sinks

    def no_space(*args: object, **kwargs: object) -> None:
        raise _fault(errno.ENOSPC)

    method = {"--jsonl": (sinks.JsonlSink, "write"), "--save": (sinks.Mp4Sink, "write"), "--csv": (sinks.AvaCsvSink, "add")}
    monkeypatch.setattr(*method[output], no_space)
    (tmp_path / "earlier.txt").write_text("an earlier result\n")
    suffix = {"--jsonl": "jsonl", "--save": "mp4", "--csv": "csv"}[output]
    case = Case(f"full-disk{output}", _stream(output, f"{{tmp}}/out.{suffix}", "--threshold", "0"), 2, words)
    run_case(_fill(case, assets), tmp_path, watch=[assets["root"]])
    assert not (tmp_path / f"out.{suffix}").exists()


@pytest.mark.timeout(120)
def test_a_read_only_folder_is_refused_before_the_run(assets: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise _fault(errno.EROFS)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    case = Case("read-only", _stream("--csv", "{tmp}/out.csv"), 2, ["--csv", "read-only", "out.csv"])
    run_case(_fill(case, assets), tmp_path, watch=[assets["root"]])


@pytest.mark.timeout(120)
def test_overwrite_replaces_an_existing_output_only_when_asked(assets: dict[str, Path], tmp_path: Path) -> None:
    from vmaedet.cli.main import main

    out = tmp_path / "events.jsonl"
    out.write_text("written by an earlier run\n")
    assert main(_fill(Case("x", _stream("--jsonl", str(out), "--threshold", "0"), 2), assets).argv) == 2
    assert out.read_text() == "written by an earlier run\n"
    assert main(_fill(Case("x", _stream("--jsonl", str(out), "--threshold", "0", "--overwrite"), 0), assets).argv) == 0
    assert out.read_text() != "written by an earlier run\n"
    assert all(json.loads(line)["type"] in ("keyframe", "event") for line in out.read_text().splitlines())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]  # no temporary file left


@pytest.mark.timeout(120)
def test_ctrl_c_finalises_every_output_writes_stats_and_exits_130(assets: dict[str, Path], tmp_path: Path) -> None:
    video = _write_video(tmp_path / "clip.mp4", 250)  # 10 s played in real time: long enough to interrupt
    outs = {"save": tmp_path / "o.mp4", "jsonl": tmp_path / "o.jsonl", "csv": tmp_path / "o.csv", "stats": tmp_path / "o.json"}
    cmd = [sys.executable, "-m", "vmaedet.cli.main", "stream", "--source", str(video), "--checkpoint", str(assets["ckpt"]),
           "--detector", f"boxes:{assets['props']}", "--realtime", "--threshold", "0",
           *[a for k, v in outs.items() for a in (f"--{k}", str(v))]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VMAEDET_PROGRESS": "plain"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the second keyframe is out: the run is under way
        seen.append(line)
        if line.startswith("frame") and len([s for s in seen if s.startswith("frame")]) >= 2 or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted" in text
    stats = json.loads(outs["stats"].read_text())
    assert 0 < stats["counters"]["frames_processed"] < 250
    with av.open(str(outs["save"])) as c:  # a playable, finalised video with the frames drawn so far
        frames = sum(1 for _ in c.decode(video=0))
    assert 0 < frames < 250
    lines = [json.loads(line) for line in outs["jsonl"].read_text().splitlines()]
    assert all(line["type"] in ("keyframe", "event") for line in lines)
    assert [line["type"] for line in lines].count("keyframe") >= 2  # the keyframes printed before Ctrl-C
    rows = outs["csv"].read_text().splitlines()
    assert rows and all(len(r.split(",")) == 8 for r in rows)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.timeout(120)
def test_ctrl_c_names_only_the_kept_outputs_and_reports_each_failed_one(assets: dict[str, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """After Ctrl-C the video's final write (disk full) and the --stats write fail: neither is called kept."""
    import vmaedet.runtime.sinks as sinks
    from vmaedet.runtime.stats import StreamStats
    from vmaedet.structures import ActionDetections

    def ctrl_c(*args: object, **kwargs: object) -> None:  # Ctrl-C in the CLI's loop, at the first keyframe
        raise KeyboardInterrupt

    def no_space(*args: object, **kwargs: object) -> None:
        raise _fault(errno.ENOSPC)

    monkeypatch.setattr(ActionDetections, "top_actions", ctrl_c)
    monkeypatch.setattr(sinks.Mp4Sink, "close", no_space)  # the frames drawn so far reach the video, its close fails
    monkeypatch.setattr(StreamStats, "write_json", no_space)
    argv = [a for a in _stream("--save", "{tmp}/o.mp4", "--jsonl", "{tmp}/o.jsonl", "--stats", "{tmp}/o.json",
                               "--threshold", "0") if a != "--quiet"]
    case = Case("ctrl-c-failed-outputs", argv, 130, ["interrupted", "--save", "--stats", "no space left"],
                may_create=["o.jsonl"])
    text = run_case(_fill(case, assets), tmp_path, watch=[assets["root"]])
    kept = [line for line in text.splitlines() if "kept what was processed" in line]
    assert len(kept) == 1, text
    assert kept[0].split("kept what was processed in ", 1)[1].strip().split(", ") == [str(tmp_path / "o.jsonl")], text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert any("--save" in e and "o.mp4" in e and "no space left" in e for e in errors), text
    assert any("--stats" in e and "o.json" in e and "no space left" in e for e in errors), text
    assert (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.json").exists()


@pytest.mark.timeout(120)
def test_a_failed_second_output_leaves_no_temporary_file_of_the_first(assets: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = tempfile.mkstemp
    calls = []

    def second_read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        calls.append(args)
        if len(calls) >= 2:  # --jsonl's temporary file exists, --csv's cannot be made
            raise _fault(errno.EROFS)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkstemp", second_read_only)
    case = Case("second-output-read-only", _stream("--jsonl", "{tmp}/out.jsonl", "--csv", "{tmp}/out.csv"), 2,
                ["--csv", "read-only", "out.csv"])
    run_case(_fill(case, assets), tmp_path, watch=[assets["root"]])  # no .out.jsonl.*.tmp left behind
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------------
# eval


def _eval(gt: str = "{gt}", det: str = "{det}") -> list[str]:
    return ["eval", "--gt", gt, "--detections", det, "--labelmap", "{labelmap}"]


EVAL_CASES = [
    Case("gt-inverted-box", _eval(gt="{tmp}/gt_inverted.csv"), 2, ["inverted", "x1 > x2", "line 2", "1 of 8"]),
    Case("gt-as-detections", _eval(det="{gt}"), 0, ["warning", "looks like a ground-truth file", "person ids"]),
    Case("det-scores-outside-0-1", _eval(det="{tmp}/det_big.csv"), 0, ["warning", "outside [0, 1]", "12 of 12"]),
    Case("det-duplicated-rows", _eval(det="{tmp}/det_dup.csv"), 0, ["warning", "3 of 15 rows repeat"]),
    Case("det-nan-score", _eval(det="{tmp}/det_nan.csv"), 2, ["det_nan.csv:1", "non-finite"]),
    Case("det-seven-columns", _eval(det="{gt7}"), 2, ["expected 8 columns"]),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=[c.id for c in EVAL_CASES])
def test_eval_bad_input(case: Case, assets: dict[str, Path], tmp_path: Path) -> None:
    gt = assets["gt"].read_text().splitlines()
    gt[1] = "v1,900,0.5,0.1,0.2,0.8,2,1"  # x1 > x2
    (tmp_path / "gt_inverted.csv").write_text("\n".join(gt) + "\n")
    det = assets["det"].read_text().splitlines()
    (tmp_path / "det_big.csv").write_text("".join(r.rsplit(",", 1)[0] + f",{5.5 + i}\n" for i, r in enumerate(det)))
    (tmp_path / "det_dup.csv").write_text("\n".join(det + det[:3]) + "\n")
    (tmp_path / "det_nan.csv").write_text("\n".join([det[0].rsplit(",", 1)[0] + ",nan"] + det[1:]) + "\n")
    (tmp_path / "gt7.csv").write_text("".join(r.rsplit(",", 1)[0] + "\n" for r in assets["gt"].read_text().splitlines()))
    run_case(_fill(case, {**assets, "gt7": tmp_path / "gt7.csv"}), tmp_path, watch=[assets["root"]])


def test_eval_api_refuses_inverted_ground_truth_rows_and_reports_warnings(assets: dict[str, Path]) -> None:
    from vmaedet.errors import DataError
    from vmaedet.evaluation import AvaRows, evaluate_frame_map
    from vmaedet.evaluation.ava import EvalWarning

    gt = AvaRows.from_columns(["v"] * 2, [1, 1], [[0.1, 0.1, 0.5, 0.5], [0.6, 0.1, 0.2, 0.5]], [1, 1])
    det = AvaRows.from_columns(["v"], [1], [[0.1, 0.1, 0.5, 0.5]], [1], scores=[0.9])
    with pytest.raises(DataError, match="inverted"):
        evaluate_frame_map(gt, det, [1])
    det2 = AvaRows.from_columns(["v"] * 2, [1, 1], [[0.1, 0.1, 0.5, 0.5]] * 2, [1, 1], scores=[1.5, 1.5])
    with pytest.warns(EvalWarning):
        res = evaluate_frame_map(AvaRows.from_columns(["v"], [1], [[0.1, 0.1, 0.5, 0.5]], [1]), det2, [1])
    assert len(res.warnings) == 2 and "warnings" in res.to_json()


# --------------------------------------------------------------------------------------------------
# Python API: Predictor


@pytest.fixture(scope="module")
def predictor():  # noqa: ANN201
    from vmaedet import Predictor
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    return Predictor(create_detector("vit_micro"))


_F = np.zeros((16, 32, 48, 3), np.uint8)  # W = 48, H = 32
_OK = np.array([[4.0, 4.0, 30.0, 28.0]])

API_CASES = [
    ("boxes-with-a-score-column", dict(boxes=np.array([[4, 4, 30, 28, 0.9]])), ["shape [N, 4]", "(1, 5)", "person_scores"]),
    ("boxes-3d", dict(boxes=np.zeros((1, 2, 4))), ["shape [N, 4]", "(1, 2, 4)"]),
    ("boxes-flat", dict(boxes=np.array([4.0, 4.0, 30.0, 28.0])), ["shape [N, 4]", "boxes[None]"]),
    ("boxes-strings", dict(boxes=[["a", "b", "c", "d"]]), ["numbers"]),
    ("box-nan", dict(boxes=np.array([[4, 4, np.nan, 28]])), ["not finite", "nan"]),
    ("box-inf", dict(boxes=np.array([[4, 4, np.inf, 28]])), ["not finite", "inf"]),
    ("box-inverted", dict(boxes=np.array([[30, 4, 4, 28]])), ["inverted", "x1 < x2"]),
    ("box-zero-area", dict(boxes=np.array([[4, 4, 4, 28]])), ["zero area"]),
    ("box-wholly-outside", dict(boxes=np.array([[100, 100, 120, 130]])), ["wholly outside", "48×32"]),
    ("box-left-of-the-frame", dict(boxes=np.array([[-30, 4, -2, 28]])), ["wholly outside"]),
    ("score-nan", dict(person_scores=np.array([np.nan])), ["not a probability", "[0, 1]"]),
    ("score-negative", dict(person_scores=np.array([-0.5])), ["-0.5", "outside [0, 1]"]),
    ("score-above-one", dict(person_scores=np.array([3.0])), ["outside [0, 1]"]),
    ("scores-count", dict(person_scores=np.ones(3)), ["one score per box", "(3,)"]),
    ("frames-of-two-sizes", dict(frames=[np.zeros((32, 48, 3), np.uint8)] * 15 + [np.zeros((30, 48, 3), np.uint8)]),
     ["differ in size", "frame 15", "(30, 48, 3)"]),
    ("frames-float", dict(frames=np.zeros((16, 32, 48, 3), np.float32)), ["uint8", "float32"]),
    ("frames-eight", dict(frames=np.zeros((8, 32, 48, 3), np.uint8)), ["[16, H, W, 3]", "(8, 32, 48, 3)"]),
    ("frames-gray", dict(frames=np.zeros((16, 32, 48), np.uint8)), ["[16, H, W, 3]"]),
]


@pytest.mark.parametrize("name, kwargs, words", API_CASES, ids=[c[0] for c in API_CASES])
def test_predictor_refuses_bad_input(predictor, name: str, kwargs: dict, words: list[str]) -> None:  # noqa: ANN001
    args = {"frames": _F, "boxes": _OK, "person_scores": None, **kwargs}
    with pytest.raises(ValueError) as info:
        predictor(args["frames"], args["boxes"], args["person_scores"])
    text = str(info.value)
    for word in words:
        assert word in text, f"{name}: {word!r} not in {text!r}"
    assert "expected" in text and "fix" in text


def test_predictor_clips_a_box_partly_outside_the_frame(predictor) -> None:  # noqa: ANN001
    out = predictor(_F, np.array([[-10.0, -5.0, 30.0, 40.0]]), np.array([0.8]))
    assert out.action_scores.shape == (1, 80)
    assert np.isfinite(out.action_scores).all() and (out.action_scores >= 0).all() and (out.action_scores <= 0.8).all()
