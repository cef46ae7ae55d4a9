"""FashionAI CSV files: attribute labels (``path,key,marks``), keypoint labels (``x_y_v`` cells), submissions.

Attribute rows carry no box: they become image-level ``ImageRecord.attributes``. Keypoint rows carry no box either;
the garment box is taken as the extent of its labelled points (see :func:`read_keypoint_csv`).
A bad row raises :class:`DataError` naming the file and its line number.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from fashion2stage import taxonomy
from fashion2stage.errors import DataError
from fashion2stage.io import write_text_atomic
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord, safe_relpath, validate_marks

SCHEMA_FILE = "attributes.json"  # the schema a dataset ships beside its label CSVs (fashion-bench/cad)


def _rows(path: Path):
    """(line number, cells) of every non-blank CSV row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file") from None
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                yield reader.line_num, [c.strip() for c in cells]
    except csv.Error as e:
        raise DataError(path, f"malformed CSV: {e}", reader.line_num) from None


def _load_schema(schema, csv_path: Path) -> dict[str, list[str]]:
    """The attribute schema: a dict, a JSON file, the dataset's own ``attributes.json``, else FashionAI's."""
    source: str | Path = "schema"
    if schema is None and (csv_path.parent / SCHEMA_FILE).is_file():
        schema = csv_path.parent / SCHEMA_FILE
    if schema is None:
        return {k: list(v) for k, v in taxonomy.FASHIONAI_ATTRIBUTES.items()}
    if isinstance(schema, (str, Path)):
        source = Path(schema)
        try:
            schema = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(source, f"cannot read attribute schema: {e}") from None
    if not isinstance(schema, dict) or not schema or not all(
            isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in schema.values()):
        raise DataError(source, "attribute schema must map each key to a non-empty list of value names")
    for k, v in schema.items():
        if len(set(v)) != len(v):
            raise DataError(source, f"attribute {k!r} lists a value twice")
    return {str(k): list(v) for k, v in schema.items()}


def attribute_label_set(schema, csv_path: Path, attribute_types: dict[str, list[str]] | None = None) -> LabelSet:
    """Label set of an attribute CSV: the schema's keys and values; which garment types carry each key from
    ``attribute_types`` where it names the key, else FashionAI's mapping for keys FashionAI knows, else every type.
    (Naming one key, e.g. cad's ``category``, must not send sleeve length to trousers.)"""
    attributes = _load_schema(schema, csv_path)
    attribute_types = {**{k: list(taxonomy.FASHIONAI_ATTRIBUTE_TYPES[k]) for k in attributes
                          if k in taxonomy.FASHIONAI_ATTRIBUTE_TYPES}, **(attribute_types or {})}
    types = list(taxonomy.GARMENT_TYPES)
    for ts in attribute_types.values():
        types += [t for t in ts if t not in types]
    return LabelSet(garment_types=types, attributes=attributes,
                    attribute_types={k: list(v) for k, v in attribute_types.items() if k in attributes})


def read_attribute_csv(csv_path: str | Path, image_root: str | Path | None = None, schema=None,
                       attribute_types: dict[str, list[str]] | None = None) -> Dataset:
    """Read FashionAI-style attribute rows ``path,key,marks`` (no header) into image-level labels.

    ``schema`` is a dict ``{key: [values]}`` or a JSON file of one; by default the ``attributes.json`` beside the
    CSV, else the built-in FashionAI values. Rows of one image merge into one record; ``image_root`` defaults to
    the CSV's folder. Marks are checked: known key, one character per value, only y/n/m, exactly one ``y``.
    """
    source = Path(csv_path)
    root = Path(image_root) if image_root is not None else source.parent
    labels = attribute_label_set(schema, source, attribute_types)
    records: dict[str, ImageRecord] = {}
    seen: dict[tuple[str, str], int] = {}
    for line, cells in _rows(source):
        if len(cells) != 3:
            raise DataError(source, f"expected 3 columns path,key,marks; found {len(cells)}", line)
        name, key, marks = cells
        file = safe_relpath(name, source, line)
        validate_marks(marks, key, labels, source, line)
        if (file, key) in seen:
            raise DataError(source, f"{file}: {key} labelled twice (first on line {seen[file, key]})", line)
        seen[file, key] = line
        records.setdefault(file, ImageRecord(file=file, root=root, id=file)).attributes[key] = marks
    return Dataset(root=root, records=list(records.values()), labels=labels, source=str(source))


def _check_cell(value: str, path: Path) -> str:
    if "," in value or "\n" in value or "\r" in value:
        raise ValueError(f"{path}: {value!r} cannot go in a FashionAI CSV cell (comma or newline)")
    return value


def write_attribute_submission(path: str | Path, rows) -> None:
    """Write a FashionAI attribute submission: one line ``image_path,attr_key,p0;p1;...`` per ``(image_path, key,
    probs)``, probabilities in the label set's value order with 4 decimals; atomic."""
    path = Path(path)
    lines = []
    for image_path, key, probs in rows:
        p = [float(v) for v in probs]
        if not p or not all(math.isfinite(v) for v in p):
            raise ValueError(f"{path}: {image_path} {key}: probabilities must be finite and non-empty, got {probs}")
        lines.append(f"{_check_cell(str(image_path), path)},{_check_cell(str(key), path)},"
                     + ";".join(f"{v:.4f}" for v in p))
    write_text_atomic(path, "".join(line + "\n" for line in lines))


# FashionAI keypoint visibility -> COCO: 1 visible -> 2, 0 occluded -> 1, -1 absent -> 0.
_V_TO_COCO = {1: 2, 0: 1, -1: 0}
_V_FROM_COCO = {2: 1, 1: 0, 0: -1}


def _parse_point(cell: str, name: str, source: Path, line: int) -> tuple[float, float, int]:
    parts = cell.split("_")
    try:
        x, y, v = (int(p) for p in parts) if len(parts) == 3 else (None, None, None)
    except ValueError:
        x = None
    if x is None or v not in _V_TO_COCO:
        raise DataError(source, f"{name}: cell {cell!r} is not x_y_v with v in -1, 0, 1", line)
    v = _V_TO_COCO[v]
    return (float(x), float(y), v) if v else (0.0, 0.0, 0)


def points_box(keypoints: np.ndarray) -> np.ndarray | None:
    """Extent of the labelled points (v > 0) as ``[x1, y1, x2, y2]``; a point at pixel x covers [x, x + 1), so the
    box reaches one past the largest coordinate (and is never empty). None when no point is labelled."""
    pts = keypoints[keypoints[:, 2] > 0, :2]
    if len(pts) == 0:
        return None
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max() + 1, pts[:, 1].max() + 1], dtype=np.float64)


def read_keypoint_csv(csv_path: str | Path, image_root: str | Path | None = None) -> Dataset:
    """Read a FashionAI keypoint CSV (header ``image_id,image_category,<point names>``, cells ``x_y_v``).

    One garment per row, typed by ``image_category``; keypoints (24, 3) in the FashionAI order with COCO
    visibility. FashionAI has no boxes: the garment box is the extent of its labelled points (:func:`points_box`),
    a tight box that detector training should not take as a true garment box. Width/height stay unknown.
    """
    source = Path(csv_path)
    root = Path(image_root) if image_root is not None else source.parent
    labels = LabelSet.fashionai()
    rows = _rows(source)
    first = next(rows, None)
    if first is None:
        raise DataError(source, "empty file")
    line, header = first
    if header[:2] != ["image_id", "image_category"]:
        raise DataError(source, f"header must begin image_id,image_category; found {','.join(header[:2])}", line)
    names = header[2:]
    unknown = [n for n in names if n not in labels.keypoints]
    if unknown or len(set(names)) != len(names):
        raise DataError(source, f"unknown or repeated keypoint columns: {unknown or names}", line)
    columns = [labels.keypoints.index(n) for n in names]
    records: dict[str, ImageRecord] = {}
    for line, cells in rows:
        if len(cells) != len(header):
            raise DataError(source, f"expected {len(header)} columns, found {len(cells)}", line)
        file = safe_relpath(cells[0], source, line)
        if cells[1] not in labels.garment_types:
            raise DataError(source, f"unknown image_category {cells[1]!r} (known: {', '.join(labels.garment_types)})",
                            line)
        kpts = np.zeros((len(labels.keypoints), 3))
        for col, name, cell in zip(columns, names, cells[2:]):
            kpts[col] = _parse_point(cell, name, source, line)
        box = points_box(kpts)
        if box is None:
            raise DataError(source, "no labelled keypoint: the garment has no box", line)
        records.setdefault(file, ImageRecord(file=file, root=root, id=file)).garments.append(
            Garment(type=cells[1], box_xyxy=box, keypoints=kpts))
    return Dataset(root=root, records=list(records.values()), labels=labels, source=str(source))


def _format_point(p) -> str:
    x, y, v = float(p[0]), float(p[1]), int(round(float(p[2])))
    if v <= 0:
        return "-1_-1_-1"
    return f"{int(round(x))}_{int(round(y))}_{_V_FROM_COCO[min(v, 2)]}"


def write_keypoint_csv(path: str | Path, records: list[ImageRecord], labels: LabelSet) -> None:
    """Write garments as a FashionAI keypoint CSV: one row per garment, columns ``labels.keypoints``; the third
    column of each keypoint is taken as COCO visibility (2 -> 1 visible, 1 -> 0 occluded, 0 -> -1_-1_-1);
    coordinates rounded to whole pixels. Garments without keypoints get -1_-1_-1 everywhere. Atomic."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image_id", "image_category", *labels.keypoints])
    absent = ["-1_-1_-1"] * len(labels.keypoints)
    for rec in records:
        for g in rec.garments:
            if g.keypoints is not None and len(g.keypoints) != len(labels.keypoints):
                raise ValueError(f"{rec.file}: {len(g.keypoints)} keypoints for {len(labels.keypoints)} names")
            cells = absent if g.keypoints is None else [_format_point(p) for p in g.keypoints]
            writer.writerow([_check_cell(rec.file, Path(path)), g.type, *cells])
    write_text_atomic(path, out.getvalue())
