"""clothing-dataset-small (alexeygrigorev) -> ``products/``: class folders of single-item photos, per split.
docs/DATA.md, "products/", states the rules.

The source is already split, ``{train,validation,test}/<class>/<id>.jpg``: those splits are kept (``validation``
becomes ``val``), so a rebuild holds the same photos in the same splits as the team's set. A class-folder tree
without splits (``<class>/<id>.jpg``, e.g. the full clothing-dataset sorted by class) is split here, each class on
its own, by the seeded rule of the other sets.
"""
from __future__ import annotations

from pathlib import Path

from .common import place_image, split_ids
from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.formats.folders import IMAGE_SUFFIXES, read_class_folders

SOURCE_SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
MAPPING = Path(__file__).resolve().parents[2] / "configs" / "fashion-bench-products.yaml"


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _classes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def planned_splits(root: Path, fractions, seed: int) -> tuple[dict[str, dict[str, list[Path]]], str]:
    """``({split: {class: [photos]}}, how)``: the source's own splits when it has a ``train/`` folder, else a
    seeded split of each class folder (``how`` says which, for the manifest)."""
    if (root / "train").is_dir():
        plan = {}
        for folder in sorted(p for p in root.iterdir() if p.name in SOURCE_SPLITS and p.is_dir()):
            split = plan.setdefault(SOURCE_SPLITS[folder.name], {})
            for c in _classes(folder):
                split.setdefault(c.name, []).extend(_photos(c))
        return plan, "the source's own train/validation/test folders"
    classes = _classes(root)
    if not classes:
        raise DataError(root, "no class folders (expected <class>/<photo> or train/<class>/<photo>)")
    plan = {}
    for c in classes:
        photos = {p.name: p for p in _photos(c)}
        for split, names in split_ids(photos, fractions, seed, f"products/{c.name}").items():
            plan.setdefault(split, {})[c.name] = [photos[n] for n in names]
    return plan, "seeded split of each class folder"


def build_products(root: Path, out: Path, fractions, seed: int, problems) -> dict:
    """``out/<split>/<class>/<photo>`` for every split that has photos; returns the counts per split and class.
    Each split written is read back with the project's class-folder reader and configs/fashion-bench-products.yaml
    (a class the mapping does not name is an error there, as it would be in training)."""
    plan, how = planned_splits(root, fractions, seed)
    counts: dict = {"split_by": how}
    for split, classes in plan.items():
        n = {}
        for cls, photos in classes.items():
            n[cls] = 0
            for photo in photos:
                try:
                    place_image(photo, out / split / cls / photo.name, pixel_labels=False)
                except ImageReadError as e:
                    problems.add(e)
                    continue
                n[cls] += 1
        if not sum(n.values()):
            continue
        ds = read_class_folders(out / split, MAPPING)
        if len(ds.records) != sum(n.values()):
            raise DataError(out / split, f"read back {len(ds.records)} photos; wrote {sum(n.values())}")
        counts[split] = {"images": len(ds.records), "classes": {c: k for c, k in n.items() if k}}
    return counts
