"""Garment detector backends: ultralytics YOLO and torchvision Faster R-CNN, behind one train/predict interface.

``load_detector(run_dir, device="cpu") -> Detector`` (``detectors.load``) gives ``Detector.labels`` and
``Detector.predict(images, conf=0.25, batch_size=8) -> list[list[Garment]]``; training lives in
``detectors.train`` (shared steps), ``detectors.faster_rcnn_train`` and ``detectors.yolo_train``.
"""
from fashion2stage.offline import set_offline_switches

set_offline_switches()  # before ultralytics is imported (fashion2stage/offline.py)


def load_detector(run_dir, device: str = "cpu"):
    """See :func:`detectors.load.load_detector` (imported on use: torch and ultralytics stay unloaded until then)."""
    from detectors.load import load_detector as _load  # noqa: PLC0415
    return _load(run_dir, device)
