"""The keypoint heatmap model (SimpleBaseline: backbone -> deconvolutions -> 1x1 conv) and its predictor.

One model serves a union keypoint set; a garment type reads only its subset (LabelSet.keypoint_indices). Crops are
fixed-size padded garment crops (geometry.crop); the heatmaps are at 1/4 of the crop resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from classifiers.heatmaps import decode
from classifiers.keypoint_inputs import can_flip, to_tensor, type_mask
from fashion2stage.backbones import create_backbone
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.runs import config_errors, load_run, load_weights
from fashion2stage.specs import KeypointSpec

HEATMAP_STRIDE = KeypointSpec.HEATMAP_STRIDE
BACKBONE_STRIDE = KeypointSpec.BACKBONE_STRIDE


class HeatmapModel(nn.Module):
    """(N, 3, H, W) normalised crops -> (N, K, H/4, W/4) heatmaps. H and W must be multiples of 32."""

    def __init__(self, num_keypoints: int, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                 deconv_channels: tuple[int, ...] = (128, 128, 128)):
        super().__init__()
        # the last stage's map (stride 32); features_only drops timm's 1x1 conv_head to 1280 channels, which
        # would only make the first deconvolution expensive
        self.backbone = create_backbone(backbone, pretrained=pretrained, features_only=True, out_indices=(4,))
        in_ch = self.backbone.feature_info.channels()[-1]
        layers: list[nn.Module] = []
        for ch in deconv_channels:
            layers += [nn.ConvTranspose2d(in_ch, ch, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            in_ch = ch
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(in_ch, num_keypoints, kernel_size=1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.deconv(self.backbone(x)[-1]))


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Masked heatmap MSE: the per-map mean squared error, averaged over maps whose weight is non-zero.

    pred, target (N, K, Hh, Wh); weights (N, K) (0 for unlabelled points and points outside the type's subset).
    """
    per_map = ((pred - target) ** 2).mean(dim=(2, 3))
    return (per_map * weights).sum() / weights.sum().clamp(min=1.0)


def heatmap_size(spec: CropSpec) -> tuple[int, int]:
    """(width, height) of the heatmaps for crops of ``spec``; refuses sizes the network cannot tile exactly."""
    if spec.width % BACKBONE_STRIDE or spec.height % BACKBONE_STRIDE:
        raise ValueError(f"crop size {spec.width}x{spec.height} must be a multiple of {BACKBONE_STRIDE} on both sides")
    return spec.width // HEATMAP_STRIDE, spec.height // HEATMAP_STRIDE


@dataclass
class KeypointPredictor:
    """Runs a trained model on crops. Points come back in the crop frame; ``CropTransform.to_image`` maps them."""

    model: HeatmapModel
    labels: LabelSet
    crop_spec: CropSpec
    sigma: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: str = "cpu"
    batch_size: int = 32

    def heatmaps(self, crops: np.ndarray, flip_test: bool = True) -> np.ndarray:
        """(N, H, W, 3) uint8 crops -> (N, K, Hh, Wh) heatmaps; flip test averages in the mirrored crop's maps
        (skipped for label sets without left/right pairs, see ``can_flip``)."""
        flip_test = flip_test and can_flip(self.labels)
        self.model.eval()
        out = []
        perm = self.labels.flip_permutation()
        with torch.no_grad():
            for i in range(0, len(crops), self.batch_size):
                x = to_tensor(crops[i:i + self.batch_size], self.mean, self.std).to(self.device)
                h = self.model(x)
                if flip_test:
                    # mirrored crop's maps, mirrored back, with left/right channels traded back
                    hf = self.model(torch.flip(x, dims=[3])).flip(dims=[3])[:, perm]
                    h = (h + hf) / 2
                out.append(h.float().cpu().numpy())
        k, (wh, hh) = len(self.labels.keypoints), heatmap_size(self.crop_spec)
        return np.concatenate(out) if out else np.zeros((0, k, hh, wh), np.float32)

    def predict(self, crops: np.ndarray, types: list[str], flip_test: bool = True) -> np.ndarray:
        """(N, H, W, 3) uint8 crops of garments of ``types`` -> (N, K_union, 3): x, y (crop frame), score.

        Points outside a type's subset are NaN.
        """
        crops = np.asarray(crops)
        if len(crops) != len(types):
            raise ValueError(f"{len(crops)} crops but {len(types)} garment types")
        if len(crops) and crops.shape[1:3] != (self.crop_spec.height, self.crop_spec.width):
            raise ValueError(f"crops are {crops.shape[2]}x{crops.shape[1]}, the model wants "
                             f"{self.crop_spec.width}x{self.crop_spec.height} (use its crop_spec)")
        xy, scores = decode(self.heatmaps(crops, flip_test), (self.crop_spec.width, self.crop_spec.height), self.sigma)
        out = np.concatenate([xy, scores[..., None]], axis=-1)
        for i, t in enumerate(types):
            out[i, type_mask(self.labels, t) == 0] = np.nan
        return out


def build_model(spec: KeypointSpec, pretrained: bool) -> HeatmapModel:
    """The model a keypoints spec describes (``pretrained`` False when weights are loaded after)."""
    return HeatmapModel(spec.num_keypoints, spec.backbone, pretrained, tuple(spec.deconv_channels))


def load_keypoint_model(run_dir: str | Path, device: str = "cpu") -> KeypointPredictor:
    """A predictor from a keypoints run folder (config.json, labels.json and the weights it names)."""
    run = Path(run_dir)
    spec, labels = load_run(run, "keypoints")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        model = build_model(spec, pretrained=False)
    load_weights(run / spec.weights, model, device)
    model.to(device).eval()
    return KeypointPredictor(model, labels, spec.crop, spec.sigma, spec.norm.mean, spec.norm.std, device)
