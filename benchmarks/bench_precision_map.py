"""Frame-mAP@0.5 per engine × precision with the demo's trained model (val split, official protocol).

The model and data are the demo's (``vmaedet demo``: 30 synthetic videos × 12 s, the last 20 % the
val split; the tiny config trained on the train split).  ``--checkpoint`` / ``--data`` name them;
without them the script reuses ``--work``'s previous training (a demo's ``summary.json`` there, or
``train/final.safetensors``) or trains one the way the demo does (``vmaedet.tools.demo``'s data
sizes and ``load_config("tiny")``; ≈ 6–9 minutes on 2 cores).

Then:

* exports the fp32 ONNX (parity-gated) and the int8 QDQ ONNX (``export_onnx(precision="int8")``,
  the library's default int8 options: calibrated on ``--calib-clips`` keyframes of the TRAIN split,
  its own gates on every val keyframe by default — on the export's default 16 the frame-mAP gate
  moves by more than 0.01 for a mean |Δ score| of 1e-4), at the demo's geometry; a refused int8
  export is a result too (its figures are recorded and the int8 rows say so);
* runs every engine × precision over every val keyframe (proposal boxes with score ≥ 0.8, the
  model's test rois — the path of ``vmaedet eval``), writes each one's detections CSV and evaluates it
  with the official protocol: torch fp32 (the reference), torch bf16 autocast, onnxruntime fp32 /
  int8, OpenVINO fp32 / int8 / bf16 (bf16 only on a CPU with native bf16: elsewhere the row records
  the engine's refusal);
* each row: mAP, ΔmAP and |ΔmAP| vs torch fp32 (two evaluations of two detection files), pass/fail
  of |ΔmAP| ≤ 0.01 (the int8 export gate's bound), and the pooled mean / max |Δ score| vs torch fp32.

The torch fp32 row is cross-checked against ``evaluate_checkpoint`` (the demo's own evaluation).
Writes ``--out`` (default ``benchmarks/results/precision_map.json``) with the environment record.

    OMP_NUM_THREADS=2 python benchmarks/bench_precision_map.py [--checkpoint CKPT --data DATA]
    python benchmarks/bench_precision_map.py --smoke --out /tmp/pm.json   # seconds: vit_micro, untrained
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vmaedet.envinfo import environment, write_json  # noqa: E402

#: |ΔmAP| bound of a row (the int8 export gate's, ``EXPORT_GATES["int8"]["map_abs"]``).
MAP_ABS = 0.01
#: (engine, precision) rows, in order; the first is the reference.
ROWS = (("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
        ("openvino", "fp32"), ("openvino", "int8"), ("openvino", "bf16"))


def say(msg: str) -> None:
    print(f"[precision_map] {msg}", flush=True)


# -- model and data ------------------------------------------------------------------------------------
def train_like_demo(work: Path) -> tuple[Path, Path]:
    """The demo's data and training (``vmaedet.tools.demo``: its DemoConfig sizes, the tiny config)."""
    from vmaedet.config import load_config
    from vmaedet.data.synthetic import generate
    from vmaedet.tools.demo import DemoConfig
    from vmaedet.train.loop import train

    cfg = DemoConfig()
    data = work / "data"
    if not (data / "annotations" / "val.csv").is_file():
        say(f"synthesising the demo's data in {data}")
        generate(data, videos=cfg.videos, seconds=cfg.seconds, seed=cfg.seed, overwrite=True)
    say("training the tiny config as the demo does (≈ 6–9 min on 2 cores)")
    tcfg = load_config("tiny", [f"data.root={data}", f"train.out_dir={work / 'train'}"])
    result = train(tcfg, overwrite=True)
    if result.final_checkpoint is None:
        raise RuntimeError(f"training finished without a final checkpoint in {result.out_dir}")
    return Path(result.final_checkpoint), data


def find_model(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """(checkpoint, data root, where they came from)."""
    if args.checkpoint or args.data:
        if not (args.checkpoint and args.data):
            raise SystemExit("give both --checkpoint and --data (or neither)")
        return Path(args.checkpoint), Path(args.data), "given"
    work = Path(args.work)
    summary = work / "summary.json"
    if summary.is_file():  # a demo's output folder
        s = json.loads(summary.read_text())
        return Path(s["train"]["checkpoint"]), Path(s["data"]["root"]), f"the demo output {work}"
    final = work / "train" / "final.safetensors"
    if final.is_file() and (work / "data" / "annotations" / "val.csv").is_file():
        return final, work / "data", f"a previous training in {work}"
    ckpt, data = train_like_demo(work)
    return ckpt, data, f"trained now in {work}"


def smoke_model(work: Path) -> tuple[Path, Path, str]:
    """vit_micro (random weights, a head of realistic logit scale) and a 2-video dataset."""
    from vmaedet.data.synthetic import generate
    from vmaedet.export.parity import random_clip, random_rois
    from vmaedet.models import create_detector
    from vmaedet.models.checkpoints import save_detector

    data = work / "data"
    if not (data / "annotations" / "val.csv").is_file():
        generate(data, videos=2, seconds=6, seed=3, overwrite=True)
    torch.manual_seed(0)
    model = create_detector("vit_micro").eval()
    g = torch.Generator().manual_seed(1)
    clip, rois = random_clip((96, 128), g), random_rois(6, (96, 128), g)
    with torch.no_grad():  # logits of std ≈ 3 with a N(0, 1) bias (tests/export/test_int8.py's recipe)
        d = model.head.in_features
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g) / math.sqrt(d))
        model.head.bias.zero_()
        model.head.weight.mul_(3.0 / float(model(clip, rois).std()))
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=g))
    return save_detector(model, work / "micro.safetensors"), data, "smoke: vit_micro, random weights"


# -- evaluation ----------------------------------------------------------------------------------------
class ValSet:
    """Every val keyframe once: the fitted clip, the test rois (proposals with score ≥ 0.8) and the sample."""

    def __init__(self, data: Path, short_side: int, input_hw: tuple[int, int], split: str = "val") -> None:
        from vmaedet.data.ava import build_dataset
        from vmaedet.export.int8 import fit_clip
        from vmaedet.labels import AVA_EVAL_IDS
        from vmaedet.ops.boxes import make_rois
        from vmaedet.train.evaluate import BOX_THRESH

        self.dataset = build_dataset(str(data), split, train=False, short_side=short_side)
        self.items: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = []
        for i in range(len(self.dataset)):
            sample = self.dataset[i]
            keep = sample["scores"] >= BOX_THRESH  # [N]
            boxes = sample["boxes"][keep]  # [n, 4] resized-clip pixels
            if boxes.shape[0] == 0:
                continue
            clip, fitted, size = fit_clip(sample["clip"], boxes, input_hw)  # [1, 3, 16, H, W]
            rois = make_rois(fitted, size).float()  # [n, 5]
            self.items.append((clip, rois, {**sample, "boxes": boxes, "scores": sample["scores"][keep]}))
        ann = data / "annotations"
        labelmap: Any = getattr(self.dataset, "labelmap", None)
        if not labelmap:
            labelmap = ann / "labelmap.pbtxt" if (ann / "labelmap.pbtxt").is_file() else list(AVA_EVAL_IDS)
        excl = ann / f"excluded_{split}.csv"
        self.paths = {"gt": ann / f"{split}.csv", "labelmap": labelmap, "exclusions": excl if excl.is_file() else None}

    @property
    def persons(self) -> int:
        return int(sum(r.shape[0] for _, r, _ in self.items))


def evaluate(infer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], val: ValSet,
             csv: Path) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Detections of ``infer`` over the val keyframes → CSV → official frame-mAP; returns (row, logits)."""
    from vmaedet.data.detections import detections_to_rows
    from vmaedet.train.evaluate import score_rows

    rows: list[Any] = []
    logits: list[torch.Tensor] = []
    t0 = time.perf_counter()
    for clip, rois, sample in val.items:
        out = torch.as_tensor(infer(clip, rois)).float().cpu()  # [n, 80]
        logits.append(out)
        scores = out.sigmoid() * sample["scores"].float()[:, None]  # [n, 80]
        rows.extend(detections_to_rows(sample["boxes"], scores, sample["video_id"], sample["timestamp"],
                                       tuple(sample["size"]), tuple(sample["orig_size"])))
    seconds = time.perf_counter() - t0
    result = score_rows(rows, csv, val.paths, "official")
    return {"mAP": float(result["mAP"]), "detections_csv": str(csv), "detection_rows": len(rows),
            "seconds": round(seconds, 2)}, logits


def score_errors(ref: list[torch.Tensor], out: list[torch.Tensor]) -> dict[str, float]:
    from vmaedet.export.parity import pooled_stats

    stats = pooled_stats(ref, out)
    return {k: stats[k] for k in ("top5_agreement", "mean_abs_score", "max_abs_score")}


def open_row(engine: str, precision: str, model: Any, fp32: Path, int8: Path | None, threads: int) -> Any:
    from vmaedet.engines import open_engine

    if engine == "torch":
        return open_engine(model, "torch", precision=precision)
    if precision == "int8" and int8 is None:
        raise LookupError("no int8 artifact (its export was refused by its gates)")
    path = int8 if precision == "int8" else fp32
    if engine == "onnxruntime":
        return open_engine(path, "onnxruntime", device="cpu", threads=threads)
    return open_engine(path, "openvino", precision=precision, threads=threads, cache=False)


# -- the run -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from vmaedet.errors import ExportError, VmaedetError
    from vmaedet.export.onnx import export_onnx
    from vmaedet.models.checkpoints import load_detector
    from vmaedet.train.evaluate import evaluate_checkpoint

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt, data, origin = smoke_model(work) if args.smoke else find_model(args)
    say(f"model {ckpt} ({origin}); data {data}")
    model = load_detector(ckpt).eval()
    meta = json.loads((data / "meta.json").read_text())
    source_wh = (int(meta["width"]), int(meta["height"]))
    art = work / "artifacts"
    art.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    exported = export_onnx(model, art / "model_fp32.onnx", source_wh=source_wh, max_persons=args.max_persons,
                           checkpoint=ckpt)
    fp32 = exported.path
    input_hw = tuple(exported.manifest.input.clip_hw)
    say(f"fp32 export {time.perf_counter() - t0:.0f} s ({input_hw[0]}x{input_hw[1]})")
    doc: dict[str, Any] = {"benchmark": "precision_map", "smoke": bool(args.smoke), "checkpoint": str(ckpt),
                           "model_origin": origin, "arch": model.variant,
                           "data": str(data), "input_hw": list(input_hw), "source_wh": list(source_wh),
                           "threads": args.threads, "map_abs_bound": MAP_ABS}
    t0 = time.perf_counter()
    int8: Path | None = None
    try:
        result = export_onnx(model, art / "model_int8.onnx", source_wh=source_wh, max_persons=args.max_persons,
                             checkpoint=ckpt, precision="int8", calib=data, calib_clips=args.calib_clips,
                             gate_clips=args.gate_clips)
        int8 = result.path
        q = result.manifest.quantization
        doc["int8_export"] = {"seconds": round(time.perf_counter() - t0, 1), "quantized": len(q.quantized),
                              "excluded": len(q.excluded), "calibration": dict(q.calibration),
                              "gates": dict(q.gates), "options": dict(q.extra.get("options", {}))}
        say(f"int8 export {doc['int8_export']['seconds']} s; calibrated on {q.calibration.get('split')}, "
            f"gates {q.gates}")
    except ExportError as exc:
        doc["int8_export"] = {"refused": exc.what, "received": str(exc.received)}
        say(f"int8 export refused: {exc.received}")

    val = ValSet(data, model.preprocess.short_side, input_hw)  # type: ignore[arg-type]
    doc["val"] = {"split": "val", "keyframes": len(val.items), "persons": val.persons,
                  "box_thresh": 0.8, "protocol": "official"}
    csvs = work / "detections"
    rows: list[dict[str, Any]] = []
    ref_map: float | None = None
    ref_logits: list[torch.Tensor] = []
    for engine_name, precision in ROWS:
        row: dict[str, Any] = {"engine": engine_name, "precision": precision}
        try:
            eng = open_row(engine_name, precision, model, fp32, int8, args.threads)
        except (VmaedetError, LookupError) as exc:
            row["refused"] = getattr(exc, "what", str(exc))
            if getattr(exc, "received", None) is not None:
                row["refused_received"] = str(exc.received)  # type: ignore[attr-defined]
            say(f"{engine_name} {precision}: refused — {row['refused']}")
            rows.append(row)
            continue
        try:
            res, logits = evaluate(eng.infer, val, csvs / f"{engine_name}_{precision}.csv")
        finally:
            eng.close()
        row.update(res)
        if ref_map is None:  # torch fp32: the reference
            ref_map, ref_logits = res["mAP"], logits
        row["delta_mAP"] = res["mAP"] - ref_map
        row["abs_delta_mAP"] = abs(row["delta_mAP"])
        row["passed"] = row["abs_delta_mAP"] <= MAP_ABS
        row["vs_torch_fp32"] = score_errors(ref_logits, logits)
        say(f"{engine_name} {precision}: mAP {res['mAP']:.4f} (Δ {row['delta_mAP']:+.4f}, "
            f"{'pass' if row['passed'] else 'FAIL'}); mean |Δ score| {row['vs_torch_fp32']['mean_abs_score']:.2e}")
        rows.append(row)
    doc["rows"] = rows
    # the demo's own evaluation of the same checkpoint (batched DataLoader path) as a cross-check
    demo_eval = evaluate_checkpoint(ckpt, data, split="val", out_dir=work / "demo_eval", device="cpu", num_workers=0)
    doc["torch_fp32_cross_check"] = {"evaluate_checkpoint_mAP": float(demo_eval["mAP"]),
                                     "this_script_mAP": ref_map,
                                     "abs_difference": abs(float(demo_eval["mAP"]) - (ref_map or 0.0))}
    say(f"cross-check: evaluate_checkpoint mAP {demo_eval['mAP']:.4f} vs {ref_map:.4f}")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="the demo's trained checkpoint")
    parser.add_argument("--data", type=Path, default=None, help="the demo's dataset root (train + val)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vmaedet-precision-map",
                        help="artifacts, detections CSVs (and the training, when no checkpoint is given)")
    parser.add_argument("--calib-clips", type=int, default=32)
    parser.add_argument("--gate-clips", type=int, default=10_000,
                        help="the int8 export's held-back keyframes (default: every val keyframe — on 16 the "
                             "frame-mAP gate is noise-dominated)")
    parser.add_argument("--max-persons", type=int, default=16)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision_map.json")
    parser.add_argument("--smoke", action="store_true", help="vit_micro (random weights), a 2-video dataset: seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.calib_clips, args.gate_clips, args.max_persons = 2, 3, 4
    doc = run(args)
    doc["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    doc["load_average"] = list(os.getloadavg())
    doc["environment"] = environment()
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
