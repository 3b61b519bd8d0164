"""The training loop: the seed's optimisation (spec §5), resumable at any iteration, DDP-ready.

One iteration: lr ← schedule(step) · lr_scale per group → GT boxes jittered with
``random_aug`` (a generator seeded from (seed, step, sample index), so resume and world size do
not change it) → forward under autocast (fp16 on CUDA, optional bf16 on CPU) →
``BCEWithLogits(mean) × K`` → backward (GradScaler on CUDA) → optional clipping → AdamW step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from vmaedet.config import TrainConfig, dump_config, validate_config
from vmaedet.constants import SHORT_SIDE
from vmaedet.errors import CheckpointError, DataError, OutputError, UsageError, VmaedetError
from vmaedet.models.checkpoints import load_detector, save_detector, shape_mismatches
from vmaedet.models.detector import ActionDetector, PreprocessConfig, create_detector, resolve_name
from vmaedet.ops.boxes import random_aug
from vmaedet.safeio import atomic_write, check_writable_dir, output_error
from vmaedet.train import checkpointing as ckpt
from vmaedet.train.distributed import (DistInfo, ResumableDistributedSampler, all_gather_objects, all_reduce_mean, barrier,
                          init_distributed)
from vmaedet.train.evaluate import autocast_for
from vmaedet.train.optim import actual_lr, build_optimizer, set_lr
from vmaedet.train.schedule import CosineSchedule

CollateFn = Callable[[list[dict[str, Any]]], dict[str, Any]]


# -- data plumbing ----------------------------------------------------------------------------
class IndexedDataset(Dataset):
    """Yields ``(index, item)`` so the training step can seed per-sample randomness by index."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any]]:
        return i, self.base[i]


class _IndexedCollate:
    """Picklable collate: ``[(i, item)]`` → collated dict plus ``"indices"``."""

    def __init__(self, collate: CollateFn, size_divisible: int) -> None:
        self.collate = collate
        self.size_divisible = size_divisible

    def __call__(self, batch: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        out = self.collate([item for _, item in batch], size_divisible=self.size_divisible)  # type: ignore[call-arg]
        out["indices"] = [i for i, _ in batch]
        return out


def default_collate() -> CollateFn:
    from vmaedet.data.ava import collate_clips

    return collate_clips


def build_datasets(cfg: TrainConfig, need_val: bool = True) -> tuple[Dataset, Dataset | None]:
    """Train (and val) datasets from ``cfg.data`` via ``vmaedet.data.ava.build_dataset``."""
    root = cfg.data.root
    if root is None:
        raise DataError("no dataset root configured", received="data.root = null",
                        expected="an AVA-format directory (vmaedet synth OUT writes one)",
                        fix="set data.root to the dataset folder")
    if not Path(root).is_dir():
        raise DataError(f"dataset root not found: {root}", received=str(root), expected="an existing directory",
                        fix="create synthetic data with `vmaedet synth DIR` or point data.root at your AVA root")
    from vmaedet.data.ava import build_dataset

    options = cfg.data.kwargs.given()  # the dataset options set in the config (the rest: the dataset's defaults)
    splits = [cfg.data.train_split] + ([cfg.data.val_split] if need_val and cfg.data.val_split != cfg.data.train_split else [])
    check_training_data(root, splits, options)
    train_ds = build_dataset(root, cfg.data.train_split, train=True, **{"seed": cfg.train.seed, **options})
    val_ds = build_dataset(root, cfg.data.val_split, train=False, **options) if need_val else None
    return train_ds, val_ds


def check_training_data(root: str | Path, splits: Sequence[str], kwargs: dict[str, Any] | None = None,
                        max_examples: int = 5) -> None:
    """Run the dataset validator (:mod:`vmaedet.data.validate`) on the splits a run reads; refuse on errors.

    The same checks as ``vmaedet data check``: malformed rows, boxes outside [0, 1], action ids not in the
    label map, missing or unreadable videos, keyframes outside their video.  Warnings (keyframes whose
    window is clamped at a video's ends) do not stop training.

    Raises:
        DataError: with the number of errors and the first ``max_examples`` (``file:line: message``).
    """
    from vmaedet.data import validate

    kw = dict(kwargs or {})
    opts = {k: kw.get(k) for k in ("frame_source", "frames_root", "fps", "timestamp_start", "temporal_rule", "labelmap")}
    if opts["timestamp_start"] is None and not (Path(root) / "meta.json").is_file():
        opts["timestamp_start"] = 900  # the dataset's default for a real AVA frames folder
    check_cfg = validate.load_config(Path(root), None, **opts)
    errors: list[Any] = []
    for split in splits:
        if split not in check_cfg.splits:
            continue  # build_dataset names an unknown split itself
        errors += validate.check_dataset(root, split, check_cfg).errors
    if errors:
        shown = [f"{e.where}: {e.message}" for e in errors[:max_examples]]
        more = f" (and {len(errors) - max_examples} more)" if len(errors) > max_examples else ""
        raise DataError(
            f"the dataset {root} has {len(errors)} error(s) in split(s) {', '.join(splits)}; training on it would "
            "silently learn from wrong labels or frames",
            received="\n    " + "\n    ".join(shown) + more,
            expected="a dataset that `vmaedet data check` passes",
            fix=f"correct or delete those rows / add the videos (`vmaedet data check {root}` lists every error)",
        )


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """A CPU generator seeded from (seed, global step, dataset index) — resume/world-size invariant."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def jitter_rois(rois: torch.Tensor, sizes: Sequence[tuple[int, int]], indices: Sequence[int],
                seed: int, step: int) -> torch.Tensor:
    """Apply the seed's ``random_aug`` to each sample's boxes against its own (w, h).

    Args:
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2).
        sizes: per-sample (w, h) of the unpadded clip.
        indices: dataset index of each sample (seeds its generator).
    """
    out = rois.clone()  # [K, 5]
    for b, (w, h) in enumerate(sizes):
        mask = rois[:, 0] == b  # [K]
        if mask.any():
            gen = sample_generator(seed, step, int(indices[b]))
            out[mask, 1:] = random_aug(rois[mask, 1:], (int(w), int(h)), generator=gen)  # [k, 4]
    return out


# -- precision --------------------------------------------------------------------------------
def autocast_context(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA when ``runtime.amp``; bf16 on CPU when ``runtime.cpu_bf16``; else none."""
    return autocast_for(device, cfg.runtime.amp, cfg.runtime.cpu_bf16)


def detection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The seed's loss: ``BCEWithLogits(mean over [K, 80]) × K`` (= sum / 80)."""
    k = logits.shape[0]
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="mean") * k


# -- model ------------------------------------------------------------------------------------
def build_model(cfg: TrainConfig) -> ActionDetector:
    """Random init of ``model.arch``, or the weights of ``model.init`` (any official layout).

    The model's preprocessing short side is the data's (``data.kwargs.short_side``, default 256), so
    the saved checkpoints are evaluated, exported and streamed at the resolution they were trained at.
    """
    opts = {"drop_path": cfg.model.drop_path, "grad_checkpointing": cfg.model.grad_checkpointing,
            "attn_impl": cfg.model.attn_impl}
    short_side = cfg.data.kwargs.short_side
    preprocess = PreprocessConfig(short_side=short_side if short_side is not None else SHORT_SIDE)
    if cfg.model.init:
        model = load_detector(cfg.model.init, arch=cfg.model.arch, preprocess=preprocess, **opts)
    else:
        model = create_detector(cfg.model.arch, preprocess=preprocess, **opts)
    return model.train()


def initial_model(cfg: TrainConfig) -> ActionDetector:
    """The weights ``train(cfg)`` starts from on rank 0 (seeded as it seeds), in eval mode.

    The demo and the learning benchmark score these as the untrained baseline of the same run.
    """
    torch.manual_seed(cfg.train.seed)
    return build_model(cfg).eval()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DDP) else model


# -- logging ----------------------------------------------------------------------------------
class MetricsLog:
    """JSONL metrics (rank 0) plus optional TensorBoard scalars."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one JSON line; a failed write is undone (no partial line) and raised as OutputError."""
        if not self.enabled:
            return
        data = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise output_error(self.path, exc, what="the metrics log") from exc
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(enabled: bool, total: int, done: int) -> Any:
    """A rich bar on a terminal, plain ``[train] steps i/N … ETA`` lines in logs (``vmaedet.progress``)."""
    from vmaedet.progress import progress

    return progress(total, "steps", "train", completed=done, enabled=enabled).start()


# -- the run ----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    final_checkpoint: Path | None  # vmaedet .safetensors of the final weights (rank 0)
    steps: int  # global iterations done
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluation records
    wall_s: float = 0.0
    model: nn.Module | None = None  # the trained detector (unwrapped), on this rank


@dataclass
class _State:
    step: int = 0  # iterations done (= index of the next one)
    epoch: int = 0  # current epoch
    step_in_epoch: int = 0  # batches of `epoch` already done
    best_map: float = -1.0


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
          st: _State, cfg: TrainConfig, info: DistInfo) -> None:
    rngs = all_gather_objects(ckpt.rng_state(), info)  # every rank's RNG, so each resumes its own
    if not info.is_main:
        return
    state = {"format": ckpt.FORMAT, "model": unwrap(model).state_dict(), "optimizer": opt.state_dict(),
             "scaler": scaler.state_dict(), "step": st.step, "epoch": st.epoch,
             "step_in_epoch": st.step_in_epoch, "best_map": st.best_map, "config": cfg.to_dict(),
             "world_size": info.world_size, "rng": rngs}
    ckpt.atomic_save(state, path)


#: Config fields a resumed run must share with its checkpoint: they shape the model, the optimiser, the
#: schedule and the data order. Paths, workers, cadence, max_steps and runtime options may change.
RESUME_FIELDS = ("model.arch", "model.drop_path", "optim.", "schedule.", "train.batch_size", "train.seed",
                 "train.box_jitter", "data.train_split", "data.size_divisible", "data.kwargs.")
_RESUME_FREE = ("data.kwargs.cache", "data.kwargs.frames_root")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(_flatten(v, f"{prefix}{k}."))
                if not v:
                    out[f"{prefix}{k}"] = {}
            else:
                out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def resume_differences(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """``"key: checkpoint X vs now Y"`` for every :data:`RESUME_FIELDS` entry that differs."""
    a, b = _flatten(saved), _flatten(now.to_dict())
    diffs = []
    for key in sorted(set(a) | set(b)):
        if not key.startswith(RESUME_FIELDS) or key.startswith(_RESUME_FREE):
            continue
        va, vb = a.get(key, "(not set)"), b.get(key, "(not set)")
        if key == "model.arch":
            with contextlib.suppress(VmaedetError, TypeError):
                va, vb = resolve_name(va), resolve_name(vb)
        if va != vb:
            diffs.append(f"{key}: checkpoint {va!r} vs now {vb!r}")
    return diffs


def _restore(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             info: DistInfo, cfg: TrainConfig | None = None, hints: dict[str, str] | None = None) -> _State:
    hints = {**_HINTS, **(hints or {})}
    state = ckpt.load_resume(path)
    own = unwrap(model)
    saved_cfg = state.get("config") if isinstance(state.get("config"), dict) else None
    saved_arch = ((saved_cfg or {}).get("model") or {}).get("arch", "unknown")
    now_arch = cfg.model.arch if cfg is not None else getattr(own, "variant", None) or "this model"
    sd = state["model"]
    mism = shape_mismatches(own.state_dict(), sd)
    if cfg is not None and saved_cfg is not None:
        diffs = resume_differences(saved_cfg, cfg)
        if diffs:
            shapes = f"; first shape mismatches: {'; '.join(mism[:3])}" if mism else ""
            raise CheckpointError(
                f"{path} was written by a run with another configuration ({len(diffs)} difference(s)); "
                "resuming would silently change the model, the optimiser, the schedule or the data",
                received="\n    " + "\n    ".join(diffs[:10]) + (" …" if len(diffs) > 10 else "") + shapes,
                expected="the checkpoint's values for " + ", ".join(f.rstrip(".") for f in RESUME_FIELDS),
                fix="resume with the same values (the checkpoint's config is saved beside it as config.yaml), or "
                    f"start a new run: another output folder, or {hints['overwrite']}",
            )
    try:
        own.load_state_dict(sd)
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        own_keys = set(own.state_dict())
        missing = sorted(own_keys - set(sd))[:3]
        unexpected = sorted(set(sd) - own_keys)[:3]
        detail = mism[:4] + [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
        raise CheckpointError(
            f"{path} does not fit this model/optimiser: the checkpoint holds a {saved_arch} model, "
            f"this run builds a {now_arch} model",
            received="; ".join(detail) if detail else (str(exc).splitlines() or [type(exc).__name__])[0],
            expected=f"a resume checkpoint of a {now_arch} run",
            fix="resume with the config the checkpoint was written with (model.arch "
                f"{saved_arch}), or start a new run: another output folder, or {hints['overwrite']}",
        ) from None
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    ckpt.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
    return _State(step=state["step"], epoch=state["epoch"], step_in_epoch=state["step_in_epoch"],
                  best_map=state["best_map"])


# -- the run folder ---------------------------------------------------------------------------
#: How the caller's user says "resume" / "overwrite" (the CLI passes its flags).
_HINTS = {"resume": "resume='auto'", "overwrite": "overwrite=True"}
#: Files ``train`` writes into its output folder (besides ``checkpoint-<epoch>.pth``, ``eval/`` and ``tb/``).
RUN_FILES = (ckpt.LAST, ckpt.BEST, "final.safetensors", "metrics.jsonl")


def previous_run_files(out_dir: str | Path) -> list[Path]:
    """Files of an earlier run in ``out_dir``: checkpoints, final weights, metrics, evaluation CSVs.

    ``config.yaml`` alone is not a run (it is rewritten at each start); temporary files of a killed
    write are not either (see :func:`clear_run`).
    """
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [out / n for n in RUN_FILES if (out / n).is_file()]
    found += sorted((p for p in out.glob("checkpoint-*.pth") if re.fullmatch(r"checkpoint-\d+\.pth", p.name)),
                    key=lambda p: int(p.stem.split("-")[1]))
    found += sorted((out / "eval").glob("detections_epoch*.csv"))
    found += sorted((out / "tb").glob("events.out.tfevents.*"))
    return found


def _leftover_temps(out_dir: Path) -> list[Path]:
    """Temporary files of writes killed half-way (``.<name>.<random>.tmp<suffix>``)."""
    return [p for p in out_dir.glob(".*.tmp*") if p.is_file()] if out_dir.is_dir() else []


def clear_run(out_dir: str | Path) -> list[Path]:
    """Delete the previous run's files (only the files ``train`` writes); returns what was deleted."""
    out = Path(out_dir)
    gone = previous_run_files(out) + _leftover_temps(out) + ([out / "config.yaml"] if (out / "config.yaml").is_file() else [])
    for p in gone:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise output_error(p, exc, what="a file of the previous run") from exc
    return gone


def previous_run_error(out_dir: Path, files: Sequence[Path], hints: dict[str, str] | None = None,
                       resume_from: Path | None = None) -> OutputError:
    """The refusal to train into a folder holding another run (nothing is touched).

    ``resume_from``: a resume checkpoint outside ``out_dir`` (it continues another run, not this one).
    """
    hints = {**_HINTS, **(hints or {})}
    names = [str(p.relative_to(out_dir)) for p in files]
    state = "a finished run (final.safetensors)" if (out_dir / "final.safetensors").is_file() else "a started run"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    elsewhere = (f" (the resume checkpoint {resume_from} lies outside it, so resuming would not continue that run)"
                 if resume_from is not None else "")
    return OutputError(
        f"the output folder {out_dir} already holds {state}{elsewhere}; training into it would replace or mix its files",
        received=shown,
        expected="an output folder without an earlier run, or an explicit choice",
        fix=f"continue that run with {hints['resume']}; or start over with {hints['overwrite']} (deletes only the "
            "files train writes there: last.pth, best.pth, checkpoint-N.pth, final.safetensors, metrics.jsonl, "
            "config.yaml, eval/detections_epoch*.csv); or choose another output folder",
    )


def _resumes_elsewhere(resume: str | None, out_dir: Path) -> Path | None:
    """The resume checkpoint when it lies outside ``out_dir`` (it continues another folder's run), else None.

    ``"auto"`` always means ``out_dir``'s own checkpoint.
    """
    if resume is None or resume == "auto":
        return None
    path = Path(resume)
    inside = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(out_dir))  # as written ("..", no links)
    with contextlib.suppress(OSError, RuntimeError):
        inside = inside or path.resolve().is_relative_to(out_dir.resolve())  # through symbolic links
    return None if inside else path


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metrics lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            keep.append(line)
    if keep != lines:
        with atomic_write(path, what="the metrics log") as fh:
            fh.write("".join(line + "\n" for line in keep))


# -- Ctrl-C -----------------------------------------------------------------------------------
class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training; ``checkpoint`` is the last complete resume checkpoint (or None)."""

    def __init__(self, step: int, total: int, checkpoint: Path | None, saved_now: bool) -> None:
        super().__init__(f"training interrupted at iteration {step} of {total}")
        self.step, self.total, self.checkpoint, self.saved_now = step, total, checkpoint, saved_now


class _StopRequested(Exception):
    pass


class _InterruptFlag:
    """First Ctrl-C: finish the iteration, save ``last.pth``, stop. Second Ctrl-C: stop at once.

    Installed only in the main thread of a single-process run (under torchrun every rank would have to
    agree on the step to stop at; there Ctrl-C stops at once).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._old: Any = None
        self._pid = os.getpid()

    def _handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker inherited the handler: the main process decides
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        with contextlib.suppress(Exception):
            sys.stderr.write("\ninterrupt: stopping after the current iteration (or evaluation) and saving "
                             "last.pth; press Ctrl-C again to stop at once\n")
            sys.stderr.flush()

    def __enter__(self) -> "_InterruptFlag":
        if self.enabled:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled and self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _loader(ds: Dataset, sampler: ResumableDistributedSampler, per_rank: int, cfg: TrainConfig,
            collate: CollateFn, epoch: int) -> DataLoader:
    gen = torch.Generator().manual_seed(cfg.train.seed * 100003 + epoch)  # never touches the global RNG
    return DataLoader(IndexedDataset(ds), batch_size=per_rank, sampler=sampler, drop_last=True,
                      num_workers=cfg.data.num_workers, collate_fn=_IndexedCollate(collate, cfg.data.size_divisible),
                      generator=gen, persistent_workers=False)


def _oom_error(exc: BaseException, per_rank: int) -> VmaedetError:
    return VmaedetError("out of memory during a training step", received=f"{per_rank} clips per rank; {exc}".splitlines()[0],
                        fix="lower train.batch_size (or use more GPUs), set model.grad_checkpointing=true, "
                            "keep runtime.amp=true, or shrink the input via data.kwargs")


@dataclass
class _Run:
    """What one training run works with, built once by :func:`train` (and handed to every epoch)."""

    cfg: TrainConfig
    info: DistInfo
    model: nn.Module  # the detector, DDP-wrapped under torchrun (once the folder is ready)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sched: CosineSchedule
    sampler: ResumableDistributedSampler
    train_dataset: Dataset
    val_dataset: Dataset | None
    collate: CollateFn
    per_rank: int  # clips per rank per iteration
    total_steps: int  # iterations of the whole run (epochs · iterations per epoch, or train.max_steps)
    out_dir: Path
    log: MetricsLog | None = None
    prog: Any = None  # the progress bar (rank 0), or None
    stop: _InterruptFlag | None = None  # Ctrl-C: finish the iteration, save, stop
    last_good: Path | None = None  # the last complete resume checkpoint

    def save(self, path: Path, st: _State) -> None:
        """Write a resume checkpoint (every rank gathers its RNG; rank 0 writes)."""
        _save(path, self.model, self.optimizer, self.scaler, st, self.cfg, self.info)


def train(cfg: TrainConfig, resume: str | None = None, train_dataset: Dataset | None = None,
          val_dataset: Dataset | None = None, collate_fn: CollateFn | None = None,
          evaluate_fn: Callable[..., dict[str, Any]] | None = None, *, overwrite: bool = False,
          hints: dict[str, str] | None = None) -> TrainResult:
    """Run (or resume) training as configured; call once per process under torchrun.

    The output folder (``train.out_dir``) rule: a folder that holds an earlier run (checkpoints,
    ``final.safetensors``, ``metrics.jsonl``) is refused unless ``resume`` continues it (``"auto"`` or a
    checkpoint inside that folder; one from elsewhere does not) or ``overwrite`` deletes that run's
    files first (only the files training writes). Nothing is
    written before every check has passed: config values, device, data (the ``data check``
    validator), initial weights, the resume checkpoint and its config, a writable folder.

    Ctrl-C (single process): the current iteration finishes, ``last.pth`` is saved and
    :class:`TrainingInterrupted` is raised; ``resume="auto"`` continues bit-exactly. A second
    Ctrl-C stops at once, keeping the last complete checkpoint.

    Args:
        cfg: the configuration.
        resume: None, ``"auto"`` (last checkpoint in ``train.out_dir`` if any) or a path.
        train_dataset / val_dataset / collate_fn: override the AVA datasets (tests, custom data).
        evaluate_fn: ``(model, dataset, info, cfg, epoch) -> {"mAP": …}``; defaults to
            :func:`vmaedet.train.evaluate.evaluate_model`.
        overwrite: delete an earlier run's files in ``train.out_dir`` before training.
        hints: how the caller's user says ``resume`` / ``overwrite`` in messages (the CLI passes its flags).

    Raises:
        ConfigError, DataError, CheckpointError, OutputError: bad input, before anything is written;
        OutputError also when a write fails later (full disk), naming the file.
        TrainingInterrupted: on Ctrl-C (a ``KeyboardInterrupt``).
    """
    t_start = time.time()
    hints = {**_HINTS, **(hints or {})}
    info, per_rank = _start(cfg, resume, overwrite, hints)
    run = _build_run(cfg, info, per_rank, train_dataset, val_dataset, collate_fn)
    st = _State()
    resume_path = ckpt.resolve_resume(resume, run.out_dir)
    if resume_path is not None:
        st = _restore(resume_path, run.model, run.optimizer, run.scaler, info, cfg, hints)
    _prepare_folder(run, st, resume, overwrite)  # every check passed: only now touch the folder
    if info.distributed:
        run.model = DDP(run.model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if evaluate_fn is None:
        from vmaedet.train.evaluate import evaluate_model as evaluate_fn  # noqa: N813
    run.log = MetricsLog(run.out_dir, info.is_main, cfg.runtime.tensorboard)
    run.prog = _progress(info.is_main and cfg.runtime.progress, run.total_steps, st.step)
    run.stop = _InterruptFlag(enabled=not info.distributed)
    run.last_good = resume_path
    history: list[dict[str, Any]] = []
    _train_epochs(run, st, evaluate_fn, history)
    final = None
    if info.is_main:
        final = save_detector(unwrap(run.model), run.out_dir / "final.safetensors",  # type: ignore[arg-type]
                              extra={"epoch": st.epoch, "step": st.step, "best_map": st.best_map})
    barrier()
    return TrainResult(out_dir=run.out_dir, final_checkpoint=final, steps=st.step, history=history,
                       wall_s=time.time() - t_start, model=unwrap(run.model))


def _start(cfg: TrainConfig, resume: str | None, overwrite: bool, hints: dict[str, str]) -> tuple[DistInfo, int]:
    """The checks before anything is built (config, options, processes, batch, output folder), then the seeds.

    Returns:
        The process group's :class:`DistInfo` and the clips per rank per iteration.
    """
    validate_config(cfg)
    if resume is not None and overwrite:
        raise UsageError("resume and overwrite contradict each other: one continues the run, the other deletes it",
                         received=f"resume={resume!r} and overwrite", expected="at most one of them",
                         fix=f"pass {hints['resume']} to continue, or {hints['overwrite']} to start over")
    info = init_distributed(cfg.runtime.device)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    total_batch = cfg.train.batch_size
    if total_batch % info.world_size:
        raise VmaedetError("the total batch does not divide by the number of processes",
                           received=f"train.batch_size={total_batch}, world size {info.world_size}",
                           fix="choose a batch size that is a multiple of the number of processes")
    out_dir = Path(cfg.train.out_dir)
    previous = previous_run_files(out_dir)
    # a folder holding a run is refused unless resume continues that very run (its checkpoint lies in it)
    elsewhere = _resumes_elsewhere(resume, out_dir)
    if previous and not overwrite and (resume is None or elsewhere is not None):
        raise previous_run_error(out_dir, previous, hints, resume_from=elsewhere)
    # fail fast on a read-only or missing mount, before data and model; creates nothing (the folder is made
    # once every check has passed)
    check_writable_dir(out_dir, create=False, what="into the run folder")
    seed = cfg.train.seed + info.rank  # the seed's `seed + rank`
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return info, total_batch // info.world_size


def _build_run(cfg: TrainConfig, info: DistInfo, per_rank: int, train_dataset: Dataset | None,
               val_dataset: Dataset | None, collate_fn: CollateFn | None) -> _Run:
    """Data, model, optimiser, scaler, sampler and schedule, in the order the seeded RNG expects."""
    if train_dataset is None:
        train_dataset, ds_val = build_datasets(cfg, need_val=val_dataset is None)
        val_dataset = val_dataset or ds_val
    collate = collate_fn or default_collate()
    model = build_model(cfg).to(info.device)
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=info.device.type == "cuda" and cfg.runtime.amp)
    sampler = ResumableDistributedSampler(train_dataset, info, per_rank, seed=cfg.train.seed)
    iters = sampler.steps_per_epoch
    total_batch = cfg.train.batch_size
    if iters < 1:
        raise DataError("the training set is smaller than one batch",
                        received=f"{len(train_dataset)} clips, total batch {total_batch}",  # type: ignore[arg-type]
                        fix="lower train.batch_size or add data")
    lr_peak = actual_lr(cfg.optim.lr, total_batch, cfg.optim.lr_scaling)
    sched = CosineSchedule.from_epochs(lr_peak, actual_lr(cfg.optim.min_lr, total_batch, cfg.optim.lr_scaling),
                                       cfg.schedule.epochs, iters, cfg.schedule.warmup_epochs, cfg.schedule.warmup_steps)
    total_steps = cfg.schedule.epochs * iters
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)
    return _Run(cfg=cfg, info=info, model=model, optimizer=optimizer, scaler=scaler, sched=sched, sampler=sampler,
                train_dataset=train_dataset, val_dataset=val_dataset, collate=collate, per_rank=per_rank,
                total_steps=total_steps, out_dir=Path(cfg.train.out_dir))


def _prepare_folder(run: _Run, st: _State, resume: str | None, overwrite: bool) -> None:
    """Create and probe the output folder; clear the old run (overwrite) or trim its metrics (resume); write config.yaml."""
    check_writable_dir(run.out_dir, what="into the run folder")  # creates it (and its parents) and probes it
    if run.info.is_main:
        if overwrite:
            clear_run(run.out_dir)
        elif resume is not None:
            _trim_metrics(run.out_dir / "metrics.jsonl", st.step)
        with atomic_write(run.out_dir / "config.yaml", what="the run's config") as fh:
            fh.write(dump_config(run.cfg))
    barrier()


def _train_epochs(run: _Run, st: _State, evaluate_fn: Callable[..., dict[str, Any]],
                  history: list[dict[str, Any]]) -> None:
    """The epochs left, each followed by evaluation and checkpoints; Ctrl-C, NaN and the log handled here."""
    assert run.stop is not None and run.log is not None
    failed = True
    try:
        with run.stop:
            try:
                while st.step < run.total_steps and st.epoch < run.cfg.schedule.epochs:
                    epoch_done = _run_epoch(run, st)
                    if epoch_done:
                        st.epoch += 1
                        st.step_in_epoch = 0
                    _end_epoch(run, st, epoch_done, evaluate_fn, history)
                    if run.stop.requested:
                        raise _StopRequested
            except _StopRequested:
                # the state is at an iteration boundary: save it so that resume="auto" continues exactly here
                run.save(run.out_dir / ckpt.LAST, st)
                raise TrainingInterrupted(st.step, run.total_steps, run.out_dir / ckpt.LAST, saved_now=True) from None
        failed = False
    except _NanLoss as exc:
        raise VmaedetError(f"the loss became {exc.value} at iteration {exc.step} (epoch {st.epoch})",
                           received=f"lr {exc.lr:.3e}",
                           fix=f"resume from the last good checkpoint ({run.last_good or 'none written yet'}) with a lower "
                               "optim.lr, optim.clip_grad set (e.g. 1.0), or runtime.cpu_bf16/amp off") from None
    except KeyboardInterrupt as exc:
        if isinstance(exc, TrainingInterrupted):
            raise
        # a second Ctrl-C (or one under torchrun): any write in progress was undone by atomic_path
        last = run.last_good if run.last_good and run.last_good.is_file() else None
        raise TrainingInterrupted(st.step, run.total_steps, last, saved_now=False) from None
    finally:
        if run.prog is not None:
            run.prog.close(failed=failed)
        run.log.close()


def _end_epoch(run: _Run, st: _State, epoch_done: bool, evaluate_fn: Callable[..., dict[str, Any]],
               history: list[dict[str, Any]]) -> None:
    """After an epoch (or the last, partial one): evaluate when due, then write best/last/numbered checkpoints."""
    cfg, n_ep = run.cfg, st.epoch
    finished = st.step >= run.total_steps or n_ep >= cfg.schedule.epochs
    periodic = epoch_done and cfg.train.eval_every > 0 and n_ep % cfg.train.eval_every == 0
    assert run.stop is not None and run.log is not None
    if run.val_dataset is not None and (periodic or finished) and not run.stop.requested:
        res = evaluate_fn(unwrap(run.model), run.val_dataset, run.info, cfg, n_ep)
        unwrap(run.model).train()
        record = {"epoch": n_ep, "step": st.step, **{k: v for k, v in res.items() if isinstance(v, (int, float))}}
        history.append(record)
        run.log.write(record)
        if res.get("mAP") is not None and res["mAP"] > st.best_map:
            st.best_map = float(res["mAP"])
            run.save(run.out_dir / ckpt.BEST, st)
    run.save(run.out_dir / ckpt.LAST, st)
    run.last_good = run.out_dir / ckpt.LAST
    if epoch_done and cfg.train.ckpt_every > 0 and n_ep % cfg.train.ckpt_every == 0:
        run.save(run.out_dir / f"checkpoint-{n_ep}.pth", st)


class _NanLoss(Exception):
    def __init__(self, value: float, step: int, lr: float) -> None:
        self.value, self.step, self.lr = value, step, lr


def _run_epoch(run: _Run, st: _State) -> bool:
    """Train the rest of ``st.epoch``; False if stopped early by ``train.max_steps``.

    Raises ``_StopRequested`` at an iteration boundary after a first Ctrl-C.
    """
    cfg, info, stop = run.cfg, run.info, run.stop
    run.sampler.set_position(st.epoch, st.step_in_epoch)
    if hasattr(run.train_dataset, "set_epoch"):
        run.train_dataset.set_epoch(st.epoch)
    run.model.train()
    t0, clips = time.time(), 0
    batches = iter(_loader(run.train_dataset, run.sampler, run.per_rank, cfg, run.collate, st.epoch))
    while True:
        if stop is not None and stop.requested:
            raise _StopRequested
        try:
            batch = next(batches)
        except StopIteration:
            break
        except RuntimeError:
            if stop is not None and stop.requested:  # a DataLoader worker hit by the same Ctrl-C
                raise _StopRequested from None
            raise
        lr = run.sched(st.step)
        set_lr(run.optimizer, lr)
        loss_value = _step(run.model, run.optimizer, run.scaler, batch, cfg, info, st.step, run.per_rank)
        if not math.isfinite(loss_value):
            raise _NanLoss(loss_value, st.step, lr)
        st.step += 1
        st.step_in_epoch += 1
        clips += run.per_rank * info.world_size
        speed = clips / max(time.time() - t0, 1e-9)
        if run.prog is not None:
            run.prog.update(completed=st.step,
                            detail=f"epoch {st.epoch + 1}  loss {loss_value:.4f}  lr {lr:.2e}  {speed:.2f} clips/s")
        if cfg.runtime.log_every > 0 and st.step % cfg.runtime.log_every == 0 and run.log is not None:
            run.log.write({"step": st.step, "epoch": st.epoch, "loss": loss_value, "lr": lr, "clips_per_s": speed})
        if cfg.train.ckpt_every_steps > 0 and st.step % cfg.train.ckpt_every_steps == 0:
            run.save(run.out_dir / ckpt.LAST, st)
        if st.step >= run.total_steps:
            return st.step_in_epoch >= run.sampler.steps_per_epoch
    return True


def _step(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batch: dict[str, Any],
          cfg: TrainConfig, info: DistInfo, step: int, per_rank: int) -> float:
    clip = batch["clip"].to(info.device, non_blocking=True)  # [B, 3, 16, Hp, Wp]
    rois = batch["rois"]  # [K, 5]
    if cfg.train.box_jitter:
        rois = jitter_rois(rois, batch["sizes"], batch["indices"], cfg.train.seed, step)
    rois = rois.to(info.device)
    labels = batch["labels"].to(info.device)  # [K, 80]
    opt.zero_grad(set_to_none=True)
    try:
        with autocast_context(cfg, info.device):
            logits = model(clip, rois)  # [K, 80]
        loss = detection_loss(logits, labels)
        value = all_reduce_mean(float(loss.detach()), info)  # same value (and NaN decision) on all ranks
        if not math.isfinite(value):
            return value  # the seed stops on a non-finite loss; the caller raises
        scaler.scale(loss).backward()
    except torch.OutOfMemoryError as exc:
        raise _oom_error(exc, per_rank) from None
    if cfg.optim.clip_grad is not None:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
    scaler.step(opt)
    scaler.update()
    return value


__all__ = ["train", "TrainResult", "TrainingInterrupted", "build_model", "build_datasets", "check_training_data",
           "previous_run_files", "clear_run", "resume_differences", "RESUME_FIELDS", "detection_loss", "jitter_rois",
           "sample_generator", "autocast_context", "IndexedDataset"]
