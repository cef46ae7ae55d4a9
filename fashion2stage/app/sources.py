"""What ``predict SOURCE`` and ``Reader()(source)`` accept, as ultralytics does: an image file, a folder (searched
recursively), a glob pattern (``photos/*.jpg``, ``photos/**/*.png``) or a ``.txt`` file listing one path per line
(a relative path is relative to the ``.txt`` file's folder; empty lines and lines starting with ``#`` are skipped).

:func:`resolve_source` turns any of them into a root folder and the image paths relative to it: the ``image`` field
of each line (docs/OUTPUT.md). For a folder the root is the folder; for a file, a glob or a list it is the deepest
folder holding all of the files.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from fashion2stage.app.predict import IMAGE_SUFFIXES, list_images

GLOB_CHARS = frozenset("*?[")


class SourceError(FileNotFoundError):
    """A source that holds nothing to read: ``problem`` says why, ``str()`` is ``"<source>: <problem>"``."""

    def __init__(self, source: str | Path, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = str(source), problem


def is_pattern(source: str | Path) -> bool:
    """A glob pattern rather than a path (a file whose name holds ``*`` is a path when it exists)."""
    return not os.path.lexists(source) and any(c in GLOB_CHARS for c in str(source))


def expand_source(source: str | Path) -> list[str] | None:
    """The image paths ``source`` stands for, or None when it is one path to read as it is (an image file, or a
    path that does not exist: reading it says so). Raises FileNotFoundError for a folder without images, a glob that
    matches none, or a list without paths (:class:`SourceError`)."""
    text = str(source)
    path = Path(source)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise SourceError(path, f"no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return [os.path.join(text, f) for f in files]
    if path.suffix.lower() == ".txt" and path.is_file():
        return _read_list(path)
    if is_pattern(text):
        found = sorted(p for p in glob.glob(text, recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES and not Path(p).is_dir())
        if not found:
            raise SourceError(text, "no image matches this pattern")
        return found
    return None


def resolve_source(source: str | Path) -> tuple[Path, list[str] | None]:
    """``(root, files)`` for ``predict``: ``files`` relative to ``root`` (POSIX), or None for a folder, whose every
    image ``predict_folder`` lists itself. Raises FileNotFoundError naming the source when it holds nothing to read."""
    path = Path(source)
    if path.is_dir():
        return path, None
    paths = expand_source(source)
    if paths is None:
        if not os.path.lexists(path):
            raise SourceError(path, "no such file or folder")
        paths = [str(path)]
    return common_root(paths)


def common_root(paths: list[str]) -> tuple[Path, list[str]]:
    """The deepest folder holding every path (relative to the working folder when under it), and each path relative
    to it (POSIX, input order kept)."""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    rel = [Path(os.path.relpath(p, root)).as_posix() for p in absolute]
    here = os.path.relpath(root)
    return Path(root if here.startswith("..") else here), rel


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(path, f"cannot read the list of paths: {getattr(e, 'strerror', None) or e}") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise SourceError(path, "lists no paths (one image path per line)")
    return [n if os.path.isabs(n) else os.path.join(str(path.parent), n) for n in names]
