"""No network unless the user asks for it: the offline switches of the libraries this package imports.

Set by ``import fashion2stage`` (``classifiers`` and ``detectors`` import it first), before any of those libraries
is imported, because each reads its switch once, at its own import:

- ``NO_ALBUMENTATIONS_UPDATE=1``: albumentations otherwise asks PyPI for a newer version on every import;
- ``YOLO_OFFLINE=1``: ultralytics otherwise probes DNS servers and GitHub (see also :mod:`detectors.offline`);
- ``HF_HUB_OFFLINE=1``: huggingface_hub (imported by timm) otherwise may call the hub.

A variable the user set is left as it is, so ``HF_HUB_OFFLINE=0`` (or any of them set to 0) turns a library back
online. Hub weights the user asks for (a timm backbone other than the offline EfficientNet-Lite0, with
pretrained weights) are fetched inside :func:`hub_allowed`.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

SWITCHES = {"NO_ALBUMENTATIONS_UPDATE": "1", "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
_set_here: set[str] = set()  # the switches this package set (not the user): the only ones hub_allowed lifts


def set_offline_switches() -> None:
    """Set every switch the user has not set. Idempotent."""
    for name, value in SWITCHES.items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here.add(name)


@contextmanager
def hub_allowed() -> Iterator[None]:
    """Let huggingface_hub download inside the block, unless the user set ``HF_HUB_OFFLINE`` themselves.

    huggingface_hub reads the variable once, into ``constants.HF_HUB_OFFLINE``, and checks that value before every
    request; the block flips that value and restores it.
    """
    if "HF_HUB_OFFLINE" not in _set_here:
        yield
        return
    from huggingface_hub import constants  # noqa: PLC0415

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
