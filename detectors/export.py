"""ONNX export of a detector run and ONNX Runtime inference with the same ``predict`` interface.

- faster-rcnn: torchvision's model exported whole (transform, RPN, RoI heads, NMS) for one image of any size,
  with the TorchScript-based exporter (torchvision's detection models are written for it); ONNX Runtime runs one
  image per call.
- yolo: the ultralytics network in export form, any batch and input size (YoloDetector.export_onnx); ONNX Runtime
  then runs it inside the same letterbox and NMS code as torch (YoloDetector.with_onnx).
Both write ``model.onnx`` into the run folder.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from detectors.load import load_detector
from fashion2stage.records import Garment
from fashion2stage.runs import load_config

ONNX_FILE = "model.onnx"


def export_detector_onnx(run_dir: str | Path, out: str | Path | None = None, detector=None) -> Path:
    """Write ``out`` (default: the run folder's ``model.onnx``) from ``detector`` (default: the run's, as trained;
    a loaded Faster R-CNN carries its inference settings, FasterRCNNDetector.set_inference, into the graph)."""
    run = Path(run_dir)
    config = load_config(run, kind="detector")
    out = run / ONNX_FILE if out is None else Path(out)
    detector = load_detector(run) if detector is None else detector
    if config["backend"] == "faster-rcnn":
        model = detector.model.cpu().eval()
        side = int(model.transform.min_size[-1])  # the example's size; the graph takes any (dynamic axes)
        tmp = out.with_name(f".{out.name}.tmp")
        with warnings.catch_warnings():  # the tracer warns about every Python-side shape computation
            warnings.simplefilter("ignore")
            torch.onnx.export(model, ([torch.rand(3, side, side)],), str(tmp), opset_version=17, dynamo=False,
                              input_names=["image"], output_names=["boxes", "labels", "scores"],
                              dynamic_axes={"image": {1: "height", 2: "width"}})
        tmp.replace(out)
        return out
    return detector.export_onnx(out)


class OnnxFasterRCNNDetector:
    """The faster-rcnn detector run by ONNX Runtime: same ``labels`` and ``predict`` as FasterRCNNDetector."""

    def __init__(self, path: Path, labels, threads: int = 0):
        from fashion2stage.onnx_session import open_session  # noqa: PLC0415

        self.session = open_session(path, threads, ["boxes", "labels", "scores"])
        self.labels = labels

    def predict(self, images: list[np.ndarray], conf: float = 0.25, batch_size: int = 8) -> list[list[Garment]]:
        from detectors.faster_rcnn import to_tensor  # noqa: PLC0415

        out = []
        for im in images:
            boxes, cls, scores = self.session.run(None, {"image": to_tensor(im).numpy()})
            keep = scores >= conf
            out.append([Garment(type=self.labels.garment_types[int(c) - 1], box_xyxy=b.astype(np.float64),
                                score=float(s)) for b, s, c in zip(boxes[keep], scores[keep], cls[keep])])
        return out


def use_onnx_detector(detector, run_dir: str | Path, threads: int = 0, path: str | Path | None = None):
    """The ONNX Runtime twin of a loaded detector, from ``path`` (default: the run folder's ``model.onnx``;
    ``threads`` intra-op threads, 0: all cores)."""
    run = Path(run_dir)
    path = run / ONNX_FILE if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no {ONNX_FILE} (run: fashion2stage export {run})")
    config = load_config(run, kind="detector")
    if config["backend"] == "faster-rcnn":
        return OnnxFasterRCNNDetector(path, detector.labels, threads)
    return detector.with_onnx(path, threads)
