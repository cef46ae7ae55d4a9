"""Tiny real models for the end-to-end tests: synthetic garments (_write_set), and detect-train, classify-train and
keypoints-train run on them through the CLI (train_models; conftest.py's session fixture ``models``)."""
import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from fashion2stage.app.cli import app

CATEGORIES = [
    {"id": 1, "name": "blouse", "supercategory": "garment", "keypoints": ["left_top", "right_top", "centre"]},
    {"id": 2, "name": "skirt", "supercategory": "garment", "keypoints": ["left_top", "right_top", "centre"]},
]
ATTRIBUTES = [{"id": 1, "name": "plain", "supercategory": "pattern"},
              {"id": 2, "name": "striped", "supercategory": "pattern"}]


def _write_set(root: Path, split: str, n: int, seed: int) -> Path:
    """n 96x96 images; a red "blouse" and/or a blue "skirt" rectangle, striped or plain, 3 keypoints each."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
        for cat in (1, 2):
            w, h = (int(v) for v in rng.integers(28, 44, 2))
            x, y = int(rng.integers(0, 96 - w)), int(rng.integers(0, 96 - h))
            img[y:y + h, x:x + w] = (220, 40, 40) if cat == 1 else (40, 40, 220)
            striped = bool(rng.integers(0, 2))
            if striped:
                img[y:y + h:4, x:x + w] = 255
            pts = [(x + 3, y + 3, 2), (x + w - 3, y + 3, 2), (x + w / 2, y + h / 2, 2)]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0, "attribute_ids": [2 if striped else 1],
                         "keypoints": [c for p in pts for c in p], "num_keypoints": 3})
        name = f"{split}_{i}.png"
        cv2.imwrite(str(root / "images" / name), img[:, :, ::-1])
        images.append({"id": i + 1, "file_name": name, "width": 96, "height": 96})
    path = root / "annotations" / f"{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES,
                                "attributes": ATTRIBUTES}))
    return path


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def train_models(d: Path) -> dict:
    """The three tiny run folders (det, attr, kp) under d/runs, trained on _write_set's photos, and a photo folder
    of the val photos (some in a sub-folder)."""
    train, val = _write_set(d / "data", "train", 6, 0), _write_set(d / "data", "val", 4, 1)
    runs = d / "runs"
    _cli("detect-train", "--data", train, "--val", val, "--detector", "faster-rcnn", "--epochs", "4", "--batch", "3",
         "--image-size", "96", "--lr", "0.01", "--threads", "1", "--project", runs, "--name", "det")
    _cli("classify-train", "--data", train, "--val", val, "--epochs", "1",
         "--image-size", "64", "--batch-size", "4", "--no-pretrained", "--project", runs, "--name", "attr")
    _cli("keypoints-train", "--data", train, "--val", val, "--image-size", "64x64", "--batch-size", "3",
         "--no-pretrained", "--epochs", "1", "--project", runs, "--name", "kp")
    images = d / "photos"
    (images / "sub").mkdir(parents=True)
    for i, p in enumerate(sorted((d / "data" / "images").glob("val_*.png"))):
        (images / ("sub" if i % 2 else "") / p.name).write_bytes(p.read_bytes())
    return {"runs": runs, "images": images, "val": val, "root": d}
