"""Faster R-CNN on an FPN over the offline ImageNet EfficientNet-Lite0 (default), and its inference class.

Data flow (torchvision's ``GeneralizedRCNN``): RGB [0, 1] image -> resize to ``min_size``/``max_size`` and normalise
with the stored mean and std (0.5 for EfficientNet-Lite0) -> EfficientNet-Lite0 feature stages at strides 8, 16, 32
-> FPN (+ max-pool level) -> RPN -> RoIAlign -> two-layer box head. Boxes go in and come out as ``[x1, y1, x2, y2]`` pixels of the original image
(the transform maps them back). Label 0 is background; label ``i`` is ``labels.garment_types[i - 1]``. The
architecture is a :class:`~fashion2stage.specs.FasterRCNNConfig`, ``config.json``'s ``"model"``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from fashion2stage.labels import LabelSet
from fashion2stage.nets import Net, TorchNet, load_net
from fashion2stage.results import GarmentPrediction
from fashion2stage.specs import DetectorSpec, FasterRCNNConfig  # noqa: F401  (FasterRCNNConfig: re-exported)


class TimmFPN(nn.Module):
    """timm feature stages (strides 8, 16, 32) -> FPN maps '0', '1', '2' and 'pool' (stride 64), ``fpn_channels``
    each."""

    def __init__(self, name: str, pretrained: bool, fpn_channels: int, trainable_stages: int):
        super().__init__()
        from fashion2stage.backbones import create_backbone  # noqa: PLC0415
        from timm.layers import freeze_batch_norm_2d  # noqa: PLC0415

        body = create_backbone(name, pretrained=pretrained, features_only=True, out_indices=(2, 3, 4))
        # batch statistics of 2-4 images per step are noise: keep the ImageNet ones (as torchvision does)
        self.body = freeze_batch_norm_2d(body)
        self._freeze(trainable_stages)
        in_channels = self.body.feature_info.channels()
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def _freeze(self, trainable_stages: int) -> None:
        """Freeze the stem and the lowest blocks; the top ``trainable_stages`` of timm's 7 blocks stay trainable."""
        first_trainable = len(self.body.blocks) - trainable_stages
        for name, p in self.body.named_parameters():
            p.requires_grad_(name.startswith("blocks.") and int(name.split(".")[1]) >= first_trainable)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_faster_rcnn(cfg: FasterRCNNConfig, pretrained_backbone: bool = True) -> FasterRCNN:
    """The detector, ready to train; ``pretrained_backbone=False`` when weights will be loaded from a run folder."""
    common = dict(
        min_size=cfg.min_size, max_size=cfg.max_size,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image, box_batch_size_per_image=cfg.box_batch_size_per_image,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_detections_per_img=cfg.box_detections_per_img, box_score_thresh=0.001,
        image_mean=list(cfg.norm.mean), image_std=list(cfg.norm.std))
    if cfg.backbone == "mobilenet_v3_large":
        return _torchvision_coco(cfg, pretrained_backbone, common)
    backbone = TimmFPN(cfg.backbone, pretrained_backbone, cfg.fpn_channels, cfg.trainable_stages)
    # garments are mostly taller than wide (aspect ratio here is height / width)
    anchors = AnchorGenerator(sizes=((32, 48), (64, 96), (128, 192), (256, 384)),
                              aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=cfg.num_classes, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      **common)


def _torchvision_coco(cfg: FasterRCNNConfig, download: bool, common: dict) -> FasterRCNN:
    """torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``; with ``download`` its COCO weights (needs the internet),
    box predictor replaced for our classes."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn  # noqa: PLC0415
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor  # noqa: PLC0415

    weights = "COCO_V1" if download else None
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=weights, weights_backbone=None,
                                              trainable_backbone_layers=min(cfg.trainable_stages + 1, 6), **common)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, cfg.num_classes)
    return model


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float [0, 1]."""
    # a copy: PIL arrays are read-only, flipped views have negative strides
    return torch.from_numpy(np.array(image, dtype=np.uint8, order="C")).permute(2, 0, 1).float().div_(255.0)


OUTPUTS = ("boxes", "labels", "scores")  # the network's outputs (:class:`OneImage`), on both runtimes


class OneImage(nn.Module):
    """The detector as its ONNX graph is exported (transform, RPN, RoI heads, NMS): one (3, H, W) image in [0, 1]
    -> boxes (M, 4) ``[x1, y1, x2, y2]`` in its pixels, labels (M,) (0 is background), scores (M,)."""

    def __init__(self, model: FasterRCNN):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        det = self.model([image])[0]
        return det["boxes"], det["labels"], det["scores"]


def set_inference(model: FasterRCNN, image_size: int | None = None, proposals: int | None = None) -> dict:
    """Inference-only speed settings of ``model`` (training is untouched): the shorter side photos are resized to
    (the longer side's cap scales with it) and the RPN proposals kept after NMS per photo; ``None`` keeps the
    trained value. Returns the settings in effect, which an ONNX export bakes into its graph."""
    t, rpn = model.transform, model.rpn
    if image_size:
        t.max_size = int(round(t.max_size * image_size / t.min_size[-1]))
        t.min_size = (int(image_size),)
    if proposals:
        rpn._post_nms_top_n["testing"] = int(proposals)
        rpn._pre_nms_top_n["testing"] = max(rpn._pre_nms_top_n["testing"], int(proposals))
    return {"image_size": int(t.min_size[-1]), "max_size": int(t.max_size),
            "proposals": int(rpn._post_nms_top_n["testing"]), "pre_nms": int(rpn._pre_nms_top_n["testing"])}


def export_onnx(model: FasterRCNN, path: Path) -> Path:
    """Write ``model`` whole for one image of any size (its inference settings baked in) to ``path`` atomically,
    with the TorchScript-based exporter (torchvision's detection models are written for it)."""
    import warnings  # noqa: PLC0415

    model = model.cpu().eval()
    side = int(model.transform.min_size[-1])  # the example's size; the graph takes any (dynamic axes)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():  # the tracer warns about every Python-side shape computation
        warnings.simplefilter("ignore")
        torch.onnx.export(model, ([torch.rand(3, side, side)],), str(tmp), opset_version=17, dynamo=False,
                          input_names=["image"], output_names=list(OUTPUTS),
                          dynamic_axes={"image": {1: "height", 2: "width"}})
    tmp.replace(path)
    return path


class FasterRCNNDetector:
    """Inference: ``predict(images) -> list[list[GarmentPrediction]]`` with boxes in original image pixels, one network
    call per image (``net``: :class:`OneImage` on torch, or its ONNX Runtime export)."""

    def __init__(self, net: Net, labels: LabelSet, settings: dict | None = None):
        self.net, self.labels = net, labels
        self.settings = settings or {}  # the inference settings the network runs with (set_inference)

    @classmethod
    def from_model(cls, model: FasterRCNN, labels: LabelSet, device: str = "cpu") -> "FasterRCNNDetector":
        """A torch model as it is (training's validation)."""
        return cls(TorchNet(OneImage(model), device, OUTPUTS), labels, set_inference(model))

    @classmethod
    def from_run(cls, run_dir: str | Path, spec: DetectorSpec, labels: LabelSet, device: str = "cpu",
                 runtime: str = "torch", threads: int = 0, size: int | None = None,
                 proposals: int | None = None) -> "FasterRCNNDetector":
        """The run's detector with ``size`` / ``proposals`` (:func:`set_inference`) on ``runtime``
        (fashion2stage.nets.load_net; the settings are part of the ONNX file's cache key)."""
        from fashion2stage.runs import load_weights  # noqa: PLC0415
        run = Path(run_dir)
        model = build_faster_rcnn(spec.model, pretrained_backbone=False)
        load_weights(run / spec.weights, model)
        settings = set_inference(model, size, proposals)
        net = load_net("detector", run, OneImage(model), OUTPUTS, lambda path: export_onnx(model, path),
                       [run / spec.weights, run / "config.json"], settings, runtime, device, threads, amp="auto")
        return cls(net, labels, settings)

    def export_onnx(self, path: Path) -> Path:
        return export_onnx(self.net.module.model, path)

    def predict(self, images: list[np.ndarray], conf: float = 0.25,
                batch_size: int = 8) -> list[list[GarmentPrediction]]:
        """images: (H, W, 3) uint8 RGB each. Returns per image the garments scoring at least ``conf``
        (``batch_size``: unused, one image per network call)."""
        out: list[list[GarmentPrediction]] = []
        for im in images:
            det = self.net(to_tensor(im).numpy())
            keep = det["scores"] >= conf
            boxes, scores, cls = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
            out.append([GarmentPrediction(type=self.labels.garment_types[int(c) - 1],
                                          box=b.astype(np.float64).tolist(), score=float(s))
                        for b, s, c in zip(boxes, scores, cls)])
        return out
