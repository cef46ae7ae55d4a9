import json
import math
from pathlib import Path

import numpy as np
import pytest

from fashion2stage.errors import DataError
from fashion2stage.jitter import (BoxErrorStats, JitterSampler, apply_box_error, box_error, collect_box_errors,
                                  match_detections)
from fashion2stage.records import Garment, ImageRecord

GT = [[0, 0, 100, 100], [200, 0, 300, 100]]


def test_match_greedy_by_score_not_by_iou():
    # Two predictions overlap gt 0: the higher-scored one (IoU 0.81) wins it even though the other fits better (1.0);
    # the better-fitting one is then left unmatched (gt 0 is taken), as in COCO.
    pred = [[0, 0, 100, 100], [0, 0, 90, 90]]
    pairs = match_detections(pred, [0.5, 0.9], ["a", "a"], GT[:1], ["a"])
    assert pairs == [(1, 0)]


def test_match_takes_best_iou_among_free_gt():
    # gt 0 = [0,0,100,100], gt 1 = [50,0,150,100]; pred [40,0,140,100] overlaps gt1 more (90/110) than gt0 (60/140).
    pairs = match_detections([[40, 0, 140, 100]], [1.0], ["a"], [[0, 0, 100, 100], [50, 0, 150, 100]], ["a", "a"],
                             iou_threshold=0.3)
    assert pairs == [(0, 1)]


def test_match_class_aware():
    pred = [[0, 0, 100, 100], [200, 0, 300, 100]]
    assert match_detections(pred, [0.9, 0.8], ["skirt", "dress"], GT, ["dress", "dress"]) == [(1, 1)]
    assert match_detections(pred, [0.9, 0.8], ["skirt", "dress"], GT, ["dress", "dress"],
                            class_aware=False) == [(0, 0), (1, 1)]


def test_match_threshold_edge():
    # pred [0,0,50,100] inside gt [0,0,100,100]: IoU exactly 0.5 -> matched at 0.5, not above.
    assert match_detections([[0, 0, 50, 100]], [1.0], ["a"], GT[:1], ["a"], iou_threshold=0.5) == [(0, 0)]
    assert match_detections([[0, 0, 50, 100]], [1.0], ["a"], GT[:1], ["a"], iou_threshold=0.51) == []
    assert match_detections(np.zeros((0, 4)), [], [], GT, ["a", "a"]) == []


def test_box_error_values_and_inverse():
    gt, pred = np.array([10.0, 20, 110, 220]), np.array([20.0, 10, 140, 210])
    # gt centre (60,120) size (100,200); pred centre (80,110) size (120,200)
    np.testing.assert_allclose(box_error(pred, gt), [0.2, -0.05, math.log(1.2), 0.0])
    np.testing.assert_allclose(apply_box_error(gt, box_error(pred, gt)), pred, atol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = np.sort(rng.uniform(0, 500, 4).reshape(2, 2), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        e = rng.normal(0, 0.3, 4)
        np.testing.assert_allclose(box_error(apply_box_error(g, e), g), e, atol=1e-9)


def _stats(tmp: Path | None = None) -> BoxErrorStats:
    gt = [ImageRecord("a.jpg", Path("."), garments=[Garment("dress", np.array([0.0, 0, 100, 100])),
                                                    Garment("skirt", np.array([200.0, 0, 300, 100]))]),
          ImageRecord("b.jpg", Path("."), garments=[Garment("dress", np.array([0.0, 0, 50, 50]))])]
    pred = [ImageRecord("a.jpg", Path("."), garments=[Garment("dress", np.array([10.0, 0, 110, 100]), score=0.9),
                                                      Garment("dress", np.array([200.0, 0, 300, 100]), score=0.8)])]
    return collect_box_errors(gt, pred)


def test_collect_counts_misses_and_types():
    s = _stats()
    # the skirt is "found" only as a dress (class-aware: a miss); b.jpg has no prediction record: a miss
    assert (s.n_gt, s.n_matched, s.n_pred) == (3, 1, 2)
    assert s.miss_rate == pytest.approx(2 / 3)
    np.testing.assert_allclose(s.errors, [[0.1, 0, 0, 0]])
    assert s.per_type["dress"] == {"n_gt": 2, "n_matched": 1, "n_pred": 2}
    assert s.per_type["skirt"] == {"n_gt": 1, "n_matched": 0, "n_pred": 0}


def test_save_load_round_trip_and_malformed(tmp_path):
    rng = np.random.default_rng(1)
    s = BoxErrorStats(errors=rng.normal(size=(30, 4)), n_gt=40, n_matched=30, per_type={"dress": {"n_gt": 40}})
    s.save(tmp_path / "e.json")
    t = BoxErrorStats.load(tmp_path / "e.json")
    np.testing.assert_array_equal(t.errors, s.errors)
    assert (t.n_gt, t.n_matched, t.per_type, t.miss_rate) == (40, 30, s.per_type, 0.25)
    d = json.loads((tmp_path / "e.json").read_text())
    assert d["summary"]["components"]["dx"]["mean"] == pytest.approx(s.errors[:, 0].mean())
    for bad in ["{not json", json.dumps({"format": "other"}),
                json.dumps({**d, "n_matched": 29}), json.dumps({**d, "errors": [[1, 2, 3]]}),
                json.dumps({k: v for k, v in d.items() if k != "n_gt"})]:
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(DataError, match="bad.json"):
            BoxErrorStats.load(tmp_path / "bad.json")


def test_bootstrap_reproduces_recorded_statistics():
    # A recorded set with known, correlated, non-Gaussian errors: log_w correlates with dx (rho ~0.6), log_h with
    # log_w, and dy is heavy-tailed (Student t, 4 dof).
    rng = np.random.default_rng(2)
    n = 400
    dx = rng.normal(0.02, 0.05, n)
    log_w = 0.6 * (dx - 0.02) / 0.05 * 0.08 + 0.8 * rng.normal(0, 0.08, n) - 0.03
    log_h = 0.5 * log_w + rng.normal(0, 0.05, n)
    dy = 0.03 * rng.standard_t(4, n)
    recorded = np.stack([dx, dy, log_w, log_h], axis=1)
    sampler = JitterSampler.from_stats(BoxErrorStats(errors=recorded, n_gt=500, n_matched=n))
    assert sampler.kind == "bootstrap"
    samples = sampler.sample(np.random.default_rng(3), 20000)
    np.testing.assert_allclose(samples.mean(0), recorded.mean(0), atol=0.003)
    np.testing.assert_allclose(samples.std(0), recorded.std(0), rtol=0.04)
    np.testing.assert_allclose(np.corrcoef(samples.T), np.corrcoef(recorded.T), atol=0.03)
    # heavy tail kept: the 99th percentile of |dy| stays close to the recorded one
    assert np.quantile(np.abs(samples[:, 1]), 0.99) == pytest.approx(np.quantile(np.abs(dy), 0.99), rel=0.15)
    # smoothed: not just the recorded vectors again
    assert len(np.unique(samples[:, 0])) == len(samples)


def test_default_bounds_few_matches_none_and_dict_round_trip():
    few = BoxErrorStats(errors=np.full((5, 4), 0.5), n_gt=10, n_matched=5)
    with pytest.warns(UserWarning, match="too few to resample"):
        assert JitterSampler.from_stats(few).kind == "default"
    s = JitterSampler.default().sample(np.random.default_rng(4), 20000)
    assert np.all(np.abs(s[:, :2]) <= 0.1) and np.abs(s[:, :2]).max() > 0.099
    ratio = np.exp(s[:, 2:])
    assert ratio.min() >= 0.75 and ratio.max() <= 1.25 and ratio.min() < 0.751 and ratio.max() > 1.249
    box = np.array([10.0, 10, 60, 110])
    assert np.array_equal(JitterSampler.none().jitter(box, np.random.default_rng(0)), box)
    j = JitterSampler.default().jitter(box, np.random.default_rng(0))
    assert j.shape == (4,) and not np.allclose(j, box)
    boot = JitterSampler.from_stats(BoxErrorStats(errors=np.random.default_rng(5).normal(size=(25, 4)),
                                                  n_gt=25, n_matched=25))
    for sampler in (boot, JitterSampler.default(), JitterSampler.none()):
        back = JitterSampler.from_dict(json.loads(json.dumps(sampler.to_dict())))
        np.testing.assert_array_equal(back.sample(np.random.default_rng(6), 10),
                                      sampler.sample(np.random.default_rng(6), 10))
