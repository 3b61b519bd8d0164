"""Video files with PyAV: probing, decoding and the one H.264 writer of the package.

* :func:`probe_video` — frame rate, frame count and size from the header (decodes nothing);
* :func:`decode_all` — every frame of a (short) video as ``[N, H, W, 3]`` uint8 RGB;
* :class:`CachedVideoReader` — one open video with a bounded LRU cache of decoded frames and a
  forward-decoding cursor that seeks only when the next needed frame is far ahead (the
  ``"video"`` dataset layout of :mod:`vmaedet.data.layouts` reads through it);
* :class:`H264Writer` — incremental libx264 yuv420p encoder (one frame at a time, context manager);
  :func:`encode_h264` and :func:`write_video` are its one-call forms.

Frame i of a written video gets pts i at time base 1/fps, with fps an exact fraction
(:func:`vmaedet.data.sampling.as_rate`).
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from vmaedet.data.sampling import as_rate
from vmaedet.errors import DataError

# --------------------------------------------------------------------------- probing and decoding


def _open_container(path: Path):
    import av

    if not path.is_file():
        raise DataError(
            "video file not found",
            received=str(path),
            expected="an existing video file",
            fix="check the dataset root / frame source layout, or run `vmaedet data check ROOT`",
        )
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises its own error hierarchy (InvalidDataError, …)
        raise DataError(
            "video file cannot be opened",
            received=f"{path} ({type(exc).__name__}: {exc})",
            expected="a video PyAV/FFmpeg can decode (e.g. H.264 mp4)",
            fix="re-encode the file (ffmpeg -i in.mp4 -c:v libx264 -pix_fmt yuv420p out.mp4) or remove it",
        ) from None
    if not container.streams.video:
        container.close()
        raise DataError("file has no video stream", received=str(path), expected="a video file",
                        fix="remove it or replace it with a video")
    return container


def _stream_info(container, path: Path, fps_override: float | None) -> tuple[float, int]:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(fps_override) if fps_override else (float(rate) if rate else 0.0)
    if fps <= 0:
        raise DataError("video has no frame rate", received=str(path), expected="a positive frame rate",
                        fix="pass fps= explicitly")
    n = int(stream.frames or 0)
    if n <= 0 and stream.duration is not None and stream.time_base is not None:
        n = int(round(float(stream.duration * stream.time_base) * fps))
    if n <= 0 and container.duration:
        n = int(round(container.duration / 1_000_000 * fps))
    if n <= 0:
        raise DataError("cannot tell how many frames the video has", received=str(path),
                        expected="a stream with frame count or duration metadata",
                        fix="re-encode the file with ffmpeg (it writes the duration)")
    return fps, n


def probe_video(path: str | Path, fps: float | None = None) -> dict:
    """``{"path", "fps", "frames", "width", "height"}`` of a video file (header only)."""
    path = Path(path)
    container = _open_container(path)
    try:
        rate, n = _stream_info(container, path, fps)
        stream = container.streams.video[0]
        return {"path": str(path), "fps": rate, "frames": n, "width": stream.width, "height": stream.height}
    finally:
        container.close()


def decode_all(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of a video ``[N, H, W, 3]`` uint8 RGB and its frame rate."""
    path = Path(path)
    container = _open_container(path)
    try:
        fps, _ = _stream_info(container, path, None)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except DataError:
        raise
    except Exception as exc:
        raise DataError("video cannot be decoded", received=f"{path} ({type(exc).__name__}: {exc})",
                        expected="a decodable video", fix="re-encode or remove the file") from None
    finally:
        container.close()
    if not frames:
        raise DataError("video has no decodable frames", received=str(path), expected="≥ 1 frame",
                        fix="re-encode or remove the file")
    return np.stack(frames), fps


# --------------------------------------------------------------------------- H.264 writer

#: RGB → YUV 4:2:0 conversions :class:`H264Writer` knows: FFmpeg's swscale (inside PyAV) or OpenCV's
#: ``COLOR_RGB2YUV_I420`` (the synthetic generator's choice).
YUV_CONVERSIONS = ("swscale", "cv2")
#: What :class:`H264Writer` does with an odd width or height: refuse it (the default) or pad to even.
ODD_SIZE_POLICIES = ("error", "pad")
#: libx264's presets, fastest first: each trades encoding time for compression at the same quality (crf).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


class H264Writer:
    """Encode RGB uint8 frames ``[H, W, 3]`` one at a time as H.264 (libx264, yuv420p) with PyAV.

    The one video writer of the package: :func:`encode_h264` / :func:`write_video` (datasets, layout
    converters, the synthetic generator) and the streaming runtime's annotated-video output use it.
    The file is opened at the first :meth:`write` (the first frame fixes the size unless ``size`` is
    given); frame i gets pts i at time base 1/fps. :meth:`close` flushes the encoder and closes the
    file; a failed write or close, or leaving a ``with`` block by an exception, deletes the partial
    file (:meth:`abort`), so a video is either complete or absent.

    **Odd sizes.** yuv420p stores chroma at half resolution, so H.264 needs an even width and height.
    The default, ``odd="error"``, refuses a frame of odd size (a :class:`DataError` before anything is
    written): a dataset writer must not change the geometry its boxes are normalised to.
    ``odd="pad"`` pads every frame with black to the next even size on the bottom/right edge (one
    row/column at most; the pixels of the frame keep their coordinates) — for outputs that are only
    watched, such as the stream's annotated video.

    Args:
        path: output file (parent folders are created).
        fps: frame rate (exact via :func:`~vmaedet.data.sampling.as_rate`: 29.97 → 2997/100,
            ``Fraction(30000, 1001)`` stays).
        crf: libx264 constant rate factor (lower = better quality, bigger file); None leaves
            libx264's default (23) and passes no option.
        preset: libx264 preset (one of :data:`X264_PRESETS`, "ultrafast" … "placebo"); None keeps libx264's
            default ("medium") and passes no option. An unknown name is refused before the file is opened.
        threads: encoder threads; 0 lets libx264 choose. 1 makes the bytes independent of the machine and
            encodes in the calling thread (no encoder threads of its own).
        yuv: RGB → YUV 4:2:0 conversion: "swscale" (FFmpeg's, inside PyAV) or "cv2"
            (``cv2.COLOR_RGB2YUV_I420``; the synthetic generator's choice).
        size: expected ``(width, height)`` of every frame; None takes the first frame's.
        odd: "error" (default) or "pad" (see above).
        format: FFmpeg muxer name ("mp4", "matroska", "mov", …); None guesses it from the file name.

    Example::

        with H264Writer("out.mp4", Fraction(30000, 1001), odd="pad") as w:
            for frame in frames:
                w.write(frame)
    """

    def __init__(self, path: str | Path, fps: float | Fraction = 25, *, crf: int | None = 18,
                 preset: str | None = None, threads: int = 0, yuv: str = "swscale",
                 size: tuple[int, int] | None = None, odd: str = "error", format: str | None = None) -> None:
        if yuv not in YUV_CONVERSIONS:
            raise DataError("unknown RGB→YUV conversion", received=yuv, expected=" | ".join(YUV_CONVERSIONS),
                            fix="pass yuv='swscale' or yuv='cv2'")
        if odd not in ODD_SIZE_POLICIES:
            raise DataError("unknown odd-size policy", received=odd, expected=" | ".join(ODD_SIZE_POLICIES),
                            fix="pass odd='error' (refuse odd sizes) or odd='pad' (pad to even with black)")
        if preset is not None and preset not in X264_PRESETS:
            raise DataError("unknown libx264 preset", received=repr(preset), expected=" | ".join(X264_PRESETS),
                            fix="pass preset='veryfast' (real time) or None (libx264's default, medium)")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise DataError("the encoder thread count must be an integer ≥ 0", received=repr(threads),
                            expected="0 (libx264 chooses) or a count ≥ 1", fix="pass threads=0 or threads=1")
        self.path = Path(path)
        self.rate = as_rate(fps)
        self.options = {**({"crf": str(crf)} if crf is not None else {}), **({"preset": preset} if preset else {})}
        self.threads, self.yuv, self.odd, self.format = threads, yuv, odd, format
        self.size = size  # (width, height) of the input frames
        self.frames = 0  # frames written so far
        self._fh = None
        self._container = None
        self._stream = None
        self._closed = False

    @property
    def coded_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the encoded video (the input size, padded to even with ``odd="pad"``)."""
        if self.size is None:
            return None
        w, h = self.size
        return (w + w % 2, h + h % 2) if self.odd == "pad" else (w, h)

    def _check(self, img: np.ndarray) -> None:
        """Refuse a frame of wrong dtype/shape, odd size (``odd="error"``) or a size unlike the first."""
        index = self.frames
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise DataError(f"frame {index} to encode is not a uint8 [H, W, 3] RGB image",
                            received=f"{img.dtype} {img.shape}", expected="uint8 [H, W, 3]",
                            fix="convert with np.asarray(frame, dtype=np.uint8)")
        h, w = img.shape[:2]
        if self.odd == "error" and (h % 2 or w % 2):
            raise DataError("H.264 yuv420p needs even frame sizes", received=f"{w}×{h}", expected="even W and H",
                            fix="crop or resize to even dimensions, or pass odd='pad' to pad with black")
        if self.size is not None and (w, h) != tuple(self.size):
            raise DataError(f"frame {index} to encode changes size", received=f"{w}×{h}",
                            expected=f"{self.size[0]}×{self.size[1]} like the frames before",
                            fix="resize every frame alike")

    def _open(self) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the file is opened here (PyAV guesses the container from its name unless ``format`` names it) so
        # that it is closed in every case: a failing write (full disk) left PyAV's own handle open on the
        # deleted partial file
        self._fh = open(self.path, "wb")
        self._container = av.open(self._fh, "w", format=self.format)
        stream = self._container.add_stream("libx264", rate=self.rate, options=self.options)
        stream.width, stream.height = self.coded_size
        stream.pix_fmt = "yuv420p"
        if self.threads > 0:
            stream.codec_context.thread_count = self.threads
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Encode one RGB uint8 frame ``[H, W, 3]``; a refused frame or a failure deletes the partial file, re-raising."""
        import av

        if self._closed:
            raise DataError("the video writer is closed", received=str(self.path), expected="an open H264Writer",
                            fix="write every frame before close()")
        img = np.asarray(frame)
        try:
            self._check(img)
            if self._container is None:
                self.size = (img.shape[1], img.shape[0])
                self._open()
            cw, ch = self.coded_size
            if (cw, ch) != self.size:  # odd="pad": black bottom row / right column
                img = np.pad(img, ((0, ch - img.shape[0]), (0, cw - img.shape[1]), (0, 0)))  # [H', W', 3]
            if self.yuv == "cv2":
                import cv2

                out = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420),  # [H·3/2, W]
                                                 format="yuv420p")
            else:
                out = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            out.pts = self.frames
            self._container.mux(self._stream.encode(out))
            self.frames += 1
        except BaseException:
            self.abort()
            raise

    def close(self) -> int:
        """Flush the encoder and close the file (idempotent); returns the number of frames written.

        Nothing was written (no file is created) when no frame came. A failed flush deletes the partial
        file and re-raises.
        """
        if self._closed:
            return self.frames
        self._closed = True
        if self._container is None:
            return self.frames
        try:
            self._container.mux(self._stream.encode(None))
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.frames

    def abort(self) -> None:
        """Close without flushing and delete the partial file (idempotent)."""
        self._closed = True
        opened = self._fh is not None
        try:
            self._release()
        finally:
            if opened:
                self.path.unlink(missing_ok=True)

    def _release(self) -> None:
        container, fh = self._container, self._fh
        self._container = self._stream = self._fh = None
        try:
            if container is not None:
                container.close()
        finally:
            if fh is not None:
                fh.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def encode_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float | Fraction = 25, *, crf: int | None = 18,
                preset: str | None = None, threads: int = 0, yuv: str = "swscale",
                size: tuple[int, int] | None = None, odd: str = "error") -> int:
    """Encode RGB uint8 frames ``[H, W, 3]`` as H.264 yuv420p with :class:`H264Writer`; returns the count.

    Frames are consumed one at a time (an iterator is never held in memory). On failure the partial
    file is removed. The arguments are :class:`H264Writer`'s (odd sizes are refused unless
    ``odd="pad"``).
    """
    writer = H264Writer(path, fps, crf=crf, preset=preset, threads=threads, yuv=yuv, size=size, odd=odd)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise DataError("no frames to encode", received=str(path), expected="≥ 1 frame",
                        fix="pass a non-empty sequence of frames")
    with writer:
        writer.write(first)
        for img in it:
            writer.write(img)
    return writer.frames


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float | Fraction = 25,
                crf: int = 18) -> Path:
    """Encode RGB uint8 frames ``[N, H, W, 3]`` (even H, W) as H.264 yuv420p (:func:`encode_h264`)."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
        raise DataError("frames to encode must be a non-empty uint8 [N, H, W, 3] RGB array",
                        received=f"{arr.dtype} {arr.shape}", expected="uint8 [N, H, W, 3]",
                        fix="convert with np.asarray(frames, dtype=np.uint8)")
    encode_h264(path, arr, fps, crf=crf)
    return Path(path)


# --------------------------------------------------------------------------- cached reader


class CachedVideoReader:
    """One open video with a bounded LRU cache of decoded frames and a forward-decoding cursor.

    Args:
        path: the video file.
        fps_override: frame rate to use instead of the stream's (files with wrong metadata), or None.
        cache_frames: decoded frames kept (bounds memory: ≈ W·H·3 bytes each).
        seek_gap: decode forward instead of seeking when the next needed frame is at most this far ahead.
    """

    def __init__(self, path: Path, fps_override: float | None, cache_frames: int, seek_gap: int) -> None:
        self.path = path
        self.container = _open_container(path)
        try:
            self.stream = self.container.streams.video[0]
            self.fps, self.num_frames = _stream_info(self.container, path, fps_override)
            start = self.stream.start_time
        except BaseException:  # a reader that fails to start must not leak its open container
            self.container.close()
            raise
        self._start_pts = int(start) if start is not None else 0
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_frames = cache_frames
        self.seek_gap = seek_gap
        self._iter: Iterator | None = None
        self._next = 0  # index of the next frame the cursor will produce
        self.decoded = 0  # frames decoded so far (for tests/benchmarks)

    def _index_of(self, frame) -> int:
        if frame.pts is None:
            return self._next
        t = float((frame.pts - self._start_pts) * self.stream.time_base)
        return int(round(t * self.fps))

    def _seek(self, index: int) -> None:
        sec = max(index, 0) / self.fps
        pts = int(sec / float(self.stream.time_base)) + self._start_pts
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self._iter = self.container.decode(self.stream)
        self._next = -1  # unknown until the first frame arrives

    def _store(self, idx: int, img: np.ndarray) -> None:
        self.cache[idx] = img
        self.cache.move_to_end(idx)
        while len(self.cache) > self.cache_frames:
            self.cache.popitem(last=False)

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` (0-based, any order, repeats allowed) as ``[len(indices), H, W, 3]`` uint8 RGB."""
        wanted = sorted(set(indices))
        missing = [i for i in wanted if i not in self.cache]
        if missing:
            lo, hi = missing[0], missing[-1]
            if self._iter is None or not (0 <= self._next <= lo and lo - self._next <= self.seek_gap):
                self._seek(lo)
            try:
                for frame in self._iter:
                    idx = self._index_of(frame)
                    self.decoded += 1
                    self._next = idx + 1
                    if idx >= lo:
                        self._store(idx, frame.to_ndarray(format="rgb24"))
                    if idx >= hi:
                        break
                else:
                    self._iter = None
            except Exception as exc:
                raise DataError("video cannot be decoded", received=f"{self.path} ({type(exc).__name__}: {exc})",
                                expected="a decodable video", fix="re-encode or remove the file") from None
        out = []
        for i in indices:
            img = self.cache.get(i)
            if img is None:  # stream shorter than its metadata: use the last decoded frame before i
                earlier = [j for j in self.cache if j <= i]
                if not earlier:
                    raise DataError("frame missing from video", received=f"{self.path} frame {i}",
                                    expected=f"frames 0..{self.num_frames - 1}", fix="re-encode the file")
                img = self.cache[max(earlier)]
            else:
                self.cache.move_to_end(i)
            out.append(img)
        return np.stack(out)

    def close(self) -> None:
        """Close the video file."""
        self.container.close()

