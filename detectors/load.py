"""``load_detector(run_dir) -> Detector``: the one inference interface of both backends (used by ``predict``,
``detect-val`` and the classifier's pseudo-box step), its network on torch or ONNX Runtime chosen here, at load."""
from __future__ import annotations

from pathlib import Path

from fashion2stage.labels import LabelSet
from fashion2stage.nets import resolve_runtime
from fashion2stage.roles import Detector
from fashion2stage.runs import config_errors, load_run
from fashion2stage.specs import DetectorSpec


def _faster_rcnn(run: Path, spec: DetectorSpec, labels: LabelSet, device: str, runtime: str, threads: int,
                 size: int | None, proposals: int | None) -> Detector:
    from detectors.faster_rcnn import FasterRCNNDetector  # noqa: PLC0415
    return FasterRCNNDetector.from_run(run, spec, labels, device, runtime, threads, size, proposals)


def _yolo(run: Path, spec: DetectorSpec, labels: LabelSet, device: str, runtime: str, threads: int,
          size: int | None, proposals: int | None) -> Detector:
    from detectors.yolo import YoloDetector  # noqa: PLC0415  (imports ultralytics, offline-safe)
    return YoloDetector.from_run(run, spec, labels, device, runtime, threads)  # its size is its training size


BUILDERS = {"faster-rcnn": _faster_rcnn, "yolo": _yolo}  # the backends of specs.DETECTOR_BACKENDS


def load_detector(run_dir: str | Path, device: str = "cpu", runtime: str = "torch", threads: int = 0,
                  size: int | None = None, proposals: int | None = None) -> Detector:
    """Rebuild the detector a ``detect-train`` run folder describes (``config.json`` + ``labels.json`` + weights),
    its network on ``runtime`` (auto / onnx / torch, fashion2stage.nets.load_net; ``threads``: ONNX Runtime's).
    ``size`` / ``proposals``: a Faster R-CNN's shorter photo side and RPN proposals per photo at inference (None:
    as trained; baked into its ONNX graph)."""
    resolve_runtime(runtime, device)  # an unknown runtime is named as such, not blamed on config.json
    run = Path(run_dir)
    spec, labels = load_run(run, "detector")
    if not (run / spec.weights).is_file():
        raise FileNotFoundError(f"{run}: weights file {spec.weights!r} not found (training not finished?)")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        detector = BUILDERS[spec.backend](run, spec, labels, device, runtime, threads, size, proposals)
    # what its answers depend on, for the keys of the cache of its garments (fashion2stage.cache.model_identity)
    detector.run_files = (run / spec.weights, run / "config.json", run / "labels.json")
    return detector


def trained_proposals(run_dir: str | Path) -> int | None:
    """The RPN proposals per photo a Faster R-CNN run trained with at inference; None for a backend without."""
    spec, _ = load_run(Path(run_dir), "detector")
    return spec.model.rpn_post_nms_top_n_test if spec.backend == "faster-rcnn" else None
