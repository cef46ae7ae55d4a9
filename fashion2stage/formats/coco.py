"""COCO detection / keypoint JSON in and out.

Reading converts COCO's ``[x, y, w, h]`` boxes to the project's ``[x1, y1, x2, y2]`` once, here; writing converts
back. Fashionpedia-style ``attributes`` (each with a ``supercategory`` naming the attribute key) become FashionAI
mark strings on the garment. A bad file raises :class:`DataError` naming the file and the annotation (its ``id``,
or its index when it has none, is the error's "line").
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.io import write_json_atomic
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord, safe_relpath, validate_box


def default_image_root(json_path: Path) -> Path:
    """``<x>/annotations/file.json`` -> ``<x>/images`` (the fashion-bench and COCO layout); else the json's folder."""
    if json_path.parent.name == "annotations":
        return json_path.parent.parent / "images"
    return json_path.parent


def _load_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise DataError(path, "empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", e.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object at the top level, found {type(data).__name__}")
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _require(obj: dict, keys: tuple[str, ...], what: str, source: Path, line: int | None = None) -> None:
    if not isinstance(obj, dict):
        raise DataError(source, f"{what} is not an object", line)
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(source, f"{what} lacks {', '.join(repr(k) for k in missing)}", line)


def _by_id(items: list, what: str, source: Path) -> list[dict]:
    """The entries of a COCO list sorted by id; ids and names must be unique."""
    if not isinstance(items, list):
        raise DataError(source, f"'{what}' is not a list")
    for i, it in enumerate(items):
        _require(it, ("id", "name"), f"{what}[{i}]", source)
        if not _is_int(it["id"]) or not isinstance(it["name"], str):
            raise DataError(source, f"{what}[{i}]: id {it['id']!r} / name {it['name']!r} are not an integer and a string")
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise DataError(source, f"'{what}' has duplicate ids")
    return sorted(items, key=lambda it: it["id"])


def _label_set(data: dict, source: Path, with_keypoints: bool) -> LabelSet:
    cats = _by_id(data["categories"], "categories", source)
    names = [c["name"] for c in cats]
    if len(set(names)) != len(names):
        raise DataError(source, "'categories' has duplicate names")
    labels = LabelSet(garment_types=names)
    for a in _by_id(data.get("attributes", []), "attributes", source):
        if not isinstance(a.get("supercategory"), str):
            raise DataError(source, f"attribute id {a['id']} lacks a string 'supercategory' (its attribute key)")
        values = labels.attributes.setdefault(str(a["supercategory"]), [])
        if a["name"] in values:
            raise DataError(source, f"attribute {a['name']!r} appears twice under {a['supercategory']!r}")
        values.append(str(a["name"]))
    if with_keypoints:
        for c in cats:
            kps = c.get("keypoints")
            if not isinstance(kps, list) or not all(isinstance(n, str) for n in kps) or len(set(kps)) != len(kps):
                raise DataError(source, f"category {c['name']!r} lacks a 'keypoints' list of distinct names")
            for n in c["keypoints"]:
                if n not in labels.keypoints:
                    labels.keypoints.append(str(n))
            labels.keypoints_per_type[c["name"]] = [str(n) for n in c["keypoints"]]
    return labels


def _attribute_index(data: dict) -> dict[int, tuple[str, int]]:
    """attribute id -> (key, position of the value within the key)."""
    out, seen = {}, {}
    for a in sorted(data.get("attributes", []), key=lambda a: a["id"]):
        key = str(a["supercategory"])
        out[a["id"]] = (key, seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return out


def _marks(attribute_ids, index: dict, labels: LabelSet, source: Path, line) -> dict[str, str]:
    if not isinstance(attribute_ids, list):
        raise DataError(source, f"attribute_ids {attribute_ids!r} is not a list", line)
    out: dict[str, str] = {}
    for aid in attribute_ids:
        if not _is_int(aid) or aid not in index:
            raise DataError(source, f"unknown attribute id {aid!r}", line)
        key, pos = index[aid]
        if key in out:
            raise DataError(source, f"several attribute ids for key {key!r}; one value per key is supported", line)
        out[key] = "".join("y" if i == pos else "n" for i in range(len(labels.attributes[key])))
    return out


def _keypoints(flat, category: str, labels: LabelSet, source: Path, line) -> np.ndarray:
    """A category's flat ``[x, y, v, ...]`` list placed into the union keypoint rows, shape (K_union, 3)."""
    names = labels.keypoints_per_type[category]
    if not isinstance(flat, list) or len(flat) != 3 * len(names):
        n = len(flat) if isinstance(flat, list) else "no list"
        raise DataError(source, f"keypoints has {n} numbers; {category!r} needs {3 * len(names)}", line)
    try:
        arr = np.asarray(flat, dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise DataError(source, "keypoints are not numbers", line) from None
    if not np.all(np.isfinite(arr)) or not np.all(np.isin(arr[:, 2], (0, 1, 2))):
        raise DataError(source, "keypoints must be finite with visibility 0, 1 or 2", line)
    arr[arr[:, 2] == 0, :2] = 0.0
    out = np.zeros((len(labels.keypoints), 3))
    out[[labels.keypoints.index(n) for n in names]] = arr
    return out


def _read_images(data: dict, root: Path, source: Path) -> dict:
    if not isinstance(data["images"], list):
        raise DataError(source, "'images' is not a list")
    records: dict = {}
    files: dict[str, object] = {}
    for i, im in enumerate(data["images"]):
        _require(im, ("id", "file_name"), f"images[{i}]", source)
        w, h = im.get("width"), im.get("height")
        if (w is None) != (h is None) or (w is not None and not (isinstance(w, int) and isinstance(h, int)
                                                                   and w > 0 and h > 0)):
            raise DataError(source, f"images[{i}] (id {im['id']}): width/height {w}/{h} are not positive integers")
        if not isinstance(im["id"], (int, str)) or not isinstance(im["file_name"], str):
            raise DataError(source, f"images[{i}]: id {im['id']!r} / file_name {im['file_name']!r} are not an "
                                    "integer or string and a string")
        if im["id"] in records:
            raise DataError(source, f"images[{i}]: duplicate image id {im['id']!r}")
        file = safe_relpath(im["file_name"], source, im["id"] if isinstance(im["id"], int) else None)
        if file in files:
            raise DataError(source, f"images[{i}]: {file} is listed twice (ids {files[file]!r} and {im['id']!r})")
        files[file] = im["id"]
        records[im["id"]] = ImageRecord(file=file, root=root, width=w, height=h, id=im["id"])
    return records


def _read(json_path, image_root, with_keypoints: bool) -> Dataset:
    source = Path(json_path)
    data = _load_json(source)
    _require(data, ("images", "annotations", "categories"), "the file", source)
    root = Path(image_root) if image_root is not None else default_image_root(source)
    labels = _label_set(data, source, with_keypoints)
    cat_name = {c["id"]: c["name"] for c in data["categories"]}
    attr_index = _attribute_index(data)
    records = _read_images(data, root, source)
    if not isinstance(data["annotations"], list):
        raise DataError(source, "'annotations' is not a list")
    crowd = 0
    for i, ann in enumerate(data["annotations"]):
        line = ann["id"] if isinstance(ann, dict) and _is_int(ann.get("id")) else i
        required = ("image_id", "category_id", "bbox") + (("keypoints",) if with_keypoints else ())
        _require(ann, required, f"annotation {line}", source, line)
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        if not isinstance(ann["image_id"], (int, str)) or ann["image_id"] not in records:
            raise DataError(source, f"unknown image_id {ann['image_id']!r}", line)
        if not _is_int(ann["category_id"]) or ann["category_id"] not in cat_name:
            raise DataError(source, f"unknown category_id {ann['category_id']!r}", line)
        rec = records[ann["image_id"]]
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(source, f"bbox {bbox!r} is not [x, y, w, h]", line)
        x, y, w, h = (float(v) for v in bbox)
        box = validate_box([x, y, x + w, y + h], rec.width, rec.height, source, line)
        garment = Garment(type=cat_name[ann["category_id"]], box_xyxy=box,
                          attributes=_marks(ann.get("attribute_ids", []), attr_index, labels, source, line))
        if with_keypoints:
            garment.keypoints = _keypoints(ann["keypoints"], garment.type, labels, source, line)
        rec.garments.append(garment)
    if crowd:
        warnings.warn(f"{source}: skipped {crowd} iscrowd=1 annotation(s)", stacklevel=3)
    return Dataset(root=root, records=list(records.values()), labels=labels, source=str(source))


def read_coco_detection(json_path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """Read a COCO detection file (with optional Fashionpedia ``attributes``) into records with xyxy boxes.

    ``image_root`` defaults to ``../images`` when the file sits in ``annotations/``, else the file's folder.
    Images without annotations are kept (no garments); ``iscrowd`` annotations are skipped with a warning.
    """
    return _read(json_path, image_root, with_keypoints=False)


def read_coco_keypoints(json_path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """As :func:`read_coco_detection`, plus keypoints: each garment's array is (K_union, 3) x, y, v in image pixels.

    The union keypoint list is every category's ``keypoints`` names in first-seen order (categories by id);
    ``keypoints_per_type`` keeps each category's own list; points a type lacks are rows of zeros.
    """
    return _read(json_path, image_root, with_keypoints=True)


def image_ids(dataset: Dataset) -> dict[str, int]:
    """Record file -> COCO image id: the record's own integer ids when all are unique integers, else 1..N."""
    ids = [r.id for r in dataset.records]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
        return {r.file: r.id for r in dataset.records}
    return {r.file: i + 1 for i, r in enumerate(dataset.records)}


def _xywh(box_xyxy) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]


def _attribute_ids(labels: LabelSet) -> dict[tuple[str, str], int]:
    """(key, value) -> attribute id 1..N, keys and values in label-set order."""
    out = {}
    for key, values in labels.attributes.items():
        for v in values:
            out[(key, v)] = len(out) + 1
    return out


def _category_id(labels: LabelSet, garment_type: str, where: str) -> int:
    try:
        return labels.garment_types.index(garment_type) + 1
    except ValueError:
        raise ValueError(f"{where}: garment type {garment_type!r} is not in the label set "
                         f"{labels.garment_types}") from None


def dataset_to_coco(dataset: Dataset) -> dict:
    """The ground truth as a COCO dict (what pycocotools' ``COCO`` takes): boxes xywh, category ids 1..N in
    label-set order, ``attribute_ids`` from the ``y`` of each mark string, flat keypoints over the union set.

    Width and height come from the record, else from the image header (:func:`fashion2stage.images.image_size`).
    ``area`` is the box area (COCO's small/medium/large ranges then refer to boxes, not masks).
    """
    from fashion2stage.images import image_size  # noqa: PLC0415  (only needed when a record lacks its size)

    labels = dataset.labels
    attr_ids = _attribute_ids(labels)
    ids = image_ids(dataset)
    images, annotations = [], []
    for rec in dataset.records:
        w, h = (rec.width, rec.height) if rec.width and rec.height else image_size(rec.path)
        images.append({"id": ids[rec.file], "file_name": rec.file, "width": int(w), "height": int(h)})
        for g in rec.garments:
            xywh = _xywh(g.box_xyxy)
            ann = {"id": len(annotations) + 1, "image_id": ids[rec.file],
                   "category_id": _category_id(labels, g.type, rec.file),
                   "bbox": xywh, "area": round(xywh[2] * xywh[3], 3), "iscrowd": 0}
            if labels.attributes:
                ann["attribute_ids"] = [attr_ids[(k, labels.attributes[k][m.index("y")])]
                                        for k, m in g.attributes.items() if "y" in m]
            if labels.keypoints and g.keypoints is not None:
                kp = np.asarray(g.keypoints, dtype=np.float64)
                ann["keypoints"] = [round(float(v), 3) for v in kp.reshape(-1)]
                ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
            annotations.append(ann)
    categories = [{"id": i + 1, "name": t, "supercategory": "garment"} for i, t in enumerate(labels.garment_types)]
    if labels.keypoints:
        for c in categories:
            c["keypoints"] = list(labels.keypoints)
    out = {"images": images, "annotations": annotations, "categories": categories}
    if labels.attributes:
        out["attributes"] = [{"id": i, "name": v, "supercategory": k} for (k, v), i in attr_ids.items()]
    return out


def detections_to_coco_results(records: list[ImageRecord], dataset: Dataset) -> list[dict]:
    """Predicted garments as COCO results ``{image_id, category_id, bbox (xywh), score}``, image ids matched to
    :func:`dataset_to_coco` through ``ImageRecord.file``. Keypoints, when a garment has them, go as a flat list."""
    ids = image_ids(dataset)
    results = []
    for rec in records:
        if rec.file not in ids:
            raise ValueError(f"{rec.file}: image is not in the ground-truth dataset {dataset.source or dataset.root}")
        for g in rec.garments:
            r = {"image_id": ids[rec.file], "category_id": _category_id(dataset.labels, g.type, rec.file),
                 "bbox": _xywh(g.box_xyxy), "score": float(g.score)}
            if isinstance(g.keypoints, np.ndarray):  # a records.Garment's (K, 3); a detector's garment has none
                r["keypoints"] = [round(float(v), 3) for v in np.asarray(g.keypoints).reshape(-1)]
            results.append(r)
    return results


def write_coco_results(path: str | Path, results: list[dict]) -> None:
    """Write COCO results JSON atomically (non-finite numbers refused: COCO tools cannot read them)."""
    for r in results:
        if not all(math.isfinite(v) for v in r.get("bbox", [])) or not math.isfinite(r.get("score", 0.0)):
            raise ValueError(f"{path}: non-finite box or score in result for image {r.get('image_id')}")
    write_json_atomic(path, results)
