"""DeepFashion2: one JSON per image (``annos/000001.json`` for ``image/000001.jpg``) with ``item1``, ``item2``, ...

Each item has ``category_id`` / ``category_name`` (13 types), ``bounding_box`` ``[x1, y1, x2, y2]`` and
``landmarks`` ``[x, y, v, ...]`` over that category's own landmark list (v: 0 not labelled, 1 occluded,
2 visible — already the COCO convention). The label set's keypoints are the union of all 13 lists (294 points,
named ``<category>_<i>``, i from 1 as in the DeepFashion2 paper); each garment's array has one row per union point.
Image sizes are not in the annotations: records leave width and height unknown.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord, validate_box

# category_id 1..13 in order, with the number of landmarks of each.
DF2_CATEGORIES: tuple[tuple[str, int], ...] = (
    ("short_sleeve_top", 25), ("long_sleeve_top", 33), ("short_sleeve_outwear", 31), ("long_sleeve_outwear", 39),
    ("vest", 15), ("sling", 15), ("shorts", 10), ("trousers", 14), ("skirt", 8), ("short_sleeve_dress", 29),
    ("long_sleeve_dress", 37), ("vest_dress", 19), ("sling_dress", 19),
)
_ITEM = re.compile(r"item(\d+)")


def deepfashion2_labels() -> LabelSet:
    """13 garment types; 294 keypoints ``<category>_<i>``, each type owning its own block."""
    per_type = {name: [f"{name}_{i}" for i in range(1, n + 1)] for name, n in DF2_CATEGORIES}
    return LabelSet(garment_types=[name for name, _ in DF2_CATEGORIES],
                    keypoints=[k for names in per_type.values() for k in names], keypoints_per_type=per_type)


def _garment(item: dict, labels: LabelSet, offsets: dict[str, int], source: Path, what: str) -> Garment:
    for key in ("category_id", "bounding_box", "landmarks"):
        if key not in item:
            raise DataError(source, f"{what} lacks {key!r}")
    cid = item["category_id"]
    if not isinstance(cid, int) or not 1 <= cid <= len(DF2_CATEGORIES):
        raise DataError(source, f"{what}: category_id {cid!r} is not 1..{len(DF2_CATEGORIES)}")
    name, n = DF2_CATEGORIES[cid - 1]
    if "category_name" in item and item["category_name"] != name:
        raise DataError(source, f"{what}: category_name {item['category_name']!r} but category_id {cid} is {name!r}")
    try:
        box = validate_box(item["bounding_box"], None, None, source)
    except DataError as e:
        raise DataError(source, f"{what}: {e.problem}") from None
    except (TypeError, ValueError):
        raise DataError(source, f"{what}: bounding_box {item['bounding_box']!r} is not 4 numbers") from None
    try:
        marks = np.asarray(item["landmarks"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(source, f"{what}: landmarks are not numbers") from None
    if marks.shape != (3 * n,):
        raise DataError(source, f"{what}: {marks.size} landmark numbers; {name} has {n} landmarks ({3 * n} numbers)")
    marks = marks.reshape(n, 3)
    if not np.all(np.isfinite(marks)) or not np.all(np.isin(marks[:, 2], (0, 1, 2))):
        raise DataError(source, f"{what}: landmarks must be finite with visibility 0, 1 or 2")
    marks[marks[:, 2] == 0, :2] = 0.0
    kpts = np.zeros((len(labels.keypoints), 3))
    kpts[offsets[name]:offsets[name] + n] = marks
    return Garment(type=name, box_xyxy=box, keypoints=kpts)


def _read_one(path: Path, labels: LabelSet, offsets: dict[str, int], image_root: Path) -> ImageRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", e.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object")
    items = sorted((int(m.group(1)), k) for k in data if (m := _ITEM.fullmatch(k)))
    garments = []
    for _, key in items:
        if not isinstance(data[key], dict):
            raise DataError(path, f"{key} is not an object")
        garments.append(_garment(data[key], labels, offsets, path, key))
    return ImageRecord(file=f"{path.stem}.jpg", root=image_root, garments=garments, id=path.stem)


def read_deepfashion2(annos_dir: str | Path, image_dir: str | Path | None = None) -> Dataset:
    """Read every ``*.json`` of a DeepFashion2 ``annos/`` folder (sorted by name) into records.

    ``image_dir`` defaults to the ``image/`` folder beside ``annos/``. Boxes are already ``[x1, y1, x2, y2]``.
    """
    annos = Path(annos_dir)
    if not annos.is_dir():
        raise DataError(annos, "annotation folder not found")
    root = Path(image_dir) if image_dir is not None else annos.parent / "image"
    labels = deepfashion2_labels()
    offsets, start = {}, 0
    for name, n in DF2_CATEGORIES:
        offsets[name], start = start, start + n
    files = sorted(annos.glob("*.json"))
    if not files:
        raise DataError(annos, "no .json annotation files")
    records = [_read_one(p, labels, offsets, root) for p in files]
    return Dataset(root=root, records=records, labels=labels, source=str(annos))
