"""One way to read a training or validation source, whatever its format: :func:`read_source`.

The format is told from the path and the file's first line, once, here:

| path | format | reader |
|---|---|---|
| folder, ``kind="keypoints"`` | DeepFashion2 ``annos/`` | :func:`fashion2stage.formats.deepfashion2.read_deepfashion2` |
| folder | class folders ``<dir>/<class>/<image>`` (needs a mapping) | :func:`fashion2stage.formats.folders.read_class_folders` |
| ``.csv`` with header ``image,tags`` | image tags (needs a mapping) | :func:`fashion2stage.formats.tags.read_tags` |
| ``.csv`` with header ``image_id,image_category,...`` | FashionAI keypoints | :func:`fashion2stage.formats.fashionai.read_keypoint_csv` |
| other ``.csv`` | FashionAI attribute ``label.csv`` | :func:`fashion2stage.formats.fashionai.read_attribute_csv` |
| ``.yaml`` / ``.yml`` | dataset YAML naming COCO files per split | :func:`read_detection_data` |
| ``.json``, ``kind="keypoints"`` | COCO keypoints | :func:`fashion2stage.formats.coco.read_coco_keypoints` |
| ``.json`` | COCO detection (a keypoints file gives its boxes) | :func:`read_detection_data` (``kind="boxes"``) |

Dataset YAML (paths relative to the YAML file)::

    train: ccp/annotations/instances_train.json
    val: ccp/annotations/instances_val.json
    images: ccp/images        # optional; default: <x>/images beside <x>/annotations, else the json's folder

Checks that make a wrong detector impossible to train silently: a training set without any box is an error; images
without boxes are kept (background) and counted in a warning; a validation set with a garment type the model does
not know is an error; missing image files fail before training starts (also for tag files).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset

KINDS = ("boxes", "attributes", "keypoints")


def read_source(path: str | Path, mapping: str | Path | None = None, *, kind: str = "boxes",
                images: str | Path | None = None, split: str = "train", labels: LabelSet | None = None,
                schema=None, key_types: dict[str, list[str]] | None = None) -> Dataset:
    """Read one source for a model of ``kind`` (boxes: a detector; attributes; keypoints). ``mapping``: what each
    class folder or tag means (``--classes``); ``images``: the image root where the format's default does not
    fit; ``labels``: the label set attribute values of a mapping are checked against; ``schema`` / ``key_types``:
    for FashionAI attribute CSVs."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = Path(path)
    if p.is_dir() and kind == "keypoints":
        from fashion2stage.formats.deepfashion2 import read_deepfashion2  # noqa: PLC0415
        return read_deepfashion2(p, images)
    if p.is_dir():
        from fashion2stage.formats.folders import read_class_folders  # noqa: PLC0415
        return read_class_folders(p, _needs(mapping, p, "a class-folder source", "class folder"), labels)
    if p.suffix.lower() == ".csv":
        from fashion2stage.formats import fashionai  # noqa: PLC0415
        from fashion2stage.formats.tags import is_tag_csv, read_tags  # noqa: PLC0415
        if is_tag_csv(p):
            ds = read_tags(p, _needs(mapping, p, "a tag CSV", "tag"), labels, images)
            _check_files(ds, p)
            return ds
        if _first_cell(p) == "image_id":
            return fashionai.read_keypoint_csv(p, images)
        return fashionai.read_attribute_csv(p, images, schema=schema, attribute_types=key_types or None)
    if kind == "keypoints":
        from fashion2stage.formats.coco import read_coco_keypoints  # noqa: PLC0415
        return read_coco_keypoints(p, images)
    if kind == "attributes" and p.suffix.lower() == ".json":
        from fashion2stage.formats.coco import read_coco_detection  # noqa: PLC0415
        return read_coco_detection(p, images)
    return read_detection_data(p, images, labels, split)


def _needs(mapping, path: Path, what: str, item: str) -> str | Path:
    if not mapping:
        raise DataError(path, f"{what} needs --classes MAPPING (what each {item} means)")
    return mapping


def _first_cell(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.readline().split(",")[0].strip()
    except (OSError, UnicodeDecodeError):
        return ""  # the reader then says what is wrong with the file


def _check_files(ds: Dataset, source: Path) -> None:
    missing = [r.file for r in ds.records if not r.path.is_file()]
    if missing:
        raise DataError(source, f"{len(missing)} image file(s) not found under {ds.root}, e.g. {missing[0]}")


def _resolve(path: Path, images: str | Path | None, split: str) -> tuple[Path, Path | None]:
    """The COCO json and image root for ``split`` ("train" or "val") of ``path`` (a json or a dataset YAML)."""
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
    """Read and check one split of detection boxes (a COCO json or a dataset YAML). With ``labels`` (the model's
    label set) the dataset is re-labelled to it, so category ids in the file may differ from the model's as long
    as the names are known."""
    from fashion2stage.formats.coco import read_coco_detection  # noqa: PLC0415

    json_path, root = _resolve(Path(path), images, split)
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
    _check_files(ds, json_path)
    if labels is not None:
        unknown = sorted({g.type for r in ds.records for g in r.garments} - set(labels.garment_types))
        if unknown:
            raise DataError(json_path, f"garment type(s) {unknown} are not in the model's label set "
                                       f"{labels.garment_types}")
        ds = Dataset(root=ds.root, records=ds.records, labels=labels, source=ds.source)
    return ds
