"""The garment-type check (classifiers/type_head.py): how training boxes are labelled, the folded logistic
regression, and end to end on tiny real models: ``type-head-train`` then ``predict``, where the detector's garments
whose score times the head's p(garment) is under ``--conf`` are dropped, and the others left as they were;
and the item-type head of ``predict --single-item``."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers.type_head import TypeSamples, fit, labelled_boxes
from fashion2stage.app.cli import app
from fashion2stage.app.pipeline import item_type
from fashion2stage.geometry import box_iou
from fashion2stage.records import Garment, ImageRecord

COLOURS = {"blouse": (220, 40, 40), "skirt": (40, 40, 220)}
CATEGORIES = [{"id": 1, "name": "blouse", "supercategory": "garment"},
              {"id": 2, "name": "skirt", "supercategory": "garment"}]
ATTRIBUTES = [{"id": 1, "name": "plain", "supercategory": "pattern"},
              {"id": 2, "name": "striped", "supercategory": "pattern"}]


def _garment(t, box, score=1.0):
    return Garment(type=t, box_xyxy=np.asarray(box, dtype=np.float64), score=score)


def test_detections_are_labelled_by_overlap_with_the_truth():
    rec = ImageRecord(file="a.jpg", root=Path("."), garments=[_garment("skirt", [0, 0, 10, 10])])
    found = [_garment("blouse", [0, 0, 10, 9]),    # IoU 0.9: the true garment, whatever the detector called it
             _garment("skirt", [0, 0, 10, 5]),     # IoU 0.5: positive (>= 0.5)
             _garment("skirt", [0, 0, 10, 4]),     # IoU 0.4: ambiguous, left out
             _garment("dress", [20, 20, 30, 30])]  # IoU 0: no garment
    got = labelled_boxes(rec, found)
    assert [lab for _, lab in got] == ["skirt", "skirt", "skirt", "none"]
    assert np.allclose(got[3][0], [20, 20, 30, 30])
    shirt = ImageRecord(file="s.jpg", root=Path("."), garments=[_garment("blouse", [0, 0, 10, 10])],
                        image_class="t-shirt", item_type="blouse")  # a class folder's photo: its box is a guess
    assert [lab for _, lab in labelled_boxes(shirt, found)] == ["blouse", "blouse", "blouse"]
    hat = ImageRecord(file="h.jpg", root=Path("."), image_class="hat")  # a class folder's no-garment photo
    image = np.full((40, 40, 3), 250, np.uint8)
    image[10:30, 12:28] = 30
    got = labelled_boxes(hat, [_garment("blouse", [1, 1, 20, 20])], image)
    assert [lab for _, lab in got] == ["none", "none"]
    assert box_iou(got[0][0][None], np.array([[12, 10, 28, 30]]))[0, 0] > 0.5  # the item's foreground box


def test_folded_regression_gives_the_same_answers_as_scikit_learn():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 8))
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(0, 1, (300, 8))) * rng.uniform(0.1, 10, 8) + rng.normal(0, 3, 8)  # unscaled
    classes = ["blouse", "skirt", "none"]
    samples = TypeSamples(x.astype(np.float32), [classes[i] for i in y], [str(i) for i in range(300)])
    w, b, clf = fit(samples, classes, c=1.0)
    ours = x @ w.T.astype(np.float64) + b
    theirs = clf.decision_function((x - x.mean(0)) / (x.std(0) + 1e-6))
    assert np.abs(ours - theirs).max() < 1e-3 * (1 + np.abs(theirs).max())
    assert (ours.argmax(1) == y).mean() > 0.95
    with pytest.raises(ValueError, match="dress"):
        fit(samples, ["blouse", "skirt", "dress", "none"])


def test_folded_regression_of_two_classes_gives_scikit_learn_probabilities():
    """scikit-learn keeps one row of weights for two classes: both rows of the folded head must come from it."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    x = rng.normal(0, 1, (200, 6)) + 2.0 * y[:, None] * rng.uniform(0.5, 2, 6)
    classes = ["blouse", "skirt"]
    w, b, clf = fit(TypeSamples(x.astype(np.float32), [classes[i] for i in y], [str(i) for i in range(200)]), classes)
    z = x @ w.T.astype(np.float64) + b
    ours = np.exp(z - z.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    theirs = clf.predict_proba((x - x.mean(0)) / (x.std(0) + 1e-6))
    assert np.abs(ours - theirs).max() < 1e-4 and (ours.argmax(1) == y).mean() > 0.9


def _write(root: Path, n: int, seed: int) -> Path:
    """n 96x96 photos, each with a red blouse and a blue skirt rectangle (COCO boxes)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
        for cat, t in ((1, "blouse"), (2, "skirt")):
            w, h = (int(v) for v in rng.integers(28, 44, 2))
            x, y = int(rng.integers(0, 96 - w)), int(rng.integers(0, 96 - h))
            img[y:y + h, x:x + w] = COLOURS[t]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0, "attribute_ids": [1 + int(rng.integers(0, 2))]})
        cv2.imwrite(str(root / "images" / f"{i}.png"), img[:, :, ::-1])
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 96, "height": 96})
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances.json"  # images/ beside annotations/: the reader finds them
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES,
                                "attributes": ATTRIBUTES}))
    return path


def _cli(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_garment_check_drops_what_is_no_garment_in_predict(tmp_path):
    train, val = _write(tmp_path / "train", 8, 0), _write(tmp_path / "val", 4, 1)
    folders = tmp_path / "folders"  # class folders: green "hats" on grey (no garment), and one item per photo
    for cls, colour in (("hat", (40, 200, 40)), ("top", COLOURS["blouse"]), ("bottom", COLOURS["skirt"])):
        (folders / cls).mkdir(parents=True)
        for i in range(6):
            img = np.full((96, 96, 3), 128, np.uint8)
            img[20 + i:60 + i, 25:70] = colour
            cv2.imwrite(str(folders / cls / f"{i}.png"), img[:, :, ::-1])
    (tmp_path / "m.yaml").write_text("classes:\n  hat: {type: none}\n  top: {type: blouse}\n  bottom: {type: skirt}\n")
    runs = tmp_path / "runs"
    _cli("detect-train", "--data", train, "--val", val, "--epochs", "4", "--batch", "3", "--image-size", "96",
         "--lr", "0.01", "--threads", "1", "--project", runs, "--name", "det")
    _cli("classify-train", "--data", train, "--val", val, "--epochs", "1", "--image-size", "64", "--batch-size", "4",
         "--no-pretrained", "--project", runs, "--name", "attr")
    args = ["type-head-train", "--classifier", runs / "attr", "--data", train, "--data", folders, "--classes",
            tmp_path / "m.yaml", "--detector", runs / "det", "--c", "1.0", "--max-photos", 6, "--cache", tmp_path / "c"]
    out = _cli(*args, "--out", runs / "typed")
    assert "crops per class" in out and "from the cache" not in out
    again = _cli(*args, "--out", runs / "typed-again")  # same sources, same models: every source from the cache
    assert again.count("from the cache") == 4  # COCO, the folders' garment and no-garment photos, the item head's
    assert json.loads((runs / "typed-again" / "config.json").read_text())["type_head"]["crops"] == \
        json.loads((runs / "typed" / "config.json").read_text())["type_head"]["crops"]
    config = json.loads((runs / "typed" / "config.json").read_text())
    assert config["type_head"]["classes"] == ["blouse", "skirt", "none"]
    # the item-type head: every garment photo of the folders (not --max-photos of them), one crop each
    assert config["item_type_head"]["classes"] == ["blouse", "skirt"]
    assert config["item_type_head"]["crops"] == {"blouse": 6, "skirt": 6}
    assert (runs / "typed" / "labels.json").is_file()
    _cli(*args, "--out", runs / "typed-no-item", "--no-item-head")
    assert json.loads((runs / "typed-no-item" / "config.json").read_text())["item_type_head"] is None
    base = dict(images=tmp_path / "val" / "images", detector=runs / "det")

    def predict(classifier, name, *more):
        _cli("predict", "--images", base["images"], "--out", tmp_path / name, "--detector", base["detector"],
             "--classifier", classifier, "--no-default", "--conf", "0.01", *more)
        return {x["image"]: x for x in map(json.loads, (tmp_path / name / "predictions.jsonl").read_text().splitlines())}

    plain, typed = predict(runs / "attr", "plain"), predict(runs / "typed", "typed")
    truth = json.loads(val.read_text())
    names = {im["id"]: im["file_name"] for im in truth["images"]}
    kept = found = 0
    for a in truth["annotations"]:  # the true garments the detector finds clearly are kept, at most as sure
        gt = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]])
        name = names[a["image_id"]]
        before = [g for g in plain[name]["garments"] if box_iou(np.array([g["box"]]), gt)[0, 0] >= 0.7]
        after = [g for g in typed[name]["garments"] if box_iou(np.array([g["box"]]), gt)[0, 0] >= 0.7]
        found += bool(before)
        kept += bool(after)
        for g in after:  # a kept garment is the detector's, untouched
            assert any(np.allclose(g["box"], h["box"], atol=0.02) and abs(g["score"] - h["score"]) < 1e-3
                       and g["type"] == h["type"] for h in before)
    assert found > 0 and kept >= 0.75 * found, (kept, found)
    for x in typed.values():
        scores = [g["score"] for g in x["garments"]]
        assert scores == sorted(scores, reverse=True) and all(s >= 0.01 for s in scores)  # the detector's order
    # single-item mode: each photo keeps the one garment the check put first, typed by detector and item head
    single = predict(runs / "typed", "single", "--single-item")
    assert sum(len(x["garments"]) for x in typed.values()) > len(typed)  # several garments per photo without it
    for name, x in single.items():
        assert len(x["garments"]) == (1 if typed[name]["garments"] else 0)
        if x["garments"]:
            g, best = x["garments"][0], typed[name]["garments"][0]
            assert np.allclose(g["box"], best["box"], atol=0.02) and abs(g["score"] - best["score"]) < 1e-3
            assert g["type"] in ("blouse", "skirt") and g["attributes"]
    base["images"] = folders / "top"  # single red items: the item head and the detector agree they are blouses
    single = predict(runs / "typed", "single-top", "--single-item")
    assert sum(x["garments"][0]["type"] == "blouse" for x in single.values() if x["garments"]) >= 4, single
    # photos of no garment: whatever the detector finds on them, the head calls "none"
    hats = tmp_path / "hats"
    hats.mkdir()
    for p in sorted((folders / "hat").glob("*.png"))[:4]:
        (hats / p.name).write_bytes(p.read_bytes())
    base["images"] = hats
    plain, typed = predict(runs / "attr", "plain-hats"), predict(runs / "typed", "typed-hats")
    assert sum(len(x["garments"]) for x in plain.values()) > 0  # the detector alone does find "garments" there
    assert all(x["garments"] == [] for x in typed.values())
    assert all(x["attributes"]["pattern"]["garment"] is None for x in typed.values())  # whole-image answers
    # a broken type_head entry is one clear error naming the run's config.json
    config = json.loads((runs / "typed" / "config.json").read_text())
    config["type_head"]["classes"] = ["blouse", "sweater", "none"]
    (runs / "typed" / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["predict", "--images", str(hats), "--out", str(tmp_path / "broken"),
                                      "--detector", str(runs / "det"), "--classifier", str(runs / "typed"),
                                      "--no-default"])
    assert result.exit_code == 1 and "config.json" in result.output and "'sweater'" in result.output, result.output
    config["type_head"]["classes"] = ["blouse", "skirt", "none"]  # and a broken item_type_head entry
    config["item_type_head"]["classes"] = ["blouse", "cape"]
    (runs / "typed" / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["predict", "--images", str(hats), "--out", str(tmp_path / "broken-item"),
                                      "--detector", str(runs / "det"), "--classifier", str(runs / "typed"),
                                      "--no-default", "--single-item"])
    assert result.exit_code == 1 and "config.json" in result.output and "'cape'" in result.output, result.output


def test_single_item_type_the_detector_proposes_and_the_item_head_reranks():
    item = _garment("blouse", [0, 0, 100, 100], 0.9)
    same = _garment("dress", [2, 0, 100, 98], 0.4)  # another box of the same item
    part = _garment("skirt", [0, 0, 100, 40], 0.8)  # a box of its top part only: IoU 0.4, not the item
    classes = ["blouse", "dress", "skirt"]
    # the head is sure of dress, which the detector also proposed for the item: 0.4 x 0.8 beats blouse's 0.9 x 0.15
    assert item_type(item, [item, same, part], classes, np.array([0.15, 0.8, 0.05])) == "dress"
    # the head is unsure: the detector's type stands (0.9 x 0.4 against 0.4 x 0.35)
    assert item_type(item, [item, same], classes, np.array([0.4, 0.35, 0.25])) == "blouse"
    # a box that is not the item proposes nothing, however sure the head is of its type
    assert item_type(item, [item, part], classes, np.array([0.05, 0.05, 0.9])) == "blouse"
    # nor does a type no box proposed: a sure, wrong head cannot overrule a sure detector
    assert item_type(item, [item], classes, np.array([0.01, 0.98, 0.01])) == "blouse"
    # an item of a type the head was not fitted on keeps it, whatever else was proposed
    coat = _garment("outwear", [0, 0, 100, 100], 0.7)
    assert item_type(coat, [coat, same], classes, np.array([0.2, 0.7, 0.1])) == "outwear"
