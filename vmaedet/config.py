"""Training configuration: frozen dataclasses, YAML in, unknown keys rejected with a suggestion.

A config file is a YAML mapping with the sections of :class:`TrainConfig` (``model``, ``data``,
``optim``, ``schedule``, ``train``, ``runtime``); any field left out keeps its default, which is
the seed's setting (spec §5).  ``--set a.b=value`` overrides parse ``value`` with
``yaml.safe_load`` (``--set optim.lr=1e-3``, ``--set model.init=null``).

>>> cfg = load_config("tiny", ["optim.lr=2e-3"])
>>> cfg.optim.lr
0.002
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vmaedet.errors import ConfigError

#: Built-in config names (``tiny``, ``vit_b_k400ft``, …) are the YAML files shipped in the package.
PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ModelConfig:
    """Which detector to train and where its initial weights come from."""

    arch: str = "vit_base_patch16_224"  # registered variant name or alias (vmaedet info lists them)
    init: str | None = None  # official pretrain / Kinetics / AVA / vmaedet checkpoint; null = random init
    drop_path: float = 0.2  # stochastic depth of the last block (linspace from 0); the seed uses 0.2
    grad_checkpointing: bool = False  # recompute blocks in backward (the seed does it for ViT-L/H)
    attn_impl: str = "sdpa"  # "sdpa" (fused) or "naive" (the seed's explicit matmuls)


@dataclass(frozen=True)
class DatasetOptions:
    """Options of the AVA dataset (``vmaedet.data.ava.build_dataset`` / ``AVADataset``), YAML ``data.kwargs``.

    Every field left out (None) keeps the dataset's default, which is the seed's setting.
    """

    short_side: int | None = None  # resize of the short side, px (the seed: 256); also the model's test resize
    crop_size: int | None = None  # training crop, px (the seed: 224)
    cache: bool | None = None  # keep decoded keyframe windows in memory (small datasets)
    frame_source: str | None = None  # "video" (default), "frames" or "coco" layouts
    frames_root: str | None = None  # where the frames/videos are, when not under the dataset root
    fps: float | None = None  # frame rate of the source (default: the layout's)
    box_threshold: float | None = None  # proposal score threshold at evaluation (the seed: 0.8)
    temporal_rule: str | None = None  # how keyframe windows are placed ("auto")
    timestamp_start: int | None = None  # first AVA timestamp (real AVA: 900)
    seed_quirk: bool | None = None  # the seed's resize transposition for frames already at the short side
    seed: int | None = None  # the dataset's augmentation seed (default: train.seed)
    proposals: str | None = None  # person proposals CSV (default: the layout's)
    coco_images: str | None = None  # COCO-layout images folder
    labelmap: str | None = None  # label map (.pbtxt) (default: the layout's)
    exclusions: str | None = None  # excluded timestamps CSV (default: the layout's)

    def given(self) -> dict[str, Any]:
        """The options set (not None), as keyword arguments of ``build_dataset``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class DataConfig:
    """Where the AVA-format data lives and how clips are prepared."""

    root: str | None = None  # dataset root (vmaedet synth OUT, or an AVA root); required to train
    train_split: str = "train"  # split trained on
    val_split: str = "val"  # split evaluated on
    num_workers: int = 2  # DataLoader worker processes per rank (0 = load in the main process)
    size_divisible: int = 16  # batch padding multiple (the seed's BatchCollator)
    kwargs: DatasetOptions = field(default_factory=DatasetOptions)  # options of the AVA dataset (short side, crop, …)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with layer-wise lr decay (spec §5); lr values are *base* lrs, scaled by batch/256."""

    lr: float = 5e-4  # base lr; actual lr = lr · total_batch / 256
    min_lr: float = 1e-6  # base final lr of the cosine; scaled like lr (seed: 1e-6 → 5e-7)
    layer_decay: float = 0.75  # lr scale of layer i = layer_decay^(depth + 1 − i)
    weight_decay: float = 0.05  # decoupled weight decay (not on 1-D params and biases)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    clip_grad: float | None = None  # max global grad norm; null = no clipping (the seed)
    lr_scaling: bool = True  # linear scaling rule lr · total_batch / 256 (the seed does it)


@dataclass(frozen=True)
class ScheduleConfig:
    """Per-iteration linear warm-up from 0 then cosine to min_lr."""

    epochs: int = 30  # training epochs
    warmup_epochs: float = 5.0  # warm-up length in epochs (per iteration, from lr 0)
    warmup_steps: int = 0  # if > 0, warm-up length in iterations (overrides warmup_epochs)


@dataclass(frozen=True)
class LoopConfig:
    """Batching, seeding, checkpointing and evaluation cadence."""

    batch_size: int = 128  # total batch over all ranks (must divide by the world size)
    seed: int = 0  # base seed: shuffling from (seed, epoch), jitter from (seed, step, sample)
    out_dir: str = "runs/train"  # where checkpoints, metrics.jsonl and detections go
    ckpt_every: int = 10  # write checkpoint-<epoch>.pth every N epochs (and always `last.pth`)
    ckpt_every_steps: int = 0  # also refresh `last.pth` every N iterations (0 = only at epoch ends)
    eval_every: int = 10  # evaluate frame-mAP every N epochs and after the last one (0 = only at the end)
    eval_batch_size: int = 0  # clips per rank at evaluation (0 = 1.5 × per-rank batch, the seed's rule)
    box_jitter: bool = True  # the seed's random_aug(0.2, 0.1, 0.1, 0.05) on GT boxes at training
    max_steps: int = 0  # stop after this many iterations in total (0 = train all epochs; for tests)


@dataclass(frozen=True)
class RuntimeConfig:
    """Devices, precision and logging."""

    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda"
    amp: bool = True  # fp16 autocast + GradScaler on CUDA (the seed); ignored on CPU
    cpu_bf16: bool = False  # bf16 autocast on CPU (faster with AMX, slightly less exact)
    threads: int = 0  # torch intra-op threads per rank (0 = leave torch's default)
    log_every: int = 10  # write a metrics.jsonl line every N iterations
    tensorboard: bool = False  # also write TensorBoard scalars (only if tensorboard is installed)
    progress: bool = True  # rich progress bar on rank 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``vmaedet train --config`` reads it from YAML."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) — YAML/JSON friendly and ``weights_only`` loadable.

        ``data.kwargs`` holds only the options set, as the YAML wrote them.
        """
        out = _plain(dataclasses.asdict(self))
        out["data"]["kwargs"] = _plain(self.data.kwargs.given())
        return out

    def replace(self, **sections: Any) -> "TrainConfig":
        """Copy with whole sections replaced (``cfg.replace(train=...)``)."""
        return dataclasses.replace(self, **sections)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# -- building from dicts ----------------------------------------------------------------------
def _unknown_key(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return ConfigError(
        f"unknown config key '{where}{key}'",
        received=key,
        expected=", ".join(known),
        fix=f"did you mean '{where}{close[0]}'?" if close else "remove it or fix the spelling",
    )


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int → float allowed; lists → tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {name} must be a list of {len(args)} values", received=value)
        return tuple(_coerce(v, a, name) for v, a in zip(value, args))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(
        f"config key {name} has the wrong type",
        received=f"{value!r} ({type(value).__name__})",
        expected=getattr(tp, "__name__", str(tp)),
        fix=f"write {name} as a {getattr(tp, '__name__', tp)}",
    )


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where or '(top)'} must be a mapping", received=repr(data)[:80])
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(str(key), names, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, f"{where}{key}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; unknown keys and out-of-range values raise."""
    cfg = _build(TrainConfig, data, "")
    validate_config(cfg)
    return cfg


#: Range of every numeric field, in one place: key → (low, high, low inclusive, what it means).
#: ``None`` bounds are open; None values (``optim.clip_grad: null``) are allowed where the type is optional.
_RANGES: dict[str, tuple[float | None, float | None, bool, str]] = {
    "model.drop_path": (0.0, 1.0, True, "a probability in [0, 1)"),
    "data.num_workers": (0, None, True, "0 (load in the main process) or more worker processes"),
    "data.size_divisible": (1, None, True, "a padding multiple ≥ 1 (the seed uses 16)"),
    "optim.lr": (0.0, None, True, "a base learning rate ≥ 0"),
    "optim.min_lr": (0.0, None, True, "a final learning rate ≥ 0"),
    "optim.layer_decay": (0.0, 1.0, False, "a factor in (0, 1] (1 = no layer decay)"),
    "optim.weight_decay": (0.0, None, True, "a weight decay ≥ 0"),
    "optim.eps": (0.0, None, False, "a small positive number (1e-8)"),
    "optim.clip_grad": (0.0, None, False, "a positive max gradient norm, or null for no clipping"),
    "schedule.epochs": (1, None, True, "at least 1 epoch"),
    "schedule.warmup_epochs": (0.0, None, True, "0 or more warm-up epochs"),
    "schedule.warmup_steps": (0, None, True, "0 (use warmup_epochs) or more warm-up iterations"),
    "train.batch_size": (1, None, True, "a total batch of at least 1 clip"),
    "train.seed": (0, None, True, "a seed ≥ 0"),
    "train.ckpt_every": (0, None, True, "0 (only last.pth) or a number of epochs"),
    "train.ckpt_every_steps": (0, None, True, "0 (only at epoch ends) or a number of iterations"),
    "train.eval_every": (0, None, True, "0 (only after the last epoch) or a number of epochs"),
    "train.eval_batch_size": (0, None, True, "0 (the seed's 1.5 × per-rank batch) or a batch size"),
    "train.max_steps": (0, None, True, "0 (train every epoch) or a number of iterations"),
    "runtime.threads": (0, None, True, "0 (torch's default) or a number of threads"),
    "runtime.log_every": (0, None, True, "0 (no step lines) or a number of iterations"),
    "data.kwargs.short_side": (16, 4096, True, "a resize short side in 16..4096 pixels (the seed uses 256)"),
    "data.kwargs.crop_size": (16, 4096, True, "a crop size in 16..4096 pixels (the seed uses 224)"),
    "data.kwargs.fps": (0.0, None, False, "a positive frame rate"),
    "data.kwargs.box_threshold": (0.0, 1.0, True, "a proposal score threshold in [0, 1]"),
}
_HIGH_EXCLUSIVE = {"model.drop_path"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "model.attn_impl": ("sdpa", "naive"),
    "data.train_split": ("train", "val"),
    "data.val_split": ("train", "val"),
}


def _lookup(cfg: TrainConfig, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return True, node


def _range_error(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config value {key} is out of range", received=f"{key}={value!r}", expected=expected,
                       fix=f"change {key} in the config file or its override ({key}=VALUE): {expected}")


def validate_config(cfg: TrainConfig) -> None:
    """Check every numeric field's range and every enumerated field's choice (one :class:`ConfigError`).

    Called by :func:`config_from_dict` (so by :func:`load_config`); call it again after building a
    config with ``dataclasses.replace``.
    """
    import math

    for key, (low, high, low_incl, expected) in _RANGES.items():
        present, value = _lookup(cfg, key)
        if not present or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config value {key} must be a number", received=f"{key}={value!r}", expected=expected,
                              fix=f"write {key} as a number")
        if not math.isfinite(value):
            raise _range_error(key, value, expected)
        if low is not None and (value < low if low_incl else value <= low):
            raise _range_error(key, value, expected)
        if high is not None and (value >= high if key in _HIGH_EXCLUSIVE else value > high):
            raise _range_error(key, value, expected)
    for i, beta in enumerate(cfg.optim.betas):
        if not (math.isfinite(beta) and 0.0 <= beta < 1.0):
            raise _range_error(f"optim.betas[{i}]", beta, "AdamW betas in [0, 1), e.g. [0.9, 0.999]")
    for key, choices in _CHOICES.items():
        _, value = _lookup(cfg, key)
        if value not in choices:
            raise ConfigError(f"config value {key} is not one of {list(choices)}", received=f"{key}={value!r}",
                              expected=" | ".join(choices), fix=f"set {key} to one of {', '.join(choices)}")
    dev = cfg.runtime.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError("config value runtime.device is not a device", received=f"runtime.device={dev!r}",
                          expected="auto | cpu | cuda | cuda:N", fix="set runtime.device to auto, cpu or cuda")
    from vmaedet.models.detector import resolve_name

    resolve_name(cfg.model.arch)  # a typo raises with a suggestion


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section", received=dotted)
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` → ("a.b", yaml.safe_load(value))."""
    if "=" not in text:
        raise ConfigError("an override must look like section.key=value", received=text,
                          expected="e.g. optim.lr=1e-3 or model.init=null")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError("an override has an empty key", received=text, expected="section.key=value")
    return key, yaml.safe_load(raw) if raw.strip() else ""


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or a built-in name (``tiny``, ``vit_b_pretrain``) shipped in ``vmaedet/configs/``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    cand = PACKAGE_CONFIG_DIR / f"{stem}.yaml"
    if str(p) == p.name and cand.is_file():
        return cand
    builtin = sorted(c.stem for c in PACKAGE_CONFIG_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(stem, builtin, n=1)
    raise ConfigError(
        f"config not found: {name_or_path}",
        received=str(name_or_path),
        expected="a YAML file or a built-in name: " + ", ".join(builtin),
        fix=f"did you mean {close[0]!r}?" if close else "pass the path of a YAML file",
    )


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """A YAML syntax error with its line and column (1-based) and the offending line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return ConfigError(f"{path} is not valid YAML", received=problem, fix="fix the YAML syntax")
    line, col = mark.line + 1, mark.column + 1
    try:
        text = path.read_text().splitlines()[mark.line]
    except (OSError, IndexError, UnicodeDecodeError):
        text = ""
    context = getattr(exc, "context", None)
    return ConfigError(f"{path}:{line}:{col}: not valid YAML: {problem}" + (f" ({context})" if context else ""),
                       received=f"line {line}: {text.strip()!r}" if text else f"line {line}, column {col}",
                       expected="YAML: `section:` lines, then indented `key: value` lines",
                       fix=f"fix the YAML syntax at line {line}, column {col}")


def load_config(name_or_path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or a built-in name), apply ``a.b=value`` overrides, validate.

    Args:
        name_or_path: YAML file, built-in name, or None for the defaults.
        overrides: ``section.key=value`` strings, applied in order.
    """
    data: dict[str, Any] = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise _yaml_error(path, exc) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config {path}", received=f"{type(exc).__name__}: {exc}",
                              expected="a readable YAML text file", fix="check the path and the file's permissions") from None
        data = loaded or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections", received=type(data).__name__)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key, value)
    return config_from_dict(data)


def dump_config(cfg: TrainConfig) -> str:
    """YAML text of a config (what ``vmaedet train`` writes next to its checkpoints)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


__all__ = [
    "ModelConfig", "DataConfig", "OptimConfig", "ScheduleConfig", "LoopConfig", "RuntimeConfig",
    "TrainConfig", "load_config", "config_from_dict", "validate_config", "parse_override", "resolve_config_path", "dump_config",
]
