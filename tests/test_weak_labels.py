"""Weak labels (issue 24): the tag-CSV reader and its mapping rule, the one source reader, the teacher -> pseudo-box
rules (keep, drop, ignore, pin the fine category) with a teacher whose boxes the test sets, flip TTA, the ignore
rule inside Faster R-CNN's loss, tag precision / recall / F1 by hand, and a tiny student run through the command."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.detections import FlipTTA, detect_cached, fuse_flipped
from fashion2stage.errors import DataError
from fashion2stage.formats.tags import pinned_attributes, read_tags, tagged_types
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.tags import tag_report
from fashion2stage.results import GarmentPrediction
from fashion2stage.roles import Detector
from fashion2stage.sources import read_source
from fashion2stage.weak_labels import pseudo_label

MAPPING = """\
unmapped: {rule}
classes:
  coat:   {{type: outwear, attributes: {{fine_category: coat}}}}
  jacket: {{type: outwear, attributes: {{fine_category: jacket}}}}
  jeans:  {{type: trousers, attributes: {{fine_category: jeans}}}}
  skirt:  {{type: skirt, attributes: {{fine_category: skirt}}}}
  bag: none
"""
LABELS = LabelSet(garment_types=["blouse", "outwear", "dress", "skirt", "trousers"],
                  attributes={"fine_category": ["coat", "jacket", "jeans", "skirt"]})


def write(tmp_path: Path, rows: list[str], rule: str = "error", photos: bool = False) -> tuple[Path, Path]:
    (tmp_path / "m.yaml").write_text(MAPPING.format(rule=rule))
    (tmp_path / "tags.csv").write_text("image,tags\n" + "".join(r + "\n" for r in rows))
    if photos:
        (tmp_path / "images").mkdir(exist_ok=True)
        for r in rows:
            Image.new("RGB", (60, 80), (90, 90, 90)).save(tmp_path / r.split(",")[0])
    return tmp_path / "tags.csv", tmp_path / "m.yaml"


def test_tag_reader_good_rows(tmp_path):
    csv, m = write(tmp_path, ["images/1.jpg,bag coat jeans", "images/2.jpg,", "images/3.jpg,coat  jacket skirt"])
    ds = read_tags(csv, m)
    assert [r.file for r in ds.records] == ["images/1.jpg", "images/2.jpg", "images/3.jpg"]
    assert [r.tags for r in ds.records] == [["bag", "coat", "jeans"], [], ["coat", "jacket", "skirt"]]
    assert ds.records[0].root == tmp_path and not ds.records[0].garments
    assert [tagged_types(r, ds.tags) for r in ds.records] == [{"outwear", "trousers"}, set(),
                                                             {"outwear", "skirt"}]
    # the fine category is pinned only where the photo's tags of that type agree on one
    assert pinned_attributes(ds.records[0], ds.tags, "outwear") == {"fine_category": "coat"}
    assert pinned_attributes(ds.records[2], ds.tags, "outwear") == {}  # coat and jacket
    assert pinned_attributes(ds.records[2], ds.tags, "skirt") == {"fine_category": "skirt"}
    assert pinned_attributes(ds.records[0], ds.tags, "skirt") == {}


@pytest.mark.parametrize("rows, problem, line", [
    (["images/1.jpg,coat", "images/2.jpg,coat,jeans"], "expected 2 columns", 3),
    (["images/1.jpg,coat", ",coat"], "empty image path", 3),
    (["../1.jpg,coat"], "escapes the dataset root", 2),
    (["images/1.jpg,coat", "images/1.jpg,jeans"], "listed twice (first on line 2)", 3),
    (["images/1.jpg,coat", "images/2.jpg,coat hat"], "tag 'hat' is not in the mapping", 3),
])
def test_malformed_rows_name_file_and_line(tmp_path, rows, problem, line):
    csv, m = write(tmp_path, rows)
    with pytest.raises(DataError) as e:
        read_tags(csv, m)
    assert str(e.value).startswith(f"{csv}:{line}: ") and problem in str(e.value)


def test_header_and_unmapped_rules(tmp_path):
    csv, m = write(tmp_path, ["images/1.jpg,coat hat hat", "images/2.jpg,scarf"], rule="ignore")
    with pytest.warns(UserWarning, match=r"3 tag\(s\) not in .* ignored \('unmapped: ignore'\): hat x2, scarf x1"):
        ds = read_tags(csv, m)
    assert [r.tags for r in ds.records] == [["coat"], []]
    m.write_text(MAPPING.format(rule="drop"))
    with pytest.raises(DataError, match=r"m.yaml:1: a tag mapping needs a top-level 'unmapped:' rule"):
        read_tags(csv, m)
    m.write_text(MAPPING.format(rule="error").split("\n", 1)[1])  # no rule at all
    with pytest.raises(DataError, match="needs a top-level 'unmapped:' rule"):
        read_tags(csv, m)
    m.write_text(MAPPING.format(rule="error"))
    csv.write_text("path,labels\nimages/1.jpg,coat\n")
    with pytest.raises(DataError, match=r"tags.csv:1: expected the header line 'image,tags'"):
        read_tags(csv, m)


def test_the_shipped_ccp_mapping_reads_every_ccp_tag(bench):
    ds = read_tags(bench / "ccp_tags/tags_val.csv", Path(__file__).parents[1] / "configs/fashion-bench-tags.yaml")
    assert len(ds) == 160 and sum(1 for r in ds.records if not tagged_types(r, ds.tags)) == 3
    coco = json.loads((bench / "ccp/annotations/instances_train.json").read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    fine = {a["id"]: a["name"] for a in coco["attributes"]}
    in_ccp = {fine[a["attribute_ids"][0]]: cats[a["category_id"]] for a in coco["annotations"]}
    assert {t: s["type"] for t, s in ds.tags.items() if s["type"] and s["complete"]} == in_ccp  # as in ccp/
    assert {t for t, s in ds.tags.items() if not s["complete"]} == {  # cad's categories (scripts/attribute_tags.py)
        "cad_" + v for v in json.loads((bench / "cad/attributes.json").read_text())["category"]} - {
        "cad_outerwear"} | {"cad_outwear"}


def test_one_source_reader_tells_formats_apart(tmp_path):
    csv, m = write(tmp_path, ["images/1.jpg,coat"], photos=True)
    assert read_source(csv, m).tags and read_source(csv, m, kind="attributes").records[0].tags == ["coat"]
    with pytest.raises(DataError, match="a tag CSV needs --classes MAPPING"):
        read_source(csv)
    (tmp_path / "folder" / "red").mkdir(parents=True)
    with pytest.raises(DataError, match="a class-folder source needs --classes MAPPING"):
        read_source(tmp_path / "folder")
    attr = tmp_path / "label.csv"
    attr.write_text("images/1.jpg,sleeve_length,nyn\n")
    (tmp_path / "s.json").write_text(json.dumps({"sleeve_length": ["a", "b", "c"]}))
    ds = read_source(attr, schema=str(tmp_path / "s.json"), kind="attributes")
    assert not ds.tags and ds.records[0].attributes == {"sleeve_length": "nyn"}
    (tmp_path / "images/2.png").unlink(missing_ok=True)
    csv.write_text("image,tags\nimages/1.jpg,coat\nimages/2.jpg,coat\n")
    with pytest.raises(DataError, match="1 image file\\(s\\) not found"):
        read_source(csv, m)


class FixedTeacher:
    """A real :class:`~fashion2stage.roles.Detector` whose garments the test sets: per photo (by its mean grey
    level), a fixed list; on a mirror image, the same garments mirrored (a perfectly consistent detector), or
    none with ``blind_to_mirrors``."""

    def __init__(self, by_level: dict[int, list[GarmentPrediction]], blind_to_mirrors: bool = False):
        self.labels = LABELS
        self.by_level, self.blind, self.calls = by_level, blind_to_mirrors, 0

    def predict(self, images, conf=0.25, batch_size=8):
        self.calls += 1
        out = []
        for im in images:
            gs = self.by_level.get(int(im[:, :, 0].mean().round()), [])
            mirrored = bool(im[0, -1, 1] > im[0, 0, 1])  # the photos carry a marker in their top-left pixel
            if mirrored and self.blind:
                gs = []
            elif mirrored:
                w = im.shape[1]
                gs = [GarmentPrediction(g.type, box=[w - g.box[2], g.box[1], w - g.box[0], g.box[3]], score=g.score)
                      for g in gs]
            out.append([g for g in gs if g.score >= conf])
        return out


def box(x1, y1, x2, y2):
    return [float(x1), float(y1), float(x2), float(y2)]


def _found(t, b, score):
    """A garment as a detector returns it."""
    return GarmentPrediction(type=t, score=score, box=b)


def tagged_photos(tmp_path):
    rows = ["images/1.png,bag coat jeans", "images/2.png,coat jacket skirt", "images/3.png,bag", "images/4.png,skirt"]
    csv, m = write(tmp_path, rows)
    (tmp_path / "images").mkdir()
    for level, r in enumerate(rows, 1):
        im = np.full((80, 60, 3), 10 * level, dtype=np.uint8)
        im[0, 0, 1] = 255  # the marker: tells the teacher a mirrored photo
        Image.fromarray(im).save(tmp_path / r.split(",")[0])
    teacher = FixedTeacher({
        10: [_found("outwear", box(5, 5, 50, 50), 0.9), _found("dress", box(5, 5, 55, 75), 0.95),
             _found("trousers", box(10, 40, 50, 79), 0.4)],   # coat + jeans tagged; no dress tag
        20: [_found("outwear", box(5, 5, 50, 50), 0.8), _found("skirt", box(10, 40, 50, 79), 0.75),
             _found("outwear", box(0, 0, 58, 60), 0.71)],
        30: [_found("blouse", box(5, 5, 50, 50), 0.99)],   # no garment tag at all
        40: [_found("skirt", box(10, 40, 50, 79), 0.3)],   # the tagged skirt is found, but weakly
    })
    return read_tags(csv, m, LABELS), teacher


def test_teacher_boxes_are_kept_dropped_and_ignored_by_the_tags(tmp_path):
    ds, teacher = tagged_photos(tmp_path)
    assert isinstance(teacher, Detector)
    detections = detect_cached(teacher, ds.records, tmp_path / "teacher.json", conf=0.05)
    assert detect_cached(teacher, ds.records, tmp_path / "teacher.json", conf=0.05).keys() == detections.keys()
    assert teacher.calls == 1  # the second pass read the cache
    lines = []
    out = pseudo_label(ds, detections, conf=0.7, log=lines.append)
    by_file = {r.file: r for r in out.records}
    # photo 3 has no garment tag, photo 4 no kept box: both are left out
    assert sorted(by_file) == ["images/1.png", "images/2.png"]
    one = by_file["images/1.png"]
    # the dress (0.95) is dropped: the tags rule it out; the trousers (0.4) are under the threshold
    assert [(g.type, g.score) for g in one.garments] == [("outwear", 0.9)]
    assert one.ignore_types == ["trousers"]  # tagged (jeans), no kept box: not to be learnt as background
    fine = LABELS.attributes["fine_category"]
    assert one.garments[0].attributes == {"fine_category": "".join("y" if v == "coat" else "n" for v in fine)}
    two = by_file["images/2.png"]
    assert sorted((g.type, g.score) for g in two.garments) == [("outwear", 0.71), ("outwear", 0.8), ("skirt", 0.75)]
    assert two.ignore_types == []
    # coat and jacket are both outwear: no fine category for the coats; the skirt's is pinned
    assert {g.type: g.attributes for g in two.garments if g.type == "outwear"} == {"outwear": {}}
    assert [g.attributes for g in two.garments if g.type == "skirt"][0]["fine_category"] == "nnny"
    assert "2 of 4 photos kept" in lines[0] and "1 boxes of untagged types dropped" in lines[0]
    # a lower threshold keeps photo 4's skirt, and photo 1's trousers, which then are no longer ignored
    low = {r.file: r for r in pseudo_label(ds, detections, conf=0.3, log=lambda _: None).records}
    assert sorted(low) == ["images/1.png", "images/2.png", "images/4.png"]
    assert low["images/1.png"].ignore_types == [] and len(low["images/1.png"].garments) == 2


def test_partial_tags_rule_nothing_out(tmp_path):
    """A ``complete: false`` tag (a catalogue category, cad's outer garment) names one garment and is silent on the
    rest: on its photo the teacher's confident boxes of other types are kept, every type without a kept box is
    ignored, and tag scores do not count an untagged type shown there as a false positive."""
    from fashion2stage.formats.tags import fully_tagged
    from fashion2stage.metrics.tags import score_tags

    ds, teacher = tagged_photos(tmp_path)  # photo 1: "bag coat jeans", complete
    (tmp_path / "m.yaml").write_text(MAPPING.format(rule="error") + "  outer_coat: {type: outwear, complete: false}\n")
    (tmp_path / "tags.csv").write_text("image,tags\nimages/1.png,outer_coat\nimages/2.png,bag coat jeans\n")
    part = read_tags(tmp_path / "tags.csv", tmp_path / "m.yaml", LABELS)
    assert [fully_tagged(r, part.tags) for r in part.records] == [False, True]
    detections = detect_cached(teacher, part.records, tmp_path / "teacher.json", conf=0.05)
    lines = []
    by_file = {r.file: r for r in pseudo_label(part, detections, conf=0.7, log=lines.append).records}
    one = by_file["images/1.png"]  # the level-10 photo: outwear 0.9, dress 0.95, trousers 0.4
    assert sorted((g.type, g.score) for g in one.garments) == [("dress", 0.95), ("outwear", 0.9)]
    assert one.ignore_types == ["blouse", "skirt", "trousers"]  # unknown, not background; trousers under 0.7
    assert [g.attributes for g in one.garments] == [{}, {}]  # outer_coat pins no fine category
    # the same photo, fully tagged "bag coat jeans": the dress is dropped (a negative), only jeans are ignored
    complete = {r.file: r for r in pseudo_label(ds, detect_cached(teacher, ds.records, tmp_path / "t2.json",
                                                                  conf=0.05), conf=0.7, log=lambda _: None).records}
    assert [g.type for g in complete["images/1.png"].garments] == ["outwear"]
    assert complete["images/1.png"].ignore_types == ["trousers"]
    assert "1 boxes of untagged types kept (partial tags)" in lines[0]
    assert "3 untagged types without a box (ignored, partial tags)" in lines[0]
    # scored: the partial photo shows outwear (tagged: a true positive) and a dress (unknown: not counted)
    shown = {"images/1.png": [_found("outwear", box(0, 0, 9, 9), 0.9), _found("dress", box(0, 0, 9, 9), 0.9)],
             "images/2.png": [_found("dress", box(0, 0, 9, 9), 0.9)]}
    r = score_tags(part, shown)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 2)  # fp: photo 2's dress; fn: its coat and jeans
    # the whole file at once, and a wrong value with its line
    (tmp_path / "m.yaml").write_text(MAPPING.format(rule="error").replace("classes:", "complete: false\nclasses:")
                                     + "  outer_coat: {type: outwear, complete: true}\n")
    whole = read_tags(tmp_path / "tags.csv", tmp_path / "m.yaml")
    assert [fully_tagged(r, whole.tags) for r in whole.records] == [True, False]  # a tag's own word wins
    (tmp_path / "m.yaml").write_text(MAPPING.format(rule="error").replace("classes:", "complete: maybe\nclasses:"))
    with pytest.raises(DataError, match=r"m.yaml:2: 'complete:' must be true or false, got 'maybe'"):
        read_tags(tmp_path / "tags.csv", tmp_path / "m.yaml")
    (tmp_path / "m.yaml").write_text(MAPPING.format(rule="error") + "  outer_coat: {type: outwear, complete: 0}\n")
    with pytest.raises(DataError, match=r"class 'outer_coat': 'complete' must be true or false"):
        read_tags(tmp_path / "tags.csv", tmp_path / "m.yaml")


def test_attribute_crops_learn_the_fine_category_the_tags_pin(tmp_path):
    """classify-train's samples from a tag source: one per kept teacher box with a pinned fine category, cut from the
    teacher's box as it is (a real detector box: no jitter)."""
    from classifiers.attribute_data import build_samples

    ds, teacher = tagged_photos(tmp_path)
    detections = detect_cached(teacher, ds.records, tmp_path / "teacher.json", conf=0.05)
    samples, _ = build_samples(pseudo_label(ds, detections, conf=0.7, log=lambda _: None), LABELS)
    got = sorted((s.path.name, LABELS.attributes["fine_category"][s.marks["fine_category"].index("y")],
                  tuple(s.box_xyxy)) for s in samples)
    # photo 1: its coat; photo 2: its skirt (its two outwear boxes are coat or jacket: no label)
    assert got == [("1.png", "coat", (5.0, 5.0, 50.0, 50.0)), ("2.png", "skirt", (10.0, 40.0, 50.0, 79.0))]
    assert all(not s.jitter and s.source == "teacher" for s in samples)


def test_flip_tta_keeps_what_both_views_agree_on(tmp_path):
    ds, teacher = tagged_photos(tmp_path)
    photo = np.asarray(Image.open(ds.records[0].path))
    agreed = FlipTTA(teacher).predict([photo], conf=0.05)[0]
    assert [(g.type, round(g.score, 3)) for g in agreed] == [("dress", 0.95), ("outwear", 0.9), ("trousers", 0.4)]
    assert np.allclose(agreed[1].box_xyxy, [5, 5, 50, 50])
    # a detector that finds nothing on mirror images: every garment is seen once, at half its score
    once = FlipTTA(FixedTeacher(teacher.by_level, blind_to_mirrors=True)).predict([photo], conf=0.3)[0]
    assert [(g.type, round(g.score, 3)) for g in once] == [("dress", 0.475), ("outwear", 0.45)]
    # fused by hand: two overlapping boxes of one type, score-weighted
    fused = fuse_flipped([_found("skirt", box(0, 0, 10, 10), 0.6)], [_found("skirt", box(0, 0, 10, 12), 0.2)])
    assert len(fused) == 1 and np.isclose(fused[0].score, 0.4) and np.allclose(fused[0].box_xyxy, [0, 0, 10, 10.5])


def test_faster_rcnn_loss_leaves_an_ignored_type_out_of_the_background():
    import torch

    from detectors.faster_rcnn import FasterRCNNConfig, build_faster_rcnn
    from detectors.faster_rcnn_train import honour_ignored_types

    torch.manual_seed(0)
    model = build_faster_rcnn(FasterRCNNConfig(num_classes=6, min_size=(96,), max_size=128), pretrained_backbone=False)
    model.train()
    image = [torch.rand(3, 96, 96)]

    def class_loss(ignore) -> float:
        torch.manual_seed(1)  # the same sampled proposals every time
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "ignore": torch.tensor(ignore, dtype=torch.float32)}
        return model(image, [target])["loss_classifier"].item()
    before = class_loss([0] * 6)
    honour_ignored_types(model)
    assert class_loss([0] * 6) == pytest.approx(before)  # nothing ignored: the loss torchvision computes
    one = class_loss([0, 0, 1, 0, 0, 0])
    assert 0 < one < before  # one type out of the background's softmax
    assert class_loss([0, 1, 1, 1, 1, 1]) == pytest.approx(0.0, abs=1e-6)  # only "background" left to choose


def test_tag_scores_by_hand():
    types = ["blouse", "skirt", "trousers"]
    tagged = [{"blouse", "skirt"}, {"trousers"}, set(), {"blouse"}]
    shown = [{"blouse"}, {"trousers", "skirt"}, {"blouse"}, {"blouse"}]
    r = tag_report(tagged, shown, types)
    # tp: (0,blouse) (1,trousers) (3,blouse) = 3; fp: (1,skirt) (2,blouse) = 2; fn: (0,skirt) = 1
    assert (r["tp"], r["fp"], r["fn"]) == (3, 2, 1)
    assert r["precision"] == pytest.approx(3 / 5) and r["recall"] == pytest.approx(3 / 4)
    assert r["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert r["per_type"]["blouse"]["precision"] == pytest.approx(2 / 3) and r["per_type"]["blouse"]["recall"] == 1.0
    assert r["per_type"]["skirt"]["f1"] == 0.0 and r["per_type"]["trousers"]["f1"] == 1.0


@pytest.mark.slow
def test_student_trains_on_teacher_boxes_through_the_command(tmp_path, bench):
    """The shipped detector, as teacher, labels 3 tagged street photos; ``detect-train --teacher`` trains a tiny
    student on them beside 2 photos of true boxes (one source each), scores it on the tags each epoch, and
    ``evaluate --tags`` scores it end to end."""
    from typer.testing import CliRunner

    from fashion2stage.app.cli import app

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "tags").mkdir()
    (tmp_path / "tags/images").symlink_to(bench / "ccp_tags/images")
    rows = [r for r in (bench / "ccp_tags/tags_val.csv").read_text().splitlines()[1:] if "skirt" in r][:3]
    tags = tmp_path / "tags/tags.csv"
    tags.write_text("image,tags\n" + "\n".join(rows) + "\n")
    coco = json.loads((bench / "ccp/annotations/instances_val.json").read_text())
    keep = {im["id"] for im in coco["images"][:2]}
    coco = {**coco, "images": [im for im in coco["images"] if im["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}
    (tmp_path / "ccp/annotations").mkdir(parents=True)
    (tmp_path / "ccp/images").symlink_to(bench / "ccp/images")
    (tmp_path / "ccp/annotations/two.json").write_text(json.dumps(coco))
    mapping, teacher = root / "configs/fashion-bench-tags.yaml", root / "fashion2stage/default_model/detector"
    runner = CliRunner()
    result = runner.invoke(app, [
        "detect-train", "--data", str(tmp_path / "ccp/annotations/two.json"), "--data", str(tags),
        "--classes", str(mapping), "--teacher", str(teacher), "--teacher-conf", "0.5", "--val", str(tags),
        "--epochs", "1", "--batch", "2", "--image-size", "64", "--threads", "1", "--project", str(tmp_path / "runs"),
        "--name", "student"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs/student"
    cached = json.loads((run / "teacher_1.json").read_text())["images"]
    assert sorted(cached) == sorted(r.split(",")[0] for r in rows)  # the teacher's garments, cached
    log = (run / "train.log").read_text()
    assert "pseudo-boxes (teacher, score >= 0.5)" in log and "3 of 3 photos kept" in log
    config = json.loads((run / "config.json").read_text())
    assert config["source_sizes"] == [2, 3] and config["source_shares"] == [1.0, 1.0]  # true boxes, pseudo-boxes
    assert config["train"]["teacher"] == str(teacher)
    header = (run / "results.csv").read_text().splitlines()[0]
    assert "val_tag_f1" in header
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_photos"] == 3 and metrics["conf"] == 0.5 and set(metrics["per_type"]) == {
        "blouse", "outwear", "dress", "skirt", "trousers"}
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--tags", str(tags), "--classes", str(mapping), "--detector",
                                 str(teacher), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())["tags"]
    assert report["n_photos"] == 3 and report["conf"] == 0.5 and report["tp"] >= 1  # each photo shows a skirt
    assert "tags (garments scoring >= 0.5): precision" in result.output
