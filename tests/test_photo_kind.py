"""The photo kind (fashion2stage/app/pipeline.py ``judge``, classifiers/photo_kind.py): the decision rule, the flags that
force it, the threshold choice, the photo lists, and the JSONL field; on a tiny real attribute model whose
photo-kind head the test writes itself, and on the shipped bundle with real photos."""
import json

import numpy as np
import pytest
import torch

from classifiers.attributes import AttributeModel, AttributePredictor
from classifiers.photo_kind import choose_threshold, photo_paths
from classifiers.type_head import attach, crop_features
from fashion2stage.app.pipeline import Pipeline, judge
from fashion2stage.errors import DataError
from fashion2stage.geometry import CropSpec, crop
from fashion2stage.labels import LabelSet
from fashion2stage.results import ImagePrediction, PhotoKind
from fashion2stage.roles import MULTI_ITEM, PHOTO_KIND_KEY, PHOTO_KINDS, SINGLE_ITEM


def test_judge_flag_then_head_then_multi():
    assert judge(None, 0.7, 0.6) == PhotoKind(SINGLE_ITEM, 0.7, "model")
    assert judge(None, 0.6, 0.6) == PhotoKind(SINGLE_ITEM, 0.6, "model")  # from the threshold on
    assert judge(None, 0.59, 0.6) == PhotoKind(MULTI_ITEM, 0.59, "model")
    assert judge(True, 0.1, 0.6) == PhotoKind(SINGLE_ITEM, 0.1, "flag")  # the flag overrules the head
    assert judge(False, 0.9, 0.6) == PhotoKind(MULTI_ITEM, 0.9, "flag")
    assert judge(None, None, None) == PhotoKind(MULTI_ITEM, None, "default")  # no head: as before it existed
    assert judge(True, None, None) == PhotoKind(SINGLE_ITEM, None, "flag")


def test_threshold_keeps_the_widest_margin_at_the_best_balanced_accuracy():
    p = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.05])
    single = np.array([True, True, True, False, False, False])
    t, stats = choose_threshold(p, single)
    # 0.3 / 0.2 is the only perfect cut: the threshold lies between them
    assert 0.2 < t <= 0.3 and stats["balanced_accuracy"] == 1.0 and stats["photos"] == {SINGLE_ITEM: 3, MULTI_ITEM: 3}
    t, stats = choose_threshold(np.array([0.9, 0.4, 0.6, 0.1]), np.array([True, True, False, False]))
    assert stats["balanced_accuracy"] == 0.75  # one error whatever the cut: among those, the middle one
    assert 0.1 < t <= 0.9
    with pytest.raises(ValueError, match="both kinds"):
        choose_threshold(p, np.ones(6, bool))


def test_photo_lists_from_folders_coco_and_csv(tmp_path):
    for name in ("a/1.jpg", "a/2.png", "b/3.jpg", "images/4.jpg", "images/5.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("not a photo")
    assert [p.name for p in photo_paths(tmp_path / "a")] == ["1.jpg", "2.png"]
    (tmp_path / "annotations").mkdir()
    coco = tmp_path / "annotations" / "i.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "5.jpg"}, {"id": 2, "file_name": "4.jpg"}]}))
    assert photo_paths(coco) == [tmp_path / "images" / "4.jpg", tmp_path / "images" / "5.jpg"]
    tags = tmp_path / "tags.csv"  # a header, and a photo named on several rows (a FashionAI label.csv)
    tags.write_text("image,tags\nimages/4.jpg,coat\nimages/4.jpg,jeans\nb/3.jpg,shirt\n")
    assert photo_paths(tags) == [tmp_path / "b" / "3.jpg", tmp_path / "images" / "4.jpg"]
    tags.write_text("image,tags\nimages/4.jpg,coat\nimages/9.jpg,shirt\n")
    with pytest.raises(DataError, match=r"tags\.csv.*line 3.*9\.jpg"):
        photo_paths(tags)
    with pytest.raises(DataError, match="no such folder"):
        photo_paths(tmp_path / "missing")


def test_head_entry_is_checked():
    """config.json's photo_kind_head goes through the attribute run's typed spec: classes in PHOTO_KINDS order, a
    threshold that is a probability, no unknown field."""
    from fashion2stage.errors import DataError as SpecError
    from fashion2stage.jsonspec import from_json
    from fashion2stage.specs import PhotoKindHeadSpec

    assert from_json(PhotoKindHeadSpec, {"classes": list(PHOTO_KINDS), "threshold": 0.4}, "config.json",
                     "photo_kind_head").threshold == 0.4
    for bad, field in (({"classes": ["single_item", "multi_item"], "threshold": 0.4}, "classes"),
                       ({"classes": list(PHOTO_KINDS), "threshold": 1.5}, "threshold"),
                       ({"classes": list(PHOTO_KINDS), "threshold": 0.4, "thresold": 1}, "thresold")):
        with pytest.raises(SpecError, match=field):
            from_json(PhotoKindHeadSpec, bad, "config.json", "photo_kind_head")


def test_the_field_round_trips_and_follows_the_schema(check_line):
    line = ImagePrediction(image="a.jpg", width=4, height=3, photo_kind=PhotoKind(SINGLE_ITEM, 0.91234, "model")).to_dict()
    assert check_line(line)["photo_kind"] == {"value": "single_item", "p_single": 0.9123, "by": "model"}
    assert ImagePrediction.from_dict(line).to_dict() == line
    check_line(ImagePrediction(image="a.jpg", width=4, height=3, photo_kind=PhotoKind(MULTI_ITEM)).to_dict())
    bad = {**line, "photo_kind": {"value": "several", "p_single": 0.5, "by": "model"}}
    with pytest.raises(Exception, match="several"):
        check_line(bad)


def _photo(colour) -> np.ndarray:
    img = np.full((80, 64, 3), 128, np.uint8)
    img[10:70, 12:52] = colour
    return img


@pytest.fixture(scope="module")
def tiny():
    """A real attribute model (timm's tiny test backbone, random weights) and two photos; its photo-kind head is
    written so that the red photo reads single-item (p ~ 1) and the blue one multi-item (p ~ 0)."""
    torch.manual_seed(0)
    labels = LabelSet(garment_types=["blouse"], attributes={"pattern": ["plain", "striped"]})
    model = AttributeModel("test_efficientnet", {"pattern": 2}, pretrained=False).eval()
    from fashion2stage.nets import TorchNet
    from fashion2stage.specs import Normalisation
    predictor = AttributePredictor(net=TorchNet(model, outputs=tuple(model.keys)), heads=model.keys, labels=labels,
                                   crop_spec=CropSpec(width=48, height=48),
                                   normalisation=Normalisation.of_backbone("test_efficientnet"),
                                   photo_kind_threshold=0.5)
    red, blue = _photo((220, 40, 40)), _photo((40, 40, 220))
    # the pipeline judges a photo without garments by the crop of the whole photo: the head separates these two
    f = crop_features(predictor, np.stack([crop(im, [0, 0, 64, 80], predictor.crop_spec)[0] for im in (red, blue)]))
    d = (f[0] - f[1]).astype(np.float64)
    w = np.zeros((2, f.shape[1]))
    w[PHOTO_KINDS.index(SINGLE_ITEM)] = 20 * d / (d @ d)
    b = np.zeros(2)
    b[PHOTO_KINDS.index(SINGLE_ITEM)] = -w[PHOTO_KINDS.index(SINGLE_ITEM)] @ (f[0] + f[1]) / 2
    attach(model, w.astype(np.float32), b.astype(np.float32), PHOTO_KIND_KEY)
    return predictor, red, blue


def test_the_head_is_a_typed_output_not_an_attribute(tiny):
    predictor, red, blue = tiny
    crops = np.stack([crop(im, [0, 0, 64, 80], predictor.crop_spec)[0] for im in (red, blue)])
    out = predictor.predict(crops)
    assert list(out.attributes) == ["pattern"] and out.type_probs is None and out.item_type_probs is None
    assert out.p_single.shape == (2,) and out.p_single[0] > 0.99 and out.p_single[1] < 0.01


def test_pipeline_records_the_kind_the_head_or_the_flag_decides(tiny, check_line):
    predictor, red, blue = tiny
    auto = Pipeline(attributes=predictor)([red, blue], ["red", "blue"])
    assert [p.photo_kind.value for p in auto] == [SINGLE_ITEM, MULTI_ITEM]
    assert auto[0].photo_kind.p_single > 0.99 and auto[1].photo_kind.p_single < 0.01
    assert {p.photo_kind.by for p in auto} == {"model"}
    for flag, kind in ((True, SINGLE_ITEM), (False, MULTI_ITEM)):
        forced = Pipeline(attributes=predictor, single_item=flag)([red, blue])
        assert [p.photo_kind.value for p in forced] == [kind, kind] and {p.photo_kind.by for p in forced} == {"flag"}
        assert [p.photo_kind.p_single for p in forced] == [p.photo_kind.p_single for p in auto]
    for p in auto:
        check_line(p.to_dict())
    predictor.photo_kind_threshold = None  # a model without the head's threshold: multi-item, as before
    try:
        assert [p.photo_kind.by for p in Pipeline(attributes=predictor)([red])] == ["default"]
    finally:
        predictor.photo_kind_threshold = 0.5


@pytest.mark.data
def test_shipped_bundle_judges_product_photos_single_and_street_photos_multi(bench):
    from fashion2stage import Reader

    products = [sorted((bench / "products" / "val" / c).glob("*.jpg"))[0] for c in ("t-shirt", "pants", "dress")]
    street = sorted((bench / "ccp" / "images").glob("*.jpg"))[:3]
    preds = Reader()(products + street)
    kinds = [p.photo_kind for p in preds]
    assert all(k.by == "model" for k in kinds)
    assert [k.value for k in kinds] == [SINGLE_ITEM] * 3 + [MULTI_ITEM] * 3, kinds
    assert all(len(p.garments) <= 1 for p in preds[:3])
