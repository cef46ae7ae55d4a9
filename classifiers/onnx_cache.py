"""Export a run folder's network to ONNX once, into the one cache (:mod:`fashion2stage.cache`), so ONNX Runtime can
be ``predict``'s default.

The shipped bundle lives in site-packages, which may be read-only, and a run folder may be shared between users; so
exports go to the cache's ``onnx/`` folder (``$FASHION2STAGE_CACHE``, default ``$XDG_CACHE_HOME/fashion2stage``,
else ``~/.cache/fashion2stage``), named by a hash of everything the exported graph depends on: the weights file and
``config.json`` of the run, the inference settings baked into the graph (a detector's input size and proposal
count), the torch version that traced it and :data:`FORMAT`. New weights or settings get a new file; a file is never
reused for other weights. Exports are written to a temporary file and renamed, under a lock where ``fcntl`` exists,
so two ``predict`` runs on a fresh machine export once and never see half a file.

Each export's SHA-256 is written beside it (``<name>.onnx.sha256``) and checked before the file is used: a file
damaged on disk (flipped bytes in its weights load without error and give wrong answers) or without its hash is
exported again, with one line saying so (:func:`fashion2stage.cache.cached_file`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from fashion2stage.cache import CACHE_ENV, cache_root, cached_file, damage, file_digest, key

__all__ = ["CACHE_ENV", "FORMAT", "cache_path", "cache_root", "cached_onnx", "damage", "onnx_key"]
FORMAT = 1  # bump when an exporter changes what it writes: old files then stop matching
T = TypeVar("T")


def onnx_key(kind: str, files: list[Path], settings: dict) -> str:
    """Hex digest of the files' SHA-256, the settings, the torch version and :data:`FORMAT`."""
    import torch  # noqa: PLC0415

    return key("onnx", kind, FORMAT, torch.__version__, [file_digest(f) for f in files], settings)


def cache_path(kind: str, files: list[Path], settings: dict) -> Path:
    """Where the export of this network with these settings lives (whether or not it exists yet)."""
    return cache_root() / "onnx" / f"{kind}-{onnx_key(kind, files, settings)[:32]}.onnx"


def cached_onnx(kind: str, files: list[Path], settings: dict, export: Callable[[Path], object],
                load: Callable[[Path], T], notify: Callable[[str], None] = lambda s: None) -> T:
    """``load(path)`` of the cached export of a network, exporting it first with ``export(path)`` when missing.

    ``files``: what the network is rebuilt from (weights, config.json); ``settings``: what else the graph bakes in.
    ``notify`` gets one line before an export (it takes tens of seconds on a CPU). A cached file whose hash does not
    match, or that fails to load (e.g. written by another onnx version), is exported again, once, with one line
    saying why; a fresh export that fails to load raises.
    """
    return cached_file(cache_path(kind, files, settings), kind, export, load, notify)
