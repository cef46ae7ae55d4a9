"""Export train/val datasets to the folder layout ultralytics YOLO trains on.

```
out_dir/data.yaml                 path, train, val, names
out_dir/images/{train,val}/F      symlinks to the source images (copies where symlinks fail)
out_dir/labels/{train,val}/F.txt  "class cx cy w h" per box, normalised to 0..1; empty for images without boxes
```
``F`` is the record's relative path flattened (``a/b.jpg`` -> ``a__b.jpg``; ``s1__a__b.jpg`` for a second image root
of a merged dataset). Nothing is written beside the
source data: ``out_dir`` may not lie inside a dataset root, nor contain one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from fashion2stage.images import image_size
from fashion2stage.io import write_text_atomic
from fashion2stage.records import Dataset, ImageRecord

MARKER = ".fashion2stage-yolo"  # marks a folder this module wrote, so a re-export may clear it


def flat_name(file: str) -> str:
    """``sub/dir/x.jpg`` -> ``sub__dir__x.jpg``: one flat folder per split, as ultralytics expects."""
    return file.replace("/", "__")


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _check_out_dir(out: Path, datasets: tuple[Dataset, ...]) -> None:
    for ds in datasets:
        root = ds.root.resolve()
        if _inside(out, root) or _inside(root, out):
            raise ValueError(f"{out}: refusing to write a YOLO export inside or around the dataset root {root}")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(f"{out}: folder exists, is not empty and is not a previous YOLO export")


def _label_lines(rec: ImageRecord, names: list[str]) -> list[str]:
    if rec.garments and (rec.width is None or rec.height is None):
        w, h = image_size(rec.path)
    else:
        w, h = rec.width, rec.height
    lines = []
    for g in rec.garments:
        if g.type not in names:
            raise ValueError(f"{rec.file}: garment type {g.type!r} is not one of the training types {names}")
        x1, y1, x2, y2 = np.clip(np.asarray(g.box_xyxy, dtype=np.float64), 0, [w, h, w, h])
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{names.index(g.type)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:  # filesystems (or Windows accounts) without symlinks
        shutil.copy2(src, dst)


def export_names(ds: Dataset) -> list[str]:
    """Each record's file name in the export: its path flattened; records of a second, third ... image root (a
    dataset merged from several sources) get ``s1__``, ``s2__`` ... in front, so two sources' ``images/0001.jpg``
    stay two images."""
    roots: dict[Path, int] = {}
    out = []
    for rec in ds.records:
        k = roots.setdefault(Path(rec.root).resolve(), len(roots))
        out.append(flat_name(rec.file) if k == 0 else f"s{k}__{flat_name(rec.file)}")
    return out


def _write_split(ds: Dataset, split: str, out: Path, names: list[str]) -> None:
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    stems: dict[str, str] = {}
    for rec, name in zip(ds.records, export_names(ds)):
        stem = name.rsplit(".", 1)[0]
        if stem in stems:  # labels are found by stem: a.jpg and a.png would share a.txt
            raise ValueError(f"{rec.file} and {stems[stem]} map to the same YOLO label file {stem}.txt")
        stems[stem] = rec.file
        src = rec.path.resolve()
        if not src.is_file():
            raise FileNotFoundError(f"{src}: image of {ds.source or ds.root} not found")
        _link_or_copy(src, images / name)
        (labels / f"{stem}.txt").write_text("".join(line + "\n" for line in _label_lines(rec, names)))


def export_yolo(train: Dataset, val: Dataset, out_dir: str | Path, repeats: list[int] | None = None) -> Path:
    """Write ``train`` and ``val`` as an ultralytics dataset under ``out_dir``; return the ``data.yaml`` path.

    Class ids follow ``train.labels.garment_types``. Images are linked, never copied into or written beside the
    source folders. A previous export in ``out_dir`` is replaced; any other non-empty folder is refused.
    ``repeats`` (one count per training record): the training split becomes ``train.txt``, listing each image that
    many times, since ultralytics draws every listed image once per epoch (how a small source gets its share).
    """
    out = Path(out_dir).resolve()
    _check_out_dir(out, (train, val))
    names = list(train.labels.garment_types)
    for sub in ("images", "labels"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "train.txt").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    (out / "data.yaml").unlink(missing_ok=True)  # written last: its presence means the export is complete
    _write_split(train, "train", out, names)
    _write_split(val, "val", out, names)
    data = {"path": str(out), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(names))}
    if repeats is not None:
        if len(repeats) != len(train.records) or any(int(n) < 0 for n in repeats):
            raise ValueError(f"repeats: {len(repeats)} counts for {len(train.records)} training images")
        listed = [f"./images/train/{name}\n" * int(n) for name, n in zip(export_names(train), repeats)]
        write_text_atomic(out / "train.txt", "".join(listed))
        data["train"] = "train.txt"
    write_text_atomic(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"
