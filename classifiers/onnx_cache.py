"""Export a run folder's network to ONNX once, into a per-user cache, so ONNX Runtime can be ``predict``'s default.

The shipped bundle lives in site-packages, which may be read-only, and a run folder may be shared between users; so
exports go to ``$FASHION2STAGE_CACHE`` (default ``$XDG_CACHE_HOME/fashion2stage``, else ``~/.cache/fashion2stage``)
under ``onnx/``, named by a hash of everything the exported graph depends on: the weights file and ``config.json``
of the run, the inference settings baked into the graph (a detector's input size and proposal count), the torch
version that traced it and :data:`FORMAT`. New weights or settings get a new file; a file is never reused for
other weights. Exports are written to a temporary file and renamed, under a lock where ``fcntl`` exists, so two
``predict`` runs on a fresh machine export once and never see half a file.

Each export's SHA-256 is written beside it (``<name>.onnx.sha256``) and checked before the file is used: a file
damaged on disk (flipped bytes in its weights load without error and give wrong answers) or without its hash is
exported again, with one line saying so.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, TypeVar

from fashion2stage.io import folder_lock, write_text_atomic

CACHE_ENV = "FASHION2STAGE_CACHE"
FORMAT = 1  # bump when an exporter changes what it writes: old files then stop matching
T = TypeVar("T")


def cache_root() -> Path:
    """``$FASHION2STAGE_CACHE``, else ``$XDG_CACHE_HOME/fashion2stage``, else ``~/.cache/fashion2stage``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fashion2stage"


def onnx_key(kind: str, files: list[Path], settings: dict) -> str:
    """Hex digest of the files' bytes, the settings (JSON, sorted keys), the torch version and :data:`FORMAT`."""
    import torch  # noqa: PLC0415

    h = hashlib.sha256(f"{kind}\0{FORMAT}\0{torch.__version__}\0".encode())
    for f in files:
        _feed(h, f).update(b"\0")
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def cache_path(kind: str, files: list[Path], settings: dict) -> Path:
    """Where the export of this network with these settings lives (whether or not it exists yet)."""
    return cache_root() / "onnx" / f"{kind}-{onnx_key(kind, files, settings)[:32]}.onnx"


def _feed(h, path: Path):
    """``h`` (a hashlib object) updated with the bytes of ``path``, read in 1 MB blocks."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


def _sha256(path: Path) -> str:
    return _feed(hashlib.sha256(), path).hexdigest()


def _hash_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def damage(path: Path) -> str | None:
    """Why the cached export ``path`` cannot be trusted (no recorded hash, or bytes that differ from it), or None."""
    try:
        recorded = _hash_file(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return "has no recorded hash"
    return None if _sha256(path) == recorded else "differs from the hash recorded at its export (damaged, or replaced)"


def cached_onnx(kind: str, files: list[Path], settings: dict, export: Callable[[Path], object],
                load: Callable[[Path], T], notify: Callable[[str], None] = lambda s: None) -> T:
    """``load(path)`` of the cached export of a network, exporting it first with ``export(path)`` when missing.

    ``files``: what the network is rebuilt from (weights, config.json); ``settings``: what else the graph bakes in.
    ``notify`` gets one line before an export (it takes tens of seconds on a CPU). A cached file whose hash does not
    match, or that fails to load (e.g. written by another onnx version), is exported again, once, with one line
    saying why; a fresh export that fails to load raises.
    """
    path = cache_path(kind, files, settings)
    folder = path.parent
    why = None
    if path.is_file():
        why = damage(path)
        if why is None:
            try:
                return load(path)
            except Exception:  # noqa: BLE001  (any load failure of an old file: replace it below)
                why = "does not load"
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder / ".lock", str(folder), wait=True):
        # another process may have exported it while this one waited
        if why == "does not load" or not path.is_file() or damage(path) is not None:
            notify(f"cached ONNX file {path} {why}: exporting the {kind} model again" if why else
                   f"exporting the {kind} model to ONNX Runtime once (tens of seconds on a CPU) -> {path}")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                export(tmp)
                write_text_atomic(_hash_file(path), _sha256(tmp) + "\n")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
    return load(path)
