"""``load_detector(run_dir) -> Detector``: the one inference interface of both backends (used by ``predict``,
``detect-val`` and the classifier's pseudo-box step)."""
from __future__ import annotations

from pathlib import Path

from fashion2stage.labels import LabelSet
from fashion2stage.errors import DataError
from fashion2stage.roles import Detector
from fashion2stage.runs import config_errors, load_config, load_labels


def _faster_rcnn(run: Path, config: dict, labels: LabelSet, device: str) -> Detector:
    from detectors.faster_rcnn import FasterRCNNDetector  # noqa: PLC0415
    return FasterRCNNDetector.from_run(run, config, labels, device)


def _yolo(run: Path, config: dict, labels: LabelSet, device: str) -> Detector:
    from detectors.yolo import YoloDetector  # noqa: PLC0415  (imports ultralytics, offline-safe)
    return YoloDetector.from_run(run, config, labels, device)


BUILDERS = {"faster-rcnn": _faster_rcnn, "yolo": _yolo}


def load_detector(run_dir: str | Path, device: str = "cpu") -> Detector:
    """Rebuild the detector a ``detect-train`` run folder describes (``config.json`` + ``labels.json`` + weights)."""
    run = Path(run_dir)
    config = load_config(run, kind="detector")
    backend = config.get("backend")
    if backend not in BUILDERS:
        raise DataError(run / "config.json", f"unknown detector backend {backend!r} (known: {', '.join(BUILDERS)})")
    if not isinstance(config.get("weights"), str) or not config["weights"]:
        raise DataError(run / "config.json", f"'weights' {config.get('weights')!r} is not a file name")
    weights = run / config["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{run}: weights file {config.get('weights')!r} not found (training not finished?)")
    labels = load_labels(run)
    with config_errors(run):
        return BUILDERS[backend](run, config, labels, device)
