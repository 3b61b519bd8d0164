"""The sidecar manifest every exported artifact carries (``<artifact>.json``).

The manifest is the artifact's contract: clip geometry, clip length and stride, normalisation,
label names, opset, RoIAlign mode, precision, library versions, the artifact's sha256, the
tolerances it was verified to, and where its weights came from.  Engines read it back (plain
JSON, never evaluated) and refuse an artifact that does not match what they are asked to run.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Mapping

from vmaedet.constants import CLIP_LEN, FRAME_STRIDE
from vmaedet.errors import EngineError

#: Bumped when a field changes meaning; engines refuse other formats.
MANIFEST_FORMAT = "vmaedet-artifact-1"


def manifest_path(artifact: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an artifact depends on (None when not installed)."""
    from vmaedet.envinfo import _version

    return {"python": platform.python_version(),
            **{name: _version(name) for name in ("vmaedet", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt")}}


def write_manifest(artifact: str | Path, manifest: Mapping[str, Any], path: str | Path | None = None) -> Path:
    """Write ``manifest`` next to ``artifact`` (or to ``path``) atomically: temp file + rename.

    Raises:
        OutputError: the file cannot be written (names it and the cause: no space left, read-only, …);
            nothing partial is left and an earlier manifest stays as it was.
    """
    from vmaedet.safeio import atomic_write

    path = Path(path) if path is not None else manifest_path(artifact)
    with atomic_write(path, what="the manifest") as fh:
        fh.write(json.dumps(dict(manifest), indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(artifact: str | Path) -> dict[str, Any]:
    """Read and sanity-check the manifest of ``artifact``.

    Raises:
        EngineError: the manifest is missing, not JSON, or of another format.
    """
    artifact = Path(artifact)
    path = manifest_path(artifact)
    if not artifact.exists():
        raise EngineError(f"artifact not found: {artifact}", fix="check the path or run `vmaedet export` first")
    if not path.exists():
        raise EngineError(
            f"{artifact} has no manifest",
            received=f"no file {path}",
            expected="the sidecar manifest `<artifact>.json` written by `vmaedet export`",
            fix="re-export the model with `vmaedet export CKPT --format onnx` (the manifest records geometry, "
                "precision and verified tolerances; an artifact without it is not trusted)",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"the manifest {path} is unreadable", received=str(exc),
                          expected="a JSON manifest written by `vmaedet export`", fix="re-export the model") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        received = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise EngineError(f"the manifest {path} has an unknown format", received=received,
                          expected=MANIFEST_FORMAT, fix="re-export the model with this vmaedet version")
    return data


def check_artifact_hash(artifact: str | Path, manifest: Mapping[str, Any]) -> None:
    """Refuse an artifact (or its external-data file) whose bytes are not the ones the manifest describes."""
    artifact = Path(artifact)
    record = manifest.get("artifact", {})
    files = [(artifact, record.get("sha256"))]
    if record.get("external_data"):
        files.append((artifact.parent / record["external_data"]["file"], record["external_data"]["sha256"]))
    for path, recorded in files:
        actual = sha256_file(path) if path.exists() else "missing"
        if recorded != actual:
            raise EngineError(
                f"{path} does not match its manifest (the file was changed, replaced or removed after export)",
                received=f"sha256 {actual[:16]}…", expected=f"sha256 {str(recorded)[:16]}…",
                fix="re-export the model so artifact and manifest are written together",
            )


def check_expectations(manifest: Mapping[str, Any], *, input_hw: tuple[int, int] | None = None,
                       precision: str | None = None, max_persons: int | None = None,
                       source: str = "artifact") -> None:
    """Refuse a manifest whose geometry / precision / person capacity differ from what is asked."""
    got_hw = tuple(manifest["input"]["clip_hw"])
    if input_hw is not None and tuple(input_hw) != got_hw:
        raise EngineError(f"the {source} was exported for another clip geometry",
                          received=f"{got_hw[0]}×{got_hw[1]}", expected=f"{input_hw[0]}×{input_hw[1]}",
                          fix="re-export with --input-size HxW (or --source-size WxH) for this input")
    if precision is not None and precision != manifest["precision"]:
        raise EngineError(f"the {source} has another precision", received=manifest["precision"],
                          expected=precision, fix=f"re-export with --precision {precision}")
    if max_persons is not None and max_persons > manifest["input"]["max_persons"]:
        raise EngineError(f"the {source} accepts fewer persons than asked",
                          received=manifest["input"]["max_persons"], expected=f"≥ {max_persons}",
                          fix=f"re-export with --max-persons {max_persons}")


_FORMAT_ENGINE = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}
_FORMAT_LABEL = {"onnx": "an ONNX artifact", "tensorrt": "a TensorRT engine artifact"}


def open_artifact(path: Path, fmt: str, *, input_hw: tuple[int, int] | None = None, precision: str | None = None,
                  max_persons: int | None = None) -> dict[str, Any]:
    """Read and check an artifact's manifest before an engine opens it.

    Refuses a missing manifest, an artifact of another format, a changed file (sha256) and a
    geometry / precision / capacity other than asked.  Returns the manifest.
    """
    manifest = read_manifest(path)
    got = manifest["artifact"]["format"]
    if got != fmt:
        raise EngineError(f"{path} is not {_FORMAT_LABEL.get(fmt, fmt)}", received=got, expected=fmt,
                          fix=f"open it with the {_FORMAT_ENGINE.get(got, got)} engine")
    check_artifact_hash(path, manifest)
    check_expectations(manifest, input_hw=input_hw, precision=precision, max_persons=max_persons, source=str(path))
    return manifest
