"""Loading and saving detector checkpoints.

Layouts understood by :func:`load_detector` (spec §6):

=====================  =====================================================================
layout                 what it is
=====================  =====================================================================
``vmaedet``            our own: one ``.safetensors`` file, JSON config in its metadata
``ava``                official AVA fine-tuned ``{'model': state_dict}`` (exact seed keys)
``ava-full``           the seed's training save ``{'model', 'optimizer', 'epoch', 'scaler',
                       'args': argparse.Namespace}``
``pretrain``           VideoMAE pretrain ``{'model': {encoder.*, decoder.*, …}}``; decoder,
                       ``encoder_to_decoder`` and ``mask_token`` ignored; head left at init
``kinetics``           VideoMAE Kinetics fine-tuned ``{'module': …}`` with ``fc_norm`` and a
                       400-way head: head dropped, ``fc_norm`` ignored, ``norm`` left at init
``state-dict``         a bare state_dict with the seed's keys
=====================  =====================================================================

Pickled ``.pth`` files are read with ``torch.load(weights_only=True)``; the only extra global
allowed is ``argparse.Namespace`` (the seed pickles its args).  Anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from vmaedet.constants import NUM_CLASSES, SHORT_SIDE
from vmaedet.errors import CheckpointError, ConfigError
from vmaedet.models.detector import (ActionDetector, PreprocessConfig, create_detector, infer_variant, list_models,
                                    resolve_name)
from vmaedet.models.videomae import BackboneConfig

FORMAT = "vmaedet-detector-1"
_IGNORED_PRETRAIN = ("decoder.", "encoder_to_decoder", "mask_token")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_detector` found and did."""

    path: str
    layout: str
    variant: str
    loaded_keys: int
    initialised: list[str] = field(default_factory=list)  # keys left at init (not in the file)
    ignored: list[str] = field(default_factory=list)  # keys in the file that were not used
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- reading ----------------------------------------------------------------------------------
def _torch_load(path: Path) -> Any:
    try:
        # Read through a file object: given a path, torch.load picks its reader by the file *name*
        # (a ``.safetensors`` name goes to safetensors) while we decide by the content.
        with open(path, "rb") as fh, torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        raise CheckpointError(
            f"refused to unpickle {path}: it contains Python objects other than tensors and argparse.Namespace",
            received=msg.splitlines()[0] if msg else type(exc).__name__,
            expected="a checkpoint readable with torch.load(weights_only=True) (tensors, dicts, lists, argparse.Namespace)",
            fix="only load checkpoints you trust; re-save the state_dict alone with torch.save({'model': sd}, path)",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - zip, pickle, EOF, OS errors: all mean an unreadable file
        raise CheckpointError(
            f"could not read {path}: the file is truncated, corrupt or not a PyTorch checkpoint",
            received=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            expected="a complete .pth file written by torch.save, or a vmaedet .safetensors checkpoint",
            fix="re-download or re-copy the file and compare its size/sha256 with the source",
        ) from exc


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"could not read {path} as safetensors: the file is truncated or corrupt, or not a checkpoint",
            received=(str(exc).splitlines() or [type(exc).__name__])[0],
            expected="a .safetensors file written by vmaedet.save_detector",
            fix="re-copy the file or re-create it with `vmaedet convert SRC DST`",
        ) from exc
    return tensors, meta


def _meta_json(meta: Mapping[str, str], key: str, path: Path, default: str | None = None) -> Any:
    """``json.loads(meta[key])``; a missing entry (without default) or bad JSON is a CheckpointError."""
    if key not in meta:
        if default is not None:
            return json.loads(default)
        raise CheckpointError(
            f"{path} is marked as a vmaedet checkpoint but its metadata has no {key!r} entry",
            received=f"metadata keys {sorted(meta)}",
            expected="'format', 'config' (JSON: variant, num_classes, backbone, preprocess) and 'extra'",
            fix="re-create the file with vmaedet.save_detector or `vmaedet convert SRC DST`",
        )
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: the {key!r} entry of the safetensors metadata is not valid JSON",
            received=f"{meta[key][:80]!r} ({exc})",
            expected="a JSON object written by vmaedet.save_detector",
            fix="re-create the file with vmaedet.save_detector or `vmaedet convert SRC DST`",
        ) from None


def _model_from_config(cfg: Any, path: Path, overrides: Mapping[str, Any],
                       preprocess: PreprocessConfig | None = None) -> ActionDetector:
    """The detector described by a vmaedet checkpoint's ``config``; every field checked with words.

    ``preprocess`` (when given) replaces the file's preprocessing facts.
    """

    def bad(what: str, received: object, expected: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}", received=received, expected=expected,
                               fix="re-create the file with vmaedet.save_detector or `vmaedet convert SRC DST`")

    if not isinstance(cfg, dict):
        raise bad("the metadata 'config' is not a JSON object", type(cfg).__name__, "a JSON object")
    unknown = sorted(set(cfg) - set(_CONFIG_FIELDS))
    if unknown:
        raise bad(f"the metadata 'config' has unknown field(s) {unknown}", sorted(cfg), ", ".join(_CONFIG_FIELDS))
    backbone = cfg.get("backbone")
    if not isinstance(backbone, dict):
        raise bad("the metadata 'config' has no 'backbone' object", repr(backbone)[:80],
                  "backbone: {embed_dim, depth, num_heads, …}")
    names = [f.name for f in fields(BackboneConfig)]
    unknown = sorted(set(backbone) - set(names))
    missing = [n for n in ("embed_dim", "depth", "num_heads") if n not in backbone]
    if unknown or missing:
        raise bad("the backbone config has " + (f"unknown field(s) {unknown}" if unknown else f"no {missing}"),
                  sorted(backbone), "fields of BackboneConfig: " + ", ".join(names))
    for key in ("embed_dim", "depth", "num_heads"):
        v = backbone[key]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise bad(f"backbone.{key} must be a positive integer", repr(v), "an integer ≥ 1")
    if backbone["embed_dim"] % backbone["num_heads"]:
        raise bad("backbone.embed_dim does not divide by num_heads",
                  f"embed_dim {backbone['embed_dim']}, num_heads {backbone['num_heads']}", "embed_dim % num_heads == 0")
    num_classes = cfg.get("num_classes", NUM_CLASSES)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
        raise bad("num_classes must be a positive integer", repr(num_classes), "an integer ≥ 1 (80 for AVA)")
    saved = _saved_preprocess(cfg, bad)
    try:
        bcfg = BackboneConfig(**{**backbone, **overrides})
    except (TypeError, ValueError) as exc:
        raise bad("the backbone config is invalid", str(exc), "fields of BackboneConfig: " + ", ".join(names)) from None
    return ActionDetector(bcfg, num_classes=num_classes, variant=cfg.get("variant"),
                          preprocess=preprocess if preprocess is not None else saved)


#: Fields of a vmaedet checkpoint's ``config``; ``short_side`` is how files before ``preprocess`` saved it.
_CONFIG_FIELDS = ("variant", "num_classes", "backbone", "preprocess", "short_side")


def _saved_preprocess(cfg: dict[str, Any], bad: Callable[[str, object, str], CheckpointError]) -> PreprocessConfig:
    """The ``preprocess`` object of a checkpoint config (or the older top-level ``short_side``), checked."""
    short_side = cfg.get("short_side", SHORT_SIDE)
    if not isinstance(short_side, int) or isinstance(short_side, bool) or not 16 <= short_side <= 4096:
        raise bad("short_side (the test-time resize) is out of range", repr(short_side),
                  f"an integer in 16..4096 (the seed uses {SHORT_SIDE})")
    data = cfg.get("preprocess", {"short_side": short_side})
    if not isinstance(data, dict):
        raise bad("the metadata 'preprocess' is not a JSON object", repr(data)[:80],
                  "preprocess: {short_side, clip_len, frame_stride, mean, std}")
    if "short_side" in cfg and data.get("short_side", SHORT_SIDE) != short_side:
        raise bad("short_side and preprocess.short_side disagree", f"{short_side} vs {data.get('short_side')}",
                  "one short side (preprocess.short_side)")
    try:
        return PreprocessConfig.from_dict(data)
    except (ConfigError, TypeError) as exc:
        detail = getattr(exc, "received", None)
        raise bad("the preprocessing config is invalid",
                  str(exc).splitlines()[0] + (f" ({detail})" if detail else ""),
                  "preprocess: short_side in 16..4096, clip_len 16, frame_stride ≥ 1, mean/std of 3 numbers") from None


def _looks_like_safetensors(path: Path, magic: bytes) -> bool:
    """An 8-byte little-endian header length that fits the file, then the JSON header's ``{``."""
    header_len = int.from_bytes(magic[:8], "little")
    return magic[8:9] == b"{" and 0 < header_len < path.stat().st_size and header_len < 100_000_000


#: The key that identifies each patch-embedding stem (``BackboneConfig.stem``) in a state dict.
_STEM_KEYS = {"tubelet": "patch_embed.proj.weight", "conv": "patch_embed.proj.conv4.weight"}


def _stem_of(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``"tubelet"`` (the seed's), ``"conv"`` (ConvStem), or None when the state dict has no patch embedding."""
    return next((stem for stem, key in _STEM_KEYS.items() if key in sd), None)


def _strip(sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _classify(obj: Any, path: Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Find the layout and the state_dict inside a loaded .pth object."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} is not a checkpoint: it holds a {type(obj).__name__}, not a dict",
            expected="a dict with 'model' or 'module', or a state_dict",
        )
    extra: dict[str, Any] = {}
    if "model" in obj and isinstance(obj["model"], Mapping):
        sd = dict(obj["model"])
        if "epoch" in obj:
            extra["epoch"] = obj["epoch"]
        if isinstance(obj.get("args"), argparse.Namespace):
            extra["args"] = vars(obj["args"])
        if any(k.startswith("encoder.") for k in sd):
            layout = "pretrain"
        else:
            layout = "ava-full" if "args" in obj or "optimizer" in obj else "ava"
    elif "module" in obj and isinstance(obj["module"], Mapping):
        sd, layout = dict(obj["module"]), "kinetics"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, layout = dict(obj), "state-dict"
    else:
        keys = sorted(map(str, obj))[:8]
        raise CheckpointError(
            f"{path} has an unknown checkpoint layout",
            received=f"top-level keys {keys}",
            expected="'model' (AVA fine-tuned or pretrain), 'module' (Kinetics fine-tuned) or a bare state_dict",
            fix="see `vmaedet info --help` for the supported layouts",
        )
    sd = _strip(sd, ("module.", "backbone.", "encoder."))
    if layout == "state-dict" and "fc_norm.weight" in sd:
        layout = "kinetics"
    if _stem_of(sd) is None:
        raise CheckpointError(
            f"{path} is not a VideoMAE detector or backbone checkpoint",
            received=f"no 'patch_embed.proj.weight' among {len(sd)} keys (e.g. {sorted(sd)[:5]})",
            expected="VideoMAE ViT weights (patch_embed.*, blocks.*, norm.*, head.*)",
        )
    return layout, sd, extra


def _shape_config(sd: Mapping[str, torch.Tensor], arch: str | None, path: Path) -> tuple[str | None, BackboneConfig | None]:
    """Variant name (or None) and a config inferred from the weight shapes."""
    stem = _stem_of(sd) or "tubelet"
    w = sd[_STEM_KEYS[stem]]
    if stem == "tubelet" and (w.ndim != 5 or tuple(w.shape[1:]) != (3, 2, 16, 16)):
        raise CheckpointError(
            f"{path}: patch embedding has an unexpected shape",
            received=tuple(w.shape), expected="[D, 3, 2, 16, 16]",
        )
    dim = int(w.shape[0])
    depth = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("blocks.")), default=-1)
    hidden_key = "blocks.0.mlp.fc1.weight"
    hidden = int(sd[hidden_key].shape[0]) if hidden_key in sd else 4 * dim
    if arch is not None:
        return resolve_name(arch), None
    name = infer_variant(dim, depth, hidden, stem)
    if name is not None:
        return name, None
    if dim % 64 == 0 and stem == "tubelet":  # official sizes use 64-wide heads (ViT-H: 80, registered)
        return None, BackboneConfig(embed_dim=dim, depth=depth, num_heads=dim // 64, mlp_ratio=hidden / dim)
    raise CheckpointError(
        f"{path}: cannot infer the variant from the weight shapes",
        received=f"embed_dim {dim}, depth {depth}, mlp hidden {hidden}",
        expected=f"one of {list_models()}",
        fix="pass the variant name (arch=<variant>)",
    )


def shape_mismatches(own: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> list[str]:
    """``"key: file (a, b) vs model (c, d)"`` for every key present in both with another shape."""
    return [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in sd.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]


def _check_shapes(model: ActionDetector, sd: Mapping[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    bad = shape_mismatches(own, sd)
    if bad:
        head = [b for b in bad if b.startswith("head.")]
        if head and len(head) == len(bad):
            n = int(sd["head.weight"].shape[0]) if "head.weight" in sd else int(sd["head.bias"].shape[0])
            fix = (f"the file's classification head has {n} classes, the detector {model.num_classes} "
                   f"(AVA v2.2): use a checkpoint with an {model.num_classes}-way head, or fine-tune this one "
                   "with model.init=<file> (a mismatched head of a pretrain/Kinetics/bare state dict is re-initialised)")
        else:
            fix = "pass the right arch (or none, to infer it from the shapes)"
        raise CheckpointError(
            f"{path}: {len(bad)} tensor(s) have another shape than the {model.variant or 'inferred'} model's",
            received="; ".join(bad[:6]) + (" …" if len(bad) > 6 else ""),
            expected="the model's shapes (listed as key: shape in the file vs shape in the model)",
            fix=fix,
        )


@dataclass(frozen=True)
class _Contents:
    """What a checkpoint file holds, before a model is built: layout, tensors, saved config, metadata."""

    layout: str
    sd: dict[str, torch.Tensor]
    config: Any  # the vmaedet metadata ``config`` (JSON), or None for the other layouts
    extra: dict[str, Any]


def _read_contents(path: Path) -> _Contents:
    """Open ``path`` (safetensors or a PyTorch pickle, decided by the content) and classify its layout."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", fix="check the path (relative paths start at the current directory)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory", expected="a checkpoint file (.safetensors or .pth)")
    with open(path, "rb") as fh:
        magic = fh.read(9)
    if len(magic) < 9:
        raise CheckpointError(f"{path} is empty or truncated ({len(magic)} bytes)", expected="a checkpoint file")
    # a safetensors header length can start with 0x80 (a pickle's first byte): test safetensors first
    is_safetensors = _looks_like_safetensors(path, magic)
    is_torch = not is_safetensors and (magic.startswith(b"PK") or magic[:1] == b"\x80")
    if not is_torch and path.suffix != ".safetensors" and not is_safetensors:
        raise CheckpointError(
            f"{path} is not a checkpoint: it is neither a PyTorch file (zip/pickle) nor safetensors",
            received=f"first bytes {magic!r}",
            expected="a .pth written by torch.save or a .safetensors written by vmaedet",
        )
    if is_torch:
        layout, sd, extra = _classify(_torch_load(path), path)
        return _Contents(layout, sd, None, extra)
    sd, meta = _read_safetensors(path)
    if meta.get("format") != FORMAT:
        return _Contents("state-dict", sd, None, {})
    extra = _meta_json(meta, "extra", path, default="{}")
    return _Contents("vmaedet", sd, _meta_json(meta, "config", path), extra if isinstance(extra, dict) else {})


def _build_model(contents: _Contents, path: Path, arch: str | None, preprocess: PreprocessConfig | None,
                 overrides: Mapping[str, Any]) -> ActionDetector:
    """The detector the file describes: its saved config (vmaedet), else the variant of its shapes."""
    if contents.config is not None and arch is None:
        return _model_from_config(contents.config, path, overrides, preprocess)
    sd = contents.sd
    if _stem_of(sd) is None:
        raise CheckpointError(f"{path} is not a VideoMAE detector checkpoint", received=f"keys {sorted(sd)[:5]}")
    name, cfg = _shape_config(sd, arch, path)
    if name is not None:
        return create_detector(name, preprocess=preprocess, **overrides)
    assert cfg is not None
    return ActionDetector(replace(cfg, **overrides) if overrides else cfg, variant=None, preprocess=preprocess)


#: Key prefixes a layout may lack (left at their initial values); the AVA layouts need every key.
_ALLOWED_MISSING = {"ava": (), "ava-full": (), "vmaedet": (), "state-dict": ("head.",),
                    "pretrain": ("head.",), "kinetics": ("head.", "norm.")}


def _select_keys(model: ActionDetector, contents: _Contents, path: Path) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The tensors to load, the model keys left at init and the file keys ignored; refuses misfits in words."""
    layout, sd = contents.layout, contents.sd
    own = model.state_dict()
    ignored: list[str] = []
    if layout == "pretrain":
        ignored += [k for k in sd if k.startswith(_IGNORED_PRETRAIN)]
    if layout == "kinetics":
        ignored += [k for k in sd if k.startswith("fc_norm.")]
    head_w = sd.get("head.weight")
    head_optional = layout in ("state-dict", "pretrain", "kinetics")  # ava / ava-full / vmaedet need theirs
    if head_optional and head_w is not None and tuple(head_w.shape) != tuple(own["head.weight"].shape):
        ignored += [k for k in ("head.weight", "head.bias") if k in sd]  # the seed drops a mismatched head
    sd = {k: v for k, v in sd.items() if k not in set(ignored)}
    _check_shapes(model, sd, path)
    unexpected = [k for k in sd if k not in own]
    if unexpected:
        raise CheckpointError(
            f"{path} ({layout} layout) has {len(unexpected)} key(s) the detector does not have",
            received=", ".join(unexpected[:8]) + (" …" if len(unexpected) > 8 else ""),
            expected="the seed's AVA keys (patch_embed, blocks.i.{norm1,attn,norm2,mlp}, norm, head)",
            fix="check that this is a VideoMAE ViT checkpoint; omit arch= to infer the variant from the shapes",
        )
    missing = [k for k in own if k not in sd]
    bad_missing = [k for k in missing if not k.startswith(_ALLOWED_MISSING[layout])]
    if bad_missing:
        raise CheckpointError(
            f"{path} ({layout} layout) lacks {len(bad_missing)} key(s) of the detector",
            received="missing " + ", ".join(bad_missing[:8]) + (" …" if len(bad_missing) > 8 else ""),
            expected="every key of the seed's AVA model",
            fix="the file may be truncated or from another architecture; pass arch= to choose the variant",
        )
    return sd, missing, ignored


def load_detector_with_report(
    path: str | Path,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    *,
    preprocess: PreprocessConfig | None = None,
    **overrides: Any,
) -> tuple[ActionDetector, LoadReport]:
    """:func:`load_detector`, and a :class:`LoadReport` of what was found and done (layout, keys left at init/ignored)."""
    path = Path(path)
    contents = _read_contents(path)
    model = _build_model(contents, path, arch, preprocess, overrides)
    sd, missing, ignored = _select_keys(model, contents, path)
    model.load_state_dict(sd, strict=False)
    model.eval().to(device)
    extra = contents.extra
    report = LoadReport(path=str(path), layout=contents.layout, variant=model.variant or "custom", loaded_keys=len(sd),
                        initialised=missing, ignored=ignored, epoch=extra.get("epoch"),
                        extra={k: v for k, v in extra.items() if k != "epoch"})
    return model, report


def load_detector(
    path: str | Path,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    *,
    preprocess: PreprocessConfig | None = None,
    **overrides: Any,
) -> ActionDetector:
    """Load a detector from a vmaedet checkpoint or any official VideoMAE checkpoint layout.

    Args:
        path: ``.safetensors`` (vmaedet) or ``.pth`` (official layouts, see module docstring).
        arch: variant name; inferred from the weight shapes when None.
        device: where to put the model.
        preprocess: the model's preprocessing facts; None keeps the checkpoint's (vmaedet) or the
            seed's (official layouts).  Training passes the short side it trains at.
        overrides: BackboneConfig fields to change (``drop_path``, ``attn_impl``,
            ``grad_checkpointing``) — training uses them.

    Returns:
        The model in eval mode.  :func:`load_detector_with_report` also returns what was loaded.
    """
    return load_detector_with_report(path, arch, device, preprocess=preprocess, **overrides)[0]


# -- writing ----------------------------------------------------------------------------------
def detector_config(model: ActionDetector) -> dict[str, Any]:
    """The JSON ``config`` a vmaedet checkpoint carries: variant, classes, backbone and preprocessing."""
    return {"variant": model.variant, "num_classes": model.num_classes, "backbone": model.cfg.to_dict(),
            "preprocess": model.preprocess.to_dict()}


def save_detector(model: ActionDetector, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a vmaedet checkpoint: ``.safetensors`` weights with the JSON config in the metadata.

    The file is written to a temporary name and renamed, so a crash never leaves a partial file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError("vmaedet checkpoints are .safetensors files", received=str(path),
                              fix="name the output <something>.safetensors")
    from vmaedet.safeio import atomic_path

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(detector_config(model)), "extra": json.dumps(dict(extra or {}), default=str)}
    with atomic_path(path, what="the checkpoint") as tmp:  # a failure leaves no file; OSError → OutputError
        save_file(tensors, str(tmp), metadata=meta)
    return path


def convert_checkpoint(src: str | Path, dst: str | Path, arch: str | None = None) -> LoadReport:
    """Read any supported layout and write a vmaedet checkpoint."""
    model, report = load_detector_with_report(src, arch=arch)
    save_detector(model, dst, extra={"converted_from": str(src), "source_layout": report.layout,
                                     "initialised": report.initialised})
    return report
