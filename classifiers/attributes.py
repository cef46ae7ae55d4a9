"""Attribute heads: one shared backbone, one linear head per attribute key, and the loss masked to labelled keys.

A sample is a padded garment crop (CropSpec) normalised for the backbone. Each attribute key has its own head of
``n_values`` logits in the label set's value order. A sample carries a target row for every key and a mask saying
which keys it is labelled for (a FashionAI image is labelled for one key, a ccp garment for its fine category), so
several datasets with different keys train one model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classifiers.export import export_onnx
from fashion2stage.backbones import create_backbone
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.nets import Net, load_net, normalised, resolve_runtime
from fashion2stage.roles import ITEM_TYPE_KEY, PHOTO_KIND_KEY, PHOTO_KINDS, SINGLE_ITEM, TYPE_KEY, AttributeOutput
from fashion2stage.runs import config_errors, load_run, load_weights
from fashion2stage.specs import AttributeSpec, Normalisation

HEATMAPS = "heatmaps"  # the output of a keypoint head that shares the backbone (classifiers/crop_models.py)
MIRRORED = "heatmaps_mirrored"


class AttributeModel(nn.Module):
    """backbone.forward_features -> global average pooling -> dropout -> one Linear head per key."""

    def __init__(self, backbone_name: str, keys: dict[str, int], pretrained: bool = True, dropout: float = 0.2):
        super().__init__()
        self.backbone_name = backbone_name
        self.keys = dict(keys)
        self.backbone = create_backbone(backbone_name, pretrained=pretrained)
        self.dropout = nn.Dropout(dropout)
        # ModuleDict keys cannot contain dots; attribute keys are used as given elsewhere
        self.heads = nn.ModuleDict({_module_name(k): nn.Linear(self.backbone.num_features, n)
                                    for k, n in self.keys.items()})

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised crops -> the last block's map (N, C_blocks, H/32, W/32)."""
        b = self.backbone
        return b.blocks(b.bn1(b.conv_stem(x)))

    def pool(self, trunk: torch.Tensor) -> torch.Tensor:
        """The trunk's map -> (N, C) pooled features (timm's conv_head and bn2, then the spatial mean)."""
        b = self.backbone
        return b.bn2(b.conv_head(trunk)).mean(dim=(2, 3))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised crops -> (N, C) pooled features."""
        return self.pool(self.trunk(x))

    def classify(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C) pooled features -> {key: (N, n_values) logits}."""
        f = self.dropout(pooled)
        return {k: self.heads[_module_name(k)](f) for k in self.keys}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> {key: (N, n_values) logits}."""
        return self.classify(self.forward_features(x))


def _module_name(key: str) -> str:
    return key.replace(".", "_")


def masked_soft_cross_entropy(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                              mask: dict[str, torch.Tensor],
                              class_weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Soft-target cross-entropy over the labelled (sample, key) pairs only, averaged over those pairs.

    ``logits[k]`` and ``targets[k]`` are (N, V_k) (targets rows sum to 1 where labelled), ``mask[k]`` (N,) is 1 for
    samples labelled for key k. ``class_weights[k]`` (V_k,) optionally reweights each pair by the weight of its
    target distribution (sum_v t_v w_v); the mean is then weighted the same way. Zero when nothing is labelled.
    """
    total = None
    count = None
    for k, z in logits.items():
        m = mask[k].to(z.dtype)
        t = targets[k].to(z.dtype)
        per_sample = -(t * F.log_softmax(z, dim=1)).sum(dim=1)  # (N,)
        w = m if class_weights is None or k not in class_weights else m * (t @ class_weights[k].to(z.dtype))
        total = (per_sample * w).sum() if total is None else total + (per_sample * w).sum()
        count = w.sum() if count is None else count + w.sum()
    if total is None:
        raise ValueError("no attribute heads")
    return total / count.clamp_min(1e-12) if count > 0 else total * 0.0


def inverse_frequency_weights(counts: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-value class weights (V,) from label counts: (1 / count) ** power, normalised to mean 1 over the values
    that occur (unseen values get weight 0, they have no samples anyway). power 0.5 softens extreme skews."""
    c = np.asarray(counts, dtype=np.float64)
    w = np.where(c > 0, 1.0 / np.maximum(c, 1e-12), 0.0) ** power
    seen = c > 0
    return w / w[seen].mean() if seen.any() else w


def to_input(crops: np.ndarray, norm: Normalisation) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops -> (N, 3, H, W) float tensor, ``(x / 255 - mean) / std`` (training's input)."""
    return torch.from_numpy(normalised(crops, norm.mean, norm.std))


@dataclass
class AttributePredictor:
    """A trained attribute model ready for inference; crops must be cut with ``crop_spec``."""

    net: Net  # normalised (N, 3, H, W) crops -> {head key: (N, V) logits}: the torch AttributeModel or its export
    heads: dict[str, int]  # head key -> its number of values, in output order (head_sizes)
    labels: LabelSet
    crop_spec: CropSpec
    normalisation: Normalisation  # of the network's input, as stored with its weights (AttributeSpec.norm)
    # the garment check (classifiers/type_head.py): the head's classes (garment types + "none"); None without one
    type_classes: list[str] | None = None
    # the item-type head (single-item photos, classifiers/type_head.py): its classes (garment types); None without
    item_type_classes: list[str] | None = None
    # the photo-kind head (classifiers/photo_kind.py): p(single item) from which a photo is judged single; None without
    photo_kind_threshold: float | None = None
    # the network also returns a keypoint head's ``heatmaps`` from the same backbone pass (classifiers/crop_models.py)
    heatmaps: bool = False

    @property
    def model(self) -> AttributeModel:
        """The torch network, for the trainers that fit heads on its features (loaded with runtime "torch")."""
        return self.net.module

    def predict(self, crops: np.ndarray, flip_tta: bool = False, batch_size: int = 32,
                mirror_heatmaps: bool = False) -> AttributeOutput:
        """(N, H, W, 3) uint8 RGB crops -> every attribute key's (N, V) probabilities in the label set's value order,
        and the outputs of the type heads the model has (roles.AttributeOutput).

        With ``flip_tta`` the probabilities are the mean over the crop and its mirror image. A network that carries a
        keypoint head on its backbone (``heatmaps``; classifiers/crop_models.py) also returns the heatmaps of the
        same pass, and with ``mirror_heatmaps`` those of the mirror image, as the network gives them.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be (N, H, W, 3) uint8, got shape {crops.shape}")
        out: dict[str, list[np.ndarray]] = {k: [] for k in self.heads}
        maps: dict[str, list[np.ndarray]] = {HEATMAPS: [], MIRRORED: []}
        mirrored = self.heatmaps and mirror_heatmaps
        for i in range(0, len(crops), batch_size):
            x = normalised(crops[i:i + batch_size], self.normalisation.mean, self.normalisation.std)
            raw = self.net(x)
            probs = _probs(raw)
            if flip_tta or mirrored:
                raw_flipped = self.net(np.ascontiguousarray(x[..., ::-1]))
                if flip_tta:
                    flipped = _probs(raw_flipped)
                    probs = {k: (probs[k] + flipped[k]) / 2 for k in probs}
                if mirrored:
                    maps[MIRRORED].append(raw_flipped[HEATMAPS])
            if self.heatmaps:
                maps[HEATMAPS].append(raw[HEATMAPS])
            for k in out:
                out[k].append(probs[k].numpy())
        probs = {k: (np.concatenate(v) if v else np.zeros((0, self.heads[k]))) for k, v in out.items()}
        # the type heads' keys name their layers in the network; they are outputs of their own, not attributes
        types, items, kind = (probs.pop(k, None) for k in (TYPE_KEY, ITEM_TYPE_KEY, PHOTO_KIND_KEY))
        h, hm = (np.concatenate(maps[k]) if maps[k] else None for k in (HEATMAPS, MIRRORED))
        return AttributeOutput(attributes=probs, type_probs=types, item_type_probs=items,
                               p_single=None if kind is None else kind[:, PHOTO_KINDS.index(SINGLE_ITEM)],
                               heatmaps=h, heatmaps_mirrored=hm)


def _probs(logits: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.softmax(torch.from_numpy(z).float(), dim=1) for k, z in logits.items() if k != HEATMAPS}


def head_sizes(spec: AttributeSpec, labels: LabelSet) -> dict[str, int]:
    """{head key: its number of outputs}: one head per attribute key, then the type heads the run has."""
    sizes = {k: len(labels.attributes[k]) for k in spec.keys}
    if spec.type_head is not None:
        sizes[TYPE_KEY] = len(spec.type_head.classes)
    if spec.item_type_head is not None:
        sizes[ITEM_TYPE_KEY] = len(spec.item_type_head.classes)
    if spec.photo_kind_head is not None:
        sizes[PHOTO_KIND_KEY] = len(spec.photo_kind_head.classes)
    return sizes


def load_attribute_model(run_dir: str | Path, device: str = "cpu", runtime: str = "torch",
                         threads: int = 0) -> AttributePredictor:
    """Rebuild the model of an ``attributes`` run folder from config.json + labels.json + weights.safetensors, its
    network on ``runtime`` (auto / onnx / torch, fashion2stage.nets.load_net; ``threads``: ONNX Runtime's)."""
    resolve_runtime(runtime, device)
    run = Path(run_dir)
    return attribute_predictor(run, read_attribute_run(run, device), device, runtime, threads)


def attribute_predictor(run: Path, parts: tuple, device: str, runtime: str, threads: int) -> AttributePredictor:
    """The predictor of a read run folder (``parts``: ``read_attribute_run``'s spec, label set and network)."""
    spec, labels, model = parts
    size, heads = (spec.crop.height, spec.crop.width), list(model.keys)
    net = load_net("attributes", run, model, tuple(heads), lambda path: export_onnx(model, size, path, heads),
                   [run / spec.weights, run / "config.json"], runtime=runtime, device=device, threads=threads,
                   amp="auto")
    return predictor_of(net, model, spec, labels)


def read_attribute_run(run: Path, device: str = "cpu") -> tuple[AttributeSpec, LabelSet, AttributeModel]:
    """An ``attributes`` run folder's checked spec, label set and torch network with its weights."""
    spec, labels = load_run(run, "attributes")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        model = AttributeModel(spec.backbone, head_sizes(spec, labels), pretrained=False, dropout=spec.dropout)
    load_weights(run / spec.weights, model, torch.device(device))
    return spec, labels, model


def predictor_of(net: Net, model: AttributeModel, spec: AttributeSpec, labels: LabelSet,
                 heatmaps: bool = False) -> AttributePredictor:
    """The predictor of ``net``, which runs ``model`` (or ``model`` with a keypoint head, ``heatmaps``)."""
    return AttributePredictor(net=net, heads=model.keys, labels=labels, crop_spec=spec.crop, normalisation=spec.norm,
                              type_classes=list(spec.type_head.classes) if spec.type_head else None,
                              item_type_classes=list(spec.item_type_head.classes) if spec.item_type_head else None,
                              photo_kind_threshold=spec.photo_kind_head.threshold if spec.photo_kind_head else None,
                              heatmaps=heatmaps)
