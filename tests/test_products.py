"""Class-folder product photos: the mapping reader, class-agnostic foreground boxes, per-domain type scores, and a
tiny multi-source detector run (COCO boxes + a class folder with pseudo-boxes) scored by ``evaluate``."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fashion2stage.app.cli import app
from fashion2stage.errors import DataError
from fashion2stage.foreground import foreground_box
from fashion2stage.formats.folders import read_class_folders, read_class_mapping
from fashion2stage.geometry import box_iou
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.domain import attribute_accuracy, type_report
from fashion2stage.records import Garment, ImageRecord

MAPPING = """\
classes:
  red: {type: blouse, attributes: {sleeve_length: long_sleeves}}
  blue: {type: skirt}
  hat: {type: none}
"""


def product_photo(rng, colour, size=(96, 80)) -> tuple[np.ndarray, list[float]]:
    """One item (a textured rectangle of ``colour``) on a plain, slightly noisy background; returns its box."""
    h, w = size
    im = np.clip(rng.normal(200, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    bw, bh = rng.integers(w // 3, w // 2), rng.integers(h // 3, h // 2)
    mx, my = w // 10, h // 10  # the item keeps clear of the border, which shows the background
    x, y = rng.integers(mx, w - bw - mx), rng.integers(my, h - bh - my)
    im[y:y + bh, x:x + bw] = np.clip(np.array(colour) + rng.normal(0, 10, (bh, bw, 3)), 0, 255).astype(np.uint8)
    return im, [float(x), float(y), float(x + bw), float(y + bh)]


def class_folder(root: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220)), ("hat", (30, 160, 30))):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(product_photo(rng, colour)[0]).save(root / cls / f"{i}.jpg")
    return root


# the value names of fashion-bench/cad (and of the shipped attribute model), not FashionAI's
LABELS = LabelSet(garment_types=["blouse", "outwear", "dress", "skirt", "trousers"],
                  attributes={"sleeve_length": ["sleeveless", "short_sleeves", "long_sleeves"]})


@pytest.fixture()
def mapping(tmp_path) -> Path:
    p = tmp_path / "classes.yaml"
    p.write_text(MAPPING)
    return p


def test_reader_labels_each_photo_by_its_folder(tmp_path, mapping):
    root = class_folder(tmp_path / "train", 2, seed=0)
    ds = read_class_folders(root, mapping, LABELS)
    assert len(ds) == 6
    by_class = {r.image_class: r for r in ds.records}
    assert by_class["red"].item_type == "blouse" and by_class["hat"].item_type is None
    values = LABELS.attributes["sleeve_length"]
    marks = by_class["red"].attributes["sleeve_length"]
    assert marks.count("y") == 1 and values[marks.index("y")] == "long_sleeves"
    assert not by_class["blue"].garments and by_class["blue"].path.is_file()


@pytest.mark.parametrize("text, problem, line", [
    ("classes:\n  red: {type: jumper}\n", "type 'jumper'", 2),
    ("classes:\n  red: {type: blouse}\n  hat: {type: none, attributes: {sleeve_length: long_sleeves}}\n",
     "cannot carry attributes", 3),
    ("classes:\n  red: {type: blouse, colour: red}\n", "unknown field", 2),
    ("classes:\n  red: {type: blouse, attributes: {sleeve_length: elbow}}\n", "no value 'elbow'", 2),
    ("classes: [red, blue]\n", "classes:", None),
    ("classes:\n  red: {type: blouse\n", "not valid YAML", 3),
])
def test_mapping_errors_name_the_file_and_line(tmp_path, text, problem, line):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        read_class_mapping(p, LABELS)
    assert problem in e.value.problem and e.value.path == str(p)
    if line is not None:
        assert e.value.line == line


def test_every_folder_must_be_mapped(tmp_path, mapping):
    root = class_folder(tmp_path / "d", 1, seed=0)
    (root / "shoes").mkdir()
    with pytest.raises(DataError, match="shoes"):
        read_class_folders(root, mapping)
    (root / "shoes").rmdir()
    for f in (root / "blue").iterdir():  # a mapped class without a folder is fine: one mapping, several folders
        f.unlink()
    (root / "blue").rmdir()
    assert {r.image_class for r in read_class_folders(root, mapping).records} == {"red", "hat"}


def test_foreground_box_finds_the_item_and_admits_failure():
    rng = np.random.default_rng(3)
    for _ in range(5):
        image, truth = product_photo(rng, (40, 90, 160), size=(300, 240))
        box, found = foreground_box(image)
        assert found and box_iou(np.asarray([truth]), box[None])[0, 0] > 0.8, (box, truth)
    noise = rng.integers(0, 255, (200, 160, 3), dtype=np.uint8)  # no background to tell an item from
    box, found = foreground_box(noise)
    assert not found and box[0] > 0 and box[2] < 160


def test_unreadable_photos_are_left_out_with_a_warning(tmp_path, mapping):
    from fashion2stage.pseudo_boxes import add_pseudo_boxes

    root = class_folder(tmp_path / "p", 2, seed=1)
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "hat" / "empty.jpg").write_bytes(b"")
    said = []
    ds = add_pseudo_boxes(read_class_folders(root, mapping, LABELS), "foreground", record=tmp_path / "c.json",
                          log=said.append)
    assert {r.file for r in ds.records} == {f"{c}/{i}.jpg" for c in ("red", "blue", "hat") for i in range(2)}
    assert sum("broken.jpg" in s for s in said) == 1 and sum("empty.jpg" in s for s in said) == 1
    assert all(len(r.garments) == (r.item_type is not None) for r in ds.records)


def test_type_report_by_hand():
    def rec(f, cls, t, garments=()):
        return ImageRecord(file=f, root=Path("."), image_class=cls, item_type=t, garments=list(garments))
    g = lambda t, s: Garment(type=t, box_xyxy=np.array([0.0, 0, 1, 1]), score=s)  # noqa: E731
    truth = [rec("a", "red", "blouse"), rec("b", "red", "blouse"), rec("c", "blue", "skirt"),
             rec("d", "hat", None), rec("e", "hat", None)]
    preds = [rec("a", None, None, [g("skirt", 0.3), g("blouse", 0.9)]),  # right: the top garment is a blouse
             rec("b", None, None, []),  # nothing found: wrong
             rec("c", None, None, [g("skirt", 0.5)]),
             rec("d", None, None, []), rec("e", None, None, [g("blouse", 0.6)])]
    r = type_report(truth, preds, ["blouse", "skirt"])
    assert r["type_accuracy"] == pytest.approx(2 / 3) and r["no_garment_rate"] == pytest.approx(1 / 2)
    assert r["six_way_accuracy"] == pytest.approx(3 / 5)
    assert r["labels"] == ["blouse", "skirt", "none"]
    assert r["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert r["per_class_accuracy"] == {"blue": 1.0, "hat": 0.5, "red": 0.5}
    with pytest.raises(ValueError, match="no prediction"):
        type_report(truth, preds[:2], ["blouse", "skirt"])


def test_attribute_accuracy_by_hand():
    wanted = [{"sleeve_length": "long_sleeves", "fine_category": "shirt"}, {"sleeve_length": "long_sleeves"}, {}, {}]
    answered = [{"sleeve_length": "long_sleeves", "fine_category": "t-shirt"},  # sleeves right, category wrong
                {},                                                            # nothing found: wrong
                {"sleeve_length": "short_sleeves"}, {}]                        # no label: not counted
    assert attribute_accuracy(wanted, answered) == {"sleeve_length": {"accuracy": 0.5, "n": 2},
                                                    "fine_category": {"accuracy": 0.0, "n": 1}}
    with pytest.raises(ValueError, match="3 answers"):
        attribute_accuracy(wanted, answered[:3])


def test_balance_types_gives_each_garment_type_an_equal_part_of_the_garment_share(tmp_path, mapping):
    from fashion2stage.sampling import split_class_folder
    from fashion2stage.sampling import SourceBalancedSampler

    root = class_folder(tmp_path / "products", 2, seed=3)
    for i in range(2, 8):  # 8 red (blouse) photos against 2 blue (skirt) ones
        (root / "red" / f"{i}.jpg").write_bytes((root / "red" / "0.jpg").read_bytes())
    ds = read_class_folders(root, mapping, LABELS)
    plain = split_class_folder(ds)
    assert [(len(p), share) for p, share in plain] == [(10, 1.0), (2, 1.0)]  # garments, then the hats
    parts = split_class_folder(ds, by_type=True)
    assert [(len(p), share) for p, share in parts] == [(8, 0.5), (2, 0.5), (2, 1.0)]
    assert [{r.item_type for r in p.records} for p, _ in parts] == [{"blouse"}, {"skirt"}, {None}]
    # drawn with those shares, a skirt photo comes up as often as a blouse photo, and a hat as often as both
    sampler = SourceBalancedSampler([len(p) for p, _ in parts], num_samples=4000, shares=[s for _, s in parts])
    drawn = np.bincount(np.searchsorted(sampler.offsets, list(sampler), side="right") - 1, minlength=3) / 4000
    assert np.allclose(drawn, [0.25, 0.25, 0.5], atol=0.03)
    # a source that is not a class folder, or a folder of one garment type, stays whole
    one_type = replace(ds, records=[r for r in ds.records if r.item_type != "skirt"])
    assert [(len(p), share) for p, share in split_class_folder(one_type, by_type=True)] == [(8, 1.0), (2, 1.0)]


@pytest.mark.slow
def test_multi_source_detector_and_class_folder_evaluation(tmp_path, mapping):
    from detectors.train import DetectTrainConfig, train_detector
    from test_detectors_train import synthetic_coco

    coco = synthetic_coco(tmp_path / "coco", 4, seed=1)
    products = class_folder(tmp_path / "products", 3, seed=5)
    cfg = DetectTrainConfig(data=[str(coco), str(products)], val=[str(products)], classes=str(mapping),
                            epochs=1, batch=3, image_size=96, epoch_size=12, balance_types=True,
                            project=str(tmp_path / "runs"), name="multi", threads=1)
    run = train_detector(cfg)
    config = json.loads((run / "config.json").read_text())
    # the class folder's hat photos are their own source: background weighs as much as the garments, which are
    # drawn type by type (--balance-types)
    assert config["source_sizes"] == [4, 3, 3, 3] and len(config["train_data"]) == 4
    assert config["source_shares"] == [1.0, 0.5, 0.5, 1.0]
    boxes = json.loads((run / "pseudo_boxes.json").read_text())
    assert len(boxes) == 6  # the 6 garment photos of train (= val here); the 3 hats train as background
    assert all(k.startswith("foreground|") for k in boxes)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["type_accuracy"] <= 1 and metrics["n_negative_photos"] == 3
    rows = (run / "results.csv").read_text().splitlines()
    assert "val_type_accuracy" in rows[0] and len(rows) == 2

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--class-folders", str(products), "--classes", str(mapping),
                                      "--detector", str(run), "--out", str(out), "--type-conf", "0.0"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())["types"]
    assert report["n_garment_photos"] == 6 and report["n_negative_photos"] == 3
    assert sum(map(sum, report["confusion_matrix"])) == 9
    # the mapping says red means long sleeves: the top garment's answer is scored on the 3 red photos
    assert report["attributes"]["sleeve_length"]["n"] == 3 and 0 <= report["attributes"]["sleeve_length"]["accuracy"] <= 1
    assert "top garment's attributes against the mapping: sleeve_length" in result.output
    assert (out / "confusion_types.png").stat().st_size > 1000


@pytest.mark.slow
def test_classify_train_reads_a_class_folder_beside_a_label_file(tmp_path):
    """Class-folder photos train the attribute heads on their foreground boxes, drawn with an equal share."""
    from classifiers.train_attributes import AttributeTrainConfig, train
    from test_attributes import _csv_dataset

    cad = tmp_path / "cad"
    (tmp_path / "m.yaml").write_text("classes:\n  red: {type: blouse, attributes: {sleeve_length: long}}\n"
                                     "  blue: {type: skirt}\n  hat: {type: none}\n")
    products = class_folder(tmp_path / "products", 2, seed=7)
    cfg = AttributeTrainConfig(data=[str(_csv_dataset(cad, "train")), str(products)],
                               val=[str(_csv_dataset(cad, "val", 4)), str(products)], classes=str(tmp_path / "m.yaml"),
                               epochs=1, image_size=64, batch_size=4, pretrained=False,
                               project=str(tmp_path / "runs"), name="tiny")
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    # 6 whole-image cad samples + the 2 red product photos (blue and hat carry no attribute of the model)
    assert metrics["train_crop_sources"] == {"whole": 6, "gt": 2}
    assert metrics["n_train_samples"] == 8
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2
