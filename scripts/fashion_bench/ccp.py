"""Clothing Co-Parsing (bearpaw/clothing-co-parsing) -> ``ccp/`` (garment boxes from the pixel masks) and
``ccp_tags/`` (image-level tags). docs/DATA.md, "ccp/" and "ccp_tags/", states the rules.

The source, as its README and ``show_pixel_anno.m`` / ``show_image_anno.m`` describe it:

- ``photos/NNNN.jpg``, 2,098 street photos;
- ``annotations/pixel-level/NNNN.mat``: ``groundtruth``, an h x w matrix of label numbers (photos 0001-1004);
- ``annotations/image-level/NNNN.mat``: ``tags``, an n x 1 matrix of label numbers (photos 1005-2098);
- ``label_list.mat``: ``label_list``, a 1 x 59 cell array of names; label number k is ``label_list{k+1}``
  (0 is ``null``, the background).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .common import check_coco, check_files, load_mat, mat_strings, photo_size, place_image, split_ids, write_coco
from fashion2stage import taxonomy
from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.io import write_text_atomic
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord

# The 21 CCP labels that are garments of the five types, and their type. Every other label (accessories, shoes,
# skin, hair, and jumper, suit, tights, stockings, intimate, swimwear ...) gives no box.
FINE_TYPES: dict[str, str] = {
    "blazer": "outwear", "cape": "outwear", "cardigan": "outwear", "coat": "outwear", "jacket": "outwear",
    "vest": "outwear",
    "blouse": "blouse", "bodysuit": "blouse", "hoodie": "blouse", "shirt": "blouse", "sweater": "blouse",
    "sweatshirt": "blouse", "t-shirt": "blouse", "top": "blouse",
    "dress": "dress", "romper": "dress",
    "skirt": "skirt",
    "jeans": "trousers", "leggings": "trousers", "pants": "trousers", "shorts": "trousers",
}
FINE_CATEGORIES = sorted(FINE_TYPES)  # attribute ids 1..21 in this order (CCP's own, alphabetical, order)
NOT_WORN = ("null", "skin", "hair")  # labels that name no item a person wears: never a tag
MIN_PIECE_PX = 200  # docs/DATA.md: the smallest box in the team's ccp/ covers 217 mask pixels
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
CCP_INFO = "Clothing Co-Parsing, garment boxes from pixel masks ({split})"


@dataclass
class MaskBox:
    name: str  # the CCP label (the fine category)
    box_xyxy: np.ndarray  # (4,) pixel corners of the mask: x1, y1, x2 = last column + 1, y2 = last row + 1
    area: int  # mask pixels in the kept pieces


def label_names(root: Path) -> list[str]:
    names = mat_strings(load_mat(root / "label_list.mat", "label_list"))
    if names and names[0] == "":
        names[0] = "null"
    return names


def garment_boxes(groundtruth: np.ndarray, names: list[str], min_piece: int, source: Path) -> list[MaskBox]:
    """One box per garment label of a mask, in label-number order: the extent of the label's 8-connected pieces of at
    least ``min_piece`` pixels together (pieces of an occluded garment make one box; a stray speck does not stretch
    it). A label with no piece that large gives no box."""
    gt = np.asarray(groundtruth)
    if gt.ndim != 2 or not np.issubdtype(gt.dtype, np.number):
        raise DataError(source, f"groundtruth is not a 2-D matrix of label numbers (shape {gt.shape}, {gt.dtype})")
    values = np.unique(gt)
    unknown = [int(v) for v in values if not (0 <= v < len(names)) or v != int(v)]
    if unknown:
        raise DataError(source, f"label number(s) {unknown} are not in label_list.mat's {len(names)} names")
    out = []
    for value in values:
        name = names[int(value)]
        if name not in FINE_TYPES:
            continue
        pieces, _ = ndimage.label(gt == value, structure=_EIGHT_NEIGHBOURS)
        sizes = np.bincount(pieces.ravel())[1:]
        keep = np.flatnonzero(sizes >= min_piece) + 1
        if not len(keep):
            continue
        kept = np.isin(pieces, keep)
        rows, cols = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
        box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
        out.append(MaskBox(name, box, int(sizes[keep - 1].sum())))
    return out


def _marks(name: str) -> str:
    return "".join("y" if v == name else "n" for v in FINE_CATEGORIES)


def _numbered(folder: Path) -> dict[int, Path]:
    """``NNNN.mat`` files of a folder by photo number (other names are ignored)."""
    return {int(p.stem): p for p in sorted(folder.glob("*.mat")) if p.stem.isdigit()}


def build_ccp(root: Path, out: Path, fractions, seed: int, min_piece: int, problems) -> dict:
    """``out/images/NNNN.jpg`` and ``out/annotations/instances_{train,val,test}.json``; returns the counts."""
    names = label_names(root)
    masks = _numbered(root / "annotations" / "pixel-level")
    if not masks:
        raise DataError(root / "annotations" / "pixel-level", "no NNNN.mat pixel-level annotations")
    labels = LabelSet(garment_types=list(taxonomy.GARMENT_TYPES), attributes={"fine_category": FINE_CATEGORIES})
    images = out / "images"
    counts = {}
    for split, ids in split_ids(masks, fractions, seed, "ccp").items():
        records, extras = [], []
        for number in ids:
            mat, photo = masks[number], root / "photos" / f"{masks[number].stem}.jpg"
            try:
                groundtruth = load_mat(mat, "groundtruth")
                boxes = garment_boxes(groundtruth, names, min_piece, mat)
                w, h = photo_size(photo)
                if groundtruth.shape != (h, w):
                    mh, mw = groundtruth.shape
                    raise DataError(mat, f"mask is {mw}x{mh}, its photo {photo.name} {w}x{h}")
                place_image(photo, images / photo.name)  # copied as it is: the mask's frame is the photo's
            except (DataError, ImageReadError) as e:
                problems.add(e)
                continue
            records.append(ImageRecord(file=photo.name, root=images, width=w, height=h, id=number, garments=[
                Garment(type=FINE_TYPES[b.name], box_xyxy=b.box_xyxy, attributes={"fine_category": _marks(b.name)})
                for b in boxes]))
            extras += [{"area": b.area} for b in boxes]  # COCO's area: the mask pixels, not the box
        path = out / "annotations" / f"instances_{split}.json"
        written = write_coco(path, Dataset(root=images, records=records, labels=labels),
                             {"description": CCP_INFO.format(split=split), "license": "Apache-2.0"}, extras)
        check_coco(path, written)
        counts[split] = {"images": len(records), "boxes": len(extras)}
    return counts


def photo_tags(tags: np.ndarray, names: list[str], source: Path) -> list[str]:
    """Label numbers -> names, in label-number order, each once, without ``null``, ``skin`` and ``hair``."""
    numbers = np.asarray(tags, dtype=np.float64).ravel()
    bad = [v for v in numbers if not (0 <= v < len(names)) or v != int(v)]
    if bad:
        raise DataError(source, f"tag number(s) {bad} are not in label_list.mat's {len(names)} names")
    return [names[int(v)] for v in sorted(set(numbers)) if names[int(v)] not in NOT_WORN]


def build_ccp_tags(root: Path, out: Path, fractions, seed: int, problems) -> dict:
    """``out/images/NNNN.jpg`` and ``out/tags_{train,val,test}.csv`` (header ``image,tags``); returns the counts."""
    names = label_names(root)
    tag_files = _numbered(root / "annotations" / "image-level")
    if not tag_files:
        raise DataError(root / "annotations" / "image-level", "no NNNN.mat image-level annotations")
    counts = {}
    for split, ids in split_ids(tag_files, fractions, seed, "ccp_tags").items():
        rows = []
        for number in ids:
            mat = tag_files[number]
            photo = root / "photos" / f"{mat.stem}.jpg"
            try:
                tags = photo_tags(load_mat(mat, "tags"), names, mat)
                place_image(photo, out / "images" / photo.name, pixel_labels=False)
            except (DataError, ImageReadError) as e:
                problems.add(e)
                continue
            rows.append((f"images/{photo.name}", " ".join(tags)))
        path = out / f"tags_{split}.csv"
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["image", "tags"])
        writer.writerows(rows)
        write_text_atomic(path, text.getvalue())
        check_files(path, [out / r[0] for r in read_tags(path)])
        counts[split] = {"images": len(rows), "with_garment_tag": sum(
            any(t in FINE_TYPES for t in tags.split()) for _, tags in rows)}
    return counts


def read_tags(path: Path) -> list[tuple[str, str]]:
    """``(image, tags)`` rows of a tag CSV; the header must be ``image,tags``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["image", "tags"] or any(len(r) != 2 for r in rows[1:]):
        raise DataError(path, "not an image,tags CSV (header image,tags, two columns per row)")
    return [(r[0], r[1]) for r in rows[1:]]
