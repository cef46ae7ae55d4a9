"""The one internal record type every reader produces and every writer, dataset and metric consumes.

Coordinates are float pixels of the original image after EXIF orientation. Boxes are ``[x1, y1, x2, y2]`` with
``0 <= x1 < x2 <= W`` (pixel corners: the whole image is ``[0, 0, W, H]``; pixel i covers ``[i, i+1)``).
Keypoints are an array ``(K, 3)`` of ``x, y, v`` over the label set's keypoint names, with the COCO visibility
convention: ``v = 2`` visible, ``1`` labelled but occluded, ``0`` absent / not labelled (x = y = 0 then).
Attribute labels are FashionAI mark strings, one character per value of the key: ``y`` true, ``n`` not, ``m`` maybe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet


@dataclass
class Garment:
    type: str
    box_xyxy: np.ndarray  # (4,) float64, image pixels
    attributes: dict[str, str] = field(default_factory=dict)  # key -> "nnynm" marks
    keypoints: np.ndarray | None = None  # (K, 3) x, y, v in image pixels over LabelSet.keypoints
    score: float = 1.0  # 1.0 for ground truth, the detector's confidence for predictions


@dataclass
class ImageRecord:
    file: str  # POSIX path relative to the dataset root
    root: Path
    width: int | None = None
    height: int | None = None
    garments: list[Garment] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)  # image-level labels that have no box (cad/, FashionAI)
    id: int | str | None = None
    # class-folder photos of ONE item (formats.folders): the folder's class and the garment type it maps to;
    # ``image_class`` set with ``item_type`` None means "no garment of the taxonomy" (hats, shoes)
    image_class: str | None = None
    item_type: str | None = None
    # tag-CSV photos (formats.tags): the photo's tags that the mapping names, in file order (None: not a tag source)
    tags: list[str] | None = None
    # garment types this photo shows whose garments have no box here (a tagged type the teacher found no kept box
    # for, fashion2stage.weak_labels): a detector must not learn them as background on this photo
    ignore_types: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / self.file


@dataclass
class Dataset:
    root: Path
    records: list[ImageRecord]
    labels: LabelSet
    source: str = ""  # the annotation file it was read from
    # class-folder datasets: class -> {"type": garment type or None, "attributes": {key: value}}
    classes: dict[str, dict] = field(default_factory=dict)
    # tag-CSV datasets: tag -> {"type": garment type or None, "attributes": {key: value}} (the mapping file)
    tags: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


def safe_relpath(name: str, source: str | Path, line: int | None = None) -> str:
    """Normalise an image path from a label file; refuse absolute paths and ones that escape the dataset root."""
    p = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name).strip():
        raise DataError(source, "empty image path", line)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(source, f"image path {name!r} escapes the dataset root", line)
    return str(p)


def validate_marks(marks: str, key: str, labels: LabelSet, source: str | Path, line: int | None = None) -> str:
    """Check a FashionAI mark string against the label set: known key, right length, only y/n/m, exactly one y."""
    if key not in labels.attributes:
        raise DataError(source, f"unknown attribute key {key!r} (known: {', '.join(labels.attributes)})", line)
    n = len(labels.attributes[key])
    if len(marks) != n:
        raise DataError(source, f"{key}: {len(marks)} marks {marks!r} for {n} values", line)
    if set(marks) - set("ynm"):
        raise DataError(source, f"{key}: marks {marks!r} may only contain y, n, m", line)
    if marks.count("y") != 1:
        raise DataError(source, f"{key}: marks {marks!r} must contain exactly one 'y'", line)
    return marks


def validate_box(box_xyxy, width: int | None, height: int | None, source: str | Path, line: int | None = None,
                 tolerance: float = 1.0) -> np.ndarray:
    """Return the box as float64 (4,), clipped to the image; refuse empty boxes and boxes outside the image.

    ``tolerance`` pixels of overshoot (rounding in annotation tools) are clipped silently.
    """
    b = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise DataError(source, f"box {list(box_xyxy)} is not 4 finite numbers", line)
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise DataError(source, f"box {b.round(2).tolist()} has zero or negative size", line)
    if width is not None and height is not None:
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise DataError(source, f"box {b.round(2).tolist()} lies outside the {width}x{height} image", line)
        b = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))])
    return b
