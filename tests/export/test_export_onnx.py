"""ONNX export: graph structure, onnxruntime parity vs a float64 PyTorch reference, manifest, bad input."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vmaedet.cli.main import main
from vmaedet.errors import ConfigError, ExportError, OutputError
from vmaedet.export import onnx as export_mod
from vmaedet.export.onnx import export_onnx, resolve_geometry
from vmaedet.labels import AVA_ACTIONS
from vmaedet.models import OFFICIAL_VARIANTS, create_detector, list_models
from vmaedet.models.checkpoints import save_detector

SMALL_VARIANTS = [m for m in list_models() if m not in OFFICIAL_VARIANTS]
HW = (96, 128)
MAX_PERSONS = 9


def _clip_and_rois(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip from random uint8 frames normalised by hand, boxes inside the clip (independent of vmaedet.tools.verify)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (1, 3, 16, *HW), generator=g).float()
    clip = (frames - torch.tensor([122.7717, 115.9465, 102.9801]).view(1, 3, 1, 1, 1)) / 57.375
    xy1 = torch.rand(k, 2, generator=g) * torch.tensor([HW[1] - 20, HW[0] - 20])
    wh = 16 + torch.rand(k, 2, generator=g) * (torch.tensor([HW[1], HW[0]]) - 16 - xy1)
    rois = torch.cat([torch.zeros(k, 1), xy1, xy1 + wh], dim=1)
    return clip, rois


@pytest.fixture(scope="module", params=SMALL_VARIANTS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = create_detector(request.param).eval()
    with torch.no_grad():  # make the logits non-trivial (the seed's head init is 0.001·N(0, .02))
        model.head.weight.normal_(0, 0.5)
        for m in model.modules():  # a conv stem's BatchNorm: statistics other than the identity's
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    out = tmp_path_factory.mktemp(request.param) / "model.onnx"
    result = export_onnx(model, out, input_hw=HW, max_persons=MAX_PERSONS)
    return model, result


def test_small_variants_are_covered() -> None:
    assert {"vit_micro", "vit_seed_tiny", "vit_tiny", "vit_tiny_convstem"} <= set(SMALL_VARIANTS)


@pytest.mark.parametrize("k", [0, 1, 7, MAX_PERSONS])
def test_onnxruntime_matches_float64_reference(exported, k: int) -> None:
    model, result = exported
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    clip, rois = _clip_and_rois(k, seed=100 + k)
    out = session.run(["logits"], {"clip": clip.numpy(), "rois": rois.numpy()})[0]
    assert out.shape == (k, 80)  # K=0 runs in the graph itself and returns an empty [0, 80]
    with torch.no_grad():
        ref = model.double()(clip.double(), rois.double()).numpy()
    model.float()
    if k:
        assert np.abs(ref).max() > 1e-2  # the comparison is not between near-zero numbers
        assert np.abs(out - ref).max() <= 1e-4


def test_graph_structure(exported) -> None:
    _, result = exported
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph, full_check=True)
    ops = [n.op_type for n in graph.graph.node]
    assert "Resize" not in ops
    roi = [n for n in graph.graph.node if n.op_type == "RoiAlign"]
    assert len(roi) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in roi[0].attribute}
    assert attrs["coordinate_transformation_mode"] == b"output_half_pixel"
    assert "sampling_ratio" in attrs and attrs["sampling_ratio"] == 0  # explicit, not the default
    assert attrs["spatial_scale"] == pytest.approx(1 / 16)
    assert (attrs["output_height"], attrs["output_width"]) == (7, 7)
    assert attrs.get("mode", b"avg") == b"avg"
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [d.dim_value or d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, *HW]
    rois_dims = [d.dim_value or d.dim_param for d in graph.graph.input[1].type.tensor_type.shape.dim]
    assert isinstance(rois_dims[0], str) and rois_dims[1] == 5  # K is dynamic
    assert not list(result.path.parent.glob("*.data"))  # one file


def test_manifest(exported) -> None:
    model, result = exported
    m = json.loads(result.manifest_path.read_text())
    assert result.manifest_path.name == "model.onnx.json"
    assert m["artifact"]["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert m["input"]["clip_shape"] == [1, 3, 16, *HW]
    assert (m["input"]["clip_len"], m["input"]["frame_stride"], m["input"]["max_persons"]) == (16, 4, MAX_PERSONS)
    assert m["normalization"]["mean"] == [122.7717, 115.9465, 102.9801]
    assert m["labels"]["names"] == list(AVA_ACTIONS) and len(m["labels"]["names"]) == 80
    assert m["opset"] == 17 and m["precision"] == "fp32"
    assert m["roi_align"]["coordinate_transformation_mode"] == "output_half_pixel"
    assert m["tolerances"] == {"logits_max_abs": 1e-4}
    assert sorted(c["k"] for c in m["verification"]["cases"]) == [0, 1, 7, MAX_PERSONS]
    assert m["verification"]["max_abs_logit"] <= 1e-4
    assert m["versions"]["onnxruntime"] == ort.__version__
    assert m["model"]["variant"] == model.variant


@pytest.mark.parametrize(("source", "expected"), [
    ((1920, 1080), (256, 464)),  # 256·1920/1080 = 455.1 → 455 → padded 464
    ((640, 360), (256, 464)),
    ((1080, 1920), (464, 256)),  # portrait: width 256, height int(256·1920/1080) = 455 → 464
    ((320, 240), (256, 352)),  # 256·320/240 = 341.3 → 341 → 352
])
def test_geometry_from_source_size(source, expected) -> None:
    assert resolve_geometry(source_wh=source) == (expected, source)


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"opset": 11}, ConfigError, "unsupported opset"),
    ({"input_hw": (100, 128)}, ConfigError, "multiples of 16"),
    ({"input_hw": (16, 128)}, ConfigError, "too small"),
    ({"precision": "int8"}, ConfigError, "precision"),
    ({"max_persons": 0}, ConfigError, "at least 1"),
])
def test_bad_arguments(tmp_path: Path, kwargs, error, text) -> None:
    model = create_detector("vit_micro")
    args = {"input_hw": HW, **kwargs}
    with pytest.raises(error, match=text):
        export_onnx(model, tmp_path / "m.onnx", **args)
    assert not list(tmp_path.iterdir())


def test_not_a_detector(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="only an ActionDetector"):
        export_onnx(torch.nn.Linear(3, 3), tmp_path / "m.onnx", input_hw=HW)  # type: ignore[arg-type]


def test_read_only_output_dir(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a read-only filesystem instead
        ro = Path("/sys/vmaedet-test-out")
    with pytest.raises(OutputError, match="could not write the export folder"):  # safeio.check_writable_dir
        export_onnx(create_detector("vit_micro"), ro / "m.onnx", input_hw=HW)


def test_parity_gate_rejects_a_wrong_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export a graph of *other* weights: the gate must fail, keep the old file and write nothing else."""
    torch.manual_seed(1)
    model = create_detector("vit_micro").eval()
    other = create_detector("vit_micro").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
        other.head.weight.normal_(0, 0.5)
    real_export = export_mod._torch_export
    monkeypatch.setattr(export_mod, "_torch_export",
                        lambda m, hw, opset, path: real_export(_frozen(other, hw), hw, opset, path))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous artifact")
    with pytest.raises(ExportError, match=r"does not match PyTorch[\s\S]*max \|Δ logit\|"):
        export_onnx(model, target, input_hw=HW, max_persons=3)
    assert target.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _frozen(model, hw):
    model.freeze_pos_embed(hw[0] // 16, hw[1] // 16)
    return model


# -- CLI --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_detector(create_detector("vit_micro"), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def test_cli_export(micro_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", str(micro_checkpoint), "--input-size", "64x96", "--max-persons", "4", "--out", str(tmp_path)])
    assert rc == 0
    onnx_path = tmp_path / "micro_64x96_fp32.onnx"
    manifest = json.loads((tmp_path / "micro_64x96_fp32.onnx.json").read_text())
    assert onnx_path.exists() and manifest["checkpoint"]["path"] == str(micro_checkpoint.resolve())
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(micro_checkpoint.read_bytes()).hexdigest()
    assert "verify" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "text"), [
    (["--input-size", "100x96"], "multiples of 16"),
    (["--input-size", "64x96", "--opset", "11"], "unsupported opset"),
    (["--input-size", "big"], "cannot read --input-size"),
    (["--input-size", "64x96", "--source-size", "640x360"], "not both"),
    (["--input-size", "64x96", "--trt"], "TensorRT"),
])
def test_cli_export_bad_input(micro_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args, text) -> None:
    rc = main(["export", str(micro_checkpoint), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and text in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.onnx"))


def test_cli_export_not_a_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, ckpt)
    rc = main(["export", str(ckpt), "--input-size", "64x96", "--out", str(tmp_path)])
    assert rc == 2 and "not a VideoMAE detector" in capsys.readouterr().err


def test_large_model_goes_to_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the protobuf limit (lowered here to 10 kB) the weights go to one `<name>.data` file."""
    from vmaedet.engines.onnxruntime_engine import OnnxRuntimeEngine

    monkeypatch.setattr(export_mod, "PROTOBUF_LIMIT", 10_000)
    model = create_detector("vit_micro").eval()
    result = export_onnx(model, tmp_path / "big.onnx", input_hw=(64, 96), max_persons=2)
    data = tmp_path / "big.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "big.onnx.json"]
    assert 10_000 < data.stat().st_size and result.path.stat().st_size < data.stat().st_size / 4
    assert result.manifest.artifact.external_data.file == "big.onnx.data"
    clip, rois = _clip_and_rois(2, seed=5)
    with OnnxRuntimeEngine(result.path) as eng:
        torch.testing.assert_close(eng.infer(clip[..., :64, :96], rois.clamp(max=60)),
                                   model(clip[..., :64, :96], rois.clamp(max=60)), atol=1e-4, rtol=0)
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(Exception, match="does not match its manifest"):
        OnnxRuntimeEngine(result.path)


@pytest.mark.parametrize("opset", [18, 20])
def test_other_supported_opsets(tmp_path: Path, opset: int) -> None:
    result = export_onnx(create_detector("vit_micro").eval(), tmp_path / "m.onnx", input_hw=(64, 96), max_persons=2, opset=opset)
    graph = onnx.load(str(result.path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert result.manifest.verification.max_abs_logit <= 1e-4


# -- batches (several cameras per call) ---------------------------------------------------------
#: sha256 of the default (max_batch=1) vit_micro export below, computed with the code before batching
#: existed (torch 2.14.1, onnx 1.23.2: the exporter's output depends on their versions).
ONE_CLIP_SHA256 = {"fp32": "ee6c318315e0443854df0d89b5ebe612201a5fb7a271612d18d8defd6171c047",
                   "fp16": "39749289046364f1c209b05ced2bb0d0ebfa8d503e0c9cf5397d64ef3ecc22fc"}
SHA_VERSIONS = ("2.14.1", "1.23.2")
BATCH = 4


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_default_export_is_byte_identical_to_before_batching(tmp_path: Path, precision: str) -> None:
    if (torch.__version__.split("+")[0], onnx.__version__) != SHA_VERSIONS:
        pytest.skip(f"the recorded sha256 is of torch/onnx {SHA_VERSIONS}; here {torch.__version__}/{onnx.__version__}")
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    default = export_onnx(model, tmp_path / "a.onnx", input_hw=(64, 96), max_persons=4, precision=precision)
    explicit = export_onnx(model, tmp_path / "b.onnx", input_hw=(64, 96), max_persons=4, precision=precision,
                           max_batch=1)
    assert hashlib.sha256(default.path.read_bytes()).hexdigest() == ONE_CLIP_SHA256[precision]
    assert explicit.path.read_bytes() == default.path.read_bytes()
    assert default.manifest.input.max_batch == 1 and all(c.batch is None for c in default.manifest.verification.cases)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("batched") / "model.onnx"
    return model, export_onnx(model, out, input_hw=HW, max_persons=MAX_PERSONS, max_batch=BATCH)


def _clips(b: int, seed: int) -> torch.Tensor:
    return torch.cat([_clip_and_rois(0, seed + i)[0] for i in range(b)])  # [B, 3, 16, H, W]


def test_batched_graph_has_a_dynamic_batch_axis(batched) -> None:
    _, result = batched
    graph = onnx.load(str(result.path))
    clip_dims = [d.dim_value or d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert clip_dims == [export_mod.BATCH_AXIS, 3, 16, *HW]
    assert "Resize" not in [n.op_type for n in graph.graph.node]  # the positional embedding stays folded
    roi = next(n for n in graph.graph.node if n.op_type == "RoiAlign")
    assert export_mod._index_source(graph, roi) == "rois"  # batch indices: rois column 0
    m = json.loads(result.manifest_path.read_text())
    assert m["input"]["max_batch"] == BATCH and m["input"]["clip_shape"] == [1, 3, 16, *HW]
    batched_cases = [c for c in m["verification"]["cases"] if "batch" in c]
    assert [(c["k"], c["batch"]) for c in batched_cases] == [(2 * BATCH, BATCH)]
    assert sorted(c["k"] for c in m["verification"]["cases"] if "batch" not in c) == [0, 1, 7, MAX_PERSONS]
    assert m["verification"]["max_abs_logit"] <= 1e-4


@pytest.mark.parametrize("b", [1, 3, BATCH])
def test_batched_graph_matches_float64_one_clip_at_a_time(batched, b: int) -> None:
    model, result = batched
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    clip = _clips(b, seed=200 + b)
    rois = _clip_and_rois(7, seed=300 + b)[1]
    rois[:, 0] = torch.tensor([2, 0, 1, 0, 3, 1, 2]) % b  # out of order, every clip used
    out = session.run(["logits"], {"clip": clip.numpy(), "rois": rois.numpy()})[0]
    with torch.no_grad():
        ref = export_mod.one_clip_at_a_time(model.double(), clip.double(), rois.double()).numpy()
    model.float()
    assert out.shape == (7, 80) and np.abs(ref).max() > 1e-2
    assert np.abs(out - ref).max() <= 1e-4


def test_check_graph_refuses_batch_indices_not_from_the_rois(batched) -> None:
    _, result = batched
    graph = onnx.load(str(result.path))
    roi = next(n for n in graph.graph.node if n.op_type == "RoiAlign")
    zeros = onnx.helper.make_tensor("zero_index", onnx.TensorProto.INT64, [1], [0])
    graph.graph.initializer.append(zeros)
    roi.input[2] = "zero_index"  # every roi reads clip 0
    with pytest.raises(ExportError, match="batch indices do not come from the rois"):
        export_mod.check_graph(graph)
    fixed = onnx.load(str(result.path))
    with pytest.raises(ExportError, match="batch axis is not what max_batch asks for"):
        export_mod.check_graph(fixed, max_batch=1)
    export_mod.check_graph(fixed, max_batch=BATCH)


class _FirstClipOnly(torch.nn.Module):
    """A wrong batched graph: every roi reads clip 0 (right for one clip, wrong for several)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.model(clip[:1].expand_as(clip), rois)


def test_parity_gate_checks_the_batched_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph right for one clip but wrong for several passes the one-clip cases and fails the batched one."""
    torch.manual_seed(1)
    model = create_detector("vit_micro").eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    real_export = export_mod._torch_export
    monkeypatch.setattr(export_mod, "_torch_export",
                        lambda m, hw, opset, path, **kw: real_export(_FirstClipOnly(m), hw, opset, path, **kw))
    with pytest.raises(ExportError, match=rf"does not match PyTorch[\s\S]*worst K=6, {3} clips"):
        export_onnx(model, tmp_path / "m.onnx", input_hw=HW, max_persons=6, max_batch=3)
    assert not list(tmp_path.iterdir())


def test_bad_max_batch(tmp_path: Path) -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="max_batch"):
            export_onnx(create_detector("vit_micro"), tmp_path / "m.onnx", input_hw=HW, max_batch=bad)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_cli_export_max_batch(micro_checkpoint: Path, tmp_path: Path) -> None:
    rc = main(["export", str(micro_checkpoint), "--input-size", "64x96", "--max-persons", "6", "--max-batch", "3",
               "--out", str(tmp_path)])
    assert rc == 0
    manifest = json.loads((tmp_path / "micro_64x96_fp32_b3.onnx.json").read_text())
    assert manifest["input"]["max_batch"] == 3 and manifest["input"]["max_persons"] == 6
    assert any(c.get("batch") == 3 for c in manifest["verification"]["cases"])
