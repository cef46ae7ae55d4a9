"""Two predictions.jsonl runs of the tiny test models compared garment by garment (tests/test_pipeline.py): matched by
type, box overlap and score, not list position; garments within noise of a cut-off may stay unmatched."""
import numpy as np

CONF = 0.01  # the threshold _predict runs at
MAX_GARMENTS = 20  # Pipeline.max_garments
SHARP_PEAK = 0.3  # a keypoint whose heatmap maximum is lower sits on a near-flat map: its argmax may jump anywhere


def _match(a: list[dict], b: list[dict], score_atol: float) -> list[tuple[int, int]]:
    """Pairs (i, j) of garments of two predictions of one image: same type, assigned by box overlap and score (not
    list position: near-equal scores may sort either way). Garments a run may keep and the other drop, because
    their score is within noise of a cut-off (conf, or the lowest score kept when the list hit max_garments), may
    stay unmatched; every other garment must be matched."""
    from scipy.optimize import linear_sum_assignment

    from fashion2stage.geometry import box_iou

    if not a or not b:
        pairs = []
    else:
        iou = box_iou([g["box"] for g in a], [g["box"] for g in b])
        same = np.array([[ga["type"] == gb["type"] for gb in b] for ga in a])
        dscore = np.abs(np.array([g["score"] for g in a])[:, None] - np.array([g["score"] for g in b])[None, :])
        rows, cols = linear_sum_assignment(np.where(same, 1.0 - iou + dscore, 1e6))
        pairs = [(i, j) for i, j in zip(rows, cols) if same[i, j] and iou[i, j] > 0.5]
    for side, gs, done in (("first", a, {i for i, _ in pairs}), ("second", b, {j for _, j in pairs})):
        cut = max(CONF, min(g["score"] for g in gs) if len(gs) >= MAX_GARMENTS else 0.0)
        for k, g in enumerate(gs):
            assert k in done or g["score"] < cut + score_atol, f"{side} run's garment {k} {g} has no match"
    return pairs


def _assert_same_predictions(a_lines, b_lines, box_atol: float, prob_atol: float) -> None:
    assert [x["image"] for x in a_lines] == [x["image"] for x in b_lines]
    matched = 0
    for a, b in zip(a_lines, b_lines):
        pairs = _match(a["garments"], b["garments"], prob_atol)
        matched += len(pairs)
        for i, j in pairs:
            ga, gb = a["garments"][i], b["garments"][j]
            np.testing.assert_allclose(ga["box"], gb["box"], atol=box_atol)
            np.testing.assert_allclose(ga["score"], gb["score"], atol=prob_atol)
            np.testing.assert_allclose(ga["attributes"]["pattern"]["probs"], gb["attributes"]["pattern"]["probs"],
                                       atol=prob_atol)
            assert set(ga["keypoints"]) == set(gb["keypoints"])
            for name, (x, y, score) in ga["keypoints"].items():
                xb, yb, score_b = gb["keypoints"][name]
                np.testing.assert_allclose(score, score_b, atol=prob_atol)  # the heatmap maximum is continuous
                if min(score, score_b) >= SHARP_PEAK:
                    np.testing.assert_allclose([x, y], [xb, yb], atol=box_atol)
        # the image-level answer: the same garment's, unless the two highest candidates' scores are within noise
        ia, ib = a["attributes"]["pattern"]["garment"], b["attributes"]["pattern"]["garment"]
        if (ia, ib) in pairs or (ia is None and ib is None):
            np.testing.assert_allclose(a["attributes"]["pattern"]["probs"], b["attributes"]["pattern"]["probs"],
                                       atol=prob_atol)
        elif ia is None or ib is None:  # the only candidate was a garment at the conf cut-off, kept by one run
            only = b["garments"][ib] if ia is None else a["garments"][ia]
            assert only["score"] < CONF + prob_atol, (a["image"], ia, ib)
        else:
            assert abs(a["garments"][ia]["score"] - b["garments"][ib]["score"]) <= 2 * prob_atol, (a["image"], ia, ib)
    assert matched > 0, "no garment to compare: the test would check nothing"
