"""Detection data for ``detect-train`` / ``detect-val``: a COCO json, or a dataset YAML naming COCO jsons.

Dataset YAML (paths relative to the YAML file)::

    train: ccp/annotations/instances_train.json
    val: ccp/annotations/instances_val.json
    images: ccp/images        # optional; default: <x>/images beside <x>/annotations, else the json's folder

Checks that make a wrong model impossible to train silently: a training set without any box is an error; images
without boxes are kept (background) and counted in a warning; a validation set with a garment type the model does
not know is an error; missing or unreadable image files fail before training starts.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from fashion2stage.errors import DataError
from fashion2stage.formats.coco import read_coco_detection
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset


def _resolve(path: str | Path, images: str | Path | None, split: str) -> tuple[Path, Path | None]:
    """The COCO json and image root for ``split`` ("train" or "val") of ``path`` (a json or a dataset YAML)."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return path, Path(images) if images else None
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(path, f"cannot read dataset YAML: {e}") from None
    if not isinstance(spec, dict) or split not in spec:
        raise DataError(path, f"dataset YAML has no {split!r} entry (expected keys: train, val, optional images)")
    root = images or spec.get("images")
    return path.parent / spec[split], (path.parent / root) if root else None


def read_detection_data(path: str | Path, images: str | Path | None = None, labels: LabelSet | None = None,
                        split: str = "train") -> Dataset:
    """Read and check one split. With ``labels`` (the model's label set) the dataset is re-labelled to it, so
    category ids in the file may differ from the model's as long as the names are known."""
    json_path, root = _resolve(path, images, split)
    ds = read_coco_detection(json_path, root)
    if not ds.records:
        raise DataError(json_path, "no images")
    n_boxes = sum(len(r.garments) for r in ds.records)
    if split == "train" and n_boxes == 0:
        raise DataError(json_path, "no garment boxes at all: nothing to train a detector on")
    empty = sum(1 for r in ds.records if not r.garments)
    if empty:
        warnings.warn(f"{json_path}: {empty} of {len(ds.records)} images have no garment box "
                      "(kept as background images)", stacklevel=2)
    missing = [r.file for r in ds.records if not r.path.is_file()]
    if missing:
        raise DataError(json_path, f"{len(missing)} image file(s) not found under {ds.root}, e.g. {missing[0]}")
    if labels is not None:
        unknown = sorted({g.type for r in ds.records for g in r.garments} - set(labels.garment_types))
        if unknown:
            raise DataError(json_path, f"garment type(s) {unknown} are not in the model's label set "
                                       f"{labels.garment_types}")
        ds = Dataset(root=ds.root, records=ds.records, labels=labels, source=ds.source)
    return ds
