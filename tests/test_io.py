"""Atomic writes (fashion2stage.io): the whole file or the old one, never half of it, and the permissions a plain
``open(path, "w")`` would give, not mkstemp's owner-only 0600 (outputs are shared, served and copied)."""
import os
import stat

import pytest

from fashion2stage.io import write_bytes_atomic, write_json_atomic


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
