"""Training samples for the attribute heads: padded garment crops that look like the crops ``predict`` will cut.

Where the labels come from decides the box a sample is cut from:

- garment-level labels with ground-truth boxes (``ccp/``): the ground-truth box, jittered each time the sample is
  drawn by a :class:`~fashion2stage.jitter.JitterSampler` (the detector's measured box error, or the default);
- image-level labels without boxes (``cad/``, FashionAI attribute images): the detector's own box on that image,
  chosen per key with :meth:`~fashion2stage.labels.LabelSet.answering_garment` (the rule ``predict`` uses), not
  jittered since it is a real detector box; the whole image ``[0, 0, W, H]`` when no garment was found or no
  detector is given.

Detections over the training images are computed once and cached as JSON in the run folder
(:func:`fashion2stage.detections.detect_cached`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import albumentations as A
import numpy as np
import torch

from fashion2stage.geometry import CropSpec, crop
from fashion2stage.images import load_image
from fashion2stage.jitter import JitterSampler, match_detections
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.attributes import soft_targets
from fashion2stage.records import Dataset
from fashion2stage.results import GarmentPrediction

CROP_MODES = ("two-stage", "whole")


@dataclass
class Sample:
    """One crop to learn from: the image, the box to cut (None = the whole image), and its labels."""

    path: Path
    marks: dict[str, str]  # attribute key -> FashionAI mark string
    box_xyxy: np.ndarray | None = None  # image pixels; None means [0, 0, W, H]
    jitter: bool = False  # ground-truth box: move it by the detector's error when training
    source: str = field(default="", compare=False)  # "gt", "teacher", "detector", "whole" (for the report)


def garment_samples(dataset: Dataset, labels: LabelSet) -> list[Sample]:
    """One sample per garment labelled for at least one key the model has: a ground-truth box, jittered; on a tag
    source (``dataset.tags``), a teacher's box as it is (it is a real detector box, like those of ``predict``)."""
    out = []
    teacher = bool(dataset.tags)
    for r in dataset.records:
        for g in r.garments:
            marks = {k: v for k, v in g.attributes.items() if k in labels.attributes}
            if marks:
                out.append(Sample(r.path, marks, np.asarray(g.box_xyxy, dtype=np.float64), jitter=not teacher,
                                  source="teacher" if teacher else "gt"))
    return out


def matched_garment_samples(dataset: Dataset, labels: LabelSet, detections: dict[str, list[GarmentPrediction]],
                            iou_threshold: float = 0.5) -> tuple[list[Sample], int]:
    """Evaluation on detector crops: each labelled ground-truth garment is cut from the detection matched to it
    (COCO-style, same type, IoU >= ``iou_threshold``). Returns the samples and the number of garments the detector
    missed (they have no crop at inference either, so they are left out and counted)."""
    out, missed = [], 0
    for r in dataset.records:
        gts = [g for g in r.garments if any(k in labels.attributes for k in g.attributes)]
        if not gts:
            continue
        dets = detections.get(r.file, [])
        pairs = match_detections([d.box_xyxy for d in dets], [d.score for d in dets], [d.type for d in dets],
                                 [g.box_xyxy for g in gts], [g.type for g in gts], iou_threshold)
        matched = {gi: pi for pi, gi in pairs}
        for gi, g in enumerate(gts):
            if gi not in matched:
                missed += 1
                continue
            marks = {k: v for k, v in g.attributes.items() if k in labels.attributes}
            out.append(Sample(r.path, marks, np.asarray(dets[matched[gi]].box_xyxy, dtype=np.float64),
                              jitter=False, source="detector"))
    return out, missed


def image_samples(dataset: Dataset, labels: LabelSet, detections: dict[str, list[GarmentPrediction]] | None,
                  crop_mode: str = "two-stage") -> list[Sample]:
    """Samples for image-level labels: per image, keys answered by the same garment share one crop of it.

    ``crop_mode="whole"`` (the ablation) or no ``detections``: one whole-image sample per image.
    """
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {crop_mode!r}")
    out = []
    for r in dataset.records:
        marks = {k: v for k, v in r.attributes.items() if k in labels.attributes}
        if not marks:
            continue
        if crop_mode == "whole" or detections is None:
            out.append(Sample(r.path, marks, None, source="whole"))
            continue
        garments = detections.get(r.file, [])
        by_choice: dict[int | None, dict[str, str]] = {}
        for k, m in marks.items():
            by_choice.setdefault(labels.answering_garment(garments, k), {})[k] = m
        for idx, ms in by_choice.items():
            box = None if idx is None else np.asarray(garments[idx].box_xyxy, dtype=np.float64)
            out.append(Sample(r.path, ms, box, source="whole" if idx is None else "detector"))
    return out


def build_samples(dataset: Dataset, labels: LabelSet, detections: dict[str, list[GarmentPrediction]] | None = None,
                  crop_mode: str = "two-stage", match_gt_to_detections: bool = False) -> tuple[list[Sample], int]:
    """All samples of a dataset: garment-level ones (ground-truth boxes; or, for evaluation on detector crops with
    ``match_gt_to_detections``, the matched detections) plus image-level ones. Returns samples and missed garments."""
    missed = 0
    if match_gt_to_detections and detections is not None:
        samples, missed = matched_garment_samples(dataset, labels, detections)
    else:
        samples = garment_samples(dataset, labels)
    return samples + image_samples(dataset, labels, detections, crop_mode), missed


def needs_detections(dataset: Dataset, labels: LabelSet) -> bool:
    """True when the dataset has image-level labels (no boxes): those crops must come from a detector."""
    return any(k in labels.attributes for r in dataset.records for k in r.attributes)


# --- the torch dataset -----------------------------------------------------------------------------------------

def train_augmentation(spec: CropSpec) -> A.Compose:
    """Photometric changes, horizontal flip (no key here is left/right specific), small scale/shift, random erasing.
    Outside-image fill is the crop's fill so padding looks the same as in the crop."""
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), border_mode=0, fill=spec.fill, p=0.5),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
        A.ToGray(p=0.05),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25),
                        fill=spec.fill, p=0.3),
    ])


class CropDataset(torch.utils.data.Dataset):
    """Padded crops (3, H, W) normalised for the backbone, with a target row and a mask entry for every key.

    Item: ``(image, targets, mask)``: ``targets[k]`` (V_k,) soft targets (zeros where unlabelled), ``mask[k]``
    a 0/1 scalar. Jitter and augmentation only when ``train``; the random draws depend on (seed, epoch, index),
    so they are reproducible and differ across DataLoader workers.
    """

    def __init__(self, samples: list[Sample], labels: LabelSet, keys: list[str], spec: CropSpec, normalise,
                 jitter: JitterSampler | None = None, train: bool = False, seed: int = 0):
        self.samples, self.labels, self.keys, self.spec = samples, labels, list(keys), spec
        self.normalise = normalise  # (N, H, W, 3) uint8 -> (N, 3, H, W) float tensor
        self.jitter = jitter or JitterSampler.none()
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment = train_augmentation(spec) if train else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def crop(self, i: int) -> np.ndarray:
        """The (H, W, 3) uint8 crop of sample i as the model sees it (before normalisation)."""
        s = self.samples[i]
        image = load_image(s.path)
        h, w = image.shape[:2]
        box = s.box_xyxy if s.box_xyxy is not None else np.array([0.0, 0.0, w, h])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.train and s.jitter:
            box = self.jitter.jitter(box, rng)
        out, _ = crop(image, box, self.spec)
        if self.augment is not None:
            self.augment.set_random_seed(int(rng.integers(2**31)))
            out = self.augment(image=out)["image"]
        return out

    def __getitem__(self, i: int):
        s = self.samples[i]
        x = self.normalise(self.crop(i)[None])[0]
        targets, mask = {}, {}
        for k in self.keys:
            n = len(self.labels.attributes[k])
            m = s.marks.get(k)
            targets[k] = torch.from_numpy(soft_targets(m)).float() if m else torch.zeros(n)
            mask[k] = torch.tensor(1.0 if m else 0.0)
        return x, targets, mask

    def label_counts(self, key: str) -> np.ndarray:
        """(V,) how many samples have each value as their ``y`` for ``key``."""
        c = np.zeros(len(self.labels.attributes[key]), dtype=np.int64)
        for s in self.samples:
            if key in s.marks:
                c[s.marks[key].index("y")] += 1
        return c
