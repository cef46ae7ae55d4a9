"""The settings of each train command, as dataclasses: the one source of their defaults.

The command line (fashion2stage/app/train_commands.py) reads its option defaults from these classes, the trainers
take an instance, and each run folder records the instance it was trained with (``config.json`` ``"train"``;
``--resume`` reads it back). The torch trainers' shared optimisation settings are :class:`FitSettings`. This module
imports nothing heavy: the command line imports it to start.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path

from fashion2stage.fit_settings import FitSettings
from fashion2stage.weak_labels import DEFAULT_CONF


def default(cls, name: str):
    """The default of field ``name`` of the dataclass ``cls`` (a fresh one where it is made by a factory)."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is MISSING else f.default


@dataclass
class DetectTrainConfig(FitSettings):
    """``detect-train`` options after parsing; saved (resolved) in the run folder's ``config.json``."""
    data: list[str]  # one or several sources: COCO detection / keypoints json, dataset YAML, class folder
    val: list[str] = field(default_factory=list)  # the first one chooses the best epoch
    images: str | None = None  # image root for COCO json files not in the <x>/annotations + <x>/images layout
    classes: str | None = None  # mapping file for class-folder sources (fashion2stage.formats.folders)
    pseudo_boxes: str = "foreground"  # class-folder photos: "foreground" or "detector:RUN" (detectors.pseudo_boxes)
    teacher: str | None = None  # tag-CSV sources: the detector run whose garments the tags filter (weak_labels)
    teacher_conf: float = DEFAULT_CONF  # ... a teacher garment of a tagged type is kept from this score
    teacher_tta: bool = False  # ... the teacher also sees the mirror image (detections.FlipTTA)
    epoch_size: int | None = None  # samples per epoch over all sources (default: their total)
    balance_types: bool = False  # class folders: every garment type drawn equally often within the garment photos
    detector: str = "faster-rcnn"
    weights: str | None = None  # faster-rcnn: "coco" (torchvision, online) / "none" (random) / a run to fine-tune;
    # yolo: None (YOLO on the pretrained EfficientNet-Lite0), an ultralytics .yaml or a .pt file of the user's
    epochs: int = 12
    batch: int = 4  # images per step and per process (under torchrun the global batch is N times larger)
    image_size: int = 416  # faster-rcnn: shorter side at inference; yolo: imgsz
    lr: float | None = None
    trainable_stages: int = 4  # faster-rcnn: backbone blocks (of 7, from the top) that learn
    device: str = "cpu"  # faster-rcnn: cpu / cuda (cuda:LOCAL_RANK under torchrun); yolo: ultralytics' device ("0,1")
    project: str = "runs/detect"
    name: str | None = None
    resume: bool = False
    threads: int | None = None
    seed: int = 0

    def __post_init__(self):  # one source may be given as a plain path
        super().__post_init__()
        self.data = [str(self.data)] if isinstance(self.data, (str, Path)) else [str(d) for d in self.data]
        self.val = [] if self.val is None else [str(self.val)] if isinstance(self.val, (str, Path)) \
            else [str(v) for v in self.val]


@dataclass
class AttributeTrainConfig(FitSettings):
    data: list[str]
    val: list[str]
    schema: str | None = None
    classes: str | None = None  # mapping file for class-folder sources (fashion2stage.formats.folders)
    detector: str | None = None  # detector run folder: pseudo-boxes for boxless data, detector crops for val
    box_errors: str | None = None  # BoxErrorStats JSON; default: the detector run's box_errors.json
    jitter: str | None = None  # detector | default | none; None: detector when box errors exist, else default
    key_types: dict[str, list[str]] = field(default_factory=dict)  # attribute key -> garment types carrying it
    crop: str = "two-stage"  # or "whole": image-level labels read the whole image (ablation)
    epochs: int = 10
    batch_size: int = 32  # crops per step and per process (under torchrun the global batch is N times larger)
    image_size: int = 224
    padding: float = 1.25
    backbone: str = "efficientnet_lite0"
    weights: str | None = None  # an attributes run folder to start from (fine-tune); None: ImageNet (--pretrained)
    pretrained: bool = True
    lr: float = 1e-3  # heads; the backbone gets lr * backbone_lr_mult once unfrozen
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    dropout: float = 0.2
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    freeze_epochs: int = 1  # backbone frozen (heads only) for the first epochs
    balance: str = "none"  # "weights": per-key inverse-sqrt-frequency class weights in the loss
    select: str = "mAP"  # validation metric for the best checkpoint: mAP or mean_accuracy
    flip_tta: bool = False
    workers: int = 0
    device: str = "cpu"  # under torchrun, "cuda" is cuda:LOCAL_RANK
    threads: int | None = None
    conf: float = 0.25  # detector confidence threshold for pseudo-boxes (as predict)
    teacher_conf: float = DEFAULT_CONF  # tag sources: a teacher box of a tagged type is kept from this score
    seed: int = 0
    project: str = "runs/attributes"
    name: str | None = None
    resume: bool = False  # continue project/name from its last.pt (--epochs may extend it)


@dataclass
class KeypointTrainConfig(FitSettings):
    data: str | list[str]  # COCO keypoints JSON, FashionAI keypoint CSV or DeepFashion2 annos folder; or several
    val: str | None = None
    images: str | list[str] | None = None  # image root of each data (default: the format's usual place)
    val_images: str | None = None
    box_errors: str | None = None  # a detector's box_errors.json: crops jittered the way it errs
    jitter: str = "default"  # without box_errors: "default" (shift 0.1, scale 0.25) or "none"
    # an attributes run folder: its backbone, frozen, under the heatmap head, and its crops (width, height, padding
    # and backbone come from it), so that predict runs one backbone pass for both (classifiers/crop_models.py)
    trunk: str | None = None
    trunk_blocks: int | None = None  # with trunk: its blocks (of 7) that stay frozen and shared; None: all
    width: int = 192
    height: int = 256
    padding: float = 1.25
    epochs: int = 60
    batch_size: int = 16  # crops per step and per process (under torchrun the global batch is N times larger)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    sigma: float = 2.0  # heatmap pixels
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    deconv_channels: list[int] = field(default_factory=lambda: [128, 128, 128])
    lateral: bool = False  # the head also reads the backbone's stride-16 and stride-8 maps
    upsampling: str = "deconv"  # the head's x2 stages: "deconv" (SimpleBaseline) or "separable" (cheaper)
    flip_test: bool = True
    seed: int = 0
    device: str = "cpu"  # under torchrun, "cuda" is cuda:LOCAL_RANK
    threads: int | None = None
    project: str = "runs/keypoints"
    name: str | None = None
    resume: bool = False  # continue project/name from its last.pt (--epochs may extend it)

    def crop_spec(self):
        from fashion2stage.geometry import CropSpec  # noqa: PLC0415  (the command line imports this module: no cv2)
        return CropSpec(self.width, self.height, self.padding)


@dataclass
class TypeHeadConfig:
    classifier: str  # the attribute run folder the head is added to
    data: list[str] = field(default_factory=list)
    out: str = "runs/attributes/type-head"
    classes: str | None = None  # class-folder mapping file
    images: str | None = None  # image root of COCO sources (default: beside the json)
    detector: str | None = None  # detector run whose boxes are added; None: ground-truth / foreground boxes only
    conf: float = 0.1  # detector boxes from this score (the pipeline's operating point is 0.25: lower shows more)
    max_boxes: int = 10  # the best detector boxes per photo (a photo's 100 boxes at 0.05 are mostly repeats)
    cache: str | None = None  # cache folder of the per-photo crop features (default: the per-user cache)
    max_photos: int | None = None  # per source (a class folder's garment and no-garment photos are two): a sample
    c: float | None = None  # regularisation; None: chosen by photo-grouped cross-validation
    item_head: bool = True  # also fit the item-type head on the class-folder garment photos (if any)
    device: str = "cpu"
    seed: int = 0
