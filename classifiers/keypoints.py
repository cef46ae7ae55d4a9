"""The keypoint heatmap model (SimpleBaseline: backbone -> deconvolutions -> 1x1 conv) and its predictor.

One model serves a union keypoint set; a garment type reads only its subset (LabelSet.keypoint_indices). Crops are
fixed-size padded garment crops (geometry.crop); the heatmaps are at 1/4 of the crop resolution.

The heatmap codec (``encode`` / ``decode``): keypoints in the crop frame <-> Gaussian heatmaps (mmpose's
MSRAHeatmap + DARK decoding). Frames: crop points use geometry.py's pixel-corner convention (crop pixel i covers
[i, i+1)). A heatmap pixel j covers crop x in [j * stride, (j + 1) * stride), so its centre is the continuous heatmap
coordinate j + 0.5 and ``x_crop = x_heatmap * stride``. With this convention a horizontal flip of the crop
(x -> W - x) is exactly a reversal of the heatmap columns, so flip test needs no one-pixel shift.

Sub-pixel decoding is DARK's (Zhang et al., CVPR 2020): the heatmap is smoothed with the training Gaussian, its log
is expanded to second order around the argmax and the Taylor step ``-H^-1 g`` refines the peak. A Gaussian target is
an exact quadratic in log space, so encode -> decode returns the point to floating-point accuracy away from borders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from classifiers.export import export_onnx
from fashion2stage.backbones import create_backbone
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.nets import Net, TorchNet, load_net, normalised, resolve_runtime
from fashion2stage.runs import config_errors, load_run, load_weights
from fashion2stage.specs import UPSAMPLING, KeypointSpec

HEATMAP_STRIDE = KeypointSpec.HEATMAP_STRIDE
BACKBONE_STRIDE = KeypointSpec.BACKBONE_STRIDE
OUTPUTS = ("heatmaps",)  # the network's one output


class HeatmapModel(nn.Module):
    """(N, 3, H, W) normalised crops -> (N, K, H/4, W/4) heatmaps. H and W must be multiples of 32.

    SimpleBaseline's head: three stride-2 deconvolutions from the backbone's stride-32 map. ``upsampling``
    "separable" makes each stage a nearest-neighbour x2, a depthwise 3x3 and a pointwise 1x1 convolution instead
    (about 5x cheaper on ONNX Runtime, whose transposed convolutions are slow: BENCHMARKS.md, "One crop backbone").
    With ``lateral`` the stride-16 and stride-8 maps of the backbone are added after the first and second stage (a
    1x1 projection each, as in an FPN): finer positions where the backbone is a frozen classifier's
    (``keypoints-train --trunk``).
    """

    TAPS = (2, 3, 4)  # timm feature stages of the stride-8, -16 and -32 maps (blocks.2, blocks.4, blocks.6)

    def __init__(self, num_keypoints: int, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                 deconv_channels: tuple[int, ...] = (128, 128, 128), lateral: bool = False,
                 upsampling: str = "deconv"):
        super().__init__()
        # the last stage's map (stride 32); features_only drops timm's 1x1 conv_head to 1280 channels, which
        # would only make the first deconvolution expensive
        self.backbone = create_backbone(backbone, pretrained=pretrained, features_only=True,
                                        out_indices=self.TAPS if lateral else self.TAPS[-1:])
        channels = self.backbone.feature_info.channels()
        in_ch = channels[-1]
        layers: list[nn.Module] = []
        for ch in deconv_channels:
            layers += _upsampling_stage(upsampling, in_ch, ch)
            in_ch = ch
        self.deconv = nn.Sequential(*layers)
        if lateral:  # stride 16 into the first deconvolution's output, stride 8 into the second's
            self.lateral = nn.ModuleList([nn.Conv2d(channels[1], deconv_channels[0], kernel_size=1),
                                          nn.Conv2d(channels[0], deconv_channels[1], kernel_size=1)])
        self.final = nn.Conv2d(in_ch, num_keypoints, kernel_size=1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return heatmap_head(self.deconv, getattr(self, "lateral", None), self.final, self.backbone(x))


def _upsampling_stage(kind: str, in_ch: int, ch: int) -> list[nn.Module]:
    """One x2 stage of the head: a 4x4 transposed convolution (SimpleBaseline), or nearest x2 then a depthwise 3x3
    and a pointwise 1x1 convolution; BatchNorm and ReLU after either."""
    if kind == "deconv":
        up = [nn.ConvTranspose2d(in_ch, ch, kernel_size=4, stride=2, padding=1, bias=False)]
    elif kind == "separable":
        up = [nn.Upsample(scale_factor=2, mode="nearest"),
              nn.Conv2d(in_ch, in_ch, kernel_size=3, padding=1, groups=in_ch, bias=False),
              nn.Conv2d(in_ch, ch, kernel_size=1, bias=False)]
    else:
        raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLING)}, got {kind!r}")
    return [*up, nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]


def heatmap_head(deconv: nn.Sequential, lateral: nn.ModuleList | None, final: nn.Conv2d,
                 maps: list[torch.Tensor]) -> torch.Tensor:
    """A HeatmapModel's head on its backbone's maps (stride 8, 16, 32 with ``lateral``, else stride 32 alone):
    ``deconv`` holds its three stages' layers in a row, each stage ending with a ReLU."""
    x = maps[-1]
    ends = [i + 1 for i, m in enumerate(deconv) if isinstance(m, nn.ReLU)]
    for i, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
        x = deconv[start:end](x)
        if lateral is not None and i < len(lateral):
            x = x + lateral[i](maps[-2 - i])
    return final(x)


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


def stride_of(crop_size: tuple[int, int], heatmap_size: tuple[int, int]) -> tuple[float, float]:
    """Crop pixels per heatmap pixel along x and y; sizes are (width, height)."""
    return crop_size[0] / heatmap_size[0], crop_size[1] / heatmap_size[1]


def encode(kpts_crop: np.ndarray, crop_size: tuple[int, int], heatmap_size: tuple[int, int],
           sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian targets for (K, 3) crop-frame points ``x, y, v``.

    ``sigma`` is in heatmap pixels. Returns heatmaps (K, Hh, Wh) float32 with peak 1 and weights (K,) float32:
    1 for a labelled point (v > 0) inside the crop, 0 otherwise (its heatmap is all zero).
    """
    kpts = np.asarray(kpts_crop, dtype=np.float64).reshape(-1, 3)
    wh, hh = heatmap_size
    sx, sy = stride_of(crop_size, heatmap_size)
    xs = np.arange(wh, dtype=np.float64) + 0.5
    ys = np.arange(hh, dtype=np.float64) + 0.5
    heatmaps = np.zeros((len(kpts), hh, wh), dtype=np.float32)
    weights = np.zeros(len(kpts), dtype=np.float32)
    for k, (x, y, v) in enumerate(kpts):
        if v <= 0 or not (0 <= x < crop_size[0] and 0 <= y < crop_size[1]):
            continue
        mx, my = x / sx, y / sy
        gx = np.exp(-((xs - mx) ** 2) / (2 * sigma ** 2))
        gy = np.exp(-((ys - my) ** 2) / (2 * sigma ** 2))
        heatmaps[k] = np.outer(gy, gx).astype(np.float32)
        weights[k] = 1.0
    return heatmaps, weights


def _smooth(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """DARK's modulation: blur each map with the training Gaussian, rescale to its old maximum.

    Outside the map counts as zero (as in mmpose): that biases peaks within ~3 sigma of the border slightly inward
    (at most ~0.3 heatmap px for sigma 2, measured), less than replicating the border would (~0.7 px).
    """
    out = np.empty_like(heatmaps, dtype=np.float64)
    ksize = int(2 * round(3 * sigma) + 1)
    for idx in np.ndindex(heatmaps.shape[:-2]):
        h = heatmaps[idx].astype(np.float64)
        peak = h.max()
        b = cv2.GaussianBlur(h, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
        out[idx] = b * (peak / b.max()) if b.max() > 0 else b
    return out


def decode(heatmaps: np.ndarray, crop_size: tuple[int, int], sigma: float = 2.0,
           refine: bool = True, blur: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of (N, K, Hh, Wh) heatmaps -> crop-frame points (N, K, 2) and scores (N, K) (the heatmap maximum).

    ``refine`` applies the DARK Taylor step (clamped to one heatmap pixel); otherwise the argmax pixel centre.
    ``blur`` smooths first (robust on network outputs); without it an exact Gaussian decodes exactly everywhere.
    """
    hm = np.asarray(heatmaps, dtype=np.float64)
    n, k, hh, wh = hm.shape
    flat = hm.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    scores = flat.max(axis=2)
    py, px = np.divmod(idx, wh)
    fx = px.astype(np.float64) + 0.5
    fy = py.astype(np.float64) + 0.5
    if refine:
        log = np.log(np.maximum(_smooth(hm, sigma) if blur else hm, 1e-10))
        inner = (px > 0) & (px < wh - 1) & (py > 0) & (py < hh - 1)
        ni, ki = np.nonzero(inner)
        x, y = px[ni, ki], py[ni, ki]
        L = log[ni, ki]  # noqa: N806  (the log-heatmap, as in the paper)

        def at(dy: int, dx: int) -> np.ndarray:
            return L[np.arange(len(ni)), y + dy, x + dx]

        c = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 1) - 2 * c + at(0, -1)
        dyy = at(1, 0) - 2 * c + at(-1, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy ** 2
        ok = np.abs(det) > 1e-12
        safe = np.where(ok, det, 1.0)
        ox = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
        oy = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
        fx[ni, ki] += np.clip(ox, -1.0, 1.0)
        fy[ni, ki] += np.clip(oy, -1.0, 1.0)
    sx, sy = stride_of(crop_size, (wh, hh))
    return np.stack([fx * sx, fy * sy], axis=-1), scores


def type_mask(labels: LabelSet, garment_type: str) -> np.ndarray:
    """(K,) float32: 1 for the points this garment type has, 0 for the rest of the union set."""
    mask = np.zeros(len(labels.keypoints), dtype=np.float32)
    mask[labels.keypoint_indices(garment_type)] = 1.0
    return mask


def can_flip(labels: LabelSet) -> bool:
    """Whether mirroring is safe: the label set names its left/right pairs. A union set with symmetric points but
    no left/right names (DeepFashion2's numbered points) would learn mirrored points under the wrong names."""
    return any(i != j for i, j in enumerate(labels.flip_permutation()))


@dataclass
class KeypointPredictor:
    """Runs a trained model on crops. Points come back in the crop frame; ``CropTransform.to_image`` maps them."""

    net: Net  # normalised (N, 3, H, W) crops -> {"heatmaps": (N, K, H/4, W/4)}: the HeatmapModel or its export
    labels: LabelSet
    crop_spec: CropSpec
    sigma: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_size: int = 32
    # the heatmaps come from the attribute model's pass over the same crops (one backbone for both:
    # classifiers/crop_models.py): the pipeline decodes those with ``points`` instead of calling ``predict``
    shared: bool = False
    # the channel order of a mirrored crop's heatmaps, None where mirroring is unsafe (``can_flip``); set once
    flip: list[int] | None = field(init=False, repr=False)

    def __post_init__(self):
        self.flip = self.labels.flip_permutation() if can_flip(self.labels) else None

    def heatmaps(self, crops: np.ndarray, flip_test: bool = True) -> np.ndarray:
        """(N, H, W, 3) uint8 crops -> (N, K, Hh, Wh) heatmaps; flip test averages in the mirrored crop's maps
        (skipped for label sets without left/right pairs, see ``can_flip``)."""
        out = []
        for i in range(0, len(crops), self.batch_size):
            x = normalised(crops[i:i + self.batch_size], self.mean, self.std)
            h = self.net(x)["heatmaps"]
            out.append(self.merged(h, self.net(np.ascontiguousarray(x[..., ::-1]))["heatmaps"]
                                   if flip_test and self.flip is not None else None))
        k, (wh, hh) = len(self.labels.keypoints), heatmap_size(self.crop_spec)
        return np.concatenate(out) if out else np.zeros((0, k, hh, wh), np.float32)

    def merged(self, heatmaps: np.ndarray, mirrored: np.ndarray | None) -> np.ndarray:
        """The crops' heatmaps averaged with their mirror images' (as the network gives them: mirrored back here,
        left/right channels traded back); ``heatmaps`` alone without those or where mirroring is unsafe."""
        if mirrored is None or self.flip is None:
            return heatmaps
        return (heatmaps + mirrored[..., ::-1][:, self.flip]) / 2

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
        return self.points(self.heatmaps(crops, flip_test), types)

    def points(self, heatmaps: np.ndarray, types: list[str]) -> np.ndarray:
        """(N, K, Hh, Wh) heatmaps of crops of garments of ``types`` -> (N, K_union, 3) points as ``predict``."""
        if len(heatmaps) != len(types):
            raise ValueError(f"{len(heatmaps)} heatmaps but {len(types)} garment types")
        xy, scores = decode(heatmaps, (self.crop_spec.width, self.crop_spec.height), self.sigma)
        out = np.concatenate([xy, scores[..., None]], axis=-1)
        for i, t in enumerate(types):
            out[i, type_mask(self.labels, t) == 0] = np.nan
        return out


def build_model(spec: KeypointSpec, pretrained: bool) -> HeatmapModel:
    """The model a keypoints spec describes (``pretrained`` False when weights are loaded after)."""
    return HeatmapModel(spec.num_keypoints, spec.backbone, pretrained, tuple(spec.deconv_channels), spec.lateral,
                        spec.upsampling)


def torch_predictor(model: HeatmapModel, labels: LabelSet, spec: KeypointSpec,
                    device: str | torch.device = "cpu", batch_size: int = 32) -> KeypointPredictor:
    """A predictor of the torch ``model`` as it is (training's validation)."""
    return KeypointPredictor(TorchNet(model, device, OUTPUTS), labels, spec.crop, spec.sigma, spec.norm.mean,
                             spec.norm.std, batch_size)


def read_keypoint_run(run: Path, device: str = "cpu") -> tuple[KeypointSpec, LabelSet, HeatmapModel]:
    """A ``keypoints`` run folder's checked spec, label set and torch network with its weights."""
    spec, labels = load_run(run, "keypoints")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        model = build_model(spec, pretrained=False)
    load_weights(run / spec.weights, model, device)
    return spec, labels, model


def load_keypoint_model(run_dir: str | Path, device: str = "cpu", runtime: str = "torch",
                        threads: int = 0) -> KeypointPredictor:
    """A predictor from a keypoints run folder (config.json, labels.json and the weights it names), its network on
    ``runtime`` (auto / onnx / torch, fashion2stage.nets.load_net; ``threads``: ONNX Runtime's)."""
    resolve_runtime(runtime, device)
    run = Path(run_dir)
    return keypoint_predictor(run, read_keypoint_run(run, device), device, runtime, threads)


def keypoint_predictor(run: Path, parts: tuple, device: str, runtime: str, threads: int) -> KeypointPredictor:
    """The predictor of a read run folder (``parts``: ``read_keypoint_run``'s spec, label set and network)."""
    spec, labels, model = parts
    size = (spec.crop.height, spec.crop.width)
    net = load_net("keypoints", run, model, OUTPUTS, lambda path: export_onnx(model, size, path, list(OUTPUTS)),
                   [run / spec.weights, run / "config.json"], runtime=runtime, device=device, threads=threads,
                   amp="auto")
    return KeypointPredictor(net, labels, spec.crop, spec.sigma, spec.norm.mean, spec.norm.std)
