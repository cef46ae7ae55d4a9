"""The metrics of docs/METRICS.md: FashionAI attribute AP, keypoint NE / PCK, COCO detection mAP.

The detection part imports pycocotools and the COCO writers lazily (``fashion2stage.metrics.coco_detection_eval``
is resolved on first use) so the attribute and keypoint metrics stay light for the training loops.
"""
from fashion2stage.metrics.attributes import (attribute_report, basic_precision, fashionai_ap, key_report,
                                              soft_targets)
from fashion2stage.metrics.keypoints import (keypoint_report, ne_normaliser, normalised_error, pck,
                                             relative_errors)


def __getattr__(name: str):
    if name == "coco_detection_eval":  # pycocotools loads only when detection is evaluated
        from fashion2stage.metrics.detection import coco_detection_eval  # noqa: PLC0415
        return coco_detection_eval
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["attribute_report", "basic_precision", "coco_detection_eval", "fashionai_ap", "key_report",
           "keypoint_report", "ne_normaliser", "normalised_error", "pck", "relative_errors", "soft_targets"]
