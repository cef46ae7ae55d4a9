"""``fashion2stage export RUN`` for a detector run: its network written to ``RUN/model.onnx``, for serving it
elsewhere (``predict`` itself exports into the per-user cache, fashion2stage/nets.py).

- faster-rcnn: torchvision's model exported whole (transform, RPN, RoI heads, NMS) for one image of any size
  (detectors.faster_rcnn.export_onnx), at the input size and proposals it was trained with.
- yolo: the ultralytics network in export form, any batch and input size (detectors.yolo.export_onnx); the letterbox
  and NMS stay outside it.
"""
from __future__ import annotations

from pathlib import Path

from detectors.load import load_detector

ONNX_FILE = "model.onnx"


def export_detector_onnx(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``out`` (default: the run folder's ``model.onnx``) from the run's detector, as trained."""
    run = Path(run_dir)
    return load_detector(run).export_onnx(run / ONNX_FILE if out is None else Path(out))
