"""Benchmark data: fixed-seed subsets of fashion-bench beside links to the real images, never copies."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from bench.common import SEED, Bench, Profile
from fashion2stage.io import write_json_atomic

def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve())


def coco_subset(src: Path, dst: Path, n: int | None) -> Path:
    """``n`` images of a COCO json (``dst`` in an ``annotations/`` folder beside an ``images`` link); ``src``
    itself when it has no more than ``n``."""
    data = json.loads(src.read_text())
    if n is None or n >= len(data["images"]):
        return src
    keep = {im["id"] for im in random.Random(SEED).sample(data["images"], n)}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    write_json_atomic(dst, data)
    _link(dst.parent.parent / "images", src.parent.parent / "images")
    return dst


def csv_subset(src: Path, dst: Path, n: int | None) -> Path:
    """All rows of ``n`` images of a FashionAI label CSV, beside links to its images and attributes.json."""
    rows = [r for r in csv.reader(src.open(newline="")) if r]
    images = sorted({r[0] for r in rows})
    if n is None or n >= len(images):
        return src
    keep = set(random.Random(SEED).sample(images, n))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as f:
        csv.writer(f).writerows(r for r in rows if r[0] in keep)
    _link(dst.parent / "images", src.parent / "images")
    _link(dst.parent / "attributes.json", src.parent / "attributes.json")
    return dst


def prepare_data(bench: Path, work: Path, p: Profile) -> dict[str, Path]:
    d, out = {}, work / "data"
    for split, n in (("train", p.train_images), ("val", p.val_images)):
        d[f"ccp_{split}"] = coco_subset(bench / f"ccp/annotations/instances_{split}.json",
                                        out / f"ccp/annotations/instances_{split}.json", n)
        d[f"cad_{split}"] = csv_subset(bench / f"cad/labels_{split}.csv", out / f"cad/labels_{split}.csv", n)
        d[f"lm_{split}"] = coco_subset(bench / f"landmarks/annotations/keypoints_{split}.json",
                                       out / f"landmarks/annotations/keypoints_{split}.json", n)
    return d


def speed_folders(b: Bench, ccp_val: Path) -> tuple[Path, Path]:
    """Folders of N and 10N images: links to the first N ccp val photos (ten links each for 10N)."""
    names = sorted(im["file_name"] for im in json.loads(ccp_val.read_text())["images"])[: b.profile.speed_images]
    folders = []
    for copies in (1, 10):
        folder = b.work / "speed" / f"images-{copies * len(names)}"
        for k in range(copies):
            for name in names:
                _link(folder / f"{k}_{name.replace('/', '__')}", ccp_val.parent.parent / "images" / name)
        folders.append(folder)
    return folders[0], folders[1]

