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
exported again, with one line saying so.

The code is :mod:`fashion2stage.cache`'s (core, so that a detector loader may call it too); this module keeps the
names the models and tests use.
"""
from __future__ import annotations

from fashion2stage.cache import CACHE_ENV, cache_root, cached_onnx, damage, onnx_key
from fashion2stage.cache import ONNX_FORMAT as FORMAT
from fashion2stage.cache import onnx_path as cache_path

__all__ = ["CACHE_ENV", "FORMAT", "cache_path", "cache_root", "cached_onnx", "damage", "onnx_key"]
