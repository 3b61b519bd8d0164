"""Source test doubles for the stream tests."""

from __future__ import annotations

from pathlib import Path

from vmaedet.runtime.sources import FileSource, Frame, Source


class DyingSource(Source):
    """Test double: a real file source that raises ``ConnectionError`` after ``n`` frames (a camera unplugged).

    ``known_length``: report the file's frame count as the source's (as a file source does) or leave it
    unknown (as a camera does).
    """

    def __init__(self, path: Path, n: int, name: str = "failing", known_length: bool = True) -> None:
        self.inner, self.n, self.name, self.known_length = FileSource(path), n, name, known_length

    def open(self) -> None:
        self.inner.open()
        self.fps, self.rate = self.inner.fps, self.inner.rate
        if self.known_length:
            self.frame_count = self.inner.frame_count

    def read(self) -> Frame | None:
        frame = self.inner.read()
        if frame is not None and frame.index >= self.n:
            raise ConnectionError("camera unplugged")
        return frame

    def close(self) -> None:
        self.inner.close()
