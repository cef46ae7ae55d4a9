"""Training crops for the keypoint model: padded crops of jittered ground-truth boxes, augmented, as heatmap targets.

One sample is one garment with at least one labelled keypoint. Its box is jittered the way the detector errs
(:class:`~fashion2stage.jitter.JitterSampler`), then grown with ``cover_points`` so every labelled keypoint stays
inside, then cut with :func:`~fashion2stage.geometry.crop` (padded, never clipped: the crop guarantee).
Augmentation acts on the crop: horizontal flip with the label set's left/right permutation, a small rotation and
scale about the crop centre (the same affine on pixels and points), and colour jitter.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch

from classifiers.keypoint_inputs import garment_crop, to_tensor  # noqa: F401  (garment_crop: re-exported)
from classifiers.keypoints import can_flip, encode, type_mask  # noqa: F401  (re-exported)
from fashion2stage.geometry import CropSpec
from fashion2stage.images import load_image
from fashion2stage.jitter import JitterSampler
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord
from fashion2stage.sources import read_source


def read_keypoint_dataset(path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """A keypoint dataset from a COCO keypoints JSON, a FashionAI keypoint CSV or a DeepFashion2 annos folder."""
    return read_source(path, kind="keypoints", images=image_root)


def observed_subsets(dataset: Dataset) -> LabelSet:
    """The dataset's label set with each garment type's points cut to those labelled (v > 0) on at least one of
    its garments. A model cannot learn a point it never saw: a type with no labelled garment gets no points, so
    ``predict`` reports none for it instead of guesses (the landmarks/ set declares all 8 points for skirts and
    dresses but labels none)."""
    labels = LabelSet.from_dict(dataset.labels.to_dict())
    seen: dict[str, set[int]] = {}
    for _, g in keypoint_samples(dataset):
        seen.setdefault(g.type, set()).update(np.flatnonzero(g.keypoints[:, 2] > 0).tolist())
    labels.keypoints_per_type = {
        t: [labels.keypoints[i] for i in labels.keypoint_indices(t) if i in seen.get(t, set())]
        for t in labels.garment_types}
    return labels


def keypoint_samples(dataset: Dataset) -> list[tuple[ImageRecord, Garment]]:
    """Every garment with at least one labelled keypoint, in dataset order."""
    return [(r, g) for r in dataset.records for g in r.garments
            if g.keypoints is not None and np.any(g.keypoints[:, 2] > 0)]


def flip_crop(crop_img: np.ndarray, kpts_crop: np.ndarray, flip_perm: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a crop and its (K, 3) points: x -> W - x, then left/right points trade rows (``flip_perm``)."""
    w = crop_img.shape[1]
    k = kpts_crop[flip_perm].copy()
    k[:, 0] = np.where(k[:, 2] > 0, w - k[:, 0], 0.0)
    return np.ascontiguousarray(crop_img[:, ::-1]), k


def affine_about_centre(width: int, height: int, angle_deg: float, scale: float) -> np.ndarray:
    """2x3 affine in pixel-corner crop coordinates: rotate by ``angle_deg`` and scale about the crop centre."""
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.array([width / 2, height / 2])
    return np.concatenate([r, (c - r @ c)[:, None]], axis=1)


def warp_crop(crop_img: np.ndarray, kpts_crop: np.ndarray, m_corner: np.ndarray, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply a pixel-corner affine to a crop and its points; points pushed outside keep v (encode drops them)."""
    r, b = m_corner[:, :2], m_corner[:, 2]
    m_index = np.concatenate([r, (b + r @ np.array([0.5, 0.5]) - 0.5)[:, None]], axis=1)  # cv2 works on indices
    h, w = crop_img.shape[:2]
    out = cv2.warpAffine(crop_img, m_index, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 3)
    k = kpts_crop.copy()
    k[:, :2] = kpts_crop[:, :2] @ r.T + b
    k[kpts_crop[:, 2] <= 0, :2] = 0.0
    return out, k


@dataclass(frozen=True)
class Augment:
    flip: float = 0.5  # probability of a horizontal flip
    rotate_p: float = 0.5
    rotate_deg: float = 20.0
    scale: tuple[float, float] = (0.8, 1.1)  # > 1 zooms in; the 1.25 padding leaves room for ~1.1
    color_p: float = 0.8


class KeypointCrops(torch.utils.data.Dataset):
    """Training samples: ``image`` (3, H, W) normalised, ``heatmaps`` (K, Hh, Wh), ``weights`` (K,).

    ``weights`` is 0 for points that are unlabelled, outside the crop after augmentation, or not in the garment
    type's subset of the union keypoint set, so one loss serves every type.
    """

    def __init__(self, dataset: Dataset, spec: CropSpec, heatmap_size: tuple[int, int], sigma: float,
                 jitter: JitterSampler, augment: Augment | None, mean, std, seed: int = 0):
        self.samples = keypoint_samples(dataset)
        self.labels = dataset.labels
        self.spec, self.heatmap_size, self.sigma = spec, heatmap_size, sigma
        self.jitter, self.augment = jitter, augment
        self.mean, self.std = mean, std
        self.flip_perm = dataset.labels.flip_permutation()
        if augment is not None and not can_flip(dataset.labels):
            self.augment = replace(augment, flip=0.0)
        self.rng = np.random.default_rng(seed)
        self.color = A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=1.0)

    def __len__(self) -> int:
        return len(self.samples)

    def make_crop(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The augmented crop (H, W, 3) uint8, its points (K, 3) in the crop frame, the garment type."""
        record, garment = self.samples[i]
        img, _, k = garment_crop(load_image(record.path), garment, self.spec, self.jitter, self.rng, cover=True)
        aug, rng = self.augment, self.rng
        if aug is not None:
            if rng.random() < aug.flip:
                img, k = flip_crop(img, k, self.flip_perm)
            angle = rng.uniform(-aug.rotate_deg, aug.rotate_deg) if rng.random() < aug.rotate_p else 0.0
            scale = rng.uniform(*aug.scale)
            img, k = warp_crop(img, k, affine_about_centre(self.spec.width, self.spec.height, angle, scale),
                               self.spec.fill)
            if rng.random() < aug.color_p:
                img = self.color(image=img)["image"]
        return img, k, garment.type

    def __getitem__(self, i: int) -> dict:
        img, k, gtype = self.make_crop(i)
        heatmaps, weights = encode(k, (self.spec.width, self.spec.height), self.heatmap_size, self.sigma)
        return {"image": to_tensor(img, self.mean, self.std),
                "heatmaps": torch.from_numpy(heatmaps),
                "weights": torch.from_numpy(weights * type_mask(self.labels, gtype))}
