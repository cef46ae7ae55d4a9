"""What keypoint evaluation needs from a garment crop, without the training stack: the crop of a (jittered) box
with its keypoints in the crop frame, and the model input tensor (the garment type's point mask and whether the label
set can be mirrored are the predictor's, classifiers/keypoints.py).

Kept apart from :mod:`classifiers.keypoint_data` (training crops and their augmentation) so that evaluating never
imports albumentations, which is a training-only dependency.
"""
from __future__ import annotations

import numpy as np
import torch

from fashion2stage.geometry import CropSpec, CropTransform, cover_points, crop
from fashion2stage.jitter import JitterSampler
from fashion2stage.nets import normalised
from fashion2stage.records import Garment


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


def to_tensor(crops: np.ndarray, mean, std) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> float tensor (N, 3, H, W) / (3, H, W), normalised (training's input)."""
    crops = np.asarray(crops)
    x = normalised(crops[None] if crops.ndim == 3 else crops, mean, std)
    return torch.from_numpy(x[0] if crops.ndim == 3 else x)
