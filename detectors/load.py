"""``load_detector(run_dir) -> Detector``: the one inference interface of both backends (used by ``predict``,
``detect-val`` and the classifier's pseudo-box step)."""
from __future__ import annotations

from pathlib import Path

from fashion2stage.labels import LabelSet
from fashion2stage.roles import Detector
from fashion2stage.runs import config_errors, load_run
from fashion2stage.specs import DetectorSpec


def _faster_rcnn(run: Path, spec: DetectorSpec, labels: LabelSet, device: str) -> Detector:
    from detectors.faster_rcnn import FasterRCNNDetector  # noqa: PLC0415
    return FasterRCNNDetector.from_run(run, spec, labels, device)


def _yolo(run: Path, spec: DetectorSpec, labels: LabelSet, device: str) -> Detector:
    from detectors.yolo import YoloDetector  # noqa: PLC0415  (imports ultralytics, offline-safe)
    return YoloDetector.from_run(run, spec, labels, device)


BUILDERS = {"faster-rcnn": _faster_rcnn, "yolo": _yolo}  # the backends of specs.DETECTOR_BACKENDS


def load_detector(run_dir: str | Path, device: str = "cpu") -> Detector:
    """Rebuild the detector a ``detect-train`` run folder describes (``config.json`` + ``labels.json`` + weights)."""
    run = Path(run_dir)
    spec, labels = load_run(run, "detector")
    if not (run / spec.weights).is_file():
        raise FileNotFoundError(f"{run}: weights file {spec.weights!r} not found (training not finished?)")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        detector = BUILDERS[spec.backend](run, spec, labels, device)
    # what its answers depend on, for the keys of the cache of its garments (fashion2stage.cache.model_identity)
    detector.run_files = (run / spec.weights, run / "config.json", run / "labels.json")
    return detector
