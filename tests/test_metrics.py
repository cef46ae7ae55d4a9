from pathlib import Path

import numpy as np
import pytest

from fashion2stage.labels import LabelSet
from fashion2stage.metrics import (attribute_report, basic_precision, coco_detection_eval, fashionai_ap,
                                   keypoint_report, ne_normaliser, normalised_error, pck, soft_targets)
from fashion2stage.records import Dataset, Garment, ImageRecord

# Six images of one 3-value key. Outcome of the argmax prediction, by confidence:
#   r0 .9 correct | r1 .8 wrong, r2 .8 correct (a tie) | r3 .7 on an m value: skipped | r4 .6 wrong | r5 .5 correct
PROBS = np.array([[.05, .9, .05], [.1, .8, .1], [.8, .1, .1], [.1, .2, .7], [.6, .3, .1], [.25, .25, .5]])
MARKS = ["nyn", "ynn", "ynn", "ynm", "nyn", "nny"]


def test_fashionai_ap_with_skips_and_ties():
    # precision at each scored position; the tie block {r1, r2} is one threshold: both get 2 / (2 + 1).
    #   r0: 1/1   r1, r2: 2/3   r4: 2/4   r5: 3/5   ->   AP = (1 + 2/3 + 2/3 + 1/2 + 3/5) / 5 = 103/150
    assert fashionai_ap(PROBS, MARKS) == pytest.approx(103 / 150)
    # order of the input does not matter, even inside the tie (a plain walk would give (1 + 1/2 + 2/3 + ...) here)
    perm = [2, 5, 0, 3, 1, 4]
    assert fashionai_ap(PROBS[perm], [MARKS[i] for i in perm]) == pytest.approx(103 / 150)
    # no ties: correct, wrong, correct -> (1 + 1/2 + 2/3) / 3
    assert fashionai_ap([[.9, .1], [.1, .8], [.7, .3]], ["yn", "yn", "yn"]) == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    # every prediction lands on an m value: nothing scored
    assert np.isnan(fashionai_ap([[0, 0, 1.0], [0, .1, .9]], ["ynm", "ymm"]))


def test_basic_precision():
    assert basic_precision(PROBS, MARKS) == pytest.approx(3 / 5)  # 3 correct, 2 wrong, 1 skipped
    assert np.isnan(basic_precision([[0, 0, 1.0]], ["ynm"]))


def test_soft_targets_recipe():
    np.testing.assert_allclose(soft_targets("nnyn"), [0, 0, 1, 0])
    np.testing.assert_allclose(soft_targets("nmyn"), [0, .2, .8, 0])
    np.testing.assert_allclose(soft_targets("mmyn"), [.15, .15, .7, 0])
    np.testing.assert_allclose(soft_targets("mmym"), [.1, .1, .7, .1])
    np.testing.assert_allclose(soft_targets("mmymmn"), [.1, .1, .6, .1, .1, 0])
    for bad in ("nnnn", "yyn", "nyx"):
        with pytest.raises(ValueError):
            soft_targets(bad)


def test_attribute_report_topk_confusion_and_map():
    # 5-value key; rank of the true value: row0 1st, row1 2nd, row2 5th, row3 2nd -> top1 1/4, top3 3/4, top5 1
    p5 = np.array([[.5, .2, .1, .1, .1], [.4, .3, .2, .05, .05], [.3, .25, .2, .15, .1], [.1, .1, .6, .15, .05]])
    m5 = ["ynnnn", "nynnn", "nnnny", "nnnyn"]
    names5 = list("ABCDE")
    rep = attribute_report({"k3": PROBS, "k5": p5}, {"k3": MARKS, "k5": m5},
                           {"k3": ["x", "y", "z"], "k5": names5})
    k3, k5 = rep["keys"]["k3"], rep["keys"]["k5"]
    assert k3["n"] == 6 and k3["accuracy"] == pytest.approx(3 / 6) and "top3" not in k3
    assert (k5["top1"], k5["top3"], k5["top5"]) == (pytest.approx(.25), pytest.approx(.75), pytest.approx(1.0))
    cm = np.array(k5["confusion_matrix"])
    assert cm[1, 0] == 1 and cm[0, 0] == 1 and cm[4, 0] == 1 and cm[3, 2] == 1 and cm.sum() == 4
    assert [(c["true"], c["predicted"]) for c in k5["most_confused"]] == [("B", "A"), ("D", "C"), ("E", "A")]
    # k5: conf .5 right, .4 wrong, .3 wrong, .6 wrong -> sorted W(.6) C(.5) W(.4) W(.3): (0 + 1/2 + 1/3 + 1/4) / 4
    assert k5["ap"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert rep["mAP"] == pytest.approx((103 / 150 + k5["ap"]) / 2)
    assert rep["mean_accuracy"] == pytest.approx((.5 + .25) / 2)


LABELS = LabelSet(garment_types=["top", "other"], keypoints=["a_left", "a_right", "c"],
                  ne_normaliser={"top": ["a_left", "a_right"]})


def _kp_case():
    gt = np.array([[[0, 0, 2], [10, 0, 2], [5, 5, 1]],        # top: armpit-like pair 10 px apart; c occluded
                   [[0, 0, 0], [10, 10, 2], [20, 20, 2]]], float)  # other: no pair -> box diagonal 50
    pred = np.array([[[3, 4], [np.nan, np.nan], [100, 100]],   # d 5 -> .5; missed -> 1.0; occluded: ignored
                     [[999, 999], [10, 10], [20, 24]]], float)  # absent: ignored; 0; 4/50 = .08
    boxes = np.array([[0, 0, 12, 9], [0, 0, 30, 40]], float)
    return pred, gt, boxes


def test_ne_normaliser_choice():
    _, gt, boxes = _kp_case()
    norm, kinds = ne_normaliser(gt, ["top", "other"], boxes, LABELS)
    np.testing.assert_allclose(norm, [10, 50])
    assert kinds == ["a_left-a_right", "box_diagonal"]
    gt2 = gt.copy()
    gt2[0, 1, 2] = 1  # occluded but labelled: still the pair
    assert ne_normaliser(gt2, ["top", "other"], boxes, LABELS)[1][0] == "a_left-a_right"
    gt2[0, 1] = [0, 0, 0]  # pair point absent: the top's box diagonal, sqrt(12^2 + 9^2) = 15
    norm, kinds = ne_normaliser(gt2, ["top", "other"], boxes, LABELS)
    assert norm[0] == pytest.approx(15) and kinds[0] == "box_diagonal"


def test_ne_and_pck_with_absent_occluded_and_missed_points():
    pred, gt, boxes = _kp_case()
    norm = np.array([10.0, 50.0])
    # counted points: .5, 1.0 (missed), 0, .08 -> NE = 1.58 / 4 = 39.5 %
    assert normalised_error(pred, gt, norm) == pytest.approx(39.5)
    assert pck(pred, gt, norm, alpha=0.1) == pytest.approx(2 / 4)
    assert pck(pred, gt, norm, alpha=0.6) == pytest.approx(3 / 4)  # the missed point never hits
    rep = keypoint_report(pred, gt, ["top", "other"], boxes, LABELS)
    assert rep["ne"] == pytest.approx(39.5) and rep["n_points"] == 4 and rep["pck@0.1"] == pytest.approx(.5)
    assert rep["ne_per_type"] == {"top": pytest.approx(75.0), "other": pytest.approx(4.0)}
    assert rep["ne_per_keypoint"] == {"a_left": pytest.approx(50.0), "a_right": pytest.approx(50.0),
                                      "c": pytest.approx(8.0)}
    assert rep["normaliser"] == {"a_left-a_right": 1, "box_diagonal": 1}


def _dataset(garments_per_image) -> Dataset:
    labels = LabelSet(garment_types=["dress", "skirt"])
    records = [ImageRecord(f"{i}.jpg", Path("/nonexistent"), width=200, height=200, id=i + 1,
                           garments=[Garment(t, np.array(b, float)) for t, b in gs])
               for i, gs in enumerate(garments_per_image)]
    return Dataset(Path("/nonexistent"), records, labels)


GT_GARMENTS = [[("dress", [10, 10, 110, 150]), ("skirt", [20, 100, 120, 190])],
               [("dress", [50, 20, 150, 180])]]


def _pred(garments_per_image, dataset):
    return [ImageRecord(r.file, r.root, garments=[Garment(t, np.array(b, float), score=s) for t, b, s in gs])
            for r, gs in zip(dataset.records, garments_per_image)]


def test_coco_eval_perfect_half_and_empty(capsys):
    gt = _dataset(GT_GARMENTS)
    perfect = _pred([[(t, b, .9) for t, b in gs] for gs in GT_GARMENTS], gt)
    r = coco_detection_eval(gt, perfect)
    assert r["map"] == pytest.approx(1.0) and r["map50"] == pytest.approx(1.0)
    assert r["per_class"]["skirt"]["map"] == pytest.approx(1.0) and r["per_class"]["dress"]["n_gt"] == 2
    assert capsys.readouterr().out == "" and "Average Precision" in r["log"]
    # dresses perfect, the skirt predicted far from where it is (IoU 0)
    half = _pred([[("dress", [10, 10, 110, 150], .9), ("skirt", [150, 0, 200, 40], .8)],
                  [("dress", [50, 20, 150, 180], .7)]], gt)
    r = coco_detection_eval(gt, half)
    assert r["per_class"]["dress"]["map"] == pytest.approx(1.0) and r["per_class"]["skirt"]["map"] == 0.0
    assert r["map"] == pytest.approx(0.5) and r["map50"] == pytest.approx(0.5)
    r = coco_detection_eval(gt, [])
    assert r["map"] == 0.0 and r["per_class"]["dress"]["map50"] == 0.0 and r["n_pred"] == 0
