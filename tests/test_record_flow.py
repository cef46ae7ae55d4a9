"""One garment record through the pipeline (fashion2stage/app/pipeline.py): the detector's GarmentPrediction is the
record each stage fills, the type heads are typed outputs of the attribute model, and numbers are rounded only where
the line is written, so that the line, the other output files and evaluate read the same numbers.

On a tiny real attribute model (timm's test backbone, random weights) whose type heads the test writes itself:
constant answers (zero weights, chosen biases), so that what the pipeline does with them is known by hand."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from classifiers.attributes import AttributeModel, AttributePredictor
from classifiers.type_head import attach
from fashion2stage.app.evaluate import read_predictions
from fashion2stage.app.outputs import PredictionWriters
from fashion2stage.app.pipeline import Pipeline
from fashion2stage.geometry import CropSpec, xyxy_to_xywh
from fashion2stage.labels import LabelSet
from fashion2stage.nets import TorchNet
from fashion2stage.results import GarmentPrediction
from fashion2stage.roles import ITEM_TYPE_KEY, NO_GARMENT, TYPE_KEY
from fashion2stage.specs import Normalisation

LABELS = LabelSet(garment_types=["blouse", "skirt"],
                  attributes={"sleeve": ["short", "long"], "length": ["mini", "maxi"]},
                  attribute_types={"sleeve": ["blouse"], "length": ["skirt"]})
TYPE_CLASSES = ["blouse", "skirt", NO_GARMENT]
ITEM_CLASSES = ["blouse", "skirt"]


class FixedDetector:
    """A real (trivial) Detector: the same garments for every image, filtered by ``conf``."""

    def __init__(self, garments: list[GarmentPrediction]):
        self.labels, self.garments = LABELS, garments

    def predict(self, images, conf=0.25, batch_size=8):
        return [[g for g in self.garments if g.score >= conf] for _ in images]


def _constant_head(model, key: str, probs: list[float]) -> None:
    """A head that answers ``probs`` on every crop: zero weights, log-probability biases."""
    w = np.zeros((len(probs), model.backbone.num_features), np.float32)
    attach(model, w, np.log(np.asarray(probs, np.float32)), key)


@pytest.fixture(scope="module")
def heads():
    torch.manual_seed(0)
    model = AttributeModel("test_efficientnet", {"sleeve": 2, "length": 2}, pretrained=False).eval()
    _constant_head(model, TYPE_KEY, [0.25, 0.25, 0.5])  # p(garment) = 0.5 on every crop
    _constant_head(model, ITEM_TYPE_KEY, [0.1, 0.9])  # the item-type head says skirt
    return AttributePredictor(net=TorchNet(model, outputs=tuple(model.keys)), heads=model.keys, labels=LABELS,
                              crop_spec=CropSpec(width=48, height=48),
                              normalisation=Normalisation.of_backbone("test_efficientnet"),
                              type_classes=TYPE_CLASSES, item_type_classes=ITEM_CLASSES)


PHOTO = np.full((100, 80, 3), 120, np.uint8)
BLOUSE = GarmentPrediction("blouse", 0.912345, [10.123, 5.0, 70.456, 50.0])
SKIRT = GarmentPrediction("skirt", 0.4, [10.0, 50.0, 70.0, 95.0])  # 0.4 x p(garment) 0.5 = 0.2 < conf 0.25
SKIRT_VOTE = GarmentPrediction("skirt", 0.6, [11.0, 6.0, 70.0, 52.0])  # over the blouse: IoU > 0.5


def test_the_type_heads_are_typed_outputs(heads):
    out = heads.predict(np.zeros((3, 48, 48, 3), np.uint8))
    assert set(out.attributes) == {"sleeve", "length"} and out.p_single is None
    assert out.type_probs.shape == (3, 3) and np.allclose(out.type_probs[:, 2], 0.5)
    assert out.item_type_probs.shape == (3, 2) and np.allclose(out.item_type_probs[:, 1], 0.9)


def test_a_garment_the_check_drops_goes_with_its_attributes(heads):
    pred = Pipeline(detector=FixedDetector([BLOUSE, SKIRT]), attributes=heads, single_item=False)([PHOTO])[0]
    assert [g.type for g in pred.garments] == ["blouse"]  # the skirt is under conf after the check
    assert set(pred.garments[0].attributes) == {"sleeve"}
    # no garment left answers "length": the whole image does, and no index points at the dropped skirt
    assert pred.attributes["sleeve"].garment == 0 and pred.attributes["length"].garment is None
    assert pred.attributes["sleeve"].probs == pred.garments[0].attributes["sleeve"].probs
    # the detector's own records are left as they were
    assert SKIRT.attributes == {} and BLOUSE.attributes == {} and BLOUSE.type == "blouse"


def test_single_item_keeps_one_record_typed_by_the_head(heads):
    detector = FixedDetector([BLOUSE, SKIRT_VOTE])
    pred = Pipeline(detector=detector, attributes=heads, single_item=True)([PHOTO])[0]
    # blouse 0.91 x 0.1 against skirt 0.6 x 0.9: the item is a skirt, in the blouse's box, with the skirt's keys
    assert len(pred.garments) == 1
    item = pred.garments[0]
    assert (item.type, item.score, item.box) == ("skirt", BLOUSE.score, BLOUSE.box)
    assert set(item.attributes) == {"length"} and pred.attributes["length"].garment == 0
    assert pred.attributes["sleeve"].garment is None  # no blouse left: the whole image answers
    assert pred.photo_kind.value == "single_item" and pred.photo_kind.by == "flag"
    many = Pipeline(detector=detector, attributes=heads, single_item=False)([PHOTO])[0]
    assert [g.type for g in many.garments] == ["blouse", "skirt"]


def test_writers_and_evaluate_read_the_numbers_of_the_line(heads, tmp_path, check_line):
    pred = Pipeline(detector=FixedDetector([BLOUSE]), attributes=heads, single_item=False)([PHOTO], ["a.jpg"])[0]
    assert pred.garments[0].score == BLOUSE.score  # the record keeps the model's numbers ...
    line = check_line(pred.to_dict())
    assert line["garments"][0]["score"] == 0.9123 and line["garments"][0]["box"] == [10.12, 5.0, 70.46, 50.0]
    (tmp_path / "predictions.jsonl").write_text(pred.to_json() + "\n")  # ... the line is rounded where written
    writers = PredictionWriters(tmp_path, LABELS.garment_types, None, coco=True, fashionai_attributes=True)
    writers([pred])
    writers.close()
    coco = json.loads((tmp_path / "detections_coco.json").read_text())
    assert [(c["score"], c["bbox"]) for c in coco] == [
        (0.9123, [round(float(v), 2) for v in xyxy_to_xywh(line["garments"][0]["box"])])]
    csv = dict(row.split(",")[1:] for row in (tmp_path / "fashionai_attributes.csv").read_text().splitlines())
    assert csv == {k: ";".join(f"{p:.4f}" for p in a["probs"]) for k, a in line["attributes"].items()}
    read = read_predictions(tmp_path / "predictions.jsonl")["a.jpg"]  # what evaluate scores
    assert read == pred.as_written() and read.to_json() == pred.to_json()
    assert read.garments[0].score == 0.9123 and replace(read, orig_img=None).to_dict() == line
