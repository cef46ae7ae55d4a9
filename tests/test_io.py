"""Atomic writes (fashion2stage.io): the whole file or the old one, never half of it, and the permissions a plain
``open(path, "w")`` would give, not mkstemp's owner-only 0600 (outputs are shared, served and copied); write errors
that name the file; file names made safe for one-line outputs."""
import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fashion2stage.io import safe_name, write_bytes_atomic, write_json_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "sub" / "out.json", {"a": 1})
        assert _mode(tmp_path / "sub" / "out.json") == 0o666 & ~umask
        assert os.umask(umask) == umask  # the write left the umask as it found it
    finally:
        os.umask(old)


def test_replacing_keeps_the_existing_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    path.write_text("old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(path, {"a": 1})
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


WRITE_OVER_LIMIT = """
import resource, signal, sys
from fashion2stage.io import write_bytes_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
try:
    write_bytes_atomic(sys.argv[1], b"x" * 5000)
except OSError as e:
    print(e)
"""


def test_a_write_error_names_the_file_not_its_temporary(tmp_path):
    """A file size limit stands in for a full disk: both fail the write itself, with an error naming no file."""
    root = Path(__file__).resolve().parents[1]
    target = tmp_path / "out.json"
    out = subprocess.run([sys.executable, "-c", WRITE_OVER_LIMIT, str(target)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, check=True).stdout.strip()
    assert out == f"[Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}: '{target}'"
    assert list(tmp_path.iterdir()) == []  # and no temporary file left


def test_safe_name_escapes_control_characters_only():
    assert safe_name("sub/a b-é.jpg") == "sub/a b-é.jpg"
    assert safe_name("a\nb\0c\x7f\u2028.jpg") == "a\\x0ab\\x00c\\x7f\\u2028.jpg"
    assert safe_name(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
