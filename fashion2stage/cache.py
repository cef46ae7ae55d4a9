"""The one content-addressed cache: ONNX exports, a detector's garments per photo, pseudo-boxes per photo and the
crop features the head trainers fit on all live here, each entry named by a hash of everything that determines it.

Where: ``$FASHION2STAGE_CACHE`` (default ``$XDG_CACHE_HOME/fashion2stage``, else ``~/.cache/fashion2stage``), or a
folder a command names (``type-head-train --cache DIR``). One sub-folder per kind of entry (``onnx/``,
``detections/``, ``pseudo_boxes/``, ``type_head/``, ``photo_kind/``); deleting the folder, or one of them, clears it.

Keys (:func:`key`): the SHA-256 of a JSON list of the parts that determine the entry, e.g. the model files' SHA-256
(:func:`file_digest`), the settings, the photo's identity (:func:`photo_identity`: its resolved path, size and
modification time, so an edited photo is a new entry) and a format number the user bumps when what it writes
changes. Nothing is ever looked up by a name alone, so new weights or settings can never be served old answers.

Guarantees: every entry is written atomically (:mod:`fashion2stage.io`) and carries the SHA-256 of its bytes: a
data entry in its first line (:class:`Shelf`), a file others must open as it is (an ONNX export) in a ``.sha256``
file beside it (:func:`cached_onnx`). A torn or damaged entry is recomputed, with one line saying so, never trusted.
Entries are per photo, so an interrupted loop keeps what it finished (:mod:`fashion2stage.photo_loop`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from fashion2stage.io import folder_lock, safe_name, write_bytes_atomic, write_text_atomic

CACHE_ENV = "FASHION2STAGE_CACHE"
T = TypeVar("T")
_MAGIC = b"fashion2stage-cache 1 "


def cache_root(folder: str | Path | None = None) -> Path:
    """``folder`` when a command names one, else ``$FASHION2STAGE_CACHE``, else ``$XDG_CACHE_HOME/fashion2stage``,
    else ``~/.cache/fashion2stage``."""
    if folder:
        return Path(folder)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fashion2stage"


def key(*parts) -> str:
    """Hex SHA-256 of ``parts`` as JSON (sorted keys; paths and other objects as their ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MB blocks (every time: a file rewritten within one clock tick keeps
    its size and mtime, so they cannot stand for its bytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def photo_identity(path: str | Path) -> list:
    """What names a photo's version: resolved path, size and modification time (``None``s for a missing file)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return [str(p.resolve()), None, None]
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def model_identity(model) -> object | None:
    """What a model's answers depend on, for keys: a wrapper's ``cache_identity`` (e.g. flip TTA), else the SHA-256
    of the files it was loaded from (``run_files``, set by ``detectors.load.load_detector``) with its inference
    settings. None for a model that cannot say (a test double): its entries must then be scoped by the caller."""
    if hasattr(model, "cache_identity"):
        return model.cache_identity
    files = getattr(model, "run_files", None)
    if not files:
        return None
    # a Faster R-CNN's inference settings (size, proposals: detectors.faster_rcnn.set_inference), a YOLO's size
    settings = getattr(model, "settings", None) or {"image_size": getattr(model, "image_size", None)}
    return {"model": type(model).__qualname__, "files": [file_digest(f) for f in files], "settings": settings}


class Shelf:
    """The entries of one kind (``root/<name>/``): values in and out as JSON (``codec="json"``) or as a dict of
    numpy arrays (``codec="npz"``, never pickled). ``log`` gets one line for each damaged entry met."""

    def __init__(self, name: str, codec: str = "json", root: str | Path | None = None,
                 log: Callable[[str], None] = print):
        if codec not in ("json", "npz"):
            raise ValueError(f"codec {codec!r}: expected json or npz")
        self.folder, self.codec, self.log = cache_root(root) / name, codec, log

    def path(self, k: str) -> Path:
        return self.folder / k[:2] / f"{k}.{self.codec}"

    def get(self, k: str):
        """The value stored under ``k``, or None when there is none or it is damaged (then it will be rewritten)."""
        path = self.path(k)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            self.log(f"warning: cache entry {safe_name(str(path))} cannot be read ({e.strerror}): computing it again")
            return None
        head, _, payload = data.partition(b"\n")
        if not head.startswith(_MAGIC) or head[len(_MAGIC):].decode("ascii", "replace") != _sha(payload):
            self.log(f"warning: cache entry {safe_name(str(path))} is damaged (torn, or bytes changed): "
                     "computing it again")
            return None
        if self.codec == "json":
            return json.loads(payload)
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            return {name: z[name] for name in z.files}

    def put(self, k: str, value) -> None:
        if self.codec == "json":
            payload = json.dumps(value, separators=(",", ":")).encode()
        else:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{name: np.asarray(v) for name, v in value.items()})
            payload = buf.getvalue()
        write_bytes_atomic(self.path(k), _MAGIC + _sha(payload).encode() + b"\n" + payload)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def damage(path: Path) -> str | None:
    """Why the cached file ``path`` cannot be trusted (no recorded hash, or bytes that differ from it), or None."""
    try:
        recorded = _hash_file(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return "has no recorded hash"
    return None if file_digest(path) == recorded else "differs from the hash recorded at its export (damaged, or replaced)"


ONNX_FORMAT = 1  # bump when an exporter changes what it writes: old exports then stop matching


def onnx_key(kind: str, files: list[Path], settings: dict) -> str:
    """Hex digest of the files' SHA-256, the settings, the torch version and :data:`ONNX_FORMAT`."""
    import torch  # noqa: PLC0415

    return key("onnx", kind, ONNX_FORMAT, torch.__version__, [file_digest(f) for f in files], settings)


def onnx_path(kind: str, files: list[Path], settings: dict) -> Path:
    """Where the export of this network with these settings lives (whether or not it exists yet)."""
    return cache_root() / "onnx" / f"{kind}-{onnx_key(kind, files, settings)[:32]}.onnx"


def cached_onnx(kind: str, files: list[Path], settings: dict, export: Callable[[Path], object],
                load: Callable[[Path], T], notify: Callable[[str], None] = lambda s: None) -> T:
    """``load(path)`` of the cached export of a network, exporting it first with ``export(path)`` when missing.

    ``files``: what the network is rebuilt from (weights, config.json); ``settings``: what else the graph bakes in.
    ``notify`` gets one line before an export (it takes tens of seconds on a CPU). A cached file whose recorded
    SHA-256 does not match (:func:`damage`), or that fails to load (e.g. written by another onnx version), is
    exported again, once, under a lock where ``fcntl`` exists, to a temporary file renamed into place after its hash
    is recorded, with one line saying why; a fresh export that fails to load raises.
    """
    path = onnx_path(kind, files, settings)
    why = None
    if path.is_file():
        why = damage(path)
        if why is None:
            try:
                return load(path)
            except Exception:  # noqa: BLE001  (any load failure of an old file: replace it below)
                why = "does not load"
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder / ".lock", str(folder), wait=True):
        # another process may have exported it while this one waited
        if why == "does not load" or not path.is_file() or damage(path) is not None:
            notify(f"cached ONNX file {path} {why}: exporting the {kind} model again" if why else
                   f"exporting the {kind} model to ONNX Runtime once (tens of seconds on a CPU) -> {path}")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                export(tmp)
                write_text_atomic(_hash_file(path), file_digest(tmp) + "\n")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
    return load(path)
