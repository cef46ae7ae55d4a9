"""The two errors users see: bad data files and unreadable images. Both name the file (and line) in one line."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A label or annotation file is wrong. ``str(err)`` is ``"<file>:<line>: <problem>"`` (line omitted if unknown)."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ImageReadError(OSError):
    """An image cannot be decoded (missing, empty, corrupt, not an image, too large). ``str(err)`` names the file."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class ImageTooLargeError(ImageReadError):
    """An image whose pixel count is over the limit (read from its header, before decoding): a decompression bomb or
    simply too big. A service answers it differently (413) from a broken file."""
