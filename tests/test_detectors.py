"""Detector data checks, the shared evaluator on hand-made predictions, and the offline ultralytics setup."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.sources import read_detection_data
from detectors.train import evaluate
from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.results import GarmentPrediction

TYPES = ["blouse", "skirt"]


def write_coco(folder: Path, boxes_per_image: list[list[tuple[str, list[float]]]], size=(96, 80), name="ann.json",
               categories=TYPES) -> Path:
    """Tiny images (noise) and a COCO file; boxes given as (type, [x, y, w, h])."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image):
        file = f"im{i}.png"
        if not (folder / file).exists():
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / file)
        images.append({"id": i + 1, "file_name": file, "width": size[0], "height": size[1]})
        for t, bbox in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": categories.index(t) + 1,
                         "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    cats = [{"id": k + 1, "name": n, "supercategory": "garment"} for k, n in enumerate(categories)]
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


class FixedDetector:
    """A real (trivial) Detector: returns the boxes it was built with, image by image, filtered by ``conf``."""

    def __init__(self, labels: LabelSet, answers: list[list[GarmentPrediction]]):
        self.labels, self.answers, self.calls = labels, answers, 0

    def predict(self, images, conf=0.25, batch_size=8):
        out = [[g for g in self.answers[self.calls + k] if g.score >= conf] for k in range(len(images))]
        self.calls += len(images)
        return out


def _g(t, box, score):
    return GarmentPrediction(type=t, box=[float(v) for v in box], score=score)


def test_evaluate_known_map(tmp_path):
    # blouse: two ground-truth boxes, one found exactly -> recall 0.5 at precision 1: COCO's 101-point AP = 51/101
    # skirt: found exactly, plus a lower-scored false positive elsewhere -> AP 1
    ann = write_coco(tmp_path, [[("blouse", [10, 10, 30, 40]), ("skirt", [50, 20, 30, 50])],
                                [("blouse", [5, 5, 40, 60])]])
    ds = read_detection_data(ann)
    det = FixedDetector(ds.labels, [[_g("blouse", [10, 10, 40, 50], 0.9), _g("skirt", [50, 20, 80, 70], 0.8)],
                                    [_g("skirt", [0, 0, 10, 10], 0.3)]])
    metrics, preds = evaluate(det, ds, batch_size=1)
    assert [len(p.garments) for p in preds] == [2, 1]
    assert metrics["per_class"]["blouse"]["map50"] == pytest.approx(51 / 101)
    assert metrics["per_class"]["blouse"]["map"] == pytest.approx(51 / 101)
    assert metrics["per_class"]["skirt"]["map50"] == pytest.approx(1.0)
    assert metrics["map50"] == pytest.approx((51 / 101 + 1) / 2)


def test_evaluate_shifted_box_counts_at_iou50_only(tmp_path):
    ann = write_coco(tmp_path, [[("blouse", [0, 0, 40, 40])]])
    ds = read_detection_data(ann)
    # shifted by 8 px: IoU = 32*40 / (2*1600 - 1280) = 0.667 -> a hit at IoU .5 to .65, a miss from .7 up
    det = FixedDetector(ds.labels, [[_g("blouse", [8, 0, 48, 40], 0.9)]])
    metrics, _ = evaluate(det, ds)
    assert metrics["per_class"]["blouse"]["map50"] == pytest.approx(1.0)
    assert metrics["per_class"]["blouse"]["map"] == pytest.approx(0.4)  # 4 of 10 IoU thresholds


def test_images_without_boxes_are_counted(tmp_path):
    ann = write_coco(tmp_path, [[("blouse", [10, 10, 30, 40])], [], []])
    with pytest.warns(UserWarning, match="2 of 3 images have no garment box"):
        ds = read_detection_data(ann)
    assert len(ds) == 3


@pytest.mark.parametrize("case, match", [
    ("empty_file", "empty file"),
    ("no_boxes", "no garment boxes"),
    ("zero_box", "zero or negative size"),
    ("no_images", "no images"),
    ("missing_image", "not found"),
])
def test_bad_training_data_is_refused(tmp_path, case, match):
    if case == "empty_file":
        ann = tmp_path / "ann.json"
        ann.write_text("")
    elif case == "no_boxes":
        ann = write_coco(tmp_path, [[], []])
    elif case == "zero_box":
        ann = write_coco(tmp_path, [[("blouse", [10, 10, 0, 40])]])
    elif case == "no_images":
        ann = write_coco(tmp_path, [])
    else:
        ann = write_coco(tmp_path, [[("blouse", [10, 10, 30, 40])]])
        (tmp_path / "im0.png").unlink()
    with pytest.raises(DataError, match=match):
        read_detection_data(ann)


def test_val_type_outside_label_set_is_refused(tmp_path):
    train = read_detection_data(write_coco(tmp_path, [[("blouse", [10, 10, 30, 40])]]))
    val = write_coco(tmp_path, [[("dress", [10, 10, 30, 40])]], name="val.json", categories=["blouse", "dress"])
    with pytest.raises(DataError, match=r"\['dress'\] are not in the model's label set"):
        read_detection_data(val, labels=train.labels, split="val")


def test_dataset_yaml(tmp_path):
    write_coco(tmp_path / "d", [[("blouse", [10, 10, 30, 40])]], name="train.json")
    write_coco(tmp_path / "d", [[("skirt", [10, 10, 30, 40])]], name="val.json")
    spec = tmp_path / "data.yaml"
    spec.write_text("train: d/train.json\nval: d/val.json\n")
    assert read_detection_data(spec).records[0].garments[0].type == "blouse"
    assert read_detection_data(spec, split="val").records[0].garments[0].type == "skirt"
    (tmp_path / "bad.yaml").write_text("train: d/train.json\n")
    with pytest.raises(DataError, match="no 'val' entry"):
        read_detection_data(tmp_path / "bad.yaml", split="val")


def test_offline_environment_without_user_settings(tmp_path):
    """A fresh process with no YOLO_* variables: importing through detectors.offline sets them and the fonts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = ("from detectors.offline import import_ultralytics; import os; import_ultralytics(); "
            "from ultralytics.utils import ONLINE, USER_CONFIG_DIR; "
            "print(os.environ['YOLO_OFFLINE'], os.environ['YOLO_AUTOINSTALL'], USER_CONFIG_DIR, ONLINE)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    offline, autoinstall, folder, online = out.stdout.splitlines()[-1].split()  # ultralytics may print first
    assert (offline, autoinstall, online) == ("1", "0", "False")
    assert Path(folder).is_relative_to(tmp_path / "fashion2stage" / "ultralytics")
    for font in ("Arial.ttf", "Arial.Unicode.ttf"):
        assert (Path(folder) / font).stat().st_size > 10_000
