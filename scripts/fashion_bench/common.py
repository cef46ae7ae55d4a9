"""What every converter of scripts/build_fashion_bench.py shares (docs/DATA.md states the rules): seeded splits,
photos copied into a set (scaled down only where the set has a size limit), ``.mat`` variables, COCO files written by
the project's own writer and read back by its readers, and the one-line problem report.
"""
from __future__ import annotations

import io
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.formats.coco import dataset_to_coco, read_coco_detection, read_coco_keypoints
from fashion2stage.images import image_size, load_image
from fashion2stage.io import write_bytes_atomic, write_json_atomic
from fashion2stage.records import Dataset

SPLITS = ("train", "val", "test")
_EXIF_ORIENTATION = 0x0112


@dataclass
class Problems:
    """Bad inputs, one line each (``<file>: <problem>``), printed as they are met; the build goes on without them."""
    lines: list[str] = field(default_factory=list)

    def add(self, error: Exception | str) -> None:
        line = str(error)
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


def split_ids(ids, fractions: tuple[float, float, float], seed: int, name: str) -> dict[str, list]:
    """``{"train": [...], "val": [...], "test": [...]}``: the sorted ids shuffled by a generator seeded with
    ``"<seed>:<name>"`` (so one set's split never depends on another's), then cut: ``round(n * train)`` ids,
    ``round(n * val)`` ids, the rest. Each split is returned sorted."""
    ordered = sorted(ids)
    random.Random(f"{seed}:{name}").shuffle(ordered)
    n_train = round(len(ordered) * fractions[0])
    n_val = min(round(len(ordered) * fractions[1]), len(ordered) - n_train)
    cuts = {"train": ordered[:n_train], "val": ordered[n_train:n_train + n_val], "test": ordered[n_train + n_val:]}
    return {k: sorted(v) for k, v in cuts.items()}


def photo_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a photo whose labels are pixel coordinates of the photo as stored; refuses a photo that
    readers would turn (an EXIF orientation 2-8; other values they ignore, as fashion2stage.images does): its
    labels would no longer fit it."""
    w, h = image_size(path)  # refuses missing, empty, non-image and too-large files with one line
    with Image.open(path) as im:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        raise ImageReadError(path, f"EXIF orientation {orientation}: its labels are in the stored pixel frame, "
                                   "which readers would turn; save the photo upright without the tag first")
    return w, h


def place_image(src: Path, dst: Path, max_side: int | None = None,
                pixel_labels: bool = True) -> tuple[int, int, float, float]:
    """Write the photo ``src`` as ``dst``; returns its new ``(width, height)`` and the factors ``(sx, sy)`` by which
    pixel coordinates of ``src`` become those of ``dst``. Copied byte for byte (factors 1.0) unless its longer side
    exceeds ``max_side``: then it is scaled down to that side (Lanczos, upright) and saved as JPEG, quality 95.
    ``pixel_labels``: its labels are pixel coordinates (see :func:`photo_size`); photos of image-level labels may
    carry any EXIF orientation."""
    w, h = photo_size(src) if pixel_labels else image_size(src)
    if not max_side or max(w, h) <= max_side:
        write_bytes_atomic(dst, src.read_bytes())
        return w, h, 1.0, 1.0
    scale = max_side / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = Image.fromarray(load_image(src)).resize((nw, nh), Image.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=95)
    write_bytes_atomic(dst, buf.getvalue())
    return nw, nh, nw / w, nh / h


def load_mat(path: Path, variable: str) -> np.ndarray:
    """One variable of a MATLAB file (v4-v7.2, what scipy reads); a missing file or variable is a DataError."""
    from scipy.io import loadmat  # noqa: PLC0415  (scipy comes with scikit-learn; only this script needs it)

    try:
        data = loadmat(path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise DataError(path, f"cannot read as a MATLAB file: {e}") from None
    if variable not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataError(path, f"no variable {variable!r} (found: {found})")
    return data[variable]


def mat_strings(cell: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings (what scipy gives: an object array of string arrays) as a list."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel(order="F"):
        a = np.asarray(item).ravel()
        out.append(str(a[0]).strip() if a.size else "")
    return out


def write_coco(path: Path, dataset: Dataset, info: dict, extras: list[dict] | None = None,
               category_extra: dict | None = None) -> dict:
    """Write ``dataset`` with the project's COCO writer (``dataset_to_coco``), adding ``info``, per-annotation
    fields ``extras`` (in the writer's order: records, then each record's garments) and fields for every category;
    atomic. Returns the dict written."""
    coco = dataset_to_coco(dataset)
    if extras is not None:
        if len(extras) != len(coco["annotations"]):
            raise ValueError(f"{path}: {len(extras)} extra fields for {len(coco['annotations'])} annotations")
        for ann, extra in zip(coco["annotations"], extras):
            ann.update(extra)
    for cat in coco["categories"]:
        cat.update(category_extra or {})
    coco = {"info": info, **coco}
    write_json_atomic(path, coco)
    return coco


def check_coco(path: Path, written: dict, keypoints: bool = False) -> Dataset:
    """Read a written COCO file back with the project's reader; its images, boxes and photos must all be there."""
    ds = (read_coco_keypoints if keypoints else read_coco_detection)(path)
    boxes = sum(len(r.garments) for r in ds.records)
    if len(ds.records) != len(written["images"]) or boxes != len(written["annotations"]):
        raise DataError(path, f"read back {len(ds.records)} images and {boxes} boxes; wrote "
                              f"{len(written['images'])} and {len(written['annotations'])}")
    check_files(path, [r.path for r in ds.records])
    return ds


def check_files(label_file: Path, paths) -> None:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(label_file, f"{len(missing)} listed photo(s) missing, e.g. {missing[0]}")
