"""The Clothing Attribute Dataset (Chen, Gallagher, Girod, ECCV 2012) -> ``cad/``: FashionAI attribute rows and
their ``attributes.json`` schema. docs/DATA.md, "cad/", states the rules.

The source (``ClothingAttributeDataset/``): ``images/NNNNNN.jpg`` (1,856 photos) and ``labels/<name>_GT.mat``, one
file per attribute, each a variable ``GT`` of shape (1856, 1): row i is photo i (``images/%06d.jpg``), the value the
annotators' majority chose, numbered 1..K, or NaN where they disagreed.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from .common import check_files, load_mat, place_image, split_ids
from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.formats.fashionai import SCHEMA_FILE, read_attribute_csv
from fashion2stage.io import write_json_atomic, write_text_atomic

# CAD label file -> (the key in cad/, its values in the order of the file's numbers 1..K). Binary CAD attributes
# number "no" 1 and "yes" 2, so collar's values read collarless, collar.
KEYS: dict[str, tuple[str, list[str]]] = {
    "sleevelength": ("sleeve_length", ["sleeveless", "short_sleeves", "long_sleeves"]),
    "neckline": ("neckline_design", ["v_neckline", "round_neckline", "other"]),
    "collar": ("collar_design", ["collarless", "collar"]),
    "category": ("category", ["shirt", "sweater", "t-shirt", "outerwear", "suit", "tank_top", "dress"]),
}
MAX_SIDE = 640  # photos larger than this are scaled down (their labels hold no coordinates)


def attribute_marks(labels_dir: Path, problems) -> tuple[dict[int, dict[str, str]], int, dict[str, int]]:
    """``({photo number: {key: marks}}, number of photos, {key: rows skipped for NaN})``. A NaN (annotators
    disagreed) gives no mark for that key; a value outside 1..K is reported and skipped the same way."""
    marks: dict[int, dict[str, str]] = {}
    skipped, n_photos = {}, None
    for stem, (key, values) in KEYS.items():
        path = labels_dir / f"{stem}_GT.mat"
        gt = np.asarray(load_mat(path, "GT"), dtype=np.float64)
        if gt.ndim != 2 or 1 not in gt.shape:
            raise DataError(path, f"GT has shape {gt.shape}; expected one column (a value per photo)")
        gt = gt.ravel()
        if n_photos is not None and len(gt) != n_photos:
            raise DataError(path, f"GT has {len(gt)} rows, the other label files {n_photos}")
        n_photos = len(gt)
        skipped[key] = 0
        for row, value in enumerate(gt, start=1):
            if math.isnan(value):
                skipped[key] += 1
                continue
            if value != int(value) or not 1 <= value <= len(values):
                problems.add(DataError(path, f"value {value:g} for photo {row} is not one of 1..{len(values)}", row))
                continue
            marks.setdefault(row, {})[key] = "".join("y" if i == int(value) - 1 else "n" for i in range(len(values)))
    return marks, n_photos or 0, skipped


def build_cad(root: Path, out: Path, fractions, seed: int, problems) -> dict:
    """``out/images/NNNNNN.jpg``, ``out/labels_{train,val,test}.csv`` and ``out/attributes.json``; returns the
    counts (per split, and the rows skipped for NaN per key)."""
    marks, n_photos, skipped = attribute_marks(root / "labels", problems)
    schema = {key: values for key, values in KEYS.values()}
    write_json_atomic(out / SCHEMA_FILE, schema)
    counts: dict = {"skipped_nan": skipped}
    for split, ids in split_ids(range(1, n_photos + 1), fractions, seed, "cad").items():
        text = io.StringIO()
        writer = csv.writer(text)
        n_images = n_rows = 0
        for number in ids:
            name = f"{number:06d}.jpg"
            try:
                place_image(root / "images" / name, out / "images" / name, MAX_SIDE, pixel_labels=False)
            except ImageReadError as e:
                problems.add(e)
                continue
            n_images += 1
            for key, _ in KEYS.values():  # keys in attributes.json order
                if key in marks.get(number, {}):
                    writer.writerow([f"images/{name}", key, marks[number][key]])
                    n_rows += 1
        path = out / f"labels_{split}.csv"
        write_text_atomic(path, text.getvalue())
        ds = read_attribute_csv(path)  # the project's reader, with the attributes.json beside the CSV
        if sum(len(r.attributes) for r in ds.records) != n_rows:
            raise DataError(path, f"read back {sum(len(r.attributes) for r in ds.records)} rows; wrote {n_rows}")
        check_files(path, [r.path for r in ds.records])
        counts[split] = {"images": n_images, "rows": n_rows}
    return counts
