"""What keypoint inference and evaluation need from a garment crop, without the training stack: the crop of a
(jittered) box with its keypoints in the crop frame, the model input tensor, the garment type's point mask, and
whether the label set can be mirrored.

Kept apart from :mod:`classifiers.keypoint_data` (training crops and their augmentation) so that ``predict`` never
imports albumentations, which is a training-only dependency.
"""
from __future__ import annotations

import numpy as np
import torch

from fashion2stage.geometry import CropSpec, CropTransform, cover_points, crop
from fashion2stage.jitter import JitterSampler
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment


def type_mask(labels: LabelSet, garment_type: str) -> np.ndarray:
    """(K,) float32: 1 for the points this garment type has, 0 for the rest of the union set."""
    mask = np.zeros(len(labels.keypoints), dtype=np.float32)
    mask[labels.keypoint_indices(garment_type)] = 1.0
    return mask


def garment_crop(image: np.ndarray, garment: Garment, spec: CropSpec, jitter: JitterSampler,
                 rng: np.random.Generator, cover: bool = True) -> tuple[np.ndarray, CropTransform, np.ndarray]:
    """Crop (H, W, 3) of the jittered box, its crop->image transform and the garment's keypoints (K, 3) in the crop.

    ``cover`` grows the jittered box to contain every labelled point (training); evaluation on jittered boxes
    leaves it off, as a detector's box would.
    """
    box = jitter.jitter(garment.box_xyxy, rng)
    kpts = garment.keypoints
    if cover:
        box = cover_points(box, kpts[kpts[:, 2] > 0, :2])
    out, t = crop(image, box, spec)
    kpts_crop = t.to_crop(kpts)
    kpts_crop[kpts[:, 2] <= 0] = 0.0
    return out, t, kpts_crop


def can_flip(labels: LabelSet) -> bool:
    """Whether mirroring is safe: the label set names its left/right pairs. A union set with symmetric points but
    no left/right names (DeepFashion2's numbered points) would learn mirrored points under the wrong names."""
    return any(i != j for i, j in enumerate(labels.flip_permutation()))


def to_tensor(crops: np.ndarray, mean, std) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> float tensor (N, 3, H, W) / (3, H, W), normalised."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).float().div_(255.0)
    x = x.movedim(-1, -3)
    shape = (3, 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
