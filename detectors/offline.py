"""Make ultralytics work with no network at all; the user sets nothing (docs/RELIABILITY.md, "No network").

Call :func:`import_ultralytics` instead of ``import ultralytics``: before the first import it sets
``YOLO_OFFLINE=1`` (no online checks, no analytics), ``YOLO_AUTOINSTALL=0`` (no pip installs) and
``YOLO_CONFIG_DIR`` to a folder this package controls, and puts matplotlib's DejaVuSans.ttf as ``Arial.ttf`` and
``Arial.Unicode.ttf`` where ultralytics looks for them (``<YOLO_CONFIG_DIR>/Ultralytics`` in 8.4, the folder itself
in older releases); ultralytics otherwise downloads Arial on every train / val for its plots.
Variables the user did set are left alone.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def config_dir() -> Path:
    """``$XDG_CACHE_HOME/fashion2stage/ultralytics`` (``~/.cache/...`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fashion2stage" / "ultralytics"


def _install_fonts(folder: Path) -> None:
    from matplotlib import font_manager  # noqa: PLC0415
    src = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    for name in FONTS:
        dst = folder / name
        if not dst.is_file() or dst.stat().st_size == 0:
            tmp = folder / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            tmp.replace(dst)


def prepare_offline_environment() -> Path:
    """Set the environment and the fonts; returns the ultralytics config folder. Idempotent."""
    folder = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    for where in (folder, folder / "Ultralytics"):
        where.mkdir(exist_ok=True)
        _install_fonts(where)
    return folder


def import_ultralytics():
    """``ultralytics``, imported after :func:`prepare_offline_environment`; its settings sync (analytics) is off."""
    prepare_offline_environment()
    import ultralytics  # noqa: PLC0415
    from ultralytics.utils import SETTINGS  # noqa: PLC0415
    # no analytics; no Ray Tune callback (Ray is installed for `predict --engine ray`, not to tune ultralytics runs)
    off = {k: False for k in ("sync", "raytune") if SETTINGS.get(k)}
    if off:
        SETTINGS.update(off)
    return ultralytics
