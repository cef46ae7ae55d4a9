"""The two crop models loaded together, and one backbone pass for both where the keypoint model shares the attribute
model's backbone.

A keypoint run trained with ``keypoints-train --trunk ATTRIBUTE_RUN`` keeps that run's stem and its first
``--trunk-blocks`` blocks (all seven by default) frozen, and learns the rest of its backbone and its heatmap head,
on crops cut the attribute model's way. Its weights file still holds the whole network (the run loads and exports
alone, like any keypoint run). When such a keypoint run is loaded beside an attribute run, the leading blocks whose
tensors are equal in both (crops and input normalisation equal too) run once per crop: the attribute model's
remaining blocks and heads then read their output, and so do the keypoint model's own remaining blocks and head
(:class:`SharedCropModel`; one network, outputs the attribute heads and ``heatmaps``). BENCHMARKS.md, "One crop
backbone", measures what that saves and costs. The weights are compared, not a name or a hash in config.json: a
keypoint model paired with another attribute model simply runs on its own.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from classifiers.attributes import (HEATMAPS, AttributeModel, AttributePredictor, attribute_predictor,
                                    load_attribute_model, predictor_of, read_attribute_run)
from classifiers.export import export_onnx
from classifiers.keypoints import (HeatmapModel, KeypointPredictor, heatmap_head, keypoint_predictor,
                                   load_keypoint_model, read_keypoint_run)
from fashion2stage.nets import load_net, resolve_runtime

STEM = ("conv_stem.", "bn1.")  # timm's names of the layers before the blocks


def trunk_state(backbone: nn.Module, blocks: int | None = None) -> dict[str, torch.Tensor]:
    """The stem and the first ``blocks`` blocks' tensors (all blocks for None) of a timm EfficientNet backbone, by
    name (BatchNorm statistics included)."""
    n = len(backbone.blocks) if blocks is None else blocks
    prefixes = STEM + tuple(f"blocks.{i}." for i in range(n))
    return {k: v for k, v in backbone.state_dict().items() if k.startswith(prefixes)}


def frozen_trunk(backbone: nn.Module, blocks: int) -> nn.ModuleList:
    """The stem and the first ``blocks`` blocks of ``backbone``, as one module (what keypoints-train --trunk
    freezes)."""
    return nn.ModuleList([backbone.conv_stem, backbone.bn1, *backbone.blocks[:blocks]])


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def shared_blocks(attr: tuple, kp: tuple) -> int:
    """How many leading backbone blocks the keypoint run can read from the attribute run's pass: those whose tensors
    (and the stem's) are equal in both; 0 where none are, or where crops or input normalisation differ. Each
    argument is ``(spec, model)``."""
    (a_spec, a_model), (k_spec, k_model) = attr, kp
    if (a_spec.crop, a_spec.norm) != (k_spec.crop, k_spec.norm) or a_spec.backbone != k_spec.backbone:
        return 0
    a, k = a_model.backbone, k_model.backbone
    if not _equal(trunk_state(a, 0), trunk_state(k, 0)):
        return 0
    n = 0
    while n < len(a.blocks) and _equal(a.blocks[n].state_dict(), k.blocks[n].state_dict()):
        n += 1
    return n


class SharedCropModel(nn.Module):
    """(N, 3, H, W) crops -> {attribute head: logits, ..., "heatmaps": (N, K, H/4, W/4)}: the stem and the first
    ``split`` blocks once, then each model's remaining blocks and heads."""

    def __init__(self, attributes: AttributeModel, keypoints: HeatmapModel, split: int):
        super().__init__()
        self.attributes, self.split = attributes, split
        # the keypoint model's own part: its blocks after the split and its head (its shared blocks are the
        # attribute model's); the blocks whose outputs the head reads besides the last ("blocks.2", ...)
        self.branch = nn.ModuleList(keypoints.backbone.blocks[split:])
        self.deconv, self.lateral, self.final = keypoints.deconv, getattr(keypoints, "lateral", None), keypoints.final
        self.taps = tuple(int(m.split(".")[1]) for m in keypoints.backbone.feature_info.module_name()[:-1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.attributes.backbone
        x, maps = b.bn1(b.conv_stem(x)), []
        for i, block in enumerate(b.blocks[:self.split]):
            x = block(x)
            if i in self.taps:
                maps.append(x)
        logits = self.attributes.classify(self.attributes.pool(b.blocks[self.split:](x)))
        for i, block in enumerate(self.branch, start=self.split):
            x = block(x)
            if i in self.taps:
                maps.append(x)
        return {**logits, HEATMAPS: heatmap_head(self.deconv, self.lateral, self.final, [*maps, x])}


def load_crop_models(attributes: str | Path | None, keypoints: str | Path | None, device: str = "cpu",
                     runtime: str = "torch", threads: int = 0) -> tuple[AttributePredictor | None,
                                                                        KeypointPredictor | None]:
    """The attribute and keypoint predictors of two run folders (either may be None), as one network where the
    keypoint run shares backbone blocks with the attribute run (module docstring), else each on its own."""
    if attributes is None or keypoints is None:
        return (load_attribute_model(attributes, device, runtime, threads) if attributes else None,
                load_keypoint_model(keypoints, device, runtime, threads) if keypoints else None)
    resolve_runtime(runtime, device)
    a_run, k_run = Path(attributes), Path(keypoints)
    attr, kp = read_attribute_run(a_run, device), read_keypoint_run(k_run, device)
    (a_spec, labels, a_model), (k_spec, k_labels, k_model) = attr, kp
    split = shared_blocks((a_spec, a_model), (k_spec, k_model))
    if split == 0:  # each on its own network, from the files already read
        return (attribute_predictor(a_run, attr, device, runtime, threads),
                keypoint_predictor(k_run, kp, device, runtime, threads))
    model = SharedCropModel(a_model, k_model, split)
    outputs = (*a_model.keys, HEATMAPS)
    size = (a_spec.crop.height, a_spec.crop.width)
    files = [a_run / a_spec.weights, a_run / "config.json", k_run / k_spec.weights, k_run / "config.json"]
    net = load_net("crops", a_run, model, outputs, lambda path: export_onnx(model, size, path, list(outputs)), files,
                   runtime=runtime, device=device, threads=threads, amp="auto")
    # the pipeline hands the keypoint predictor the heatmaps of the shared pass; called on crops directly
    # (``predict``), it runs the same network, which returns heatmaps beside the attribute logits
    return (predictor_of(net, a_model, a_spec, labels, heatmaps=True),
            KeypointPredictor(net, k_labels, k_spec.crop, k_spec.sigma, k_spec.norm.mean, k_spec.norm.std,
                              shared=True))
