"""The typed manifest (``vmaedet.artifacts``): read by attribute, written with the same JSON keys.

* an exported manifest reads into frozen dataclasses whose values are the JSON's, and writes back
  to exactly the JSON on disk (old artifacts keep loading; nothing is lost or renamed);
* a minimal hand-written manifest (older, fewer keys) loads with defaults and keeps its keys;
* another format, a missing field or a mistyped one is refused with an EngineError naming it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from vmaedet.artifacts import (MANIFEST_FORMAT, ArtifactManifest, check_expectations, manifest_path, read_manifest,
                               sha256_file, validate, write_manifest)
from vmaedet.errors import EngineError

HW = (64, 96)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models import create_detector

    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    return export_onnx(model, tmp_path_factory.mktemp("art") / "m.onnx", input_hw=HW, max_persons=4).path


def test_an_export_reads_typed_and_writes_back_the_same_json(exported: Path, tmp_path: Path) -> None:
    raw = json.loads(manifest_path(exported).read_text())
    m = read_manifest(exported)
    assert isinstance(m, ArtifactManifest) and m.format == MANIFEST_FORMAT
    assert m.input.clip_hw == HW and m.input.clip_shape == (1, 3, 16, *HW) and m.input.max_persons == 4
    assert m.input.names.as_dict() == raw["input"]["names"] and m.precision == raw["precision"] == "fp32"
    assert m.artifact.sha256 == sha256_file(exported) and m.artifact.external_data is None
    assert m.verification is not None and m.verification.stats() == {
        k: raw["verification"][k] for k in ("max_abs_logit", "mean_abs_logit", "max_abs_score", "top5_agreement")}
    assert [c.k for c in m.verification.cases] == [c["k"] for c in raw["verification"]["cases"]]
    assert dict(m.tolerances) == raw["tolerances"] and m.model is not None and m.model.num_classes == 80
    assert m.tensorrt is None and m.to_dict() == raw
    assert list(m.to_dict()) == list(raw) and list(m.to_dict()["input"]) == list(raw["input"])  # same key order
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.precision = "fp16"  # type: ignore[misc]
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(exported.read_bytes())
    write_manifest(copy, m)
    assert json.loads(manifest_path(copy).read_text()) == raw


def test_a_minimal_older_manifest_loads_with_defaults_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.engine"
    path.write_bytes(b"plan")
    data = {"format": MANIFEST_FORMAT, "precision": "fp16",
            "artifact": {"file": "m.engine", "format": "tensorrt", "sha256": sha256_file(path)},
            "input": {"names": {"clip": "clip", "rois": "rois", "output": "logits"}, "clip_shape": [1, 3, 16, 64, 80],
                      "clip_hw": [64, 80], "max_persons": 8},
            "tensorrt": {"version": "10.13.0", "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
                         "roi_align": {"mode": "plugin", "aot": True}}}
    write_manifest(path, data)
    m = read_manifest(path)
    assert m.input.short_side == 256 and m.input.clip_len == 16 and m.num_classes == 80 and m.verification is None
    assert m.tensorrt is not None and m.tensorrt.gpu.name == "NVIDIA H100 80GB HBM3"  # type: ignore[union-attr]
    assert m.tensorrt.roi_align.kind == "aot" and m.tensorrt.version_compatible is False
    assert m.input.max_batch == 1 and m.tensorrt.profile_batch is None  # written before batching: one clip
    written = json.loads(manifest_path(path).read_text())
    assert set(written) == set(data) and set(written["input"]) == set(data["input"])  # no max_batch added
    assert written["artifact"] == data["artifact"]


def test_max_batch_and_the_batch_profile_round_trip(exported: Path, tmp_path: Path) -> None:
    raw = json.loads(manifest_path(exported).read_text())
    assert raw["input"]["max_batch"] == 1  # a new export records it, 1 by default
    raw["input"]["max_batch"] = 4
    raw["verification"]["cases"].append({**raw["verification"]["cases"][-1], "k": 8, "batch": 4})
    raw["tensorrt"] = {"version": "10.13.0", "profile_persons": [1, 8, 64], "profile_batch": [1, 4, 4]}
    m = validate(raw, source="m.json")
    assert m.input.max_batch == 4 and m.tensorrt.profile_batch == (1, 4, 4)  # type: ignore[union-attr]
    assert [c.batch for c in m.verification.cases][-2:] == [None, 4]  # type: ignore[union-attr]
    out = m.to_dict()
    assert out["tensorrt"]["profile_batch"] == [1, 4, 4] and out["tensorrt"]["profile_persons"] == [1, 8, 64]
    assert {k: v for k, v in out.items() if k != "tensorrt"} == {k: v for k, v in raw.items() if k != "tensorrt"}
    assert "batch" not in out["verification"]["cases"][0]  # one-clip cases keep no "batch" key
    check_expectations(m, max_batch=4)


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(format="vmaedet-artifact-0"), "unknown format"),
    (lambda d: d["input"].pop("clip_hw"), "input has no 'clip_hw'"),
    (lambda d: d["input"].update(max_persons="8"), "'max_persons' has the wrong type"),
    (lambda d: d.pop("artifact"), "has no 'artifact'"),
    (lambda d: d["input"].update(clip_hw=[64]), "'clip_hw' is not a list of 2 integers"),
    (lambda d: d["input"].update(max_batch=0), "'max_batch' must be at least 1"),
    (lambda d: d["input"].update(max_batch=2.0), "'max_batch' has the wrong type"),
])
def test_invalid_manifests_are_refused_by_name(exported: Path, tmp_path: Path, change, words: str) -> None:
    data = json.loads(manifest_path(exported).read_text())
    change(data)
    with pytest.raises(EngineError, match=re.escape(words)) as info:
        validate(data, source="m.onnx.json")
    assert "m.onnx.json" in str(info.value) and "fix:" in str(info.value)
    bad = tmp_path / "m.onnx"
    bad.write_bytes(exported.read_bytes())
    manifest_path(bad).write_text(json.dumps(data))
    with pytest.raises(EngineError, match=re.escape(words)):
        read_manifest(bad)


def test_expectations_name_the_parameter_not_a_flag(exported: Path) -> None:
    m = read_manifest(exported)
    check_expectations(m, input_hw=HW, precision="fp32", max_persons=4, max_batch=1)
    for kwargs, words in (({"input_hw": (256, 464)}, "input_hw"), ({"precision": "fp16"}, "precision='fp16'"),
                          ({"max_persons": 9}, "max_persons=9"), ({"max_batch": 2}, "max_batch=2")):
        with pytest.raises(EngineError) as info:
            check_expectations(m, **kwargs)
        assert words in str(info.value) and "--" not in str(info.value)
