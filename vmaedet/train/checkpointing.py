"""Resume checkpoints: atomic writes, ``torch.load(weights_only=True)``-safe contents.

A resume checkpoint is a dict of tensors, primitives, lists and dicts only:
``{"format", "model", "optimizer", "scaler", "step", "epoch", "step_in_epoch", "best_map",
"config" (dict), "rng" {"torch", "cuda", "numpy", "python"} (tensors / lists)}``.  Files are
written to a temporary name in the same directory, fsync'ed, then renamed over the target, so a
crash at any moment leaves either the old or the new file, never a partial one.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vmaedet.errors import CheckpointError

FORMAT = "vmaedet-resume-1"
LAST = "last.pth"
BEST = "best.pth"


# -- RNG states as tensors / primitives -------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """torch (+ CUDA), numpy and Python RNG states as tensors and lists."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


# -- atomic save / load -----------------------------------------------------------------------
def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flush + fsync, rename over ``path``, fsync the dir.

    Goes through :func:`vmaedet.safeio.atomic_path`: a failure (also Ctrl-C) removes the temporary
    file and leaves the previous ``path`` untouched; an ``OSError`` — also the one ``torch.save``
    hides behind ``RuntimeError: … unexpected pos`` on a full disk — becomes an
    :class:`~vmaedet.errors.OutputError` naming ``path`` and the cause in words.
    """
    from vmaedet.safeio import atomic_path

    path = Path(path)
    with atomic_path(path, what="the checkpoint") as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path  # the rename is done; a folder that cannot be opened just skips the directory fsync
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def load_resume(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a resume checkpoint with ``weights_only=True``; raise :class:`CheckpointError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint not found: {path}",
                              fix="resume with 'auto' (the latest checkpoint in the output folder) or the path of an existing .pth")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size:
        raise CheckpointError(f"{path} is a safetensors file (detector weights only), not a vmaedet resume checkpoint",
                              received="safetensors weights (no optimiser, schedule position or RNG states)",
                              expected=f"a {FORMAT} .pth written by vmaedet train (last.pth, checkpoint-N.pth)",
                              fix="to start from these weights use model.init=<path> and a new run instead of resuming")
    try:
        with open(path, "rb") as fh:  # by content: torch.load would choose its reader by the file name
            state = torch.load(fh, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means a bad file
        raise CheckpointError(f"cannot read resume checkpoint {path}", received=f"{type(exc).__name__}: {exc}",
                              expected=f"a {FORMAT} file written by vmaedet train",
                              fix="delete it and resume from another checkpoint in the directory") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vmaedet resume checkpoint",
                              received=f"format {state.get('format') if isinstance(state, dict) else type(state).__name__}",
                              expected=FORMAT,
                              fix="to start from official weights use model.init=<path> in a new run instead of resuming")
    return state


def find_resume(out_dir: str | Path) -> Path | None:
    """``last.pth`` if present, else the highest ``checkpoint-<epoch>.pth``, else None."""
    out_dir = Path(out_dir)
    if (out_dir / LAST).is_file():
        return out_dir / LAST
    numbered = []
    for p in out_dir.glob("checkpoint-*.pth"):
        m = re.fullmatch(r"checkpoint-(\d+)\.pth", p.name)
        if m:
            numbered.append((int(m.group(1)), p))
    return max(numbered)[1] if numbered else None


def resolve_resume(resume: str | None, out_dir: str | Path) -> Path | None:
    """``None`` → no resume; ``"auto"`` → :func:`find_resume` (None if nothing yet); else the path."""
    if resume is None:
        return None
    if resume == "auto":
        return find_resume(out_dir)
    p = Path(resume)
    if not p.is_file():
        raise CheckpointError(f"resume checkpoint not found: {p}", fix="resume with 'auto' or the path of an existing .pth")
    return p


__all__ = ["FORMAT", "LAST", "BEST", "rng_state", "set_rng_state", "atomic_save", "load_resume",
           "find_resume", "resolve_resume"]
