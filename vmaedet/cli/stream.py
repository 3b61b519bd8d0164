"""``vmaedet stream``: real-time action detection on a camera, network stream, video file or image folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from vmaedet.errors import ConfigError

console = Console(stderr=True)

#: How the library's messages name the options of a run: by this command's flags.
FLAG_NAMES = {"save": "--save", "jsonl": "--jsonl", "csv": "--csv", "stats": "--stats", "source": "--source",
              "person_detector": "--detector", "overwrite": "--overwrite", "max_batch": "--max-batch",
              "max_wait_ms": "--max-wait-ms", "save_preset": "--save-preset",
              "max_persons": "--max-persons"}


def _sources(source: list[str] | None, camera: list[int] | None, sources: Path | None) -> object:
    """One source as it is (the single-source run), several as a list, or a dict when the sources file names any.

    Beside a named sources file, each --source/--camera gets its derived name, made unique against the
    others and against every name in the file (``clip``, ``clip-2``, …), so no source is dropped.
    """
    from vmaedet.runtime.multi import read_sources_file

    given: list[object] = [*(source or []), *(camera or [])]
    if sources is not None:
        listed = read_sources_file(sources, what="the --sources file")
        if isinstance(listed, dict):
            from vmaedet.runtime.multi import derive_name, unique_names

            names = unique_names([derive_name(s) for s in given], reserved=listed)
            return {**dict(zip(names, given)), **listed}
        given += listed
    if not given:
        raise ConfigError("no source to stream", received="no --source, --camera or --sources",
                          expected="--source video.mp4 | rtsp://… | folder/ | 0 (repeatable), --camera 0, "
                                   "or --sources list.txt")
    return given[0] if len(given) == 1 else given


def stream_command(
    source: Annotated[Optional[list[str]], typer.Option("--source", "-s", help="Camera index, rtsp://…, http://…, video file or image folder (repeatable: several sources in one run).")] = None,
    camera: Annotated[Optional[list[int]], typer.Option("--camera", help="Camera index (synonym of --source N; repeatable).")] = None,
    sources: Annotated[Optional[Path], typer.Option("--sources", help="Text file of sources, one per line: 'uri' or 'name<TAB>uri' (after a tab the uri may hold spaces); '#' comments.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", exists=True, dir_okay=False, help="Model checkpoint (torch backend).")] = None,
    engine: Annotated[Optional[Path], typer.Option("--engine", exists=True, dir_okay=False, help="Exported artifact (.onnx, TensorRT plan).")] = None,
    backend: Annotated[str, typer.Option(help="torch | onnxruntime | openvino | tensorrt | auto (an artifact runs on its manifest's engine unless another is named; auto: the fastest engine here for it — CPU: openvino > onnxruntime > torch, GPU: tensorrt > onnxruntime CUDA > torch — printed with the reason).")] = "torch",
    detector: Annotated[str, typer.Option(help="Person detector: ssdlite | motion | onnx:PATH[:fmt] | boxes:FILE.")] = "ssdlite",
    stride: Annotated[int, typer.Option(min=1, help="Frames between keyframes (one action inference each).")] = 8,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Action score shown and turned on.")] = 0.4,
    mode: Annotated[str, typer.Option(help="centered (seed alignment, ~1.2 s delay) | causal (clip ends at the keyframe).")] = "centered",
    max_persons: Annotated[int, typer.Option(min=1, help="Persons per keyframe (highest detector scores kept; at most the engine's max_persons, said once).")] = 32,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Keyframes (of any source) per action-engine call; capped by the engine.")] = 1,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="How long a ready keyframe waits for others to fill a batch.")] = 5.0,
    realtime: Annotated[Optional[bool], typer.Option("--realtime/--no-realtime", help="Latest-frame-wins (drop frames) instead of lossless; default: live sources only.")] = None,
    show: Annotated[bool, typer.Option("--show", help="Display a window (needs a desktop); several sources share it as a grid, q stops them all.")] = False,
    save: Annotated[Optional[str], typer.Option(help="Write an H.264 video with overlays (.mp4, .mkv, .mov, .avi, .ts); several sources: a folder or a path with {name}.")] = None,
    save_preset: Annotated[str, typer.Option("--save-preset", help="libx264 preset of the --save video: ultrafast | superfast | veryfast | faster | fast | medium | slow | slower | veryslow | placebo (veryfast: real time beside the model; medium: libx264's default, smaller files, about twice the encoding time).")] = "veryfast",
    jsonl: Annotated[Optional[str], typer.Option(help="Write one JSON line per keyframe and per action event (docs/stream-jsonl.schema.json); several sources: a folder or {name}.")] = None,
    csv: Annotated[Optional[str], typer.Option(help="Write AVA CSV rows (1 Hz); several sources: a folder or {name}.")] = None,
    stats: Annotated[Optional[Path], typer.Option(help="Write per-stage latency statistics and warnings as JSON (also after Ctrl-C).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N]; auto = CUDA when a GPU is visible, else the CPU.")] = "auto",
    fps: Annotated[float, typer.Option(min=1.0, help="Frame rate of an image folder.")] = 25.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-keyframe lines.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing --save/--jsonl/--csv/--stats files (refused otherwise).")] = False,
) -> None:
    """Detect persons and their AVA actions on a stream; write overlays, events, CSV rows and stats.

    Outputs are checked before anything opens (an existing one needs --overwrite; one that is also an input is refused) and renamed into place at the end; Ctrl-C keeps what was processed (exit 130).

    Several sources (--source repeated, --camera, --sources list.txt) run in one process on one engine, each with its own outputs (a folder or a {name} pattern); a source that fails is reported while the others go on.

    Example: vmaedet stream --source video.mp4 --checkpoint model.safetensors --save out.mp4 --jsonl events.jsonl
    """
    from vmaedet.data.video import X264_PRESETS
    from vmaedet.progress import progress, resolve_mode
    from vmaedet.runtime.config import StreamConfig
    from vmaedet.runtime.pipeline import stream
    from vmaedet.runtime.stats import StreamStats

    if save_preset not in X264_PRESETS:  # before anything opens or is written
        raise ConfigError(f"unknown --save-preset {save_preset!r}", received=save_preset,
                          expected=" | ".join(X264_PRESETS),
                          fix="--save-preset veryfast (real time, the default) or --save-preset medium "
                              "(smaller files, about twice the encoding time)")
    if (checkpoint is None) == (engine is None):
        raise ConfigError("give exactly one of a checkpoint or an engine artifact",
                          received=f"checkpoint={checkpoint}, engine={engine}",
                          expected="--checkpoint model.safetensors or --engine model.onnx")
    from vmaedet.engines import list_engines

    if backend == "auto":
        from vmaedet.engines.base import choose_backend

        backend, why = choose_backend(checkpoint if checkpoint is not None else engine, device=device)
        console.print(f"backend: {backend} ({why})", highlight=False, soft_wrap=True)
    known = list_engines()
    if backend not in known:
        raise ConfigError(f"unknown backend {backend!r}", received=backend, expected=" | ".join(known),
                          fix=(f"drop --backend: the torch backend runs {checkpoint} as it is" if checkpoint is not None else
                               f"use --backend onnxruntime for {engine} if it is an .onnx file, "
                               "or --backend tensorrt for a TensorRT plan"))
    if checkpoint is not None and backend != "torch":
        artifact, how = ("FILE.onnx", "--format onnx") if backend in ("onnxruntime", "openvino") else ("FILE.engine", "--trt")
        raise ConfigError(f"the {backend} backend runs an exported artifact, not a checkpoint", received=str(checkpoint),
                          expected="--checkpoint with --backend torch, or --engine ARTIFACT",
                          fix=f"drop --backend {backend} to run the checkpoint with torch, or export it first "
                              f"(vmaedet export {checkpoint} {how} --out exports/) and pass the file it writes "
                              f"as --engine exports/{artifact} --backend {backend}")

    def warn(message: str) -> None:
        console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    chosen = _sources(source, camera, sources)
    config = StreamConfig(stride=stride, threshold=threshold, mode=mode, max_persons=max_persons, realtime=realtime,
                          backend=backend, device=device, fps=fps, save=save, jsonl=jsonl, csv=csv, stats=stats,
                          show=show, overwrite=overwrite, max_batch=max_batch, max_wait_ms=max_wait_ms,
                          save_preset=save_preset)
    names = {**FLAG_NAMES, "engine": "--checkpoint" if checkpoint is not None else "--engine"}
    st = StreamStats()  # filled while the run goes; stream() writes it to --stats at the end, also after Ctrl-C
    n = 0
    # plain progress lines (frames/total, fps, elapsed, ETA) when stderr is a log or a pipe, not a terminal
    plain = resolve_mode(console) == "plain"
    bar = progress(None, "frames", "stream", enabled=plain, console=console)
    results = stream(chosen, checkpoint if checkpoint is not None else engine,
                     config, person_detector=detector, stats=st, on_warning=warn, names=names)
    try:
        for result in results:
            if n == 0:
                bar.start()  # once the run is under way (option errors come first, without a progress line)
            n += 1
            processed = st.counters.get("frames_processed", 0)
            bar.update(completed=processed, total=st.info.get("frame_count") or None,
                       detail=f"{processed / max(time.monotonic() - st.started, 1e-6):.1f} frames/s, {n} keyframes")
            if not quiet:
                acts = "; ".join(f"#{t}: " + ", ".join(f"{a} {s:.2f}" for a, s in top)
                                 for t, top in zip(result.track_ids, result.top_actions(threshold)) if top)
                where = f"{escape(str(result.source))}  " if isinstance(chosen, (list, dict)) else ""
                console.print(f"{where}frame {result.frame_index:6d}  t={result.timestamp:7.2f}s  persons={len(result)}  {acts}",
                              highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        results.close()  # stops the threads, flushes and renames every complete output, writes --stats
        if n:
            bar.close(failed=True)
        kept = st.info.get("outputs_written", [])  # only the outputs actually renamed into place
        console.print(f"interrupted after {n} keyframes" + (f"; kept what was processed in {escape(', '.join(kept))}"
                                                            if kept else ""), highlight=False, soft_wrap=True)
        for message in st.info.get("output_errors", {}).values():  # raised by a run that ends, not by Ctrl-C
            console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise
    except BaseException:
        results.close()
        if n:
            bar.close(failed=True)
        raise
    if n:
        bar.update(completed=st.counters.get("frames_processed", 0))
        bar.close()
    console.print(st.table())
    written = st.info.get("outputs_written", [])  # a video no frame reached is not among them
    console.print(f"{n} keyframes processed" + (f"; wrote {escape(', '.join(written))}" if written else ""))


def register(app: typer.Typer) -> None:
    """Add ``vmaedet stream``."""
    app.command("stream")(stream_command)
