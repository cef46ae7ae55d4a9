"""The two crop models loaded together, and one backbone pass for both where the keypoint model shares the attribute
model's backbone.

A keypoint run trained with ``keypoints-train --trunk ATTRIBUTE_RUN`` keeps that run's backbone frozen and learns
only its heatmap head, on crops cut the attribute model's way. Its weights file still holds the whole network (the
run loads and exports alone, like any keypoint run). When such a keypoint run is loaded beside an attribute run
whose backbone is the same tensor for tensor (and whose crops and input normalisation are the same), the two run
as one network: stem and blocks once per crop, then the attribute heads on the pooled features and the keypoint
head on the blocks' map (:class:`SharedCropModel`; outputs the attribute heads and ``heatmaps``). Each garment then
costs one backbone pass instead of two (BENCHMARKS.md, "One crop backbone"). The weights are compared, not a
name or a hash in config.json: a keypoint head paired with another attribute model simply runs on its own.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from classifiers.attributes import (HEATMAPS, AttributeModel, AttributePredictor, load_attribute_model, predictor_of,
                                    read_attribute_run)
from classifiers.export import export_onnx
from classifiers.keypoints import (HeatmapModel, KeypointPredictor, heatmap_head, load_keypoint_model,
                                   read_keypoint_run)
from fashion2stage.nets import TorchNet, load_net, resolve_runtime

TRUNK_PREFIXES = ("conv_stem.", "bn1.", "blocks.")  # the backbone tensors both networks run (timm's names)


def trunk_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The stem and block tensors of a timm EfficientNet backbone, by name (BatchNorm statistics included)."""
    return {k: v for k, v in backbone.state_dict().items() if k.startswith(TRUNK_PREFIXES)}


def why_not_shared(attr: tuple, kp: tuple) -> str | None:
    """Why the keypoint run ``kp`` cannot read the attribute run's backbone pass, or None when it can; each is
    ``(spec, model)``."""
    (a_spec, a_model), (k_spec, k_model) = attr, kp
    if (a_spec.crop, a_spec.norm) != (k_spec.crop, k_spec.norm):
        return "its crops or input normalisation differ from the attribute model's"
    mine, theirs = trunk_state(k_model.backbone), trunk_state(a_model.backbone)
    if mine.keys() != theirs.keys() or any(not torch.equal(v, theirs[k]) for k, v in mine.items()):
        return "its backbone weights differ from the attribute model's"
    return None


class SharedCropModel(nn.Module):
    """(N, 3, H, W) crops -> {attribute head: logits, ..., "heatmaps": (N, K, H/4, W/4)}: one backbone pass."""

    def __init__(self, attributes: AttributeModel, keypoints: HeatmapModel):
        super().__init__()
        self.attributes = attributes
        # the keypoint model's head alone (its backbone is the attribute model's); the blocks whose outputs it reads
        # besides the last, from its backbone's feature stages ("blocks.2", ...)
        self.deconv, self.lateral, self.final = keypoints.deconv, getattr(keypoints, "lateral", None), keypoints.final
        self.taps = tuple(int(m.split(".")[1]) for m in keypoints.backbone.feature_info.module_name()[:-1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.attributes.trunk(x, self.taps)
        return {**self.attributes.classify(self.attributes.pool(maps[-1])), HEATMAPS: heatmap_head(self.deconv, self.lateral, self.final, maps)}


def load_crop_models(attributes: str | Path | None, keypoints: str | Path | None, device: str = "cpu",
                     runtime: str = "torch", threads: int = 0) -> tuple[AttributePredictor | None,
                                                                        KeypointPredictor | None]:
    """The attribute and keypoint predictors of two run folders (either may be None), as one network where the
    keypoint run shares the attribute run's backbone (module docstring), else each on its own."""
    if attributes is None or keypoints is None:
        return (load_attribute_model(attributes, device, runtime, threads) if attributes else None,
                load_keypoint_model(keypoints, device, runtime, threads) if keypoints else None)
    resolve_runtime(runtime, device)
    a_run, k_run = Path(attributes), Path(keypoints)
    a_spec, labels, a_model = read_attribute_run(a_run, device)
    k_spec, k_labels, k_model = read_keypoint_run(k_run, device)
    if why_not_shared((a_spec, a_model), (k_spec, k_model)) is not None:
        return (load_attribute_model(a_run, device, runtime, threads),
                load_keypoint_model(k_run, device, runtime, threads))
    model = SharedCropModel(a_model, k_model)
    outputs = (*a_model.keys, HEATMAPS)
    size = (a_spec.crop.height, a_spec.crop.width)
    files = [a_run / a_spec.weights, a_run / "config.json", k_run / k_spec.weights, k_run / "config.json"]
    net = load_net("crops", a_run, model, outputs, lambda path: export_onnx(model, size, path, list(outputs)), files,
                   runtime=runtime, device=device, threads=threads, amp="auto")
    # the keypoint predictor decodes the heatmaps of the shared pass; its own network serves direct calls
    return (predictor_of(net, a_model, a_spec, labels, heatmaps=True),
            KeypointPredictor(TorchNet(k_model, device, (HEATMAPS,)), k_labels, k_spec.crop, k_spec.sigma,
                              k_spec.norm.mean, k_spec.norm.std, shared=True))
