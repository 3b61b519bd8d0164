"""Several sources in one run: their names, a sources list file, and each source's output paths.

* :func:`name_sources` — ``[(name, source), …]`` from one source, a list or a dict name → source.
  Names are given (dict keys, or ``name  uri`` lines), else derived: a file's stem, a folder's
  name, ``camera<N>`` for a camera index, the host of a URL; a derived name that repeats another
  (a given one or an earlier derived one) gets ``-2``, ``-3``, …
* :func:`read_sources_file` — one source per line, optionally ``name<TAB or spaces>uri`` (after a
  tab the uri may hold spaces); ``#`` starts a comment; blank lines are skipped.
* :func:`source_output` — a source's file for an output given as a folder or a ``{name}`` pattern (or,
  with one source, a plain file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlparse

from vmaedet.errors import ConfigError
from vmaedet.runtime.sources import NETWORK_SCHEMES, Source

#: The pattern an output path may hold, replaced by each source's name.
NAME_FIELD = "{name}"
#: The file suffix of each output when the output names a folder.
OUTPUT_SUFFIX = {"save": ".mp4", "jsonl": ".jsonl", "csv": ".csv"}


def derive_name(source: Any) -> str:
    """A source's default name: a Source's ``name``, ``camera<N>``, a URL's host, a file's stem, a folder's name."""
    if isinstance(source, Source):
        return str(source.name)
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return f"camera{int(text)}"
    if text.lower().startswith(NETWORK_SCHEMES):
        return urlparse(text).hostname or "stream"
    path = Path(text)
    return (path.stem if path.suffix else path.name) or "stream"


def unique_names(names: list[str], reserved: Iterable[str] = ()) -> list[str]:
    """``names`` made unique in order: a repeated name, or one in ``reserved`` (names given explicitly,
    which keep theirs), gets the first free ``-2``, ``-3``, … suffix; no result is in ``reserved``."""
    reserved = set(reserved)
    seen: dict[str, int] = {}
    taken = set(names) | reserved
    out = []
    for name in names:
        if name not in seen and name not in reserved:
            seen[name] = 1
            out.append(name)
            continue
        k = seen.get(name, 1)
        while True:
            k += 1
            candidate = f"{name}-{k}"
            if candidate not in taken:
                break
        seen[name] = k
        taken.add(candidate)
        out.append(candidate)
    return out


def is_multi(sources: Any) -> bool:
    """Whether ``sources`` is a collection of sources (a list, tuple or dict) rather than one source."""
    return isinstance(sources, (list, tuple, Mapping))


def name_sources(sources: Any) -> list[tuple[str, Any]]:
    """``[(name, source), …]`` for one source, a sequence of sources or a mapping name → source.

    Raises:
        ConfigError: an empty collection, or an empty name in a mapping.
    """
    if isinstance(sources, Mapping):
        items = list(sources.items())
        for name, _ in items:
            if not str(name).strip():
                raise ConfigError("a source has an empty name", received=repr(name), expected="a non-empty name",
                                  fix="name every source, e.g. {'door': 'door.mp4'}")
        pairs = [(str(name), src) for name, src in items]
    elif isinstance(sources, Sequence) and not isinstance(sources, (str, bytes)):
        pairs = [(derive_name(src), src) for src in sources]
    else:
        pairs = [(derive_name(sources), sources)]
    if not pairs:
        raise ConfigError("no source to stream", received="an empty list of sources",
                          expected="at least one camera index, URL, video file or image folder",
                          fix="pass one or more sources")
    names = unique_names([name for name, _ in pairs])
    return [(name, src) for name, (_, src) in zip(names, pairs)]


def read_sources_file(path: str | Path, what: str = "the sources file") -> dict[str, str] | list[str]:
    """The sources a list file names: a dict name → uri when any line names its source, else a list.

    Each line is ``uri`` or ``name uri``. A line holding a tab is split once, at its first tab, into
    ``name<TAB>uri`` (so the uri may hold spaces); a line that is an existing path as a whole is that
    path (it may hold spaces); any other line is split at whitespace. A line
    starting with ``#``, and anything after a space and ``#``, is a comment. Names given in the file
    keep them; a derived name (a line without one) that equals a given name or an earlier derived one
    gets the first free ``-2``, ``-3``, … whatever the order of the lines.

    Raises:
        ConfigError: the file is missing, unreadable, holds no source, a line without a tab has more
            than two fields, or two lines give the same name.
    """
    path = Path(path)
    expected = "one source per line (a camera index, URL, video file or folder), optionally 'name<TAB>uri'"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", received=str(path), expected=expected,
                          fix="check the path of the sources list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}", received=str(exc), expected=expected,
                          fix="pass a readable UTF-8 text file") from None
    entries: list[tuple[str | None, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = re.split(r"\s#", line, maxsplit=1)[0].strip()  # a comment after the source
        if "\t" in line:  # name<TAB>uri: the uri may hold spaces
            name, uri = (field.strip() for field in line.split("\t", 1))
            entries.append((name, uri))
            continue
        fields = line.split()
        if len(fields) > 1 and Path(line).exists():  # a path with spaces and no name ("my video.mp4")
            entries.append((None, line))
            continue
        if len(fields) > 2:
            raise ConfigError(f"line {number} of {what} {path} has {len(fields)} fields", received=raw.strip(),
                              expected=expected,
                              fix="write 'name uri' or just 'uri' (a path with spaces needs a name and a tab "
                                  "between the two: 'name<TAB>path')")
        entries.append((fields[0], fields[1]) if len(fields) == 2 else (None, fields[0]))
    if not entries:
        raise ConfigError(f"{what} {path} names no source", received="only blank or comment lines",
                          expected=expected, fix="add one source per line")
    if all(name is None for name, _ in entries):
        return [uri for _, uri in entries]
    given: set[str] = set()
    for name, _ in entries:  # only two names given in the file can clash
        if name is not None and name in given:
            raise ConfigError(f"{what} {path} names two sources {name!r}", received=name,
                              expected="a different name per source", fix="rename one of them")
        if name is not None:
            given.add(name)
    derived = iter(unique_names([derive_name(uri) for name, uri in entries if name is None], reserved=given))
    return {name if name is not None else next(derived): uri for name, uri in entries}


def _known_suffixes(key: str) -> tuple[str, ...]:
    """The file suffixes output ``key`` is written with (its default first), lower case."""
    if key == "save":
        from vmaedet.runtime.sinks import VIDEO_CONTAINERS

        return (OUTPUT_SUFFIX[key], *(s for s in VIDEO_CONTAINERS if s != OUTPUT_SUFFIX[key]))
    return {"jsonl": (".jsonl", ".ndjson", ".json"), "csv": (".csv",)}.get(key, (OUTPUT_SUFFIX[key],))


def source_output(path: str | Path | None, key: str, name: str, sources: int, what: str) -> Path | None:
    """The file of output ``key`` (``save``, ``jsonl``, ``csv``) for the source ``name``.

    ``sources``: 0 for a run of one source given as it is, else the number of sources of a run given a
    list or dict of them. A path holding ``{name}`` takes the source's
    name; for a list or dict of sources a folder (an existing one, or a path ending in a separator or
    without a suffix) takes ``<name><suffix>``. A plain file path is taken as it is for one source,
    and refused for several (every source would write over it). A Path object drops a trailing
    separator: pass a str (or an existing folder) for a folder whose name holds a dot.

    Raises:
        ConfigError: a plain file path for several sources.
    """
    if path is None:
        return None
    text = str(path)
    if NAME_FIELD in text:
        return Path(text.replace(NAME_FIELD, name))
    if not sources:
        return Path(path)
    p = Path(path)
    if p.is_dir() or text.endswith((os.sep, "/")) or (not p.suffix and not p.exists()):
        return p / f"{name}{OUTPUT_SUFFIX[key]}"
    if sources == 1:  # one source (in a list or dict): its file, as for a single source
        return p
    known = _known_suffixes(key)
    if p.suffix.lower() in known:
        fix = (f"give a folder such as {p.parent / 'out'}{os.sep} or a pattern such as "
               f"{p.parent / (NAME_FIELD + p.suffix)}")
    else:  # no output suffix (runs.v2): maybe a folder whose trailing separator was dropped
        fix = (f"for a folder, end it with a separator ({p}{os.sep}) or create it first; or give a pattern "
               f"such as {p / (NAME_FIELD + OUTPUT_SUFFIX[key])}")
    raise ConfigError(f"{what} names one file, but the run has several sources", received=text,
                      expected=f"a folder (one file per source: <name>{OUTPUT_SUFFIX[key]}) or a path with "
                               f"{NAME_FIELD}", fix=fix)
