"""The shape of the package (docs/architecture.md), enforced.

* the import contracts in ``pyproject.toml`` (``[tool.importlinter]``: stages import downwards only,
  no import circle between siblings) hold, checked by the real ``lint-imports``;
* the contracts do catch a violation (a copy of the package with one upward import fails them);
* outside ``vmaedet/cli/`` no string names a command-line flag, except inside a complete
  ``vmaedet <command> …`` example shown to a user.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vmaedet"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# a flag inside a command example: "vmaedet <command> …" with no closing quote/backtick in between
EXAMPLE = re.compile(r"vmaedet [a-z][a-z-]*[^`'\"]*$")


def _lint_imports(cwd: Path, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"lint-imports is not installed beside {sys.executable}: run `make setup` (import-linter is a dev dependency)")
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(env_path)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def test_import_contracts_hold() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-3000:]


def test_import_contracts_catch_an_upward_import(tmp_path: Path) -> None:
    """The same contracts over a copy of the package with ``ops`` importing ``cli``: refused."""
    shutil.copytree(PACKAGE, tmp_path / "vmaedet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    boxes = tmp_path / "vmaedet" / "ops" / "boxes.py"
    boxes.write_text(boxes.read_text() + "\n\ndef _upward() -> None:\n    import vmaedet.cli.main  # noqa: F401\n")
    proc = _lint_imports(tmp_path, env_path=tmp_path)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "vmaedet.ops is not allowed to import vmaedet.cli" in proc.stdout, proc.stdout[-3000:]


# -- the library names no CLI flag ---------------------------------------------------------------
def cli_flags() -> set[str]:
    """Every long option of every ``vmaedet`` command (from the Typer app itself)."""
    import typer

    from vmaedet.cli.main import app

    flags: set[str] = set()

    def walk(cmd: object) -> None:  # a click-style command (typer may vendor click)
        for param in cmd.params:  # type: ignore[attr-defined]
            flags.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return flags - {"--help"}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring; f-strings joined with ``{}``."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    inside_fstring = set()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                inside_fstring.add(id(v))
                parts.append(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}")
            out.append((node.lineno, "".join(parts)))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and id(node) not in inside_fstring):
            out.append((node.lineno, node.value))
    return out


def flag_mentions(source: str, flags: set[str]) -> list[tuple[int, str, str]]:
    """(line, flag, text) for each CLI flag named in a string of ``source`` outside a command example."""
    found = []
    for line, text in _strings(ast.parse(source)):
        for m in FLAG.finditer(text):
            if m.group(0) in flags and not EXAMPLE.search(text[: m.start()]):
                found.append((line, m.group(0), text))
    return sorted(found)


def test_flag_scanner_finds_flags_and_spares_examples() -> None:
    flags = {"--out", "--trt"}
    src = ('"""Docstrings may say --out."""\n'
           'A = "choose another --out"\n'
           'B = f"give {x} --trt"\n'
           'C = "run `vmaedet export ckpt --trt --out x`"\n'
           'D = f"vmaedet export {ckpt} --out {d}"\n'
           'E = "--not-a-flag of ours"\n')
    assert [(line, flag) for line, flag, _ in flag_mentions(src, flags)] == [(2, "--out"), (3, "--trt")]


def test_library_names_no_cli_flag() -> None:
    flags = cli_flags()
    assert {"--overwrite", "--out"} <= flags  # the scan looks for real option names
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for line, flag, text in flag_mentions(path.read_text(), flags):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {flag} in {text[:100]!r}")
    assert not offenders, ("library code names CLI flags (name the parameter or the setting in words; "
                           "the CLI maps its flags):\n" + "\n".join(offenders))
