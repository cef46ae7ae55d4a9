"""The run spec of each model kind: what a run folder's ``config.json`` holds, typed and checked on load.

``runs.load_spec(run, kind)`` reads ``config.json`` into a :class:`DetectorSpec`, :class:`AttributeSpec` or
:class:`KeypointSpec`; every field is checked (type, range, distinct names; :mod:`fashion2stage.jsonspec`) and an
unknown key is refused, each in one line naming the file and the field. ``spec.check_labels(labels, run)`` then
checks that ``labels.json`` and the model agree (counts, names). The trainers write ``config.json`` through the same
classes, so a file they write is always one that loads.

Each spec holds what rebuilds the network (backbone, head sizes, crop, input normalisation, weights file) and, under
``train`` (and a detector's ``train_*`` / ``source_*`` fields), how it was trained: a record for people and for
``--resume``, which no predictor reads.

Older files still load: the attribute model's crop was ``crop_spec`` (now ``crop``, as the keypoint model's), and
files without ``normalisation`` get the backbone's (:data:`BACKBONE_NORMALISATION`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import ClassVar

from fashion2stage.errors import DataError
from fashion2stage.geometry import CropSpec
from fashion2stage.jsonspec import from_json, rule, to_json
from fashion2stage.labels import LabelSet
from fashion2stage.roles import NO_GARMENT, PHOTO_KINDS

WEIGHTS_FILE = "weights.safetensors"
DETECTOR_BACKENDS = ("faster-rcnn", "yolo")
# mean and std of the input normalisation (RGB, on [0, 1] pixels) each backbone's pretrained weights expect; a
# backbone not listed expects ImageNet's. Read only for files that do not store their own.
BACKBONE_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "efficientnet_lite1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "efficientnet_lite2": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
IMAGENET_NORMALISATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Normalisation:
    """The network's input is ``(x - mean) / std`` per RGB channel, ``x`` the pixels scaled to [0, 1]."""
    mean: tuple[float, ...] = field(metadata=rule(length=3, ge=-1.0, le=2.0))
    std: tuple[float, ...] = field(metadata=rule(length=3, gt=0.0, le=10.0))

    @classmethod
    def of_backbone(cls, backbone: str) -> "Normalisation":
        return cls(*BACKBONE_NORMALISATION.get(backbone, IMAGENET_NORMALISATION))


class _Normalised:
    """A network of ``backbone`` whose input normalisation is stored in ``normalisation`` (None in older files)."""

    @property
    def norm(self) -> Normalisation:
        """The stored normalisation, else the backbone's."""
        return self.normalisation or Normalisation.of_backbone(self.backbone)


def _check_file_name(name: str, file, field_name: str) -> None:
    """The field names a file inside the run folder: a relative path that stays there."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise DataError(file, f"field {field_name!r} is {name!r}; it must be a file name inside the run folder")


# --- detectors -------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class FasterRCNNConfig(_Normalised):
    """Everything needed to rebuild a Faster R-CNN (detectors/faster_rcnn.py); ``config.json`` ``"model"``."""
    num_classes: int = field(metadata=rule(ge=2))  # garment types + background
    backbone: str = field(default="efficientnet_lite0", metadata=rule(min_length=1))  # or "mobilenet_v3_large"
    # training picks one at random per batch; inference the last
    min_size: tuple[int, ...] = field(default=(320, 352, 384, 416), metadata=rule(min_length=1, gt=0, le=4096))
    max_size: int = field(default=640, metadata=rule(gt=0, le=8192))
    fpn_channels: int = field(default=128, metadata=rule(gt=0))
    trainable_stages: int = field(default=4, metadata=rule(ge=0, le=7))  # of timm's 7 EfficientNet blocks
    rpn_batch_size_per_image: int = field(default=128, metadata=rule(gt=0))
    box_batch_size_per_image: int = field(default=128, metadata=rule(gt=0))
    rpn_pre_nms_top_n_train: int = field(default=1000, metadata=rule(gt=0))
    rpn_post_nms_top_n_train: int = field(default=500, metadata=rule(gt=0))
    rpn_pre_nms_top_n_test: int = field(default=500, metadata=rule(gt=0))
    rpn_post_nms_top_n_test: int = field(default=300, metadata=rule(gt=0))
    box_detections_per_img: int = field(default=50, metadata=rule(gt=0))
    normalisation: Normalisation | None = None  # None (older files): the backbone's

    def to_dict(self) -> dict:
        return to_json(self)


@dataclass(frozen=True, kw_only=True)
class DetectorSpec:
    """A ``detect-train`` run. ``model``: a :class:`FasterRCNNConfig` for faster-rcnn; for yolo, the network's
    description as ultralytics reads it (YOLO on EfficientNet-Lite: detectors/yolo_lite.py, which checks it), or
    none for an ultralytics checkpoint, which holds its own (``weights``: a ``.pt`` file)."""
    KIND: ClassVar[str] = "detector"
    kind: str = field(default="detector", metadata=rule(choices=("detector",)))
    backend: str = field(metadata=rule(choices=DETECTOR_BACKENDS))
    weights: str = WEIGHTS_FILE  # inside the run folder
    image_size: int = field(default=416, metadata=rule(gt=0, le=4096))  # faster-rcnn: trained shorter side; yolo: imgsz
    model: FasterRCNNConfig | dict | None = None
    # how it was trained (provenance; --resume reads train and train_wall_seconds)
    train: dict = field(default_factory=dict)
    train_data: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    source_sizes: tuple[int, ...] = field(default=(), metadata=rule(ge=0))
    source_shares: tuple[float, ...] = field(default=(), metadata=rule(gt=0))
    train_seconds: float | None = field(default=None, metadata=rule(ge=0))
    train_cpu_seconds: float | None = field(default=None, metadata=rule(ge=0))
    train_wall_seconds: float | None = field(default=None, metadata=rule(ge=0))

    def validated(self, file, where: str = "") -> "DetectorSpec":
        _check_file_name(self.weights, file, "weights")
        if self.backend == "faster-rcnn":
            if self.model is None:
                raise DataError(file, "lacks the field 'model' (a faster-rcnn detector's architecture)")
            return replace(self, model=from_json(FasterRCNNConfig, self.model, file, "model"))
        return self

    def check_labels(self, labels: LabelSet, run: Path) -> None:
        if isinstance(self.model, FasterRCNNConfig) and self.model.num_classes != len(labels.garment_types) + 1:
            raise DataError(run / "labels.json", f"names {len(labels.garment_types)} garment types; the model in "
                            f"config.json has {self.model.num_classes - 1} (num_classes {self.model.num_classes}, "
                            f"background included)")


# --- crop models -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """A linear head on the attribute model's crop features (classifiers/type_head.py): the garment check
    (``type_head``: garment types and "none") or the item-type head (``item_type_head``: garment types)."""
    classes: tuple[str, ...] = field(metadata=rule(min_length=2, unique=True))
    c: float | None = field(default=None, metadata=rule(gt=0))  # the regularisation it was fitted with
    crops: dict[str, int] = field(default_factory=dict, metadata=rule(ge=0))  # training crops per class
    sources: dict[str, int] = field(default_factory=dict, metadata=rule(ge=0))  # training crops per source
    train: dict = field(default_factory=dict)  # the type-head-train settings (provenance)


@dataclass(frozen=True, kw_only=True)
class PhotoKindHeadSpec:
    """The photo-kind head (classifiers/photo_kind.py): p(single item) of a photo, from its top garment's crop
    features; a photo is judged single from ``threshold`` (chosen on val)."""
    classes: tuple[str, ...] = field(metadata=rule(choices=(PHOTO_KINDS,)))
    threshold: float = field(metadata=rule(ge=0.0, le=1.0))
    c: float | None = field(default=None, metadata=rule(gt=0))  # the regularisation it was fitted with
    conf: float | None = field(default=None, metadata=rule(ge=0.0, le=1.0))  # the detector score of its crops
    photos: dict = field(default_factory=dict)  # training photos per source (provenance)
    val: dict = field(default_factory=dict)  # how the threshold was chosen (provenance)
    train: dict = field(default_factory=dict)  # the photo-kind-train settings (provenance)


@dataclass(frozen=True, kw_only=True)
class AttributeSpec(_Normalised):
    """A ``classify-train`` run: one backbone, one head per attribute key, optionally the two type heads."""
    KIND: ClassVar[str] = "attributes"
    ALIASES: ClassVar[dict] = {"crop_spec": "crop"}  # the name before both crop models used "crop"
    kind: str = field(default="attributes", metadata=rule(choices=("attributes",)))
    backbone: str = field(metadata=rule(min_length=1))
    keys: tuple[str, ...] = field(metadata=rule(min_length=1, unique=True))  # attribute keys of labels.json
    crop: CropSpec
    normalisation: Normalisation | None = None  # None (older files): the backbone's
    weights: str = WEIGHTS_FILE
    dropout: float = field(default=0.2, metadata=rule(ge=0.0, le=0.99))
    type_head: HeadSpec | None = None
    item_type_head: HeadSpec | None = None
    photo_kind_head: PhotoKindHeadSpec | None = None
    jitter: dict | None = None  # how the training boxes were jittered (provenance)
    box_errors: str | None = None  # the detector box errors of that jitter, copied into the run folder
    train: dict = field(default_factory=dict)  # the classify-train settings (provenance; --resume reads them)

    def validated(self, file, where: str = "") -> "AttributeSpec":
        _check_file_name(self.weights, file, "weights")
        return self

    def check_labels(self, labels: LabelSet, run: Path) -> None:
        missing = [k for k in self.keys if k not in labels.attributes]
        if missing:
            raise DataError(run / "labels.json", f"has no attribute {missing[0]!r}; the model in config.json has a "
                                                 f"head for it (field 'keys')")
        heads = (("type_head", self.type_head, (NO_GARMENT,)), ("item_type_head", self.item_type_head, ()))
        for name, head, extra in heads:
            if head is None:
                continue
            unknown = [c for c in head.classes if c not in labels.garment_types and c not in extra]
            if unknown:
                raise DataError(run / "config.json", f"field '{name}.classes' names {unknown[0]!r}, which is not a "
                                                     f"garment type of labels.json")
            if extra and NO_GARMENT not in head.classes:
                raise DataError(run / "config.json", f"field '{name}.classes' lacks {NO_GARMENT!r}")


UPSAMPLING = ("deconv", "separable")  # the keypoint head's x2 stages (classifiers/keypoints.py)


@dataclass(frozen=True, kw_only=True)
class KeypointSpec(_Normalised):
    """A ``keypoints-train`` run: backbone -> 3 deconvolutions -> one heatmap per keypoint at 1/4 of the crop."""
    KIND: ClassVar[str] = "keypoints"
    BACKBONE_STRIDE: ClassVar[int] = 32  # the crop must tile the backbone's last map exactly
    HEATMAP_STRIDE: ClassVar[int] = 4
    kind: str = field(default="keypoints", metadata=rule(choices=("keypoints",)))
    backbone: str = field(metadata=rule(min_length=1))
    num_keypoints: int = field(metadata=rule(gt=0))
    deconv_channels: tuple[int, ...] = field(default=(128, 128, 128), metadata=rule(length=3, gt=0, le=4096))
    lateral: bool = False  # the backbone's stride-16 and stride-8 maps join the head (keypoints.HeatmapModel)
    upsampling: str = field(default="deconv", metadata=rule(choices=UPSAMPLING))  # the head's x2 stages
    crop: CropSpec
    heatmap_size: tuple[int, ...] | None = field(default=None, metadata=rule(length=2))  # (w, h): crop / 4
    sigma: float = field(default=2.0, metadata=rule(gt=0.0, le=64.0))  # of the training heatmaps, heatmap pixels
    normalisation: Normalisation | None = None  # None (older files): the backbone's
    weights: str = WEIGHTS_FILE
    jitter: dict | None = None  # how the training boxes were jittered (--resume reads it)
    data: dict | None = None  # the training and validation data (provenance)
    train: dict = field(default_factory=dict)  # the keypoints-train settings (provenance; --resume reads them)

    def validated(self, file, where: str = "") -> "KeypointSpec":
        _check_file_name(self.weights, file, "weights")
        for side in ("width", "height"):
            v = getattr(self.crop, side)
            if v % self.BACKBONE_STRIDE:
                raise DataError(file, f"field 'crop.{side}' is {v}; it must be a multiple of {self.BACKBONE_STRIDE}")
        expected = (self.crop.width // self.HEATMAP_STRIDE, self.crop.height // self.HEATMAP_STRIDE)
        if self.heatmap_size is not None and tuple(self.heatmap_size) != expected:
            raise DataError(file, f"field 'heatmap_size' is {list(self.heatmap_size)}; the crop "
                                  f"{self.crop.width}x{self.crop.height} gives {list(expected)}")
        return self

    def check_labels(self, labels: LabelSet, run: Path) -> None:
        if self.num_keypoints != len(labels.keypoints):
            raise DataError(run / "labels.json", f"names {len(labels.keypoints)} keypoints; config.json's "
                                                 f"num_keypoints is {self.num_keypoints}")


SPECS = {cls.KIND: cls for cls in (DetectorSpec, AttributeSpec, KeypointSpec)}
RunSpec = DetectorSpec | AttributeSpec | KeypointSpec


def spec_from_json(config: dict, file: str | Path) -> RunSpec:
    """The spec of a parsed ``config.json`` (its ``kind`` chooses the class), every field checked."""
    kind = config.get("kind")
    if kind not in SPECS:
        raise DataError(file, f"field 'kind' is {kind!r}; it must be one of {', '.join(SPECS)}")
    return from_json(SPECS[kind], config, file)
