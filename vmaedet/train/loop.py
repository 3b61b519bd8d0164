"""The training loop: the seed's optimisation (spec §5), resumable at any iteration, DDP-ready.

One iteration: lr ← schedule(step) · lr_scale per group → GT boxes jittered with
``random_aug`` (a generator seeded from (seed, step, sample index), so resume and world size do
not change it) → forward under autocast (fp16 on CUDA, optional bf16 on CPU) →
``BCEWithLogits(mean) × K`` → backward (GradScaler on CUDA) → optional clipping → AdamW step.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
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

from ..config import TrainConfig, dump_config
from ..errors import CheckpointError, DataError, VmaedetError
from ..ops.boxes import random_aug
from . import checkpointing as ckpt
from .distributed import (DistInfo, ResumableDistributedSampler, all_gather_objects, all_reduce_mean, barrier,
                          init_distributed)
from .evaluate import autocast_for
from .optim import actual_lr, build_optimizer, set_lr
from .schedule import CosineSchedule

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
    from ..data.ava import collate_clips

    return collate_clips


def build_datasets(cfg: TrainConfig, need_val: bool = True) -> tuple[Dataset, Dataset | None]:
    """Train (and val) datasets from ``cfg.data`` via ``vmaedet.data.ava.build_dataset``."""
    root = cfg.data.root
    if root is None:
        raise DataError("no dataset root configured", received="data.root = null",
                        expected="an AVA-format directory (vmaedet synth OUT writes one)",
                        fix="pass --set data.root=PATH (or --data PATH)")
    if not Path(root).is_dir():
        raise DataError(f"dataset root not found: {root}", received=str(root), expected="an existing directory",
                        fix="create synthetic data with `vmaedet synth DIR` or point data.root at your AVA root")
    from ..data.ava import build_dataset

    train_ds = build_dataset(root, cfg.data.train_split, train=True, **{"seed": cfg.train.seed, **cfg.data.kwargs})
    val_ds = build_dataset(root, cfg.data.val_split, train=False, **cfg.data.kwargs) if need_val else None
    return train_ds, val_ds


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
def build_model(cfg: TrainConfig) -> nn.Module:
    """Random init of ``model.arch``, or the weights of ``model.init`` (any official layout).

    ``short_side`` is set to the data's (``data.kwargs.short_side``, default 256), so the saved
    checkpoints are evaluated, exported and streamed at the resolution they were trained at.
    """
    from ..models import create_detector

    opts = {"drop_path": cfg.model.drop_path, "grad_checkpointing": cfg.model.grad_checkpointing,
            "attn_impl": cfg.model.attn_impl}
    if cfg.model.init:
        from ..models.checkpoints import load_detector

        model = load_detector(cfg.model.init, arch=cfg.model.arch, **opts)
    else:
        model = create_detector(cfg.model.arch, **opts)
    # The test geometry saved with the checkpoints (evaluation, export, stream) is the one trained at.
    model.short_side = int(cfg.data.kwargs.get("short_side", 256))
    return model.train()  # type: ignore[union-attr]


def initial_model(cfg: TrainConfig) -> nn.Module:
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
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(enabled: bool, total: int, done: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[speed]:.2f} clips/s"),
                    TimeRemainingColumn())
    task = prog.add_task("train", total=total, completed=done, loss=float("nan"), lr=0.0, speed=0.0)
    prog.start()
    return prog, task


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


def _restore(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             info: DistInfo) -> _State:
    state = ckpt.load_resume(path)
    try:
        unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not fit this model/optimizer", received=str(exc).splitlines()[0],
                              fix="resume with the config the checkpoint was written with") from None
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    ckpt.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
    return _State(step=state["step"], epoch=state["epoch"], step_in_epoch=state["step_in_epoch"],
                  best_map=state["best_map"])


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


def train(cfg: TrainConfig, resume: str | None = None, train_dataset: Dataset | None = None,
          val_dataset: Dataset | None = None, collate_fn: CollateFn | None = None,
          evaluate_fn: Callable[..., dict[str, Any]] | None = None) -> TrainResult:
    """Run (or resume) training as configured; call once per process under torchrun.

    Args:
        cfg: the configuration.
        resume: None, ``"auto"`` (last checkpoint in ``train.out_dir`` if any) or a path.
        train_dataset / val_dataset / collate_fn: override the AVA datasets (tests, custom data).
        evaluate_fn: ``(model, dataset, info, cfg, epoch) -> {"mAP": …}``; defaults to
            :func:`vmaedet.train.evaluate.evaluate_model`.
    """
    t_start = time.time()
    info = init_distributed(cfg.runtime.device)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    total_batch = cfg.train.batch_size
    if total_batch % info.world_size:
        raise VmaedetError("the total batch does not divide by the number of processes",
                           received=f"train.batch_size={total_batch}, world size {info.world_size}",
                           fix="choose a batch size that is a multiple of the number of processes")
    per_rank = total_batch // info.world_size
    out_dir = Path(cfg.train.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(cfg))
    seed = cfg.train.seed + info.rank  # the seed's `seed + rank`
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)

    if train_dataset is None:
        train_dataset, ds_val = build_datasets(cfg, need_val=val_dataset is None)
        val_dataset = val_dataset or ds_val
    collate = collate_fn or default_collate()
    model = build_model(cfg).to(info.device)
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=info.device.type == "cuda" and cfg.runtime.amp)
    sampler = ResumableDistributedSampler(train_dataset, info, per_rank, seed=cfg.train.seed)
    iters = sampler.steps_per_epoch
    if iters < 1:
        raise DataError("the training set is smaller than one batch",
                        received=f"{len(train_dataset)} clips, total batch {total_batch}",  # type: ignore[arg-type]
                        fix="lower train.batch_size or add data")
    lr_peak = actual_lr(cfg.optim.lr, total_batch, cfg.optim.lr_scaling)
    sched = CosineSchedule.from_epochs(lr_peak, actual_lr(cfg.optim.min_lr, total_batch, cfg.optim.lr_scaling),
                                       cfg.schedule.epochs, iters, cfg.schedule.warmup_epochs, cfg.schedule.warmup_steps)
    st = _State()
    resume_path = ckpt.resolve_resume(resume, out_dir)
    if resume_path is not None:
        st = _restore(resume_path, model, optimizer, scaler, info)
    ddp_model: nn.Module = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None) \
        if info.distributed else model
    if evaluate_fn is None:
        from .evaluate import evaluate_model as evaluate_fn  # noqa: N813
    log = MetricsLog(out_dir, info.is_main, cfg.runtime.tensorboard)
    total_steps = cfg.schedule.epochs * iters
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)
    prog, task = _progress(info.is_main and cfg.runtime.progress, total_steps, st.step)
    history: list[dict[str, Any]] = []
    last_good: Path | None = resume_path
    try:
        while st.step < total_steps and st.epoch < cfg.schedule.epochs:
            epoch_done = _run_epoch(ddp_model, optimizer, scaler, sched, sampler, train_dataset, collate, cfg,
                                    info, st, per_rank, total_steps, log, prog, task, out_dir)
            if epoch_done:
                st.epoch += 1
                st.step_in_epoch = 0
            n_ep = st.epoch
            finished = st.step >= total_steps or n_ep >= cfg.schedule.epochs
            periodic = epoch_done and cfg.train.eval_every > 0 and n_ep % cfg.train.eval_every == 0
            if val_dataset is not None and (periodic or finished):
                res = evaluate_fn(unwrap(ddp_model), val_dataset, info, cfg, n_ep)
                unwrap(ddp_model).train()
                record = {"epoch": n_ep, "step": st.step, **{k: v for k, v in res.items() if isinstance(v, (int, float))}}
                history.append(record)
                log.write(record)
                if res.get("mAP") is not None and res["mAP"] > st.best_map:
                    st.best_map = float(res["mAP"])
                    _save(out_dir / ckpt.BEST, ddp_model, optimizer, scaler, st, cfg, info)
            _save(out_dir / ckpt.LAST, ddp_model, optimizer, scaler, st, cfg, info)
            last_good = out_dir / ckpt.LAST
            if epoch_done and cfg.train.ckpt_every > 0 and n_ep % cfg.train.ckpt_every == 0:
                _save(out_dir / f"checkpoint-{n_ep}.pth", ddp_model, optimizer, scaler, st, cfg, info)
    except _NanLoss as exc:
        raise VmaedetError(f"the loss became {exc.value} at iteration {exc.step} (epoch {st.epoch})",
                           received=f"lr {exc.lr:.3e}",
                           fix=f"resume from the last good checkpoint ({last_good or 'none written yet'}) with a lower "
                               "optim.lr, optim.clip_grad set (e.g. 1.0), or runtime.cpu_bf16/amp off") from None
    finally:
        if prog is not None:
            prog.stop()
        log.close()
    final = None
    if info.is_main:
        from ..models.checkpoints import save_detector

        final = save_detector(unwrap(ddp_model), out_dir / "final.safetensors",  # type: ignore[arg-type]
                              extra={"epoch": st.epoch, "step": st.step, "best_map": st.best_map})
    barrier()
    return TrainResult(out_dir=out_dir, final_checkpoint=final, steps=st.step, history=history,
                       wall_s=time.time() - t_start, model=unwrap(ddp_model))


class _NanLoss(Exception):
    def __init__(self, value: float, step: int, lr: float) -> None:
        self.value, self.step, self.lr = value, step, lr


def _run_epoch(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, sched: CosineSchedule,
               sampler: ResumableDistributedSampler, ds: Dataset, collate: CollateFn, cfg: TrainConfig,
               info: DistInfo, st: _State, per_rank: int, total_steps: int, log: MetricsLog, prog: Any, task: Any,
               out_dir: Path) -> bool:
    """Train the rest of ``st.epoch``; False if stopped early by ``train.max_steps``."""
    sampler.set_position(st.epoch, st.step_in_epoch)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(st.epoch)
    model.train()
    t0, clips = time.time(), 0
    for batch in _loader(ds, sampler, per_rank, cfg, collate, st.epoch):
        lr = sched(st.step)
        set_lr(opt, lr)
        loss_value = _step(model, opt, scaler, batch, cfg, info, st.step, per_rank)
        if not math.isfinite(loss_value):
            raise _NanLoss(loss_value, st.step, lr)
        st.step += 1
        st.step_in_epoch += 1
        clips += per_rank * info.world_size
        speed = clips / max(time.time() - t0, 1e-9)
        if prog is not None:
            prog.update(task, completed=st.step, loss=loss_value, lr=lr, speed=speed)
        if cfg.runtime.log_every > 0 and st.step % cfg.runtime.log_every == 0:
            log.write({"step": st.step, "epoch": st.epoch, "loss": loss_value, "lr": lr, "clips_per_s": speed})
        if cfg.train.ckpt_every_steps > 0 and st.step % cfg.train.ckpt_every_steps == 0:
            _save(out_dir / ckpt.LAST, model, opt, scaler, st, cfg, info)
        if st.step >= total_steps:
            return st.step_in_epoch >= sampler.steps_per_epoch
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


__all__ = ["train", "TrainResult", "build_model", "build_datasets", "detection_loss", "jitter_rois",
           "sample_generator", "autocast_context", "IndexedDataset"]
