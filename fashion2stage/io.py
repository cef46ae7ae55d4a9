"""Writing outputs: atomic file writes (a crash or Ctrl-C never leaves a half-written output behind), errors that
name the file, a lock for a folder only one process may write, and file names made safe for one-line outputs."""
from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``. The file gets the mode a
    plain ``open(path, "w")`` would give it (an existing file's mode, else 0o666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    with naming(path, always=True):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


@contextmanager
def naming(path: str | Path, always: bool = False):
    """Re-raise an OSError of the block that names no file (a write or flush that met a full disk: ``[Errno 28] No
    space left on device``) as the same error naming ``path``; ``always``: even one naming another file (the
    temporary file of an atomic write)."""
    try:
        yield
    except OSError as e:
        if e.errno is None or (e.filename is not None and not always):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None


@contextmanager
def appending(path: str | Path):
    """Open the text file ``path`` for appending and yield ``write(text)``, which writes and flushes: a process
    killed between two writes leaves whole writes. Every error, closing included, names ``path``."""
    with naming(path):
        f = open(path, "a", encoding="utf-8")

    def write(text: str) -> None:
        with naming(path):
            f.write(text)
            f.flush()
    try:
        yield write
    finally:
        with naming(path):
            f.close()  # after a failed write the text is still buffered: closing fails too


@contextmanager
def folder_lock(lock: str | Path, what: str, wait: bool = False):
    """Hold an exclusive lock on the file ``lock`` for the block (released by the OS if the process dies). When
    another process holds it: wait, or with ``wait=False`` raise at once the one-line OSError ``<what> is being
    written by another process (pid N)``. Where ``fcntl`` does not exist (Windows) nothing is locked."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:
        yield
        return
    with naming(lock):
        f = open(lock, "a+")
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            raise OSError(f"{what} is being written by another process"
                          + (f" (pid {holder})" if holder.isdigit() else "")) from None
        try:
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def safe_name(name: str) -> str:
    """``name`` with every control character (NUL, newline, tab, ESC, DEL ...) and line separator written as
    ``\\xNN`` (``\\uNNNN`` above U+00FF), and every byte of a non-UTF-8 file name (Python holds it as a lone
    surrogate) as ``\\xNN`` of that byte: ``image`` and every message naming the file stay on one printable line.
    Other names are returned as they are (docs/OUTPUT.md)."""
    if name.isprintable():
        return name
    out = []
    for c in name:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"):  # controls, line and paragraph separators
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(c)
    return "".join(out)
