"""Garment detector backends: ultralytics YOLO and torchvision Faster R-CNN, behind one train/predict interface.

``load_detector(run_dir, device="cpu") -> Detector`` (``detectors.load``) gives ``Detector.labels`` and
``Detector.predict(images, conf=0.25, batch_size=8) -> list[list[GarmentPrediction]]``
(fashion2stage.results: the garment record the pipeline fills); training lives in
``detectors.train`` (shared steps), ``detectors.faster_rcnn_train`` and ``detectors.yolo_train``.
"""
from fashion2stage.offline import set_offline_switches

set_offline_switches()  # before ultralytics is imported (fashion2stage/offline.py)
