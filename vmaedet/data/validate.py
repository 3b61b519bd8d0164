"""Dataset validator behind ``vmaedet data check ROOT``.

Reports, with file and line: malformed CSV rows (column count, non-numeric fields), boxes outside
[0, 1] or inverted, action ids missing from the label map (or outside 1..80), videos that are
missing or unreadable, keyframes beyond the video or missing frame files (errors), and keyframes
whose 16×4 window reaches outside the video (warnings: the seed clamps those indices). Ends with a
summary per split: videos, keyframes, boxes, rows and a class histogram.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vmaedet.constants import NUM_CLASSES
from vmaedet.data.annotations import box_problems, iter_csv, parse_row, read_exclusions, read_labelmap
from vmaedet.data.ava import SOURCE_DIRS
from vmaedet.data.layouts import ClipsSource, FramesDirSource, FrameSource, make_source
from vmaedet.errors import ConfigError, DataError


@dataclass(frozen=True)
class Issue:
    """One finding: ``severity`` is "error" or "warning"; ``line`` is 1-based or None."""

    severity: str
    file: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class SplitPaths:
    """Files of one split (None = absent)."""

    annotations: Path
    proposals: Path | None = None
    exclusions: Path | None = None


@dataclass
class CheckConfig:
    """What to check. YAML keys: frame_source, frames_root, fps, timestamp_start, temporal_rule,
    labelmap, splits: {train: {annotations, proposals, exclusions}, val: {…}} (paths relative to ROOT)."""

    frame_source: str = "video"
    frames_root: Path | None = None
    fps: float | None = None
    timestamp_start: int | None = None
    temporal_rule: str = "auto"
    labelmap: Path | None = None
    splits: dict[str, SplitPaths] = field(default_factory=dict)


@dataclass
class Report:
    """Issues found plus a summary per split."""

    issues: list[Issue] = field(default_factory=list)
    summary: dict[str, dict] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def add(self, severity: str, file: Path | str, line: int | None, message: str) -> None:
        self.issues.append(Issue(severity, str(file), line, message))


_CONFIG_KEYS = {"frame_source", "frames_root", "fps", "timestamp_start", "temporal_rule", "labelmap", "splits"}


def load_config(root: Path, config_path: Path | None = None, **overrides: object) -> CheckConfig:
    """Defaults for the synthetic layout, updated from a YAML file, then from non-None ``overrides``."""
    raw: dict = {}
    if config_path is not None:
        try:
            raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("cannot read the data-check config", received=f"{config_path} ({exc})",
                              expected="a YAML mapping", fix="check the path and the YAML syntax") from None
        unknown = set(raw) - _CONFIG_KEYS if isinstance(raw, dict) else {"<not a mapping>"}
        if unknown:
            raise ConfigError("unknown keys in the data-check config", received=sorted(unknown),
                              expected=sorted(_CONFIG_KEYS), fix="remove or rename those keys")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    kind = str(raw.get("frame_source", "video"))
    ann = root / "annotations"
    splits = {s: SplitPaths(ann / f"{s}.csv", ann / f"proposals_{s}.csv", ann / f"excluded_{s}.csv")
              for s in ("train", "val")}
    for name, spec in (raw.get("splits") or {}).items():
        spec = spec or {}
        splits[name] = SplitPaths(*(root / spec[k] if spec.get(k) else None
                                    for k in ("annotations", "proposals", "exclusions")))
    synthetic = (root / "meta.json").is_file()
    lm = raw.get("labelmap")
    return CheckConfig(
        frame_source=kind,
        frames_root=root / raw["frames_root"] if raw.get("frames_root") else root / SOURCE_DIRS.get(kind, kind),
        fps=raw.get("fps"),
        timestamp_start=raw.get("timestamp_start", 0 if synthetic else None),
        temporal_rule=str(raw.get("temporal_rule", "auto")),
        labelmap=root / lm if lm else ann / "labelmap.pbtxt",
        splits=splits,
    )


@dataclass
class _Keyframes:
    first_line: dict[tuple[str, int], tuple[Path, int]] = field(default_factory=dict)


def _check_csv(path: Path, kind: str, labelmap: dict[int, str] | None, report: Report, stats: dict,
               keys: _Keyframes) -> None:
    try:
        rows = list(iter_csv(path, "annotation CSV" if kind == "gt" else "proposal CSV"))
    except DataError as exc:
        report.add("error", path, None, exc.what)
        return
    hist: Counter = stats.setdefault("class_histogram", Counter())
    boxes: set = stats.setdefault("_boxes", set())
    for line, fields in rows:
        try:
            row = parse_row(fields, kind, line)
        except ValueError as exc:
            report.add("error", path, line, f"malformed row: {exc}")
            continue
        for msg in box_problems(row.box):
            report.add("error", path, line, msg)
        keys.first_line.setdefault(row.key, (path, line))
        if kind != "gt":
            stats["proposals"] = stats.get("proposals", 0) + 1
            continue
        stats["rows"] = stats.get("rows", 0) + 1
        boxes.add((row.key, row.person_id, row.box))
        if not 1 <= row.action_id <= NUM_CLASSES or (labelmap is not None and row.action_id not in labelmap):
            known = "the label map" if labelmap is not None else f"1..{NUM_CLASSES}"
            report.add("error", path, line, f"unknown action id {row.action_id} (not in {known})")
        else:
            hist[row.action_id] += 1


def _check_videos(source: FrameSource, keys: _Keyframes, report: Report, stats: dict) -> None:
    by_video: dict[str, list[int]] = {}
    for vid, ts in sorted(keys.first_line):
        by_video.setdefault(vid, []).append(ts)
    stats["videos"] = len(by_video)
    for vid, stamps in by_video.items():
        path, line = keys.first_line[(vid, stamps[0])]
        if not source.has_video(vid):
            report.add("error", path, line, f"video {vid!r} is missing ({source.location(vid)})")
            continue
        try:
            info = source.describe(vid)
        except DataError as exc:
            report.add("error", source.location(vid), None, f"unreadable video {vid!r}: {exc.what} ({exc.received})")
            continue
        n = info["frames"]
        secs = set(info.get("seconds", ()))
        for ts in stamps:
            path, line = keys.first_line[(vid, ts)]
            key, window = source.window(vid, ts)
            if isinstance(source, ClipsSource) and ts not in secs:
                report.add("error", path, line, f"keyframe clip {source.clip_path(vid, ts)} is missing")
                continue
            if not 0 <= key < n:
                report.add("error", path, line, f"keyframe {vid},{ts} is frame {key}, outside the video (0..{n - 1})")
                continue
            if min(window) < 0 or max(window) > n - 1:
                report.add("warning", path, line,
                           f"keyframe {vid},{ts} lacks context: frames {min(window)}..{max(window)} needed, "
                           f"video has 0..{n - 1} (indices will be clamped)")
            if isinstance(source, FramesDirSource):
                missing = [i for i in window if 0 <= i < n and not source.frame_path(vid, i).is_file()]
                if missing:
                    report.add("error", path, line, f"keyframe {vid},{ts}: {len(missing)} frame file(s) missing, "
                                                    f"e.g. {source.frame_path(vid, missing[0])}")


def check_dataset(root: str | Path, split: str = "all", config: CheckConfig | None = None) -> Report:
    """Validate the annotations and frames of ``root`` for ``split`` ("train", "val" or "all")."""
    root = Path(root)
    cfg = config or load_config(root)
    report = Report()
    if not root.is_dir():
        report.add("error", root, None, "dataset root does not exist")
        return report
    names = list(cfg.splits) if split == "all" else [split]
    labelmap = None
    if cfg.labelmap is not None and cfg.labelmap.is_file():
        try:
            labelmap = read_labelmap(cfg.labelmap)
        except DataError as exc:
            report.add("error", cfg.labelmap, None, exc.what)
    kw = {"timestamp_start": cfg.timestamp_start} if cfg.timestamp_start is not None else {}
    source = make_source(cfg.frame_source, cfg.frames_root, fps=cfg.fps, temporal_rule=cfg.temporal_rule, **kw)
    try:
        for name in names:
            paths = cfg.splits.get(name)
            if paths is None:
                raise ConfigError("unknown split", received=name, expected=sorted(cfg.splits),
                                  fix="pass split='train', 'val' or 'all' (or a split named in the config)")
            report.summary[name] = _check_split(paths, labelmap, source, report)
    finally:
        source.close()
    return report


def _check_split(paths: SplitPaths, labelmap: dict[int, str] | None, source: FrameSource, report: Report) -> dict:
    stats: dict = {}
    keys = _Keyframes()
    _check_csv(paths.annotations, "gt", labelmap, report, stats, keys)
    stats["keyframes"] = len(keys.first_line)
    if paths.proposals is not None and paths.proposals.is_file():
        _check_csv(paths.proposals, "proposal", None, report, stats, keys)
    if paths.exclusions is not None and paths.exclusions.is_file():
        try:
            stats["excluded"] = len(read_exclusions(paths.exclusions))
        except DataError as exc:
            m = re.search(r":(\d+):", exc.what)
            report.add("error", paths.exclusions, int(m.group(1)) if m else None, exc.what)
    _check_videos(source, keys, report, stats)
    stats["boxes"] = len(stats.pop("_boxes", ()))
    stats["class_histogram"] = dict(sorted(stats.get("class_histogram", Counter()).items()))
    return stats
