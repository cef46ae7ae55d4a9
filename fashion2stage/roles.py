"""The three model roles of the pipeline, as typed interfaces (``typing.Protocol``): what the application layer
calls on a model, whichever backend implements it (Faster R-CNN or YOLO) and whichever runtime runs its network.

Implementations: Detector - detectors.faster_rcnn.FasterRCNNDetector, detectors.yolo.YoloDetector (built by
detectors.load.load_detector); AttributeClassifier - classifiers.attributes.AttributePredictor (load_attribute_model);
KeypointEstimator - classifiers.keypoints.KeypointPredictor (load_keypoint_model). Each holds its network, a torch
module or an ONNX Runtime session (fashion2stage/nets.py), chosen when it is loaded; nothing here depends on which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.results import GarmentPrediction

# The attribute model's optional garment-type check (classifiers/type_head.py): its head's key in the network, and
# its class for "this crop is no garment of the taxonomy"
TYPE_KEY = "garment_type"
NO_GARMENT = "none"
# Its optional item-type head (classifiers/type_head.py): "which garment type is the one item of this product
# photo?", fitted on class-folder photos only; the pipeline's single-item mode decides the item's type with it
ITEM_TYPE_KEY = "item_type"
# Its optional photo-kind head (classifiers/photo_kind.py): "does this photo show one item and no person?", read from
# the crop of the photo's top garment; the pipeline applies its single-item rule to the photos it judges single
PHOTO_KIND_KEY = "photo_kind"
SINGLE_ITEM = "single_item"
MULTI_ITEM = "multi_item"
PHOTO_KINDS = (MULTI_ITEM, SINGLE_ITEM)  # the head's classes, in its output order


@dataclass
class AttributeOutput:
    """What an attribute model reads on N crops, one row per crop. The type heads are outputs of their own, present
    only when the model has the head."""

    attributes: dict[str, np.ndarray]  # key -> (N, V) probabilities in the label set's value order
    type_probs: np.ndarray | None = None  # (N, len(type_classes)): the garment check's type head
    item_type_probs: np.ndarray | None = None  # (N, len(item_type_classes)): the item-type head
    p_single: np.ndarray | None = None  # (N,): the photo-kind head's p(single item)
    # (N, K, Hh, Wh): a keypoint head's heatmaps from the same backbone pass, where the two share it
    # (classifiers/crop_models.py); the second those of each crop's mirror image, as the network returns them
    heatmaps: np.ndarray | None = None
    heatmaps_mirrored: np.ndarray | None = None


@runtime_checkable
class Detector(Protocol):
    labels: LabelSet  # garment_types: the types it can return

    def predict(self, images: list[np.ndarray], conf: float = 0.25,
                batch_size: int = 8) -> list[list[GarmentPrediction]]:
        """images: (H, W, 3) uint8 RGB. Per image, garments scoring >= ``conf`` with ``type``, ``score`` and
        ``box`` in that image's pixels (the records the pipeline then fills)."""
        ...


@runtime_checkable
class AttributeClassifier(Protocol):
    labels: LabelSet  # attributes: key -> value names (the order of the probabilities); attribute_types
    crop_spec: CropSpec  # how its crops must be cut (geometry.crop)
    # with a type head (the garment check): its classes, garment types + NO_GARMENT
    type_classes: list[str] | None
    # with an item-type head: its classes, garment types only
    item_type_classes: list[str] | None
    # with a photo-kind head: the p(single item) from which a photo is judged single-item
    photo_kind_threshold: float | None

    def predict(self, crops: np.ndarray, flip_tta: bool = False) -> AttributeOutput:
        """(N, H, W, 3) uint8 RGB crops cut with ``crop_spec`` -> every attribute key's probabilities, and the type
        heads' outputs the model has (``type_probs`` with ``type_classes``, ``item_type_probs`` with
        ``item_type_classes``, ``p_single`` with ``photo_kind_threshold``)."""
        ...


@runtime_checkable
class KeypointEstimator(Protocol):
    labels: LabelSet  # keypoints: the union set; keypoints_per_type: each type's subset
    crop_spec: CropSpec

    def predict(self, crops: np.ndarray, types: list[str], flip_test: bool = True) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops cut with ``crop_spec`` of garments of ``types`` -> (N, K, 3): x, y in the
        crop frame and a score per keypoint of the union set; NaN for points outside a garment type's subset.
        ``flip_test``: average in the heatmaps of the mirrored crops (twice the work)."""
        ...
