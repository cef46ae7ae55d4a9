"""The robot landmark set (ThomasZiegler/Fashion_Landmark_Detection_and_Category_Classification, ``datasets/robot``)
-> ``landmarks/``: COCO keypoints, one garment per photo. docs/DATA.md, "landmarks/", states the rules.

The source: ``datasets/robot/*.jpg`` and ``datasets/robot/info.csv``, in the DeepFashion layout of Liu and Lu's
code it builds on: ``image_name``, the box ``x_1, y_1, x_2, y_2``, ``category_name`` (a DeepFashion category),
and per landmark (``lc rc ls rs lw rw lh rh``: collar, sleeve, waistline, hem, left and right) ``lm_<p>_x``,
``lm_<p>_y``, ``lm_<p>_vis`` (1 visible) and ``lm_<p>_in_pic`` (1 the garment has it in the picture), in the
pixels of the photo as stored.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .common import check_coco, place_image, split_ids, write_coco
from fashion2stage import taxonomy
from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord, safe_relpath, validate_box

LANDMARKS = (("lc", "left_collar"), ("rc", "right_collar"), ("ls", "left_sleeve"), ("rs", "right_sleeve"),
             ("lw", "left_waistline"), ("rw", "right_waistline"), ("lh", "left_hem"), ("rh", "right_hem"))
SKELETON = [[1, 2], [1, 3], [2, 4], [5, 6], [5, 7], [6, 8], [7, 8]]
MAX_SIDE = 640  # the robot photos are 960x720; the set holds them at 640x480, landmarks and boxes scaled alike
INFO = "garments held by a robot arm, 8 fashion landmarks ({split})"

# DeepFashion's 50 category names -> the five garment types (a coat, cape or kimono is outwear, as in ccp/).
_TYPE_NAMES = {
    "outwear": "Anorak Blazer Bomber Cape Cardigan Coat Jacket Kimono Parka Peacoat Poncho Robe",
    "blouse": "Blouse Button-Down Flannel Halter Henley Hoodie Jersey Sweater Tank Tee Top Turtleneck",
    "trousers": "Capris Chinos Culottes Cutoffs Gauchos Jeans Jeggings Jodhpurs Joggers Leggings Shorts "
                "Sweatpants Sweatshorts Trunks",
    "skirt": "Sarong Skirt",
    "dress": "Caftan Coverup Dress Jumpsuit Kaftan Nightdress Onesie Romper Shirtdress Sundress",
}
DEEPFASHION_TYPES = {name: t for t, names in _TYPE_NAMES.items() for name in names.split()}


def info_csv(root: Path) -> Path:
    """``datasets/robot/info.csv`` under a repository folder, or ``info.csv`` in the robot folder itself."""
    nested = root / "datasets" / "robot" / "info.csv"
    return nested if nested.is_file() else root / "info.csv"


def _number(row: dict, column: str) -> float:
    try:
        return float(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{column} {row.get(column)!r} is not a number") from None


def parse_row(row: dict) -> tuple[str, np.ndarray, np.ndarray]:
    """``(category name, box [x1, y1, x2, y2], keypoints (8, 3))`` of one info.csv row, in the source photo's pixels.
    COCO visibility: 2 where ``vis`` is 1; 1 (labelled, occluded) where ``in_pic`` is 1 but ``vis`` is not;
    0 (absent, x = y = 0) otherwise."""
    box = np.array([_number(row, c) for c in ("x_1", "y_1", "x_2", "y_2")])
    kpts = np.zeros((len(LANDMARKS), 3))
    for i, (short, _) in enumerate(LANDMARKS):
        vis, in_pic = _number(row, f"lm_{short}_vis"), _number(row, f"lm_{short}_in_pic")
        v = 2 if vis == 1 else 1 if in_pic == 1 else 0
        if v:
            kpts[i] = (_number(row, f"lm_{short}_x"), _number(row, f"lm_{short}_y"), v)
    return str(row.get("category_name", "")).strip(), box, kpts


def read_rows(csv_path: Path, problems) -> dict[str, tuple[int, list[tuple[str, np.ndarray, np.ndarray]]]]:
    """``{image name: (image id, [garments])}``: the id is the photo's first data row (1, 2, ...); a bad row is
    reported with its line number and skipped."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(csv_path, f"cannot read: {e}") from None
    needed = ["image_name", "x_1", "y_1", "x_2", "y_2", "category_name"]
    needed += [f"lm_{s}_{c}" for s, _ in LANDMARKS for c in ("x", "y", "vis", "in_pic")]
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(csv_path, f"lacks column(s) {', '.join(missing)}", 1)
    out: dict[str, tuple[int, list]] = {}
    for n, row in enumerate(rows, start=1):
        line = n + 1  # the header is line 1
        try:
            name = safe_relpath(row["image_name"], csv_path, line)
            category, box, kpts = parse_row(row)
            if category not in DEEPFASHION_TYPES:
                raise ValueError(f"category_name {category!r} is not a DeepFashion category this build maps")
        except ValueError as e:  # DataError is a ValueError
            problems.add(e if isinstance(e, DataError) else DataError(csv_path, str(e), line))
            continue
        out.setdefault(name, (n, []))[1].append((category, box, kpts))
    return out


def build_landmarks(root: Path, out: Path, fractions, seed: int, problems) -> dict:
    """``out/images/*.jpg`` and ``out/annotations/keypoints_{train,val,test}.json``; returns the counts."""
    csv_path = info_csv(root)
    photos = read_rows(csv_path, problems)
    labels = LabelSet(garment_types=list(taxonomy.GARMENT_TYPES), keypoints=[name for _, name in LANDMARKS])
    images = out / "images"
    ids = {image_id: name for name, (image_id, _) in photos.items()}
    counts = {}
    for split, chosen in split_ids(ids, fractions, seed, "landmarks").items():
        records, extras = [], []
        for image_id in chosen:
            name = ids[image_id]
            try:
                w, h, sx, sy = place_image(csv_path.parent / name, images / name, MAX_SIDE)
                garments = []
                for category, box, kpts in photos[name][1]:
                    scaled = validate_box(box * [sx, sy, sx, sy], w, h, csv_path, image_id + 1)
                    kpts = kpts * [sx, sy, 1]
                    garments.append(Garment(type=DEEPFASHION_TYPES[category], box_xyxy=scaled, keypoints=kpts))
            except (DataError, ImageReadError) as e:
                (images / name).unlink(missing_ok=True)
                problems.add(e)
                continue
            records.append(ImageRecord(file=name, root=images, width=w, height=h, id=image_id, garments=garments))
            extras += [{"fine_category": category} for category, _, _ in photos[name][1]]
        path = out / "annotations" / f"keypoints_{split}.json"
        written = write_coco(path, Dataset(root=images, records=records, labels=labels),
                             {"description": INFO.format(split=split), "license": "GPL-3.0"}, extras,
                             {"skeleton": SKELETON})
        check_coco(path, written, keypoints=True)
        counts[split] = {"images": len(records), "garments": len(extras)}
    return counts
