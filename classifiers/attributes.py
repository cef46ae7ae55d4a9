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

from fashion2stage.backbones import create_backbone
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.roles import ITEM_TYPE_KEY, PHOTO_KIND_KEY, TYPE_KEY
from fashion2stage.runs import config_errors, load_run, load_weights
from fashion2stage.specs import AttributeSpec, Normalisation


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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised crops -> (N, C) pooled features."""
        return self.backbone.forward_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> {key: (N, n_values) logits}."""
        f = self.dropout(self.forward_features(x))
        return {k: self.heads[_module_name(k)](f) for k in self.keys}


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
    """(N, H, W, 3) uint8 RGB crops -> (N, 3, H, W) float tensor, ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(norm.mean).view(1, 3, 1, 1)) / torch.tensor(norm.std).view(1, 3, 1, 1)


@dataclass
class AttributePredictor:
    """A trained attribute model ready for inference; crops must be cut with ``crop_spec``."""

    model: AttributeModel
    labels: LabelSet
    crop_spec: CropSpec
    device: torch.device
    normalisation: Normalisation  # of the network's input, as stored with its weights (AttributeSpec.norm)
    # the garment check (classifiers/type_head.py): the head's classes (garment types + "none"); None without one
    type_classes: list[str] | None = None
    # the item-type head (single-item photos, classifiers/type_head.py): its classes (garment types); None without
    item_type_classes: list[str] | None = None
    # the photo-kind head (classifiers/photo_kind.py): p(single item) from which a photo is judged single; None without
    photo_kind_threshold: float | None = None

    @torch.no_grad()
    def predict(self, crops: np.ndarray, flip_tta: bool = False, batch_size: int = 32) -> dict[str, np.ndarray]:
        """(N, H, W, 3) uint8 RGB crops -> {key: (N, V) probabilities in the label set's value order}.

        With ``flip_tta`` the probabilities are the mean over the crop and its mirror image.
        """
        self.model.eval()
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be (N, H, W, 3) uint8, got shape {crops.shape}")
        out: dict[str, list[np.ndarray]] = {k: [] for k in self.model.keys}
        for i in range(0, len(crops), batch_size):
            x = to_input(crops[i:i + batch_size], self.normalisation).to(self.device)
            probs = _probs(self.model(x))
            if flip_tta:
                flipped = _probs(self.model(torch.flip(x, dims=[3])))
                probs = {k: (probs[k] + flipped[k]) / 2 for k in probs}
            for k, p in probs.items():
                out[k].append(p.cpu().numpy())
        return {k: (np.concatenate(v) if v else np.zeros((0, n))) for (k, v), n in zip(out.items(), self.model.keys.values())}


def _probs(logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.softmax(z.float(), dim=1) for k, z in logits.items()}


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




def load_attribute_model(run_dir: str | Path, device: str = "cpu") -> AttributePredictor:
    """Rebuild the model of an ``attributes`` run folder from config.json + labels.json + weights.safetensors."""
    run = Path(run_dir)
    spec, labels = load_run(run, "attributes")
    with config_errors(run):  # what only building the network can tell: a backbone timm does not know
        model = AttributeModel(spec.backbone, head_sizes(spec, labels), pretrained=False, dropout=spec.dropout)
    dev = torch.device(device)
    load_weights(run / spec.weights, model, dev)
    model.to(dev).eval()
    return AttributePredictor(model=model, labels=labels, crop_spec=spec.crop, device=dev, normalisation=spec.norm,
                              type_classes=list(spec.type_head.classes) if spec.type_head else None,
                              item_type_classes=list(spec.item_type_head.classes) if spec.item_type_head else None,
                              photo_kind_threshold=spec.photo_kind_head.threshold if spec.photo_kind_head else None)
