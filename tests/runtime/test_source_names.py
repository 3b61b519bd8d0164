"""Source names and per-source output paths: sources list files, names given and derived, outputs.

Real mp4 files (:func:`vmaedet.data.video.write_video`, 64×48), the ``vit_micro`` model with random
weights and proposals through the ``boxes:FILE`` person detector; CLI runs through ``vmaedet.cli.main``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vmaedet.cli.stream import _sources
from vmaedet.data.video import write_video
from vmaedet.errors import ConfigError
from vmaedet.models.checkpoints import save_detector
from vmaedet.models.detector import create_detector
from vmaedet.runtime.config import StreamConfig
from vmaedet.runtime.multi import name_sources, read_sources_file, source_output
from vmaedet.runtime.pipeline import stream

W, H = 64, 48


def _frames(n: int, seed: int) -> np.ndarray:
    out = np.full((n, H, W, 3), 40 + 20 * seed, np.uint8)
    for i in range(n):
        x = (3 * i) % (W - 16)
        out[i, 12:40, x:x + 16] = (200, 120, 60)  # a moving "person"
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three short clips; two share the stem ``clip`` and one has spaces in its name."""
    root = tmp_path_factory.mktemp("names")
    (root / "x1").mkdir()
    (root / "x2").mkdir()
    return {"a": write_video(root / "a.mp4", _frames(24, 0), fps=25),
            "clip1": write_video(root / "x1" / "clip.mp4", _frames(24, 1), fps=25),
            "clip2": write_video(root / "x2" / "clip.mp4", _frames(16, 2), fps=25),
            "spaced": write_video(root / "my video.mp4", _frames(16, 3), fps=25)}


@pytest.fixture(scope="module")
def proposals(clips: dict[str, Path]) -> Path:
    path = clips["a"].with_name("proposals.csv")
    stems = sorted({p.stem for p in clips.values()})
    path.write_text("".join(f"{vid},{t},0.1,0.2,0.6,0.9,,0.9\n" for vid in stems for t in range(2)))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_detector(create_detector("vit_micro"), tmp_path_factory.mktemp("ckpt") / "micro.safetensors")


def _cli(args: list[str], checkpoint: Path, proposals: Path) -> int:
    from vmaedet.cli.main import main

    return main(["stream", *args, "--checkpoint", str(checkpoint), "--detector", f"boxes:{proposals}", "--quiet"])


def _sources_of(path: Path) -> set[str]:
    return {json.loads(line)["source"] for line in path.read_text().splitlines()}


# -- 6: a tab-separated line takes a path with spaces ------------------------------------------------
def test_a_tab_separated_line_takes_a_path_with_spaces(clips: dict[str, Path], proposals: Path, checkpoint: Path,
                                                       tmp_path: Path) -> None:
    listing = tmp_path / "s.txt"
    listing.write_text(f"door\t{clips['spaced']}  \n  hall \t {clips['a']}\nyard {clips['clip1']}  # a comment\n")
    assert read_sources_file(listing) == {"door": str(clips["spaced"]), "hall": str(clips["a"]),
                                          "yard": str(clips["clip1"])}
    rc = _cli(["--sources", str(listing), "--jsonl", str(tmp_path / "out") + "/"], checkpoint, proposals)
    assert rc == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"door.jsonl", "hall.jsonl", "yard.jsonl"}
    assert _sources_of(tmp_path / "out" / "door.jsonl") == {"door"}


def test_a_path_with_spaces_without_a_tab_is_refused_with_advice_that_works(tmp_path: Path) -> None:
    listing = tmp_path / "s.txt"
    listing.write_text("door /videos/my video.mp4\n")
    with pytest.raises(ConfigError, match="3 fields") as info:
        read_sources_file(listing)
    assert "name<TAB>" in info.value.fix  # type: ignore[operator]
    listing.write_text("door\t/videos/my video.mp4\n")  # as the advice says
    assert read_sources_file(listing) == {"door": "/videos/my video.mp4"}


def test_an_existing_path_with_spaces_needs_no_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my video.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)  # a relative uri, as a user writes it beside the videos
    listing = tmp_path / "s.txt"
    listing.write_text("my video.mp4\ndoor other.mp4\n")
    assert read_sources_file(listing) == {"my video": "my video.mp4", "door": "other.mp4"}  # not name 'my'


# -- 7: a name clash does not depend on the order of the lines ---------------------------------------
def test_a_derived_name_gives_way_to_a_given_one_in_any_order(tmp_path: Path) -> None:
    listing = tmp_path / "s.txt"
    for text in ("x.mp4\nx b20.mp4\n", "x b20.mp4\nx.mp4\n"):
        listing.write_text(text)
        assert read_sources_file(listing) == {"x": "b20.mp4", "x-2": "x.mp4"}
    listing.write_text("a/x.mp4\nx-2 c.mp4\nb/x.mp4\nx b20.mp4\n")  # derived names skip every given one
    assert read_sources_file(listing) == {"x-3": "a/x.mp4", "x-2": "c.mp4", "x-4": "b/x.mp4", "x": "b20.mp4"}
    listing.write_text("x a.mp4\nb.mp4\nx c.mp4\n")  # two given equal names stay an error
    with pytest.raises(ConfigError, match="names two sources 'x'"):
        read_sources_file(listing)


# -- 8: the CLI never drops a --source beside a named --sources file ---------------------------------
def test_cli_keeps_two_sources_of_one_stem_beside_a_named_sources_file(
        clips: dict[str, Path], proposals: Path, checkpoint: Path, tmp_path: Path) -> None:
    listing = tmp_path / "one.txt"
    listing.write_text(f"door\t{clips['a']}\n")
    chosen = _sources([str(clips["clip1"]), str(clips["clip2"])], None, listing)
    assert chosen == {"clip": str(clips["clip1"]), "clip-2": str(clips["clip2"]), "door": str(clips["a"])}
    rc = _cli(["--source", str(clips["clip1"]), "--source", str(clips["clip2"]), "--sources", str(listing),
               "--jsonl", str(tmp_path / "{name}.jsonl")], checkpoint, proposals)
    assert rc == 0
    for name in ("clip", "clip-2", "door"):
        assert _sources_of(tmp_path / f"{name}.jsonl") == {name}
    # a --source whose derived name is given in the file takes the next free name
    listing.write_text(f"clip\t{clips['a']}\n")
    assert _sources([str(clips["clip1"])], [0], listing) == {"clip-2": str(clips["clip1"]), "camera0": 0,
                                                             "clip": str(clips["a"])}


# -- 9: one source in a list, dict or sources file takes a plain output file -------------------------
def test_one_source_in_a_collection_takes_a_plain_output_file(tmp_path: Path) -> None:
    assert source_output(tmp_path / "out.mp4", "save", "door", 1, "x") == tmp_path / "out.mp4"
    assert source_output(tmp_path, "jsonl", "door", 1, "x") == tmp_path / "door.jsonl"  # a folder still works
    assert source_output(str(tmp_path / "{name}.csv"), "csv", "door", 1, "x") == tmp_path / "door.csv"
    with pytest.raises(ConfigError, match="several sources"):
        source_output(tmp_path / "out.mp4", "save", "door", 2, "the save output")


def test_cli_one_named_sources_line_with_a_plain_output_file(clips: dict[str, Path], proposals: Path,
                                                             checkpoint: Path, tmp_path: Path) -> None:
    listing = tmp_path / "one.txt"
    listing.write_text(f"door\t{clips['a']}\n")
    rc = _cli(["--sources", str(listing), "--save", str(tmp_path / "out.mp4"), "--jsonl", str(tmp_path / "out.jsonl")],
              checkpoint, proposals)
    assert rc == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert _sources_of(tmp_path / "out.jsonl") == {"door"}  # the result keeps the source's name


def test_stream_of_a_one_entry_list_with_a_plain_output_file(clips: dict[str, Path], proposals: Path,
                                                             checkpoint: Path, tmp_path: Path) -> None:
    got = list(stream([clips["a"]], checkpoint, StreamConfig(jsonl=tmp_path / "o.jsonl"),
                      person_detector=f"boxes:{proposals}"))
    assert got and {r.source for r in got} == {"a"}
    assert _sources_of(tmp_path / "o.jsonl") == {"a"}
    got = list(stream({"door": clips["a"]}, checkpoint, StreamConfig(csv=tmp_path / "o.csv"),
                      person_detector=f"boxes:{proposals}"))
    assert {r.source for r in got} == {"door"} and (tmp_path / "o.csv").read_text()


# -- 10: a folder output with a dot in its name ------------------------------------------------------
def test_cli_dotted_folder_output_with_a_trailing_separator(clips: dict[str, Path], proposals: Path,
                                                            checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs.v2"
    rc = _cli(["--source", str(clips["a"]), "--source", str(clips["clip1"]), "--jsonl", f"{out}/",
               "--csv", f"{out}/"], checkpoint, proposals)
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"a.jsonl", "clip.jsonl", "a.csv", "clip.csv"}


def test_a_dotted_folder_without_a_separator_gets_no_nonsense_pattern(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="several sources") as info:
        source_output(tmp_path / "runs.v2", "jsonl", "door", 2, "the --jsonl output")
    fix = info.value.fix or ""
    assert "{name}.v2" not in fix and "{name}.jsonl" in fix and f"{tmp_path / 'runs.v2'}/" in fix
    with pytest.raises(ConfigError) as info:  # a known suffix keeps its pattern
        source_output(tmp_path / "events.jsonl", "jsonl", "door", 2, "the --jsonl output")
    assert str(tmp_path / "{name}.jsonl") in (info.value.fix or "")
    with pytest.raises(ConfigError) as info:
        source_output(tmp_path / "clip.mkv", "save", "door", 2, "the --save output")
    assert str(tmp_path / "{name}.mkv") in (info.value.fix or "")


def test_name_sources_of_a_mapping_and_a_list_are_unchanged(tmp_path: Path) -> None:
    assert [n for n, _ in name_sources({"x": "a.mp4", "x-2": "b.mp4"})] == ["x", "x-2"]
    assert [n for n, _ in name_sources(["x.mp4", "x-2.mp4", "x.mp4"])] == ["x", "x-2", "x-3"]
